/* op.h — operations (core/op.c): the loop's work for a backend, and the one
 * lifecycle every operation goes through.
 *
 *   fio_op_new          a binding makes the op (or takes one of the loop's
 *   (fio_op_take)       spares) and fills its arguments
 *   fio_op_wait         submit, decided here once: run at once on the loop
 *                       thread if the loop has nothing else to do (the
 *                       waiter's continuation then runs without a
 *                       suspension), or onto the in-flight list and to its
 *                       executor (fio.parallel's tasks), or the inline
 *                       queue (run on the loop thread when the loop would
 *                       sleep), or the loop's backend; the waiter blocks
 *   fio_op_cancel       asks whoever runs it to end it early (once)
 *   fio_op_done /       its end, from the backend on the loop thread, or
 *   fio_loop_post       from any thread: queued, never acted on in place
 *   (completion)        the one door: after each wait the loop completes what
 *                       was queued, in order: the op leaves the in-flight
 *                       list and its waiter wakes, or, orphaned, it is freed
 *   fio_op_result       the waiter reads res in its continuation
 *   fio_op_free         the binding frees it, or gives it back to the
 *   (fio_op_give)       spares (or fio_op_again reuses it)
 *
 * Ownership: an op is malloc'd (or taken) by the binding that starts it
 * and outlives its fiber if it must: while a backend or a pool thread has
 * it (in flight) nobody frees it; a completion whose waiter is gone frees
 * it. Descriptors follow one rule, the `owns` bits: an op closes what it
 * owns when it is freed (FIO_OWN_FD, FIO_OWN_FD2), a result fd nobody is
 * left to take (FIO_OWN_RESULT), and, for a file collected while ops used
 * its fd, that fd once the last of them completes (FIO_OWN_FD_LAST, set by
 * fio_close_after_ops). Everything else (the File, the caller) closes its
 * own. */
#ifndef FIBERIO_CORE_OP_H
#define FIBERIO_CORE_OP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/loop.h"

#pragma GCC visibility push(hidden) /* (core/loop.h) */

/* Operation codes. Arguments: fd, fd2, buf, len, off, path, path2, flags,
 * mode; results in res (and in mem for STATX, GETDENTS, READLINK, REALPATH,
 * MKDTEMP, GETXATTR, LISTXATTR, STATVFS). A result or argument area of len
 * bytes at mem comes before the paths (fio_op_area_grow). */
