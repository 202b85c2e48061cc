/* op.c — operations: the record, its one lifecycle (op.h), the queues that
 * carry completions to the loop thread, and the wake protocol.
 *
 * Where an op runs is decided here, in fio_op_wait and op_submit. Handing
 * an op to another thread (io-wq or a pool thread) costs two thread
 * wake-ups, often across CPUs, which is most of a stat's or a small read's
 * time; so an op the loop thread may run itself (op.h's FIO_OPS_HERE, less
 * what the backend took out: loop->inline_codes) runs here, as the plain
 * system call, whenever the loop would otherwise sleep on it:
 *   - at once, in the caller's own call (no suspension), when the loop has
 *     nothing else at all: no op in flight, no fiber ready, no timer due.
 *     This is the sequential script's case: a lone call costs what the
 *     system call costs.
 *   - else through the inline queue: when the loop is about to sleep, the
 *     first queued op runs here, and the others go to the backend, so that
 *     concurrent calls still overlap.
 * Otherwise an op goes to its executor if it has one (fio.parallel's
 * tasks), else to the loop's backend.
 *
 * The slow rule: an op run here that took longer than cfg.slow_ns (a disk
 * that is slow or hung: NFS, a spinning disk) holds up the loop's timers
 * and fibers, so its kind runs on the backend again for a while; then one
 * is tried here again. The while is cfg.slow_pause_ns / 16 at first,
 * doubled each time the next try is slow too, up to cfg.slow_pause_ns: a
 * lone stall (the thread preempted, a journal commit) costs little, a
 * hung file system is tried once per slow_pause. Reading the clock twice
 * is a twentieth of a short call (a readlink, an access), so a kind is
 * timed on every run only until HERE_FAST_RUNS in a row were fast; after
 * that on one run in HERE_TIME_EVERY, and on every run again from the
 * first slow one: a kind that turns slow is seen within HERE_TIME_EVERY
 * runs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/op.h"
#include "io/backend.h"
#include "io/exec.h"
#include "util/clock.h"
#include "util/zero.h"

/* --- the record ------------------------------------------------------------ */

/* op's fields as fio_op_new leaves them, over mem of cap bytes */
static fio_op *op_reset(fio_op *op, char *mem, size_t cap) {
  fio_zero(op, sizeof *op);
  op->mem = op->buf = mem;
  op->cap = cap;
  op->fd = op->fd2 = -1;
  op->off = (uint64_t)-1;
  return op;
}

fio_op *fio_op_new(size_t cap) {
  fio_op *op = malloc(sizeof *op);
  char *mem = cap ? malloc(cap) : NULL;
  if (!op || (cap && !mem)) {
    free(op);
    free(mem);
    return NULL;
  }
  return op_reset(op, mem, cap);
}

/* What op holds besides its memory: its dtor's, the fds it owns. */
static void op_release(fio_op *op) {
  if (op->dtor) op->dtor(op);
  if ((op->owns & FIO_OWN_FD) && op->fd >= 0) close(op->fd);
  if ((op->owns & FIO_OWN_FD2) && op->fd2 >= 0) close(op->fd2);
}

void fio_op_free(fio_op *op) {
  if (!op) return;
  op_release(op);
  free(op->mem);
  free(op);
}

/* The loop's spare ops all have FIO_OP_SPARE_CAP bytes of memory, so that
 * any of them serves any call that needs no more. */
fio_op *fio_op_take(fio_loop *loop, size_t cap) {
  if (cap > FIO_OP_SPARE_CAP) return fio_op_new(cap);
  if (loop->nspare_ops) {
    fio_op *op = loop->spare_ops[--loop->nspare_ops];
    return op_reset(op, op->mem, FIO_OP_SPARE_CAP);
  }
  return fio_op_new(FIO_OP_SPARE_CAP);
}

void fio_op_give(fio_loop *loop, fio_op *op) {
  if (!op) return;
  /* (grown by its call: not a spare's size any more) */
  if (op->cap != FIO_OP_SPARE_CAP || loop->closed ||
      loop->nspare_ops == (int)(sizeof loop->spare_ops / sizeof *loop->spare_ops)) {
    fio_op_free(op);
    return;
  }
  op_release(op);
  op->dtor = NULL; /* (released: the loop's close frees it as a fresh op) */
  op->owns = 0;
  loop->spare_ops[loop->nspare_ops++] = op;
}

