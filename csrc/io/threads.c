/* threads.c — the `threads` backend, for kernels or containers
 * without io_uring: blocking syscalls on the process-wide pool (pool.c),
 * readiness of pipes, sockets and the like on the loop's own thread.
 *
 * Why two paths: a read of an empty pipe can block for ever. Run on a pool
 * thread, it parks that thread; with as many such reads as pool threads, the
 * write that would end them waits in the queue behind them and the loop
 * deadlocks. So reads and writes on pollable fds (fstat: anything but a
 * regular file, a directory or a block device, so pipes, sockets, ttys and
 * the anonymous inodes: signalfd, eventfd, ...) never wait on a pool thread.
 * They are tried on the loop thread without blocking, per call, leaving the
 * fd's flags alone (io_uring and other processes share the open file
 * description, so no O_NONBLOCK):
 *  - sockets: recv/send with MSG_DONTWAIT;
 *  - the rest: preadv2/pwritev2 with RWF_NOWAIT, which anonymous pipes,
 *    signalfd, eventfd and timerfd take (Linux 6.x here); named FIFOs, ttys
 *    and inotify answer EOPNOTSUPP, and fall back to "wait for readiness,
 *    then run the call on the pool", which parks a thread only if another
 *    reader takes the data first (writes on that path are capped at
 *    PIPE_BUF so a ready pipe takes them whole).
 * EAGAIN puts the op on its fd's wait list, and the fd in this loop's epoll
 * set (armed one-shot for the directions that have waiters, re-armed with
 * one EPOLL_CTL_MOD per wait). Each list is tried one way (its kind, set by
 * the op that parked last): ops of different kinds never wait on one fd in
 * one direction today (a POLL waits only where no read does). The epoll set
 * also holds the loop's wake eventfd, through which pool threads report
 * posted completions. A close of such an fd runs here too (it never
 * blocks). Everything else (regular files, directories, block devices, their
 * close, fds epoll refuses, every other operation) goes to the pool.
 *
 * A cancel of an op waiting for readiness is immediate: it leaves its list
 * and completes with -ECANCELED (fio_op_done: the loop completes it after
 * the wait, never inside submit or cancel).
 *
 * Bookkeeping without per-op memory: an op on the loop-thread path is on
 * exactly one list, its fd's read or write list (through op->queue_node);
 * its pool job (at the start of op->backend_area) is then not on the pool,
 * so fio_pool_cancel ignores it.
 *
 * In a test build, FIBERIO_THREADS_POLL=0 turns the loop-thread path off
 * (every op on the pool): how the specs reach the pool's cancel paths with
 * pipes. Expect the deadlock above with it. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "io/backend.h"
#include "io/exec.h"
#include "io/pool.h"
#include "util/config.h"
#include "util/fd.h"

#define WAKE_TAG UINT64_MAX /* epoll data of the wake eventfd; fds are small */
#define MAX_EVENTS 256

/* How an op on a pollable fd is tried. */
enum { K_NOWAIT = 1, /* preadv2/pwritev2 with RWF_NOWAIT */
       K_SOCK,       /* recv/send with MSG_DONTWAIT */
       K_POOL,       /* readiness here, the call on the pool */
       K_READY };    /* readiness is the result (a pidfd: its process
                      * ended, for every waiter) */

/* The ops waiting on one fd, FIFO per direction (linked through qnext). */
typedef struct fdrec {
  fio_dlist readers, writers;
  uint32_t mask; /* events armed in the epoll set (one shot); 0: none */
  uint8_t reg;   /* added to the epoll set (armed or not since) */
  uint8_t drained; /* a socket whose last read took all it had: the next
                    * waits for readiness before it tries (as a loop on
                    * epoll reads only when told) */
  uint8_t rkind, wkind;
} fdrec;

/* What an op keeps in its backend_area: its pool job (backend.h). */
typedef struct threads_op {
  fio_job job;
} threads_op;
_Static_assert(sizeof(threads_op) <= FIO_OP_BACKEND_AREA,
               "threads_op fits in an op's backend_area");

typedef struct threads {
  fio_pool_client client; /* this loop's jobs on the pool */
  int epfd;
  int poll;               /* the loop-thread path is on */
  int pwait2;             /* epoll_pwait2 works (else epoll_wait, in ms) */
  fdrec *fds;             /* indexed by fd */
  size_t nreg;            /* fds armed in the epoll set (the wake eventfd
                           * aside) */
  size_t nfds;
  uint64_t polled, pooled; /* ops taken on the loop-thread path / to the pool */
  uint64_t helped;        /* readfiles taken back from the pool and run here */
  int help;               /* take readfiles back (a test build: not with
                           * FIBERIO_THREADS_HELP=0) */
} threads;

