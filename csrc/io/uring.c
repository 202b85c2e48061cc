/* uring.c — the io_uring backend: one ring per loop (so per thread).
 *
 * Set-up tries SINGLE_ISSUER|DEFER_TASKRUN|COOP_TASKRUN and drops one flag at
 * a time on EINVAL; opcodes are probed once. SQEs are prepared as operations
 * are submitted and handed to the kernel in one batch when the loop waits
 * (a full SQ is flushed early). Every CQE is reaped in the same wait; CQ
 * overflow (kept by the kernel with FEAT_NODROP) is flushed and reaped too.
 * user_data is the fio_op (its low 4 bits, free in a malloc'd pointer, name
 * the SQE of a readfile chain), 0 for our own cancel requests, WAKE_TAG for
 * the poll on the loop's wake eventfd, WAKE_MSG for a MSG_RING wake, or
 * SLOT_CLOSED for the close of a readfile's fixed-file slot. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liburing.h>

#include "io/backend.h"
#include "io/exec.h"
#include "io/pool.h"
#include "util/config.h"
#include "util/process.h"
#include "util/fd.h"

/* Valgrind cannot see the kernel write into buffers on io_uring's behalf:
 * tell it, so `make valgrind` checks our code rather than flagging every
 * read. No-ops outside valgrind. */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif

/* What an op keeps in its backend_area: its pool job first (backend.h),
 * where it runs, and the state of a readfile chain (see "readfile on the
 * ring"). */
typedef struct uring_op {
  fio_job job;
  uint8_t on_pool;        /* this submission went to the pool */
  uint8_t rf_pending;     /* CQEs of this step not yet reaped */
  uint8_t rf_step;        /* 0: open, A, B; 1: A, B; 2: poll, A, B */
  int32_t rf_res[3];      /* this step's results: open, read A, read B */
  int32_t rf_slot;        /* its slot in the ring's file table */
  uint32_t rf_la;         /* bytes read A asked (B reads just past them) */
} uring_op;
_Static_assert(sizeof(uring_op) <= FIO_OP_BACKEND_AREA,
               "uring_op fits in an op's backend_area");

static uring_op *uop(fio_op *op) { return (uring_op *)(void *)op->backend_area; }

typedef struct uring {
  struct io_uring ring;
  fio_pool_client client;  /* this loop's jobs on the pool */
  unsigned flags;          /* setup flags the kernel took */
  uint64_t probe;          /* supported opcodes < 64 */
  int wake_armed;          /* the wake poll is in the kernel */
  uint64_t noring;         /* FIO_OP_* bits forced onto the pool (a test
                            * build's FIBERIO_NO_RING_OPS; else 0) */
  uint64_t einval;         /* FIO_OP_* bits whose ring result is replaced by
                            * -EINVAL (a test build's stand-in for a kernel
                            * refusing the call; else 0) */
  uint64_t pooled, reruns; /* ops sent to the pool: no opcode / refused */
  uint64_t helped;         /* readfiles taken back from the pool (oppool.c) */
  int no_msg;              /* wake through the eventfd (a test build's) */
  int poll_wait;           /* sleep in ppoll (a test build's, for valgrind) */
  atomic_ulong msg_wakes, fd_wakes; /* wakes sent to this loop, by kind */
  /* readfile chains (see "readfile on the ring") */
  int *rf_free, rf_nfree;  /* free slots of the registered file table */
  int *rf_closing, rf_nclosing; /* slots whose close is not yet queued */
  int rf_nslots;           /* 0: no table, readfile runs on the pool */
  fio_dlist rf_waiting;    /* chains whose next step is not yet queued */
  uint64_t rf_done;        /* readfiles done on the ring */
} uring;

#define WAKE_TAG 1    /* never an op: ops are aligned */
#define WAKE_MSG 2    /* a MSG_RING from uring_wake */
#define SLOT_CLOSED 3 /* a slot's close: a CQE only if it failed */
#define SUB_MASK 15   /* low bits of a readfile chain SQE's user_data: */
enum { SUB_OPEN = 1, SUB_A, SUB_B };

static struct io_uring_sqe *get_sqe(fio_loop *loop, uring *u);

static void arm_wake(fio_loop *loop, uring *u) {
  struct io_uring_sqe *sqe = get_sqe(loop, u);
  io_uring_prep_poll_add(sqe, loop->wakefd, POLLIN);
  io_uring_sqe_set_data64(sqe, WAKE_TAG);
  u->wake_armed = 1;
}

#ifdef FIBERIO_TEST_HOOKS
/* The FIO_OP_* bits named in a test hook's list (util/config.h). */
static uint64_t op_mask(const char *list) {
  static const char *const names[FIO_OP_LAST] = {
      NULL,       "read",      "write",    "close",    "openat",
      "statx",    "fsync",     "ftruncate", "unlinkat", "renameat",
      "mkdirat",  "symlinkat", "linkat", [FIO_OP_WAITID] = "waitid"};
  uint64_t m = 0;
  for (int c = 1; list && c < FIO_OP_LAST; c++)
    if (names[c] && fio_list_has(list, names[c])) m |= FIO_OP_BIT(c);
  return m;
}

/* Set-up with these flags fails with EINVAL, as on a kernel that lacks
 * them (FIBERIO_TEST_REFUSE_FLAGS). */
