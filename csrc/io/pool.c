/* pool.c — the process-wide thread pool (see pool.h for the contract).
 *
 * Shape (Zig's Thread.Pool, libuv's threadpool): a FIFO run queue under one
 * mutex; an idle thread sleeps on a futex of its own until a submission
 * claims it; a thread idle for idle_ms (5 s; FIBERIO_POOL_IDLE_MS) leaves.
 *
 * Growth. A submission that finds no idle thread starts one at once while
 * fewer than `eager` live (FIBERIO_POOL_EAGER; by default one less than the
 * CPUs, at least 1: the loop thread is busy too, and runs readfiles itself
 * when it would sleep, see threads.c). More threads than CPUs do
 * not make short syscalls faster: they take turns on the CPUs, and one
 * preempted while it holds the mutex stalls the rest (on two CPUs, four
 * threads and the loop reading small files took 40 ms where one thread and
 * the loop took 25). Past `eager`, up to `limit`, threads are for work that
 * blocks: a monitor thread, alive while work waits, looks every STALL_MS
 * and starts one more thread when work is queued, no thread is idle or
 * waking, and no work has finished since it last looked (so every thread
 * is blocked, or busy with a long call). As in Go's runtime, whose sysmon
 * hands a blocked thread's work to a new one. Threads are detached: nothing
 * ever joins them, so closing a Lua state never waits for the pool.
 *
 * Cancellation of a running job (Zig's Threaded backend): the job is flagged
 * and its thread is sent the interrupt signal, which has a no-op handler
 * installed without SA_RESTART, so a blocking read on a pipe returns EINTR.
 * A signal sent just before the thread enters the syscall would be lost, so
 * an interrupter thread re-sends it (1 ms, doubling to 64 ms) for as long as
 * a flagged job is running. The signal is util/process.h's interrupt signal
 * (SIGURG: used by nothing a Lua program does; Go's runtime uses it for
 * preemption, so it is a poor choice only inside a Go process); when none
 * could be had, running jobs are never interrupted and just finish (still
 * correct, only slower to cancel). Pool threads block every
 * other signal, so process-directed signals (SIGINT, SIGCHLD) keep going to
 * the Lua threads.
 *
 * Process exit and dlclose: Lua unloads this library when the last state
 * that required it closes, while idle pool threads (and the signal handler)
 * still live in its code. The pool therefore pins the library once
 * (dlopen RTLD_NOLOAD|RTLD_NODELETE on itself), so its code stays mapped
 * for the life of the process, and keeps all its state in static storage,
 * which is never freed: an idle thread that wakes after every state has
 * closed finds valid memory and leaves; exit() simply ends it. A closing
 * client calls fio_pool_forget, after which no thread calls its jobs' done
 * as if it were there.
 *
 * Locks: pool.mu only, and no call that can block runs under it: it is held to
 * move jobs between the queue and the running list, to start threads and to
 * send signals (pthread_kill). A job's done (which posts to a loop and wakes
 * it), the futex wake of a claimed idle thread and the start of the monitor
 * are made after pool.mu is dropped; pool.finishing keeps fio_pool_forget waiting
 * for a done in progress. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "io/pool.h"
#include "util/config.h"
#include "util/process.h"

#define POOL_MAX 1024                 /* hard bound on the limit */
#define IDLE_MS 5000                  /* an idle thread leaves after this */
#define STACK_SIZE (1024 * 1024)      /* syscalls need little stack */
#define INTERRUPT_MAX_MS 64           /* re-send period, at most */
#define STALL_MS 2                    /* the monitor's period */
#define MONITOR_IDLE_TICKS 250        /* it leaves after this many idle */
#define TAKE_SCAN 64                  /* fio_pool_take looks this far back */

/* A job's pool fields are read and written under pool.mu only, except stop:
 * set under pool.mu, read by the running thread without it, between calls. */
enum { W_QUEUED = 1, W_RUNNING };

static fio_job *job_of(fio_dnode *n) { return fio_entry(n, fio_job, node); }

