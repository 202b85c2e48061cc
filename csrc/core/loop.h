/* loop.h — the scheduler of one thread (core/loop.c): the loop, fibers
 * (and the pseudo-waiters that stand in for a context that cannot yield),
 * timers, waiting and canceling, the calls the bindings use. Operations, the
 * loop's work for a backend, are core/op.h's.
 *
 * Ownership in one paragraph: a fiber lives inside its Future userdata; the
 * loop anchors the Future in the registry from spawn until the fiber ends, so
 * a fiber is never collected while it can still run. An operation (fio_op) is
 * malloc'd by the binding that starts it and outlives its fiber if it must:
 * while the kernel or a pool thread owns it (in flight) nobody frees it; a
 * completion whose waiter is gone frees it (closing any fd it produced).
 * Everything here is used from the loop's own thread only, except where a
 * backend says otherwise. */
#ifndef FIBERIO_CORE_LOOP_H
#define FIBERIO_CORE_LOOP_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "util/list.h"

/* fiberio's own symbols stay inside core.so (luaopen_fiberio_core is
 * the one export): direct calls, no interposition. */
#pragma GCC visibility push(hidden)

#define FIO_FUTURE "fiberio.Future"
#define FIO_CANCELED "fiberio.Canceled"
#define FIO_LOOP "fiberio.Loop"
#define FIO_FILE "fiberio.File"

typedef struct fio_loop fio_loop;
typedef struct fio_fiber fio_fiber;
typedef struct fio_op fio_op;
typedef struct fio_run fio_run;
typedef struct fio_backend fio_backend;

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
  fio_dlist links; /* of fio_link, through node; FIFO */
} fio_list;
struct fio_link {
  fio_fiber *waiter;
  fio_list *list; /* NULL: not linked */
  fio_dnode node;
};
/* The first waiter's link on list, or NULL. */
static inline fio_link *fio_list_first(fio_list *list) {
  return fio_entry(list->links.head, fio_link, node);
}

