/* backend.h — the one interface every I/O backend implements.
 *
 * A backend runs fio_ops for one loop. It is chosen at run time (io_uring when
 * the kernel lets us set a ring up, a thread pool otherwise), so it is a table
 * of functions, not a link-time choice. All calls are made on the loop's own
 * thread, except wake, which any thread may call. */
#ifndef FIBERIO_BACKEND_H
#define FIBERIO_BACKEND_H

#include "fiberio.h"

struct fio_backend {
  const char *name;
  /* Set the backend up for loop (loop->bdata is its own). 0 or -errno. */
  int (*init)(fio_loop *loop);
  /* Tear down. Operations still in flight were orphaned and canceled by
   * the loop; the backend waits for them a bounded time and must never free
   * memory the kernel or a thread may still write. */
  void (*close)(fio_loop *loop);
  /* Queue op (state becomes INFLIGHT). Submission may be deferred to the next
   * wait; completion always arrives through fio_op_complete. */
  void (*submit)(fio_loop *loop, fio_op *op);
  /* Ask that an in-flight op end early; its completion still arrives (with
   * -ECANCELED, or its normal result if it finished first). */
  void (*cancel)(fio_loop *loop, fio_op *op);
  /* Submit what is queued, wait up to timeout_ns (0: poll, < 0: forever) for
   * completions and deliver them with fio_op_complete. */
  void (*wait)(fio_loop *loop, int64_t timeout_ns);
  /* From any thread: make a wait of this loop return soon (io_uring: a
   * MSG_RING; else the wake eventfd). Called through fio_loop_wake, which
   * skips it while an earlier wake is unseen. */
  void (*wake)(fio_loop *loop);
  /* Optional: add what it knows about itself to the table at -1 (for
   * fio._info: specs and debugging). */
  void (*info)(fio_loop *loop, lua_State *L);
};

extern const fio_backend fio_backend_uring;
extern const fio_backend fio_backend_threads;

/* io_uring: the fd of loop's ring, or -1 (another backend). A ring set up
 * on a thread whose fio_uring_attach_wq is >= 0 shares that ring's io-wq
 * (IORING_SETUP_ATTACH_WQ): fio.parallel's workers. */
int fio_uring_fd(fio_loop *loop);
extern _Thread_local int fio_uring_attach_wq;

/* An fd fiberio makes for itself (eventfd, ring, epoll set, signalfd), fd
 * (>= 0), moved to 3 or above if the kernel handed out 0, 1 or 2 (a
 * standard stream was closed): an internal fd must never stand where
 * fio.stdin, stdout or stderr read and write. Returns the fd to use, or
 * -errno (fd is closed either way when it is moved). In exec.c. */
int fio_fd_above_std(int fd);

#endif