/* The pool. Invariants, all under mu:
 *  - queue holds exactly the QUEUED jobs, in FIFO order; running holds
 *    exactly the RUNNING jobs; each job is on one of the two (its node);
 *  - w->state is W_QUEUED or W_RUNNING for every job w in either list, and
 *    set to 0 under mu before its done is called;
 *  - nthreads counts live workers (started, not yet returned); nidle those
 *    asleep in a bed on the idle list, no submission having claimed them;
 *    nwaking those claimed (or just started) that have not yet looked at
 *    the queue: they will each take a job; nidle + nwaking <= nthreads;
 *  - a live worker has a bed of its own (beds[]); the others are on the
 *    free list;
 *  - interrupting is 1 while the interrupter thread lives; it re-sends the
 *    signal to every running job with stop set, and leaves when none. */
static struct {
  pthread_mutex_t mu;
  pthread_cond_t icond;     /* a new cancel for the interrupter */
  fio_dlist queue;          /* jobs not started */
  fio_dlist running;        /* jobs in a thread's run */
  int nthreads, nidle, nwaking;
  int idle, free;           /* bed lists (indices into beds, -1: empty) */
  int limit;                /* FIBERIO_POOL_SIZE, or the default */
  int eager;                /* threads started without a stall first */
  int monitoring;           /* the monitor thread lives */
  uint64_t ndone;           /* works finished, ever (the monitor's clock) */
  int interrupting, interrupt_new;
  long idle_ms;
  int sig;                  /* the interrupt signal; 0: none could be had */
  /* Threads in a done of a job not forgotten, outside mu (see run_head): a
   * client is not gone before none is. Not per client: a fork in the middle
   * of one leaves the child's count to atfork_child, which knows none. */
  atomic_int finishing;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Where an idle worker sleeps: a futex word of its own, woken by the one
 * submission that claims it. A condition variable would do, but glibc's
 * signals every waiter's group in turn and makes each woken thread retake
 * the mutex: on two CPUs, with four workers and the loop handing each other
 * small files, threads spent more time waking one another than reading.
 * Beds are static, never freed: a waker that stores into one just after
 * its sleeper went (a timeout racing the claim is settled under pool.mu, but
 * the store and the wake come after the unlock) finds valid memory, and the
 * sleeper takes a late wake as spurious: it looks at claimed under pool.mu. */
typedef struct bed {
  _Alignas(64) atomic_uint word; /* 1: woken (the futex word) */
  int claimed;                   /* under pool.mu: a submission took it */
  int next;                      /* the idle or free list */
} bed;
static bed beds[POOL_MAX];

static pthread_once_t pool_once_flag = PTHREAD_ONCE_INIT;
static atomic_int pool_started; /* pool_init has run (set last, release) */

/* --- set-up ---------------------------------------------------------------- */

/* The condition variable, and every bed free (no worker exists yet). */
static void init_sync(void) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&pool.icond, &ca);
  pthread_condattr_destroy(&ca);
  pool.idle = -1;
  pool.free = -1;
  for (int i = POOL_MAX - 1; i >= 0; i--) {
    beds[i].next = pool.free;
    pool.free = i;
  }
}

/* fork: hold pool.mu across it so the child gets a consistent pool. The
 * child has none of the parent's pool threads: it starts with no threads
 * (new ones start on the next submission and run what is queued) and
 * forgets the running jobs, whose calls ran in the parent. */
static void atfork_prepare(void) { pthread_mutex_lock(&pool.mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&pool.mu); }
static void atfork_child(void) {
  pool.running = (fio_dlist){NULL, NULL, 0}; /* (their threads do not
                                              * exist here: leaked) */
  pool.nthreads = pool.nidle = pool.nwaking = 0;
  pool.interrupting = pool.interrupt_new = pool.monitoring = 0;
  atomic_store(&pool.finishing, 0); /* (their threads do not exist here) */
  init_sync();
  pthread_mutex_unlock(&pool.mu);
}

static void pool_init(void) {
  const fio_config *cfg = fio_config_env();
  long ncpu = fio_ncpu();
  long dflt = ncpu > 2 ? 2 * ncpu : 4;
  if (dflt > POOL_MAX) dflt = POOL_MAX;
  pool.limit = cfg->pool_size ? cfg->pool_size : (int)dflt;
  pool.eager = cfg->pool_eager ? cfg->pool_eager : (ncpu > 1 ? (int)ncpu - 1 : 1);
  if (pool.eager > pool.limit) pool.eager = pool.limit;
  pool.idle_ms = cfg->pool_idle_ms ? cfg->pool_idle_ms : IDLE_MS;
  init_sync();
  pool.sig = fio_interrupt_signal();
  fio_pin_library(); /* threads run this library's code */
  pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
  atomic_store_explicit(&pool_started, 1, memory_order_release);
}