/* --- lists ------------------------------------------------------------------- */

static fdrec *rec_get(threads *t, int fd) {
  if ((size_t)fd >= t->nfds) {
    size_t n = t->nfds ? t->nfds : 64;
    while (n <= (size_t)fd) n *= 2;
    fdrec *r = realloc(t->fds, n * sizeof *r);
    if (!r) return NULL;
    memset(r + t->nfds, 0, (n - t->nfds) * sizeof *r);
    t->fds = r;
    t->nfds = n;
  }
  return &t->fds[fd];
}

/* Arm fd in the epoll set for what its waiters wait for. Registrations
 * are one-shot (EPOLLONESHOT): an event disarms the fd, and the next wait
 * re-arms it with one EPOLL_CTL_MOD, where a registration that came and
 * went (ADD, then DEL) cost two calls per wait. 0, or -errno from
 * epoll_ctl (EPERM: fd cannot be polled). */
static int rec_sync(threads *t, int fd, fdrec *r) {
  uint32_t want = (r->readers.head ? EPOLLIN : 0) | (r->writers.head ? EPOLLOUT : 0);
  if (want == r->mask) return 0;
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = want | EPOLLONESHOT;
  ev.data.u64 = (uint64_t)fd;
  if (!want) {
    /* Armed with nobody waiting (a wait canceled): out of the set.
     * ENOENT/EBADF: the kernel dropped it already (the file is gone). */
    (void)epoll_ctl(t->epfd, EPOLL_CTL_DEL, fd, &ev);
    r->mask = 0;
    r->reg = 0;
    t->nreg--;
    return 0;
  }
  int rc = epoll_ctl(t->epfd, r->reg ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  if (rc < 0 && errno == ENOENT) /* dropped by the kernel: fd was reused */
    rc = epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev);
  else if (rc < 0 && errno == EEXIST)
    rc = epoll_ctl(t->epfd, EPOLL_CTL_MOD, fd, &ev);
  if (rc < 0) return -errno;
  if (!r->mask) t->nreg++;
  r->mask = want;
  r->reg = 1;
  return 0;
}

/* --- trying a call without blocking ------------------------------------------ */

/* Whether op waits for room to write (its fd's writers), not for data. */
static int writes(const fio_op *op) {
  return op->code == FIO_OP_WRITE || op->code == FIO_OP_SEND ||
         op->code == FIO_OP_SENDMSG ||
         (op->code == FIO_OP_POLL && (op->mode & EPOLLOUT));
}

/* One try of a socket's op, without waiting (a listener is nonblocking). */
static ssize_t try_sock(fio_op *op) {
  switch (op->code) {
  case FIO_OP_ACCEPT: {
    struct fio_sockaddr *sa = (struct fio_sockaddr *)(void *)op->mem;
    sa->len = sizeof sa->addr;
    return accept4(op->fd, (struct sockaddr *)&sa->addr, &sa->len, SOCK_CLOEXEC);
  }
  case FIO_OP_RECVMSG:
    return recvmsg(op->fd, (struct msghdr *)(void *)op->mem, op->flags | MSG_DONTWAIT);
  case FIO_OP_SENDMSG:
    return sendmsg(op->fd, (struct msghdr *)(void *)op->mem,
                   op->flags | MSG_DONTWAIT | MSG_NOSIGNAL);
  case FIO_OP_RECV:
    return recv(op->fd, op->buf, op->len, op->flags | MSG_DONTWAIT);
  case FIO_OP_SEND:
    return send(op->fd, op->buf, op->len, op->flags | MSG_DONTWAIT | MSG_NOSIGNAL);
  case FIO_OP_WRITE:
    return send(op->fd, op->buf, op->len, MSG_DONTWAIT | MSG_NOSIGNAL);
  default: /* FIO_OP_READ */
    return recv(op->fd, op->buf, op->len, MSG_DONTWAIT);
  }
}

/* One try of op on the loop thread: res >= 0 or -errno; -EAGAIN: not ready;
 * -EOPNOTSUPP: this fd cannot be tried that way. */
