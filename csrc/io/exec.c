/* exec.c — every operation as the blocking system calls it stands for.
 * Pool threads run these (never touching Lua); the io_uring backend runs
 * here what its ring cannot do. One switch, one place to add an operation. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "io/exec.h"
#include "util/process.h"

/* The stop flag of the call running on this thread (fio_exec's argument):
 * long calls look at it between their steps. */
static _Thread_local const atomic_int *exec_stop;

static int stopped(void) {
  return exec_stop && atomic_load_explicit(exec_stop, memory_order_acquire);
}

int fio_op_buf_double(fio_op *op) {
  char *b = op->want <= SIZE_MAX / 2 ? realloc(op->buf, op->want * 2) : NULL;
  if (!b) return -ENOMEM;
  op->buf = b;
  op->want *= 2;
  return 0;
}

/* Grow op->mem to at least want bytes (keeping its contents). */
static int grow(fio_op *op, size_t want) {
  if (op->cap >= want) return 0;
  size_t cap = op->cap ? op->cap : 4096;
  while (cap < want) cap *= 2;
  char *m = realloc(op->mem, cap);
  if (!m) return -ENOMEM;
  op->mem = m;
  op->buf = m;
  op->cap = cap;
  return 0;
}

int fio_op_area_grow(fio_op *op, size_t area) {
  size_t n1 = op->path ? strlen(op->path) + 1 : 0;
  size_t n2 = op->path2 ? strlen(op->path2) + 1 : 0;
  char *m = malloc(area + n1 + n2);
  if (!m) return -ENOMEM;
  if (n1) memcpy(m + area, op->path, n1);
  if (n2) memcpy(m + area + n1, op->path2, n2);
  free(op->mem);
  op->mem = op->buf = m;
  op->cap = area + n1 + n2;
  op->len = area;
  if (n1) op->path = m + area;
  if (n2) op->path2 = m + area + n1;
  return 0;
}

/* GETXATTR, LISTXATTR: the value into the area, grown to its size. */
static int xattr_get(fio_op *op) {
  int nofollow = op->flags & AT_SYMLINK_NOFOLLOW;
  for (int tries = 0;; tries++) {
    ssize_t r;
    if (op->code == FIO_OP_GETXATTR)
      r = nofollow ? lgetxattr(op->path, op->path2, op->mem, op->len)
                   : getxattr(op->path, op->path2, op->mem, op->len);
    else
      r = nofollow ? llistxattr(op->path, op->mem, op->len)
                   : listxattr(op->path, op->mem, op->len);
    if (r >= 0) return (int)r;
    if (errno != ERANGE || tries == 3) return -errno;
    /* (the value grew since: ask its size, make room, read again) */
    if (op->code == FIO_OP_GETXATTR)
      r = nofollow ? lgetxattr(op->path, op->path2, NULL, 0)
                   : getxattr(op->path, op->path2, NULL, 0);
    else
      r = nofollow ? llistxattr(op->path, NULL, 0) : listxattr(op->path, NULL, 0);
    if (r < 0) return -errno;
    if (fio_op_area_grow(op, (size_t)r + 1) < 0) return -ENOMEM;
  }
}

