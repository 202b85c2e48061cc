/* A test tool, preloaded (LD_PRELOAD): every malloc or realloc of exactly
 * FAIL_ALLOC_SIZE bytes fails with ENOMEM, so a spec can reach an
 * out-of-memory path that real memory pressure reaches only by chance.
 * The size should be one nothing else asks for (the timer heap grows by
 * doubling slots of 24 bytes: 24576 is its growth to 1024 timers). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>

static size_t fail_size(void) {
  static size_t n = (size_t)-1;
  if (n == (size_t)-1) {
    const char *s = getenv("FAIL_ALLOC_SIZE");
    n = s ? strtoull(s, NULL, 10) : 0;
  }
  return n;
}

void *realloc(void *p, size_t n) {
  static void *(*real)(void *, size_t);
  if (!real) real = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
  if (n && n == fail_size()) {
    errno = ENOMEM;
    return NULL;
  }
  return real(p, n);
}
