/* loop.c — the scheduler of one thread: its ready queue, its timers, waking
 * and canceling waiters, resuming fibers and finishing them, and driving the
 * loop for callers that cannot yield (the main chunk, C boundaries).
 *
 * One loop per lua_State (so per OS thread); nothing here is thread-safe and
 * nothing needs to be: backends deliver completions on the loop's thread. */
#include <errno.h>
#include <sys/eventfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/op.h"
#include "io/backend.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/fd.h"
#include "util/process.h"
#include "util/zero.h"

static void end_hook(lua_State *L, lua_Debug *ar);

/* --- ready queue ---------------------------------------------------------- */

static void rq_push(fio_loop *loop, fio_fiber *f) {
  fio_dlist_push(&loop->ready, &f->ready_node);
  f->queued = 1;
}

static void rq_remove(fio_loop *loop, fio_fiber *f) {
  if (!f->queued) return;
  fio_dlist_remove(&loop->ready, &f->ready_node);
  f->queued = 0;
}

static fio_fiber *rq_first(fio_loop *loop) {
  return fio_entry(loop->ready.head, fio_fiber, ready_node);
}

/* --- the fibers that have not ended --------------------------------------- */

/* (newest first: the order cancel_all cancels them in) */
static void live_add(fio_loop *loop, fio_fiber *f) {
  fio_dlist_push_head(&loop->live, &f->live_node);
}

static void live_remove(fio_loop *loop, fio_fiber *f) {
  if (fio_dlist_has(&loop->live, &f->live_node))
    fio_dlist_remove(&loop->live, &f->live_node);
}

/* --- timers: a binary min-heap of (deadline, seq, waiter) ----------------- */

static int heap_less(const fio_timer *a, const fio_timer *b) {
  if (a->deadline != b->deadline) return a->deadline < b->deadline;
  return a->seq < b->seq;
}

static void heap_set(fio_loop *loop, size_t i, fio_timer t) {
  loop->heap[i] = t;
  t.w->heap_idx = (uint32_t)i + 1;
}

static void heap_up(fio_loop *loop, size_t i) {
  fio_timer t = loop->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less(&t, &loop->heap[p])) break;
    heap_set(loop, i, loop->heap[p]);
    i = p;
  }
  heap_set(loop, i, t);
}

static void heap_down(fio_loop *loop, size_t i) {
  fio_timer t = loop->heap[i];
  size_t n = loop->heap_len;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_less(&loop->heap[c + 1], &loop->heap[c])) c++;
    if (!heap_less(&loop->heap[c], &t)) break;
    heap_set(loop, i, loop->heap[c]);
    i = c;
  }
  heap_set(loop, i, t);
}

static void timer_disarm(fio_loop *loop, fio_fiber *w) {
  if (!w->heap_idx) return;
  size_t i = w->heap_idx - 1;
  w->heap_idx = 0;
  fio_timer last = loop->heap[--loop->heap_len];
  if (i == loop->heap_len) return;
  heap_set(loop, i, last);
  if (i > 0 && heap_less(&last, &loop->heap[(i - 1) / 2])) heap_up(loop, i);
  else heap_down(loop, i);
}

/* Room for one more timer, or Lua's memory error raised in L. */
static void timer_reserve(lua_State *L, fio_loop *loop) {
  if (loop->heap_len < loop->heap_cap) return;
  size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
  fio_timer *h = cap <= SIZE_MAX / sizeof *h
                     ? realloc(loop->heap, cap * sizeof *h) : NULL;
  if (!h) {
    lua_pushliteral(L, "not enough memory");
    lua_error(L);
  }
  loop->heap = h;
  loop->heap_cap = cap;
}

void fio_timer_arm(lua_State *L, fio_loop *loop, fio_fiber *w,
                   uint64_t deadline) {
  timer_disarm(loop, w);
  timer_reserve(L, loop);
  fio_timer t = {deadline, loop->timer_seq++, w};
  loop->heap[loop->heap_len] = t;
  heap_up(loop, loop->heap_len++);
}

void fio_timer_arm_in(lua_State *L, fio_loop *loop, fio_fiber *w,
                      lua_Number s) {
  uint64_t ns = s >= 1e9 ? (uint64_t)1e18 : (uint64_t)(s * 1e9 + 0.5);
  fio_timer_arm(L, loop, w, fio_now_ns() + ns);
}

lua_Number fio_opttimeout(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return -1;
  lua_Number s = luaL_checknumber(L, idx);
  luaL_argcheck(L, s == s, idx, "timeout is NaN");
  return s < 0 ? 0 : s;
}

/* Pop the earliest timer if it is due at now: its waiter, or NULL. */
static fio_fiber *timer_pop_due(fio_loop *loop, uint64_t now) {
  if (!loop->heap_len || loop->heap[0].deadline > now) return NULL;
  fio_fiber *w = loop->heap[0].w;
  timer_disarm(loop, w);
  return w;
}

/* --- waiter links ---------------------------------------------------------- */

