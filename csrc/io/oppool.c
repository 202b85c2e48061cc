/* oppool.c — an op run as a pool job: the glue both backends use to hand
 * an op to the process's pool (backend.h). */
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
