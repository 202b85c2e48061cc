/* file.c — the File handle: fio.pipe() and the read/write/close methods
 * that run through the loop's backend. Handles are created closed and get
 * their fd only once the fd exists (liolib's newprefile), so __gc/__close can
 * always run, and run twice. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "fiberio.h"

typedef struct fio_file {
  int fd;    /* -1 when closed */
  int busy;  /* operations in flight on fd */
} fio_file;

/* A new closed File handle, pushed. */
static fio_file *newfile(lua_State *L) {
  fio_file *f = lua_newuserdatauv(L, sizeof *f, 0);
  f->fd = -1;
  f->busy = 0;
  luaL_setmetatable(L, FIO_FILE);
  return f;
}

static fio_file *checkopen(lua_State *L, int idx) {
  fio_file *f = luaL_checkudata(L, idx, FIO_FILE);
  if (f->fd < 0) luaL_error(L, "attempt to use a closed file");
  return f;
}

/* --- read -------------------------------------------------------------------- */

#define CHUNK (64 * 1024)

static int read_k(lua_State *L, int status, lua_KContext ctx);

/* Submit the next read of op: into mem + got, at most what is still wanted,
 * growing mem when it is full. */
static int read_more(lua_State *L, fio_loop *loop, fio_fiber *w, fio_op *op) {
  fio_file *f = lua_touserdata(L, 1);
  if (op->got == op->cap) {
    size_t cap = op->cap * 2;
    if (cap > op->want) cap = op->want;
    char *m = realloc(op->mem, cap);
    if (!m) {
      fio_op_free(op);
      return luaL_error(L, "not enough memory");
    }
    op->mem = m;
    op->cap = cap;
  }
  op->code = FIO_OP_READ;
  op->fd = f->fd;
  op->buf = op->mem + op->got;
  op->len = op->cap - op->got;
  if (op->len > 0x7ffff000) op->len = 0x7ffff000;
  f->busy++;
  return fio_op_wait(loop, L, w, op, read_k);
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  fio_loop *loop = w->loop;
  fio_op *op = w->op;
  fio_file *f = lua_touserdata(L, 1);
  f->busy--;
  w->wait = FIO_W_NONE;
  int res = fio_op_result(L, w);
  w->op = NULL;
  if (res < 0) {
    fio_op_free(op);
    return fio_errresult(L, NULL, -res);
  }
  op->got += (size_t)res;
  if (res > 0 && op->got < op->want) {
    /* More to read: a new suspension point, so a pending cancel lands. */
    fio_fiber *owner = w->pseudo ? w->owner : w;
    if (owner && owner->cancel_req && !owner->shield) {
      fio_op_free(op);
      return fio_raise_canceled(L, loop, owner);
    }
    if (f->fd < 0) {
      fio_op_free(op);
      return fio_errresult(L, NULL, EBADF);
    }
    return read_more(L, loop, w, op);
  }
  /* EOF or all of it. read(n) gives nil at EOF with nothing read. */
  if (op->got == 0 && lua_type(L, 2) == LUA_TNUMBER) lua_pushnil(L);
  else lua_pushlstring(L, op->mem, op->got);
  fio_op_free(op);
  return 1;
}

/* f:read(n) — up to n bytes, waiting for n or EOF; nil at EOF.
 * f:read("a") — everything up to EOF ("" at EOF). */
static int f_read(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  checkopen(L, 1);
  size_t want;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative count");
    if (n == 0) {
      lua_pushliteral(L, "");
      return 1;
    }
    want = (size_t)n;
  } else {
    const char *fmt = luaL_optstring(L, 2, "a");
    if (*fmt == '*') fmt++;
    luaL_argcheck(L, *fmt == 'a', 2, "invalid format (only \"a\" or a count "
                                     "on pipes for now)");
    want = (size_t)-1;
  }
  lua_settop(L, 2);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  fio_op *op = fio_op_new(want < CHUNK ? want : CHUNK);
  if (!op) return luaL_error(L, "not enough memory");
  op->want = want;
  return read_more(L, loop, w, op);
}

