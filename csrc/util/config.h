/* config.h — fiberio's settings, read from the environment once per
 * process. A loop starts from these and fio.config() may change its own
 * copy of the per-loop ones before the loop starts.
 *
 *   FIBERIO_BACKEND       auto (default), io_uring or threads
 *   FIBERIO_POOL_SIZE     bound on pool threads (default max(4, 2 x CPUs))
 *   FIBERIO_POOL_EAGER    threads started without a stall first (CPUs - 1)
 *   FIBERIO_POOL_IDLE_MS  an idle pool thread leaves after this (5000)
 *
 * A test build (-DFIBERIO_TEST_HOOKS, what `make test` and `make check`
 * build) also reads the stand-ins for kernels and situations the specs
 * cannot otherwise reach (see `struct fio_test_hooks`). The default build
 * has no such code and no such names. */
#ifndef FIBERIO_UTIL_CONFIG_H
#define FIBERIO_UTIL_CONFIG_H

#pragma GCC visibility push(hidden) /* (core/loop.h) */

#ifdef FIBERIO_TEST_HOOKS
/* Each is NULL or the variable's text. */
typedef struct fio_test_hooks {
  const char *no_ring_ops;   /* FIBERIO_NO_RING_OPS="statx,openat": as if the
                              * ring's probe lacked these opcodes */
  const char *ring_einval;   /* FIBERIO_TEST_RING_EINVAL="statx": as if the
                              * kernel answered -EINVAL on the ring */
  const char *refuse_flags;  /* FIBERIO_TEST_REFUSE_FLAGS="defer_taskrun":
                              * ring set-up with these flags fails */
  const char *no_msg_ring;   /* FIBERIO_TEST_NO_MSG_RING: wake through the
                              * eventfd, as before Linux 6.13 */
  const char *rf_slots;      /* FIBERIO_TEST_RF_SLOTS=n: the ring's readfile
                              * file table has n slots (0: none) */
  const char *threads_poll;  /* FIBERIO_THREADS_POLL=0: the threads backend
                              * runs every op on the pool */
  const char *threads_help;  /* FIBERIO_THREADS_HELP=0: its loop thread
                              * never takes readfiles back from the pool */
  const char *ring_poll_wait; /* FIBERIO_TEST_RING_POLL_WAIT: the ring's loop
                              * sleeps in ppoll on the ring, not in
                              * io_uring_enter (valgrind holds its thread
                              * lock across io_uring_enter) */
  const char *no_pidfd;      /* FIBERIO_TEST_NO_PIDFD: children are waited
                              * for as before Linux 5.3, through SIGCHLD
                              * (util/child.h) */
} fio_test_hooks;
#endif

typedef struct fio_config {
  char backend[32];      /* "", "auto", "io_uring" or "threads" (a longer
                          * name is cut: it names no backend either) */
  unsigned ring_entries; /* 0: the backend's default */
  int threads;           /* fio.parallel's workers; 0: one per CPU */
  int pool_size;         /* 0: the pool's default */
  int pool_eager;        /* 0: the pool's default */
  long pool_idle_ms;     /* 0: the pool's default */
#ifdef FIBERIO_TEST_HOOKS
  fio_test_hooks test;
#endif
} fio_config;

/* The settings of the environment, read on the first call (thread-safe;
 * never changes after). An invalid number reads as 0 (the default). */
const fio_config *fio_config_env(void);

#ifdef FIBERIO_TEST_HOOKS
/* Whether the comma-separated list s holds the word w ("unlinkat" holds no
 * "linkat"). NULL holds nothing. */
int fio_list_has(const char *s, const char *w);
#endif


#pragma GCC visibility pop
#endif
