/* config.c — the settings of the environment, read once (config.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/config.h"

static fio_config env_config;

static long env_long(const char *name, long lo, long hi) {
  const char *s = getenv(name);
  if (!s || !*s) return 0;
  char *end;
  long v = strtol(s, &end, 10);
  return (*end || v < lo || v > hi) ? 0 : v;
}

static void read_env(void) {
  fio_config *c = &env_config;
  const char *b = getenv("FIBERIO_BACKEND");
  if (b) snprintf(c->backend, sizeof c->backend, "%s", b);
  c->pool_size = (int)env_long("FIBERIO_POOL_SIZE", 1, 1024);
  c->pool_eager = (int)env_long("FIBERIO_POOL_EAGER", 1, 1024);
  c->pool_idle_ms = env_long("FIBERIO_POOL_IDLE_MS", 1, 3600000);
#ifdef FIBERIO_TEST_HOOKS
  c->test.no_ring_ops = getenv("FIBERIO_NO_RING_OPS");
  c->test.ring_einval = getenv("FIBERIO_TEST_RING_EINVAL");
  c->test.refuse_flags = getenv("FIBERIO_TEST_REFUSE_FLAGS");
  c->test.no_msg_ring = getenv("FIBERIO_TEST_NO_MSG_RING");
  c->test.rf_slots = getenv("FIBERIO_TEST_RF_SLOTS");
  c->test.threads_poll = getenv("FIBERIO_THREADS_POLL");
  c->test.threads_help = getenv("FIBERIO_THREADS_HELP");
  c->test.ring_poll_wait = getenv("FIBERIO_TEST_RING_POLL_WAIT");
  c->test.no_pidfd = getenv("FIBERIO_TEST_NO_PIDFD");
#endif
}

const fio_config *fio_config_env(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, read_env);
  return &env_config;
}

#ifdef FIBERIO_TEST_HOOKS
int fio_list_has(const char *s, const char *w) {
  if (!s) return 0;
  size_t n = strlen(w);
  for (const char *p = s; (p = strstr(p, w)); p += n)
    if ((p == s || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
  return 0;
}
#endif
