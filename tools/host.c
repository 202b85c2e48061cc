/* A test tool: a C program that embeds Lua as a host application would.
 *   host SCRIPT [ROUNDS [cpu|rss]]
 * Each round makes a new lua_State, runs SCRIPT in it and closes it
 * (lua_close), as a server that reloads its Lua would. After each round it
 * prints "round N fds D", D being how many more fds the process has open
 * than before the first round: what a closed state left behind. The specs
 * use it to check that closing a state releases every fd fiberio opened,
 * whatever was in flight. With "cpu", it also prints the CPU seconds (all
 * threads) and wall seconds the lua_close took; with "rss", the resident
 * set after the close ("rss KIB"). A script that raises has
 * its error printed ("host: msg") and its state closed as any other: a
 * script ends that way to close a state with work still in flight (one that
 * returns first runs its fibers to their end). Exit 1 if a round failed. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

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

static double cpu_now(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* The resident set in KiB (VmRSS), or -1. */
static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) kib = strtol(line + 6, NULL, 10);
  fclose(f);
  return kib;
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: host SCRIPT [ROUNDS [cpu|rss]]\n");
    return 2;
  }
  int rounds = argc > 2 ? atoi(argv[2]) : 1;
  int cpu = argc > 3 && strcmp(argv[3], "cpu") == 0;
  int rss = argc > 3 && strcmp(argv[3], "rss") == 0;
  int before = open_fds(), failed = 0;
  for (int i = 1; i <= rounds; i++) {
    lua_State *L = luaL_newstate();
    if (!L) return 1;
    luaL_openlibs(L);
    if (luaL_dofile(L, argv[1]) != LUA_OK) {
      printf("host: %s\n", lua_tostring(L, -1));
      fflush(stdout);
      failed = 1;
    }
    double c0 = cpu_now(), t0 = wall_now();
    lua_close(L);
    double c1 = cpu_now(), t1 = wall_now();
    printf("round %d fds %d\n", i, open_fds() - before);
    if (cpu) printf("close cpu %.3f wall %.3f\n", c1 - c0, t1 - t0);
    if (rss) printf("rss %ld\n", rss_kib());
    fflush(stdout);
  }
  return failed;
}
