/* parallel.h — the worker pool behind fio.parallel (parallel.c). */
#ifndef FIBERIO_PARALLEL_H
#define FIBERIO_PARALLEL_H

#include "fiberio.h"

/* Queue the task op (FIO_OP_TASK) of loop's pool; its completion is posted
 * back to loop. */
void fio_workers_submit(fio_loop *loop, fio_op *op);
/* Cancel it: a queued task never runs; a running one gets Canceled. */
void fio_workers_cancel(fio_loop *loop, fio_op *op);
/* Cancel every task, join every worker, free the pool (its owner's loop,
 * when it closes). */
void fio_workers_shutdown(fio_workers *p);

#endif
