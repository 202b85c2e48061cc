/* sync.c — the wait queue every coordination primitive is built on
 * (semaphore, mutex, condition, queue in lua/fiberio/init.lua), and signal
 * delivery to fibers (fio.signal).
 *
 * A wait queue is a FIFO of suspended waiters, each with a token (any Lua
 * value, kept in the queue's uservalue table while it waits). q:wake() takes
 * the first waiter off the queue, wakes it and returns its token, so the
 * waker can hand it something (a permit, an item) that the waiter finds on
 * return: once woken, the waiter owns what it was handed, even if a cancel
 * arrives before it runs (the cancel then lands at its next suspension
 * point). A waiter canceled or timed out while queued leaves no trace: it is
 * off the queue before it runs again, and nothing was handed to it. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/op.h"
#include "lib/lib.h"
#include "util/fd.h"
#include "util/process.h"

#define FIO_WAITQ "fiberio.WaitQueue"

typedef struct waitq {
  fio_list list;
  int n; /* waiters queued */
} waitq;

static waitq *checkq(lua_State *L) {
  return luaL_checkudata(L, 1, FIO_WAITQ);
}

/* fio._waitq() -> a new wait queue */
static int l_waitq(lua_State *L) {
  waitq *q = lua_newuserdatauv(L, sizeof *q, 1);
  memset(q, 0, sizeof *q);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, FIO_WAITQ);
  return 1;
}

/* Drop w's token from q's table (the link's address is its key). */
static void drop_token(lua_State *L, int qidx, fio_link *l) {
  lua_getiuservalue(L, qidx, 1);
  lua_pushnil(L);
  lua_rawsetp(L, -2, l);
  lua_pop(L, 1);
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  waitq *q = lua_touserdata(L, 1);
  if (w->wake != FIO_WAKE_DONE) {
    /* Canceled or timed out while queued: it was unlinked by the wake. */
    q->n--;
    drop_token(L, 1, &w->self_link);
    if (w->wake == FIO_WAKE_TIMER) {
      w->wait = FIO_W_NONE;
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    fio_wait_end(L, w); /* raises */
  }
  w->wait = FIO_W_NONE;
  lua_pushboolean(L, 1);
  return 1;
}

/* q:wait([token [, timeout]]) -> true once woken by q:wake, or nil,
 * "timeout"; raises Canceled. */
static int q_wait(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  waitq *q = checkq(L);
  lua_Number t = fio_opttimeout(L, 3);
  lua_settop(L, 2);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  w->links = &w->self_link;
  w->nlinks = 1;
  fio_link_add(w, &w->self_link, &q->list);
  q->n++;
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_rawsetp(L, -2, &w->self_link);
  lua_pop(L, 1);
  if (t >= 0) fio_timer_arm_in(L, loop, w, t);
  w->wait = FIO_W_QUEUE;
  return fio_block(loop, L, w, wait_k);
}

/* q:wake() -> the token of the waiter woken (true if it gave none), or nil
 * when nobody waits. */
static int q_wake(lua_State *L) {
  waitq *q = checkq(L);
  fio_link *l = fio_list_first(&q->list);
  if (!l) return 0;
  lua_getiuservalue(L, 1, 1);
  lua_rawgetp(L, -1, l);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushnil(L);
  lua_rawsetp(L, -3, l);
  q->n--;
  fio_list_wake_first(&q->list, FIO_WAKE_DONE);
  return 1;
}

static int q_len(lua_State *L) {
  lua_pushinteger(L, checkq(L)->n);
  return 1;
}

/* --- signals ------------------------------------------------------------------- */

#define FIO_SIGNAL "fiberio.Signal"

typedef struct fsig {
  int fd;       /* signalfd, -1 when closed */
  int signo;
} fsig;

/* Which signals this thread's open Signals take (the signal mask is a
 * thread's; a Signal is opened and closed on its state's thread): how many
 * Signals take each, and whether it was blocked before the first. The
 * first blocks it; the last gives it back as it was. */
static _Thread_local struct {
  int n;
  int was_blocked;
} taken[NSIG];

/* Block signo for a new Signal (the mask it had is kept for the last
 * close). 0 or an error number. */
static int sig_take(int signo) {
  if (taken[signo].n++ > 0) return 0;
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, signo);
  int err = pthread_sigmask(SIG_BLOCK, &set, &old); /* (not errno) */
  if (err) {
    taken[signo].n--;
    return err;
  }
  taken[signo].was_blocked = sigismember(&old, signo) == 1;
  return 0;
}

/* A Signal for signo closed: the last one gives the signal back. A signal
 * of that kind that arrived while it was taken and was not read was the
 * Signals': it is dropped first (sigtimedwait, which takes the thread's
 * and the process's pending ones), so that unblocking it does not act on
 * it now (kill the process with an old Ctrl-C). */
