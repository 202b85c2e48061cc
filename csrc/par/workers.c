/* workers.c — fio.parallel: Lua on every core. Worker threads, each with
 * its own lua_State (standard libraries and fiberio loaded, the caller's
 * package.path/cpath) and its own loop and ring, run tasks as fibers.
 *
 * A task is the function (string.dump'd: no upvalues but _ENV) and its
 * arguments, copied as values (nil, booleans, numbers, strings and tables of
 * those). On the caller's side it is an operation (FIO_OP_TASK) that a fiber
 * waits on like any I/O, so a parallel future awaits and cancels as an
 * async one does. Tasks wait in one queue; an idle worker takes the next,
 * and a busy one takes more at each scheduler turn (its tasks are fibers, so
 * tasks that wait on one another cannot deadlock the pool). Workers start on
 * demand up to fio.config's threads (default: the CPU count).
 *
 * Cancel: a task not started is taken off the queue and never runs; a
 * running one gets Canceled in its fiber (at its next suspension point, or
 * within a few thousand VM instructions if it computes: a count hook checks).
 *
 * Locks: pool->mu guards the queue, the worker list and every task's state;
 * the loops' post_mu is taken inside it (a leaf). A task's result buffers
 * are written by its worker before the task is posted, read by the caller
 * after: the post's lock orders them. */
#include <errno.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "io/backend.h"
#include "par/workers.h"
#include "util/process.h"

/* --- tasks and the pool ----------------------------------------------------------- */

enum { TS_QUEUED, TS_RUNNING, TS_DONE };

struct worker {
  pthread_t thread;
  fio_workers *pool;
  fio_loop *loop;           /* set by the worker once its state is up */
  fio_dlist running;        /* its tasks (fibers) */
  /* the coroutine a task's code resumed and that runs now, innermost
   * (coroutine.resume and wrap, in worker states, keep it; the signal
   * handler reads it) */
  _Atomic(lua_State *) nested;
  int idle;                 /* waiting in its loop for work */
  int woken;                /* idle, and woken for a task: not again */
  worker *next;
};

struct fio_workers {
  pthread_mutex_t mu;
  fio_dlist queue;          /* tasks not started */
  worker *workers;
  int nworkers, max, starting;
  int shutdown;
  atomic_int stopping;      /* = shutdown, for the hook (no lock there) */
  char *path, *cpath;       /* the caller's package paths */
  char backend[16];
  int wq_fd;                /* the first loop's ring: worker rings attach
                             * to its io-wq (-1: not io_uring) */
};

/* The key of a loop's pool (fio_loop_ext). */
static const char ext_key = 0;

static task *task_of(fio_dnode *n) { return fio_entry(n, task, node); }

static void q_remove(fio_workers *p, task *t) {
  fio_dlist_remove(&p->queue, &t->node);
}

static void run_remove(worker *w, task *t) {
  fio_dlist_remove(&w->running, &t->node);
}

void fio_task_free(fio_op *op) {
  task *t = (task *)op->mem;
  if (!t) return;
  free(t->fn);
  free(t->args.p);
  free(t->res.p);
  free(t);
  op->mem = NULL;
}

/* (pool->mu held) Post t's end to its caller; t is the caller's again. */
static void task_post(task *t, int res) {
  t->state = TS_DONE;
  if (t->caller) fio_loop_post(t->caller, t->op, res);
  else fio_op_drop(t->op, res); /* (its caller's loop closed: forgotten) */
}

/* --- the worker thread --------------------------------------------------------- */

/* Reaching a task that computes and never suspends: the canceler sends the
 * worker thread sig_cancel; its handler (on the worker thread, so no race)
 * sets a one-shot count hook on the fiber that runs now, or, between
 * fibers, asks the loop to set it on the next fiber it resumes
 * (loop->resume_hook_due). The hook raises Canceled if its fiber is a canceled
 * task's; in any fiber it also arms the same hook on every other canceled
 * task's fiber, so a cancel that came while another fiber of the worker
 * computed reaches the task when it runs. The worker arms it too when it
 * hands a cancel to a task's fiber. No hook is set otherwise: a count hook
 * makes the VM trap on every instruction (half the speed). A task
 * computing inside a coroutine it resumed is reached there: the handler
 * hooks worker->nested too (see nested_resume). */
