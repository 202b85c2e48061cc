/* oppool.c — an op run as a pool job: the glue both backends use to hand
 * an op to the process's pool, and to take readfiles back (backend.h). */
#include <errno.h>

#include "io/backend.h"
#include "io/exec.h"

static int run_op(fio_job *job, const atomic_int *stop) {
  return fio_exec(fio_job_op(job), stop);
}

static void op_done(fio_job *job, int res, int forgotten) {
  fio_op *op = fio_job_op(job);
  if (forgotten) fio_op_drop(op, res);
  else fio_loop_post(op->loop, op, res);
}

void fio_op_to_pool(fio_pool_client *client, fio_op *op) {
  fio_job *job = fio_op_job(op);
  job->run = run_op;
  job->done = op_done;
  job->client = client;
  job->must_run = op->code == FIO_OP_CLOSE; /* skipping it leaks the fd */
  fio_pool_submit(job);
}

/* (not one handed back to the pool with its FIFO or device open) */
static int helpable(const fio_job *job) {
  const fio_op *op = fio_job_op((fio_job *)job);
  return op->code == FIO_OP_READFILE && op->fd2 < 0;
}

int fio_op_pool_help(fio_loop *loop, fio_pool_client *client, uint64_t *helped,
                     uint64_t *pooled) {
  int any = 0;
  while (!fio_loop_has_posts(loop)) {
    fio_job *job = fio_pool_take(client, helpable);
    if (!job) break;
    fio_op *op = fio_job_op(job);
    int res = fio_exec_readfile_nowait(op);
    if (res == -EAGAIN) {
      /* Not for here (fio_exec_readfile_nowait): the pool's again. Stop:
       * one refused without an fd kept (a lease) would be taken again. */
      ++*pooled;
      fio_op_to_pool(client, op);
      break;
    }
    ++*helped;
    fio_op_done(loop, op, res);
    any = 1;
  }
  return any;
}
