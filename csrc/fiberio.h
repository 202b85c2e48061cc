/* fiberio.h — the types every part of the core shares: the loop, fibers
 * (and the pseudo-waiters that stand in for a context that cannot yield),
 * operations handed to a backend, and the scheduler calls the bindings use.
 *
 * Ownership in one paragraph: a fiber lives inside its Future userdata; the
 * loop anchors the Future in the registry from spawn until the fiber ends, so
 * a fiber is never collected while it can still run. An operation (fio_op) is
 * malloc'd by the binding that starts it and outlives its fiber if it must:
 * while the kernel or a pool thread owns it (in flight) nobody frees it; a
 * completion whose waiter is gone frees it (closing any fd it produced).
 * Everything here is used from the loop's own thread only, except where a
 * backend says otherwise. */
#ifndef FIBERIO_H
#define FIBERIO_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#define FIO_FUTURE "fiberio.Future"
#define FIO_CANCELED "fiberio.Canceled"
#define FIO_LOOP "fiberio.Loop"
#define FIO_FILE "fiberio.File"

typedef struct fio_loop fio_loop;
typedef struct fio_fiber fio_fiber;
typedef struct fio_op fio_op;
typedef struct fio_run fio_run;
typedef struct fio_backend fio_backend;
typedef struct fio_workers fio_workers;

/* Fiber states. A pseudo-waiter uses only SUSPENDED and READY. */
enum { FIO_NEW = 1, FIO_READY, FIO_RUNNING, FIO_SUSPENDED, FIO_DONE };
/* How a DONE fiber ended. */
enum { FIO_END_OK = 1, FIO_END_ERROR, FIO_END_CANCELED };
/* What a suspended waiter waits for. */
enum {
  FIO_W_NONE = 0,
  FIO_W_SLEEP,  /* its timer */
  FIO_W_OP,     /* w->op's completion */
  FIO_W_FUTURE, /* one of the futures it is linked to (await, select, join) */
  FIO_W_QUEUE,  /* its turn in a wait queue (fio_list) */
  FIO_W_YIELD,  /* nothing: it is already in the ready queue */
  FIO_W_RUN     /* the end of every fiber of a fio.run scope */
};
/* Why a waiter was woken. */
enum {
  FIO_WAKE_NONE = 0,
  FIO_WAKE_DONE,    /* what it waited for happened */
  FIO_WAKE_TIMER,   /* its timer fired first */
  FIO_WAKE_CANCEL,  /* a cancel was delivered */
  FIO_WAKE_DEADLOCK /* nothing left that could ever wake it */
};

/* A waiter's registration on a list: the awaiters of a future, or any
 * FIFO wait queue (a busy file, later semaphores and queues). */
typedef struct fio_link fio_link;
typedef struct fio_list {
  fio_link *head, *tail;
} fio_list;
struct fio_link {
  fio_fiber *waiter;
  fio_list *list; /* NULL: not linked */
  fio_link *prev, *next;
};

struct fio_fiber {
  fio_loop *loop;
  lua_State *co;              /* the fiber's Lua thread; NULL for a pseudo */
  fio_fiber *qprev, *qnext;   /* ready queue */
  fio_fiber *lprev, *lnext;   /* the loop's fibers that have not ended */
  fio_list awaiters;          /* who waits for this fiber to end */
  fio_link *links;            /* what this waiter is linked to, nlinks long */
  fio_link self_link;         /* the one link await and join need */
  fio_op *op;                 /* FIO_W_OP: the operation */
  fio_fiber *blocked_in;      /* running fiber: pseudo it drives the loop for */
  fio_fiber *owner;           /* pseudo: the fiber whose cancel it takes */
  fio_fiber *woke_by;         /* FIO_W_FUTURE: the future that ended */
  fio_run *run;               /* fio.run scope it belongs to, or NULL */
  uint32_t heap_idx;          /* timer slot + 1; 0 when not armed */
  int anchor;                 /* registry ref of the Future while alive */
  int nres;                   /* DONE: values at the top of co */
  int nlinks;
  uint16_t shield;            /* depth of fio.shield */
  uint8_t state, end, wait, wake;
  uint8_t queued;             /* in the ready queue */
  uint8_t pseudo;             /* stands in for a context that cannot yield */
  uint8_t cancel_req;         /* a cancel is pending, not yet raised */
  uint8_t cancel_done;        /* Canceled was raised in it once */
  uint8_t observed;           /* its outcome was taken by someone */
  uint8_t reported;           /* its unobserved error was printed */
  uint8_t tramp;              /* pseudo: its trampoline is running */
  lua_KFunction k;            /* pseudo: the continuation to call next */
};

