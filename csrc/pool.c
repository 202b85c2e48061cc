/* pool.c — the process-wide thread pool (see pool.h for the contract).
 *
 * Shape (Zig's Thread.Pool, libuv's threadpool): a FIFO run queue under one
 * mutex and a condition variable; a submission starts a thread when queued
 * work outnumbers idle threads and the limit allows; a thread idle for
 * idle_ms (5 s; FIBERIO_POOL_IDLE_MS) leaves. Threads are detached: nothing
 * ever joins them, so closing a Lua state never waits for the pool.
 *
 * Cancellation of a running op (Zig's Threaded backend): the op is flagged
 * and its thread is sent the interrupt signal, which has a no-op handler
 * installed without SA_RESTART, so a blocking read on a pipe returns EINTR.
 * A signal sent just before the thread enters the syscall would be lost, so
 * an interrupter thread re-sends it (1 ms, doubling to 64 ms) for as long as
 * a flagged op is running. The signal is SIGURG: a standard signal, so
 * re-sends coalesce instead of queueing up as real-time signals do; ignored
 * by default, so one arriving where no handler expects it does no harm; and
 * used by nothing a Lua program does (out-of-band socket data with F_SETOWN;
 * Go's runtime uses it for preemption, so it is a poor choice only inside a
 * Go process). If someone else already handles SIGURG, SIGRTMIN+3 is taken
 * instead; if that is taken too, running ops are never interrupted and just
 * finish (still correct, only slower to cancel). Pool threads block every
 * other signal, so process-directed signals (SIGINT, SIGCHLD) keep going to
 * the Lua threads.
 *
 * Process exit and dlclose: Lua unloads this library when the last state
 * that required it closes, while idle pool threads (and the signal handler)
 * still live in its code. The pool therefore pins the library once
 * (dlopen RTLD_NOLOAD|RTLD_NODELETE on itself), so its code stays mapped
 * for the life of the process, and keeps all its state in static storage,
 * which is never freed: an idle thread that wakes after every state has
 * closed finds valid memory and leaves; exit() simply ends it. A closing loop
 * calls fio_pool_forget, after which no thread touches that loop.
 *
 * Lock order: P.mu, then a loop's post_mu (a post is queued with P.mu held,
 * so it can never race fio_pool_forget). Nothing takes P.mu while holding
 * post_mu. No syscall that can block runs under P.mu: it is held to move
 * work between the queue and the running list, to start threads, to queue
 * posts and to send signals (pthread_kill). The wake that follows a post
 * (an eventfd write or a MSG_RING) and the condvar signal after a
 * submission are made after P.mu is dropped; loop->pool_wakers keeps
 * fio_pool_forget waiting for a wake in progress. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "pool.h"

#define POOL_MAX 1024                 /* hard bound on the limit */
#define IDLE_MS 5000                  /* an idle thread leaves after this */
#define STACK_SIZE (1024 * 1024)      /* syscalls need little stack */
#define INTERRUPT_MAX_MS 64           /* re-send period, at most */

enum { W_QUEUED = 1, W_RUNNING };

/* One submission: the op's own pw (fiberio.h), from fio_pool_submit until
 * its result is posted (or, forgotten, until its op is freed). Every field
 * but cancel is read and written under P.mu only; cancel is set under P.mu
 * and read by the running thread without it, between syscalls. */
typedef fio_pool_work work;

