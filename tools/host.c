/* A test tool: a C program that embeds Lua as a host application would.
 *   host SCRIPT [ROUNDS]
 * Each round makes a new lua_State, runs SCRIPT in it and closes it
 * (lua_close), as a server that reloads its Lua would. After each round it
 * prints "round N fds D", D being how many more fds the process has open
 * than before the first round: what a closed state left behind. The specs
 * use it to check that closing a state releases every fd fiberio opened,
 * whatever was in flight. Exit 1 if SCRIPT fails. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static int open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: host SCRIPT [ROUNDS]\n");
    return 2;
  }
  int rounds = argc > 2 ? atoi(argv[2]) : 1;
  int before = open_fds();
  for (int i = 1; i <= rounds; i++) {
    lua_State *L = luaL_newstate();
    if (!L) return 1;
    luaL_openlibs(L);
    if (luaL_dofile(L, argv[1]) != LUA_OK) {
      fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
      lua_close(L);
      return 1;
    }
    lua_close(L);
    printf("round %d fds %d\n", i, open_fds() - before);
    fflush(stdout);
  }
  return 0;
}