enum {
  FIO_OP_READ = 1, /* read(fd, buf, len) at off */
  FIO_OP_WRITE,    /* write(fd, buf, len) at off */
  FIO_OP_CLOSE,    /* close(fd) */
  FIO_OP_OPENAT,   /* openat(AT_FDCWD, path, flags, mode) -> fd */
  FIO_OP_STATX,    /* statx(fd or AT_FDCWD, path, flags) into mem */
  FIO_OP_FSYNC,    /* fsync(fd), fdatasync when flags */
  FIO_OP_FTRUNCATE,/* ftruncate(fd, off) */
  FIO_OP_UNLINKAT, /* unlinkat(AT_FDCWD, path, flags) */
  FIO_OP_RENAMEAT, /* renameat(path, path2) */
  FIO_OP_MKDIRAT,  /* mkdirat(path, mode) */
  FIO_OP_SYMLINKAT,/* symlinkat(target path, linkpath path2) */
  FIO_OP_LINKAT,   /* linkat(path, path2) */
  FIO_OP_GETDENTS, /* the whole directory path, as linux_dirent64 records in
                    * mem (grown as needed): res = bytes */
  FIO_OP_READLINK, /* readlink(path) into mem: res = length */
  FIO_OP_CHMOD,    /* fchmodat(path, mode) */
  FIO_OP_ACCESS,   /* faccessat(path, mode) */
  FIO_OP_REALPATH, /* realpath(path) into mem: res = length */
  FIO_OP_MKDTEMP,  /* mkdtemp(path, in mem): res = 0 */
  FIO_OP_TRUNCATE, /* truncate(path, off) */
  FIO_OP_COPY,     /* copy fd to fd2 from their offsets to EOF: res = 0 */
  FIO_OP_TASK,     /* an op whose executor runs it (op->executor), never a
                    * backend */
  FIO_OP_READFILE, /* the whole file path into buf (want bytes, lent by the
                    * loop; grown or replaced): got = bytes */
  FIO_OP_UTIME,    /* utimensat(path, the two timespecs at mem, flags) */
  FIO_OP_CHOWN,    /* fchownat(path, uid mode, gid off, flags) */
  FIO_OP_MKNOD,    /* mknodat(path, mode (type and perm), dev off) */
  FIO_OP_GETXATTR, /* (l)getxattr(path, name path2) into mem: res = length
                    * (flags AT_SYMLINK_NOFOLLOW: the link's own) */
  FIO_OP_SETXATTR, /* (l)setxattr(path, name path2, buf, want, mode) */
  FIO_OP_LISTXATTR,/* (l)listxattr(path) into mem: res = length */
  FIO_OP_STATVFS,  /* statvfs(path) into mem */
  FIO_OP_WAITID,   /* until the process of pidfd fd has ended, without
                    * reaping it (waitid WEXITED|WNOWAIT): res = 0 */
  /* Sockets. Their fds are blocking, but for listeners and a connect in
   * progress (O_NONBLOCK, set by the binding): no call may block on one
   * where the threads backend tries it, on the loop thread. */
  FIO_OP_ACCEPT,   /* accept4(fd, the peer's address into mem, a struct
                    * fio_sockaddr, SOCK_CLOEXEC) -> fd (-EAGAIN: none
                    * yet, where the runner does not wait: poll, again) */
  FIO_OP_CONNECT,  /* connect(fd, the fio_sockaddr at mem) (-EINPROGRESS
                    * on a nonblocking fd: poll for POLLOUT, then SO_ERROR) */
  FIO_OP_POLL,     /* until fd is ready for mode (POLLIN or POLLOUT):
                    * res = revents */
  FIO_OP_RECV,     /* recv(fd, buf, len, flags) */
  FIO_OP_SEND,     /* send(fd, buf, len, flags | MSG_NOSIGNAL) */
  FIO_OP_RECVMSG,  /* recvmsg(fd, the struct msghdr at mem, flags) */
  FIO_OP_SENDMSG,  /* sendmsg(fd, the struct msghdr at mem, flags |
                    * MSG_NOSIGNAL) */
  FIO_OP_GETADDRINFO, /* getaddrinfo(path, path2 (the service, or NULL),
                    * hints: family flags, socktype mode, ai_flags off):
                    * the list at buf (freed with the op), res = 0;
                    * -errno; or FIO_GAI_ERR(code) for getaddrinfo's other
                    * EAI_* codes */
  FIO_OP_LAST
};
enum { FIO_OPS_IDLE = 0, FIO_OPS_INFLIGHT, FIO_OPS_DONE };

/* The ops the loop thread may run itself, as the plain system call, when
 * it would otherwise sleep on them (io/exec.h's fio_exec_here): their calls
 * wait on a disk at most, never on another process. A read or write
 * only when its binding set may_inline (a regular file); an open is made
 * without waiting (a FIFO's goes to the backend). Not fsync or copy
 * (a disk's time by design), nor tasks. */
/* An op code's bit in a mask of codes. */
#define FIO_OP_BIT(code) (UINT64_C(1) << (code))
#define FIO_OPS_HERE                                                         \
  (FIO_OP_BIT(FIO_OP_READ) | FIO_OP_BIT(FIO_OP_WRITE) |                       \
   FIO_OP_BIT(FIO_OP_CLOSE) | FIO_OP_BIT(FIO_OP_OPENAT) |                     \
   FIO_OP_BIT(FIO_OP_STATX) | FIO_OP_BIT(FIO_OP_FTRUNCATE) |                  \
   FIO_OP_BIT(FIO_OP_UNLINKAT) | FIO_OP_BIT(FIO_OP_RENAMEAT) |                \
   FIO_OP_BIT(FIO_OP_MKDIRAT) | FIO_OP_BIT(FIO_OP_SYMLINKAT) |                \
   FIO_OP_BIT(FIO_OP_LINKAT) | FIO_OP_BIT(FIO_OP_GETDENTS) |                  \
   FIO_OP_BIT(FIO_OP_READLINK) | FIO_OP_BIT(FIO_OP_CHMOD) |                   \
   FIO_OP_BIT(FIO_OP_ACCESS) | FIO_OP_BIT(FIO_OP_REALPATH) |                  \
   FIO_OP_BIT(FIO_OP_MKDTEMP) | FIO_OP_BIT(FIO_OP_TRUNCATE) |                 \
   FIO_OP_BIT(FIO_OP_READFILE) | FIO_OP_BIT(FIO_OP_UTIME) |                   \
   FIO_OP_BIT(FIO_OP_CHOWN) | FIO_OP_BIT(FIO_OP_MKNOD) |                      \
   FIO_OP_BIT(FIO_OP_GETXATTR) | FIO_OP_BIT(FIO_OP_SETXATTR) |                \
   FIO_OP_BIT(FIO_OP_LISTXATTR) | FIO_OP_BIT(FIO_OP_STATVFS))
