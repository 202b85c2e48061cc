/* backend_threads.c — the `threads` backend, for kernels or containers
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
 * set (level-triggered, for the directions that have waiters). The epoll set
 * also holds the loop's wake eventfd, through which pool threads report
 * posted completions. A close of such an fd runs here too (it never
 * blocks). Everything else (regular files, directories, block devices, their
 * close, fds epoll refuses, every other operation) goes to the pool.
 *
 * A cancel of an op waiting for readiness is immediate: it leaves its list
 * and completes with -ECANCELED at the next wait. Completions found on the
 * loop thread (a try that succeeded at submit, a cancel) are kept on a local
 * done list and delivered by wait, never inside submit or cancel: the loop
 * calls those while it walks its in-flight list or before the waiter has
 * suspended.
 *
 * Bookkeeping without per-op memory: an op on the loop-thread path is on
 * exactly one list (its fd's read or write list, or the done list), linked
 * through op->pnext (free while the op is not posted), and its op->bpriv stays
 * NULL, so fio_pool_cancel ignores it. op->bpriv belongs to the pool.
 *
 * FIBERIO_THREADS_POLL=0 turns the loop-thread path off (every op on the
 * pool): a debugging aid, and how the specs reach the pool's cancel paths
 * with pipes. Expect the deadlock above with it. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend.h"
#include "pool.h"

#define WAKE_TAG UINT64_MAX /* epoll data of the wake eventfd; fds are small */
#define MAX_EVENTS 256

/* How an op on a pollable fd is tried. */
enum { K_NOWAIT = 1, /* preadv2/pwritev2 with RWF_NOWAIT */
       K_SOCK,       /* recv/send with MSG_DONTWAIT */
       K_POOL };     /* readiness here, the call on the pool */

/* The ops waiting on one fd, FIFO per direction (linked through pnext). */
typedef struct fdrec {
  fio_op *rhead, *rtail, *whead, *wtail;
  uint32_t mask; /* events registered in the epoll set; 0: not in it */
  uint8_t rkind, wkind;
} fdrec;

typedef struct threads {
  int epfd;
  int poll;               /* the loop-thread path is on */
  int pwait2;             /* epoll_pwait2 works (else epoll_wait, in ms) */
  fdrec *fds;             /* indexed by fd */
  size_t nreg;            /* fds in the epoll set (the wake eventfd aside) */
  size_t nfds;
  fio_op *dhead, *dtail;  /* done: completions to deliver in wait */
  fio_op *lhead, *ltail;  /* later: file reads and writes held for wait */
  uint64_t polled, pooled; /* ops taken on the loop-thread path / to the pool */
  uint64_t inlined;       /* file reads and writes run on the loop thread */
  uint64_t helped;        /* readfiles taken back from the pool and run here */
  int help;               /* take readfiles back (FIBERIO_THREADS_HELP=0: no) */
} threads;

/* --- lists ------------------------------------------------------------------- */

/* Remove op from the list; 1 if it was there. */
static int unlink_op(fio_op **head, fio_op **tail, fio_op *op) {
  fio_op *prev = NULL;
  for (fio_op *o = *head; o; prev = o, o = o->pnext) {
    if (o != op) continue;
    if (prev) prev->pnext = o->pnext;
    else *head = o->pnext;
    if (*tail == o) *tail = prev;
    o->pnext = NULL;
    return 1;
  }
  return 0;
}

static void done(threads *t, fio_op *op, int res) {
  op->res = res;
  fio_oplist_push(&t->dhead, &t->dtail, op);
}

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

/* Make fd's registration match its waiters. 0, or -errno from epoll_ctl
 * (EPERM: fd cannot be polled). */
static int rec_sync(threads *t, int fd, fdrec *r) {
  uint32_t want = (r->rhead ? EPOLLIN : 0) | (r->whead ? EPOLLOUT : 0);
  if (want == r->mask) return 0;
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = want;
  ev.data.u64 = (uint64_t)fd;
  if (!want) {
    /* ENOENT/EBADF: the kernel dropped it already (the file is gone). */
    (void)epoll_ctl(t->epfd, EPOLL_CTL_DEL, fd, &ev);
    r->mask = 0;
    t->nreg--;
    return 0;
  }
  int rc = epoll_ctl(t->epfd, r->mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  if (rc < 0 && errno == ENOENT) /* dropped by the kernel: fd was reused */
    rc = epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev);
  else if (rc < 0 && errno == EEXIST)
    rc = epoll_ctl(t->epfd, EPOLL_CTL_MOD, fd, &ev);
  if (rc < 0) return -errno;
  if (!r->mask) t->nreg++;
  r->mask = want;
  return 0;
}

/* --- trying a call without blocking ------------------------------------------ */

/* One try of op on the loop thread: res >= 0 or -errno; -EAGAIN: not ready;
 * -EOPNOTSUPP: this fd cannot be tried that way. */
