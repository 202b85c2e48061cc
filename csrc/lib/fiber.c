/* fiber.c — the Lua bindings of the fiber API: async, await, cancel,
 * select, join, yield, canceled, checkcancel, shield, run, config, backend,
 * the Future type and the Canceled value. The pure-Lua layer
 * (lua/fiberio/init.lua) builds group, timeout and shield on these. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "io/backend.h"
#include "lib/lib.h"

/* --- Future ---------------------------------------------------------------- */

static int future_gc(lua_State *L) {
  fio_fiber *f = luaL_checkudata(L, 1, FIO_FUTURE);
  /* A fiber that has not ended is anchored: this is the state's close. */
  if (f->state != FIO_DONE) fio_loop_close_fibers(f->loop, L);
  if (f->state != FIO_DONE) {
    fio_fiber_detach(f);
    return 0;
  }
  if (f->end == FIO_END_ERROR && !f->observed && !f->reported) {
    f->reported = 1;
    const char *tb = lua_tostring(f->co, -1);
    fprintf(stderr, "fiberio: error in a fiber that nobody awaited: %s\n",
            tb ? tb : "?");
    fflush(stderr);
  }
  return 0;
}

static int future_tostring(lua_State *L) {
  fio_fiber *f = luaL_checkudata(L, 1, FIO_FUTURE);
  static const char *const states[] = {"?",         "new",       "ready",
                                       "running",   "suspended", "done"};
  lua_pushfstring(L, "fiberio.Future (%s): %p", states[f->state], (void *)f);
  return 1;
}

/* f:traceback() -> the traceback of the error f's fiber ended with (its
 * message first), or nil. */
static int l_traceback(lua_State *L) {
  fio_fiber *f = fio_checkfuture(L, 1);
  if (f->state != FIO_DONE || f->end != FIO_END_ERROR) return 0;
  lua_pushvalue(f->co, -1);
  lua_xmove(f->co, L, 1);
  return 1;
}

static int l_done(lua_State *L) {
  lua_pushboolean(L, fio_checkfuture(L, 1)->state == FIO_DONE);
  return 1;
}

/* --- async / await / cancel / select / join --------------------------------- */

static int l_async(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  fio_fiber *cur = fio_current(loop);
  fio_spawn(L, loop, 1, lua_gettop(L) - 1, cur ? cur->run : NULL);
  fio_loop_watch_end(loop);
  return 1;
}

static int await_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  fio_wait_end(L, w);
  return fio_push_results(L, fio_checkfuture(L, 1));
}

/* Wait for t to end, then push its results (as await does). */
static int await_at1(lua_State *L, fio_loop *loop, fio_fiber *t) {
  if (t->state == FIO_DONE) return fio_push_results(L, t);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  if (w == t) return luaL_error(L, "fiberio: a fiber cannot await itself");
  if (w->pseudo && t->state == FIO_RUNNING)
    return luaL_error(L, "fiberio: cannot wait for a running fiber from a "
                         "context inside it that cannot yield");
  lua_settop(L, 1);
  w->links = &w->self_link;
  w->nlinks = 1;
  fio_link_add(w, &w->self_link, &t->awaiters);
  w->wait = FIO_W_FUTURE;
  return fio_block(loop, L, w, await_k);
}

static int l_await(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  return await_at1(L, loop, fio_checkfuture(L, 1));
}

static int l_cancel(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  fio_fiber *t = fio_checkfuture(L, 1);
  fio_request_cancel(loop, L, t);
  return await_at1(L, loop, t);
}

/* _request_cancel(f): ask, do not wait (for group and timeout). */
static int l_request_cancel(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  fio_request_cancel(loop, L, fio_checkfuture(L, 1));
  return 0;
}

static int select_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  fio_wait_end(L, w);
  int nargs = lua_gettop(L) - 1; /* the futures, then the links */
  for (int i = 1; i <= nargs; i++) {
    if (lua_touserdata(L, i) == w->woke_by) {
      lua_pushinteger(L, i);
      return 1 + fio_push_results(L, w->woke_by);
    }
  }
  return luaL_error(L, "fiberio: select woke for no future");
}

