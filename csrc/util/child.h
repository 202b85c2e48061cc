/* child.h — waiting for children where the kernel has no process
 * descriptors (pidfd_open, Linux 5.3): SIGCHLD through a signalfd. One
 * thread per process (started with the first child) reads SIGCHLD and
 * reaps each child registered here by its own pid (waitpid on a pid, never
 * on -1: another library's children are left to it); a registered child's
 * eventfd becomes readable once it is reaped, for a loop to poll.
 *
 * SIGCHLD reaches the signalfd only while every thread blocks it:
 * fio_child_prepare blocks it in the spawning thread, for good (fiberio's
 * own threads block every signal). Where a thread of the program leaves it
 * unblocked and takes one, the thread still looks every second. In a
 * fork's child the children registered before are not its own: they read
 * as reaped by someone else. Any thread. */
#ifndef FIBERIO_UTIL_CHILD_H
#define FIBERIO_UTIL_CHILD_H

#include <sys/types.h>

#pragma GCC visibility push(hidden) /* (core/loop.h) */

typedef struct fio_child fio_child;

/* Start the SIGCHLD thread if it is not running, and block SIGCHLD in the
 * calling thread. 0, or -errno (then no child should be started; the
 * next call tries again). */
int fio_child_prepare(void);

/* Register the child pid (of this process, not reaped): it is reaped when
 * it ends, whoever holds it then. NULL with errno when out of memory or
 * fds (the child is not registered). */
fio_child *fio_child_add(pid_t pid);

/* The eventfd that becomes readable once c is reaped (-1 once released). */
int fio_child_fd(const fio_child *c);

/* 1 and how c ended (waitid's si_code and si_status) once it is reaped;
 * 0 while it runs; -1 if someone else reaped it (waitpid(-1) elsewhere in
 * this process), or it is not this process's (a fork's child). */
int fio_child_ended(fio_child *c, int *how, int *code);

/* Send sig to c, by its pid, only while it is not reaped (its pid cannot
 * be another process's yet). 0 or -errno (-ESRCH once reaped). */
int fio_child_kill(fio_child *c, int sig);

/* The holder is done with c: its eventfd (fio_child_fd) is the caller's
 * to close now (after any poll of it ends), never written again; c is
 * freed, now or once reaped. */
void fio_child_release(fio_child *c);

#pragma GCC visibility pop
#endif
