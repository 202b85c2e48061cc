/* pool.h — the process-wide thread pool that runs blocking syscalls for
 * every loop of the process: all operations of the `threads` backend that
 * must block, and what io_uring cannot do. Modelled on Zig's Thread.Pool and
 * libuv's threadpool: one run queue under a mutex, threads spawned on
 * demand up to a limit, idle threads leaving after a while. Pool threads
 * never touch Lua: they run fio_exec (exec.c, the one switch over every
 * FIO_OP_*) and hand the result to the op's loop with fio_loop_post.
 *
 * The bound on threads is max(4, 2 x online CPUs), clamped to 1024, or
 * FIBERIO_POOL_SIZE; max(1, CPUs - 1) of them start at once (or
 * FIBERIO_POOL_EAGER), more only when those are blocked (see pool.c). The
 * variables are read once.
 *
 * Every function here may be called from any thread. */
#ifndef FIBERIO_POOL_H
#define FIBERIO_POOL_H

#include "exec.h"
#include "fiberio.h"

/* Run op with fio_exec on a pool thread, then post the result to loop with
 * fio_loop_post(loop, op, res), res >= 0 or -errno. op->bpriv is the pool's
 * from this call until the post (it is NULL again when the loop completes
 * the op): the caller must neither read nor write it meanwhile, and must keep
 * it NULL on ops it never gives to the pool. The caller must not touch op
 * otherwise (fio_pool_cancel aside) until the loop completes it. Ops run in
 * FIFO order of submission. Never fails: when no thread can be started and
 * none exists, fio_exec runs on the caller's thread and the result is
 * posted all the same. */
void fio_pool_submit(fio_loop *loop, fio_op *op);

/* Ask that op, submitted to the pool for loop, end early. Returns at once.
 *  - still queued: removed and posted with -ECANCELED;
 *  - running: op->abort is set (fio_exec checks it between the steps of a
 *    long operation) and its thread is sent the pool's interrupt signal,
 *    again and again until fio_exec returns; a syscall that fails with EINTR
 *    is posted as -ECANCELED; one that cannot be interrupted (a read of a
 *    regular file) finishes and its normal result is posted;
 *  - FIO_OP_CLOSE is never stopped: skipping it would leak the fd;
 *  - not on the pool (done, posted, never submitted: op->bpriv NULL): nothing.
 * One completion is posted per submission in every case. */
void fio_pool_cancel(fio_loop *loop, fio_op *op);

/* The loop is closing: after this returns no pool thread touches loop again
 * (no post, no wake). Its ops still queued are freed at once; its ops still
 * running become the pool's: they are freed when their syscall returns (an
 * fd result of an op with fd_owned is closed), never posted. Posts made
 * before the call are still in the loop's post list: drain them after. */
void fio_pool_forget(fio_loop *loop);

/* Take back from the queue the newest op of loop that want accepts (called
 * under the pool's mutex: it may only look at the op) and no thread has
 * started, for the loop thread to run itself when it would otherwise sleep
 * (as a pool thread would: the caller completes it, or submits it again).
 * NULL if there is none, or if every queued op will be taken by a thread
 * being woken for it. The op is the caller's again (op->bpriv NULL);
 * nothing is posted for it. Looks at the newest few queued ops only. */
fio_op *fio_pool_take(fio_loop *loop, int (*want)(const fio_op *));

/* Keep the library this code is in mapped until the process exits, even
 * after Lua dlcloses it with the last state: for code that leaves something
 * behind in the process (pool threads, a signal handler, an atexit handler).
 * Idempotent, thread-safe. */
void fio_pin_library(void);

/* Install handler (sigaction flags) on the first of the n candidate
 * signals that nobody else handles, and pin this library (the handler is in
 * it). Returns the signal, or 0 if every one is taken. Call once per use. */
int fio_claim_signal(const int *cands, int n, void (*handler)(int), int flags);

/* A snapshot of the pool, for fio._info and specs. */
typedef struct fio_pool_stats {
  int limit;    /* bound on threads */
  int threads;  /* live pool threads */
  int idle;     /* of which waiting for work */
  int queued;   /* ops waiting for a thread */
  int running;  /* ops in a syscall now */
} fio_pool_stats;
void fio_pool_stats_get(fio_pool_stats *st);

#endif