struct fio_fiber {
  fio_loop *loop;
  lua_State *co;              /* the fiber's Lua thread; NULL for a pseudo */
  fio_dnode ready_node;       /* on the ready queue (queued) */
  fio_dnode live_node;        /* on the loop's fibers that have not ended */
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
  uint8_t driving;              /* pseudo: its trampoline drives the loop */
  uint8_t here;               /* continuations running inside the op waits
                               * that ran their ops at once (core/op.c) */
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

/* A part above the core that keeps state per loop (fio.parallel's workers):
 * found by key, closed with the loop (fio_loop_close_fibers and the loop's
 * collection call close, once). */
typedef struct fio_loop_ext {
  const void *key;
  void *data;
  void (*close)(fio_loop *loop, void *data);
} fio_loop_ext;
#define FIO_LOOP_EXT_MAX 4

/* What fio.config sets for one loop before it starts. */
typedef struct fio_loop_config {
  char backend[32];      /* "": the environment's (util/config.h) */
  unsigned ring_entries; /* 0: the backend's default */
  int threads;           /* fio.parallel's workers; 0: one per CPU */
  int no_inline;         /* no op runs on the loop thread (op.h) */
  uint64_t slow_ns;      /* an op run on the loop thread that took longer
                          * than this is too slow to run there ... */
  uint64_t slow_pause_ns; /* ... for this long (its kind of op) */
} fio_loop_config;

struct fio_loop {
  lua_State *main_thread;       /* the state's main thread */
  const fio_backend *be;
  void *backend_state;          /* the backend's own */
  int started, closed;
  fio_loop_config cfg;          /* fixed once started */
  /* scheduler */
  fio_fiber *current;           /* fiber being resumed, or NULL */
  /* Set by a signal handler on this loop's thread that wanted to act on the
   * running fiber when none was running: the next fiber resumed gets
   * resume_hook(its thread) first (fio.parallel's cancel of a computing
   * task). */
  volatile sig_atomic_t resume_hook_due;
  void (*resume_hook)(lua_State *co);
  fio_dlist ready;              /* fibers to resume, in order */
  fio_dlist live;               /* fibers not ended (spawned, not DONE) */
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
  int hosted;                   /* its host runs it to the end (a
                                 * fio.parallel worker's state): no end-of-
                                 * chunk hook, no report at exit */
  int exit_listed;              /* on the list report_at_exit reads */
  fio_loop *exit_next;
  struct fio_timer *heap;       /* timers: min-heap on (deadline, seq) */
  size_t heap_len, heap_cap;
  uint64_t timer_seq;
  /* operations (core/op.c) */
  fio_dlist inflight;           /* ops submitted, not completed */
  /* Ops held back to run on the loop thread when it would sleep (op.h),
   * and completions found on the loop thread, to complete after the wait
   * (linked through qnext). */
  fio_dlist inline_q, done_q;
  uint64_t inline_codes;        /* FIO_OP_* bits the loop thread may run
                                 * (op.h's FIO_OPS_HERE, less what the
                                 * backend's init takes out) */
  struct fio_here {             /* by FIO_OP_* code (core/op.c) */
    uint64_t paused_until;      /* the slow rule's pause (fio_now_ns), or 0 */
    uint32_t avg_ns;            /* its time on the loop thread, on average */
    uint8_t strikes;            /* slow runs in a row */
    uint8_t fast_runs;          /* timed runs in a row that were not slow */
    uint8_t untimed;            /* runs before the next one is timed */
  } here[64];                   /* (op.c asserts FIO_OP_LAST <= 64) */
  uint64_t inlined, direct;     /* ops the loop thread ran; of those, ops
                                 * run at once, in their fiber's call */
  uint64_t slowed;              /* times the slow rule paused a kind */
  uint64_t walk_here;           /* directories fio.walk read on this thread */
  uint64_t handed;              /* ops handed to the backend or executor */
  /* Completions posted from other threads (pool threads). post_mu guards
   * posted_q and is a leaf lock: nothing else is taken while it
   * is held, but for the wake a post makes when one is due (the loop's
   * close takes it once, so no post is still waking a closed backend).
   * posted is set under it and cleared by the loop's drain, so the loop can
   * check for posts without the lock. */
  pthread_mutex_t post_mu;
  fio_dlist posted_q;
  atomic_int posted;
  int wakefd;
  /* Wakes are off: one was sent and the loop has not slept since, or the
   * loop is awake. Further wakes need no syscall (the loop will look at
   * everything before it sleeps). Set by fio_loop_wake, cleared by
   * fio_loop_wakes_on just before the loop would sleep. */
  atomic_int wake_sent;
  char *bufs[16];               /* spare FIO_BUFSZ buffers (fio_buf_get) */
  int nbufs;
  fio_op *spare_ops[8];         /* (fio_op_take) */
  int nspare_ops;
  fio_loop_ext ext[FIO_LOOP_EXT_MAX];
  void *canceled;               /* the Canceled sentinel userdata */
  int canceled_ref, future_mt_ref;
  const void *future_mt;        /* the Future metatable, for type checks */
};

/* The loop of the state that owns L: upvalue 1 of every core function.
 * Starts the backend on first use; raises if it cannot start. */
fio_loop *fio_loop_get(lua_State *L);
/* Create the loop userdata (pushed) for this state; not started. */
fio_loop *fio_loop_new(lua_State *L);
/* The state of the part that registered key with this loop, or NULL. */
void *fio_loop_ext_get(fio_loop *loop, const void *key);
/* Register a part's state (key not registered yet); 0, or -1 when every
 * slot is taken. */
int fio_loop_ext_set(fio_loop *loop, const void *key, void *data,
                     void (*close)(fio_loop *loop, void *data));

/* Spawn fn (at idx) with the nargs values above it as a new fiber queued at
 * the end of the ready queue; pushes its Future. */
fio_fiber *fio_spawn(lua_State *L, fio_loop *loop, int idx, int nargs,
                     fio_run *run);
/* The Future at idx, or raise. */
fio_fiber *fio_checkfuture(lua_State *L, int idx);

/* Whether the host has asked the main thread to stop (lua.c's SIGINT
 * handler's hook is on it) and the loop has not acted on it yet: a call
 * must then suspend, so that the drive sees it (core/op.c). */
int fio_loop_host_stopping(fio_loop *loop);

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

/* Worker threads drive their loop in two steps: run the fibers ready now
 * (from L); then wait for I/O, timers or a wake (only poll if nonblock). */
void fio_loop_run_ready(fio_loop *loop, lua_State *L);
void fio_loop_wait(fio_loop *loop, int nonblock);


#pragma GCC visibility pop
#endif
