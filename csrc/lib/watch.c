/* watch.c — the C half of fio.watch (lua/fiberio/watch.lua is the other):
 * an inotify instance's descriptor, its watches, and one read of its
 * events as an op (cancelable; on the ring, or waited for by the threads
 * backend's epoll). The events are parsed in Lua (string.unpack). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/op.h"
#include "lib/lib.h"

/* core._inotify_init() -> fd | nil, msg, errno (close-on-exec, blocking:
 * its reads are ops when nothing is queued yet; see l_readsome). */
static int l_init(lua_State *L) {
  int fd = inotify_init1(IN_CLOEXEC);
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

static int readsome_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  int res = fio_op_result(L, w); /* a cancel raises (op freed) */
  w->op = NULL;
  if (res < 0) {
    fio_op_free(op);
    return fio_errresult(L, NULL, -res);
  }
  lua_pushlstring(L, op->mem, (size_t)res);
  fio_op_free(op);
  return 1;
}

/* core._readsome(fd, max [, nowait]) -> what one read(2) of fd gives (up
 * to max bytes; "" at end of file) | nil, msg, errno. An fd that says what
 * it holds (FIONREAD: inotify, pipes) and holds something is read at once,
 * here; else the read is an op that waits (cancelable), or, with nowait,
 * nothing is read: nil. */
static int l_readsome(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  luaL_argcheck(L, max > 0 && max <= FIO_MAXIO, 2, "size out of range");
  int nowait = lua_toboolean(L, 3);
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = nowait ? NULL : fio_wait_begin(loop, L, &pseudo);
  /* (a pending cancel raises there) */
  int queued = 0;
  if (ioctl(fd, FIONREAD, &queued) == 0 && queued > 0) {
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, (size_t)max);
    ssize_t n = read(fd, p, (size_t)max); /* (cannot block) */
    if (n < 0) return fio_errresult(L, NULL, errno);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
  }
  if (nowait) {
    lua_pushnil(L);
    return 1;
  }
  fio_op *op = fio_op_new((size_t)max);
  if (!op) return luaL_error(L, "not enough memory");
  op->code = FIO_OP_READ;
  op->fd = fd;
  op->len = (size_t)max;
  return fio_op_wait(loop, L, w, op, readsome_k);
}

/* Module table at -2, loop userdata at -1. */
void fio_open_watch(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"_inotify_init", l_init}, {"_inotify_add", l_add}, {"_inotify_rm", l_rm},
      {"_fdclose", l_fdclose},   {"_readsome", l_readsome}, {NULL, NULL}};
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pop(L, 1);
  /* the event bits, for watch.lua */
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
  lua_setfield(L, -3, "_inotify_bits");
}