void fio_op_drop(fio_op *op, int res) {
  if ((op->owns & FIO_OWN_RESULT) && res >= 0) close(res);
  /* (the one op left with it when its loop closed: fio_ops_close) */
  if ((op->owns & FIO_OWN_FD_LAST) && op->fd >= 0) close(op->fd);
  fio_op_free(op);
}

char *fio_buf_get(fio_loop *loop) {
  return loop->nbufs ? loop->bufs[--loop->nbufs] : malloc(FIO_BUFSZ);
}

void fio_buf_put(fio_loop *loop, char *buf, size_t size) {
  if (buf && size == FIO_BUFSZ && !loop->closed &&
      loop->nbufs < (int)(sizeof loop->bufs / sizeof *loop->bufs))
    loop->bufs[loop->nbufs++] = buf;
  else
    free(buf);
}

/* --- submitting and canceling -------------------------------------------- */

_Static_assert(FIO_OP_LAST <= 64, "op codes index 64-bit masks");

/* Whether the loop thread may run op itself (the file comment). */
static int runs_here(fio_loop *loop, const fio_op *op) {
  if (op->executor || !(loop->inline_codes & FIO_OP_BIT(op->code))) return 0;
  if ((op->code == FIO_OP_READ || op->code == FIO_OP_WRITE) && !op->may_inline)
    return 0;
  struct fio_here *h = &loop->here[op->code];
  if (h->paused_until) {
    if (fio_now_ns() < h->paused_until) return 0;
    h->paused_until = 0; /* the pause is over: try it here again */
  }
  return 1;
}

#define HERE_FAST_RUNS 16
#define HERE_TIME_EVERY 8

/* The slow rule's account of a timed run of kind h that began at t0. */
static void note_run(fio_loop *loop, struct fio_here *h, uint64_t t0) {
  uint64_t t1 = fio_now_ns(), dt = t1 - t0;
  h->avg_ns = (uint32_t)((h->avg_ns * 7 + (dt < UINT32_MAX ? dt : UINT32_MAX)) / 8);
  if (dt > loop->cfg.slow_ns) {
    if (h->strikes < 5) h->strikes++;
    h->paused_until = t1 + (loop->cfg.slow_pause_ns >> (5 - h->strikes));
    h->fast_runs = 0;
    loop->slowed++;
  } else {
    h->strikes = 0;
    if (h->fast_runs < HERE_FAST_RUNS) h->fast_runs++;
    else h->untimed = HERE_TIME_EVERY - 1;
  }
}

/* Run op on the loop thread (runs_here said it may): its result, or
 * -EAGAIN if it could wait (fio_exec_here): the backend's then. Timed
 * unless the sampling skips it (the file comment). Inlined: every frame
 * held across a system call costs a mispredicted return after it (on
 * this project's machines, 8 ns a frame: a lone readlink is 0.9 us). */
static inline __attribute__((always_inline)) int run_here(fio_loop *loop, fio_op *op) {
  struct fio_here *h = &loop->here[op->code];
  int timed = !h->untimed;
  uint64_t t0 = timed ? fio_now_ns() : 0;
  int res = fio_exec_here(op);
  if (timed) note_run(loop, h, t0);
  else h->untimed--;
  if (res != -EAGAIN) loop->inlined++;
  return res;
}

/* Whether nothing but the caller's op could happen before the loop slept
 * on it: no op in flight or completed, no completion posted from another
 * thread, no fiber ready, no timer due, no Ctrl-C to act on (a fiber whose
 * calls never suspend would never let the drive see it). (A wake from
 * another thread only ends a sleep: what it was for is looked at by the
 * loop's next wait.) */
int fio_ops_idle(fio_loop *loop) {
  return !loop->inflight.len && !loop->done_q.head && !loop->inline_q.head &&
         !loop->ready.len &&
         !atomic_load_explicit(&loop->posted, memory_order_relaxed) &&
         !fio_loop_host_stopping(loop) &&
         (!loop->heap_len || loop->heap[0].deadline > fio_now_ns());
}

/* How deep continuations may nest in fio_op_wait's own frames (a call of
 * many steps, each run at once, goes on through the loop after this). */
#define HERE_DEPTH_MAX 8

/* here: runs_here said the loop thread may run op (and it did not say
 * -EAGAIN there already) */
