/* child.c — children waited for through SIGCHLD, where there are no
 * pidfds (child.h). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/child.h"
#include "util/list.h"
#include "util/process.h"

enum { RUNNING, REAPED, LOST /* reaped by someone else (waitpid(-1)) */ };

struct fio_child {
  fio_dnode node;   /* on `running` until reaped */
  pid_t pid;
  int efd;          /* written once reaped; -1 once released */
  int state;
  int held;         /* not released yet */
  int how, code;        /* waitid's si_code and si_status */
};

/* Guards everything below and every fio_child. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static fio_dlist running;  /* registered and not reaped */
static int started;        /* the thread runs (in this process) */
static int wake_fd = -1;   /* the thread's: the first child of a batch */
static int sig_fd = -1;    /* its signalfd (-1: none; it looks each second) */

/* {SIGCHLD} */
static sigset_t chld_set(void) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGCHLD);
  return s;
}

static void write_one(int fd) {
  uint64_t one = 1;
  while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {}
}

/* Reap c if it has ended (mu held). */
static void reap_locked(fio_child *c) {
  if (c->state != RUNNING) return;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG) < 0) {
    if (errno == EINTR) return;
    c->state = LOST;
  } else if (si.si_pid == 0) {
    return; /* (still running) */
  } else {
    c->state = REAPED;
    c->how = si.si_code;
    c->code = si.si_status;
  }
  fio_dlist_remove(&running, &c->node);
  if (c->efd >= 0) write_one(c->efd);
  if (!c->held) free(c);
}

/* The thread: each SIGCHLD (or the first child of a batch, or a second
 * without news while children run) is a look at every running child (a
 * waitid each: SIGCHLDs merge, the signal does not say which ended). */
static void *watcher(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  int sfd = sig_fd, wfd = wake_fd; /* (this thread's until the process ends) */
  pthread_mutex_unlock(&mu);
  for (;;) {
    pthread_mutex_lock(&mu);
    int timeout = running.len ? 1000 : -1;
    pthread_mutex_unlock(&mu);
    struct pollfd pfd[2] = {{sfd, POLLIN, 0}, {wfd, POLLIN, 0}};
    (void)poll(pfd, 2, timeout);
    struct signalfd_siginfo si[16];
    if (sfd >= 0)
      while (read(sfd, si, sizeof si) > 0) {}
    uint64_t n;
    (void)!read(wfd, &n, sizeof n);
    pthread_mutex_lock(&mu);
    fio_dnode *next;
    for (fio_dnode *d = running.head; d; d = next) {
      next = d->next; /* (reap_locked may free d) */
      reap_locked(fio_container_of(d, fio_child, node));
    }
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

/* fork: the child has no watcher, and the children registered are not
 * its own (they end as if reaped by someone else; none of their eventfds
 * is written: they are the parent's too). The next spawn starts a thread. */
static void atfork_prepare(void) { pthread_mutex_lock(&mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&mu); }
static void atfork_child(void) {
  fio_dnode *d;
  while ((d = fio_dlist_pop(&running))) {
    fio_child *c = fio_container_of(d, fio_child, node);
    c->state = LOST;
    if (!c->held) free(c);
  }
  if (started) {
    close(wake_fd);
    if (sig_fd >= 0) close(sig_fd);
    wake_fd = sig_fd = -1;
    started = 0;
  }
  pthread_mutex_unlock(&mu);
}

/* Start the thread (mu held): 0 or -errno (tried again next time). */
static int start_locked(void) {
  static int atfork_set;
  sigset_t chld = chld_set();
  if ((wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) return -errno;
  sig_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  int err = fio_thread_start(watcher, NULL, 64 * 1024);
  if (err) {
    if (sig_fd >= 0) close(sig_fd);
    close(wake_fd);
    wake_fd = sig_fd = -1;
    return -err;
  }
  if (!atfork_set) {
    atfork_set = 1;
    fio_pin_library(); /* (the thread, the fork handlers: this code) */
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
  }
  started = 1;
  return 0;
}

int fio_child_prepare(void) {
  sigset_t chld = chld_set();
  pthread_sigmask(SIG_BLOCK, &chld, NULL);
  pthread_mutex_lock(&mu);
  int err = started ? 0 : start_locked();
  pthread_mutex_unlock(&mu);
  return err;
}

fio_child *fio_child_add(pid_t pid) {
  fio_child *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (c->efd < 0) {
    int e = errno;
    free(c);
    errno = e;
    return NULL;
  }
  c->pid = pid;
  c->held = 1;
  pthread_mutex_lock(&mu);
  fio_dlist_push(&running, &c->node);
  if (running.len == 1) write_one(wake_fd); /* (its timeout is -1) */
  reap_locked(c); /* (it may have ended before it was registered) */
  pthread_mutex_unlock(&mu);
  return c;
}

int fio_child_fd(const fio_child *c) {
  return c->efd;
}

int fio_child_ended(fio_child *c, int *how, int *code) {
  pthread_mutex_lock(&mu);
  reap_locked(c);
  int ended = c->state == REAPED ? 1 : c->state == LOST ? -1 : 0;
  if (ended > 0) {
    *how = c->how;
    *code = c->code;
  }
  pthread_mutex_unlock(&mu);
  return ended;
}

int fio_child_kill(fio_child *c, int sig) {
  pthread_mutex_lock(&mu);
  reap_locked(c); /* (reaped by someone else: its pid is free, no kill) */
  int res = c->state != RUNNING ? -ESRCH : kill(c->pid, sig) < 0 ? -errno : 0;
  pthread_mutex_unlock(&mu);
  return res;
}

void fio_child_release(fio_child *c) {
  pthread_mutex_lock(&mu);
  c->efd = -1;
  c->held = 0;
  if (c->state != RUNNING) free(c);
  pthread_mutex_unlock(&mu);
}