void fio_link_add(fio_fiber *w, fio_link *l, fio_list *list) {
  l->waiter = w;
  l->list = list;
  fio_dlist_push(&list->links, &l->node);
}

static void link_remove(fio_link *l) {
  fio_list *list = l->list;
  if (!list) return;
  fio_dlist_remove(&list->links, &l->node);
  l->list = NULL;
}

static void unlink_all(fio_fiber *w) {
  for (int i = 0; i < w->nlinks; i++) link_remove(&w->links[i]);
  w->links = NULL;
  w->nlinks = 0;
}

/* --- waking and canceling -------------------------------------------------- */

/* Wake suspended w for reason: nothing references w afterwards but the
 * ready queue (or, for a pseudo, the drive loop that watches it). */
void fio_wake(fio_fiber *w, int reason) {
  if (w->state != FIO_SUSPENDED) return;
  timer_disarm(w->loop, w);
  unlink_all(w);
  w->wake = (uint8_t)reason;
  w->state = FIO_READY;
  if (!w->pseudo) rq_push(w->loop, w);
}

fio_fiber *fio_list_wake_first(fio_list *list, int reason) {
  fio_link *l = fio_list_first(list);
  if (!l) return NULL;
  fio_fiber *w = l->waiter;
  fio_wake(w, reason);
  link_remove(l); /* in case w was not suspended */
  return w;
}

void fio_list_wake_all(fio_list *list, int reason) {
  while (list->links.head) fio_list_wake_first(list, reason);
}

/* A cancel reaches waiter w (a suspended fiber, or the pseudo a running
 * fiber drives the loop for). */
static void deliver_cancel(fio_loop *loop, fio_fiber *w) {
  switch (w->wait) {
  case FIO_W_OP:
    /* The op's completion wakes w; its buffer stays alive until then. An
     * op its runner cannot stop (detach_on_cancel) is let go instead: w
     * wakes now, the op is freed when it ends. */
    if (w->op && w->op->state == FIO_OPS_INFLIGHT) {
      fio_op *op = w->op;
      fio_op_cancel(loop, op);
      if (op->detach_on_cancel) {
        op->waiter = NULL;
        w->op = NULL;
        fio_wake(w, FIO_WAKE_CANCEL);
      }
    }
    break;
  case FIO_W_YIELD:
    w->wake = FIO_WAKE_CANCEL;
    break;
  default:
    fio_wake(w, FIO_WAKE_CANCEL);
  }
}

/* f has ended with status (LUA_OK, an error, or -1: canceled before it
 * started) and nres values at the top of its stack. */
static void finish(fio_loop *loop, lua_State *from, fio_fiber *f, int status,
                   int nres);

void fio_request_cancel(fio_loop *loop, lua_State *L, fio_fiber *t) {
  if (t->state == FIO_DONE || t->cancel_done || t->pseudo) return;
  if (t->state == FIO_NEW) {
    /* Never started: it never runs. */
    rq_remove(loop, t);
    lua_settop(t->co, 0);
    lua_rawgeti(t->co, LUA_REGISTRYINDEX, loop->canceled_ref);
    finish(loop, L, t, -1, 1);
    return;
  }
  t->cancel_req = 1;
  if (t->shield) return;
  if (t->state == FIO_SUSPENDED) deliver_cancel(loop, t);
  else if (t->state == FIO_READY && t->wait == FIO_W_YIELD)
    deliver_cancel(loop, t);
  else if (t->state == FIO_RUNNING && t->blocked_in)
    deliver_cancel(loop, t->blocked_in);
  /* READY after a wake: what it waited for happened; the cancel lands at its
   * next suspension point. */
}

int fio_raise_canceled(lua_State *L, fio_loop *loop, fio_fiber *f) {
  if (f) {
    f->cancel_req = 0;
    f->cancel_done = 1;
  } else if (loop->interrupted) {
    /* Outside any fiber the interrupt is raised as lua.c's own: its hook,
     * which would raise it at the next instruction, is taken off. */
    loop->interrupted = 0;
    if (lua_gethook(loop->main_thread) != end_hook) lua_sethook(loop->main_thread, NULL, 0, 0);
    lua_pushliteral(L, "interrupted!");
    return lua_error(L);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->canceled_ref);
  return lua_error(L);
}

fio_fiber *fio_current(fio_loop *loop) { return loop->current; }

/* --- suspending ------------------------------------------------------------ */

fio_fiber *fio_wait_begin(fio_loop *loop, lua_State *L, fio_fiber *pseudo) {
  fio_fiber *cur = loop->current, *self = cur;
  /* Room for the timer this wait may arm, before anything is set up that a
   * memory error would leave behind. */
  timer_reserve(L, loop);
  /* L is the running fiber's own thread (not a plain coroutine inside it)
   * and nothing between here and its resume forbids a yield. */
  if (cur && cur->co == L && lua_isyieldable(L)) {
    fio_wait_again(L, self);
    return self;
  }
  if (cur && cur->cancel_req && !cur->shield) fio_raise_canceled(L, loop, cur);
  if (!cur && loop->interrupted) fio_raise_canceled(L, loop, NULL);
  fio_zero(pseudo, sizeof *pseudo);
  pseudo->loop = loop;
  pseudo->pseudo = 1;
  pseudo->owner = cur;
  pseudo->state = FIO_RUNNING;
  pseudo->anchor = LUA_NOREF;
  return pseudo;
}