static int refused(unsigned flags) {
  const fio_test_hooks *test = &fio_config_env()->test;
  const char *list = test->refuse_flags;
  /* a poll on the ring does not see completions DEFER_TASKRUN defers */
  int defer_ok = !test->ring_poll_wait && !fio_list_has(list, "defer_taskrun");
  return ((flags & IORING_SETUP_SINGLE_ISSUER) && fio_list_has(list, "single_issuer")) ||
         ((flags & IORING_SETUP_DEFER_TASKRUN) && !defer_ok) ||
         ((flags & IORING_SETUP_COOP_TASKRUN) && fio_list_has(list, "coop_taskrun"));
}
#else
static int refused(unsigned flags) { return (void)flags, 0; }
#endif

_Thread_local int fio_uring_attach_wq = -1;

int fio_uring_fd(fio_loop *loop) {
  if (!loop->started || loop->be != &fio_backend_uring || !loop->backend_state)
    return -1;
  return ((uring *)loop->backend_state)->ring.ring_fd;
}

static void rf_init(uring *u);
static int rf_start(fio_loop *loop, uring *u, fio_op *op);

/* io_uring_queue_init_params with these setup flags, sharing attach's
 * io-wq (attach >= 0). 0 or -errno. */
static int setup(uring *u, unsigned entries, unsigned flags, int attach) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
  p.cq_entries = entries * 4;
  if (attach >= 0) {
    p.flags |= IORING_SETUP_ATTACH_WQ;
    p.wq_fd = (unsigned)attach;
  }
  return refused(flags) ? -EINVAL
                        : io_uring_queue_init_params(entries, &u->ring, &p);
}

static int uring_init(fio_loop *loop) {
  uring *u = calloc(1, sizeof *u);
  if (!u) return -ENOMEM;
  unsigned entries = loop->cfg.ring_entries ? loop->cfg.ring_entries : 256;
  static const unsigned tries[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
          IORING_SETUP_COOP_TASKRUN,
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
      IORING_SETUP_COOP_TASKRUN, 0};
  int r = -EINVAL;
  int attach = fio_uring_attach_wq;
  for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
    r = setup(u, entries, tries[i], attach);
    if (r == -EINVAL && attach >= 0) {
      /* The flags, or the attach (wq_fd no ring any more): the same flags
       * without it tell which; the attach stays for the next flags if
       * they were refused too. */
      r = setup(u, entries, tries[i], -1);
      if (r != -EINVAL) attach = -1;
    }
    if (r != -EINVAL) {
      u->flags = tries[i] | (attach >= 0 ? IORING_SETUP_ATTACH_WQ : 0);
      break;
    }
  }
  if (r < 0) {
    free(u);
    return r;
  }
  if (u->ring.ring_fd <= 2) {
    /* Never where a standard stream was (util/fd.h): the rings are mapped
     * already, and nothing is registered yet, so the ring can move. */
    int fd = fio_fd_above_std(u->ring.ring_fd);
    if (fd < 0) {
      u->ring.ring_fd = u->ring.enter_ring_fd = -1; /* (closed) */
      io_uring_queue_exit(&u->ring);
      free(u);
      return fd;
    }
    u->ring.ring_fd = u->ring.enter_ring_fd = fd;
  }
  struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);
  if (probe) {
    for (int op = 0; op < 64 && op <= probe->last_op; op++)
      if (io_uring_opcode_supported(probe, op)) u->probe |= 1ull << op;
    io_uring_free_probe(probe);
  }
  /* Bound the kernel's worker threads for this ring: [bounded, unbounded]. */
  long ncpu = fio_ncpu();
  unsigned workers[2] = {(unsigned)(ncpu > 0 ? ncpu * 4 : 8), 64};
  io_uring_register_iowq_max_workers(&u->ring, workers);
  io_uring_register_ring_fd(&u->ring); /* saves an fd lookup per enter */
#ifdef FIBERIO_TEST_HOOKS
  const fio_test_hooks *test = &fio_config_env()->test;
  u->noring = op_mask(test->no_ring_ops);
  u->einval = op_mask(test->ring_einval);
  u->no_msg = test->no_msg_ring != NULL;
  u->poll_wait = test->ring_poll_wait != NULL;
#endif
  rf_init(u);
  loop->backend_state = u;
  /* The loop thread runs lone ops itself (core/op.c): the ring hands
   * statx, renameat, unlinkat, mkdirat and buffered ext4 writes to an
   * io-wq thread, two thread wake-ups a call. (Not the ops a test build
   * sends elsewhere.) */
  loop->inline_codes &= ~(u->noring | u->einval);
  arm_wake(loop, u);
  return 0;
}

static void to_pool(fio_loop *loop, fio_op *op);
static void rf_cqe(fio_loop *loop, uring *u, fio_op *op, int sub, int res);

/* Whether an open the ring made (res) of an op with fifo_waits must be
 * made again, blocking, on the pool. The ring tries an open without
 * blocking first: a FIFO then opens at once for reading, or fails with
 * ENXIO for writing, where open(2) waits for the other end. The first
 * reader stays open until the second is (op->fd2, owned: closed with op,
 * or taken by exec.c's fifo_open_read): a writer it let in must not find
 * the FIFO without a reader meanwhile. A read-only open's file type is
 * left in op->res_mode (the binding would look too). */
