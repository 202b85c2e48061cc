/* spawn.h — starting a program in a child process, with a process
 * descriptor (pidfd) to wait for it and signal it (before Linux 5.3, which
 * has none: a util/child.h registration), and the reaping of children
 * nobody waits for any more (spawn.c). Any thread. */
#ifndef FIBERIO_UTIL_SPAWN_H
#define FIBERIO_UTIL_SPAWN_H

#include <sys/types.h>

#include "util/child.h"

#pragma GCC visibility push(hidden) /* (core/loop.h) */

enum {
  FIO_SPAWN_SETSID = 1,  /* a new session (detached from the terminal) */
  FIO_SPAWN_PGROUP = 2   /* a new process group */
};

typedef struct fio_spawn_req {
  const char *file;      /* argv[0], looked up on PATH unless it holds '/' */
  char *const *argv;
  char *const *envp;     /* NULL: this process's environment */
  const char *cwd;       /* NULL: this process's */
  int fds[3];            /* the child's 0, 1, 2: an fd to give it, or -1:
                          * inherit this process's */
  int flags;             /* FIO_SPAWN_* */
  int umask;             /* -1: inherit */
} fio_spawn_req;

/* Start r->file in a new process (vfork and exec: no copy of this process's
 * memory), with every signal's disposition back to its default, an empty
 * signal mask, and only fds 0, 1 and 2 open (the others closed, whoever
 * opened them). 0 and *pid, and *pidfd (close-on-exec) with *child NULL;
 * or, where the kernel has no pidfd_open (before Linux 5.3; valgrind
 * 3.19), *pidfd -1 and *child, waited for through SIGCHLD. -errno when the
 * program cannot start (not found, not executable, a bad cwd, no pidfd or
 * registration to be had): that child is reaped already. */
int fio_spawn_process(const fio_spawn_req *r, pid_t *pid, int *pidfd,
                      fio_child **child);

/* Reap, once it ends, the child whose pidfd this is (and close pidfd): for
 * a child nobody will wait for. A thread of its own waits for such
 * children; if it cannot start, the child is left to be reaped when this
 * process ends. */
void fio_reap_later(int pidfd);

#pragma GCC visibility pop
#endif