static void turn(fio_loop *loop, lua_State *from, fio_fiber *w,
                 lua_Hook hook0);
static void deliver_cancel(fio_loop *loop, fio_fiber *w);

/* --- the host's interrupt (Ctrl-C) ------------------------------------------- */

/* A signal handler stops Lua code the one way Lua allows: it sets a hook
 * on the main thread (lua.c's SIGINT handler: every mask, count 1), which
 * raises "interrupted!" at the next instruction. While the main thread
 * drives the loop it runs no instruction, so the drive looks for that hook
 * after each turn (a signal also ends the backend's wait with EINTR).
 * before: the main thread's hook when the drive began. */
static int host_interrupted(fio_loop *loop, lua_Hook before) {
  lua_State *M = loop->main_thread;
  lua_Hook h = lua_gethook(M);
  if (!h || h == end_hook || loop->interrupted || loop->hosted) return 0;
  return h != before ||
         (lua_gethookmask(M) == (LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE |
                                 LUA_MASKCOUNT) &&
          lua_gethookcount(M) == 1);
}

int fio_loop_host_stopping(fio_loop *loop) {
  /* (the hook now as the one before: only lua.c's own counts) */
  return host_interrupted(loop, lua_gethook(loop->main_thread));
}

/* Cancel every fiber that has not ended; returns how many had no cancel
 * requested before. */
static size_t cancel_all(fio_loop *loop, lua_State *L) {
  size_t n = 0;
  fio_fiber *f = fio_entry(loop->live.head, fio_fiber, live_node), *next;
  for (; f; f = next) {
    next = fio_entry(f->live_node.next, fio_fiber, live_node);
    if (!f->cancel_req && !f->cancel_done) n++;
    fio_request_cancel(loop, L, f);
  }
  return n;
}

/* The interrupt: every fiber is canceled (their <close> and pcall cleanups
 * run), and the main chunk's wait w (if it is one) ends and raises
 * "interrupted!" (fio_raise_canceled). */
static void interrupt(fio_loop *loop, lua_State *L, fio_fiber *w) {
  loop->interrupted = 1;
  cancel_all(loop, L);
  if (w && w->pseudo && !w->owner && w->state == FIO_SUSPENDED)
    deliver_cancel(loop, w);
}

int fio_block(fio_loop *loop, lua_State *L, fio_fiber *w, lua_KFunction k) {
  if (w->wait == FIO_W_YIELD) {
    w->state = FIO_READY;
    if (!w->pseudo) rq_push(loop, w);
  } else {
    w->state = FIO_SUSPENDED;
  }
  if (!w->pseudo) {
    w->here = 0; /* (the yield unwinds fio_op_wait's frames, if any) */
    return lua_yieldk(L, 0, (lua_KContext)w, k);
  }
  w->k = k;
  if (w->driving) return FIO_AGAIN; /* the trampoline below continues */
  fio_fiber *owner = w->owner, *saved = owner ? owner->blocked_in : NULL;
  lua_Hook hook0 = lua_gethook(loop->main_thread);
  w->driving = 1;
  int r;
  do {
    if (owner) owner->blocked_in = w;
    if (w->wait == FIO_W_YIELD) turn(loop, L, NULL, hook0);
    else
      while (w->state == FIO_SUSPENDED) {
        turn(loop, L, w, hook0);
        if (host_interrupted(loop, hook0)) interrupt(loop, L, w);
      }
    if (owner) owner->blocked_in = saved;
    /* The continuation may raise: nothing is left to undo by then. */
    w->state = FIO_RUNNING;
    if (host_interrupted(loop, hook0)) interrupt(loop, L, NULL);
    r = w->k(L, LUA_YIELD, (lua_KContext)w);
  } while (r == FIO_AGAIN);
  w->driving = 0;
  /* What the main chunk waited for ended anyway: the interrupt is raised
   * now that the continuation has cleaned up. */
  if (!owner && loop->interrupted) fio_raise_canceled(L, loop, NULL);
  return r;
}

int fio_cancel_pending(const fio_fiber *w) {
  const fio_fiber *owner = fio_owner((fio_fiber *)w);
  if (!owner) return w->pseudo && w->loop->interrupted;
  return owner->cancel_req && !owner->shield;
}

void fio_wait_again(lua_State *L, fio_fiber *w) {
  if (fio_cancel_pending(w))
    fio_raise_canceled(L, w->loop, fio_owner(w));
  w->wake = FIO_WAKE_NONE;
  w->wait = FIO_W_NONE;
}

void fio_wait_end(lua_State *L, fio_fiber *w) {
  w->wait = FIO_W_NONE;
  switch (w->wake) {
  case FIO_WAKE_CANCEL:
    fio_raise_canceled(L, w->loop, fio_owner(w));
    break;
  case FIO_WAKE_DEADLOCK:
    luaL_error(L, "fiberio: deadlock: waiting, but no fiber is ready, no "
                  "timer is set and no I/O is in flight");
    break;
  }
}