static void op_submit(fio_loop *loop, fio_op *op, int here) {
  if (here) {
    fio_dlist_push(&loop->inline_q, &op->queue_node);
    return;
  }
  loop->handed++;
  if (op->executor) op->executor->submit(loop, op);
  else loop->be->submit(loop, op);
}

int fio_op_wait(fio_loop *loop, lua_State *L, fio_fiber *w, fio_op *op,
                lua_KFunction k) {
  int here = runs_here(loop, op);
  if (here && w->here < HERE_DEPTH_MAX && fio_ops_idle(loop)) {
    /* At once: the result is there before anything else could run, so
     * the continuation follows as if w had been woken. No cancel can land
     * meanwhile: nothing else runs. */
    int res = run_here(loop, op);
    if (res != -EAGAIN) {
      loop->direct++;
      op->loop = loop;
      op->res = res;
      op->state = FIO_OPS_DONE;
      w->op = op;
      w->wait = FIO_W_NONE;
      w->wake = FIO_WAKE_DONE;
      w->here++;
      int r = k(L, LUA_OK, (lua_KContext)w);
      w->here--; /* (not reached if k yielded: fio_block reset it) */
      return r;
    }
    here = 0;
  }
  op->waiter = w;
  op->loop = loop;
  op->res = 0;
  op->cancel_sent = 0;
  op->owns &= (uint8_t)~FIO_OWN_FD_LAST;
  op->state = FIO_OPS_INFLIGHT;
  fio_dlist_push_head(&loop->inflight, &op->inflight_node);
  w->op = op;
  w->wait = FIO_W_OP;
  op_submit(loop, op, here);
  return fio_block(loop, L, w, k);
}

int fio_op_result(lua_State *L, fio_fiber *w) {
  fio_op *op = w->op;
  int res = op->res;
  if (res != -ECANCELED) return res;
  if (w->wake == FIO_WAKE_TIMER) return -ETIMEDOUT;
  if (fio_cancel_pending(w)) {
    w->op = NULL;
    fio_op_free(op);
    fio_raise_canceled(L, w->loop, fio_owner(w));
  }
  return -EBADF;
}

int fio_op_again(lua_State *L, fio_fiber *w, fio_op *op, lua_KFunction k,
                 int *count) {
  if (fio_cancel_pending(w)) {
    w->op = NULL;
    fio_op_free(op); /* (its dtor and owns clean up) */
    return fio_raise_canceled(L, w->loop, fio_owner(w));
  }
  w->wake = FIO_WAKE_NONE;
  w->wait = FIO_W_NONE;
  if (count) ++*count;
  return fio_op_wait(w->loop, L, w, op, k);
}

void fio_op_cancel(fio_loop *loop, fio_op *op) {
  if (op->cancel_sent) return;
  op->cancel_sent = 1;
  if (op->executor) op->executor->cancel(loop, op);
  else if (fio_dlist_contains(&loop->inline_q, &op->queue_node)) {
    /* (a scan: the few ops submitted since the loop last waited) */
    fio_dlist_remove(&loop->inline_q, &op->queue_node);
    fio_op_done(loop, op, -ECANCELED);
  }
  else loop->be->cancel(loop, op);
}

/* Cancel every op in flight on fd; close_after: the last of those that
 * runs on fd closes it. Returns 1 if one will. */
static int fd_ops_cancel(fio_loop *loop, int fd, int close_after) {
  if (!loop || !loop->started || loop->closed) return 0;
  int deferred = 0;
  for (fio_dnode *n = loop->inflight.head; n; n = n->next) {
    fio_op *op = fio_container_of(n, fio_op, inflight_node);
    if (op->fd != fd && op->fd2 != fd) continue;
    fio_op_cancel(loop, op); /* a blocked read ends (EBADF, Canceled) */
    if (close_after && op->fd == fd) {
      op->owns |= FIO_OWN_FD_LAST;
      deferred = 1;
    }
  }
  return deferred;
}

int fio_close_after_ops(fio_loop *loop, int fd) {
  return fd_ops_cancel(loop, fd, 1);
}

void fio_cancel_fd_ops(fio_loop *loop, int fd) { fd_ops_cancel(loop, fd, 0); }

/* --- completing: the one door ----------------------------------------------- */

static void unlink_inflight(fio_loop *loop, fio_op *op) {
  if (op->state != FIO_OPS_INFLIGHT) return;
  op->state = FIO_OPS_DONE;
  fio_dlist_remove(&loop->inflight, &op->inflight_node);
}

