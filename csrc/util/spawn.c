/* spawn.c — fio_spawn (vfork and exec, as glibc's posix_spawn does it, but
 * with the umask and the disposition reset posix_spawn cannot express) and
 * the reaper of children nobody waits for (those with a pidfd; the others
 * util/child.c reaps). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/child.h"
#include "util/config.h"
#include "util/process.h"
#include "util/spawn.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

/* The kernel's struct sigaction (rt_sigaction's): the child calls the
 * kernel directly, past any interposer of sigaction and sigprocmask (a
 * sanitizer's runtime keeps its own view of them). */
struct k_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  unsigned long mask;
};

/* The child, between vfork and exec: async-signal-safe calls only, and no
 * write to memory the parent reads (vfork shares it, but some runtimes
 * make it a fork): a failure is reported as its errno on errfd
 * (close-on-exec: nothing comes through it once the exec succeeded). */
static void in_child(const fio_spawn_req *r, int errfd) {
  struct k_sigaction dfl = {SIG_DFL, 0, NULL, 0};
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      (void)syscall(SYS_rt_sigaction, s, &dfl, NULL, sizeof dfl.mask);
  if ((r->flags & FIO_SPAWN_SETSID) && setsid() < 0) goto fail;
  if ((r->flags & FIO_SPAWN_PGROUP) && !(r->flags & FIO_SPAWN_SETSID) &&
      setpgid(0, 0) < 0)
    goto fail;
  if (r->umask >= 0) umask((mode_t)r->umask);
  if (r->cwd && chdir(r->cwd) < 0) goto fail;
  /* Sources among 0..2 that another target overwrites first, and the error
   * pipe if it sits there: moved up. */
  int fds[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = r->fds[i];
    if (fds[i] >= 0 && fds[i] < 3 && fds[i] != i &&
        (fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)) < 0)
      goto fail;
  }
  for (int i = 0; i < 3; i++) {
    if (fds[i] < 0) continue;
    if (fds[i] == i) { /* (given its own number: keep it across the exec) */
      if (fcntl(i, F_SETFD, 0) < 0) goto fail;
    } else if (dup2(fds[i], i) < 0) {
      goto fail;
    }
  }
  /* Only 0, 1 and 2 (and errfd, close-on-exec, until the exec): fds this
   * process inherited open across exec (its parent's, a library's) stay
   * out too, as with Python's close_fds. */
  if (errfd > 3) {
    (void)syscall(SYS_close_range, 3u, (unsigned)errfd - 1, 0u);
    (void)syscall(SYS_close_range, (unsigned)errfd + 1, ~0u, 0u);
  } else {
    (void)syscall(SYS_close_range, (unsigned)errfd + 1, ~0u, 0u);
  }
  unsigned long none = 0;
  (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
  char *const *envp = r->envp ? r->envp : environ;
  if (strchr(r->file, '/')) execve(r->file, r->argv, envp);
  else execvpe(r->file, r->argv, envp);
fail:;
  int e = errno;
  while (write(errfd, &e, sizeof e) < 0 && errno == EINTR) {}
  _exit(127);
}

/* Whether this kernel lacks pidfd_open (5.3+): asked once, on this
 * process's own pid. */
static int pidfd_missing(void) {
  static _Atomic int known; /* 0 unknown, 1 present, 2 missing */
  int k = known;
#ifdef FIBERIO_TEST_HOOKS
  if (fio_config_env()->test.no_pidfd) return 1;
#endif
  if (k == 0) {
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    k = fd < 0 && errno == ENOSYS ? 2 : 1;
    if (fd >= 0) close(fd);
    known = k;
  }
  return k == 2;
}

int fio_spawn_process(const fio_spawn_req *r, pid_t *pid, int *pidfd,
                      fio_child **child) {
  int by_sigchld = pidfd_missing();
  if (by_sigchld) {
    int e = fio_child_prepare();
    if (e < 0) return e;
  }
  int ep[2]; /* the child's errno, if it cannot exec */
  if (pipe2(ep, O_CLOEXEC) < 0) return -errno;
  /* (above 0..2, which the child's dup2s overwrite) */
  if (ep[1] < 3) {
    int up = fcntl(ep[1], F_DUPFD_CLOEXEC, 3);
    if (up < 0) {
      int e = errno;
      close(ep[0]);
      close(ep[1]);
      return -e;
    }
    close(ep[1]);
    ep[1] = up;
  }
  /* No signal handler may run in the child before its dispositions are
   * reset (it shares this memory): all blocked across the vfork. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t p = vfork();
  if (p == 0) in_child(r, ep[1]);
  int forked = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  if (p < 0) {
    close(ep[0]);
    return -forked;
  }
  int err = 0;
  ssize_t n;
  while ((n = read(ep[0], &err, sizeof err)) < 0 && errno == EINTR) {}
  close(ep[0]);
  if (n == (ssize_t)sizeof err) {
    int st;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
    return -err;
  }
  fio_child *c = NULL;
  int fd = -1;
  if (by_sigchld) c = fio_child_add(p);
  else fd = (int)syscall(SYS_pidfd_open, p, 0); /* (close-on-exec) */
  if (!c && fd < 0) {
    /* (EMFILE, ENOMEM) a child nobody could wait for is not left running,
     * nor left a zombie: the spawn fails as a whole. */
    int e = errno;
    kill(p, SIGKILL);
    int st;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
    return -e;
  }
  *pid = p;
  *pidfd = fd;
  *child = c;
  return 0;
}

/* --- the reaper ------------------------------------------------------------ */

/* Guards reaper_ep: the epoll set of this process's reaper thread, -1
 * while none runs (before the first child handed over, after a failed
 * start, and in a fork's child: the set it inherited is its parent's,
 * where a pidfd registered would be waited for, and its fd number
 * closed, in the parent). */
static pthread_mutex_t reaper_mu = PTHREAD_MUTEX_INITIALIZER;
static int reaper_ep = -1;

static void *reaper(void *arg) {
  int ep = (int)(intptr_t)arg;
  struct epoll_event ev[32];
  for (;;) {
    int n = epoll_wait(ep, ev, 32, -1);
    for (int i = 0; i < n; i++) {
      int fd = ev[i].data.fd;
      siginfo_t si;
      memset(&si, 0, sizeof si);
      if (waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0)
        continue; /* (not yet: a spurious wake; still registered) */
      epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
      close(fd);
    }
  }
  return NULL;
}

static void atfork_prepare(void) { pthread_mutex_lock(&reaper_mu); }
static void atfork_parent(void) { pthread_mutex_unlock(&reaper_mu); }
static void atfork_child(void) {
  if (reaper_ep >= 0) close(reaper_ep);
  reaper_ep = -1;
  pthread_mutex_unlock(&reaper_mu);
}

/* Start the reaper thread (reaper_mu held): reaper_ep set, or left -1. */
static void reaper_start(void) {
  static int atfork_set;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return;
  if (fio_thread_start(reaper, (void *)(intptr_t)ep, 64 * 1024)) {
    close(ep);
    return;
  }
  reaper_ep = ep;
  if (!atfork_set) {
    atfork_set = 1;
    fio_pin_library(); /* (the thread, the fork handlers: this code) */
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
  }
}

void fio_reap_later(int pidfd) {
  pthread_mutex_lock(&reaper_mu);
  if (reaper_ep < 0) reaper_start();
  int ep = reaper_ep;
  pthread_mutex_unlock(&reaper_mu);
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = pidfd;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pidfd, &ev) < 0)
    close(pidfd); /* (left to this process's end: its parent reaps it) */
}