static void pool_once(void) { pthread_once(&pool_once_flag, pool_init); }

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

/* Start a pool thread running fn (util/process.h). */
static int spawn(void *(*fn)(void *)) {
  return fio_thread_start(fn, NULL, STACK_SIZE);
}

static void q_remove(fio_job *w) {
  fio_dlist_remove(&pool.queue, &w->node);
  atomic_fetch_sub_explicit(&w->client->queued, 1, memory_order_relaxed);
}

static void running_remove(fio_job *w) {
  fio_dlist_remove(&pool.running, &w->node);
}

/* Run the work at the head of the queue. pool.mu held on entry and on return,
 * released while the syscall runs. */
static void run_head(void) {
  fio_job *w = job_of(pool.queue.head);
  q_remove(w);
  w->state = W_RUNNING;
  w->tid = pthread_self();
  fio_dlist_push(&pool.running, &w->node);
  pthread_mutex_unlock(&pool.mu);

  int res;
  for (;;) {
    if (atomic_load_explicit(&w->stop, memory_order_acquire)) {
      res = -ECANCELED; /* before the call, or it was interrupted */
      break;
    }
    res = w->run(w, &w->stop);
    if (res != -EINTR) break; /* a stray signal without a cancel: retry */
  }

  pthread_mutex_lock(&pool.mu);
  running_remove(w);
  pool.ndone++;
  w->state = 0;
  int forgotten = w->forgotten;
  /* The done (a post and, when one is due, a wake: a syscall) is made
   * without pool.mu, which every other worker and the loop want meanwhile;
   * pool.finishing keeps fio_pool_forget from returning (and the client from
   * going) until it is made. */
  if (!forgotten) atomic_fetch_add_explicit(&pool.finishing, 1, memory_order_relaxed);
  pthread_mutex_unlock(&pool.mu);
  w->done(w, res, forgotten);
  if (!forgotten) atomic_fetch_sub_explicit(&pool.finishing, 1, memory_order_release);
  pthread_mutex_lock(&pool.mu);
}

/* Sleep in b until woken or until (CLOCK_MONOTONIC); 1 if the time ran out
 * unwoken. A signal (a cancel's interrupt) just sleeps again. */
static int sleep_in(bed *b, const struct timespec *until) {
  while (!atomic_load_explicit(&b->word, memory_order_acquire)) {
    long r = syscall(SYS_futex, &b->word, FUTEX_WAIT_BITSET_PRIVATE, 0u,
                     until, NULL, FUTEX_BITSET_MATCH_ANY);
    if (r < 0 && errno == ETIMEDOUT)
      return !atomic_load_explicit(&b->word, memory_order_acquire);
  }
  return 0;
}

/* Take an idle worker off the idle list for the work just queued: -1 if
 * none. pool.mu held; wake it with wake_bed after the unlock. */
static int claim_idle(void) {
  int i = pool.idle;
  if (i < 0) return -1;
  pool.idle = beds[i].next;
  beds[i].claimed = 1;
  pool.nidle--;
  pool.nwaking++;
  return i;
}

static void wake_bed(int i) {
  atomic_store_explicit(&beds[i].word, 1, memory_order_release);
  syscall(SYS_futex, &beds[i].word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Take bed i off the idle list (its sleeper timed out unclaimed). pool.mu. */
static void idle_remove(int i) {
  for (int *p = &pool.idle; *p >= 0; p = &beds[*p].next)
    if (*p == i) {
      *p = beds[i].next;
      pool.nidle--;
      return;
    }
}

static void *worker(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "fiberio-pool"); /* for ps, gdb, specs */
  if (pool.sig) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, pool.sig);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
  }
  pthread_mutex_lock(&pool.mu);
  pool.nwaking--; /* (counted as waking since its start: see grow) */
  int i = pool.free;
  pool.free = beds[i].next;
  bed *me = &beds[i];
  for (;;) {
    if (pool.queue.head) {
      run_head();
      continue;
    }
    struct timespec until;
    deadline_in(&until, pool.idle_ms);
    me->claimed = 0;
    atomic_store_explicit(&me->word, 0, memory_order_relaxed);
    me->next = pool.idle;
    pool.idle = i;
    pool.nidle++;
    int timedout;
    for (;;) {
      pthread_mutex_unlock(&pool.mu);
      timedout = sleep_in(me, &until);
      pthread_mutex_lock(&pool.mu);
      if (me->claimed) {
        pool.nwaking--;
        break;
      }
      if (timedout) {
        idle_remove(i);
        break;
      }
      /* a late wake from an earlier claim: sleep on */
      atomic_store_explicit(&me->word, 0, memory_order_relaxed);
    }
    if (!me->claimed && !pool.queue.head) break; /* idle long enough: shrink */
  }
  me->next = pool.free;
  pool.free = i;
  pool.nthreads--;
  pthread_mutex_unlock(&pool.mu);
  return NULL;
}

