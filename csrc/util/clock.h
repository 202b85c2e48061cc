/* clock.h — the one clock fiberio measures time with. */
#ifndef FIBERIO_UTIL_CLOCK_H
#define FIBERIO_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

#pragma GCC visibility push(hidden) /* (core/loop.h) */

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t fio_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}


#pragma GCC visibility pop
#endif