/* --- fibers ---------------------------------------------------------------- */

fio_fiber *fio_checkfuture(lua_State *L, int idx) {
  /* luaL_checkudata looks the metatable up by name (a string hash and
   * compare) on every call: compare with the loop's pointer instead. */
  fio_loop *loop = lua_touserdata(L, lua_upvalueindex(1));
  fio_fiber *f = lua_touserdata(L, idx);
  if (f && lua_getmetatable(L, idx)) {
    int ok = lua_topointer(L, -1) == loop->future_mt;
    lua_pop(L, 1);
    if (ok) return f;
  }
  luaL_typeerror(L, idx, FIO_FUTURE);
  return NULL;
}

fio_fiber *fio_spawn(lua_State *L, fio_loop *loop, int idx, int nargs,
                     fio_run *run) {
  fio_fiber *f = lua_newuserdatauv(L, sizeof *f, 1);
  memset(f, 0, sizeof *f);
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->future_mt_ref);
  lua_setmetatable(L, -2);
  f->loop = loop;
  f->anchor = LUA_NOREF;
  lua_State *co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  f->co = co;
  /* (a thread inherits its creator's hook: not the main chunk's end hook) */
  if (lua_gethook(co) == end_hook) lua_sethook(co, NULL, 0, 0);
  lua_checkstack(co, nargs + 1);
  lua_pushvalue(L, idx);
  lua_xmove(L, co, 1);
  for (int i = 1; i <= nargs; i++) lua_pushvalue(L, idx + i);
  lua_xmove(L, co, nargs);
  lua_pushvalue(L, -1);
  f->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  f->nres = nargs; /* while NEW: the arguments to pass */
  f->state = FIO_NEW;
  live_add(loop, f);
  f->run = run;
  if (run) {
    run->refs++;
    run->live++;
  }
  rq_push(loop, f);
  return f;
}

static void finish(fio_loop *loop, lua_State *from, fio_fiber *f, int status,
                   int nres) {
  lua_State *co = f->co;
  lua_checkstack(from, 8);
  if (status == LUA_OK) {
    f->end = FIO_END_OK;
    f->nres = nres;
  } else if (status < 0) {
    /* Canceled before it started: Canceled alone is on its stack. */
    f->end = FIO_END_CANCELED;
    f->nres = 1;
  } else {
    int canceled = lua_touserdata(co, -1) == loop->canceled &&
                   lua_type(co, -1) == LUA_TUSERDATA;
    if (!canceled) {
      /* Keep where it failed, for a report if nobody awaits it. */
      /* (lua_tostring would turn a number error into a string in place) */
      const char *msg =
          lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : NULL;
      if (msg) {
        luaL_traceback(from, co, msg, 0);
      } else {
        lua_pushfstring(from, "(error object is a %s value)",
                        luaL_typename(co, -1));
        luaL_traceback(from, co, lua_tostring(from, -1), 0);
        lua_remove(from, -2);
      }
    }
    /* Close its pending to-be-closed variables (as coroutine.close does);
     * the error value ends at index 1 (a __close error replaces it). */
    fio_fiber *prev = loop->current;
    loop->current = f;
    f->state = FIO_RUNNING;
    fio_closethread(co, from);
    loop->current = prev;
    lua_settop(co, 1);
    if (canceled && lua_touserdata(co, 1) != loop->canceled) canceled = 0;
    if (canceled) {
      f->end = FIO_END_CANCELED;
      f->nres = 1;
    } else {
      f->end = FIO_END_ERROR;
      if (lua_type(from, -1) == LUA_TSTRING) lua_xmove(from, co, 1);
      else lua_pushstring(co, "(no traceback)");
      f->nres = 2;
    }
  }
  f->state = FIO_DONE;
  live_remove(loop, f);
  if (f->end == FIO_END_ERROR && !f->run && loop->ending &&
      loop->end_errs != LUA_NOREF && !f->awaiters.links.head) {
    /* The script is ending: an error nobody can take any more is raised or
     * printed by end_of_main_chunk. */
    lua_rawgeti(from, LUA_REGISTRYINDEX, loop->end_errs);
    lua_rawgeti(from, LUA_REGISTRYINDEX, f->anchor);
    lua_rawseti(from, -2, (lua_Integer)lua_rawlen(from, -2) + 1);
    lua_pop(from, 1);
  }
  for (fio_dnode *n = f->awaiters.links.head; n; n = n->next)
    fio_container_of(n, fio_link, node)->waiter->woke_by = f;
  fio_list_wake_all(&f->awaiters, FIO_WAKE_DONE);
  fio_run *run = f->run;
  if (run) {
    if (f->end == FIO_END_ERROR) {
      lua_rawgeti(from, LUA_REGISTRYINDEX, run->errs);
      lua_rawgeti(from, LUA_REGISTRYINDEX, f->anchor);
      lua_rawseti(from, -2, ++run->nerrs);
      lua_pop(from, 1);
    }
    if (--run->live == 0 && run->waiter) fio_wake(run->waiter, FIO_WAKE_DONE);
    f->run = NULL;
    fio_run_release(from, run);
  }
  luaL_unref(from, LUA_REGISTRYINDEX, f->anchor);
  f->anchor = LUA_NOREF;
}

