/* wall.c — wall time of whole processes, for benchmarks where start-up and
 * exit count (bench/oneshot.sh). Runs each command RUNS times, in turns
 * (one run of each, then again), and prints per command the median and the
 * lowest wall time, from fork to the end of waitpid, in microseconds:
 *
 *   wall RUNS 'CMD1 ARGS' ['CMD2 ARGS' ...]
 *
 * A command is split on spaces and run with execvp (no shell, whose own
 * start-up would count); its stdout goes to /dev/null. A run that fails
 * (exit status not 0) stops everything with that command named.
 *
 * Build: gcc -O2 -o bench/out/wall bench/wall.c */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXCMD 16
#define MAXARG 64

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int runs = argc > 2 ? atoi(argv[1]) : 0, ncmd = argc - 2;
  if (runs <= 0 || ncmd > MAXCMD) {
    fprintf(stderr, "usage: wall RUNS 'CMD ARGS' ... (at most %d commands)\n", MAXCMD);
    return 2;
  }
  char *args[MAXCMD][MAXARG + 1];
  for (int c = 0; c < ncmd; c++) {
    int n = 0;
    char *save, *w = strtok_r(strdup(argv[c + 2]), " ", &save);
    for (; w && n < MAXARG; w = strtok_r(NULL, " ", &save)) args[c][n++] = w;
    args[c][n] = NULL;
  }
  double *t = malloc(sizeof(double) * (size_t)runs * (size_t)ncmd);
  for (int r = 0; r < runs; r++) {
    for (int c = 0; c < ncmd; c++) {
      double t0 = now_us();
      pid_t pid = fork();
      if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execvp(args[c][0], args[c]);
        _exit(127);
      }
      int st;
      waitpid(pid, &st, 0);
      t[c * runs + r] = now_us() - t0;
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "wall: '%s' failed (status %d)\n", argv[c + 2], st);
        return 1;
      }
    }
  }
  for (int c = 0; c < ncmd; c++) {
    qsort(t + c * runs, (size_t)runs, sizeof(double), cmp);
    printf("wall median_us=%.0f min_us=%.0f runs=%d cmd=%s\n",
           t[c * runs + (runs - 1) / 2], t[c * runs], runs, argv[c + 2]);
  }
  return 0;
}
