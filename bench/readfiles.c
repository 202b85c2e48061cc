/* readfiles.c — the plain C baseline of bench/readfiles.lua: read N files
 * (DIR/0 .. DIR/N-1) through one io_uring with 64 files in flight. Each file
 * is openat -> read (into its slot's 64 KiB buffer, at offset 0) -> close,
 * three ring round trips, one after the other; a file's next step is queued
 * when the previous one's completion is reaped, and all queued steps go to
 * the kernel in one io_uring_submit_and_wait. No linked SQEs, no fixed files,
 * no registered buffers, default ring flags: the straightforward program.
 *
 *   readfiles DIR [N [REPS [FILESIZE]]]   defaults 10000 5 4096
 *
 * One untimed pass warms the page and dentry caches; then REPS timed passes.
 * Every pass checks that it read N * FILESIZE bytes. Prints the RESULT line
 * bench/run.sh reads on stdout and a summary on stderr. REPS 0: one pass
 * and nothing else (no warm-up, no timing, no output), for a timing of the
 * whole process from outside (bench/oneshot.sh).
 *
 * Build: gcc -O2 -o bench/out/readfiles bench/readfiles.c -luring */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INFLIGHT 64
#define BUFSZ (64 * 1024)

enum { OPEN, READ, CLOSE };

struct slot {
  int stage;
  int fd;
  long file;
  long long got; /* bytes of this file read so far */
  char path[4096];
  char *buf;
};

static struct io_uring ring;
static struct slot slots[INFLIGHT];
static const char *dir;
static long nfiles;

static void die(const char *what, int err) {
  fprintf(stderr, "readfiles: %s: %s\n", what, strerror(err));
  exit(1);
}

static struct io_uring_sqe *sqe_for(struct slot *s) {
  struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
  if (!sqe) die("io_uring_get_sqe", EBUSY); /* cannot happen: one per slot */
  io_uring_sqe_set_data(sqe, s);
  return sqe;
}

static void start_open(struct slot *s, long file) {
  s->stage = OPEN;
  s->file = file;
  s->got = 0;
  snprintf(s->path, sizeof s->path, "%s/%ld", dir, file);
  io_uring_prep_openat(sqe_for(s), AT_FDCWD, s->path, O_RDONLY | O_CLOEXEC, 0);
}

static void start_read(struct slot *s) {
  s->stage = READ;
  io_uring_prep_read(sqe_for(s), s->fd, s->buf, BUFSZ, (__u64)s->got);
}

static void start_close(struct slot *s) {
  s->stage = CLOSE;
  io_uring_prep_close(sqe_for(s), s->fd);
}

/* One pass over the tree; returns the bytes read. */
static long long pass(void) {
  long next = 0, done = 0;
  long long total = 0;
  for (int i = 0; i < INFLIGHT && next < nfiles; i++) start_open(&slots[i], next++);
  while (done < nfiles) {
    int r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0 && r != -EINTR) die("io_uring_submit_and_wait", -r);
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      struct slot *s = io_uring_cqe_get_data(cqe);
      int res = cqe->res;
      n++;
      switch (s->stage) {
      case OPEN:
        if (res < 0) die(s->path, -res);
        s->fd = res;
        start_read(s);
        break;
      case READ:
        if (res < 0) die(s->path, -res);
        s->got += res;
        total += res;
        if (res == BUFSZ) start_read(s); /* a full buffer: there may be more */
        else start_close(s);
        break;
      case CLOSE:
        if (res < 0) die(s->path, -res);
        done++;
        if (next < nfiles) start_open(s, next++);
        break;
      }
    }
    io_uring_cq_advance(&ring, n);
  }
  return total;
}

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long status_kb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':') {
      v = strtol(line + n + 1, NULL, 10);
      break;
    }
  fclose(f);
  return v;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: readfiles DIR [N [REPS [FILESIZE]]]\n");
    return 2;
  }
  dir = argv[1];
  nfiles = argc > 2 ? atol(argv[2]) : 10000;
  int reps = argc > 3 ? atoi(argv[3]) : 5;
  long long size = argc > 4 ? atoll(argv[4]) : 4096;
  if (nfiles <= 0 || reps < 0 || reps > 1000 || size < 0) {
    fprintf(stderr, "readfiles: bad arguments\n");
    return 2;
  }
  int r = io_uring_queue_init(2 * INFLIGHT, &ring, 0);
  if (r < 0) die("io_uring_queue_init", -r);
  for (int i = 0; i < INFLIGHT; i++)
    if (!(slots[i].buf = malloc(BUFSZ))) die("malloc", ENOMEM);
  long long want = (long long)nfiles * size;
  if (reps == 0) { /* the whole process is what is timed */
    long long one = pass();
    if (one == want) return 0;
    fprintf(stderr, "readfiles: read %lld bytes, expected %lld\n", one, want);
    return 1;
  }
  long rss0 = status_kb("VmRSS");

  long long got = pass(); /* warm the caches */
  if (got != want) {
    fprintf(stderr, "readfiles: warm-up read %lld bytes, expected %lld\n", got, want);
    return 1;
  }
  double times[1000], cpus[1000];
  for (int rep = 0; rep < reps; rep++) {
    double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t0 = clock_s(CLOCK_MONOTONIC);
    got = pass();
    times[rep] = clock_s(CLOCK_MONOTONIC) - t0;
    cpus[rep] = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    if (got != want) {
      fprintf(stderr, "readfiles: rep %d read %lld bytes, expected %lld\n", rep + 1, got, want);
      return 1;
    }
  }
  long hwm = status_kb("VmHWM");
  int best = 0;
  for (int i = 1; i < reps; i++)
    if (times[i] < times[best]) best = i;
  double sorted[1000];
  memcpy(sorted, times, sizeof(double) * (size_t)reps);
  qsort(sorted, (size_t)reps, sizeof(double), cmp_double);
  double median = sorted[(reps + 1) / 2 - 1];
  printf("RESULT bench=readfiles variant=C n=%ld reps=%d best_ms=%.1f median_ms=%.1f"
         " cpu_ms=%.1f heap_kb=0 rss_kb=%ld rss0_kb=%ld bytes=%lld\n",
         nfiles, reps, times[best] * 1e3, median * 1e3, cpus[best] * 1e3,
         hwm - rss0, rss0, got);
  fprintf(stderr, "readfiles/C: best %.1f ms (median %.1f, cpu %.1f; all:", times[best] * 1e3,
          median * 1e3, cpus[best] * 1e3);
  for (int i = 0; i < reps; i++) fprintf(stderr, " %.1f", times[i] * 1e3);
  fprintf(stderr, "), %lld bytes a pass, %.2f us a file\n", got, times[best] * 1e6 / (double)nfiles);
  io_uring_queue_exit(&ring);
  return 0;
}
