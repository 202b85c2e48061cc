/* process.c — the C half of fio.spawn (lua/fiberio/process.lua is the
 * other): core._spawn starts a program (util/spawn.c: fio_spawn_process)
 * and returns its handle, a userdata holding the child's pidfd (or, before
 * Linux 5.3, its util/child.h registration); core._pwait waits for it
 * (FIO_OP_WAITID on the pidfd, or FIO_OP_POLL on the registration's
 * eventfd; cancelable, any number of waiters) and reaps it; core._pkill
 * signals it through the pidfd (or by pid before it is reaped: never
 * another process that got its pid since). A handle collected or closed
 * before its child was reaped hands it to the reaper: no zombie. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/op.h"
#include "lib/lib.h"
#include "util/spawn.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define PROC "fiberio.process"

typedef struct proc {
  pid_t pid;
  int fd;       /* what a wait waits on: the pidfd, or the child's eventfd;
                 * -1 once closed */
  fio_child *child; /* NULL where there is a pidfd */
  int reaped;   /* status is its end */
  int status;   /* (waitid's si_code and si_status) */
  int code;
} proc;

static proc *checkproc(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, PROC);
}

/* Reap p now if its child has ended: 1 if it is (or was) reaped; 0 while
 * it runs; -1 if a registration's child was reaped by someone else, or is
 * a fork's parent's (a pidfd's such child reads as running: its wait
 * says ECHILD). */
static int try_reap(proc *p) {
  if (p->reaped) return 1;
  if (p->fd < 0) return 0;
  if (p->child) {
    int ended = fio_child_ended(p->child, &p->status, &p->code);
    if (ended > 0) p->reaped = 1;
    return ended;
  }
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(P_PIDFD, (id_t)p->fd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
    return 0;
  p->reaped = 1;
  p->status = si.si_code;
  p->code = si.si_status;
  return 1;
}

/* Close p's fd: a child not reaped yet goes to the reaper. */
static void proc_release(lua_State *L, proc *p) {
  /* (the loop from upvalue 1, not fio_loop_get: a collection may come
   * while the state closes) */
  fio_loop *loop = lua_touserdata(L, lua_upvalueindex(1));
  if (p->fd < 0) return;
  int fd = p->fd;
  p->fd = -1;
  if (p->child) {
    fio_child_release(p->child); /* (reaped later if not yet; fd is ours) */
    p->child = NULL;
  } else if (!p->reaped) {
    /* (waits in flight on fd end -EBADF first: fio_close_after_ops) */
    int fd2 = dup(fd);
    if (fd2 >= 0) fio_reap_later(fd2);
  }
  if (!loop || !fio_close_after_ops(loop, fd)) close(fd);
}

static int proc_gc(lua_State *L) {
  proc *p = checkproc(L, 1);
  try_reap(p);
  proc_release(L, p);
  return 0;
}

/* Push how p ended: "exit", code | "signal", name, number. */
static int push_status(lua_State *L, proc *p) {
  if (p->status == CLD_EXITED) {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, p->code);
    return 2;
  }
  lua_pushliteral(L, "signal");
  const char *name = sigabbrev_np(p->code);
  if (name) lua_pushstring(L, name);
  else lua_pushinteger(L, p->code);
  lua_pushinteger(L, p->code);
  return 3;
}

/* A string array from the table at idx (the strings stay on it: alive while
 * the table is), NULL-terminated, in a userdata pushed on the stack. */
static char **strings_of(lua_State *L, int idx, const char *what) {
  lua_Integer n = luaL_len(L, idx);
  char **v = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *v, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s[%d] is not a string", what, (int)i);
    v[i - 1] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1); /* (held by the table) */
  }
  v[n] = NULL;
  return v;
}

/* core._spawn(argv, env|nil, cwd|nil, fd0, fd1, fd2, flags, umask) ->
 * handle, pid | nil, "argv[1]: message", errno. fds: >= 0 given, -1
 * inherited, -2 /dev/null. Arguments checked by process.lua. */