/* The pool. Invariants, all under mu:
 *  - qhead..qtail holds exactly the QUEUED work, qlen of them, in FIFO order;
 *    running holds exactly the RUNNING work; each work is in one of the two;
 *  - op->bpriv == w for every work w in either list, and is set to NULL
 *    under mu before w's op is posted or freed;
 *  - nthreads counts live workers (started, not yet returned), nidle those
 *    waiting on cond; nidle <= nthreads;
 *  - interrupting is 1 while the interrupter thread lives; it re-sends the
 *    signal to every running work with cancel set, and leaves when none. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t cond;      /* work was queued */
  pthread_cond_t icond;     /* a new cancel for the interrupter */
  work *qhead, *qtail;
  size_t qlen;
  work *running;
  int nthreads, nidle;
  int limit;                /* FIBERIO_POOL_SIZE, or the default */
  int interrupting, ikick;
  long idle_ms;
  int sig;                  /* the interrupt signal; 0: none could be had */
} P = {.mu = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t P_once = PTHREAD_ONCE_INIT;
static atomic_int P_started; /* pool_init has run (set last, release) */

/* --- operations ---------------------------------------------------------- */

/* Whether a cancel may stop op at all. A close always runs: skipping it
 * would leak the fd. */
static int cancelable(const fio_op *op) { return op->code != FIO_OP_CLOSE; }

/* --- set-up ---------------------------------------------------------------- */

static void on_interrupt(int sig) { (void)sig; /* only to end a syscall */ }

/* Install on_interrupt on the first candidate nobody else handles. */
static int install_signal(void) {
  int cands[2] = {SIGURG, SIGRTMIN + 3};
  for (int i = 0; i < 2; i++) {
    struct sigaction old, sa;
    if (cands[i] > SIGRTMAX || sigaction(cands[i], NULL, &old) < 0) continue;
    if ((old.sa_flags & SA_SIGINFO) ||
        (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))
      continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: the interrupted syscall must fail */
    if (sigaction(cands[i], &sa, NULL) == 0) return cands[i];
  }
  return 0;
}

/* Keep this library mapped until the process exits (see the top comment).
 * The handle is never closed, on purpose. */
static void pin_once(void) {
  Dl_info info;
  if (dladdr((void *)(uintptr_t)&on_interrupt, &info) && info.dli_fname)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

void fio_pin_library(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, pin_once);
}

static long env_long(const char *name, long lo, long hi, long dflt) {
  const char *s = getenv(name);
  if (!s || !*s) return dflt;
  char *end;
  long v = strtol(s, &end, 10);
  return (*end || v < lo || v > hi) ? dflt : v;
}

static void init_conds(void) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&P.cond, &ca);
  pthread_cond_init(&P.icond, &ca);
  pthread_condattr_destroy(&ca);
}

/* fork: hold P.mu across it so the child gets a consistent pool. The
 * child has none of the parent's pool threads: it starts with no threads
 * (new ones start on the next submission and run what is queued) and
 * forgets the running work, whose syscalls ran in the parent. */
static void atfork_prepare(void) { pthread_mutex_lock(&P.mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&P.mu); }
static void atfork_child(void) {
  P.running = NULL; /* leaked: their threads do not exist here */
  P.nthreads = P.nidle = 0;
  P.interrupting = P.ikick = 0;
  init_conds();
  pthread_mutex_unlock(&P.mu);
}

static void pool_init(void) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  long dflt = ncpu > 2 ? 2 * ncpu : 4;
  if (dflt > POOL_MAX) dflt = POOL_MAX;
  P.limit = (int)env_long("FIBERIO_POOL_SIZE", 1, POOL_MAX, dflt);
  P.idle_ms = env_long("FIBERIO_POOL_IDLE_MS", 1, 3600000, IDLE_MS);
  init_conds();
  P.sig = install_signal();
  fio_pin_library();
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
  atomic_store_explicit(&P_started, 1, memory_order_release);
}

static void pool_once(void) { pthread_once(&P_once, pool_init); }

/* --- threads --------------------------------------------------------------- */

