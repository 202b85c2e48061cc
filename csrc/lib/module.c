/* module.c — luaopen_fiberio_core: builds the C module that
 * lua/fiberio/init.lua wraps. One loop per Lua state, shared as upvalue 1 by
 * every function of the module that uses it. */
#include <string.h>

#include "core/loop.h"
#include "lib/lib.h"
#include "util/process.h"

int fio_errresult(lua_State *L, const char *what, int err) {
  lua_pushnil(L);
  if (what) lua_pushfstring(L, "%s: %s", what, strerror(err));
  else lua_pushstring(L, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

/* The one symbol the module exports (the build hides every other). */
__attribute__((visibility("default"))) int luaopen_fiberio_core(lua_State *L);
int luaopen_fiberio_core(lua_State *L) {
  fio_ignore_sigpipe();
  lua_newtable(L);
  fio_loop_new(L); /* module, loop */
  fio_open_fiber(L);
  fio_open_time(L);
  fio_open_file(L);
  fio_open_fs(L);
  fio_open_walk(L);
  fio_open_process(L);
  fio_open_watch(L);
  fio_open_socket(L);
  fio_open_sync(L);
  fio_open_parallel(L);
  /* worker threads find their state's loop here */
  lua_pushlightuserdata(L, lua_touserdata(L, -1));
  lua_setfield(L, LUA_REGISTRYINDEX, "fiberio.loopptr");
  lua_pop(L, 1);
  fio_open_errno(L);
  return 1;
}