static int sig_cancel; /* SIGRTMIN+5, or +6 if taken; 0: none (no signal_worker) */
static _Thread_local worker *tls_worker;

static void cancel_hook(lua_State *L, lua_Debug *ar);
#if defined(__SANITIZE_THREAD__)
static void cancel_hook_poll(lua_State *L, lua_Debug *ar);
#define POLL_EVERY 4096
#endif

/* Arm the one-shot hook on co. Under ThreadSanitizer task fibers poll
 * instead (see start_task), and a one-shot hook would end the polling. */
static void arm_cancel_hook(lua_State *co) {
#if defined(__SANITIZE_THREAD__)
  (void)co;
#else
  lua_sethook(co, cancel_hook, LUA_MASKCOUNT, 1);
#endif
}

/* Whether t is to be canceled (its caller asked, or the pool stops). */
static int task_canceled(worker *w, task *t) {
  return atomic_load(&t->cancel) || atomic_load(&w->pool->stopping);
}

/* The hook's work on the worker thread, in fiber thread L. */
static void cancel_check(lua_State *L) {
  worker *w = tls_worker;
  if (!w || !w->loop) return;
  fio_fiber *f = w->loop->current;
  /* f's own thread, or the coroutine f's code resumed and runs now (not
   * one that merely inherited the hook) */
  if (!f || (f->co != L && L != atomic_load_explicit(&w->nested, memory_order_relaxed)))
    return;
  int mine = atomic_load(&w->pool->stopping);
  for (fio_dnode *n = w->running.head; n; n = n->next) {
    task *t = task_of(n);
    if (!task_canceled(w, t)) continue;
    if (t->fiber == f) mine = 1;
    else if (t->fiber->state != FIO_DONE && !t->fiber->cancel_done)
      arm_cancel_hook(t->fiber->co);
  }
  if (mine && !f->shield && !f->cancel_done) fio_raise_canceled(L, w->loop, f);
}

static void cancel_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
#if defined(__SANITIZE_THREAD__)
  lua_sethook(L, cancel_hook_poll, LUA_MASKCOUNT, POLL_EVERY);
#else
  lua_sethook(L, NULL, 0, 0); /* one shot */
#endif
  cancel_check(L);
}

#if defined(__SANITIZE_THREAD__)
static void cancel_hook_poll(lua_State *L, lua_Debug *ar) {
  (void)ar;
  cancel_check(L);
}
#endif

static void on_cancel_signal(int sig) {
  (void)sig;
  worker *w = tls_worker;
  if (!w || !w->loop) return;
  fio_fiber *f = w->loop->current;
  if (f && f->co) {
    lua_sethook(f->co, cancel_hook, LUA_MASKCOUNT, 1);
    lua_State *n = atomic_load_explicit(&w->nested, memory_order_relaxed);
    if (n) lua_sethook(n, cancel_hook, LUA_MASKCOUNT, 1);
  } else {
    w->loop->resume_hook_due = 1; /* the next fiber resumed */
  }
}

/* coroutine.resume and coroutine.wrap of a worker's state: as Lua's, and
 * worker->nested is the coroutine they resume while it runs, so that a
 * cancel reaches a task computing inside it (the handler hooks it too;
 * resume then returns false, Canceled, and a wrap function raises it).
 *
 * Resume co with the n values on top of L (lua_resume raises nothing: its
 * errors come back). Returns how many results it moved onto L, or -1 with
 * the error on top. */