static void deadline_in(struct timespec *ts, long ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* Start a detached thread running fn with every signal blocked (fn unblocks
 * what it wants). 0 or an error number. */
static int spawn(void *(*fn)(void *)) {
  pthread_attr_t attr;
  pthread_t t;
  sigset_t all, old;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, STACK_SIZE);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int r = pthread_create(&t, &attr, fn, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return r;
}

static void q_remove(work *w) {
  if (w->prev) w->prev->next = w->next;
  else P.qhead = w->next;
  if (w->next) w->next->prev = w->prev;
  else P.qtail = w->prev;
  w->prev = w->next = NULL;
  P.qlen--;
}

static void running_remove(work *w) {
  if (w->prev) w->prev->next = w->next;
  else P.running = w->next;
  if (w->next) w->next->prev = w->prev;
  w->prev = w->next = NULL;
}

/* An op whose loop is gone: what fio_op_complete does for an orphan. */
static void free_orphan(fio_op *op, int res) {
  if (op->fd_owned && res >= 0) close(res);
  fio_op_free(op);
}

/* Run the work at the head of the queue. P.mu held on entry and on return,
 * released while the syscall runs. */
static void run_head(void) {
  work *w = P.qhead;
  q_remove(w);
  w->state = W_RUNNING;
  w->tid = pthread_self();
  w->next = P.running;
  if (P.running) P.running->prev = w;
  P.running = w;
  fio_op *op = w->op;
  pthread_mutex_unlock(&P.mu);

  int res;
  for (;;) {
    if (atomic_load_explicit(&w->cancel, memory_order_acquire)) {
      res = -ECANCELED; /* before the syscall, or it was interrupted */
      break;
    }
    res = fio_exec(op);
    if (res != -EINTR) break; /* a stray signal without a cancel: retry */
  }

  pthread_mutex_lock(&P.mu);
  running_remove(w);
  fio_loop *loop = w->loop;
  op->bpriv = NULL;
  if (loop) {
    /* The wake (a syscall, when one is due) is made without P.mu, which
     * every other worker and the loop want meanwhile; pool_wakers keeps
     * fio_pool_forget from returning (and the loop from going) until it
     * is made. */
    fio_loop_post_quiet(loop, op, res);
    if (fio_loop_wake_claim(loop)) {
      atomic_fetch_add_explicit(&loop->pool_wakers, 1, memory_order_relaxed);
      pthread_mutex_unlock(&P.mu);
      loop->be->wake(loop);
      atomic_fetch_sub_explicit(&loop->pool_wakers, 1, memory_order_release);
      pthread_mutex_lock(&P.mu);
    }
  } else {
    pthread_mutex_unlock(&P.mu);
    free_orphan(op, res);
    pthread_mutex_lock(&P.mu);
  }
}

static void *worker(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "fiberio-pool"); /* for ps, gdb, specs */
  if (P.sig) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, P.sig);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
  }
  pthread_mutex_lock(&P.mu);
  for (;;) {
    if (P.qhead) {
      run_head();
      continue;
    }
    struct timespec until;
    deadline_in(&until, P.idle_ms);
    int r = 0;
    P.nidle++;
    while (!P.qhead && r != ETIMEDOUT)
      r = pthread_cond_timedwait(&P.cond, &P.mu, &until);
    P.nidle--;
    if (!P.qhead && r == ETIMEDOUT) break; /* idle long enough: shrink */
  }
  P.nthreads--;
  pthread_mutex_unlock(&P.mu);
  return NULL;
}

/* Re-send the interrupt signal to every running work with a cancel until
 * none is left. The work (so its thread) stays alive while we hold P.mu. */
static void *interrupter(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "fiberio-intr");
  long ms = 1;
  pthread_mutex_lock(&P.mu);
  for (;;) {
    int any = 0;
    for (work *w = P.running; w; w = w->next)
      if (atomic_load_explicit(&w->cancel, memory_order_relaxed)) {
        pthread_kill(w->tid, P.sig);
        any = 1;
      }
    if (!any) break;
    struct timespec until;
    deadline_in(&until, ms);
    P.ikick = 0;
    while (!P.ikick &&
           pthread_cond_timedwait(&P.icond, &P.mu, &until) != ETIMEDOUT) {
    }
    ms = P.ikick ? 1 : (ms * 2 > INTERRUPT_MAX_MS ? INTERRUPT_MAX_MS : ms * 2);
  }
  P.interrupting = 0;
  pthread_mutex_unlock(&P.mu);
  return NULL;
}

/* Start workers for queued work no idle thread will take, within the limit.
 * P.mu held. Returns the error of a failed start, or 0. */