/* What an op closes (its `owns` bits; see the top comment). */
enum {
  FIO_OWN_FD = 1,      /* fd, when the op is freed */
  FIO_OWN_FD2 = 2,     /* fd2, when the op is freed */
  FIO_OWN_RESULT = 4,  /* res >= 0 is an fd: closed if nobody takes it */
  FIO_OWN_FD_LAST = 8  /* fd, when the last op of the loop on it completes */
};

/* GETADDRINFO's result for an EAI_* code (negative in glibc) other than
 * EAI_SYSTEM, below every -errno; and back. */
#define FIO_GAI_ERR(eai) (-4096 + (eai))
#define FIO_GAI_CODE(res) ((res) + 4096)
#define FIO_IS_GAI_ERR(res) ((res) <= -4096)

/* A socket address and its length: what ACCEPT fills and CONNECT reads. */
struct fio_sockaddr {
  struct sockaddr_storage addr;
  socklen_t len;
};

/* The most one read(2) or write(2) moves on Linux. */
#define FIO_MAXIO 0x7ffff000

/* Who runs an op instead of the loop's backend (fio.parallel's workers):
 * submit and cancel as the backend's (backend.h); forget: op's loop is
 * closing and will not wait for it: the op is the executor's from now on,
 * never completed to the loop but freed with fio_op_drop once it ends
 * (or at once if it never started). */
typedef struct fio_executor {
  void (*submit)(fio_loop *loop, fio_op *op);
  void (*cancel)(fio_loop *loop, fio_op *op);
  void (*forget)(fio_loop *loop, fio_op *op);
} fio_executor;

/* Room in an op for what the backend that runs it keeps with it (its own
 * struct, checked to fit where it is defined): no allocation per op. */
#define FIO_OP_BACKEND_AREA 96

struct fio_op {
  fio_fiber *waiter;      /* woken on completion; NULL: orphaned */
  fio_loop *loop;         /* the loop it completes on */
  const fio_executor *executor; /* NULL: the loop's backend runs it */
  fio_dnode inflight_node; /* on the loop's in-flight list */
  fio_dnode queue_node;   /* on one queue at most: the loop's inline, done
                           * or posted queue, or one of its runner's */
  char *mem;              /* memory the op owns, freed with it */
  char *buf;              /* where the kernel reads or writes */
  uint64_t off;           /* file offset, or (uint64_t)-1: current */
  size_t len;             /* bytes asked of this submission */
  size_t got, want, cap;  /* progress of a multi-step call; size of mem */
  const char *path, *path2; /* in mem, or kept alive by the caller */
  void (*dtor)(fio_op *); /* frees what mem holds (before mem itself) */
  int32_t res;            /* result: >= 0, or -errno */
  int fd, fd2, flags;
  uint32_t mode;
  uint8_t code;           /* FIO_OP_* */
  uint8_t state;          /* FIO_OPS_* */
  uint8_t cancel_sent;    /* a cancel for it went to its runner */
  uint8_t owns;           /* FIO_OWN_* */
  uint8_t step;           /* the binding's: where a multi-step call is */
  uint8_t may_inline;     /* set by the binding: the call cannot block for
                           * long (a read or write of a regular file), so the
                           * loop may run it on its own thread when it would
                           * otherwise sleep */
  uint8_t fifo_waits;     /* OPENAT: a FIFO's open waits for the other end,
                           * as open(2) does (fio.open); else it may fail
                           * (ENXIO) or succeed at once, as a nonblocking
                           * open does */
  uint32_t res_mode;      /* OPENAT: the opened file's st_mode, when its
                           * runner looked (0: not known) */
  uint8_t detach_on_cancel; /* set by the binding: a cancel of the waiter
                           * cannot stop this op (getaddrinfo): the waiter
                           * wakes at once (its continuation finds w->op
                           * NULL) and the op, orphaned, is freed when it
                           * ends */
  _Alignas(16) unsigned char backend_area[FIO_OP_BACKEND_AREA];
};

