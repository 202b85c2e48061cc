/* backend.h — the seam between the loop and its I/O: the one interface
 * every backend implements, and the few functions of the core a backend
 * calls back (tools/layers.sh allows io/ no other call up).
 *
 * A backend runs fio_ops for one loop. It is chosen at run time (io_uring when
 * the kernel lets us set a ring up, a thread pool otherwise), so it is a table
 * of functions, not a link-time choice. All calls are made on the loop's own
 * thread, except wake, which any thread may call. */
#ifndef FIBERIO_IO_BACKEND_H
#define FIBERIO_IO_BACKEND_H

#include "core/op.h"
#include "io/pool.h"

#pragma GCC visibility push(hidden) /* (core/loop.h) */

struct fio_backend {
  const char *name;
  /* Set the backend up for loop (loop->backend_state is its own; it may set
   * loop->inline_codes, see core/op.h). 0 or -errno. */
  int (*init)(fio_loop *loop);
  /* Tear down, once the loop has given in-flight ops a bounded time to end
   * (core/op.c): what is still on the pool becomes the pool's; ops handed
   * back complete through fio_op_done or fio_loop_post as usual. Never free
   * memory the kernel or a thread may still write. */
  void (*close)(fio_loop *loop);
  /* Start op (state INFLIGHT). Submission may be deferred to the next
   * wait; the completion always comes through fio_op_done or
   * fio_loop_post, never inside submit. */
  void (*submit)(fio_loop *loop, fio_op *op);
  /* Ask that an in-flight op end early; its completion still arrives (with
   * -ECANCELED, or its normal result if it finished first). Never
   * completes inside cancel. */
  void (*cancel)(fio_loop *loop, fio_op *op);
  /* Submit what is queued, wait up to timeout_ns (0: poll, < 0: forever) for
   * completions and hand them over with fio_op_done. */
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

/* --- what a backend calls in the core (core/op.c) ------------------------- */
/* FIO_SEAM_BEGIN (tools/layers.sh reads the names up to FIO_SEAM_END) */

/* Loop thread: op ended with res. Queued; the loop completes it after the
 * backend's wait returns (the one door: core/op.h). */
void fio_op_done(fio_loop *loop, fio_op *op, int res);
/* Any thread: op ended with res; the loop is woken and completes it. The
 * poster must not touch op after this call. */
void fio_loop_post(fio_loop *loop, fio_op *op, int res);
/* Any thread: op, whose loop has closed, ended with res: close what it
 * owns (a result fd too), free it. */
void fio_op_drop(fio_op *op, int res);
/* From any thread: write the loop's wake eventfd (a backend's wake). */
void fio_loop_wake_fd(fio_loop *loop);
/* Loop thread, in a backend's wait that would block: 1 if wakes were off
 * (the loop has been awake since it last slept). They are on from now on,
 * and this wait must not block but return, so that its caller looks at
 * everything once more: whatever was posted or queued before is seen then,
 * whatever comes after sends a wake. 0: they were on; sleep. Seeing a wake
 * (a CQE, the eventfd readable) leaves them off: posts made while the loop
 * is awake cost no syscall. */
int fio_loop_wakes_on(fio_loop *loop);
/* Loop thread: read the wake eventfd once a backend saw it readable. */
void fio_loop_drain_wakefd(fio_loop *loop);
/* Loop thread: whether a post waits to be completed (a backend's wait
 * need not block). */
int fio_loop_has_posts(fio_loop *loop);

/* FIO_SEAM_END */

/* --- an op as a pool job (io/oppool.c: both backends) ------------------- */

/* Each backend keeps the op's pool job at the start of op->backend_area. */
static inline fio_job *fio_op_job(fio_op *op) {
  return (fio_job *)(void *)op->backend_area;
}
static inline fio_op *fio_job_op(fio_job *job) {
  return (fio_op *)(void *)((char *)job - offsetof(fio_op, backend_area));
}
/* Run op with fio_exec on a pool thread of client; its result is posted to
 * op->loop, or, once the client forgot it, the op is dropped. */
void fio_op_to_pool(fio_pool_client *client, fio_op *op);
/* The loop would sleep while its readfiles wait in the pool's queue, more
 * of them than threads being woken for them: run them here, newest first
 * (pool threads take the oldest), until a completion is posted or none is
 * left. Each one costs no thread hand-off either way, and the loop
 * thread's CPU, idle otherwise, reads files too (and where the pool's
 * threads get less CPU than hoped, the loop does their share). Only what
 * cannot block for ever: fio_exec_readfile_nowait opens without waiting
 * and reads regular files only; a FIFO or a device goes back to the pool,
 * open (counted in *pooled). Counts them in *helped; 1 if it completed one. */
int fio_op_pool_help(fio_loop *loop, fio_pool_client *client, uint64_t *helped,
                     uint64_t *pooled);


#pragma GCC visibility pop
#endif