static int resume_marked(lua_State *L, lua_State *co, int n) {
  if (!lua_checkstack(co, n)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, n);
  /* (only this thread writes nested; its signal handler reads it) */
  worker *w = tls_worker;
  lua_State *prev = atomic_load_explicit(&w->nested, memory_order_relaxed);
  atomic_store_explicit(&w->nested, co, memory_order_relaxed);
  int nres, st = lua_resume(co, L, n, &nres);
  atomic_store_explicit(&w->nested, prev, memory_order_relaxed);
  if (st != LUA_OK && st != LUA_YIELD) {
    lua_xmove(co, L, 1); /* the error */
    return -1;
  }
  if (!lua_checkstack(L, nres + 1)) {
    lua_pop(co, nres);
    lua_pushliteral(L, "too many results to resume");
    return -1;
  }
  lua_xmove(co, L, nres);
  return nres;
}

/* coroutine.resume(co, ...) -> true, results | false, error */
static int nested_resume(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  int r = resume_marked(L, lua_tothread(L, 1), lua_gettop(L) - 1);
  lua_pushboolean(L, r >= 0);
  if (r < 0) r = 1;
  lua_insert(L, -(r + 1));
  return r + 1;
}

/* What coroutine.wrap returns: upvalue 1 the coroutine. Its results, or
 * its error raised here, placed as Lua places it, the coroutine closed. */
static int nested_wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  int r = resume_marked(L, co, lua_gettop(L));
  if (r >= 0) return r;
  int st = lua_status(co);
  if (st != LUA_OK && st != LUA_YIELD) { /* it raised: close it */
    st = fio_closethread(co, L);
    lua_xmove(co, L, 1); /* (its error, or its closing's) */
  }
  if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

/* coroutine.wrap(f) */
static int nested_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, nested_wrapped, 1);
  return 1;
}

static pthread_once_t sig_once = PTHREAD_ONCE_INIT;
static void install_cancel_signal(void) {
  sig_cancel = fio_claim_signal((int[]){SIGRTMIN + 5, SIGRTMIN + 6}, 2,
                                on_cancel_signal, SA_RESTART);
}

/* (pool->mu held) Interrupt w's computing fiber, if any. */
static void signal_worker(worker *w) {
  if (w->loop) fio_loop_wake(w->loop);
  if (sig_cancel) pthread_kill(w->thread, sig_cancel); /* (joined at shutdown) */
}

/* The body of a task's fiber: upvalue 1 the loop, 2 the task. */
static int task_done(lua_State *L, int status, lua_KContext ctx) {
  task *t = (task *)ctx;
  /* stack: traceback handler, fn results... or (error, traceback) */
  if (status == LUA_OK || status == LUA_YIELD) {
    int n = lua_gettop(L) - 1;
    const char *err = fio_ser_values(L, 2, n, &t->res);
    if (err) {
      free(t->res.p);
      memset(&t->res, 0, sizeof t->res);
      lua_pushfstring(L, "fio.parallel: results: %s", err);
      fio_ser_values(L, -1, 1, &t->res);
      t->result = TR_ERROR;
    } else {
      t->result = TR_OK;
    }
    return 0;
  }
  /* an error: Canceled, or a value (a string gets the worker's traceback) */
  fio_loop *loop = lua_touserdata(L, lua_upvalueindex(1));
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->canceled_ref);
  if (lua_rawequal(L, -1, -2)) {
    t->result = TR_CANCELED;
    return 0;
  }
  lua_pop(L, 1);
  t->result = TR_ERROR;
  if (fio_ser_values(L, -1, 1, &t->res)) {
    free(t->res.p);
    memset(&t->res, 0, sizeof t->res);
    lua_pushliteral(L, "fio.parallel: the error value cannot be copied");
    fio_ser_values(L, -1, 1, &t->res);
  }
  return 0;
}

static int msgh(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) /* (not lua_tostring: keep numbers) */
    luaL_traceback(L, L, lua_tostring(L, 1), 1); /* the worker's traceback */
  else
    lua_settop(L, 1);
  return 1;
}

static int task_body(lua_State *L) {
  task *t = lua_touserdata(L, lua_upvalueindex(2));
  lua_settop(L, 0);
  lua_pushcfunction(L, msgh);
  if (luaL_loadbufferx(L, t->fn, t->fnlen, "=(parallel)", "b") != LUA_OK)
    return task_done(L, LUA_ERRRUN, (lua_KContext)t);
  int n = fio_deser_values(L, t->args.p, t->args.n);
  int status = lua_pcallk(L, n, LUA_MULTRET, 1, (lua_KContext)t, task_done);
  return task_done(L, status, (lua_KContext)t);
}