static int try_op(fio_op *op, int kind) {
  int wr = op->code == FIO_OP_WRITE;
  ssize_t r;
  for (;;) {
    if (kind == K_SOCK) {
      if (op->off != (uint64_t)-1) return -ESPIPE; /* as pread would say */
      r = wr ? send(op->fd, op->buf, op->len, MSG_DONTWAIT)
             : recv(op->fd, op->buf, op->len, MSG_DONTWAIT);
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
  threads *t = loop->bdata;
  t->pooled++;
  /* It runs as the blocking call itself: say so, so that file.c does not
   * take a FIFO open for the ring's nonblocking try and open it again. */
  op->pool_only = 1;
  fio_pool_submit(loop, op);
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
    done(t, op, -ENOMEM);
    return;
  }
  int wr = op->code == FIO_OP_WRITE;
  if (wr) {
    fio_oplist_push(&r->whead, &r->wtail, op);
    r->wkind = (uint8_t)kind;
  } else {
    fio_oplist_push(&r->rhead, &r->rtail, op);
    r->rkind = (uint8_t)kind;
  }
  if (rec_sync(t, op->fd, r) < 0) {
    /* Not pollable (epoll says EPERM): a blocking call on the pool is all
     * that is left. */
    if (wr) unlink_op(&r->whead, &r->wtail, op);
    else unlink_op(&r->rhead, &r->rtail, op);
    rec_sync(t, op->fd, r);
    to_pool(loop, op);
  }
}

/* The loop-thread path for a read or write on a pollable fd of type mode. */
static void submit_polled(fio_loop *loop, threads *t, fio_op *op,
                          mode_t mode) {
  int kind = S_ISSOCK(mode) ? K_SOCK : K_NOWAIT;
  t->polled++;
  fdrec *r = (size_t)op->fd < t->nfds ? &t->fds[op->fd] : NULL;
  int wr = op->code == FIO_OP_WRITE;
  if (r && (wr ? r->whead : r->rhead)) {
    /* Others wait on this fd in this direction: queue behind them rather
     * than take data (or room) that is theirs. */
    park(loop, t, op, wr ? r->wkind : r->rkind);
    return;
  }
  int res = try_op(op, kind);
  if (res == -EAGAIN) park(loop, t, op, kind);
  else if (res == -EOPNOTSUPP && kind == K_NOWAIT) park(loop, t, op, K_POOL);
  else done(t, op, res);
}

/* Serve the waiters of one list in order while the fd has data or room. */
static void serve(fio_loop *loop, threads *t, fio_op **head, fio_op **tail,
                  int kind) {
  while (*head) {
    fio_op *op = *head;
    if (kind == K_POOL) {
      /* One per readiness report: the next waits until the fd says ready
       * again, so two calls do not race for the same bytes. */
      *head = op->pnext;
      if (!*head) *tail = NULL;
      ready_to_pool(loop, op);
      return;
    }
    int res = try_op(op, kind);
    if (res == -EAGAIN) return;
    *head = op->pnext;
    if (!*head) *tail = NULL;
    done(t, op, res);
  }
}

static void on_ready(fio_loop *loop, threads *t, int fd, uint32_t events) {
  if ((size_t)fd >= t->nfds) return;
  fdrec *r = &t->fds[fd];
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
    serve(loop, t, &r->rhead, &r->rtail, r->rkind);
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
    serve(loop, t, &r->whead, &r->wtail, r->wkind);
  rec_sync(t, fd, r);
}

/* Deliver the done list. fio_op_complete may free an op (an orphan), so
 * each is unlinked first. */
static void deliver(fio_loop *loop, threads *t) {
  fio_op *op = t->dhead;
  t->dhead = t->dtail = NULL;
  while (op) {
    fio_op *next = op->pnext;
    op->pnext = NULL;
    fio_op_complete(loop, op, op->res);
    op = next;
  }
}

/* --- the backend ------------------------------------------------------------- */

static int threads_init(fio_loop *loop) {
  threads *t = calloc(1, sizeof *t);
  if (!t) return -ENOMEM;
  t->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (t->epfd >= 0) t->epfd = fio_fd_above_std(t->epfd); /* (backend.h) */
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
  const char *p = getenv("FIBERIO_THREADS_POLL");
  t->poll = !(p && strcmp(p, "0") == 0);
  p = getenv("FIBERIO_THREADS_HELP");
  t->help = !(p && strcmp(p, "0") == 0);
  t->pwait2 = 1;
  loop->bdata = t;
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
  threads *t = loop->bdata;
  struct stat st;
  op->bpriv = NULL;
  if (op->may_inline && (op->code == FIO_OP_READ || op->code == FIO_OP_WRITE)) {
    fio_oplist_push(&t->lhead, &t->ltail, op); /* see run_later */
    return;
  }
  if (op->code == FIO_OP_CLOSE && op->fd >= 0 && fstat(op->fd, &st) == 0 &&
      pollable(st.st_mode)) {
    /* Closing a pipe, socket or tty never blocks: do it here rather than
     * queue it behind pool threads that may be blocked for long. */
    done(t, op, fio_exec(op));
    return;
  }
  if (t->poll && (op->code == FIO_OP_READ || op->code == FIO_OP_WRITE)) {
    if (op->fd < 0 || fstat(op->fd, &st) < 0) {
      done(t, op, op->fd < 0 ? -EBADF : -errno);
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
  threads *t = loop->bdata;
  if (unlink_op(&t->lhead, &t->ltail, op)) {
    done(t, op, -ECANCELED);
    return;
  }
  if (op->fd >= 0 && (size_t)op->fd < t->nfds) {
    fdrec *r = &t->fds[op->fd];
    if (unlink_op(&r->rhead, &r->rtail, op) ||
        unlink_op(&r->whead, &r->wtail, op)) {
      rec_sync(t, op->fd, r); /* before the binding closes the fd */
      done(t, op, -ECANCELED);
      return;
    }
  }
  /* On the pool, or already done (then op->bpriv is NULL: a no-op). */
  fio_pool_cancel(loop, op);
}

/* Reads and writes of regular files (op->may_inline) wait on the later list
 * until the loop waits. Handing each to a pool thread costs two thread
 * wake-ups, often across CPUs, per call: a 1 MiB read/write loop spent a
 * third of its time in them. So when the loop would sleep anyway (nothing
 * ready, nothing done), the first one runs here as a plain read(2) or
 * write(2), as io does it, and the others go to the pool, so that
 * concurrent calls still overlap. */
static void run_later(fio_loop *loop, threads *t, int may_block) {
  fio_op *op = t->lhead;
  t->lhead = t->ltail = NULL;
  while (op) {
    fio_op *next = op->pnext;
    op->pnext = NULL;
    if (may_block) {
      t->inlined++;
      done(t, op, fio_exec(op));
      may_block = 0;
    } else {
      to_pool(loop, op);
    }
    op = next;
  }
}

/* The loop would sleep while its readfiles wait in the pool's queue, more
 * of them than threads being woken for them: run them here, newest first
 * (pool threads take the oldest), until a completion is posted or none is
 * left. Each one costs no thread hand-off either way, and the loop thread's
 * CPU, idle otherwise, reads files too: on two CPUs, 10,000 small files took
 * 22 ms where the pool alone took 28 to 37 (bench/README.md). Only what
 * cannot block for ever runs here: fio_exec_readfile_nowait opens without
 * waiting and reads regular files only; a FIFO or a device goes back to the
 * pool, open. FIBERIO_THREADS_HELP=0 turns this off. */
static int helpable(const fio_op *op) {
  /* (not one handed back to the pool with its FIFO or device open) */
  return op->code == FIO_OP_READFILE && op->fd2 < 0;
}

static void help(fio_loop *loop, threads *t) {
  while (!atomic_load_explicit(&loop->posted, memory_order_relaxed)) {
    fio_op *op = fio_pool_take(loop, helpable);
    if (!op) return;
    int res = fio_exec_readfile_nowait(op);
    if (res == -EAGAIN) {
      /* Not for here (fio_exec_readfile_nowait): the pool's again. Stop:
       * one refused without an fd kept (a lease) would be taken again. */
      to_pool(loop, op);
      return;
    }
    t->helped++;
    done(t, op, res);
  }
}

static void threads_wait(fio_loop *loop, int64_t timeout_ns) {
  threads *t = loop->bdata;
  struct epoll_event ev[MAX_EVENTS];
  if (t->lhead) run_later(loop, t, timeout_ns != 0 && !t->dhead);
  if (timeout_ns != 0 && !t->dhead && t->help) help(loop, t);
  if (t->dhead || (timeout_ns != 0 && fio_loop_wakes_on(loop))) timeout_ns = 0;
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
  deliver(loop, t);
  fio_loop_drain(loop);
}

static void threads_wake(fio_loop *loop) { fio_loop_wake_fd(loop); }

static void threads_close(fio_loop *loop) {
  threads *t = loop->bdata;
  if (!t) return;
  /* Every orphaned op was canceled: those waiting here are on the done list
   * already; those on the pool are being interrupted. Give them a bounded
   * time, then leave the rest to the pool, which frees them when their
   * syscalls return, and never posts to this loop again. */
  uint64_t until = fio_now_ns() + 1000000000u;
  while (loop->ninflight && fio_now_ns() < until) threads_wait(loop, 10000000);
  fio_pool_forget(loop);
  deliver(loop, t);
  fio_loop_drain(loop); /* posted before the forget */
  close(t->epfd);
  free(t->fds);
  free(t);
  loop->bdata = NULL;
}

/* fio._info(): what this loop does with pollable fds and the pool. */
static void threads_info(fio_loop *loop, lua_State *L) {
  threads *t = loop->bdata;
  fio_pool_stats st;
  fio_pool_stats_get(&st);
  lua_pushboolean(L, t->poll);
  lua_setfield(L, -2, "poll");
  lua_pushinteger(L, (lua_Integer)t->polled);
  lua_setfield(L, -2, "polled");
  lua_pushinteger(L, (lua_Integer)t->pooled);
  lua_setfield(L, -2, "pooled");
  lua_pushinteger(L, (lua_Integer)t->inlined);
  lua_setfield(L, -2, "inlined");
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