static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  fio_spawn_req r;
  memset(&r, 0, sizeof r);
  r.argv = strings_of(L, 1, "argv");
  if (!r.argv[0]) return luaL_argerror(L, 1, "argv is empty");
  r.file = r.argv[0];
  if (!lua_isnil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    r.envp = strings_of(L, 2, "env");
  }
  r.cwd = luaL_optstring(L, 3, NULL);
  int null = -1;
  for (int i = 0; i < 3; i++) {
    r.fds[i] = (int)luaL_checkinteger(L, 4 + i);
    if (r.fds[i] == -2) {
      if (null < 0 && (null = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
        return fio_errresult(L, "/dev/null", errno);
      r.fds[i] = null;
    }
  }
  r.flags = (int)luaL_checkinteger(L, 7);
  r.umask = (int)luaL_checkinteger(L, 8);
  proc *p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  p->fd = -1;
  luaL_setmetatable(L, PROC);
  int res = fio_spawn_process(&r, &p->pid, &p->fd, &p->child);
  if (null >= 0) close(null);
  if (res < 0) return fio_errresult(L, r.file, -res);
  if (p->child) p->fd = fio_child_fd(p->child);
  lua_pushinteger(L, p->pid);
  return 2;
}

static int pwait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  int res = fio_op_result(L, w); /* a cancel raises (op freed) */
  w->op = NULL;
  fio_op_free(op);
  proc *p = checkproc(L, 1);
  if (try_reap(p) > 0) return push_status(L, p);
  if (res == -EBADF || p->fd < 0)
    return luaL_error(L, "fiberio: process %d: closed while waited for", (int)p->pid);
  if (res < 0) return fio_errresult(L, p->child ? "poll" : "waitid", -res);
  /* (ended but reaped by someone else: waitid(-1) elsewhere in this
   * process) */
  return fio_errresult(L, "waitid", ECHILD);
}

/* core._pwait(handle) -> "exit", code | "signal", name, number. */
static int l_pwait(lua_State *L) {
  proc *p = checkproc(L, 1);
  lua_settop(L, 1);
  int ended = try_reap(p);
  if (ended > 0) return push_status(L, p);
  if (p->fd < 0) return luaL_error(L, "fiberio: process %d: closed", (int)p->pid);
  if (ended < 0) return fio_errresult(L, "waitid", ECHILD);
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  fio_op *op = fio_op_new(p->child ? 0 : sizeof(siginfo_t));
  if (!op) return luaL_error(L, "not enough memory");
  if (p->child) { /* (readable once the child is reaped) */
    op->code = FIO_OP_POLL;
    op->mode = POLLIN;
  } else {
    op->code = FIO_OP_WAITID;
  }
  op->fd = p->fd;
  return fio_op_wait(loop, L, w, op, pwait_k);
}

/* core._pstatus(handle) -> how it ended, or nothing while it runs. */
static int l_pstatus(lua_State *L) {
  proc *p = checkproc(L, 1);
  return try_reap(p) > 0 ? push_status(L, p) : 0;
}

/* core._pkill(handle, signal number) -> true | nil, msg, errno. */
static int l_pkill(lua_State *L) {
  proc *p = checkproc(L, 1);
  int sig = (int)luaL_checkinteger(L, 2);
  if (p->reaped || p->fd < 0) return fio_errresult(L, NULL, ESRCH);
  if (p->child) {
    int res = fio_child_kill(p->child, sig);
    if (res < 0) return fio_errresult(L, NULL, -res);
  } else if (syscall(SYS_pidfd_send_signal, p->fd, sig, NULL, 0) < 0) {
    return fio_errresult(L, NULL, errno);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core._signum(name) -> the number of signal "TERM" or "SIGTERM", or nil. */
static int l_signum(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  for (int s = 1; s < NSIG; s++) {
    const char *n = sigabbrev_np(s);
    if (n && strcmp(n, name) == 0) {
      lua_pushinteger(L, s);
      return 1;
    }
  }
  return 0;
}

/* core._pclose(handle): its fd closed (a running child goes to the
 * reaper). */
static int l_pclose(lua_State *L) {
  proc_gc(L);
  return 0;
}

/* Module table at -2, loop userdata at -1. */
void fio_open_process(lua_State *L) {
  luaL_newmetatable(L, PROC);
  lua_pushvalue(L, -2); /* loop: fio_loop_get's upvalue */
  lua_pushcclosure(L, proc_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"_spawn", l_spawn},   {"_pwait", l_pwait},
                                   {"_pstatus", l_pstatus}, {"_pkill", l_pkill},
                                   {"_pclose", l_pclose},   {"_signum", l_signum},
                                   {NULL, NULL}};
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pop(L, 1);
}
