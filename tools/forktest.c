/* A test tool: a Lua module (require "forktest", from the build directory)
 * that forks, for the specs of what fiberio leaves to a fork's child.
 *   forktest.fork() -> 0 in the child, its pid in the parent
 *   forktest.wait(pid) -> its exit status (blocking: a test's parent only)
 *   forktest.exit(code): _exit, stdout flushed first (a fork's child must
 *     not close its parent's Lua state and loop, which it shares a ring
 *     with) */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

static int l_fork(lua_State *L) {
  fflush(NULL);
  pid_t p = fork();
  if (p < 0) return luaL_error(L, "fork failed");
  lua_pushinteger(L, p);
  return 1;
}

static int l_wait(lua_State *L) {
  int st;
  if (waitpid((pid_t)luaL_checkinteger(L, 1), &st, 0) < 0) return luaL_error(L, "waitpid failed");
  lua_pushinteger(L, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  return 1;
}

static int l_exit(lua_State *L) {
  fflush(NULL);
  _exit((int)luaL_optinteger(L, 1, 0));
}

int luaopen_forktest(lua_State *L) {
  static const luaL_Reg funcs[] = {{"fork", l_fork}, {"wait", l_wait}, {"exit", l_exit}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
