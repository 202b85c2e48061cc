/* echoload.c — load for an echo server: C connections to 127.0.0.1:PORT,
 * each sending a SIZE-byte message and waiting for it to come back, again
 * and again, for SECONDS (after a warm-up of a tenth of that). One thread,
 * epoll. Prints "requests/s p50_us p99_us total", total counting the
 * warm-up's requests too.
 *
 *   cc -O2 -o bench/out/echoload bench/echoload.c
 *   bench/out/echoload PORT [C=100] [SECONDS=5] [SIZE=64] */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
  int fd;
  size_t got;     /* bytes of the echo read */
  double sent_at; /* when the message went */
} conn;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: echoload PORT [CONNS] [SECONDS] [SIZE]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  int nconn = argc > 2 ? atoi(argv[2]) : 100;
  double secs = argc > 3 ? atof(argv[3]) : 5;
  size_t size = argc > 4 ? (size_t)atol(argv[4]) : 64;
  char *msg = malloc(size), *buf = malloc(size);
  memset(msg, 'e', size);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ep = epoll_create1(0);
  conn *cs = calloc((size_t)nconn, sizeof *cs);
  size_t cap = 1 << 20, nlat = 0;
  double *lat = malloc(cap * sizeof *lat);
  for (int i = 0; i < nconn; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
      perror("connect");
      return 1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    cs[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  double start = now(), warm = start + secs / 10, end = warm + secs;
  for (int i = 0; i < nconn; i++) {
    cs[i].sent_at = now();
    if (write(cs[i].fd, msg, size) != (ssize_t)size) {
      perror("write");
      return 1;
    }
  }
  long done = 0, total = 0;
  struct epoll_event evs[256];
  for (;;) {
    double t = now();
    if (t >= end) break;
    int n = epoll_wait(ep, evs, 256, 100);
    for (int k = 0; k < n; k++) {
      conn *c = &cs[evs[k].data.u32];
      ssize_t r = read(c->fd, buf, size - c->got);
      if (r <= 0) {
        fprintf(stderr, "echoload: connection ended: %s\n", r ? strerror(errno) : "EOF");
        return 1;
      }
      c->got += (size_t)r;
      if (c->got < size) continue;
      c->got = 0;
      total++;
      double tt = now();
      if (tt >= warm && tt < end) {
        done++;
        if (nlat == cap) lat = realloc(lat, (cap *= 2) * sizeof *lat);
        lat[nlat++] = tt - c->sent_at;
      }
      c->sent_at = tt;
      if (write(c->fd, msg, size) != (ssize_t)size) {
        perror("write");
        return 1;
      }
    }
  }
  qsort(lat, nlat, sizeof *lat, cmp);
  printf("%.0f %.1f %.1f %ld\n", (double)done / secs, nlat ? lat[nlat / 2] * 1e6 : 0,
         nlat ? lat[(size_t)((double)nlat * 0.99)] * 1e6 : 0, total);
  return 0;
}