static int getdents_all(fio_op *op) {
  int fd = open(op->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  size_t used = 0;
  for (;;) {
    if (stopped()) {
      close(fd);
      return -ECANCELED;
    }
    /* (room for many entries; the call that finds the end needs only
     * room for one, so a small directory takes one allocation) */
    int r = op->cap - used >= 4096 ? 0 : grow(op, used + 32768);
    if (r < 0) {
      close(fd);
      return r;
    }
    long n = syscall(SYS_getdents64, fd, op->mem + used, op->cap - used);
    if (n < 0) {
      int e = errno;
      if (e == EINTR) continue;
      close(fd);
      return -e;
    }
    if (n == 0) break;
    /* Some filesystems leave d_type unknown: ask, so that the caller (walk)
     * knows a directory when it sees one. */
    for (long pos = 0; pos < n;) {
      struct dirent64 *d = (struct dirent64 *)(op->mem + used + pos);
      pos += d->d_reclen;
      struct stat sb;
      if (d->d_type == DT_UNKNOWN &&
          fstatat(fd, d->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
        d->d_type = IFTODT(sb.st_mode);
    }
    used += (size_t)n;
  }
  close(fd);
  if (used > INT32_MAX) return -EOVERFLOW;
  return (int)used;
}

/* Copy fd to fd2 with read(2) and write(2): for what neither
 * copy_file_range nor sendfile takes (a FIFO, a character device). */
static int copy_rw(fio_op *op) {
  enum { BUF = 128 * 1024 };
  char *buf = malloc(BUF);
  if (!buf) return -ENOMEM;
  int res = 0;
  for (;;) {
    if (stopped()) {
      res = -ECANCELED;
      break;
    }
    ssize_t n = read(op->fd, buf, BUF);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      res = n < 0 ? -errno : 0;
      break;
    }
    for (ssize_t done = 0; done < n;) {
      ssize_t w = write(op->fd2, buf + done, (size_t)(n - done));
      if (w < 0 && errno == EINTR && !stopped()) continue;
      if (w < 0) {
        res = errno == EINTR ? -ECANCELED : -errno;
        goto out;
      }
      done += w;
    }
  }
out:
  free(buf);
  return res;
}

static int copy_fd(fio_op *op) {
  int use_sendfile = 0;
  for (;;) {
    if (stopped()) return -ECANCELED;
    ssize_t n;
    if (!use_sendfile) {
      n = copy_file_range(op->fd, NULL, op->fd2, NULL, 8u << 20, 0);
      if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                    errno == EOPNOTSUPP)) {
        use_sendfile = 1;
        continue;
      }
    } else {
      n = sendfile(op->fd2, op->fd, NULL, 8u << 20);
      if (n < 0 && (errno == EINVAL || errno == ENOSYS)) return copy_rw(op);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;
  }
  return 0;
}

/* READFILE from open fd (sb: its fstat, if statted): the whole file into
 * op->buf, which holds op->want bytes when it is not op->mem (lent by the
 * loop); it is grown, or replaced when the file is larger, and is op->want
 * bytes again on return. -EAGAIN from a read (an fd opened O_NONBLOCK) is
 * returned as it is, with nothing delivered. */
static int readfile_from(fio_op *op, int fd, const struct stat *sb) {
  size_t used = 0, want = FIO_BUFSZ;
  int regular = sb && S_ISREG(sb->st_mode);
  if (regular && sb->st_size > 0) want = (size_t)sb->st_size + 1;
  if (op->buf == op->mem || op->want < want) {
    char *b = malloc(want);
    if (!b) return -ENOMEM;
    if (op->buf != op->mem) free(op->buf);
    op->buf = b;
    op->want = want;
  }
  for (;;) {
    if (stopped()) return -ECANCELED;
    if (used == op->want && fio_op_buf_double(op) < 0) return -ENOMEM;
    size_t ask = op->want - used > FIO_MAXIO ? FIO_MAXIO : op->want - used;
    ssize_t n = read(fd, op->buf + used, ask);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    used += (size_t)n;
    /* a regular file's read short of what was asked: its end */
    if (n == 0 || (regular && sb->st_size > 0 && (size_t)n < ask)) break;
  }
  op->got = used; /* (the int result cannot hold 2 GiB and more) */
  return 0;
}

/* readfile_from, then fd closed. */
static int readfile_fd(fio_op *op, int fd, const struct stat *sb) {
  int r = readfile_from(op, fd, sb);
  close(fd);
  return r;
}

static int readfile_all(fio_op *op) {
  int fd = open(op->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat sb;
  return readfile_fd(op, fd, fstat(fd, &sb) == 0 ? &sb : NULL);
}

int fio_exec_readfile_nowait(fio_op *op) {
  if (op->fd2 >= 0) return -EAGAIN; /* (opened here before: the pool's) */
  int fd = open(op->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno == EAGAIN ? -EAGAIN : -errno; /* (a lease) */
  struct stat sb;
  if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) ||
      sb.st_size > FIO_NOWAIT_READ_MAX) {
    /* A FIFO, a device, a directory (see readfile_handed), or a file too
     * large to read without holding up the loop's fibers and timers. */
    op->fd2 = fd;
    op->owns |= FIO_OWN_FD2;
    return -EAGAIN;
  }
  /* (-EAGAIN also if a filesystem took O_NONBLOCK for a regular file: then
   * the pool opens it again, and the read starts over) */
  return readfile_fd(op, fd, &sb);
}

/* fd's O_NONBLOCK off, as after a blocking open: 0 or -errno. */
static int clear_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 ? -errno : 0;
}