static int l_select(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  int n = lua_gettop(L);
  luaL_argcheck(L, n > 0, 1, "a future expected");
  for (int i = 1; i <= n; i++) fio_checkfuture(L, i);
  for (int i = 1; i <= n; i++) {
    fio_fiber *t = lua_touserdata(L, i);
    if (t->state == FIO_DONE) {
      lua_pushinteger(L, i);
      return 1 + fio_push_results(L, t);
    }
  }
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  for (int i = 1; i <= n; i++) {
    fio_fiber *t = lua_touserdata(L, i);
    if (t == w) return luaL_error(L, "fiberio: a fiber cannot await itself");
    if (w->pseudo && t->state == FIO_RUNNING)
      return luaL_error(L, "fiberio: cannot wait for a running fiber from a "
                           "context inside it that cannot yield");
  }
  /* The links live in a userdata on the stack, which the suspension keeps. */
  fio_link *links = lua_newuserdatauv(L, (size_t)n * sizeof *links, 0);
  w->links = links;
  w->nlinks = n;
  for (int i = 0; i < n; i++)
    fio_link_add(w, &links[i], &((fio_fiber *)lua_touserdata(L, i + 1))->awaiters);
  w->wait = FIO_W_FUTURE;
  return fio_block(loop, L, w, select_k);
}

static int join_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  int timedout = w->wake == FIO_WAKE_TIMER;
  fio_wait_end(L, w);
  lua_pushboolean(L, !timedout);
  return 1;
}

/* _join(f [, seconds]) -> true when f has ended, false on timeout. Does not
 * take f's outcome. */
static int l_join(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  fio_fiber *t = fio_checkfuture(L, 1);
  lua_Number s = fio_opttimeout(L, 2);
  if (t->state == FIO_DONE) {
    lua_pushboolean(L, 1);
    return 1;
  }
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  if (w == t) return luaL_error(L, "fiberio: a fiber cannot await itself");
  lua_settop(L, 1);
  w->links = &w->self_link;
  w->nlinks = 1;
  fio_link_add(w, &w->self_link, &t->awaiters);
  if (s >= 0)
    fio_timer_arm_in(L, loop, w, s);
  w->wait = FIO_W_FUTURE;
  return fio_block(loop, L, w, join_k);
}

/* _observe(f): mark f's outcome as taken (group re-raises one error only). */
static int l_observe(lua_State *L) {
  fio_checkfuture(L, 1)->observed = 1;
  return 0;
}

/* --- yield, canceled, checkcancel, shield --------------------------------- */

static int yield_k(lua_State *L, int status, lua_KContext ctx) {
  fio_wait_end(L, (fio_fiber *)ctx);
  return 0;
}

static int l_yield(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  w->wait = FIO_W_YIELD;
  return fio_block(loop, L, w, yield_k);
}

static int l_canceled(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  fio_fiber *cur = fio_current(loop);
  lua_pushboolean(L, cur && cur->cancel_req);
  return 1;
}

static int l_checkcancel(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  fio_fiber *cur = fio_current(loop);
  if (cur && cur->cancel_req && !cur->shield)
    return fio_raise_canceled(L, loop, cur);
  return 0;
}

static int l_shield_enter(lua_State *L) {
  fio_fiber *cur = fio_current(fio_loop_get(L));
  if (cur) cur->shield++;
  return 0;
}

static int l_shield_leave(lua_State *L) {
  fio_fiber *cur = fio_current(fio_loop_get(L));
  if (cur && cur->shield) cur->shield--;
  return 0;
}

/* --- run --------------------------------------------------------------------- */

typedef struct runctx {
  fio_run *run;
  fio_fiber *root;
  int canceling;
} runctx;

static int run_finish(lua_State *L, runctx *rc) {
  fio_run *run = rc->run;
  fio_fiber *root = rc->root;
  /* Stack: fn, args..., root future, runctx. */
  if (rc->canceling) {
    rc->run = NULL;
    fio_run_release(L, run);
    return fio_raise_canceled(L, fio_loop_get(L), NULL);
  }
  if (root->end != FIO_END_ERROR) {
    /* The root succeeded: raise the first error nobody took. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, run->errs);
    for (int i = 1; i <= run->nerrs; i++) {
      lua_rawgeti(L, -1, i);
      fio_fiber *f = lua_touserdata(L, -1);
      if (f && !f->observed) {
        rc->run = NULL;
        fio_run_release(L, run);
        return fio_push_results(L, f); /* raises */
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  rc->run = NULL;
  fio_run_release(L, run);
  return fio_push_results(L, root);
}

static int run_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  runctx *rc = lua_touserdata(L, -1);
  fio_run *run = rc->run;
  run->waiter = NULL;
  if (w->wake == FIO_WAKE_CANCEL && !rc->canceling) {
    /* The caller is canceled: cancel the root, wait for the scope to end,
     * then raise Canceled. */
    fio_loop *loop = fio_loop_get(L);
    fio_fiber *owner = fio_owner(w);
    if (owner) {
      owner->cancel_req = 0;
      owner->cancel_done = 1;
    }
    rc->canceling = 1;
    fio_request_cancel(loop, L, rc->root);
    if (run->live > 0) {
      w->wake = FIO_WAKE_NONE;
      run->waiter = w;
      w->wait = FIO_W_RUN;
      return fio_block(loop, L, w, run_k);
    }
  } else if (w->wake == FIO_WAKE_DEADLOCK) {
    fio_wait_end(L, w);
  }
  w->wait = FIO_W_NONE;
  return run_finish(L, rc);
}