static int try_op(fio_op *op, int kind) {
  int wr = op->code == FIO_OP_WRITE;
  ssize_t r;
  for (;;) {
    if (kind == K_SOCK) {
      if (op->off != (uint64_t)-1) return -ESPIPE; /* as pread would say */
      r = try_sock(op);
    } else {
      struct iovec iov = {op->buf, op->len};
      off_t off = op->off == (uint64_t)-1 ? (off_t)-1 : (off_t)op->off;
      r = wr ? pwritev2(op->fd, &iov, 1, off, RWF_NOWAIT)
             : preadv2(op->fd, &iov, 1, off, RWF_NOWAIT);
    }
    if (r >= 0) return (int)r;
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return -EAGAIN;
    if (kind == K_NOWAIT && (errno == EINVAL || errno == ENOSYS))
      return -EOPNOTSUPP; /* kernels without RWF_NOWAIT or preadv2 */
    return -errno;
  }
}

/* Hand op to the pool. */
static void to_pool(fio_loop *loop, fio_op *op) {
  threads *t = loop->backend_state;
  t->pooled++;
  fio_op_to_pool(&t->client, op);
}

/* An op that waited for readiness on the K_POOL path, now ready. Writes are
 * capped at PIPE_BUF, which a ready pipe takes whole without blocking. */
static void ready_to_pool(fio_loop *loop, fio_op *op) {
  if (op->code == FIO_OP_WRITE && op->len > PIPE_BUF) op->len = PIPE_BUF;
  to_pool(loop, op);
}

/* Put op on fd's wait list for its direction (kind says how to try it when
 * ready). If the fd cannot be polled, run it on the pool instead. */
static void park(fio_loop *loop, threads *t, fio_op *op, int kind) {
  fdrec *r = rec_get(t, op->fd);
  if (!r) {
    fio_op_done(loop, op, -ENOMEM);
    return;
  }
  int wr = writes(op);
  if (wr) {
    fio_dlist_push(&r->writers, &op->queue_node);
    r->wkind = (uint8_t)kind;
  } else {
    fio_dlist_push(&r->readers, &op->queue_node);
    r->rkind = (uint8_t)kind;
  }
  if (rec_sync(t, op->fd, r) < 0) {
    /* Not pollable (epoll says EPERM): a blocking call on the pool is all
     * that is left. */
    fio_dlist_remove(wr ? &r->writers : &r->readers, &op->queue_node);
    rec_sync(t, op->fd, r);
    to_pool(loop, op);
  }
}

/* After a try of op: whether its socket was left with nothing to read. */
static void note_drained(threads *t, const fio_op *op, int kind, int res) {
  if (kind != K_SOCK || writes(op) || op->code == FIO_OP_ACCEPT) return;
  fdrec *r = rec_get(t, op->fd);
  if (r) r->drained = res == -EAGAIN || (res >= 0 && (size_t)res < op->len);
}

/* The loop-thread path for a read or write on a pollable fd of type mode. */
static void submit_polled(fio_loop *loop, threads *t, fio_op *op,
                          mode_t mode) {
  int kind = S_ISSOCK(mode) ? K_SOCK : K_NOWAIT;
  t->polled++;
  fdrec *r = (size_t)op->fd < t->nfds ? &t->fds[op->fd] : NULL;
  int wr = writes(op);
  if (r && (wr ? r->writers.head : r->readers.head)) {
    /* Others wait on this fd in this direction: queue behind them rather
     * than take data (or room) that is theirs. */
    park(loop, t, op, wr ? r->wkind : r->rkind);
    return;
  }
  if (r && r->drained && kind == K_SOCK && !wr && op->code != FIO_OP_ACCEPT) {
    /* (its data is most likely not there yet: a try would fail; armed,
     * the epoll set says at once if it is) */
    park(loop, t, op, kind);
    return;
  }
  int res = try_op(op, kind);
  note_drained(t, op, kind, res);
  if (res == -EAGAIN) park(loop, t, op, kind);
  else if (res == -EOPNOTSUPP && kind == K_NOWAIT) park(loop, t, op, K_POOL);
  else fio_op_done(loop, op, res);
}

/* Serve the waiters of one list in order while the fd has data or room. */
static void serve(fio_loop *loop, threads *t, fio_dlist *q, int kind) {
  while (q->head) {
    if (kind == K_READY) {
      fio_op_done(loop, fio_op_of(fio_dlist_pop(q)), 0);
      continue;
    }
    if (kind == K_POOL) {
      /* One per readiness report: the next waits until the fd says ready
       * again, so two calls do not race for the same bytes. */
      ready_to_pool(loop, fio_op_of(fio_dlist_pop(q)));
      return;
    }
    int res = try_op(fio_op_of(q->head), kind);
    note_drained(t, fio_op_of(q->head), kind, res);
    if (res == -EAGAIN) return;
    fio_op_done(loop, fio_op_of(fio_dlist_pop(q)), res);
  }
}

