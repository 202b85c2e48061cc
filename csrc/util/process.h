/* process.h — process-wide helpers: what fiberio leaves behind in the
 * process (library pinning, signal handlers) and the signal that interrupts
 * a blocking system call. Any thread. */
#ifndef FIBERIO_UTIL_PROCESS_H
#define FIBERIO_UTIL_PROCESS_H

#include <stddef.h>

#pragma GCC visibility push(hidden) /* (core/loop.h) */

/* Keep the library this code is in mapped until the process exits, even
 * after Lua dlcloses it with the last state: for code that leaves something
 * behind in the process (pool threads, a signal handler, an atexit handler).
 * Idempotent, thread-safe. */
void fio_pin_library(void);

/* Install handler (sigaction flags) on the first of the n candidate
 * signals that nobody else handles, and pin this library (the handler is in
 * it). Returns the signal, or 0 if every one is taken. Call once per use. */
int fio_claim_signal(const int *cands, int n, void (*handler)(int), int flags);

/* The signal that interrupts a blocking system call on a thread that
 * unblocks it: a no-op handler without SA_RESTART, so the call fails with
 * EINTR. SIGURG, or SIGRTMIN+3 if someone handles SIGURG; 0 if both are
 * taken (then nothing is ever interrupted). Claimed on the first call. */
int fio_interrupt_signal(void);

/* SIGPIPE ignored if its disposition is the default (once): a write to a
 * pipe or socket whose reader has gone then fails with EPIPE ("Broken
 * pipe", 32) instead of killing the process, as in Python and Node.
 * Children get the default back (util/spawn.h). */
void fio_ignore_sigpipe(void);

/* Start a detached thread running fn(arg) with a stack of stack bytes and
 * every signal blocked (fn unblocks what it wants). 0 or an error number.
 * The caller pins the library if the thread outlives its state. */
int fio_thread_start(void *(*fn)(void *), void *arg, size_t stack);

/* The CPUs online, read once per process (sysconf reads /sys each time);
 * at least 1. */
long fio_ncpu(void);


#pragma GCC visibility pop
#endif
