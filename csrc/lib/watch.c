/* watch.c — the C half of fio.watch (lua/fiberio/watch.lua is the other):
 * an inotify instance's descriptor, its watches, and one read of its
 * events (a poll op when there are none yet: cancelable; on the ring, or
 * in the threads backend's epoll). The events are parsed in Lua (string.unpack). */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/op.h"
#include "lib/lib.h"

/* core._inotify_init() -> fd | nil, msg, errno (close-on-exec,
 * nonblocking: read when a poll says so; see l_readsome). */
static int l_init(lua_State *L) {
  int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == EMFILE)
      return fio_errresult(L, "inotify (the limit fs.inotify.max_user_instances, "
                              "or open files, is reached)", e);
    return fio_errresult(L, "inotify", e);
  }
  lua_pushinteger(L, fd);
  return 1;
}

/* core._inotify_add(fd, path, mask) -> wd | nil, "path: msg", errno */
static int l_add(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  const char *path = luaL_checkstring(L, 2);
  uint32_t mask = (uint32_t)luaL_checkinteger(L, 3);
  int wd = inotify_add_watch(fd, path, mask);
  if (wd < 0) {
    int e = errno;
    if (e == ENOSPC) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s: the limit of inotify watches is reached "
                         "(fs.inotify.max_user_watches)", path);
      lua_pushinteger(L, e);
      return 3;
    }
    return fio_errresult(L, path, e);
  }
  lua_pushinteger(L, wd);
  return 1;
}

/* core._inotify_rm(fd, wd): the watch gone (one the kernel dropped
 * already, its file deleted, is fine). */
static int l_rm(lua_State *L) {
  (void)inotify_rm_watch((int)luaL_checkinteger(L, 1),
                         (int)luaL_checkinteger(L, 2));
  return 0;
}

/* core._fdclose(fd): closed once no op of this loop uses it (a read in
 * flight ends first). */
static int l_fdclose(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  fio_loop *loop = lua_touserdata(L, lua_upvalueindex(1));
  if (!fio_close_after_ops(loop, fd)) close(fd);
  return 0;
}

/* One nonblocking read of fd into L's stack: 1 (the bytes pushed, "" at
 * end of file), 0 (nothing there yet), or -errno. */
static int read_now(lua_State *L, int fd) {
  char buf[4096]; /* (room for many events; one is at most 272 bytes) */
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n >= 0) {
      lua_pushlstring(L, buf, (size_t)n);
      return 1;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
  }
}

/* core._readsome(fd) -> what one read(2) of the nonblocking fd gives now
 * (at most 4 KiB; "" at end of file), nil when nothing is there | nil,
 * msg, errno. */
static int l_readsome(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int r = read_now(L, fd);
  if (r < 0) return fio_errresult(L, NULL, -r);
  if (r == 0) lua_pushnil(L);
  return 1;
}

static int pollin_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  int res = fio_op_result(L, w); /* a cancel raises (op freed) */
  w->op = NULL;
  fio_op_free(op);
  if (res == -ETIMEDOUT) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  if (res < 0) return fio_errresult(L, NULL, -res);
  lua_pushboolean(L, 1);
  return 1;
}

/* core._pollin(fd [, timeout]) -> true once fd is readable | nil,
 * "timeout" after timeout seconds | nil, msg, errno (a close of fd ends
 * it: EBADF). Cancelable. The caller reads after it (_readsome), having
 * checked that fd is still its own: a wait does not read, so a close
 * meanwhile loses nobody's data. */
static int l_pollin(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  lua_Number timeout = fio_opttimeout(L, 2);
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo); /* (a pending
                                                            * cancel raises) */
  fio_op *op = fio_op_new(0);
  if (!op) return luaL_error(L, "not enough memory");
  op->code = FIO_OP_POLL;
  op->fd = fd;
  op->mode = POLLIN;
  /* (armed once the op is made: out of memory here leaks that op, never
   * leaves a timer on a waiter that is gone) */
  if (timeout >= 0 && timeout != HUGE_VAL) fio_timer_arm_in(L, loop, w, timeout);
  return fio_op_wait(loop, L, w, op, pollin_k);
}

/* core._inotify_bits() -> a new table of the event bits, for watch.lua
 * (made when it loads: 17 names are not worth every require's time). */
static int l_bits(lua_State *L) {
  static const struct {
    const char *name;
    uint32_t bit;
  } bits[] = {{"IN_ACCESS", IN_ACCESS},         {"IN_MODIFY", IN_MODIFY},
              {"IN_ATTRIB", IN_ATTRIB},         {"IN_CLOSE_WRITE", IN_CLOSE_WRITE},
              {"IN_MOVED_FROM", IN_MOVED_FROM}, {"IN_MOVED_TO", IN_MOVED_TO},
              {"IN_CREATE", IN_CREATE},         {"IN_DELETE", IN_DELETE},
              {"IN_DELETE_SELF", IN_DELETE_SELF}, {"IN_MOVE_SELF", IN_MOVE_SELF},
              {"IN_Q_OVERFLOW", IN_Q_OVERFLOW}, {"IN_IGNORED", IN_IGNORED},
              {"IN_ISDIR", IN_ISDIR},           {"IN_DONT_FOLLOW", IN_DONT_FOLLOW},
              {"IN_ONLYDIR", IN_ONLYDIR},       {"IN_EXCL_UNLINK", IN_EXCL_UNLINK},
              {"IN_UNMOUNT", IN_UNMOUNT},       {NULL, 0}};
  lua_newtable(L);
  for (int i = 0; bits[i].name; i++) {
    lua_pushinteger(L, bits[i].bit);
    lua_setfield(L, -2, bits[i].name);
  }
  return 1;
}

/* Module table at -2, loop userdata at -1. */
void fio_open_watch(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"_inotify_init", l_init}, {"_inotify_add", l_add}, {"_inotify_rm", l_rm},
      {"_fdclose", l_fdclose},   {"_readsome", l_readsome},
      {"_pollin", l_pollin},     {NULL, NULL}};
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pop(L, 1);
  lua_pushcfunction(L, l_bits);
  lua_setfield(L, -3, "_inotify_bits");
}