static int runctx_gc(lua_State *L) {
  runctx *rc = lua_touserdata(L, 1);
  if (rc->run) {
    fio_run *run = rc->run;
    rc->run = NULL;
    run->waiter = NULL;
    fio_run_release(L, run);
  }
  return 0;
}

static int l_run(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 1;
  fio_run *run = calloc(1, sizeof *run);
  if (!run) return luaL_error(L, "fiberio: out of memory");
  run->refs = 1;
  lua_newtable(L);
  run->errs = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Owns the run record: freed by the finish or, on an abnormal exit, by
   * the collector. */
  runctx *rc = lua_newuserdatauv(L, sizeof *rc, 0);
  rc->run = run;
  rc->canceling = 0;
  lua_newtable(L);
  lua_pushcfunction(L, runctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_insert(L, 1); /* rc, fn, args... */
  rc->root = fio_spawn(L, loop, 2, nargs, run);
  lua_pushvalue(L, 1);
  lua_remove(L, 1); /* fn, args..., root, rc */
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  if (run->live == 0) return run_finish(L, rc);
  run->waiter = w;
  w->wait = FIO_W_RUN;
  return fio_block(loop, L, w, run_k);
}

/* --- config, backend ------------------------------------------------------- */

/* Field key of the table at 1 into *n: 0 if absent; raises naming the
 * field if it is not an integer. */
static int config_integer(lua_State *L, const char *key, lua_Integer *n) {
  int t = lua_getfield(L, 1, key);
  int isnum;
  *n = lua_tointegerx(L, -1, &isnum);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return 0;
  if (t != LUA_TNUMBER || !isnum)
    luaL_argerror(L, 1, lua_pushfstring(L, "field '%s' must be an integer",
                                        key));
  return 1;
}

/* Field key of the table at 1, a duration in seconds, into *s: 0 if
 * absent; raises naming the field unless it is a number in 0..3600. */
static int config_seconds(lua_State *L, const char *key, lua_Number *s) {
  int t = lua_getfield(L, 1, key);
  *s = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (t == LUA_TNIL) return 0;
  if (t != LUA_TNUMBER || !(*s >= 0 && *s <= 3600))
    luaL_argerror(L, 1, lua_pushfstring(L, "field '%s' must be a number of "
                                           "seconds (0 to 3600)", key));
  return 1;
}

static int l_config(lua_State *L) {
  fio_loop *loop = lua_touserdata(L, lua_upvalueindex(1));
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const keys[] = {"threads", "ring_entries", "backend",
                                     "inline", "slow_call", "slow_pause",
                                     NULL};
  lua_pushnil(L);
  while (lua_next(L, 1)) { /* every key is one of keys */
    lua_pop(L, 1);
    int known = 0;
    for (int i = 0; keys[i]; i++)
      if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), keys[i]) == 0)
        known = 1;
    if (!known)
      return luaL_argerror(L, 1, lua_pushfstring(L, "unknown option '%s'",
                                                 luaL_tolstring(L, -1, NULL)));
  }
  /* (read and checked first, then applied: a refused call changes nothing) */
  lua_Integer threads, entries;
  int has_threads = config_integer(L, "threads", &threads);
  int has_entries = config_integer(L, "ring_entries", &entries);
  lua_Number slow, pause;
  int has_slow = config_seconds(L, "slow_call", &slow);
  int has_pause = config_seconds(L, "slow_pause", &pause);
  int t_inline = lua_getfield(L, 1, "inline");
  int no_inline = t_inline != LUA_TNIL && !lua_toboolean(L, -1);
  lua_pop(L, 1);
  luaL_argcheck(L, t_inline == LUA_TNIL || t_inline == LUA_TBOOLEAN, 1,
                "field 'inline' must be a boolean");
  if (loop->started)
    return luaL_error(L, "fiberio.config: the loop has already started; "
                         "call config before any other fiberio call");
  luaL_argcheck(L, !has_threads || (threads >= 1 && threads <= 1024), 1,
                "field 'threads' must be 1..1024");
  luaL_argcheck(L, !has_entries || (entries >= 1 && entries <= 32768), 1,
                "field 'ring_entries' must be 1..32768");
  if (has_threads) loop->cfg.threads = (int)threads;
  if (has_entries) loop->cfg.ring_entries = (unsigned)entries;
  if (has_slow) loop->cfg.slow_ns = (uint64_t)(slow * 1e9);
  if (has_pause) loop->cfg.slow_pause_ns = (uint64_t)(pause * 1e9);
  if (t_inline != LUA_TNIL) loop->cfg.no_inline = no_inline;
  if (lua_getfield(L, 1, "backend") != LUA_TNIL) {
    static const char *const names[] = {"auto", "io_uring", "threads", NULL};
    const char *b = lua_tostring(L, -1);
    int i = 0;
    while (names[i] && (!b || strcmp(b, names[i]) != 0)) i++;
    if (!names[i] || lua_type(L, -1) != LUA_TSTRING)
      return luaL_argerror(L, 1, "field 'backend' must be \"auto\", "
                                 "\"io_uring\" or \"threads\"");
    strcpy(loop->cfg.backend, names[i]);
  }
  lua_settop(L, 1);
  return 0;
}

