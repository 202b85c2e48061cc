/* pool_inline.c — stand-in for the thread pool until pool.c lands: runs the
 * operation on the calling (loop) thread and posts its completion, so it
 * arrives after the caller has suspended. Weak: pool.c's symbols win. */
#include "exec.h"

__attribute__((weak)) void fio_pool_submit(fio_loop *loop, fio_op *op) {
  fio_loop_post(loop, op, fio_exec(op));
}

__attribute__((weak)) void fio_pool_cancel(fio_loop *loop, fio_op *op) {
  (void)loop;
  atomic_store(&op->abort, 1);
}