static void on_ready(fio_loop *loop, threads *t, int fd, uint32_t events) {
  if ((size_t)fd >= t->nfds) return;
  fdrec *r = &t->fds[fd];
  if (r->mask) { /* (the event disarmed it) */
    r->mask = 0;
    t->nreg--;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
    serve(loop, t, &r->readers, r->rkind);
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
    serve(loop, t, &r->writers, r->wkind);
  rec_sync(t, fd, r);
}

/* --- the backend ------------------------------------------------------------- */

static int threads_init(fio_loop *loop) {
  threads *t = calloc(1, sizeof *t);
  if (!t) return -ENOMEM;
  t->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (t->epfd >= 0) t->epfd = fio_fd_above_std(t->epfd); /* (util/fd.h) */
  else t->epfd = -errno;
  if (t->epfd < 0) {
    int e = -t->epfd;
    free(t);
    return -e;
  }
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.u64 = WAKE_TAG;
  if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0) {
    int e = errno;
    close(t->epfd);
    free(t);
    return -e;
  }
  t->poll = t->help = 1;
#ifdef FIBERIO_TEST_HOOKS
  const fio_test_hooks *test = &fio_config_env()->test;
  t->poll = !(test->threads_poll && strcmp(test->threads_poll, "0") == 0);
  t->help = !(test->threads_help && strcmp(test->threads_help, "0") == 0);
#endif
  t->pwait2 = 1;
  loop->backend_state = t;
  return 0;
}

/* Whether a read can wait for ever on fd (so must not wait on a pool
 * thread): anything but a regular file, a directory or a block device.
 * Besides pipes, sockets and ttys that is every anonymous inode (signalfd,
 * eventfd, timerfd, inotify: no type bits at all). */
static int pollable(mode_t mode) {
  return !S_ISREG(mode) && !S_ISDIR(mode) && !S_ISBLK(mode);
}

static void threads_submit(fio_loop *loop, fio_op *op) {
  threads *t = loop->backend_state;
  struct stat st;
  if (op->may_inline) {
    /* (a regular file's read or write the loop did not run itself: the
     * pool's, with no fstat to tell) */
    to_pool(loop, op);
    return;
  }
  if (op->code == FIO_OP_CLOSE && op->fd >= 0 && fstat(op->fd, &st) == 0 &&
      pollable(st.st_mode)) {
    /* Closing a pipe, socket or tty never blocks: do it here rather than
     * queue it behind pool threads that may be blocked for long. */
    fio_op_done(loop, op, fio_exec(op, NULL));
    return;
  }
  if (t->poll && op->code == FIO_OP_WAITID) {
    /* (a pidfd never blocks a pool thread: it is polled here) */
    t->polled++;
    park(loop, t, op, K_READY);
    return;
  }
  if (t->poll) {
    switch (op->code) {
    case FIO_OP_CONNECT: /* (nonblocking: ends at once; a POLL follows) */
      t->polled++;
      fio_op_done(loop, op, fio_exec(op, NULL));
      return;
    case FIO_OP_POLL:
      t->polled++;
      park(loop, t, op, K_READY);
      return;
    case FIO_OP_ACCEPT:
    case FIO_OP_RECV:
    case FIO_OP_SEND:
    case FIO_OP_RECVMSG:
    case FIO_OP_SENDMSG:
      submit_polled(loop, t, op, S_IFSOCK);
      return;
    }
  }
  if (t->poll && (op->code == FIO_OP_READ || op->code == FIO_OP_WRITE)) {
    if (op->fd < 0 || fstat(op->fd, &st) < 0) {
      fio_op_done(loop, op, op->fd < 0 ? -EBADF : -errno);
      return;
    }
    if (pollable(st.st_mode)) {
      submit_polled(loop, t, op, st.st_mode);
      return;
    }
  }
  to_pool(loop, op);
}