/* (pool->mu held) Start t on w: a fiber in w's state. */
static void start_task(lua_State *L, worker *w, task *t) {
  t->state = TS_RUNNING;
  t->w = w;
  fio_dlist_push_head(&w->running, &t->node);
  lua_pushlightuserdata(L, w->loop);
  lua_pushlightuserdata(L, t);
  lua_pushcclosure(L, task_body, 2);
  t->fiber = fio_spawn(L, w->loop, lua_gettop(L), 0, NULL);
  t->fref = luaL_ref(L, LUA_REGISTRYINDEX); /* read after it ends */
  lua_pop(L, 1);
#if defined(__SANITIZE_THREAD__)
  /* ThreadSanitizer holds a signal back until the thread enters its
   * runtime, which a Lua loop never does: under it, poll with a count hook
   * (slow, but only in that build). */
  lua_sethook(t->fiber->co, cancel_hook_poll, LUA_MASKCOUNT, POLL_EVERY);
#endif
}

/* Set up a worker's state: libraries, the caller's paths, fiberio with the
 * caller's backend, its loop started. Returns its loop or NULL. */
static fio_loop *worker_state(lua_State *L, fio_workers *p) {
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, p->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, p->cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "fiberio");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) return NULL;
  lua_getfield(L, -1, "config");
  lua_createtable(L, 0, 1);
  lua_pushstring(L, p->backend);
  lua_setfield(L, -2, "backend");
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) return NULL;
  lua_getfield(L, -1, "backend"); /* starts the loop on this thread */
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) return NULL;
  lua_pop(L, 1);
  lua_getglobal(L, "coroutine");
  lua_pushcfunction(L, nested_resume);
  lua_setfield(L, -2, "resume");
  lua_pushcfunction(L, nested_wrap);
  lua_setfield(L, -2, "wrap");
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "fiberio.loopptr");
  fio_loop *loop = lua_touserdata(L, -1);
  lua_pop(L, 1);
  /* nested parallel calls share this pool (its owner's loop closes it) */
  if (loop && fio_loop_ext_set(loop, &ext_key, p, NULL) < 0) loop = NULL;
  return loop;
}

/* Fail every queued task (no worker can run them). (pool->mu held) */
static void fail_queue(fio_workers *p, const char *why) {
  while (p->queue.head) {
    task *t = task_of(p->queue.head);
    q_remove(p, t);
    lua_State *E = luaL_newstate();
    if (E) {
      lua_pushstring(E, why);
      fio_ser_values(E, -1, 1, &t->res);
      lua_close(E);
    }
    t->result = TR_ERROR;
    task_post(t, 0);
  }
}