/* A heap slot: the key is kept in the slot, so sifting never touches the
 * fibers (100,000 sleepers spread over a large heap). */
typedef struct fio_timer {
  uint64_t deadline; /* ns of CLOCK_MONOTONIC */
  uint64_t seq;      /* FIFO among equal deadlines */
  fio_fiber *w;
} fio_timer;

/* One fio.run call: the fibers spawned under it, transitively. */
struct fio_run {
  int refs;          /* the run call + each live fiber of the scope */
  int live;          /* fibers of the scope not DONE */
  int errs;          /* registry ref: array of Futures that ended in error */
  int nerrs;
  fio_fiber *waiter; /* who waits for live to reach 0 */
};

/* Operation codes. Each runs on io_uring where the probe lists an opcode
 * for it, else on the pool (fio_op_exec). Arguments: fd, fd2, buf, len, off,
 * path, path2, flags, mode; results in res (and in mem for STATX, GETDENTS,
 * READLINK, REALPATH, MKDTEMP). */
enum {
  FIO_OP_READ = 1, /* read(fd, buf, len) at off */
  FIO_OP_WRITE,    /* write(fd, buf, len) at off */
  FIO_OP_CLOSE,    /* close(fd) */
  FIO_OP_OPENAT,   /* openat(AT_FDCWD, path, flags, mode) -> fd */
  FIO_OP_STATX,    /* statx(fd or AT_FDCWD, path, flags) into mem */
  FIO_OP_FSYNC,    /* fsync(fd), fdatasync when flags */
  FIO_OP_FTRUNCATE,/* ftruncate(fd, off) */
  FIO_OP_UNLINKAT, /* unlinkat(AT_FDCWD, path, flags) */
  FIO_OP_RENAMEAT, /* renameat(path, path2) */
  FIO_OP_MKDIRAT,  /* mkdirat(path, mode) */
  FIO_OP_SYMLINKAT,/* symlinkat(target path, linkpath path2) */
  FIO_OP_LINKAT,   /* linkat(path, path2) */
  FIO_OP_GETDENTS, /* the whole directory path, as linux_dirent64 records in
                    * mem (grown as needed): res = bytes */
  FIO_OP_READLINK, /* readlink(path) into mem: res = length */
  FIO_OP_CHMOD,    /* fchmodat(path, mode) */
  FIO_OP_ACCESS,   /* faccessat(path, mode) */
  FIO_OP_REALPATH, /* realpath(path) into mem: res = length */
  FIO_OP_MKDTEMP,  /* mkdtemp(path, in mem): res = 0 */
  FIO_OP_TRUNCATE, /* truncate(path, off) */
  FIO_OP_COPY,     /* copy fd to fd2 from their offsets to EOF: res = 0 */
  FIO_OP_TASK,     /* a fio.parallel task (parallel.c), not a backend's */
  FIO_OP_READFILE, /* the whole file path into buf (want bytes, lent by the
                    * loop; grown or replaced): got = bytes. io_uring:
                    * linked openat -> reads on a fixed-file slot; the
                    * pool: one job */
  FIO_OP_LAST
};
enum { FIO_OPS_IDLE = 0, FIO_OPS_INFLIGHT, FIO_OPS_DONE };

/* The most one read(2) or write(2) moves on Linux. */
#define FIO_MAXIO 0x7ffff000

/* An op's submission to the pool (pool.c's own; in the op, so a pool job
 * costs no allocation). */