static int l_backend(lua_State *L) {
  lua_pushstring(L, fio_loop_get(L)->be->name);
  return 1;
}

/* fio._info() -> {backend=, ...what the backend says}: for specs. */
static int l_info(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  lua_newtable(L);
  lua_pushstring(L, loop->be->name);
  lua_setfield(L, -2, "backend");
  lua_pushinteger(L, (lua_Integer)loop->inlined);
  lua_setfield(L, -2, "inlined");
  lua_pushinteger(L, (lua_Integer)loop->direct);
  lua_setfield(L, -2, "direct");
  lua_pushinteger(L, (lua_Integer)loop->walk_here);
  lua_setfield(L, -2, "walk_here");
  lua_pushinteger(L, (lua_Integer)loop->slowed);
  lua_setfield(L, -2, "slowed");
  lua_pushinteger(L, (lua_Integer)loop->handed);
  lua_setfield(L, -2, "handed");
  if (loop->be->info) loop->be->info(loop, L);
  return 1;
}

static int canceled_tostring(lua_State *L) {
  lua_pushliteral(L, "fiberio: canceled");
  return 1;
}

static const luaL_Reg future_methods[] = {
    {"await", l_await},         {"cancel", l_cancel}, {"done", l_done},
    {"traceback", l_traceback}, {NULL, NULL}};

static const luaL_Reg fiber_funcs[] = {
    {"async", l_async},
    {"await", l_await},
    {"cancel", l_cancel},
    {"select", l_select},
    {"yield", l_yield},
    {"canceled", l_canceled},
    {"checkcancel", l_checkcancel},
    {"run", l_run},
    {"config", l_config},
    {"backend", l_backend},
    {"_join", l_join},
    {"_info", l_info},
    {"_request_cancel", l_request_cancel},
    {"_observe", l_observe},
    {"_shield_enter", l_shield_enter},
    {"_shield_leave", l_shield_leave},
    {NULL, NULL}};

/* Module table at -2, loop userdata at -1. */
void fio_open_fiber(lua_State *L) {
  fio_loop *loop = lua_touserdata(L, -1);
  /* Future metatable; its methods close over the loop too. */
  luaL_newmetatable(L, FIO_FUTURE);
  lua_pushcfunction(L, future_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, future_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, future_methods, 1);
  lua_setfield(L, -2, "__index");
  loop->future_mt = lua_topointer(L, -1);
  lua_getglobal(L, "pcall");
  loop->pcall_fn = lua_topointer(L, -1);
  lua_getglobal(L, "xpcall");
  loop->xpcall_fn = lua_topointer(L, -1);
  lua_pop(L, 2);
  loop->future_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The Canceled value: one userdata, compared by identity. */
  loop->canceled = lua_newuserdatauv(L, 1, 0);
  luaL_newmetatable(L, FIO_CANCELED);
  lua_pushcfunction(L, canceled_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  loop->canceled_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, -3, "Canceled");
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, fiber_funcs, 1);
  lua_pop(L, 1);
}