/* Re-send the interrupt signal to every running work with a cancel until
 * none is left. The work (so its thread) stays alive while we hold pool.mu. */
static void *interrupter(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "fiberio-intr");
  long ms = 1;
  pthread_mutex_lock(&pool.mu);
  for (;;) {
    int any = 0;
    for (fio_dnode *n = pool.running.head; n; n = n->next)
      if (atomic_load_explicit(&job_of(n)->stop, memory_order_relaxed)) {
        fio_job *w = job_of(n);
        pthread_kill(w->tid, pool.sig);
        any = 1;
      }
    if (!any) break;
    struct timespec until;
    deadline_in(&until, ms);
    pool.interrupt_new = 0;
    while (!pool.interrupt_new &&
           pthread_cond_timedwait(&pool.icond, &pool.mu, &until) != ETIMEDOUT) {
    }
    ms = pool.interrupt_new ? 1 : (ms * 2 > INTERRUPT_MAX_MS ? INTERRUPT_MAX_MS : ms * 2);
  }
  pool.interrupting = 0;
  pthread_mutex_unlock(&pool.mu);
  return NULL;
}

/* Start workers for queued work that no idle or waking thread will take,
 * while fewer than upto live. pool.mu held. Returns the error of a failed
 * start, or 0. A thread just started counts as waking until it looks at the
 * queue. */
static int grow(int upto) {
  size_t have = (size_t)pool.nidle + (size_t)pool.nwaking;
  int need = (int)(pool.queue.len > have ? pool.queue.len - have : 0);
  for (int started = 0; started < need && pool.nthreads < upto; started++) {
    int r = spawn(worker);
    if (r) return r;
    pool.nthreads++;
    pool.nwaking++;
  }
  return 0;
}

/* The monitor (see the top comment). Leaves after MONITOR_IDLE_TICKS looks
 * with nothing queued, or when the pool is at its limit; a submission
 * starts it again when needed. */
static void *monitor(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "fiberio-mon");
  int quiet = 0;
  pthread_mutex_lock(&pool.mu);
  uint64_t seen = pool.ndone;
  while (quiet < MONITOR_IDLE_TICKS && pool.nthreads < pool.limit) {
    pthread_mutex_unlock(&pool.mu);
    struct timespec d = {0, STALL_MS * 1000000L};
    nanosleep(&d, NULL);
    pthread_mutex_lock(&pool.mu);
    quiet = pool.queue.head ? 0 : quiet + 1;
    if (pool.queue.head && pool.ndone == seen && !pool.nidle && !pool.nwaking)
      (void)grow(pool.nthreads + 1); /* a failed start: try again next time */
    seen = pool.ndone;
  }
  pool.monitoring = 0;
  pthread_mutex_unlock(&pool.mu);
  return NULL;
}

/* --- the API --------------------------------------------------------------- */