typedef struct fio_pool_work {
  fio_op *op;
  fio_loop *loop;           /* NULL: its loop is gone; the pool frees op */
  struct fio_pool_work *prev, *next; /* run queue (QUEUED) or running list */
  pthread_t tid;            /* RUNNING: the thread that runs it */
  atomic_int cancel;        /* cancel requested while RUNNING */
  int state;                /* QUEUED or RUNNING */
} fio_pool_work;

struct fio_op {
  fio_fiber *waiter;      /* woken on completion; NULL: orphaned */
  fio_loop *loop;         /* the loop it completes on */
  void *bpriv;            /* the backend's own (e.g. the pool's work item) */
  fio_pool_work pw;       /* the pool's, while it is on the pool */
  fio_op *prev, *next;    /* the loop's list of in-flight operations */
  fio_op *pnext;          /* the loop's list of posted completions */
  char *mem;              /* memory the op owns, freed with it */
  char *buf;              /* where the kernel reads or writes */
  uint64_t off;           /* file offset, or (uint64_t)-1: current */
  size_t len;             /* bytes asked of this submission */
  size_t got, want, cap;  /* progress of a multi-step call; size of mem */
  const char *path, *path2; /* in mem, or kept alive by the caller */
  int32_t res;            /* result: >= 0, or -errno */
  int fd, fd2, flags;
  uint32_t mode;
  atomic_int abort;       /* set by the loop: a pool op stops between steps */
  uint8_t code;           /* FIO_OP_* */
  uint8_t state;          /* FIO_OPS_* */
  uint8_t cancel_sent;    /* a cancel for it went to the backend */
  uint8_t fd_owned;       /* res is an fd to close if orphaned */
  uint8_t owns_fds;       /* fio_op_free closes fd and fd2 (>= 0) */
  uint8_t stage;          /* where a multi-step call is */
  uint8_t pool_only;      /* run it on the pool even if the ring could */
  void (*dtor)(fio_op *); /* frees what mem holds (before mem itself) */
  uint8_t on_pool;        /* backend: this submission went to the pool */
  uint8_t close_fd;       /* its file was collected: the last op on fd closes it */
  uint8_t may_inline;     /* a write to a regular file (or other seekable
                           * fd): the backend may run it on the loop thread
                           * when the loop would otherwise sleep */
  /* backend_uring.c: FIO_OP_READFILE as linked SQEs on a fixed-file slot */
  int32_t rf_res[3];      /* this step's results: open, read A, read B */
  int32_t rf_slot;        /* its slot in the ring's file table */
  uint32_t rf_la;         /* bytes read A asked (B reads just past them) */
  uint8_t rf_pending;     /* CQEs of this step not yet reaped */
  uint8_t rf_step;        /* 0: open, A, B; 1: A, B; 2: poll, A, B */
};