static int fifo_reopen(fio_op *op, int res) {
  struct stat sb;
  if (!op->fifo_waits) return 0;
  if (res == -ENXIO) return 1;
  if (res < 0 || (op->flags & O_ACCMODE) != O_RDONLY || fstat(res, &sb) < 0)
    return 0;
  op->res_mode = sb.st_mode;
  if (!S_ISFIFO(sb.st_mode)) return 0;
  op->fd2 = res;
  op->owns |= FIO_OWN_FD2;
  return 1;
}

static void reap(fio_loop *loop, uring *u) {
  for (;;) {
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
      uint64_t tag = cqe->user_data;
      n++;
      if (tag == WAKE_TAG) {
        u->wake_armed = 0;
        fio_loop_drain_wakefd(loop); /* (wakes stay off: fio_loop_wakes_on) */
      } else if (tag == WAKE_MSG || tag == SLOT_CLOSED) {
        /* a wake (they stay off: fio_loop_wakes_on); the close of an empty
         * or already closed slot: nothing to do */
      } else if (tag & SUB_MASK) {
        rf_cqe(loop, u, (fio_op *)(uintptr_t)(tag & ~(uint64_t)SUB_MASK),
               (int)(tag & SUB_MASK), cqe->res);
      } else if (tag) {
        fio_op *op = (fio_op *)(uintptr_t)tag;
        int res = cqe->res;
        if (u->einval & FIO_OP_BIT(op->code)) res = -EINVAL;
        if ((res == -EOPNOTSUPP || res == -EINVAL) && !op->cancel_sent &&
            op->code != FIO_OP_READ && op->code != FIO_OP_WRITE) {
          /* The probe listed the opcode, but this kernel or filesystem
           * refuses the call on the ring: rerun it on the pool. */
          u->reruns++;
          to_pool(loop, op);
          continue;
        }
        if (op->code == FIO_OP_OPENAT && fifo_reopen(op, res)) {
          if (!op->cancel_sent) {
            to_pool(loop, op);
            continue;
          }
          res = -ECANCELED; /* (what it opened is op's: closed with it) */
        }
        if ((op->code == FIO_OP_READ || op->code == FIO_OP_RECV) && res > 0)
          VALGRIND_MAKE_MEM_DEFINED(op->buf, res);
        if (op->code == FIO_OP_ACCEPT && res >= 0) /* (fio_sockaddr) */
          VALGRIND_MAKE_MEM_DEFINED(op->mem, sizeof(struct sockaddr_storage) +
                                                 sizeof(socklen_t));
        if (op->code == FIO_OP_RECVMSG && res >= 0) {
          /* (the msghdr, its iovec, the peer, the control room, the data) */
          const struct msghdr *m = (const struct msghdr *)(void *)op->mem;
          VALGRIND_MAKE_MEM_DEFINED(op->mem, sizeof *m);
          if (m->msg_name) VALGRIND_MAKE_MEM_DEFINED(m->msg_name, m->msg_namelen);
          if (m->msg_control) VALGRIND_MAKE_MEM_DEFINED(m->msg_control, m->msg_controllen);
          VALGRIND_MAKE_MEM_DEFINED(m->msg_iov[0].iov_base, res);
        }
        if (op->code == FIO_OP_STATX && res == 0)
          VALGRIND_MAKE_MEM_DEFINED(op->mem, sizeof(struct statx));
        if (op->code == FIO_OP_GETXATTR && res > 0)
          VALGRIND_MAKE_MEM_DEFINED(op->mem, res);
        if (op->code == FIO_OP_WAITID && res > 0) res = 0; /* (the poll's mask) */
        fio_op_done(loop, op, res);
      }
    }
    io_uring_cq_advance(&u->ring, n);
    if (!io_uring_cq_has_overflow(&u->ring)) break;
    io_uring_get_events(&u->ring); /* move overflowed CQEs into the ring */
  }
}

/* Room for n SQEs in the SQ, flushing it to the kernel first if need be
 * (n > 1: a linked chain, which must go to the kernel in one submission). */
static void sq_room(fio_loop *loop, uring *u, unsigned n) {
  assert(n <= u->ring.sq.ring_entries); /* (else this never ends) */
  while (io_uring_sq_space_left(&u->ring) < n) {
    int r = io_uring_submit(&u->ring);
    if (r == -EBUSY || r == -EAGAIN) reap(loop, u); /* CQ backed up */
    else if (r < 0 && r != -EINTR) {
      /* Cannot go on without losing a completion: a bug or a broken ring. */
      fprintf(stderr, "fiberio: io_uring_submit: %s\n", strerror(-r));
      abort();
    }
  }
}

/* A free SQE, flushing a full SQ to the kernel first. */
static struct io_uring_sqe *get_sqe(fio_loop *loop, uring *u) {
  sq_room(loop, u, 1);
  return io_uring_get_sqe(&u->ring);
}

#ifndef IORING_OP_WAITID_NUM
#define IORING_OP_WAITID_NUM 50 /* Linux 6.7; newer than liburing 2.3 */
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#ifndef IORING_OP_FTRUNCATE_NUM
#define IORING_OP_FTRUNCATE_NUM 55 /* newer than liburing 2.3's headers */
#endif