static void threads_cancel(fio_loop *loop, fio_op *op) {
  threads *t = loop->backend_state;
  if (op->fd >= 0 && (size_t)op->fd < t->nfds) {
    fdrec *r = &t->fds[op->fd];
    /* (scans: the ops waiting on one fd) */
    fio_dlist *q = fio_dlist_contains(&r->readers, &op->queue_node) ? &r->readers
                 : fio_dlist_contains(&r->writers, &op->queue_node) ? &r->writers
                                                                     : NULL;
    if (q) {
      fio_dlist_remove(q, &op->queue_node);
      rec_sync(t, op->fd, r); /* before the binding closes the fd */
      fio_op_done(loop, op, -ECANCELED);
      return;
    }
  }
  /* On the pool, or already done (then its job is not: a no-op). */
  fio_pool_cancel(fio_op_job(op));
}

static void threads_wait(fio_loop *loop, int64_t timeout_ns) {
  threads *t = loop->backend_state;
  struct epoll_event ev[MAX_EVENTS];
  /* (readfiles still queued on the pool: read here, oppool.c; on two
   * CPUs, 10,000 small files took 22 ms where the pool alone took 28 to 37;
   * FIBERIO_THREADS_HELP=0 turns this off) */
  if (timeout_ns != 0 && t->help &&
      fio_op_pool_help(loop, &t->client, &t->helped, &t->pooled))
    timeout_ns = 0;
  if (timeout_ns != 0 && fio_loop_wakes_on(loop)) timeout_ns = 0;
  int n = 0;
  /* With no sleep and nothing to poll but the wake eventfd, no syscall:
   * posts are seen through loop->posted. */
  while (timeout_ns != 0 || t->nreg) {
    if (t->pwait2) {
      struct timespec ts, *tsp = NULL;
      if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
      }
      n = epoll_pwait2(t->epfd, ev, MAX_EVENTS, tsp, NULL);
      if (n < 0 && errno == ENOSYS) {
        t->pwait2 = 0;
        continue;
      }
    } else {
      /* Milliseconds, rounded up: a timer never fires early. */
      int ms = timeout_ns < 0 ? -1
               : timeout_ns > (int64_t)INT_MAX * 1000000 ? INT_MAX
               : (int)((timeout_ns + 999999) / 1000000);
      n = epoll_wait(t->epfd, ev, MAX_EVENTS, ms);
    }
    break;
  }
  int woke = 0;
  for (int i = 0; i < n; i++) { /* n < 0 (EINTR): nothing to see */
    if (ev[i].data.u64 == WAKE_TAG) woke = 1;
    else on_ready(loop, t, (int)ev[i].data.u64, ev[i].events);
  }
  if (woke) fio_loop_drain_wakefd(loop); /* (wakes stay off) */
}

static void threads_wake(fio_loop *loop) { fio_loop_wake_fd(loop); }

static void threads_close(fio_loop *loop) {
  threads *t = loop->backend_state;
  if (!t) return;
  /* What is still on the pool is the pool's from now on: it drops each op
   * when its call returns, and never posts to this loop again. */
  fio_pool_forget(&t->client);
  close(t->epfd);
  free(t->fds);
  free(t);
  loop->backend_state = NULL;
}

/* fio._info(): what this loop does with pollable fds and the pool. */
static void threads_info(fio_loop *loop, lua_State *L) {
  threads *t = loop->backend_state;
  fio_pool_stats st;
  fio_pool_stats_get(&st);
  lua_pushboolean(L, t->poll);
  lua_setfield(L, -2, "poll");
  lua_pushinteger(L, (lua_Integer)t->polled);
  lua_setfield(L, -2, "polled");
  lua_pushinteger(L, (lua_Integer)t->pooled);
  lua_setfield(L, -2, "pooled");
  lua_pushinteger(L, (lua_Integer)t->helped);
  lua_setfield(L, -2, "helped");
  lua_pushinteger(L, st.limit);
  lua_setfield(L, -2, "pool_limit");
  lua_pushinteger(L, st.threads);
  lua_setfield(L, -2, "pool_threads");
  lua_pushinteger(L, st.idle);
  lua_setfield(L, -2, "pool_idle");
  lua_pushinteger(L, st.queued);
  lua_setfield(L, -2, "pool_queued");
  lua_pushinteger(L, st.running);
  lua_setfield(L, -2, "pool_running");
}

const fio_backend fio_backend_threads = {
    .name = "threads",
    .init = threads_init,
    .close = threads_close,
    .submit = threads_submit,
    .cancel = threads_cancel,
    .wait = threads_wait,
    .wake = threads_wake,
    .info = threads_info,
};