struct fio_loop {
  lua_State *L;                 /* the state's main thread */
  const fio_backend *be;
  void *bdata;                  /* the backend's own state */
  int started, closed;
  /* configuration, fixed at start */
  int cfg_threads;
  unsigned cfg_ring_entries;
  char cfg_backend[16];
  /* scheduler */
  fio_fiber *current;           /* fiber being resumed, or NULL */
  /* Set by a signal handler on this loop's thread that wanted to act on the
   * running fiber when none was running: the next fiber resumed gets
   * hook_arm(its thread) first (fio.parallel's cancel, parallel.c). */
  volatile sig_atomic_t hook_req;
  void (*hook_arm)(lua_State *co);
  fio_fiber *rq_head, *rq_tail;
  size_t rq_len;
  fio_fiber *live;              /* fibers not ended (spawned, not DONE) */
  size_t nlive;
  /* The host asked the main thread to stop (lua.c's SIGINT handler sets a
   * hook on it): every fiber was canceled, and the main chunk's wait raises
   * "interrupted!" as plain Lua would. */
  int interrupted;
  int ending;                   /* the end of the main chunk or the state's
                                 * close is running the last fibers */
  int end_errs;                 /* while ending: registry ref of an array of
                                 * Futures that ended in an error nobody took */
  const void *pcall_fn, *xpcall_fn; /* the base library's, for
                                     * in_protected_call */
  int is_worker;                /* a fio.parallel worker's state: its host
                                 * is parallel.c, which runs it to the end */
  int exit_listed;              /* on the list report_at_exit reads */
  fio_loop *exit_next;
  struct fio_timer *heap;       /* timers: min-heap on (deadline, seq) */
  size_t heap_len, heap_cap;
  uint64_t timer_seq;
  fio_op *inflight;             /* operations the backend owns */
  size_t ninflight;
  /* Completions posted from other threads (pool threads). post_mu guards
   * post_head/post_tail and is a leaf lock: nothing else is taken while it
   * is held. posted is set under it and cleared by the loop's drain, so
   * the loop can check for posts without the lock. wakefd (an eventfd) is
   * written after a post so that a backend's wait returns. */
  pthread_mutex_t post_mu;
  fio_op *post_head, *post_tail;
  atomic_int posted;
  int wakefd;
  /* Wakes are off: one was sent and the loop has not slept since, or the
   * loop is awake. Further wakes need no syscall (the loop will look at
   * everything before it sleeps). Set by fio_loop_wake_claim, cleared by
   * fio_loop_wakes_on just before the loop would sleep. */
  atomic_int wake_sent;
  atomic_int pool_queued;       /* its ops in the pool's queue (a hint for
                                 * fio_pool_take, kept under the pool's lock) */
  char *bufs[16];               /* spare FIO_BUFSZ buffers (fio_buf_get) */
  int nbufs;
  fio_workers *workers;         /* fio.parallel's pool, once used */
  int owns_workers;             /* this loop made it (it shuts it down) */
  void *canceled;               /* the Canceled sentinel userdata */
  int canceled_ref, future_mt_ref;
  const void *future_mt;        /* the Future metatable, for type checks */
};

/* --- loop.c ------------------------------------------------------------ */

/* The loop of the state that owns L: upvalue 1 of every core function.
 * Starts the backend on first use; raises if it cannot start. */
fio_loop *fio_loop_get(lua_State *L);
/* Create the loop userdata (pushed) for this state; not started. */
fio_loop *fio_loop_new(lua_State *L);
/* Monotonic clock in nanoseconds. */
uint64_t fio_now_ns(void);

/* Spawn fn (at idx) with the nargs values above it as a new fiber queued at
 * the end of the ready queue; pushes its Future. */
fio_fiber *fio_spawn(lua_State *L, fio_loop *loop, int idx, int nargs,
                     fio_run *run);
/* The Future at idx, or raise. */
fio_fiber *fio_checkfuture(lua_State *L, int idx);

/* Start a wait from L. Returns the calling fiber if L can yield, or pseudo,
 * initialised, if it cannot (main chunk, C boundary, plain coroutine).
 * Raises Canceled first if a cancel is pending on the caller. */
fio_fiber *fio_wait_begin(fio_loop *loop, lua_State *L, fio_fiber *pseudo);
/* Suspend w (set up by the caller: timer, op, links) and continue in k once
 * woken: a fiber yields; a pseudo drives the loop and calls k itself. */
int fio_block(fio_loop *loop, lua_State *L, fio_fiber *w, lua_KFunction k);
/* In a continuation, before suspending w again: raise Canceled if a cancel
 * is pending on it; reset its wake state. */
void fio_wait_again(lua_State *L, fio_fiber *w);
/* Whether a cancel is pending on w (its owner, for a pseudo), unshielded. */
int fio_cancel_pending(const fio_fiber *w);
/* Close a dead or errored coroutine's pending to-be-closed variables
 * (lua_closethread since Lua 5.4.6, lua_resetthread before). */
#if LUA_VERSION_NUM == 504 && LUA_VERSION_RELEASE_NUM < 50406
#define fio_closethread(co, from) lua_resetthread(co)
#else
#define fio_closethread(co, from) lua_closethread(co, from)
#endif

/* The fiber whose cancel w takes: w itself, or a pseudo's owner (NULL: the
 * main chunk). */
static inline fio_fiber *fio_owner(fio_fiber *w) {
  return w->pseudo ? w->owner : w;
}
/* In a continuation, wait for op again (the next step of the same call):
 * fio_wait_again, except that a pending cancel frees op first (its dtor and
 * owns_fds clean up); then ++*count (a file's ops in flight; NULL: none)
 * and fio_op_wait. */
