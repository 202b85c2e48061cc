/* workers.h — the worker threads behind fio.parallel (workers.c): each runs
 * a Lua state with its own loop; tasks reach them through one queue per
 * pool. A pool belongs to the loop that made it (registered with it as a
 * part above the core: closed with it); the loops of its workers share it.
 * To the core a task is an op run by an executor, not by the backend. */
#ifndef FIBERIO_PAR_WORKERS_H
#define FIBERIO_PAR_WORKERS_H

#include <stdatomic.h>

#include "core/loop.h"
#include "core/op.h"
#include "par/marshal.h"

#pragma GCC visibility push(hidden) /* (core/loop.h) */

typedef struct fio_workers fio_workers;
typedef struct worker worker;

enum { TR_OK, TR_ERROR, TR_CANCELED };

/* One task: made by the caller's binding, owned by its op (op->mem, freed
 * by the op's dtor, fio_task_free). */
typedef struct task {
  fio_dnode node;           /* on the queue, or its worker's running list */
  fio_op *op;               /* the caller's op (owns this task) */
  fio_loop *caller;
  char *fn;                 /* string.dump of the function */
  size_t fnlen;
  sbuf args, res;           /* copied arguments; copied results or error */
  int state, result;        /* result: TR_* once the op completed */
  atomic_int cancel;        /* the caller asked for a cancel */
  int cancel_sent;          /* (worker) the fiber was asked */
  worker *w;                /* running on */
  fio_fiber *fiber;         /* (worker) its fiber */
  int fref;                 /* (worker) registry ref of its Future */
} task;

/* Who runs FIO_OP_TASK ops (op->executor). */
extern const fio_executor fio_workers_executor;
/* Make sure loop has a pool (the state's package paths, loop's backend and
 * thread count); raises when out of memory. */
void fio_workers_ensure(lua_State *L, fio_loop *loop);
/* An op's dtor for the task in op->mem. */
void fio_task_free(fio_op *op);


#pragma GCC visibility pop
#endif
