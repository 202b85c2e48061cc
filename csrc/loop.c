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

#include "backend.h"
#include "fiberio.h"
#include "parallel.h"

/* Operations go to the backend, except parallel tasks (the worker pool). */
static void op_submit(fio_loop *loop, fio_op *op) {
  if (op->code == FIO_OP_TASK) fio_workers_submit(loop, op);
  else loop->be->submit(loop, op);
}

static void op_cancel(fio_loop *loop, fio_op *op) {
  if (op->code == FIO_OP_TASK) fio_workers_cancel(loop, op);
  else loop->be->cancel(loop, op);
}

void fio_op_cancel(fio_loop *loop, fio_op *op) {
  if (op->cancel_sent) return;
  op->cancel_sent = 1;
  op_cancel(loop, op);
}

/* Cancel every op in flight on fd; close_after: the last of those that
 * runs on fd closes it. Returns 1 if one will. */
static int fd_ops_cancel(fio_loop *loop, int fd, int close_after) {
  if (!loop || !loop->started || loop->closed) return 0;
  int deferred = 0;
  for (fio_op *op = loop->inflight; op; op = op->next) {
    if (op->fd != fd && op->fd2 != fd) continue;
    fio_op_cancel(loop, op); /* a blocked read ends (EBADF, Canceled) */
    if (close_after && op->fd == fd) op->close_fd = deferred = 1;
  }
  return deferred;
}

int fio_close_after_ops(fio_loop *loop, int fd) {
  return fd_ops_cancel(loop, fd, 1);
}

void fio_cancel_fd_ops(fio_loop *loop, int fd) { fd_ops_cancel(loop, fd, 0); }


uint64_t fio_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* --- ready queue ---------------------------------------------------------- */

static void rq_push(fio_loop *loop, fio_fiber *f) {
  f->qnext = NULL;
  f->qprev = loop->rq_tail;
  if (loop->rq_tail) loop->rq_tail->qnext = f;
  else loop->rq_head = f;
  loop->rq_tail = f;
  loop->rq_len++;
  f->queued = 1;
}