static void *worker_main(void *arg) {
  worker *w = arg;
  fio_workers *p = w->pool;
  sigset_t all;
  tls_worker = w; /* before sig_cancel is unblocked (wake_for_queue blocked it) */
  fio_uring_attach_wq = p->wq_fd; /* for the ring worker_state starts */
  sigfillset(&all);
  if (sig_cancel) sigdelset(&all, sig_cancel);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  lua_State *L = luaL_newstate();
  fio_loop *loop = L ? worker_state(L, p) : NULL;
  pthread_mutex_lock(&p->mu);
  p->starting--;
  if (!loop) {
    p->nworkers--;
    if (p->nworkers == 0) fail_queue(p, "fio.parallel: a worker could not start");
    pthread_mutex_unlock(&p->mu);
    if (L) lua_close(L);
    return NULL;
  }
  w->loop = loop;
  loop->hosted = 1;
  loop->resume_hook = arm_cancel_hook;
  for (;;) {
    /* Take one task per turn: the rest stay for idle workers. */
    task *t = task_of(p->queue.head);
    if (t && !p->shutdown) {
      q_remove(p, t);
      start_task(L, w, t);
    } else if (w->running.len == 0) {
      if (p->shutdown) break;
      /* Idle: wait in the loop, where wake_for_queue's wake (a MSG_RING on io_uring,
       * the eventfd on threads) ends the wait; fibers the finished tasks
       * left behind (fio.async never awaited) go on meanwhile. */
      w->idle = 1;
      pthread_mutex_unlock(&p->mu);
      fio_loop_wait(loop, 0);
      fio_loop_run_ready(loop, L);
      pthread_mutex_lock(&p->mu);
      w->idle = w->woken = 0;
      continue;
    }
    /* Cancels the callers asked for (and all of them at shutdown). */
    for (fio_dnode *n = w->running.head; n; n = n->next) {
      task *r = task_of(n);
      if ((atomic_load(&r->cancel) || p->shutdown) && !r->cancel_sent) {
        r->cancel_sent = 1;
        atomic_store(&r->cancel, 1);
        fio_request_cancel(loop, L, r->fiber);
        /* if it runs again before it suspends, it computes: reach it */
        if (r->fiber->state != FIO_DONE) arm_cancel_hook(r->fiber->co);
      }
    }
    pthread_mutex_unlock(&p->mu);
    fio_loop_run_ready(loop, L);
    pthread_mutex_lock(&p->mu);
    /* Tasks whose fibers have ended go back to their callers. */
    for (fio_dnode *n = w->running.head, *next; n; n = next) {
      next = n->next;
      task *r = task_of(n);
      if (r->fiber->state == FIO_DONE) {
        run_remove(w, r);
        luaL_unref(L, LUA_REGISTRYINDEX, r->fref);
        task_post(r, r->result == TR_CANCELED ? -ECANCELED : 0);
      }
    }
    if (w->running.len == 0) continue; /* idle: take a task, or sleep */
    /* (at shutdown: the cancels are sent; wait for the tasks to end) */
    int more = p->queue.head != NULL && !p->shutdown;
    pthread_mutex_unlock(&p->mu);
    fio_loop_wait(loop, more);
    pthread_mutex_lock(&p->mu);
  }
  w->loop = NULL; /* (its loop closes: nobody wakes it any more) */
  pthread_mutex_unlock(&p->mu);
  lua_close(L);
  return NULL;
}

/* (pool->mu held) Make sure some worker will see the queue. */
static void wake_for_queue(fio_workers *p) {
  /* One idle worker per queued task, each woken once. */
  int n = (int)p->queue.len;
  for (worker *w = p->workers; w && n > 0; w = w->next) {
    if (!w->idle) continue;
    if (!w->woken) {
      w->woken = 1;
      fio_loop_wake(w->loop);
    }
    n--;
  }
  /* More tasks waiting than idle workers (some may be starting): one more
   * worker, up to the bound. */
  if (n <= p->starting) return;
  if (p->nworkers < p->max) {
    worker *w = calloc(1, sizeof *w);
    if (w) {
      w->pool = p;
      pthread_once(&sig_once, install_cancel_signal);
      /* The thread starts with every signal blocked (sig_cancel until it
       * knows itself; it unblocks that one). */
      sigset_t sc, old;
      sigfillset(&sc);
      pthread_sigmask(SIG_BLOCK, &sc, &old);
      int r = pthread_create(&w->thread, NULL, worker_main, w);
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      if (r == 0) {
        w->next = p->workers;
        p->workers = w;
        p->nworkers++;
        p->starting++;
        return;
      }
      free(w);
    }
  }
  /* Every worker is busy: wake them, the first free turn takes it. */
  for (worker *w = p->workers; w; w = w->next)
    if (w->loop) fio_loop_wake(w->loop);
}

static void workers_submit(fio_loop *loop, fio_op *op) {
  fio_workers *p = fio_loop_ext_get(loop, &ext_key);
  task *t = (task *)op->mem;
  t->caller = loop;
  if (!p) { /* (its loop has closed its pool: as after a shutdown) */
    task_post(t, -ECANCELED);
    return;
  }
  pthread_mutex_lock(&p->mu);
  if (p->shutdown) {
    task_post(t, -ECANCELED);
  } else {
    t->state = TS_QUEUED;
    fio_dlist_push(&p->queue, &t->node);
    wake_for_queue(p);
  }
  pthread_mutex_unlock(&p->mu);
}