/* READFILE of what fio_exec_readfile_nowait opened (op->fd2, O_NONBLOCK):
 * as a blocking open and read of it would. A FIFO waits for its first
 * writer as open(2) would: a poll for input, which a FIFO opened before any
 * writer reports only once a writer has written or come and gone (so the
 * data of a writer that came while the op waited for a thread is read, not
 * lost to a second open). Then the reads block, as after open(2). */
static int readfile_handed(fio_op *op) {
  int fd = op->fd2;
  op->fd2 = -1; /* this call closes it now */
  struct stat sb;
  int st = fstat(fd, &sb) == 0;
  if (st && S_ISFIFO(sb.st_mode)) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (poll(&p, 1, -1) < 0) {
      if (errno != EINTR || stopped()) {
        int e = errno == EINTR ? ECANCELED : errno;
        close(fd);
        return -e;
      }
    }
  }
  int r = clear_nonblock(fd);
  if (r < 0) {
    close(fd);
    return r;
  }
  return readfile_fd(op, fd, st ? &sb : NULL);
}

/* Whether a writer has opened the FIFO fd reads from (opened O_NONBLOCK
 * before any writer) since: it wrote (POLLIN), or came and went (POLLHUP,
 * which Linux reports only after a first writer). */
static int fifo_writer_came(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  return poll(&p, 1, 0) > 0;
}


#ifndef sigev_notify_thread_id /* (glibc before 2.38) */
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* OPENAT (fifo_waits) of a FIFO for reading, op->fd2 the reader the ring's open made
 * (uring.c: it opened O_NONBLOCK, so a writer could come at once): as
 * open(2), return once a writer has opened. One that came (and maybe wrote
 * and left) since fd2 was opened shows on fd2, and fd2 is the result. But
 * one can come and leave between that look and open(2), which then waits
 * for the next writer, maybe for ever. So open(2) is interrupted on a
 * timer (1 ms, doubling to 100 ms; fio_interrupt_signal(), to this thread only)
 * and fd2 looked at again: such a writer is seen within a tick. Without
 * the signal or a timer, a plain open(2), with that window. */
static int fifo_open_read(fio_op *op) {
  timer_t tm;
  int ticking = 0; /* 1: tm exists; -1: none can be had */
  long ms = 1;
  int r;
  for (;;) {
    if (fifo_writer_came(op->fd2)) {
      int fd = op->fd2;
      if ((r = clear_nonblock(fd)) < 0) break;
      op->fd2 = -1;
      r = fd;
      break;
    }
    if (stopped()) {
      r = -ECANCELED;
      break;
    }
    if (!ticking) {
      struct sigevent sev;
      memset(&sev, 0, sizeof sev);
      sev.sigev_notify = SIGEV_THREAD_ID;
      sev.sigev_signo = fio_interrupt_signal();
      sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
      ticking = fio_interrupt_signal() > 0 &&
                timer_create(CLOCK_MONOTONIC, &sev, &tm) == 0 ? 1 : -1;
    }
    if (ticking > 0) {
      struct itimerspec it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000000L}};
      timer_settime(tm, 0, &it, NULL);
      ms = ms * 2 > 100 ? 100 : ms * 2;
    }
    r = openat(AT_FDCWD, op->path, op->flags, (mode_t)op->mode);
    if (r >= 0) break;
    r = -errno;
    if (r != -EINTR) break;
  }
  if (ticking > 0) timer_delete(tm); /* (a tick in flight: a stray signal,
                                      * which pool threads take as one) */
  return r;
}

static int exec_op(fio_op *op);

/* OPENAT on the loop thread (fio_exec_here). The file's type is left in
 * op->res_mode, which spares the binding its own look. */
