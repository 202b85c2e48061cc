/* parallel.c — fio.parallel(fn, ...): the caller's side. The function and
 * its arguments are copied now (errors raise at the call); a fiber stands
 * for the task and waits on its op as on any I/O, so a parallel future
 * awaits and cancels as an async one does. The workers are par/workers.c's. */
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "core/op.h"
#include "lib/lib.h"
#include "par/marshal.h"
#include "par/workers.h"

static int parallel_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  int res = fio_op_result(L, w); /* a cancel of this fiber raises here */
  w->op = NULL;
  task *t = (task *)op->mem;
  if (res < 0 || t->result == TR_CANCELED) {
    fio_op_free(op);
    /* canceled without a cancel of ours: the pool shut down */
    return luaL_error(L, "fio.parallel: the task was canceled");
  }
  lua_settop(L, 0);
  int n = fio_deser_values(L, t->res.p, t->res.n);
  int err = t->result == TR_ERROR;
  fio_op_free(op);
  if (err) return lua_error(L);
  return n;
}

/* The op of a task not yet submitted, owned by a userdata until the fiber
 * that submits it takes it: a fiber canceled before it starts never runs,
 * and its op (with the task's copies) goes with the box's collection. */
#define TASKBOX "fiberio.taskbox"

static int taskbox_gc(lua_State *L) {
  fio_op **box = lua_touserdata(L, 1);
  if (*box) fio_op_free(*box);
  *box = NULL;
  return 0;
}

/* The fiber that stands for the task on the caller's side: upvalue 1 the
 * loop; argument: the op's box. */
static int parallel_body(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  fio_op **box = lua_touserdata(L, 1);
  fio_op *op = *box;
  *box = NULL;
  lua_settop(L, 0);
  return fio_op_wait(loop, L, w, op, parallel_k);
}

static int writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  fio_sb_put(ud, p, sz);
  return 0;
}

/* fio.parallel(fn, ...) -> Future */
static int l_parallel(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (lua_iscfunction(L, 1))
    return luaL_argerror(L, 1, "a C function cannot run in parallel");
  for (int i = 1;; i++) {
    const char *name = lua_getupvalue(L, 1, i);
    if (!name) break;
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0)
      return luaL_error(L, "fio.parallel: the function has an upvalue '%s': "
                           "only _ENV may be captured (pass values as "
                           "arguments)", *name ? name : "?");
  }
  int nargs = lua_gettop(L) - 1;
  fio_workers_ensure(L, loop);
  fio_op **box = lua_newuserdatauv(L, sizeof *box, 0); /* (frees op on errors) */
  *box = NULL;
  luaL_setmetatable(L, TASKBOX);
  task *t = calloc(1, sizeof *t);
  fio_op *op = t ? fio_op_new(0) : NULL;
  if (!op) {
    free(t);
    return luaL_error(L, "not enough memory");
  }
  op->mem = (char *)t;
  op->dtor = fio_task_free;
  op->code = FIO_OP_TASK;
  op->executor = &fio_workers_executor;
  t->op = op;
  *box = op;
  /* copy the function and the arguments now: errors raise at the call */
  sbuf fb = {0};
  lua_pushvalue(L, 1);
  lua_dump(L, writer, &fb, 0);
  lua_pop(L, 1);
  if (fb.err) {
    free(fb.p);
    return luaL_error(L, "not enough memory");
  }
  t->fn = fb.p;
  t->fnlen = fb.n;
  sbuf ab = {0};
  if (fio_ser_values(L, 2, nargs, &ab)) {
    const char *e = ab.err; /* (a literal, not in ab.p) */
    free(ab.p);
    return luaL_error(L, "fio.parallel: arguments: %s", e);
  }
  t->args = ab;
  /* a fiber that waits for the task, its argument the box */
  lua_replace(L, 1);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, parallel_body, 1);
  lua_insert(L, 1);
  fio_fiber *cur = fio_current(loop);
  fio_spawn(L, loop, 1, 1, cur ? cur->run : NULL);
  fio_loop_watch_end(loop);
  return 1;
}

/* Module table at -2, loop userdata at -1. */
void fio_open_parallel(lua_State *L) {
  if (luaL_newmetatable(L, TASKBOX)) {
    lua_pushcfunction(L, taskbox_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_parallel, 1);
  lua_setfield(L, -3, "parallel");
}