/* --- write ------------------------------------------------------------------- */

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  fio_file *f = lua_touserdata(L, 1);
  f->busy--;
  w->wait = FIO_W_NONE;
  int res = fio_op_result(L, w);
  w->op = NULL;
  if (res < 0) {
    fio_op_free(op);
    return fio_errresult(L, NULL, -res);
  }
  op->got += (size_t)res;
  if (op->got < op->want) {
    if (f->fd < 0) {
      fio_op_free(op);
      return fio_errresult(L, NULL, EBADF);
    }
    op->buf = op->mem + op->got;
    op->len = op->want - op->got;
    if (op->len > 0x7ffff000) op->len = 0x7ffff000;
    op->fd = f->fd;
    f->busy++;
    return fio_op_wait(w->loop, L, w, op, write_k);
  }
  fio_op_free(op);
  lua_settop(L, 1);
  return 1;
}

/* f:write(...) — strings and numbers, as io's write; returns f. */
static int f_write(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  fio_file *f = checkopen(L, 1);
  int n = lua_gettop(L);
  size_t total = 0;
  for (int i = 2; i <= n; i++) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      char b[64];
      int len = lua_isinteger(L, i)
                    ? snprintf(b, sizeof b, LUA_INTEGER_FMT,
                               (LUAI_UACINT)lua_tointeger(L, i))
                    : snprintf(b, sizeof b, LUA_NUMBER_FMT,
                               (LUAI_UACNUMBER)lua_tonumber(L, i));
      lua_pushlstring(L, b, (size_t)len);
      lua_replace(L, i);
    }
    size_t len;
    luaL_checklstring(L, i, &len);
    total += len;
  }
  if (total == 0) {
    lua_settop(L, 1);
    return 1;
  }
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  fio_op *op = fio_op_new(total);
  if (!op) return luaL_error(L, "not enough memory");
  for (int i = 2; i <= n; i++) {
    size_t len;
    const char *s = lua_tolstring(L, i, &len);
    memcpy(op->mem + op->got, s, len);
    op->got += len;
  }
  lua_settop(L, 1);
  op->got = 0;
  op->want = total;
  op->code = FIO_OP_WRITE;
  op->fd = f->fd;
  op->len = total > 0x7ffff000 ? 0x7ffff000 : total;
  f->busy++;
  return fio_op_wait(loop, L, w, op, write_k);
}

/* --- close ------------------------------------------------------------------- */

static void closefd(lua_State *L, fio_file *f) {
  if (f->fd < 0) return;
  if (f->busy) {
    /* Operations in flight on fd end with EBADF in their fibers. */
    fio_loop *loop = lua_touserdata(L, lua_upvalueindex(1));
    if (loop && loop->started && !loop->closed)
      for (fio_op *op = loop->inflight; op; op = op->next)
        if (op->fd == f->fd && !op->cancel_sent) {
          op->cancel_sent = 1;
          loop->be->cancel(loop, op);
        }
  }
  if (f->fd > 2) close(f->fd);
  f->fd = -1;
}

static int f_close(lua_State *L) {
  fio_file *f = checkopen(L, 1);
  closefd(L, f);
  lua_pushboolean(L, 1);
  return 1;
}

static int f_gc(lua_State *L) {
  fio_file *f = luaL_checkudata(L, 1, FIO_FILE);
  closefd(L, f);
  return 0;
}

static int f_tostring(lua_State *L) {
  fio_file *f = luaL_checkudata(L, 1, FIO_FILE);
  if (f->fd < 0) lua_pushliteral(L, "file (closed)");
  else lua_pushfstring(L, "file (%p)", (void *)f);
  return 1;
}

/* fio.pipe() -> r, w: the two ends of a new pipe. */
static int l_pipe(lua_State *L) {
  fio_file *r = newfile(L), *w = newfile(L);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return fio_errresult(L, "pipe", errno);
  r->fd = fds[0];
  w->fd = fds[1];
  return 2;
}

static const luaL_Reg file_methods[] = {
    {"read", f_read}, {"write", f_write}, {"close", f_close}, {NULL, NULL}};

static const luaL_Reg file_meta[] = {{"__gc", f_gc},
                                     {"__close", f_gc},
                                     {"__tostring", f_tostring},
                                     {NULL, NULL}};

/* Module table at -2, loop userdata at -1. */
void fio_open_file(lua_State *L) {
  luaL_newmetatable(L, FIO_FILE);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, file_meta, 1);
  lua_newtable(L);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, file_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_pipe, 1);
  lua_setfield(L, -3, "pipe");
}