/* The op on a queue node (NULL for NULL): an op is on one queue at most,
 * through queue_node; the queues are util/list.h's fio_dlist. */
static inline fio_op *fio_op_of(fio_dnode *node) {
  return fio_entry(node, fio_op, queue_node);
}

/* --- for the bindings -------------------------------------------------------- */

/* A fresh op with cap bytes of memory (mem == buf). NULL on ENOMEM. */
fio_op *fio_op_new(size_t cap);
/* Free op: its dtor, the fds it owns, its memory. */
void fio_op_free(fio_op *op);
/* The same for the loop thread's calls: an op of at least cap bytes of
 * memory, from the loop's spares when cap is no more than
 * FIO_OP_SPARE_CAP (a lone call then costs no malloc); give: free op as
 * fio_op_free does, but keep its record and memory for the next take if
 * they are a spare's size. An op taken may still be freed with
 * fio_op_free (by any thread); one made by fio_op_new may be given. */
#define FIO_OP_SPARE_CAP 512 /* a statx (256 bytes) and a path of 255 */
fio_op *fio_op_take(fio_loop *loop, size_t cap);
void fio_op_give(fio_loop *loop, fio_op *op);
/* Submit op and block w until it completes, then continue in k. */
int fio_op_wait(fio_loop *loop, lua_State *L, fio_fiber *w, fio_op *op,
                lua_KFunction k);
/* In a continuation after fio_op_wait: the op's result. If the op was
 * canceled for a cancel of the waiter, frees the op and raises Canceled;
 * canceled by its deadline: -ETIMEDOUT; by the close of its fd: -EBADF. */
int fio_op_result(lua_State *L, fio_fiber *w);
/* In a continuation, wait for op again (the next step of the same call):
 * fio_wait_again, except that a pending cancel frees op first (its dtor and
 * owns clean up); then ++*count (a file's ops in flight; NULL: none) and
 * fio_op_wait. */
int fio_op_again(lua_State *L, fio_fiber *w, fio_op *op, lua_KFunction k,
                 int *count);
/* Whether nothing but the caller could run before the loop slept: no op
 * in flight or completed, no post, no fiber ready, no timer due, no
 * Ctrl-C to act on. A caller that would wait may then do the work itself
 * (fio_op_wait does, for the ops the loop thread may run). */
int fio_ops_idle(fio_loop *loop);
/* Ask whoever runs op to end it early, once; its completion still comes. */
void fio_op_cancel(fio_loop *loop, fio_op *op);
/* fd is being closed while ops may still use it: cancel every op on fd
 * and leave the close(2) to the last op on fd to complete (so no pool
 * syscall can run on a reused fd number). 1 if it did; 0 if no op uses fd
 * (or the loop is not running): the caller closes fd. */
int fio_close_after_ops(fio_loop *loop, int fd);
/* Cancel every op in flight on fd (a blocked read ends), leaving the fd
 * open: the standard files. */
void fio_cancel_fd_ops(fio_loop *loop, int fd);

/* Buffers of FIO_BUFSZ bytes for readfile, kept by the loop for reuse (a
 * small file is read into one, copied into a Lua string, and the buffer is
 * given back). get: NULL when out of memory. put: any malloc'd buffer of
 * size bytes; kept if it is one of ours and there is room, else freed.
 * Loop thread only. */
#define FIO_BUFSZ (64 * 1024) /* below malloc's mmap threshold */
char *fio_buf_get(fio_loop *loop);
void fio_buf_put(fio_loop *loop, char *buf, size_t size);

/* From any thread: make the loop's current or next wait return, through its
 * backend's wake (MSG_RING or the eventfd); nothing while a wake sent
 * before is not yet seen by the loop. */
void fio_loop_wake(fio_loop *loop);

/* --- for the loop (core/loop.c) ------------------------------------------- */

/* Wait for I/O up to timeout_ns (0: poll, < 0: forever) and complete what
 * ended: runs an inline op first if the loop would sleep, then the
 * backend's wait, then every queued completion. */
void fio_ops_wait(fio_loop *loop, int64_t timeout_ns);
/* The loop is closing: orphan and cancel every op in flight, give them a
 * bounded time to end, close the backend and complete what it handed back.
 * What never ends is left to the kernel or the pool, never freed here. */
void fio_ops_close(fio_loop *loop);


#pragma GCC visibility pop
#endif