static void rq_remove(fio_loop *loop, fio_fiber *f) {
  if (!f->queued) return;
  if (f->qprev) f->qprev->qnext = f->qnext;
  else loop->rq_head = f->qnext;
  if (f->qnext) f->qnext->qprev = f->qprev;
  else loop->rq_tail = f->qprev;
  f->qprev = f->qnext = NULL;
  f->queued = 0;
  loop->rq_len--;
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

/* Arm w's timer (replacing an armed one). On ENOMEM aborts the process, as
 * Lua does when it cannot allocate. */
void fio_timer_arm(fio_loop *loop, fio_fiber *w, uint64_t deadline) {
  timer_disarm(loop, w);
  if (loop->heap_len == loop->heap_cap) {
    size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
    fio_timer *h = realloc(loop->heap, cap * sizeof *h);
    if (!h) {
      fputs("fiberio: out of memory for timers\n", stderr);
      abort();
    }
    loop->heap = h;
    loop->heap_cap = cap;
  }
  fio_timer t = {deadline, loop->timer_seq++, w};
  loop->heap[loop->heap_len] = t;
  heap_up(loop, loop->heap_len++);
}

void fio_timer_arm_in(fio_loop *loop, fio_fiber *w, lua_Number s) {
  uint64_t ns = s >= 1e9 ? (uint64_t)1e18 : (uint64_t)(s * 1e9 + 0.5);
  fio_timer_arm(loop, w, fio_now_ns() + ns);
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
  l->next = NULL;
  l->prev = list->tail;
  if (list->tail) list->tail->next = l;
  else list->head = l;
  list->tail = l;
}

static void link_remove(fio_link *l) {
  fio_list *list = l->list;
  if (!list) return;
  if (l->prev) l->prev->next = l->next;
  else list->head = l->next;
  if (l->next) l->next->prev = l->prev;
  else list->tail = l->prev;
  l->list = NULL;
  l->prev = l->next = NULL;
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
  fio_link *l = list->head;
  if (!l) return NULL;
  fio_fiber *w = l->waiter;
  fio_wake(w, reason);
  link_remove(l); /* in case w was not suspended */
  return w;
}

void fio_list_wake_all(fio_list *list, int reason) {
  while (list->head) fio_list_wake_first(list, reason);
}

/* A cancel reaches waiter w (a suspended fiber, or the pseudo a running
 * fiber drives the loop for). */
static void deliver_cancel(fio_loop *loop, fio_fiber *w) {
  switch (w->wait) {
  case FIO_W_OP:
    /* The op's completion wakes w; its buffer stays alive until then. */
    if (w->op && w->op->state == FIO_OPS_INFLIGHT) fio_op_cancel(loop, w->op);
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
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, loop->canceled_ref);
  return lua_error(L);
}

fio_fiber *fio_current(fio_loop *loop) { return loop->current; }

/* --- suspending ------------------------------------------------------------ */

fio_fiber *fio_wait_begin(fio_loop *loop, lua_State *L, fio_fiber *pseudo) {
  fio_fiber *cur = loop->current, *self = cur;
  /* L is the running fiber's own thread (not a plain coroutine inside it)
   * and nothing between here and its resume forbids a yield. */
  if (cur && cur->co == L && lua_isyieldable(L)) {
    fio_wait_again(L, self);
    return self;
  }
  if (cur && cur->cancel_req && !cur->shield) fio_raise_canceled(L, loop, cur);
  memset(pseudo, 0, sizeof *pseudo);
  pseudo->loop = loop;
  pseudo->pseudo = 1;
  pseudo->owner = cur;
  pseudo->state = FIO_RUNNING;
  pseudo->anchor = LUA_NOREF;
  return pseudo;
}

static void turn(fio_loop *loop, lua_State *from, fio_fiber *w);

int fio_block(fio_loop *loop, lua_State *L, fio_fiber *w, lua_KFunction k) {
  if (w->wait == FIO_W_YIELD) {
    w->state = FIO_READY;
    if (!w->pseudo) rq_push(loop, w);
  } else {
    w->state = FIO_SUSPENDED;
  }
  if (!w->pseudo) return lua_yieldk(L, 0, (lua_KContext)w, k);
  w->k = k;
  if (w->tramp) return FIO_AGAIN; /* the trampoline below continues */
  fio_fiber *owner = w->owner, *saved = owner ? owner->blocked_in : NULL;
  w->tramp = 1;
  int r;
  do {
    if (owner) owner->blocked_in = w;
    if (w->wait == FIO_W_YIELD) turn(loop, L, NULL);
    else
      while (w->state == FIO_SUSPENDED) turn(loop, L, w);
    if (owner) owner->blocked_in = saved;
    /* The continuation may raise: nothing is left to undo by then. */
    w->state = FIO_RUNNING;
    r = w->k(L, LUA_YIELD, (lua_KContext)w);
  } while (r == FIO_AGAIN);
  w->tramp = 0;
  return r;
}

int fio_cancel_pending(const fio_fiber *w) {
  const fio_fiber *owner = fio_owner((fio_fiber *)w);
  return owner && owner->cancel_req && !owner->shield;
}

void fio_wait_again(lua_State *L, fio_fiber *w) {
  if (fio_cancel_pending(w))
    fio_raise_canceled(L, w->loop, fio_owner(w));
  w->wake = FIO_WAKE_NONE;
  w->wait = FIO_W_NONE;
}

int fio_op_again(lua_State *L, fio_fiber *w, fio_op *op, lua_KFunction k,
                 int *count) {
  if (fio_cancel_pending(w)) {
    w->op = NULL;
    fio_op_free(op); /* (its dtor and owns_fds clean up) */
    return fio_raise_canceled(L, w->loop, fio_owner(w));
  }
  w->wake = FIO_WAKE_NONE;
  w->wait = FIO_W_NONE;
  if (count) ++*count;
  return fio_op_wait(w->loop, L, w, op, k);
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

/* --- operations ------------------------------------------------------------ */

fio_op *fio_op_new(size_t cap) {
  fio_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  if (cap) {
    op->mem = malloc(cap);
    if (!op->mem) {
      free(op);
      return NULL;
    }
  }
  op->buf = op->mem;
  op->cap = cap;
  op->fd = op->fd2 = -1;
  op->off = (uint64_t)-1;
  return op;
}

void fio_op_free(fio_op *op) {
  if (!op) return;
  if (op->dtor) op->dtor(op);
  if (op->owns_fds) {
    if (op->fd >= 0) close(op->fd);
    if (op->fd2 >= 0) close(op->fd2);
  }
  free(op->mem);
  free(op);
}

int fio_op_buf_double(fio_op *op) {
  char *b = op->want <= SIZE_MAX / 2 ? realloc(op->buf, op->want * 2) : NULL;
  if (!b) return -ENOMEM;
  op->buf = b;
  op->want *= 2;
  return 0;
}

char *fio_buf_get(fio_loop *loop) {
  return loop->nbufs ? loop->bufs[--loop->nbufs] : malloc(FIO_BUFSZ);
}

void fio_buf_put(fio_loop *loop, char *buf, size_t size) {
  if (buf && size == FIO_BUFSZ && !loop->closed &&
      loop->nbufs < (int)(sizeof loop->bufs / sizeof *loop->bufs))
    loop->bufs[loop->nbufs++] = buf;
  else
    free(buf);
}

int fio_op_wait(fio_loop *loop, lua_State *L, fio_fiber *w, fio_op *op,
                lua_KFunction k) {
  op->waiter = w;
  op->loop = loop;
  op->res = 0;
  op->cancel_sent = 0;
  op->close_fd = 0;
  op->state = FIO_OPS_INFLIGHT;
  op->prev = NULL;
  op->next = loop->inflight;
  if (op->next) op->next->prev = op;
  loop->inflight = op;
  loop->ninflight++;
  w->op = op;
  w->wait = FIO_W_OP;
  op_submit(loop, op);
  return fio_block(loop, L, w, k);
}

int fio_op_result(lua_State *L, fio_fiber *w) {
  fio_op *op = w->op;
  int res = op->res;
  if (res != -ECANCELED) return res;
  if (w->wake == FIO_WAKE_TIMER) return -ETIMEDOUT;
  if (fio_cancel_pending(w)) {
    w->op = NULL;
    fio_op_free(op);
    fio_raise_canceled(L, w->loop, fio_owner(w));
  }
  return -EBADF;
}

void fio_op_unlink(fio_loop *loop, fio_op *op) {
  if (op->state != FIO_OPS_INFLIGHT) return;
  op->state = FIO_OPS_DONE;
  if (op->prev) op->prev->next = op->next;
  else loop->inflight = op->next;
  if (op->next) op->next->prev = op->prev;
  op->prev = op->next = NULL;
  loop->ninflight--;
}

void fio_op_complete(fio_loop *loop, fio_op *op, int res) {
  /* A blocking call interrupted for a cancel (io-wq or a pool thread) may
   * end with EINTR or the kernel's restart codes: it was canceled. */
  if (op->cancel_sent && (res == -EINTR || res == -512 || res == -513 ||
                          res == -514 || res == -516))
    res = -ECANCELED;
  op->res = res;
  fio_op_unlink(loop, op);
  if (op->close_fd) {
    /* Its file was collected while it was in flight: close the fd now that
     * no syscall can use it (or a reuse of its number) any more. */
    int last = 1;
    for (fio_op *o = loop->inflight; o; o = o->next)
      if (o->close_fd && o->fd == op->fd) last = 0;
    if (last) close(op->fd);
    op->close_fd = 0;
  }
  if (op->waiter) {
    /* (a deadline that canceled the op keeps saying so) */
    fio_wake(op->waiter, op->waiter->wake == FIO_WAKE_TIMER ? FIO_WAKE_TIMER
                                                           : FIO_WAKE_DONE);
  } else {
    if (op->fd_owned && res >= 0) close(res);
    fio_op_free(op);
  }
}

int fio_loop_wake_claim(fio_loop *loop) {
  /* Whatever the caller published before this (a post, a task) is seen by
   * a loop that clears wake_sent after it: the two fences order each side's
   * store before its load (store buffering), so one side sees the other. */
  atomic_thread_fence(memory_order_seq_cst);
  /* 0: an unseen wake is pending, the loop wakes anyway */
  return !atomic_exchange_explicit(&loop->wake_sent, 1, memory_order_relaxed);
}

void fio_loop_wake(fio_loop *loop) {
  if (fio_loop_wake_claim(loop)) loop->be->wake(loop);
}

void fio_loop_wake_fd(fio_loop *loop) {
  uint64_t one = 1;
  ssize_t r;
  do r = write(loop->wakefd, &one, sizeof one);
  while (r < 0 && errno == EINTR);
  /* EAGAIN: the counter is saturated, so a wake is pending anyway. */
}

int fio_loop_wakes_on(fio_loop *loop) {
  if (!atomic_load_explicit(&loop->wake_sent, memory_order_relaxed)) return 0;
  atomic_store_explicit(&loop->wake_sent, 0, memory_order_relaxed);
  /* (pairs with fio_loop_wake_claim's fence: see there) */
  atomic_thread_fence(memory_order_seq_cst);
  return 1;
}

void fio_loop_drain_wakefd(fio_loop *loop) {
  uint64_t n;
  while (read(loop->wakefd, &n, sizeof n) < 0 && errno == EINTR) {
  }
}

void fio_loop_post(fio_loop *loop, fio_op *op, int res) {
  fio_loop_post_quiet(loop, op, res);
  fio_loop_wake(loop);
}

void fio_loop_post_quiet(fio_loop *loop, fio_op *op, int res) {
  op->res = res;
  pthread_mutex_lock(&loop->post_mu);
  fio_oplist_push(&loop->post_head, &loop->post_tail, op);
  atomic_store_explicit(&loop->posted, 1, memory_order_release);
  pthread_mutex_unlock(&loop->post_mu);
}

void fio_loop_drain(fio_loop *loop) {
  if (!atomic_load_explicit(&loop->posted, memory_order_acquire)) return;
  pthread_mutex_lock(&loop->post_mu);
  fio_op *op = loop->post_head;
  loop->post_head = loop->post_tail = NULL;
  atomic_store_explicit(&loop->posted, 0, memory_order_relaxed);
  pthread_mutex_unlock(&loop->post_mu);
  while (op) {
    fio_op *next = op->pnext;
    fio_op_complete(loop, op, op->res);
    op = next;
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
  lua_checkstack(co, nargs + 1);
  lua_pushvalue(L, idx);
  lua_xmove(L, co, 1);
  for (int i = 1; i <= nargs; i++) lua_pushvalue(L, idx + i);
  lua_xmove(L, co, nargs);
  lua_pushvalue(L, -1);
  f->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  f->nres = nargs; /* while NEW: the arguments to pass */
  f->state = FIO_NEW;
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
  for (fio_link *l = f->awaiters.head; l; l = l->next) l->waiter->woke_by = f;
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
   * before left hook_req. */
  atomic_signal_fence(memory_order_seq_cst);
  if (loop->hook_req) {
    loop->hook_req = 0;
    if (loop->hook_arm) loop->hook_arm(f->co);
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
  if (t->end == FIO_END_ERROR) return lua_error(L);
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
  if (loop->rq_len) return 0;
  if (!loop->heap_len) return -1;
  uint64_t now = fio_now_ns(), d = loop->heap[0].deadline;
  return d > now ? (int64_t)(d - now) : 0;
}

static void turn(fio_loop *loop, lua_State *from, fio_fiber *w) {
  fio_loop_run_ready(loop, from);
  /* w NULL: a yield, which only polls */
  int64_t timeout =
      !w || w->state != FIO_SUSPENDED ? 0 : wait_timeout(loop);
  if (timeout < 0 && loop->ninflight == 0) {
    fio_wake(w, FIO_WAKE_DEADLOCK); /* nothing can ever wake w */
    return;
  }
  if (timeout != 0 || loop->ninflight) loop->be->wait(loop, timeout);
  fire_timers(loop);
}

void fio_loop_run_ready(fio_loop *loop, lua_State *L) {
  size_t n = loop->rq_len;
  while (n-- > 0 && loop->rq_head) {
    fio_fiber *f = loop->rq_head;
    rq_remove(loop, f);
    if (f->state == FIO_DONE) continue;
    resume(loop, L, f);
  }
}

void fio_loop_wait(fio_loop *loop, int nonblock) {
  /* a wake (new task, cancel) ends it */
  loop->be->wait(loop, nonblock ? 0 : wait_timeout(loop));
  fire_timers(loop);
}

/* --- the loop object ------------------------------------------------------- */

static int loop_gc(lua_State *L) {
  fio_loop *loop = luaL_checkudata(L, 1, FIO_LOOP);
  if (loop->closed) return 0;
  if (loop->owns_workers) {
    /* Workers finish or are canceled, and are joined; what they post back
     * is completed below. */
    fio_workers_shutdown(loop->workers);
    loop->workers = NULL;
    loop->owns_workers = 0;
    fio_loop_drain(loop);
  }
  loop->closed = 1;
  while (loop->rq_head) rq_remove(loop, loop->rq_head);
  for (size_t i = 0; i < loop->heap_len; i++) loop->heap[i].w->heap_idx = 0;
  loop->heap_len = 0;
  free(loop->heap);
  loop->heap = NULL;
  loop->heap_cap = 0;
  if (loop->started) {
    for (fio_op *op = loop->inflight; op; op = op->next) {
      if (op->waiter) op->waiter->op = NULL;
      op->waiter = NULL;
      fio_op_cancel(loop, op);
    }
    loop->be->close(loop);
  }
  if (loop->wakefd >= 0) close(loop->wakefd);
  loop->wakefd = -1;
  while (loop->nbufs) free(loop->bufs[--loop->nbufs]);
  pthread_mutex_destroy(&loop->post_mu);
  return 0;
}

fio_loop *fio_loop_new(lua_State *L) {
  fio_loop *loop = lua_newuserdatauv(L, sizeof *loop, 0);
  memset(loop, 0, sizeof *loop);
  lua_pushthread(L);
  loop->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  loop->canceled_ref = loop->future_mt_ref = LUA_NOREF;
  loop->wakefd = -1;
  pthread_mutex_init(&loop->post_mu, NULL);
  if (luaL_newmetatable(L, FIO_LOOP)) {
    lua_pushcfunction(L, loop_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return loop;
}

static int start(fio_loop *loop) {
  const char *want = loop->cfg_backend[0] ? loop->cfg_backend
                                          : getenv("FIBERIO_BACKEND");
  int automatic = !want || !*want || strcmp(want, "auto") == 0;
  int threads = !automatic && strcmp(want, "threads") == 0;
  if (!automatic && !threads && strcmp(want, "io_uring") != 0)
    return -ENOTSUP;
  if (loop->wakefd < 0) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return -errno;
    fd = fio_fd_above_std(fd); /* (never 0, 1 or 2: backend.h) */
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
                 loop->cfg_backend[0] ? loop->cfg_backend
                                      : getenv("FIBERIO_BACKEND"));
    if (r < 0)
      luaL_error(L, "fiberio: cannot start the %s backend: %s",
                 loop->be->name, strerror(-r));
    loop->started = 1;
  }
  return loop;
}

int fio_errresult(lua_State *L, const char *what, int err) {
  lua_pushnil(L);
  if (what) lua_pushfstring(L, "%s: %s", what, strerror(err));
  else lua_pushstring(L, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

void fio_fiber_detach(fio_fiber *f) {
  fio_loop *loop = f->loop;
  if (!loop->closed) {
    rq_remove(loop, f);
    timer_disarm(loop, f);
  }
  if (f->op) {
    f->op->waiter = NULL; /* its completion frees it */
    f->op = NULL;
  }
  unlink_all(f);
  while (f->awaiters.head) link_remove(f->awaiters.head);
}