static void complete(fio_loop *loop, fio_op *op, int res) {
  /* A blocking call interrupted for a cancel (io-wq or a pool thread) may
   * end with EINTR or the kernel's restart codes: it was canceled. */
  if (op->cancel_sent && (res == -EINTR || res == -512 || res == -513 ||
                          res == -514 || res == -516))
    res = -ECANCELED;
  op->res = res;
  unlink_inflight(loop, op);
  if (op->owns & FIO_OWN_FD_LAST) {
    /* Its file was collected while it was in flight: close the fd now that
     * no syscall can use it (or a reuse of its number) any more. */
    int last = 1;
    for (fio_dnode *n = loop->inflight.head; n; n = n->next) {
      fio_op *o = fio_container_of(n, fio_op, inflight_node);
      if ((o->owns & FIO_OWN_FD_LAST) && o->fd == op->fd) last = 0;
    }
    if (last) close(op->fd);
    op->owns &= (uint8_t)~FIO_OWN_FD_LAST;
  }
  if (op->waiter) {
    /* (a deadline that canceled the op keeps saying so) */
    fio_wake(op->waiter, op->waiter->wake == FIO_WAKE_TIMER ? FIO_WAKE_TIMER
                                                           : FIO_WAKE_DONE);
  } else {
    fio_op_drop(op, res);
  }
}

void fio_op_done(fio_loop *loop, fio_op *op, int res) {
  op->res = res;
  fio_dlist_push(&loop->done_q, &op->queue_node);
}

/* Complete what the loop thread found done, then what other threads posted
 * (complete may free an op, an orphan: each leaves its queue first). */
static void complete_queued(fio_loop *loop) {
  fio_op *op;
  while ((op = fio_op_of(fio_dlist_pop(&loop->done_q)))) complete(loop, op, op->res);
  if (!atomic_load_explicit(&loop->posted, memory_order_acquire)) return;
  pthread_mutex_lock(&loop->post_mu);
  fio_dlist posted = loop->posted_q;
  loop->posted_q = (fio_dlist){NULL, NULL, 0};
  atomic_store_explicit(&loop->posted, 0, memory_order_relaxed);
  pthread_mutex_unlock(&loop->post_mu);
  while ((op = fio_op_of(fio_dlist_pop(&posted)))) complete(loop, op, op->res);
}

/* --- the wake protocol --------------------------------------------------------- */

/* Whatever the caller published before this (a post, a task) is seen by a
 * loop that clears wake_sent after it: the two fences order each side's
 * store before its load (store buffering), so one side sees the other.
 * 0: an unseen wake is pending, the loop wakes anyway. */
static int wake_claim(fio_loop *loop) {
  atomic_thread_fence(memory_order_seq_cst);
  return !atomic_exchange_explicit(&loop->wake_sent, 1, memory_order_relaxed);
}

void fio_loop_wake(fio_loop *loop) {
  if (wake_claim(loop)) loop->be->wake(loop);
}

void fio_loop_wake_fd(fio_loop *loop) {
  uint64_t one = 1;
  ssize_t r;
  do r = write(loop->wakefd, &one, sizeof one);
  while (r < 0 && errno == EINTR);
  /* EAGAIN: the counter is saturated, so a wake is pending anyway. */
}

int fio_loop_wakes_on(fio_loop *loop) {
  if (!atomic_load_explicit(&loop->wake_sent, memory_order_relaxed)) return 0;
  atomic_store_explicit(&loop->wake_sent, 0, memory_order_relaxed);
  /* (pairs with wake_claim's fence: see there) */
  atomic_thread_fence(memory_order_seq_cst);
  return 1;
}

void fio_loop_drain_wakefd(fio_loop *loop) {
  uint64_t n;
  while (read(loop->wakefd, &n, sizeof n) < 0 && errno == EINTR) {
  }
}

int fio_loop_has_posts(fio_loop *loop) {
  return atomic_load_explicit(&loop->posted, memory_order_relaxed);
}

void fio_loop_post(fio_loop *loop, fio_op *op, int res) {
  op->res = res;
  pthread_mutex_lock(&loop->post_mu);
  fio_dlist_push(&loop->posted_q, &op->queue_node);
  atomic_store_explicit(&loop->posted, 1, memory_order_release);
  /* (under post_mu, which fio_ops_close takes before the backend goes:
   * a syscall only when the loop sleeps, and then nobody waits for it) */
  fio_loop_wake(loop);
  pthread_mutex_unlock(&loop->post_mu);
}