static void workers_cancel(fio_loop *loop, fio_op *op) {
  fio_workers *p = fio_loop_ext_get(loop, &ext_key);
  task *t = (task *)op->mem;
  if (!p) return; /* (shut down: every task was posted back already) */
  pthread_mutex_lock(&p->mu);
  if (t->state == TS_QUEUED) {
    q_remove(p, t);
    t->result = TR_CANCELED;
    task_post(t, -ECANCELED); /* it never runs */
  } else if (t->state == TS_RUNNING) {
    atomic_store(&t->cancel, 1);
    signal_worker(t->w);
  }
  pthread_mutex_unlock(&p->mu);
}

/* Cancel every task, join every worker, free the pool (its owner's loop is
 * closing). */
static void workers_shutdown(fio_loop *loop, void *data) {
  fio_workers *p = data;
  (void)loop;
  pthread_mutex_lock(&p->mu);
  p->shutdown = 1;
  atomic_store(&p->stopping, 1);
  while (p->queue.head) {
    task *t = task_of(p->queue.head);
    q_remove(p, t);
    t->result = TR_CANCELED;
    task_post(t, -ECANCELED);
  }
  for (worker *w = p->workers; w; w = w->next) {
    for (fio_dnode *n = w->running.head; n; n = n->next)
      atomic_store(&task_of(n)->cancel, 1);
    signal_worker(w); /* wakes idle workers too */
  }
  pthread_mutex_unlock(&p->mu);
  for (worker *w = p->workers, *next; w; w = next) {
    next = w->next;
    pthread_join(w->thread, NULL);
    free(w);
  }
  pthread_mutex_destroy(&p->mu);
  free(p->path);
  free(p->cpath);
  free(p);
}


/* op's caller loop is closing (a worker's own loop, whose nested task runs
 * on another worker): its end is dropped, never posted to that loop. */
static void workers_forget(fio_loop *loop, fio_op *op) {
  fio_workers *p = fio_loop_ext_get(loop, &ext_key);
  task *t = (task *)op->mem;
  if (!p) { /* (shut down: it was posted back, the loop completes it) */
    return;
  }
  pthread_mutex_lock(&p->mu);
  int now = 0;
  if (t->state == TS_QUEUED) {
    q_remove(p, t);
    t->state = TS_DONE;
    now = 1;
  } else if (t->state == TS_RUNNING) {
    t->caller = NULL;
    atomic_store(&t->cancel, 1);
    signal_worker(t->w);
  } /* (TS_DONE: posted already; the loop completes it) */
  pthread_mutex_unlock(&p->mu);
  if (now) fio_op_drop(op, -ECANCELED);
}

const fio_executor fio_workers_executor = {workers_submit, workers_cancel,
                                           workers_forget};

void fio_workers_ensure(lua_State *L, fio_loop *loop) {
  if (fio_loop_ext_get(loop, &ext_key)) return;
  fio_workers *p = calloc(1, sizeof *p);
  if (!p) luaL_error(L, "not enough memory");
  pthread_mutex_init(&p->mu, NULL);
  p->wq_fd = fio_uring_fd(loop);
  long ncpu = fio_ncpu();
  p->max = loop->cfg.threads ? loop->cfg.threads : (ncpu > 0 ? (int)ncpu : 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  p->path = strdup(lua_tostring(L, -2) ? lua_tostring(L, -2) : "");
  p->cpath = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
  lua_pop(L, 3);
  snprintf(p->backend, sizeof p->backend, "%s", loop->be->name);
  int full = 0;
  if (!p->path || !p->cpath ||
      (full = fio_loop_ext_set(loop, &ext_key, p, workers_shutdown) < 0)) {
    free(p->path);
    free(p->cpath);
    pthread_mutex_destroy(&p->mu);
    free(p);
    luaL_error(L, full ? "fio.parallel: the loop has no room for its workers"
                       : "not enough memory");
  }
}
