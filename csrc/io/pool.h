/* pool.h — the process-wide thread pool that runs blocking work for every
 * loop of the process: what the `threads` backend must not run on the loop
 * thread, and what io_uring cannot do. Modelled on Zig's Thread.Pool and
 * libuv's threadpool: one run queue under a mutex, threads spawned on
 * demand up to a limit, idle threads leaving after a while.
 *
 * The pool knows jobs, not operations: a job is a function to run on a pool
 * thread and one to call with its result. Jobs belong to a client (a
 * backend of one loop), which can take its queued jobs back and, when it
 * closes, forget them all. Pool threads never touch Lua.
 *
 * The bound on threads is max(4, 2 x online CPUs), clamped to 1024, or
 * FIBERIO_POOL_SIZE; max(1, CPUs - 1) of them start at once (or
 * FIBERIO_POOL_EAGER), more only when those are blocked (see pool.c).
 *
 * Every function here may be called from any thread. */
#ifndef FIBERIO_IO_POOL_H
#define FIBERIO_IO_POOL_H

#include <pthread.h>
#include <stdatomic.h>

#include "util/list.h"

#pragma GCC visibility push(hidden) /* (core/loop.h) */

typedef struct fio_job fio_job;

/* Who submits jobs: the pool counts its queued ones (a lock-free hint for
 * fio_pool_take) and forgets them all at once. */
typedef struct fio_pool_client {
  atomic_int queued;
} fio_pool_client;

struct fio_job {
  /* Set by the submitter. */
  /* The blocking work, on a pool thread: res >= 0 or -errno. It should
   * look at stop between the steps of a long call. */
  int (*run)(fio_job *job, const atomic_int *stop);
  /* The result, on the thread that ran it (or, for a job canceled in the
   * queue or forgotten there, on the caller's thread). forgotten: its
   * client called fio_pool_forget while it ran; the client is gone and the
   * job is done's to clean up alone. Called once per submission. */
  void (*done)(fio_job *job, int res, int forgotten);
  fio_pool_client *client;
  unsigned char must_run;   /* a cancel never skips it (a close: skipping
                             * it would leak the fd) */
  /* The pool's, from fio_pool_submit until done is called. */
  fio_dnode node;           /* on the run queue (queued) or the running
                             * list */
  pthread_t tid;            /* running: the thread that runs it */
  atomic_int stop;          /* a cancel was asked while it ran */
  unsigned char state;      /* 0: not on the pool; queued; running */
  unsigned char forgotten;
};

/* Run job->run on a pool thread, then call job->done. Jobs start in FIFO
 * order of submission. Never fails: when no thread can be started and none
 * exists, run and done are called on the caller's thread. */
void fio_pool_submit(fio_job *job);

/* Ask that job end early. Returns at once.
 *  - still queued: removed; done(job, -ECANCELED, 0) is called here;
 *  - running: job->stop is set and its thread is sent the interrupt signal
 *    (util/process.h), again and again until run returns; a call that fails
 *    with EINTR then ends the job with -ECANCELED; one that cannot be
 *    interrupted (a read of a regular file) finishes with its result;
 *  - must_run jobs, and jobs not on the pool: nothing. */
void fio_pool_cancel(fio_job *job);

/* Take back from the queue the newest job of client that want accepts
 * (called under the pool's mutex: it may only look at the job) and no
 * thread has started, for the caller to run itself. NULL if there is none,
 * or if every queued job will be taken by a thread being woken for it. The
 * job is the caller's again; done will not be called for it. Looks at the
 * newest few queued jobs only. */
fio_job *fio_pool_take(fio_pool_client *client, int (*want)(const fio_job *));

/* The client is going: after this returns no pool thread calls done for
 * one of its jobs with forgotten == 0. Its jobs still queued never run
 * (must_run ones run here, on the caller's thread) and each gets done(job,
 * res, 0) here; its jobs still running become forgotten: their done comes
 * with forgotten == 1 when run returns. */
void fio_pool_forget(fio_pool_client *client);

/* A snapshot of the pool, for fio._info and specs. */
typedef struct fio_pool_stats {
  int limit;    /* bound on threads */
  int threads;  /* live pool threads */
  int idle;     /* of which waiting for work */
  int queued;   /* jobs waiting for a thread */
  int running;  /* jobs running now */
} fio_pool_stats;
void fio_pool_stats_get(fio_pool_stats *st);


#pragma GCC visibility pop
#endif