int fio_op_again(lua_State *L, fio_fiber *w, fio_op *op, lua_KFunction k,
                 int *count);
/* What a continuation returns after fio_block when it re-blocked a pseudo:
 * the pseudo's trampoline (in its first fio_block) drives the loop again and
 * calls the new continuation, so the C stack does not grow per step. */
#define FIO_AGAIN (-1)
/* In a continuation: raise Canceled or the deadlock error if that is why w
 * woke. */
void fio_wait_end(lua_State *L, fio_fiber *w);
/* Raise fio.Canceled in L on behalf of fiber f (which may be NULL): the
 * cancel counts as delivered. */
int fio_raise_canceled(lua_State *L, fio_loop *loop, fio_fiber *f);
/* Unhook f from every loop structure (queue, timers, links, its op): for a
 * Future collected while its fiber has not ended (only at state close). */
void fio_fiber_detach(fio_fiber *f);
/* The fiber whose cancellation L's code takes: the running fiber, or NULL. */
fio_fiber *fio_current(fio_loop *loop);

void fio_wake(fio_fiber *w, int reason);
/* Arm w's timer (replacing an armed one) for deadline (fio_now_ns), or s
 * seconds (>= 0) from now. Out of memory: raises Lua's memory error in L
 * with the timer not armed, so arm it before anything a raise would leak. */
void fio_timer_arm(lua_State *L, fio_loop *loop, fio_fiber *w,
                   uint64_t deadline);
void fio_timer_arm_in(lua_State *L, fio_loop *loop, fio_fiber *w,
                      lua_Number s);
/* The optional timeout argument at idx, in seconds: -1 when absent (nil or
 * none: no deadline), 0 for a negative one (already due: the wait polls
 * once), math.huge for no deadline; raises for NaN or a non-number. */
lua_Number fio_opttimeout(lua_State *L, int idx);
/* A fiber was spawned: when the host's outermost call on the main thread
 * returns (the main chunk ends), the fibers left run to their end. */
void fio_loop_watch_end(fio_loop *loop);
/* The state is closing: cancel the fibers that have not ended and run the
 * loop until they have (their cleanups run); says so on stderr. */
void fio_loop_close_fibers(fio_loop *loop, lua_State *L);
/* Drop one reference to a fio.run scope (freed with the last). */
void fio_run_release(lua_State *L, fio_run *run);
/* Append w's link l to list (FIFO); w->links/nlinks must include l so a wake
 * unlinks it. */
void fio_link_add(fio_fiber *w, fio_link *l, fio_list *list);
/* Wake the first waiter of list (if any) for reason; returns it or NULL. */
fio_fiber *fio_list_wake_first(fio_list *list, int reason);
/* Wake every waiter of list. */
void fio_list_wake_all(fio_list *list, int reason);
/* Request cancellation of t (no wait). */
void fio_request_cancel(fio_loop *loop, lua_State *L, fio_fiber *t);
/* Push t's results (DONE): the values, or nil + Canceled; raise its error.
 * Marks t observed. Returns the number pushed. */
int fio_push_results(lua_State *L, fio_fiber *t);

/* Hand op to the backend and block w until it completes. */
int fio_op_wait(fio_loop *loop, lua_State *L, fio_fiber *w, fio_op *op,
                lua_KFunction k);
/* In a continuation after fio_op_wait: the op's result. If the op was
 * canceled for a cancel of the waiter, frees the op and raises Canceled;
 * canceled by its deadline: -ETIMEDOUT; by the close of its fd: -EBADF. */
int fio_op_result(lua_State *L, fio_fiber *w);
/* A fresh op with cap bytes of memory (mem == buf). NULL on ENOMEM. */
fio_op *fio_op_new(size_t cap);
void fio_op_free(fio_op *op);
/* Append op to a FIFO of ops linked through pnext. */
static inline void fio_oplist_push(fio_op **head, fio_op **tail, fio_op *op) {
  op->pnext = NULL;
  if (*tail) (*tail)->pnext = op;
  else *head = op;
  *tail = op;
}
/* Buffers of FIO_BUFSZ bytes for readfile, kept by the loop for reuse (a
 * small file is read into one, copied into a Lua string, and the buffer is
 * given back). get: NULL when out of memory. put: any malloc'd buffer of
 * size bytes; kept if it is one of ours and there is room, else freed.
 * Loop thread only. */