/* The ring opcode for an operation, or -1: none (it runs on the pool). */
static int opcode_of(int code) {
  switch (code) {
  case FIO_OP_READ: return IORING_OP_READ;
  case FIO_OP_WRITE: return IORING_OP_WRITE;
  case FIO_OP_CLOSE: return IORING_OP_CLOSE;
  case FIO_OP_OPENAT: return IORING_OP_OPENAT;
  case FIO_OP_STATX: return IORING_OP_STATX;
  case FIO_OP_FSYNC: return IORING_OP_FSYNC;
  case FIO_OP_FTRUNCATE: return IORING_OP_FTRUNCATE_NUM;
  case FIO_OP_UNLINKAT: return IORING_OP_UNLINKAT;
  case FIO_OP_RENAMEAT: return IORING_OP_RENAMEAT;
  case FIO_OP_MKDIRAT: return IORING_OP_MKDIRAT;
  case FIO_OP_SYMLINKAT: return IORING_OP_SYMLINKAT;
  case FIO_OP_LINKAT: return IORING_OP_LINKAT;
  case FIO_OP_GETXATTR: return IORING_OP_GETXATTR;
  case FIO_OP_SETXATTR: return IORING_OP_SETXATTR;
  case FIO_OP_WAITID: return IORING_OP_POLL_ADD; /* (WAITID where probed: prep) */
  case FIO_OP_ACCEPT: return IORING_OP_ACCEPT;
  case FIO_OP_CONNECT: return IORING_OP_CONNECT;
  case FIO_OP_POLL: return IORING_OP_POLL_ADD;
  case FIO_OP_RECV: return IORING_OP_RECV;
  case FIO_OP_SEND: return IORING_OP_SEND;
  case FIO_OP_RECVMSG: return IORING_OP_RECVMSG;
  case FIO_OP_SENDMSG: return IORING_OP_SENDMSG;
  }
  return -1;
}

/* What the ring cannot do runs on the pool; its completion is posted. */
static void to_pool(fio_loop *loop, fio_op *op) {
  uring *u = loop->backend_state;
  uop(op)->on_pool = 1;
  fio_op_to_pool(&u->client, op);
}

static void prep(fio_loop *loop, uring *u, fio_op *op);

static void uring_submit(fio_loop *loop, fio_op *op) {
  uring *u = loop->backend_state;
  int opc = opcode_of(op->code);
  uop(op)->on_pool = 0;
  if (op->fd2 >= 0 && (op->code == FIO_OP_READFILE ||
                       (op->code == FIO_OP_OPENAT && op->fifo_waits))) {
    /* the loop thread opened it, and it could wait (exec.h): the pool
     * goes on from that fd */
    to_pool(loop, op);
    return;
  }
  if (op->code == FIO_OP_READFILE && rf_start(loop, u, op)) return;
  if ((op->code == FIO_OP_GETXATTR || op->code == FIO_OP_SETXATTR) &&
      (op->flags & AT_SYMLINK_NOFOLLOW))
    opc = -1; /* (the ring has no l- form) */
  if (opc < 0 || opc >= 64 || !(u->probe & (1ull << opc)) ||
      ((u->noring & FIO_OP_BIT(op->code)) && op->code != FIO_OP_WAITID)) {
    u->pooled++;
    to_pool(loop, op);
    return;
  }
  prep(loop, u, op);
}