static int grow(void) {
  int need = (int)(P.qlen > (size_t)P.nidle ? P.qlen - (size_t)P.nidle : 0);
  for (int started = 0; started < need && P.nthreads < P.limit; started++) {
    int r = spawn(worker);
    if (r) return r;
    P.nthreads++;
  }
  return 0;
}

/* --- the API --------------------------------------------------------------- */

void fio_pool_submit(fio_loop *loop, fio_op *op) {
  pool_once();
  op->bpriv = NULL;
  atomic_store_explicit(&op->abort, 0, memory_order_relaxed); /* a reused op */
  work *w = &op->pw;
  memset(w, 0, sizeof *w);
  w->op = op;
  w->loop = loop;
  w->state = W_QUEUED;
  pthread_mutex_lock(&P.mu);
  op->bpriv = w;
  w->prev = P.qtail;
  if (P.qtail) P.qtail->next = w;
  else P.qhead = w;
  P.qtail = w;
  P.qlen++;
  if (P.qlen > (size_t)P.nidle && P.nthreads < P.limit) {
    if (grow() && P.nthreads == 0) {
      /* No thread exists and none can start: run it here instead. */
      q_remove(w);
      op->bpriv = NULL;
      w = NULL;
    }
  }
  int signal = w && P.nidle;
  pthread_mutex_unlock(&P.mu);
  /* (after the unlock: the woken thread does not wait for P.mu then) */
  if (signal) pthread_cond_signal(&P.cond);
  if (w) return;
  /* Out of threads: as Zig's pool, run the call inline. */
  int res;
  do res = fio_exec(op);
  while (res == -EINTR);
  fio_loop_post(loop, op, res);
}

void fio_pool_cancel(fio_loop *loop, fio_op *op) {
  pool_once();
  pthread_mutex_lock(&P.mu);
  work *w = op->bpriv; /* &op->pw while on the pool, else NULL */
  int wake = 0;
  if (w && cancelable(op)) {
    if (w->state == W_QUEUED) {
      q_remove(w);
      op->bpriv = NULL;
      fio_loop_post_quiet(loop, op, -ECANCELED);
      wake = fio_loop_wake_claim(loop); /* made below, without P.mu */
    } else if (!atomic_load_explicit(&w->cancel, memory_order_relaxed)) {
      atomic_store_explicit(&w->cancel, 1, memory_order_release);
      atomic_store_explicit(&op->abort, 1, memory_order_release);
      if (P.sig) {
        pthread_kill(w->tid, P.sig);
        if (P.interrupting) {
          P.ikick = 1;
          pthread_cond_signal(&P.icond);
        } else if (spawn(interrupter) == 0) {
          P.interrupting = 1;
        }
      }
    }
  }
  pthread_mutex_unlock(&P.mu);
  if (wake) loop->be->wake(loop); /* (the caller is the loop: it stays) */
}

void fio_pool_forget(fio_loop *loop) {
  if (!atomic_load_explicit(&P_started, memory_order_acquire)) return;
  pthread_mutex_lock(&P.mu);
  for (work *w = P.qhead, *next; w; w = next) {
    next = w->next;
    if (w->loop != loop) continue;
    q_remove(w);
    w->op->bpriv = NULL;
    fio_op_free(w->op); /* never ran: no result to clean up (frees w) */
  }
  for (work *w = P.running; w; w = w->next)
    if (w->loop == loop) w->loop = NULL;
  pthread_mutex_unlock(&P.mu);
  while (atomic_load_explicit(&loop->pool_wakers, memory_order_acquire))
    sched_yield(); /* a wake being made (see run_head): a syscall's time */
}

void fio_pool_stats_get(fio_pool_stats *st) {
  pool_once();
  pthread_mutex_lock(&P.mu);
  st->limit = P.limit;
  st->threads = P.nthreads;
  st->idle = P.nidle;
  st->queued = (int)P.qlen;
  int n = 0;
  for (work *w = P.running; w; w = w->next) n++;
  st->running = n;
  pthread_mutex_unlock(&P.mu);
}