/* --- waiting ---------------------------------------------------------------- */

/* An op whose calls take this long on the loop thread (on average) is
 * worth more on another thread than the two wake-ups it costs to hand it
 * over, when other ops are in flight to overlap with it (an open that
 * truncates, a mkdir). */
#define HERE_HANDOFF_NS 20000

/* The inline queue, when the loop is about to wait: would_sleep, the first
 * op runs here (unless it is one worth handing over); the others go to the
 * backend. 1 if one ran. */
static int run_inline(fio_loop *loop, int would_sleep) {
  fio_dlist queued = loop->inline_q;
  fio_op *op;
  int ran = 0;
  int others = loop->inflight.len > 1;
  loop->inline_q = (fio_dlist){NULL, NULL, 0};
  while ((op = fio_op_of(fio_dlist_pop(&queued)))) {
    int here = would_sleep && !ran &&
               !(others && loop->here[op->code].avg_ns > HERE_HANDOFF_NS);
    int res = here ? run_here(loop, op) : -EAGAIN;
    if (res != -EAGAIN) {
      ran = 1;
      fio_op_done(loop, op, res);
    } else {
      loop->handed++;
      loop->be->submit(loop, op);
    }
  }
  return ran;
}

void fio_ops_wait(fio_loop *loop, int64_t timeout_ns) {
  if (loop->inline_q.head && run_inline(loop, timeout_ns != 0 && !loop->done_q.head))
    timeout_ns = 0;
  /* (after run_inline: a backend may complete what it was handed at once,
   * as the threads backend does a close; no sleep then) */
  if (loop->done_q.head) timeout_ns = 0;
  loop->be->wait(loop, timeout_ns);
  complete_queued(loop);
}

void fio_ops_close(fio_loop *loop) {
  for (fio_dnode *n = loop->inflight.head; n; n = n->next) {
    fio_op *op = fio_container_of(n, fio_op, inflight_node);
    if (op->waiter) op->waiter->op = NULL;
    op->waiter = NULL;
    fio_op_cancel(loop, op);
  }
  /* Give their completions a bounded time to arrive so their memory can be
   * freed. What never arrives is left on purpose: the kernel or a pool
   * thread may still write into it. */
  uint64_t until = fio_now_ns() + 1000000000u;
  while (loop->inflight.len && fio_now_ns() < until) fio_ops_wait(loop, 10000000);
  /* What is left is the backend's or the pool's from now on (the pool
   * drops an op when its call returns; what is in the kernel is left to
   * it): off the list, which nothing walks again. Of the ops left on a
   * collected file's fd, one keeps the close of it (the last on the list):
   * none can count the others any more. */
  /* An executor's ops are the executor's: it drops them when they end. */
  for (fio_dnode *m = loop->inflight.head, *next; m; m = next) {
    next = m->next;
    fio_op *op = fio_container_of(m, fio_op, inflight_node);
    if (!op->executor) continue;
    fio_dlist_remove(&loop->inflight, m);
    op->state = FIO_OPS_DONE;
    op->executor->forget(loop, op);
  }
  fio_dnode *n;
  while ((n = fio_dlist_pop(&loop->inflight))) {
    fio_op *op = fio_container_of(n, fio_op, inflight_node);
    for (fio_dnode *m = loop->inflight.head; m && (op->owns & FIO_OWN_FD_LAST);
         m = m->next) {
      fio_op *o = fio_container_of(m, fio_op, inflight_node);
      if ((o->owns & FIO_OWN_FD_LAST) && o->fd == op->fd)
        op->owns &= (uint8_t)~FIO_OWN_FD_LAST;
    }
    op->state = FIO_OPS_DONE;
  }
  /* A post whose op the loop has completed already may still be making
   * its wake (a worker's thread): it is done before the backend goes (it
   * wakes under post_mu). No new one starts: every runner has forgotten
   * this loop's ops, or ended them. (The pool's own posts are the pool's
   * forget's to wait for, in the backend's close.) */
  pthread_mutex_lock(&loop->post_mu);
  pthread_mutex_unlock(&loop->post_mu);
  loop->be->close(loop);
  complete_queued(loop); /* handed back by the close */
}