void fio_pool_submit(fio_job *w) {
  pool_once();
  atomic_store_explicit(&w->stop, 0, memory_order_relaxed); /* a reused job */
  w->forgotten = 0;
  pthread_mutex_lock(&pool.mu);
  w->state = W_QUEUED;
  fio_dlist_push(&pool.queue, &w->node);
  atomic_fetch_add_explicit(&w->client->queued, 1, memory_order_relaxed);
  int b = -1, watch = 0, inline_run = 0;
  if (pool.queue.len > (size_t)pool.nwaking) { /* no thread is being woken for it */
    b = claim_idle();
    if (b < 0 && pool.nthreads < pool.eager && grow(pool.eager) && pool.nthreads == 0) {
      /* No thread exists and none can start: run it here instead. */
      q_remove(w);
      w->state = 0;
      inline_run = 1;
    }
    /* It waits: past the eager threads, the monitor decides on more. */
    watch = !inline_run && b < 0 && pool.queue.len > (size_t)pool.nwaking &&
            !pool.monitoring && pool.nthreads >= pool.eager && pool.nthreads < pool.limit;
    if (watch) pool.monitoring = 1;
  }
  pthread_mutex_unlock(&pool.mu);
  /* (after the unlock: the woken thread does not wait for pool.mu then) */
  if (b >= 0) wake_bed(b);
  if (watch && spawn(monitor)) {
    pthread_mutex_lock(&pool.mu);
    pool.monitoring = 0; /* the next submission that waits tries again */
    pthread_mutex_unlock(&pool.mu);
  }
  if (!inline_run) return;
  /* Out of threads: as Zig's pool, run the call inline. */
  int res;
  do res = w->run(w, &w->stop);
  while (res == -EINTR);
  w->done(w, res, 0);
}

void fio_pool_cancel(fio_job *w) {
  pool_once();
  int dropped = 0;
  pthread_mutex_lock(&pool.mu);
  if (w->state && !w->must_run) {
    if (w->state == W_QUEUED) {
      q_remove(w);
      w->state = 0;
      dropped = 1; /* done below, without pool.mu */
    } else if (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
      atomic_store_explicit(&w->stop, 1, memory_order_release);
      if (pool.sig) {
        pthread_kill(w->tid, pool.sig);
        if (pool.interrupting) {
          pool.interrupt_new = 1;
          pthread_cond_signal(&pool.icond);
        } else if (spawn(interrupter) == 0) {
          pool.interrupting = 1;
        }
      }
    }
  }
  pthread_mutex_unlock(&pool.mu);
  if (dropped) w->done(w, -ECANCELED, 0);
}

fio_job *fio_pool_take(fio_pool_client *client, int (*want)(const fio_job *)) {
  if (!atomic_load_explicit(&pool_started, memory_order_acquire)) return NULL;
  if (!atomic_load_explicit(&client->queued, memory_order_relaxed))
    return NULL; /* (nothing of this client's waits: no lock taken) */
  fio_job *got = NULL;
  pthread_mutex_lock(&pool.mu);
  /* Not the job a thread is being woken for: it would wake to nothing. */
  if (pool.queue.len > (size_t)pool.nwaking) {
    int n = 0;
    for (fio_dnode *nd = pool.queue.tail; nd && n < TAKE_SCAN; nd = nd->prev, n++) {
      fio_job *w = job_of(nd);
      if (w->client == client && want(w)) {
        q_remove(w);
        w->state = 0;
        got = w;
        break;
      }
    }
  }
  pthread_mutex_unlock(&pool.mu);
  return got;
}

void fio_pool_forget(fio_pool_client *client) {
  if (!atomic_load_explicit(&pool_started, memory_order_acquire)) return;
  fio_dlist dropped = {NULL, NULL, 0};
  pthread_mutex_lock(&pool.mu);
  for (fio_dnode *n = pool.queue.head, *next; n; n = next) {
    next = n->next;
    fio_job *w = job_of(n);
    if (w->client != client) continue;
    q_remove(w);
    w->state = 0;
    fio_dlist_push(&dropped, &w->node);
  }
  for (fio_dnode *n = pool.running.head; n; n = n->next)
    if (job_of(n)->client == client) job_of(n)->forgotten = 1;
  pthread_mutex_unlock(&pool.mu);
  /* Never ran: canceled, but a must_run job (a close) still runs, here.
   * Outside pool.mu: close(2) can block. */
  fio_job *w;
  while ((w = job_of(fio_dlist_pop(&dropped)))) {
    int res = -ECANCELED;
    if (w->must_run) {
      do res = w->run(w, &w->stop);
      while (res == -EINTR);
    }
    w->done(w, res, 0);
  }
  while (atomic_load_explicit(&pool.finishing, memory_order_acquire))
    sched_yield(); /* a done being made (see run_head): a syscall's time */
}

void fio_pool_stats_get(fio_pool_stats *st) {
  pool_once();
  pthread_mutex_lock(&pool.mu);
  st->limit = pool.limit;
  st->threads = pool.nthreads;
  st->idle = pool.nidle;
  st->queued = (int)pool.queue.len;
  st->running = (int)pool.running.len;
  pthread_mutex_unlock(&pool.mu);
}