void fio_run_release(lua_State *L, fio_run *run) {
  if (--run->refs > 0) return;
  luaL_unref(L, LUA_REGISTRYINDEX, run->errs);
  free(run);
}

/* Resume f, ready, from the context `from`. */
static void resume(fio_loop *loop, lua_State *from, fio_fiber *f) {
  int nargs = 0, nres = 0;
  if (f->state == FIO_NEW) nargs = f->nres;
  fio_fiber *prev = loop->current;
  loop->current = f;
  f->state = FIO_RUNNING;
  /* A handler that runs from here on sees f as current; one that ran
   * before left resume_hook_due. */
  atomic_signal_fence(memory_order_seq_cst);
  if (loop->resume_hook_due) {
    loop->resume_hook_due = 0;
    if (loop->resume_hook) loop->resume_hook(f->co);
  }
  int status = lua_resume(f->co, from, nargs, &nres);
  loop->current = prev;
  if (status == LUA_YIELD) {
    if (f->state == FIO_RUNNING) {
      /* A plain coroutine.yield in the fiber's body: a yield to the loop. */
      lua_pop(f->co, nres);
      f->wait = FIO_W_NONE;
      f->state = FIO_READY;
      rq_push(loop, f);
    }
    return;
  }
  finish(loop, from, f, status, nres);
}

/* Whether an error raised in L now is caught before it reaches the host:
 * L is not the main thread (a fiber or a coroutine: its resumer sees it), or
 * a pcall or xpcall runs below. */
static int in_protected_call(fio_loop *loop, lua_State *L) {
  if (L != loop->main_thread) return 1;
  lua_Debug ar;
  for (int level = 0; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "f", &ar);
    const void *fn = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (fn && (fn == loop->pcall_fn || fn == loop->xpcall_fn)) return 1;
  }
  return 0;
}

int fio_push_results(lua_State *L, fio_fiber *t) {
  lua_State *co = t->co;
  t->observed = 1;
  if (t->end == FIO_END_CANCELED) {
    lua_pushnil(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->loop->canceled_ref);
    return 2;
  }
  int top = lua_gettop(co), n = t->end == FIO_END_ERROR ? 1 : t->nres;
  int base = top - t->nres + 1;
  if (!lua_checkstack(L, n) || !lua_checkstack(co, n))
    luaL_error(L, "fiberio: too many results to move");
  for (int i = 0; i < n; i++) lua_pushvalue(co, base + i);
  lua_xmove(co, L, n);
  if (t->end == FIO_END_ERROR) {
    if (!in_protected_call(t->loop, L))
      /* The error ends the script: its traceback (lua.c's) shows only
       * where it was re-raised, so the fiber's comes first. */
      fprintf(stderr, "fiberio: the error below was raised in a fiber: %s\n",
              lua_tostring(co, -1));
    return lua_error(L);
  }
  return n;
}

/* --- driving the loop ------------------------------------------------------ */

static void fire_timers(fio_loop *loop) {
  if (!loop->heap_len) return;
  uint64_t now = fio_now_ns();
  fio_fiber *w;
  while ((w = timer_pop_due(loop, now))) {
    if (w->wait == FIO_W_OP) {
      /* A deadline on an operation: cancel it; its completion wakes w. */
      if (w->op) fio_op_cancel(loop, w->op);
      w->wake = FIO_WAKE_TIMER;
    } else {
      fio_wake(w, FIO_WAKE_TIMER);
    }
  }
}

/* One scheduler turn: run the fibers ready now, then reap I/O and timers,
 * blocking only if nothing is ready and w (if any) still waits. */
/* How long a wait may block: 0 if a fiber is ready, until the next timer,
 * or -1 (forever). */
static int64_t wait_timeout(fio_loop *loop) {
  if (loop->ready.len) return 0;
  if (!loop->heap_len) return -1;
  uint64_t now = fio_now_ns(), d = loop->heap[0].deadline;
  return d > now ? (int64_t)(d - now) : 0;
}

static void turn(fio_loop *loop, lua_State *from, fio_fiber *w,
                 lua_Hook hook0) {
  fio_loop_run_ready(loop, from);
  /* w NULL: a yield, which only polls */
  int64_t timeout =
      !w || w->state != FIO_SUSPENDED ? 0 : wait_timeout(loop);
  if (timeout < 0 && loop->inflight.len == 0) {
    fio_wake(w, FIO_WAKE_DEADLOCK); /* nothing can ever wake w */
    return;
  }
  /* (a Ctrl-C that came while fibers ran: the caller acts on it now) */
  if (timeout != 0 && host_interrupted(loop, hook0)) timeout = 0;
  if (timeout != 0 || loop->inflight.len) fio_ops_wait(loop, timeout);
  fire_timers(loop);
}

