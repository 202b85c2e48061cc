/* process.c — process-wide helpers (process.h). */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "util/process.h"

int fio_claim_signal(const int *cands, int n, void (*handler)(int),
                     int flags) {
  fio_pin_library(); /* the handler is in this library's code */
  for (int i = 0; i < n; i++) {
    struct sigaction old, sa;
    if (cands[i] > SIGRTMAX || sigaction(cands[i], NULL, &old) < 0) continue;
    if ((old.sa_flags & SA_SIGINFO) ||
        (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN))
      continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = flags;
    if (sigaction(cands[i], &sa, NULL) == 0) return cands[i];
  }
  return 0;
}

int fio_thread_start(void *(*fn)(void *), void *arg, size_t stack) {
  pthread_attr_t attr;
  pthread_t t;
  sigset_t all, old;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, stack);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* (inherited by the thread) */
  int r = pthread_create(&t, &attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return r;
}

static void on_interrupt(int sig) { (void)sig; /* only to end a syscall */ }

/* Keep this library mapped until the process exits: idle pool threads and
 * signal handlers live in its code after the last Lua state closed. The
 * handle is never closed, on purpose. */
static void pin_once(void) {
  Dl_info info;
  if (dladdr((void *)(uintptr_t)&on_interrupt, &info) && info.dli_fname)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

void fio_pin_library(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, pin_once);
}

static int interrupt_sig;

static void claim_interrupt(void) {
  /* SIGURG: a standard signal, so re-sends coalesce instead of queueing as
   * real-time signals do; ignored by default, so one arriving where no
   * handler expects it does no harm. (no SA_RESTART: the call must fail) */
  interrupt_sig =
      fio_claim_signal((int[]){SIGURG, SIGRTMIN + 3}, 2, on_interrupt, 0);
}

int fio_interrupt_signal(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, claim_interrupt);
  return interrupt_sig;
}

long fio_ncpu(void) {
  static atomic_long cached;
  long n = atomic_load_explicit(&cached, memory_order_relaxed);
  if (n) return n;
  n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  atomic_store_explicit(&cached, n, memory_order_relaxed);
  return n;
}

static void ignore_sigpipe(void) {
  struct sigaction old, sa;
  if (sigaction(SIGPIPE, NULL, &old) < 0 || (old.sa_flags & SA_SIGINFO) ||
      old.sa_handler != SIG_DFL)
    return; /* (the host chose: leave it) */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  (void)sigaction(SIGPIPE, &sa, NULL);
}

void fio_ignore_sigpipe(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, ignore_sigpipe);
}