static int open_here(fio_op *op) {
  int added = !(op->flags & O_NONBLOCK);
  if (op->fd2 >= 0) return -EAGAIN; /* (fd2 holds the call's other file) */
  int fd = openat(AT_FDCWD, op->path, op->flags | O_NONBLOCK, (mode_t)op->mode);
  if (fd < 0) {
    /* ENXIO: a FIFO with no reader yet, which open(2) would wait for */
    if (errno == EAGAIN || (errno == ENXIO && added)) return -EAGAIN;
    return -errno;
  }
  struct stat sb;
  if (fstat(fd, &sb) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (added && S_ISFIFO(sb.st_mode) && (op->flags & O_ACCMODE) == O_RDONLY) {
    op->fd2 = fd;
    op->owns |= FIO_OWN_FD2;
    return -EAGAIN;
  }
  /* (F_SETFL takes the status flags from op->flags: O_NONBLOCK is off) */
  if (added && fcntl(fd, F_SETFL, op->flags) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  op->res_mode = sb.st_mode;
  return fd;
}

int fio_exec_here(fio_op *op) {
  switch (op->code) {
  case FIO_OP_OPENAT:
    return open_here(op);
  case FIO_OP_READFILE:
    return fio_exec_readfile_nowait(op);
  }
  return exec_op(op);
}

int fio_exec(fio_op *op, const atomic_int *stop) {
  exec_stop = stop;
  int r = exec_op(op);
  exec_stop = NULL;
  return r;
}

static int exec_op(fio_op *op) {
  ssize_t r;
  switch (op->code) {
  case FIO_OP_READ:
    r = op->off == (uint64_t)-1 ? read(op->fd, op->buf, op->len)
                                : pread(op->fd, op->buf, op->len,
                                        (off_t)op->off);
    return r < 0 ? -errno : (int)r;
  case FIO_OP_WRITE:
    r = op->off == (uint64_t)-1 ? write(op->fd, op->buf, op->len)
                                : pwrite(op->fd, op->buf, op->len,
                                         (off_t)op->off);
    return r < 0 ? -errno : (int)r;
  case FIO_OP_CLOSE:
    return close(op->fd) < 0 && errno != EINTR ? -errno : 0;
  case FIO_OP_OPENAT:
    /* (fd2: the FIFO reader the ring opened, uring.c; only a FIFO's) */
    if (op->fifo_waits && op->fd2 >= 0) return fifo_open_read(op);
    r = openat(AT_FDCWD, op->path, op->flags, (mode_t)op->mode);
    return r < 0 ? -errno : (int)r;
  case FIO_OP_STATX:
    r = statx(op->path[0] ? AT_FDCWD : op->fd, op->path, op->flags,
              STATX_BASIC_STATS, (struct statx *)op->mem);
    return r < 0 ? -errno : 0;
  case FIO_OP_FSYNC:
    r = op->flags ? fdatasync(op->fd) : fsync(op->fd);
    return r < 0 ? -errno : 0;
  case FIO_OP_FTRUNCATE:
    return ftruncate(op->fd, (off_t)op->off) < 0 ? -errno : 0;
  case FIO_OP_UNLINKAT:
    return unlinkat(AT_FDCWD, op->path, op->flags) < 0 ? -errno : 0;
  case FIO_OP_RENAMEAT:
    return renameat(AT_FDCWD, op->path, AT_FDCWD, op->path2) < 0 ? -errno : 0;
  case FIO_OP_MKDIRAT:
    return mkdirat(AT_FDCWD, op->path, (mode_t)op->mode) < 0 ? -errno : 0;
  case FIO_OP_SYMLINKAT:
    return symlinkat(op->path, AT_FDCWD, op->path2) < 0 ? -errno : 0;
  case FIO_OP_LINKAT:
    return linkat(AT_FDCWD, op->path, AT_FDCWD, op->path2, 0) < 0 ? -errno
                                                                  : 0;
  case FIO_OP_GETDENTS:
    return getdents_all(op);
  case FIO_OP_READLINK: {
    /* mem holds len bytes for the result before the path; a link that
     * fills them may be longer: read again into room for any */
    r = readlink(op->path, op->mem, op->len);
    if (r < 0 || (size_t)r < op->len) return r < 0 ? -errno : (int)r;
    char link[PATH_MAX];
    if ((r = readlink(op->path, link, sizeof link)) < 0) return -errno;
    if (grow(op, (size_t)r) < 0) return -ENOMEM; /* (as REALPATH: the path */
    memcpy(op->mem, link, (size_t)r);            /* is not needed after) */
    return (int)r;
  }
  case FIO_OP_CHMOD:
    return fchmodat(AT_FDCWD, op->path, (mode_t)op->mode, 0) < 0 ? -errno : 0;
  case FIO_OP_ACCESS:
    return faccessat(AT_FDCWD, op->path, (int)op->mode, 0) < 0 ? -errno : 0;
  case FIO_OP_REALPATH: {
    char *p = realpath(op->path, NULL);
    if (!p) return -errno;
    size_t n = strlen(p);
    if (grow(op, n + 1) < 0) {
      free(p);
      return -ENOMEM;
    }
    memcpy(op->mem, p, n + 1);
    free(p);
    return (int)n;
  }
  case FIO_OP_MKDTEMP:
    return mkdtemp(op->mem) ? 0 : -errno;
  case FIO_OP_TRUNCATE:
    return truncate(op->path, (off_t)op->off) < 0 ? -errno : 0;
  case FIO_OP_COPY:
    return copy_fd(op);
  case FIO_OP_READFILE:
    return op->fd2 >= 0 ? readfile_handed(op) : readfile_all(op);
  case FIO_OP_UTIME:
    return utimensat(AT_FDCWD, op->path, (struct timespec *)(void *)op->mem,
                     op->flags) < 0 ? -errno : 0;
  case FIO_OP_CHOWN:
    return fchownat(AT_FDCWD, op->path, (uid_t)op->mode, (gid_t)op->off,
                    op->flags) < 0 ? -errno : 0;
  case FIO_OP_MKNOD:
    return mknodat(AT_FDCWD, op->path, (mode_t)op->mode, (dev_t)op->off) < 0
               ? -errno : 0;
  case FIO_OP_GETXATTR:
  case FIO_OP_LISTXATTR:
    return xattr_get(op);
  case FIO_OP_SETXATTR:
    r = op->flags & AT_SYMLINK_NOFOLLOW
            ? lsetxattr(op->path, op->path2, op->buf, op->want, (int)op->mode)
            : setxattr(op->path, op->path2, op->buf, op->want, (int)op->mode);
    return r < 0 ? -errno : 0;
  case FIO_OP_STATVFS:
    return statvfs(op->path, (struct statvfs *)(void *)op->mem) < 0 ? -errno : 0;
  case FIO_OP_WAITID: {
    /* (a pool thread's blocking wait: a cancel interrupts it, EINTR) */
    siginfo_t si;
    return waitid(P_PIDFD, (id_t)op->fd, &si, WEXITED | WNOWAIT) < 0 ? -errno : 0;
  }
  case FIO_OP_ACCEPT: {
    struct fio_sockaddr *sa = (struct fio_sockaddr *)(void *)op->mem;
    sa->len = sizeof sa->addr;
    r = accept4(op->fd, (struct sockaddr *)&sa->addr, &sa->len, SOCK_CLOEXEC);
    return r < 0 ? -errno : (int)r;
  }
  case FIO_OP_CONNECT: {
    const struct fio_sockaddr *sa = (const struct fio_sockaddr *)(void *)op->mem;
    return connect(op->fd, (const struct sockaddr *)&sa->addr, sa->len) < 0 ? -errno : 0;
  }
  case FIO_OP_POLL: {
    /* (a pool thread's blocking wait: a cancel interrupts it, EINTR) */
    struct pollfd p = {op->fd, (short)op->mode, 0};
    r = poll(&p, 1, -1);
    return r < 0 ? -errno : p.revents;
  }
  case FIO_OP_RECV:
    r = recv(op->fd, op->buf, op->len, op->flags);
    return r < 0 ? -errno : (int)r;
  case FIO_OP_SEND:
    r = send(op->fd, op->buf, op->len, op->flags | MSG_NOSIGNAL);
    return r < 0 ? -errno : (int)r;
  case FIO_OP_RECVMSG:
    r = recvmsg(op->fd, (struct msghdr *)(void *)op->mem, op->flags);
    return r < 0 ? -errno : (int)r;
  case FIO_OP_SENDMSG:
    r = sendmsg(op->fd, (struct msghdr *)(void *)op->mem, op->flags | MSG_NOSIGNAL);
    return r < 0 ? -errno : (int)r;
  case FIO_OP_GETADDRINFO: {
    struct addrinfo hints, *list = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = op->flags;
    hints.ai_socktype = (int)op->mode;
    hints.ai_flags = (int)op->off;
    int rc = getaddrinfo(op->path, op->path2, &hints, &list);
    if (rc == 0) {
      op->buf = (char *)list; /* (the op's dtor frees it) */
      return 0;
    }
    return rc == EAI_SYSTEM ? -errno : FIO_GAI_ERR(rc);
  }
  }
  return -ENOSYS;
}
