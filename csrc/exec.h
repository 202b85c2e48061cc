/* exec.h — operations run as blocking system calls (exec.c). */
#ifndef FIBERIO_EXEC_H
#define FIBERIO_EXEC_H

#include "fiberio.h"

/* Run op synchronously on the calling thread: returns res (>= 0) or -errno.
 * Touches only op and the memory it owns; safe on any thread. Checks
 * op->abort between the steps of a long operation (GETDENTS, COPY). */
int fio_exec(fio_op *op);

/* The pool (pool.c): run op with fio_exec on a pool thread and post its
 * completion to loop; cancel a queued op (posted with -ECANCELED) or
 * interrupt a running one. Declared here too so that backends need not
 * include the pool's header. */
void fio_pool_submit(fio_loop *loop, fio_op *op);
void fio_pool_cancel(fio_loop *loop, fio_op *op);

#endif