/* The SQE for op. */
static void prep(fio_loop *loop, uring *u, fio_op *op) {
  struct io_uring_sqe *sqe = get_sqe(loop, u);
  switch (op->code) {
  case FIO_OP_READ:
    io_uring_prep_read(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
    break;
  case FIO_OP_WRITE:
    io_uring_prep_write(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
    break;
  case FIO_OP_CLOSE:
    io_uring_prep_close(sqe, op->fd);
    break;
  case FIO_OP_OPENAT:
    io_uring_prep_openat(sqe, AT_FDCWD, op->path, op->flags, op->mode);
    break;
  case FIO_OP_STATX:
    io_uring_prep_statx(sqe, op->path[0] ? AT_FDCWD : op->fd, op->path,
                        op->flags, STATX_BASIC_STATS,
                        (struct statx *)op->mem);
    break;
  case FIO_OP_FSYNC:
    io_uring_prep_fsync(sqe, op->fd, op->flags ? IORING_FSYNC_DATASYNC : 0);
    break;
  case FIO_OP_FTRUNCATE:
    io_uring_prep_rw(IORING_OP_FTRUNCATE_NUM, sqe, op->fd, NULL, 0, op->off);
    break;
  case FIO_OP_UNLINKAT:
    io_uring_prep_unlinkat(sqe, AT_FDCWD, op->path, op->flags);
    break;
  case FIO_OP_RENAMEAT:
    io_uring_prep_renameat(sqe, AT_FDCWD, op->path, AT_FDCWD, op->path2, 0);
    break;
  case FIO_OP_MKDIRAT:
    io_uring_prep_mkdirat(sqe, AT_FDCWD, op->path, op->mode);
    break;
  case FIO_OP_SYMLINKAT:
    io_uring_prep_symlinkat(sqe, op->path, AT_FDCWD, op->path2);
    break;
  case FIO_OP_LINKAT:
    io_uring_prep_linkat(sqe, AT_FDCWD, op->path, AT_FDCWD, op->path2, 0);
    break;
  case FIO_OP_GETXATTR:
    io_uring_prep_getxattr(sqe, op->path2, op->mem, op->path, (unsigned)op->len);
    break;
  case FIO_OP_SETXATTR:
    io_uring_prep_setxattr(sqe, op->path2, op->buf, op->path, (int)op->mode,
                           (unsigned)op->want);
    break;
  case FIO_OP_WAITID:
    if ((u->probe & 1ull << IORING_OP_WAITID_NUM) &&
        !(u->noring & FIO_OP_BIT(FIO_OP_WAITID))) {
      /* (liburing 2.3 has no io_uring_prep_waitid: its fields by hand) */
      io_uring_prep_rw(IORING_OP_WAITID_NUM, sqe, op->fd, NULL, P_PIDFD, 0);
      sqe->file_index = WEXITED | WNOWAIT; /* the options */
      sqe->addr2 = (uint64_t)(uintptr_t)op->mem; /* siginfo_t */
    } else {
      /* before 6.7: a pidfd polls readable once its process has ended */
      io_uring_prep_poll_add(sqe, op->fd, POLLIN);
    }
    break;
  case FIO_OP_ACCEPT: {
    struct fio_sockaddr *sa = (struct fio_sockaddr *)(void *)op->mem;
    sa->len = sizeof sa->addr;
    io_uring_prep_accept(sqe, op->fd, (struct sockaddr *)&sa->addr, &sa->len,
                         SOCK_CLOEXEC);
    break;
  }
  case FIO_OP_CONNECT: {
    const struct fio_sockaddr *sa = (const struct fio_sockaddr *)(void *)op->mem;
    io_uring_prep_connect(sqe, op->fd, (const struct sockaddr *)&sa->addr, sa->len);
    break;
  }
  case FIO_OP_POLL:
    io_uring_prep_poll_add(sqe, op->fd, op->mode);
    break;
  case FIO_OP_RECV:
    io_uring_prep_recv(sqe, op->fd, op->buf, op->len, op->flags);
    break;
  case FIO_OP_SEND:
    io_uring_prep_send(sqe, op->fd, op->buf, op->len, op->flags | MSG_NOSIGNAL);
    break;
  case FIO_OP_RECVMSG:
    io_uring_prep_recvmsg(sqe, op->fd, (struct msghdr *)(void *)op->mem,
                          (unsigned)op->flags);
    break;
  case FIO_OP_SENDMSG:
    io_uring_prep_sendmsg(sqe, op->fd, (const struct msghdr *)(void *)op->mem,
                          (unsigned)op->flags | MSG_NOSIGNAL);
    break;
  }
  io_uring_sqe_set_data(sqe, op);
}

/* --- readfile on the ring ---------------------------------------------------
 *
 * fio.readfile without an fd, an fstat or a close syscall: step 0 is three
 * linked SQEs on a slot of the ring's registered file table,
 *
 *   openat (direct, into the slot) -> read A -> read B
 *
 * A and B both read at the file position, both with RWF_NOWAIT; B reads
 * into the buffer just past A's part, and A is hard-linked to B so a short
 * A does not sever the chain. A read that returns 0 is the end of any kind
 * of file, so when B returns 0 the file is whole: a small file in the page
 * cache is read in one submission and one reap. A read that would block
 * returns -EAGAIN instead (a FIFO with no data yet, a file not in the page
 * cache), -EOPNOTSUPP where the file has no nowait reads (/proc); then, and when
 * the file is longer than the buffer, step 1 and after are A (which may
 * block) hard-linked to B (RWF_NOWAIT) into the rest of the buffer, grown
 * by doubling, until a read returns 0. (Step 2, poll -> A -> B with both
 * reads RWF_NOWAIT, is for a FIFO opened before any writer: see
 * rf_step_done.) Only a step's first SQE can block, and it is in the
 * kernel from the moment the step is submitted, so a cancel of it always
 * finds it.
 *
 * A step ends when its last CQE is reaped; its next step, and the close of
 * the slot at the end, are queued by rf_flush once the reaping is over, and
 * the closes are submitted before the wait returns (uring_wait): a file is
 * closed before its readfile returns. The close posts no CQE unless it
 * fails; the slot is free for the next openat queued after it. Without a table (kernels before
 * 5.19, or the opcodes missing), with every slot busy, or when the kernel
 * refuses the direct openat, readfile is one job on the pool.
 *
 * The table is small where there are other CPUs: a cached file is read in
 * the submitting call, on the loop's CPU, so past RF_SLOTS_SPREAD chains
 * in flight a readfile goes to the pool, whose threads read on the other
 * CPUs meanwhile (10,000 files of 4 KiB, 64 in flight, 2 CPUs: 19 ms,
 * against 35 ms on the ring alone and 28 ms for bench/readfiles.c). */
#define RF_SLOTS 256
#define RF_SLOTS_SPREAD 16

static void rf_init(uring *u) {
  const uint64_t need =
      FIO_OP_BIT(FIO_OP_OPENAT) | FIO_OP_BIT(FIO_OP_READ) | FIO_OP_BIT(FIO_OP_CLOSE);
  if (!(u->probe & 1ull << IORING_OP_OPENAT) || !(u->probe & 1ull << IORING_OP_READ) ||
      !(u->probe & 1ull << IORING_OP_CLOSE) ||
      !(u->probe & 1ull << IORING_OP_POLL_ADD) || (u->noring & need) ||
      u->ring.sq.ring_entries < 3) /* (a step's chain is 3 SQEs) */
    return;
  long n = fio_ncpu() > 1 ? RF_SLOTS_SPREAD : RF_SLOTS;
#ifdef FIBERIO_TEST_HOOKS
  /* FIBERIO_TEST_RF_SLOTS=n: a table of n slots (0: none), for the specs */
  const char *slots = fio_config_env()->test.rf_slots;
  if (slots) n = atol(slots);
#endif
  struct rlimit rl; /* the kernel refuses a table larger than this */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n)
    n = (long)rl.rlim_cur;
  if (n <= 0) return;
  u->rf_free = malloc((size_t)n * sizeof(int));
  u->rf_closing = malloc((size_t)n * sizeof(int));
  if (!u->rf_free || !u->rf_closing ||
      io_uring_register_files_sparse(&u->ring, (unsigned)n) < 0) {
    free(u->rf_free);
    free(u->rf_closing);
    u->rf_free = u->rf_closing = NULL;
    return;
  }
  for (long i = 0; i < n; i++) u->rf_free[i] = (int)(n - 1 - i);
  u->rf_nfree = u->rf_nslots = (int)n;
}

/* Queue the SQEs of op's current step (they go in one submission). */
static void rf_prep(fio_loop *loop, uring *u, fio_op *op) {
  size_t room = op->want - op->got;
  size_t la = room - room / 8, lb;
  if (la > FIO_MAXIO) la = FIO_MAXIO;
  lb = room - la > FIO_MAXIO ? FIO_MAXIO : room - la;
  uop(op)->rf_la = (uint32_t)la;
  uop(op)->rf_res[0] = 0;
  uop(op)->rf_pending = uop(op)->rf_step == 1 ? 2 : 3;
  sq_room(loop, u, uop(op)->rf_pending);
  uint64_t tag = (uint64_t)(uintptr_t)op;
  struct io_uring_sqe *sqe;
  if (uop(op)->rf_step == 2) {
    sqe = io_uring_get_sqe(&u->ring);
    io_uring_prep_poll_add(sqe, uop(op)->rf_slot, POLLIN);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, tag | SUB_OPEN);
  } else if (!uop(op)->rf_step) {
    sqe = io_uring_get_sqe(&u->ring);
    /* (a direct descriptor is never inherited: no O_CLOEXEC, which the
     * kernel refuses with one) */
    io_uring_prep_openat_direct(sqe, AT_FDCWD, op->path, O_RDONLY, 0,
                                (unsigned)uop(op)->rf_slot);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, tag | SUB_OPEN);
  }
  sqe = io_uring_get_sqe(&u->ring);
  io_uring_prep_read(sqe, uop(op)->rf_slot, op->buf + op->got, (unsigned)la, (uint64_t)-1);
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
  if (uop(op)->rf_step != 1) sqe->rw_flags = RWF_NOWAIT;
  io_uring_sqe_set_data64(sqe, tag | SUB_A);
  sqe = io_uring_get_sqe(&u->ring);
  io_uring_prep_read(sqe, uop(op)->rf_slot, op->buf + op->got + la, (unsigned)lb,
                     (uint64_t)-1);
  sqe->flags |= IOSQE_FIXED_FILE;
  sqe->rw_flags = RWF_NOWAIT;
  io_uring_sqe_set_data64(sqe, tag | SUB_B);
}