void fio_loop_run_ready(fio_loop *loop, lua_State *L) {
  size_t n = loop->ready.len;
  fio_fiber *f;
  while (n-- > 0 && (f = rq_first(loop))) {
    rq_remove(loop, f);
    if (f->state == FIO_DONE) continue;
    resume(loop, L, f);
  }
}

void fio_loop_wait(fio_loop *loop, int nonblock) {
  /* a wake (new task, cancel) ends it */
  fio_ops_wait(loop, nonblock ? 0 : wait_timeout(loop));
  fire_timers(loop);
}

/* --- the end of the script --------------------------------------------------- */

/* Run the loop from L until every fiber has ended. Fibers that nothing can
 * wake any more (waiting for each other, or for a queue nobody fills) are
 * canceled; those a cancel cannot end either are detached. Returns how
 * many fibers this canceled that had no cancel requested before. */
static size_t run_to_end(fio_loop *loop, lua_State *L) {
  size_t canceled = 0;
  lua_Hook hook0 = lua_gethook(loop->main_thread);
  int stuck = 0, collected = 0;
  while (loop->live.len) {
    fio_loop_run_ready(loop, L);
    if (!loop->live.len) break;
    int64_t timeout = wait_timeout(loop);
    if (timeout < 0 && !loop->inflight.len) {
      if (stuck) { /* a cancel did not end them: give up on them */
        while (loop->live.head)
          fio_fiber_detach(fio_container_of(loop->live.head, fio_fiber, live_node));
        break;
      }
      stuck = 1;
      canceled += cancel_all(loop, L);
      continue;
    }
    stuck = 0;
    if (host_interrupted(loop, hook0)) {
      interrupt(loop, L, NULL);
      continue;
    }
    if (timeout < 0 && !collected) {
      /* Only I/O can wake them: if none comes for a while, handles nobody
       * can reach any more are closed (a pipe's write end, which ends its
       * reader's wait). Once per quiet spell: a collection costs. */
      timeout = 200000000;
      collected = 1;
    }
    fio_ops_wait(loop, timeout);
    fire_timers(loop);
    if (loop->ready.len) collected = 0;
    else if (collected == 1 && timeout == 200000000) {
      collected = 2;
      lua_gc(L, LUA_GCCOLLECT);
    }
    if (host_interrupted(loop, hook0)) interrupt(loop, L, NULL);
  }
  return canceled;
}

/* Raise the first error in the array at -1 (a fiber's traceback, which
 * starts with its message: nobody awaited it, so no caller compares the
 * value) after printing the others; pops the array if none. */
static void raise_end_errors(lua_State *L) {
  int n = (int)lua_rawlen(L, -1);
  int first = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    fio_fiber *f = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!f || f->observed || f->reported) continue;
    f->reported = 1;
    if (!first) {
      first = i;
      continue;
    }
    fprintf(stderr, "fiberio: error in a fiber that nobody awaited: %s\n",
            lua_tostring(f->co, -1));
  }
  if (!first) {
    lua_pop(L, 1);
    return;
  }
  lua_rawgeti(L, -1, first);
  fio_fiber *f = lua_touserdata(L, -1);
  f->observed = 1;
  lua_pushstring(L, lua_tostring(f->co, -1));
  lua_error(L);
}

/* The main chunk returned with fibers that have not ended: they run to
 * their end (as Node runs its pending callbacks), then an error nobody
 * awaited is raised. */
static void end_of_main_chunk(fio_loop *loop, lua_State *L) {
  if (loop->ending || !loop->started || loop->closed) return;
  lua_checkstack(L, 8);
  lua_newtable(L);
  loop->end_errs = luaL_ref(L, LUA_REGISTRYINDEX);
  loop->ending = 1;
  size_t stuck = run_to_end(loop, L);
  loop->ending = 0;
  if (stuck)
    fprintf(stderr, "fiberio: %zu fiber%s waited for what nothing could bring "
                    "(a deadlock): canceled\n", stuck, stuck == 1 ? "" : "s");
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->end_errs);
  luaL_unref(L, LUA_REGISTRYINDEX, loop->end_errs);
  loop->end_errs = LUA_NOREF;
  if (loop->interrupted) {
    lua_pop(L, 1);
    fio_raise_canceled(L, loop, NULL);
  }
  raise_end_errors(L);
}

/* The main thread's hook while its fibers have not all ended: on each
 * return it looks for the return of the host's outermost call (the main
 * chunk, for lua5.4: no Lua function below it) and runs the fibers left
 * then. Set by fio_loop_watch_end, taken off once nothing is pending. */
/* The loop whose main thread this OS thread hooked last (a cache: the
 * registry says it too). */
static _Thread_local fio_loop *hooked_loop;