#define FIO_BUFSZ (64 * 1024) /* below malloc's mmap threshold */
char *fio_buf_get(fio_loop *loop);
void fio_buf_put(fio_loop *loop, char *buf, size_t size);
/* A readfile's op->buf (op->want bytes, not op->mem) doubled, contents
 * kept: 0, or -ENOMEM (the buffer is as it was). Any thread. */
int fio_op_buf_double(fio_op *op);
/* Ask the backend (or fio.parallel's pool) to end op early, once; its
 * completion still comes. */
void fio_op_cancel(fio_loop *loop, fio_op *op);
/* fd is being closed while ops may still use it: cancel every op on fd
 * and leave the close(2) to the last op on fd to complete (so no pool
 * syscall can run on a reused fd number). 1 if it did; 0 if no op uses fd
 * (or the loop is not running): the caller closes fd. */
int fio_close_after_ops(fio_loop *loop, int fd);
/* Cancel every op in flight on fd (a blocked read ends), leaving the fd
 * open: the standard files. */
void fio_cancel_fd_ops(fio_loop *loop, int fd);
/* Take op off the loop's in-flight list, if it is on it (loop thread). */
void fio_op_unlink(fio_loop *loop, fio_op *op);
/* Called by a backend, on the loop's thread, when op has ended with res. */
void fio_op_complete(fio_loop *loop, fio_op *op, int res);
/* From any thread: op has ended with res; the loop is woken and completes it
 * on its own thread (in fio_loop_drain). The poster must not touch op after
 * this call. */
void fio_loop_post(fio_loop *loop, fio_op *op, int res);
/* fio_loop_post in two halves, for a poster that holds a lock the wake
 * should not be made under: post_quiet queues op; then, if wake_claim
 * returns 1, the caller must call loop->be->wake(loop) (once). */
void fio_loop_post_quiet(fio_loop *loop, fio_op *op, int res);
int fio_loop_wake_claim(fio_loop *loop);
/* Loop thread: complete every posted op. Backends call it after waiting. */
void fio_loop_drain(fio_loop *loop);
/* From any thread: make the loop's current or next wait return, through its
 * backend's wake (MSG_RING or the eventfd); nothing while a wake sent
 * before is not yet seen by the loop. */
void fio_loop_wake(fio_loop *loop);
/* From any thread: write the loop's wake eventfd (a backend's wake). */
void fio_loop_wake_fd(fio_loop *loop);
/* Loop thread, in a backend's wait that would block: 1 if wakes were off
 * (the loop has been awake since it last slept). They are on from now on,
 * and this wait must not block but return, so that its caller looks at
 * everything once more: whatever was posted or queued before is seen then,
 * whatever comes after sends a wake. 0: they were on; sleep. Seeing a wake
 * (a CQE, the eventfd readable) leaves them off: posts made while the loop
 * is awake cost no syscall. */
int fio_loop_wakes_on(fio_loop *loop);
/* Loop thread: read the wake eventfd once a backend saw it readable. */
void fio_loop_drain_wakefd(fio_loop *loop);

/* --- bindings ------------------------------------------------------------ */
void fio_open_fiber(lua_State *L);  /* fills the module table at -1 */
void fio_open_time(lua_State *L);
void fio_open_file(lua_State *L);
void fio_open_fs(lua_State *L);
void fio_open_sync(lua_State *L);
void fio_open_parallel(lua_State *L);
void fio_open_errno(lua_State *L); /* sets field errno of the table at -1 */

/* Worker threads drive their loop in two steps: run the fibers ready now
 * (from L); then wait for I/O, timers or a wake (only poll if nonblock). */
void fio_loop_run_ready(fio_loop *loop, lua_State *L);
void fio_loop_wait(fio_loop *loop, int nonblock);

/* Push nil, "what: strerror(err)", err; returns 3. */
int fio_errresult(lua_State *L, const char *what, int err);

#endif