/* Start op (FIO_OP_READFILE) on the ring; 0 if it cannot (no free slot). */
static int rf_start(fio_loop *loop, uring *u, fio_op *op) {
  /* (op->buf: op->want bytes lent by the loop, or no buffer: the pool
   * then finds one) */
  if (!u->rf_nfree || op->buf == op->mem) return 0;
  uop(op)->rf_slot = u->rf_free[--u->rf_nfree];
  op->got = 0;
  uop(op)->rf_step = 0;
  rf_prep(loop, u, op);
  return 1;
}

/* op is done with its slot, which may hold a file: close it (rf_flush). */
static void rf_slot_close(uring *u, fio_op *op) {
  u->rf_closing[u->rf_nclosing++] = uop(op)->rf_slot;
  uop(op)->rf_slot = -1;
}

/* End op with res (0: op->buf holds the op->got bytes read). The slot is
 * closed. */
static void rf_end(fio_loop *loop, uring *u, fio_op *op, int res) {
  rf_slot_close(u, op);
  if (res == 0) u->rf_done++;
  else op->got = 0;
  fio_op_done(loop, op, res);
}

/* Leave op's next step to rf_flush. */
static void rf_next(uring *u, fio_op *op) {
  fio_dlist_push(&u->rf_waiting, &op->queue_node);
}