static void sig_give(int signo) {
  if (taken[signo].n <= 0 || --taken[signo].n > 0) return;
  if (taken[signo].was_blocked) return; /* it stays as it was: blocked */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signo);
  const struct timespec now = {0, 0};
  while (sigtimedwait(&set, NULL, &now) == signo || errno == EINTR) {
  }
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static const struct {
  const char *name;
  int signo;
} signames[] = {{"INT", SIGINT},   {"TERM", SIGTERM}, {"HUP", SIGHUP},
                {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                {"PIPE", SIGPIPE}, {"CHLD", SIGCHLD}, {"WINCH", SIGWINCH},
                {"ALRM", SIGALRM}, {NULL, 0}};

/* sig:close(), __close and __gc: waits on it end (nil, msg, errno, as a
 * read of a closed file), and the last Signal for its signal gives it
 * back. */
static int sig_close(lua_State *L) {
  fsig *s = luaL_checkudata(L, 1, FIO_SIGNAL);
  if (s->fd >= 0) {
    int fd = s->fd;
    s->fd = -1;
    /* Reads in flight on fd end; the last to complete closes it (no pool
     * or epoll bookkeeping left on an fd number the next open reuses). */
    fio_loop *loop = lua_touserdata(L, lua_upvalueindex(1));
    if (!fio_close_after_ops(loop, fd)) close(fd);
    sig_give(s->signo);
  }
  return 0;
}

static int sig_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  int res = fio_op_result(L, w); /* a cancel raises here */
  w->op = NULL;
  w->wait = FIO_W_NONE;
  if (res == -ETIMEDOUT) {
    fio_op_free(op);
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  if (res == -EBADF) {
    /* the Signal was closed while this wait was on it (fio_op_result) */
    fio_op_free(op);
    return fio_errresult(L, NULL, EBADF);
  }
  if (res < (int)sizeof(struct signalfd_siginfo)) {
    fio_op_free(op);
    return fio_errresult(L, "signal", res < 0 ? -res : EIO);
  }
  struct signalfd_siginfo si;
  memcpy(&si, op->mem, sizeof si);
  fio_op_free(op);
  for (int i = 0; signames[i].name; i++)
    if (signames[i].signo == (int)si.ssi_signo) {
      lua_pushstring(L, signames[i].name);
      return 1;
    }
  lua_pushinteger(L, si.ssi_signo);
  return 1;
}

/* sig:wait([timeout]) -> the signal's name once it arrives, or nil,
 * "timeout"; raises Canceled. */
static int sig_wait(lua_State *L) {
  fio_loop *loop = fio_loop_get(L);
  fsig *s = luaL_checkudata(L, 1, FIO_SIGNAL);
  if (s->fd < 0) return luaL_error(L, "attempt to use a closed signal");
  lua_Number t = fio_opttimeout(L, 2);
  lua_settop(L, 1);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  fio_op *op = fio_op_new(sizeof(struct signalfd_siginfo));
  if (!op) return luaL_error(L, "not enough memory");
  op->code = FIO_OP_READ;
  op->fd = s->fd;
  op->len = sizeof(struct signalfd_siginfo);
  if (t >= 0) fio_timer_arm_in(L, loop, w, t);
  return fio_op_wait(loop, L, w, op, sig_k);
}

/* fio.signal(name) -> a Signal: from now on the signal (INT, TERM, HUP,
 * QUIT, USR1, USR2, PIPE, CHLD, WINCH, ALRM) is taken from its default
 * action and delivered to sig:wait instead, until the last Signal for it
 * is closed or collected: the calling thread's mask is then as it was
 * before the first (sig_give). Threads the program starts meanwhile
 * inherit the block; fiberio's own threads block every signal, so a signal
 * sent to the process goes to a thread of the program. */
static int l_signal(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  int signo = 0;
  for (int i = 0; signames[i].name; i++)
    if (strcmp(signames[i].name, name) == 0) signo = signames[i].signo;
  if (!signo) return luaL_argerror(L, 1, "unknown signal");
  fsig *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->fd = -1;
  s->signo = signo;
  luaL_setmetatable(L, FIO_SIGNAL);
  int err = sig_take(signo);
  if (err) return fio_errresult(L, "signal", err);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, signo);
  int fd = signalfd(-1, &set, SFD_CLOEXEC);
  if (fd >= 0) fd = fio_fd_above_std(fd); /* (util/fd.h) */
  else fd = -errno;
  if (fd < 0) {
    sig_give(signo);
    return fio_errresult(L, "signal", -fd);
  }
  s->fd = fd;
  return 1;
}

static const luaL_Reg q_methods[] = {
    {"wait", q_wait}, {"wake", q_wake}, {"len", q_len}, {NULL, NULL}};
static const luaL_Reg sig_methods[] = {
    {"wait", sig_wait}, {"close", sig_close}, {NULL, NULL}};

static void newmeta(lua_State *L, const char *name, const luaL_Reg *methods,
                    lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  lua_pushvalue(L, -3); /* the loop */
  luaL_setfuncs(L, methods, 1);
  lua_setfield(L, -2, "__index");
  if (gc) { /* (with the loop too) */
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, gc, 1);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, gc, 1);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
}

/* Module table at -2, loop userdata at -1. */
void fio_open_sync(lua_State *L) {
  newmeta(L, FIO_WAITQ, q_methods, NULL);
  newmeta(L, FIO_SIGNAL, sig_methods, sig_close);
  static const luaL_Reg funcs[] = {
      {"_waitq", l_waitq}, {"signal", l_signal}, {NULL, NULL}};
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pop(L, 1);
}