static void end_hook(lua_State *L, lua_Debug *ar) {
  if (ar->event != LUA_HOOKRET) return;
  fio_loop *loop = hooked_loop;
  if (!loop || loop->main_thread != L) {
    loop = NULL;
    if (lua_getfield(L, LUA_REGISTRYINDEX, "fiberio.loopptr") ==
        LUA_TLIGHTUSERDATA)
      loop = lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  /* A coroutine that inherited the hook, or nothing pending any more. */
  if (!loop || L != loop->main_thread || !loop->live.len) {
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  /* A Lua function (the chunk, or what it tail-called): the return of a C
   * function with only C below is no chunk's end (lua.c's pmain returns so
   * after an error, which closes the state instead). */
  if (!lua_getinfo(L, "S", ar) || ar->what[0] == 'C') return;
  lua_Debug d;
  for (int level = 1; lua_getstack(L, level, &d); level++) {
    lua_getinfo(L, "S", &d);
    if (d.what[0] != 'C') return; /* returning into Lua code */
  }
  lua_sethook(L, NULL, 0, 0);
  /* The chunk's registers are dead but for its results (its upvalues are
   * closed by now): cleared, what only they held can be collected while
   * the fibers run (a pipe's write end, which ends its reader's wait). */
  if (lua_getinfo(L, "r", ar)) {
    for (int n = 1; lua_getlocal(L, ar, n); n++) {
      lua_pop(L, 1);
      if (n >= ar->ftransfer && n < ar->ftransfer + ar->ntransfer) continue;
      lua_pushnil(L);
      lua_setlocal(L, ar, n);
    }
  }
  end_of_main_chunk(loop, L);
}

/* Loops whose main chunk started fibers: os.exit without closing the state
 * skips their end, so the process's exit says how many fibers never ran
 * to their end. exit_mu guards the list (a leaf lock). */
static pthread_mutex_t exit_mu = PTHREAD_MUTEX_INITIALIZER;
static fio_loop *exit_loops;

static void report_at_exit(void) {
  pthread_mutex_lock(&exit_mu);
  for (fio_loop *loop = exit_loops; loop; loop = loop->exit_next)
    if (loop->live.len)
      fprintf(stderr, "fiberio: %zu fiber%s never finished (the process "
                      "exited without closing the Lua state)\n",
              loop->live.len, loop->live.len == 1 ? "" : "s");
  pthread_mutex_unlock(&exit_mu);
}

static void exit_register_once(void) {
  fio_pin_library(); /* report_at_exit is in this library's code */
  atexit(report_at_exit);
}

void fio_loop_watch_end(fio_loop *loop) {
  if (loop->hosted) return;
  lua_State *L = loop->main_thread;
  if (!loop->exit_listed) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, exit_register_once);
    pthread_mutex_lock(&exit_mu);
    loop->exit_next = exit_loops;
    exit_loops = loop;
    loop->exit_listed = 1;
    pthread_mutex_unlock(&exit_mu);
  }
  hooked_loop = loop;
  if (!lua_gethook(L)) lua_sethook(L, end_hook, LUA_MASKRET, 0);
}

static void exit_unlist(fio_loop *loop) {
  if (!loop->exit_listed) return;
  pthread_mutex_lock(&exit_mu);
  for (fio_loop **p = &exit_loops; *p; p = &(*p)->exit_next)
    if (*p == loop) {
      *p = loop->exit_next;
      break;
    }
  loop->exit_listed = 0;
  pthread_mutex_unlock(&exit_mu);
}

/* The parts above the core that keep state in this loop and close it with
 * the loop (fio.parallel's workers, in the loop that made them: each task
 * is stopped, even one computing, and its worker joined), closed once;
 * what they posted back is completed here. A part registered without a
 * close (the workers' pool, in a worker's own loop) stays: the loop's ops
 * may still need it until they are canceled. */
static void close_exts(fio_loop *loop) {
  int any = 0;
  for (int i = 0; i < FIO_LOOP_EXT_MAX; i++) {
    fio_loop_ext *e = &loop->ext[i];
    if (!e->key || !e->close) continue;
    void (*close_fn)(fio_loop *, void *) = e->close;
    void *data = e->data;
    memset(e, 0, sizeof *e);
    close_fn(loop, data);
    any = 1;
  }
  if (any && loop->started) fio_ops_wait(loop, 0);
}

void *fio_loop_ext_get(fio_loop *loop, const void *key) {
  for (int i = 0; i < FIO_LOOP_EXT_MAX; i++)
    if (loop->ext[i].key == key) return loop->ext[i].data;
  return NULL;
}

int fio_loop_ext_set(fio_loop *loop, const void *key, void *data,
                     void (*close)(fio_loop *loop, void *data)) {
  for (int i = 0; i < FIO_LOOP_EXT_MAX; i++)
    if (!loop->ext[i].key) {
      loop->ext[i] = (fio_loop_ext){key, data, close};
      return 0;
    }
  return -1;
}