/* A step's last CQE is in: end op, or leave its next step to rf_flush. */
static void rf_step_done(fio_loop *loop, uring *u, fio_op *op) {
  int open = uop(op)->rf_res[0], a = uop(op)->rf_res[1], b = uop(op)->rf_res[2];
  if (uop(op)->rf_step == 2 && open < 0) { /* the poll failed or was canceled */
    rf_end(loop, u, op, open);
    return;
  }
  if (!uop(op)->rf_step && (u->einval & FIO_OP_BIT(FIO_OP_OPENAT)) && open >= 0) {
    /* FIBERIO_TEST_RING_EINVAL=openat: as if the kernel refused it */
    rf_slot_close(u, op);
    open = -EINVAL;
  }
  if (!uop(op)->rf_step && open < 0) {
    if (uop(op)->rf_slot >= 0) u->rf_free[u->rf_nfree++] = uop(op)->rf_slot;
    uop(op)->rf_slot = -1;
    if ((open == -EINVAL || open == -EOPNOTSUPP) && !op->cancel_sent) {
      /* a kernel that lists openat but refuses it (or a direct one) here */
      u->reruns++;
      to_pool(loop, op);
    } else {
      fio_op_done(loop, op, open);
    }
    return;
  }
  /* RWF_NOWAIT: -EAGAIN if the read would block, -EOPNOTSUPP where the
   * file cannot tell (/proc): no data, no end, the next step reads */
  if (uop(op)->rf_step != 1 && a == -EOPNOTSUPP) a = -EAGAIN;
  if (!uop(op)->rf_step && a == 0 && b <= 0) {
    /* Nothing at all: an empty file, or a FIFO no writer has opened yet.
     * The ring opened it without waiting (it tries every open non-blocking
     * first, and a FIFO then opens at once for reading), where io.open
     * waits for a writer. Step 2 polls first: at once for a file; for such
     * a FIFO, until a writer comes and writes or goes (POLLHUP is held back
     * until a writer has been seen). Closing it and opening again would
     * let a writer in between find no reader. */
    uop(op)->rf_step = 2;
    rf_next(u, op);
    return;
  }
  if (a < 0 && a != -EAGAIN) {
    rf_end(loop, u, op, a);
    return;
  }
  /* B read just past A's part: close the gap a short A (or one that got
   * nothing: -EAGAIN, or 0 from a FIFO a writer opened since) left */
  size_t ga = a > 0 ? (size_t)a : 0;
  if (b > 0 && ga < uop(op)->rf_la)
    memmove(op->buf + op->got + ga, op->buf + op->got + uop(op)->rf_la, (size_t)b);
  op->got += ga + (b > 0 ? (size_t)b : 0);
  /* The end: the last read that ran returned 0. B's errors other than
   * that are left to the next step's A. */
  if (b == 0 || (a == 0 && b < 0)) {
    rf_end(loop, u, op, 0);
    return;
  }
  uop(op)->rf_step = 1;
  rf_next(u, op);
}

static void rf_cqe(fio_loop *loop, uring *u, fio_op *op, int sub, int res) {
  uop(op)->rf_res[sub - 1] = res;
  if (res > 0 && sub == SUB_A) VALGRIND_MAKE_MEM_DEFINED(op->buf + op->got, res);
  if (res > 0 && sub == SUB_B)
    VALGRIND_MAKE_MEM_DEFINED(op->buf + op->got + uop(op)->rf_la, res);
  if (--uop(op)->rf_pending == 0) rf_step_done(loop, u, op);
}

/* Queue what reaping left to do: next steps (or their end, when canceled
 * or out of memory), then the closes of finished chains' slots. Returns 1
 * if it ended an op (its waiter is ready: the wait must not block). */
static int rf_flush(fio_loop *loop, uring *u) {
  int ended = 0;
  fio_op *op;
  while ((op = fio_op_of(fio_dlist_pop(&u->rf_waiting)))) {
    if (op->cancel_sent) {
      rf_end(loop, u, op, -ECANCELED);
      ended = 1;
      continue;
    }
    if (op->want - op->got < op->want / 4 && fio_op_buf_double(op) < 0) {
      rf_end(loop, u, op, -ENOMEM);
      ended = 1;
      continue;
    }
    rf_prep(loop, u, op);
  }
  while (u->rf_nclosing) {
    int slot = u->rf_closing[--u->rf_nclosing];
    struct io_uring_sqe *sqe = get_sqe(loop, u);
    io_uring_prep_close_direct(sqe, (unsigned)slot);
    if (u->ring.features & IORING_FEAT_CQE_SKIP) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, SLOT_CLOSED);
    u->rf_free[u->rf_nfree++] = slot; /* its next openat comes after */
  }
  return ended;
}

static void uring_cancel(fio_loop *loop, fio_op *op) {
  uring *u = loop->backend_state;
  if (uop(op)->on_pool) {
    fio_pool_cancel(fio_op_job(op));
    return;
  }
  uint64_t tag = (uint64_t)(uintptr_t)op;
  if (op->code == FIO_OP_READFILE) {
    /* the step's first SQE, the only one that can block; between steps,
     * rf_flush sees cancel_sent */
    if (!uop(op)->rf_pending) return;
    tag |= uop(op)->rf_step == 1 ? SUB_A : SUB_OPEN;
  }
  struct io_uring_sqe *sqe = get_sqe(loop, u);
  io_uring_prep_cancel64(sqe, tag, 0);
  io_uring_sqe_set_data64(sqe, 0);
}

static void uring_wait(fio_loop *loop, int64_t timeout_ns) {
  uring *u = loop->backend_state;
  int r;
  if ((u->rf_waiting.head || u->rf_nclosing) && rf_flush(loop, u)) timeout_ns = 0;
  if (timeout_ns != 0 && fio_op_pool_help(loop, &u->client, &u->helped, &u->pooled))
    timeout_ns = 0;
  if (timeout_ns != 0 && fio_loop_wakes_on(loop)) timeout_ns = 0;
  /* A signal must end the wait, so that the loop sees a Ctrl-C (the host's
   * interrupt hook) at once: liburing's waits with a timeout loop over
   * io_uring_enter, and one that had submitted returns no EINTR to them.
   * So a wait forever is one io_uring_enter, and a wait with a timeout
   * submits first. */
  if (u->poll_wait && timeout_ns != 0) {
    /* valgrind runs one thread at a time and treats io_uring_enter as a
     * call that never blocks: a pool thread could not run to post while
     * the loop slept in it. ppoll lets it run; the ring's descriptor is
     * readable when a completion waits. */
    struct pollfd pfd = {.fd = u->ring.ring_fd, .events = POLLIN};
    struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
    io_uring_submit(&u->ring);
    ppoll(&pfd, 1, timeout_ns < 0 ? NULL : &ts, NULL);
    timeout_ns = 0;
  }
  if (timeout_ns == 0) {
    r = io_uring_submit_and_get_events(&u->ring);
  } else if (timeout_ns < 0) {
    r = io_uring_submit_and_wait(&u->ring, 1);
  } else {
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts;
    ts.tv_sec = timeout_ns / 1000000000;
    ts.tv_nsec = timeout_ns % 1000000000;
    if (io_uring_sq_ready(&u->ring)) io_uring_submit(&u->ring);
    r = io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts);
  }
  /* -ETIME (timeout) and -EINTR (a signal) just end this wait. */
  (void)r; /* -EBUSY, -EAGAIN: the CQ is backed up; reaping makes room */
  reap(loop, u);
  if (u->rf_nclosing) {
    /* Readfiles ended: their slots are closed before their fibers run, as
     * a file is closed before readfile returns. A FIFO left open meanwhile
     * would be a reader for a writer the program starts next, and the
     * writer's data would go with it. (One submission for all of them;
     * next steps queued here go with it.) */
    rf_flush(loop, u);
    io_uring_submit(&u->ring);
  }
  if (!u->wake_armed && !loop->closed) arm_wake(loop, u);
}

static void uring_close(fio_loop *loop) {
  uring *u = loop->backend_state;
  if (!u) return;
  /* Ops still on the pool become the pool's: none posts to this loop now.
   * What is still in the kernel is left to it: its memory is never freed. */
  fio_pool_forget(&u->client);
  io_uring_queue_exit(&u->ring);
  free(u->rf_free);
  free(u->rf_closing);
  free(u);
  loop->backend_state = NULL;
}

/* Wake the loop through its ring: a MSG_RING sent without a ring of our
 * own (IORING_REGISTER_SEND_MSG_RING, Linux 6.13), so any thread can send
 * it, pool threads included; the loop's wait ends with a WAKE_MSG CQE.
 * Where the kernel refuses that, the wake eventfd (polled by the ring). */
#ifndef IORING_REGISTER_SEND_MSG_RING
#define IORING_REGISTER_SEND_MSG_RING 31
#endif
static atomic_int msg_ring_ok = 1; /* until the kernel says otherwise */

static void uring_wake(fio_loop *loop) {
  uring *u = loop->backend_state;
  if (u && !u->no_msg && atomic_load_explicit(&msg_ring_ok, memory_order_relaxed)) {
    struct io_uring_sqe sqe;
    memset(&sqe, 0, sizeof sqe);
    sqe.opcode = IORING_OP_MSG_RING;
    sqe.fd = u->ring.ring_fd;
    sqe.off = WAKE_MSG; /* the user_data of the CQE the loop gets */
    long r = syscall(__NR_io_uring_register, -1, IORING_REGISTER_SEND_MSG_RING,
                     &sqe, 1);
    if (r >= 0) {
      atomic_fetch_add_explicit(&u->msg_wakes, 1, memory_order_relaxed);
      return;
    }
    if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
        errno == EPERM)
      atomic_store_explicit(&msg_ring_ok, 0, memory_order_relaxed);
  }
  if (u) atomic_fetch_add_explicit(&u->fd_wakes, 1, memory_order_relaxed);
  fio_loop_wake_fd(loop);
}

static void uring_info(fio_loop *loop, lua_State *L) {
  uring *u = loop->backend_state;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (u->flags & IORING_SETUP_SINGLE_ISSUER) luaL_addstring(&b, "single_issuer ");
  if (u->flags & IORING_SETUP_DEFER_TASKRUN) luaL_addstring(&b, "defer_taskrun ");
  if (u->flags & IORING_SETUP_COOP_TASKRUN) luaL_addstring(&b, "coop_taskrun ");
  if (u->flags & IORING_SETUP_ATTACH_WQ) luaL_addstring(&b, "attach_wq ");
  luaL_pushresult(&b);
  lua_setfield(L, -2, "ring_flags");
  lua_pushinteger(L, (lua_Integer)u->pooled);
  lua_setfield(L, -2, "pooled");
  lua_pushinteger(L, (lua_Integer)u->reruns);
  lua_setfield(L, -2, "reruns");
  lua_pushinteger(L, (lua_Integer)u->helped);
  lua_setfield(L, -2, "helped");
  lua_pushinteger(L, (lua_Integer)u->rf_done);
  lua_setfield(L, -2, "ring_readfiles");
  lua_pushinteger(L, (lua_Integer)u->rf_nslots);
  lua_setfield(L, -2, "readfile_slots");
  lua_pushinteger(L, (lua_Integer)atomic_load(&u->msg_wakes));
  lua_setfield(L, -2, "msg_ring_wakes");
  lua_pushinteger(L, (lua_Integer)atomic_load(&u->fd_wakes));
  lua_setfield(L, -2, "eventfd_wakes");
}

const fio_backend fio_backend_uring = {
    "io_uring", uring_init, uring_close, uring_submit,
    uring_cancel, uring_wait, uring_wake, uring_info,
};