void fio_loop_close_fibers(fio_loop *loop, lua_State *L) {
  /* (a worker's fibers were canceled by the shutdown of its pool, which
   * stops a task's computing fiber with a hook this could not) */
  if (loop->ending || !loop->started || loop->closed || !loop->live.len ||
      loop->hosted)
    return;
  loop->ending = 1; /* (no array of errors: each is printed when collected) */
  loop->end_errs = LUA_NOREF;
  size_t n = cancel_all(loop, L);
  close_exts(loop); /* (a task's cancel may not stop all it started) */
  n += run_to_end(loop, L);
  loop->ending = 0;
  if (n)
    fprintf(stderr, "fiberio: %zu fiber%s had not finished when the Lua "
                    "state was closed: canceled\n", n, n == 1 ? "" : "s");
}

/* --- the loop object ------------------------------------------------------- */

static int loop_gc(lua_State *L) {
  fio_loop *loop = luaL_checkudata(L, 1, FIO_LOOP);
  if (loop->closed) return 0;
  fio_loop_close_fibers(loop, L);
  exit_unlist(loop);
  if (hooked_loop == loop) hooked_loop = NULL;
  close_exts(loop);
  loop->closed = 1;
  while (loop->ready.head) rq_remove(loop, rq_first(loop));
  for (size_t i = 0; i < loop->heap_len; i++) loop->heap[i].w->heap_idx = 0;
  loop->heap_len = 0;
  free(loop->heap);
  loop->heap = NULL;
  loop->heap_cap = 0;
  if (loop->started) fio_ops_close(loop);
  if (loop->wakefd >= 0) close(loop->wakefd);
  loop->wakefd = -1;
  while (loop->nbufs) free(loop->bufs[--loop->nbufs]);
  while (loop->nspare_ops) fio_op_free(loop->spare_ops[--loop->nspare_ops]);
  pthread_mutex_destroy(&loop->post_mu);
  return 0;
}

fio_loop *fio_loop_new(lua_State *L) {
  fio_loop *loop = lua_newuserdatauv(L, sizeof *loop, 0);
  memset(loop, 0, sizeof *loop);
  lua_pushthread(L);
  loop->main_thread = lua_tothread(L, -1);
  lua_pop(L, 1);
  loop->canceled_ref = loop->future_mt_ref = loop->end_errs = LUA_NOREF;
  loop->wakefd = -1;
  memcpy(loop->cfg.backend, fio_config_env()->backend, sizeof loop->cfg.backend);
  loop->cfg.slow_ns = 2000000;          /* 2 ms */
  loop->cfg.slow_pause_ns = 1000000000; /* 1 s */
  pthread_mutex_init(&loop->post_mu, NULL);
  if (luaL_newmetatable(L, FIO_LOOP)) {
    lua_pushcfunction(L, loop_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return loop;
}

static int start_backend(fio_loop *loop);

static int start(fio_loop *loop) {
  loop->inline_codes = FIO_OPS_HERE;
  int r = start_backend(loop);
  if (r == 0 && loop->cfg.no_inline) loop->inline_codes = 0;
  return r;
}

/* (a backend's init that succeeds may take bits out of inline_codes) */
static int start_backend(fio_loop *loop) {
  const char *want = loop->cfg.backend;
  int automatic = !*want || strcmp(want, "auto") == 0;
  int threads = !automatic && strcmp(want, "threads") == 0;
  if (!automatic && !threads && strcmp(want, "io_uring") != 0)
    return -ENOTSUP;
  if (loop->wakefd < 0) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return -errno;
    fd = fio_fd_above_std(fd); /* (never 0, 1 or 2: util/fd.h) */
    if (fd < 0) return fd;
    loop->wakefd = fd;
  }
  if (!threads) {
    loop->be = &fio_backend_uring;
    int r = loop->be->init(loop);
    /* The fallback ladder: no io_uring here (a seccomp profile,
     * io_uring_disabled, an old kernel, RLIMIT_MEMLOCK) -> the thread pool
     * for everything. Only when the backend is automatic: an explicit
     * io_uring that cannot start is an error. */
    if (r == 0 || !automatic ||
        (r != -EPERM && r != -ENOSYS && r != -ENOMEM && r != -EACCES))
      return r;
  }
  loop->be = &fio_backend_threads;
  return loop->be->init(loop);
}

fio_loop *fio_loop_get(lua_State *L) {
  fio_loop *loop = lua_touserdata(L, lua_upvalueindex(1));
  if (!loop->started) {
    if (loop->closed) luaL_error(L, "fiberio: the loop is closed");
    int r = start(loop);
    if (r == -ENOTSUP)
      luaL_error(L, "fiberio: backend '%s' is not available",
                 loop->cfg.backend);
    if (r < 0)
      luaL_error(L, "fiberio: cannot start the %s backend: %s",
                 loop->be->name, strerror(-r));
    loop->started = 1;
  }
  return loop;
}

void fio_fiber_detach(fio_fiber *f) {
  fio_loop *loop = f->loop;
  live_remove(loop, f);
  if (!loop->closed) {
    rq_remove(loop, f);
    timer_disarm(loop, f);
  }
  if (f->op) {
    f->op->waiter = NULL; /* its completion frees it */
    f->op = NULL;
  }
  unlink_all(f);
  while (f->awaiters.links.head) link_remove(fio_list_first(&f->awaiters));
}
