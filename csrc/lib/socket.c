/* socket.c — Socket and Server handles (lua/fiberio/socket.lua builds
 * fio.connect, fio.listen, fio.udp and fio.resolve on them).
 *
 * A Socket is a File (file.h's handle, with FIO_SOCKET's metatable): the
 * stream methods of a File (read with io's formats, lines, write, ...) work
 * on it, its reads and writes being recv and send; and it has the calls of
 * a socket (send, recv, sendto, recvfrom, shutdown, names, options, fd
 * passing). A Server is the handle of a listening socket: accept.
 *
 * Every call that waits is an op (accept, connect, poll, recv, send,
 * recvmsg, sendmsg; getaddrinfo on the pool), cancelable, counted in the
 * handle's inflight so that a close waits for none of them, and bounded by
 * the handle's timeout (settimeout): the op's deadline is the waiter's
 * timer, which cancels it (ASYNC_CANCEL on the ring), and the call returns
 * nil, "timeout", ETIMEDOUT. One call's steps (a poll, then the accept
 * again) share one deadline.
 *
 * Descriptors: a listener is nonblocking (the threads backend tries its
 * accept on the loop thread); a stream socket is nonblocking while it
 * connects, blocking after (the ring's reads of it wait); every fd is
 * close-on-exec. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/clock.h"
#include "lib/file.h"
#include "lib/lib.h"

/* --- addresses ------------------------------------------------------------- */

/* Whether host names a Unix socket: a path (it has a '/') or an abstract
 * name ("@name"). */
static int is_unix(const char *host) {
  return host[0] == '@' || strchr(host, '/') != NULL;
}

/* The address for host (a numeric IPv4 or IPv6 address, "[v6]" too, or a
 * Unix socket's name) and port into sa. 0, or an error message. */
static const char *make_addr(const char *host, lua_Integer port,
                             struct fio_sockaddr *sa) {
  memset(sa, 0, sizeof *sa);
  if (is_unix(host)) {
    struct sockaddr_un *un = (struct sockaddr_un *)&sa->addr;
    size_t n = strlen(host);
    if (n >= sizeof un->sun_path) return "socket path too long";
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, host, n);
    if (host[0] == '@') un->sun_path[0] = '\0'; /* abstract: no file */
    sa->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                          (host[0] == '@' ? 0 : 1));
    return NULL;
  }
  if (port < 0 || port > 65535) return "port out of range";
  struct sockaddr_in *in4 = (struct sockaddr_in *)&sa->addr;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    sa->len = sizeof *in4;
    return NULL;
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa->addr;
  char buf[INET6_ADDRSTRLEN + 2];
  size_t n = strlen(host);
  if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
    memcpy(buf, host + 1, n - 2);
    buf[n - 2] = '\0';
    host = buf;
  }
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    sa->len = sizeof *in6;
    return NULL;
  }
  return "not a numeric address (fio.resolve gives those)";
}

/* The address at idx (host) and idx + 1 (port; none for a Unix socket), or
 * raise naming the argument. */
static void check_addr(lua_State *L, int idx, struct fio_sockaddr *sa) {
  const char *host = luaL_checkstring(L, idx);
  lua_Integer port = is_unix(host) ? 0 : luaL_checkinteger(L, idx + 1);
  const char *msg = make_addr(host, port, sa);
  if (msg) luaL_argerror(L, idx, msg);
}

/* Push what sa holds: host and port (inet), or the path ("@name" for an
 * abstract one; "" unnamed) and nil. Returns 2. */
static int push_addr(lua_State *L, const struct sockaddr *sa, socklen_t len) {
  char buf[INET6_ADDRSTRLEN];
  switch (sa->sa_family) {
  case AF_INET: {
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
    lua_pushstring(L, inet_ntop(AF_INET, &in4->sin_addr, buf, sizeof buf));
    lua_pushinteger(L, ntohs(in4->sin_port));
    return 2;
  }
  case AF_INET6: {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    lua_pushstring(L, inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf));
    lua_pushinteger(L, ntohs(in6->sin6_port));
    return 2;
  }
  case AF_UNIX: {
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n = len > off ? len - off : 0;
    if (n == 0) lua_pushliteral(L, "");
    else if (un->sun_path[0] == '\0') { /* abstract */
      lua_pushliteral(L, "@");
      lua_pushlstring(L, un->sun_path + 1, n - 1);
      lua_concat(L, 2);
    } else { /* (a path of the whole sun_path has no NUL) */
      lua_pushlstring(L, un->sun_path, strnlen(un->sun_path, n));
    }
    lua_pushnil(L);
    return 2;
  }
  }
  lua_pushnil(L);
  lua_pushnil(L);
  return 2;
}

/* --- handles ------------------------------------------------------------------ */

static fio_file *tosock(lua_State *L, int idx) {
  fio_file *f = luaL_checkudata(L, idx, FIO_SOCKET);
  if (f->fd < 0) luaL_error(L, "attempt to use a closed socket");
  return f;
}

static fio_file *toserver(lua_State *L, int idx) {
  fio_file *f = luaL_checkudata(L, idx, FIO_SERVER);
  if (f->fd < 0) luaL_error(L, "attempt to use a closed server");
  return f;
}

/* A Socket or Server (either), open. */
static fio_file *toany(lua_State *L, int idx) {
  fio_file *f = luaL_testudata(L, idx, FIO_SOCKET);
  if (!f) f = luaL_testudata(L, idx, FIO_SERVER);
  if (!f) luaL_typeerror(L, idx, FIO_SOCKET);
  if (f->fd < 0) luaL_error(L, "attempt to use a closed socket");
  return f;
}

/* Make s (fresh from fio_file_new) the connected socket fd. */
static void sock_init(fio_file *s, int fd) {
  s->fd = fd;
  s->sock = 1;
  s->canread = s->canwrite = 1;
  s->seekable = 0;
  s->disk = 0;
  s->mode = BUF_NO; /* a write goes out at once, as send; setvbuf to batch */
}

static int set_nonblock(int fd, int on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -1;
  return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* --- waiting on an op --------------------------------------------------------- *
 *
 * A call keeps its deadline (ns, 0: none) in stack slot DEADLINE (its
 * arguments are settled to fixed slots before its first wait). */

/* Begin (w NULL: the first step, with pseudo) or continue waiting, and
 * return the waiter: before the op is made, so that a pending cancel
 * raises with nothing to free. */
static fio_fiber *step_begin(lua_State *L, fio_loop *loop, fio_fiber *w,
                             fio_fiber *pseudo) {
  if (!w) w = fio_wait_begin(loop, L, pseudo);
  else fio_wait_again(L, w);
  return w;
}

/* The deadline s seconds (>= 0) from now: never 0 (no deadline); past a
 * billion seconds, a billion (as fio_timer_arm_in). */
static lua_Integer deadline_in(lua_Number s) {
  uint64_t d = fio_now_ns() + (s >= 1e9 ? (uint64_t)1e18 : (uint64_t)(s * 1e9));
  return d ? (lua_Integer)d : 1;
}

/* Push the deadline of a call on f starting now (0: f has no timeout). */
static void push_deadline(lua_State *L, const fio_file *f) {
  lua_pushinteger(L, f->timeout < 0 ? 0 : deadline_in(f->timeout));
}

static fio_op *newop(lua_State *L, int code, int fd, size_t cap) {
  fio_op *op = fio_op_new(cap);
  if (!op) luaL_error(L, "not enough memory");
  op->code = (uint8_t)code;
  op->fd = fd;
  return op;
}

/* Arm the call's deadline (stack slot deadline_slot; 0: none), submit op
 * for f (counted in its inflight) and continue in k. The timer is armed
 * once the op is made: out of memory for it leaks that op, and never
 * leaves a timer on a waiter that is gone. */
static int step_wait(lua_State *L, fio_loop *loop, fio_fiber *w, fio_file *f,
                     fio_op *op, lua_KFunction k, int deadline_slot) {
  uint64_t deadline = (uint64_t)lua_tointeger(L, deadline_slot);
  if (deadline) fio_timer_arm(L, loop, w, deadline);
  f->inflight++;
  return fio_op_wait(loop, L, w, op, k);
}

/* In a continuation: the op's result, the op taken off w (the caller frees
 * it). A cancel raises (the op freed); first, s (if any: a socket this call
 * made) is closed, so none is left behind. */
static int step_result(lua_State *L, fio_fiber *w, fio_file *f, fio_file *s) {
  fio_op *op = w->op;
  f->inflight--;
  if (s && s->fd >= 0 && op->res == -ECANCELED && w->wake != FIO_WAKE_TIMER &&
      fio_cancel_pending(w)) {
    close(s->fd);
    s->fd = -1;
  }
  int res = fio_op_result(L, w);
  w->op = NULL;
  return res;
}

/* --- accept ------------------------------------------------------------------- *
 * Stack: server, the new Socket (closed until it has its fd), deadline. */

static int run_accept(lua_State *L, fio_fiber *w, fio_fiber *pseudo, int poll);

static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_file *f = lua_touserdata(L, 1);
  fio_op *op = w->op;
  int res = step_result(L, w, f, NULL);
  int polled = op->code == FIO_OP_POLL;
  if (res >= 0 && !polled) op->owns &= ~FIO_OWN_RESULT; /* ours now */
  fio_op_free(op);
  if (polled && res >= 0) return run_accept(L, w, NULL, 0);
  if (res == -EAGAIN || res == -EWOULDBLOCK || res == -EINTR)
    return run_accept(L, w, NULL, 1); /* (none yet: wait, then again) */
  if (res < 0) return fio_file_ioerr(L, -res);
  sock_init(lua_touserdata(L, 2), res);
  lua_settop(L, 2);
  return 1;
}

static int run_accept(lua_State *L, fio_fiber *w, fio_fiber *pseudo, int poll) {
  fio_file *f = lua_touserdata(L, 1);
  if (f->fd < 0) return fio_file_ioerr(L, EBADF);
  fio_loop *loop = fio_loop_get(L);
  w = step_begin(L, loop, w, pseudo);
  fio_op *op = newop(L, poll ? FIO_OP_POLL : FIO_OP_ACCEPT, f->fd,
                     poll ? 0 : sizeof(struct fio_sockaddr));
  if (poll) op->mode = POLLIN;
  else op->owns = FIO_OWN_RESULT; /* (closed if nobody takes it) */
  return step_wait(L, loop, w, f, op, accept_k, 3);
}

/* server:accept() -> Socket | nil, msg, errno */
static int s_accept(lua_State *L) {
  fio_file *f = toserver(L, 1);
  lua_settop(L, 1);
  fio_file_new(L, FIO_SOCKET);
  push_deadline(L, f);
  fio_fiber pseudo;
  return run_accept(L, NULL, &pseudo, 0);
}

/* --- connect ------------------------------------------------------------------ *
 * Stack: host, port, deadline (seconds in: ns after), the Socket, what
 * ("host:port", for messages). */

static int connect_step(lua_State *L, fio_fiber *w, int poll);

/* The connect ended with err (0: connected): the result. */
static int connect_end(lua_State *L, fio_file *s, int err) {
  if (!err && set_nonblock(s->fd, 0) < 0) err = errno;
  if (err) {
    close(s->fd);
    s->fd = -1;
    if (err != ETIMEDOUT) return fio_errresult(L, lua_tostring(L, 5), err);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: timeout", lua_tostring(L, 5));
    lua_pushinteger(L, err);
    return 3;
  }
  lua_settop(L, 4);
  return 1;
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_file *s = lua_touserdata(L, 4);
  fio_op *op = w->op;
  int res = step_result(L, w, s, s);
  int polled = op->code == FIO_OP_POLL;
  fio_op_free(op);
  /* (EAGAIN is not "in progress": a Unix socket's full backlog, nothing
   * started; it is the result) */
  if (!polled && (res == -EINPROGRESS || res == -EALREADY))
    return connect_step(L, w, 1);
  if (res < 0) return connect_end(L, s, -res);
  if (polled) {
    /* Writable: connected, or failed (SO_ERROR says); a socket that is
     * neither (POLLOUT|POLLHUP of an unconnected one) is not taken for
     * connected: getpeername must agree. */
    int err = 0;
    socklen_t n = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &n) < 0) err = errno;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (!err && getpeername(s->fd, (struct sockaddr *)&peer, &plen) < 0)
      err = errno == ENOTCONN ? ECONNREFUSED : errno;
    return connect_end(L, s, err);
  }
  return connect_end(L, s, 0);
}

/* The next step of a connect (poll: wait for POLLOUT, else connect), on
 * the wait w its call began. */
static int connect_step(lua_State *L, fio_fiber *w, int poll) {
  fio_file *s = lua_touserdata(L, 4);
  fio_loop *loop = fio_loop_get(L);
  if (fio_cancel_pending(w) && s->fd >= 0) {
    /* (a cancel that came as the last step ended: step_begin raises it;
     * the socket is closed first, not left to the collector) */
    close(s->fd);
    s->fd = -1;
  }
  w = step_begin(L, loop, w, NULL);
  fio_op *op = newop(L, poll ? FIO_OP_POLL : FIO_OP_CONNECT, s->fd,
                     poll ? 0 : sizeof(struct fio_sockaddr));
  if (poll) {
    op->mode = POLLOUT;
  } else {
    struct fio_sockaddr *sa = (struct fio_sockaddr *)(void *)op->mem;
    (void)make_addr(lua_tostring(L, 1), lua_tointeger(L, 2), sa); /* (checked) */
  }
  return step_wait(L, loop, w, s, op, connect_k, 3);
}

/* core._connect(host, port [, timeout]) -> Socket | nil, "host:port: msg",
 * errno. host is numeric or a Unix socket's name. */
static int l_connect(lua_State *L) {
  struct fio_sockaddr sa;
  check_addr(L, 1, &sa);
  lua_Number t = fio_opttimeout(L, 3);
  lua_settop(L, 2);
  lua_pushinteger(L, t < 0 || t == HUGE_VAL ? 0 : deadline_in(t));
  fio_file *s = fio_file_new(L, FIO_SOCKET);
  if (is_unix(lua_tostring(L, 1))) lua_pushvalue(L, 1);
  else lua_pushfstring(L, strchr(lua_tostring(L, 1), ':') ? "[%s]:%d" : "%s:%d",
                       lua_tostring(L, 1), (int)lua_tointeger(L, 2));
  /* (the wait begun before the socket is made: a cancel already pending
   * raises here, with no fd to leave behind) */
  fio_fiber pseudo, *w = step_begin(L, fio_loop_get(L), NULL, &pseudo);
  int fd = socket(sa.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fio_errresult(L, lua_tostring(L, 5), errno);
  sock_init(s, fd);
  return connect_step(L, w, 0);
}

/* --- listen, datagram sockets, pairs --------------------------------------------- */

static int setint(int fd, int level, int name, int v) {
  return setsockopt(fd, level, name, &v, sizeof v);
}

/* core._listen(host, port, backlog, reuseport, v6only) -> Server | nil, msg,
 * errno. host numeric ("::" with v6only false: both stacks) or a Unix
 * socket's name. */
static int l_listen(lua_State *L) {
  struct fio_sockaddr sa;
  check_addr(L, 1, &sa);
  int backlog = (int)luaL_optinteger(L, 3, SOMAXCONN);
  int reuseport = lua_toboolean(L, 4), v6only = lua_toboolean(L, 5);
  fio_file *f = fio_file_new(L, FIO_SERVER);
  int fam = sa.addr.ss_family;
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fio_errresult(L, "socket", errno);
  f->fd = fd;
  f->sock = 1;
  f->seekable = f->disk = 0;
  const char *step = "setsockopt";
  if (fam != AF_UNIX && setint(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0) goto fail;
  if (reuseport && setint(fd, SOL_SOCKET, SO_REUSEPORT, 1) < 0) goto fail;
  if (fam == AF_INET6 && setint(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only) < 0) goto fail;
  step = lua_tostring(L, 1);
  if (bind(fd, (struct sockaddr *)&sa.addr, sa.len) < 0) goto fail;
  step = "listen";
  if (listen(fd, backlog) < 0) goto fail;
  return 1;
fail:;
  int e = errno;
  close(fd);
  f->fd = -1;
  return fio_errresult(L, step, e);
}

static int family_of(lua_State *L, int idx) {
  static const char *const names[] = {"inet", "inet6", "unix", NULL};
  static const int fams[] = {AF_INET, AF_INET6, AF_UNIX};
  return fams[luaL_checkoption(L, idx, "inet", names)];
}

/* core._dgram(family [, host, port]) -> Socket (datagram; bound to host and
 * port if given) | nil, msg, errno */
static int l_dgram(lua_State *L) {
  int fam = family_of(L, 1);
  struct fio_sockaddr sa;
  int bound = !lua_isnoneornil(L, 2);
  if (bound) check_addr(L, 2, &sa);
  fio_file *s = fio_file_new(L, FIO_SOCKET);
  int fd = socket(bound ? sa.addr.ss_family : fam, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fio_errresult(L, "socket", errno);
  sock_init(s, fd);
  if (bound && bind(fd, (struct sockaddr *)&sa.addr, sa.len) < 0) {
    int e = errno;
    close(fd);
    s->fd = -1;
    return fio_errresult(L, lua_tostring(L, 2), e);
  }
  return 1;
}

/* core._socketpair([type]) -> Socket, Socket (Unix; "stream" or "dgram") */
static int l_socketpair(lua_State *L) {
  static const char *const names[] = {"stream", "dgram", NULL};
  int type = luaL_checkoption(L, 1, "stream", names) ? SOCK_DGRAM : SOCK_STREAM;
  fio_file *a = fio_file_new(L, FIO_SOCKET), *b = fio_file_new(L, FIO_SOCKET);
  int fds[2];
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) < 0)
    return fio_errresult(L, "socketpair", errno);
  sock_init(a, fds[0]);
  sock_init(b, fds[1]);
  return 2;
}

/* --- send and recv ----------------------------------------------------------- *
 * send: stack socket, data, bytes sent so far, deadline, and whether it is
 * a write (its results are a write's: the socket, or nil, msg, errno). */

static int run_send(lua_State *L, fio_fiber *w, fio_fiber *pseudo);

/* A send that failed with err after done bytes: nil, msg, errno, done (a
 * write: nil, msg, errno). */
static int send_failed(lua_State *L, int err, lua_Integer done) {
  fio_file_ioerr(L, err);
  if (lua_toboolean(L, 5)) return 3;
  lua_pushinteger(L, done); /* what went before the error */
  return 4;
}

/* The send is whole. */
static int send_done(lua_State *L, lua_Integer done) {
  if (lua_toboolean(L, 5)) {
    lua_settop(L, 1);
    return 1;
  }
  lua_pushinteger(L, done);
  return 1;
}

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_file *f = lua_touserdata(L, 1);
  fio_op *op = w->op;
  f->sending--;
  int res = step_result(L, w, f, NULL);
  fio_op_free(op);
  lua_Integer done = lua_tointeger(L, 3);
  if (res < 0) return send_failed(L, -res, done);
  lua_pushinteger(L, done + res);
  lua_replace(L, 3);
  return run_send(L, w, NULL);
}

static int run_send(lua_State *L, fio_fiber *w, fio_fiber *pseudo) {
  fio_file *f = lua_touserdata(L, 1);
  size_t len;
  const char *s = lua_tolstring(L, 2, &len);
  lua_Integer done = lua_tointeger(L, 3);
  if ((size_t)done >= len) return send_done(L, done);
  if (f->fd < 0) return send_failed(L, EBADF, done);
  if (f->wpos == f->wlen) { /* (nothing written before it waits) */
    ssize_t now = fio_file_send_now(f, s + done, len - (size_t)done);
    if (now < 0) return send_failed(L, (int)-now, done);
    done += now;
    if ((size_t)done >= len) return send_done(L, done);
    lua_pushinteger(L, done);
    lua_replace(L, 3);
  }
  fio_loop *loop = fio_loop_get(L);
  w = step_begin(L, loop, w, pseudo);
  fio_op *op = newop(L, FIO_OP_SEND, f->fd, 0);
  op->buf = (char *)s + done; /* (the string stays on the stack) */
  op->len = len - (size_t)done > FIO_MAXIO ? FIO_MAXIO : len - (size_t)done;
  f->sending++;
  return step_wait(L, loop, w, f, op, send_k, 4);
}

/* sock:send(data [, i [, j]]) -> bytes sent (all of data[i..j]) | nil, msg,
 * errno, bytes sent before the error. Unbuffered: past write's buffer. */
static int s_send(lua_State *L) {
  fio_file *f = tosock(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer i = luaL_optinteger(L, 3, 1), j = luaL_optinteger(L, 4, -1);
  if (i < 0) i = (lua_Integer)len + i + 1;
  if (j < 0) j = (lua_Integer)len + j + 1;
  if (i < 1) i = 1;
  if (j > (lua_Integer)len) j = (lua_Integer)len;
  lua_settop(L, 1);
  if (i > j) lua_pushliteral(L, "");
  else lua_pushlstring(L, s + i - 1, (size_t)(j - i + 1));
  lua_pushinteger(L, 0);
  push_deadline(L, f);
  lua_pushboolean(L, 0);
  fio_fiber pseudo;
  return run_send(L, NULL, &pseudo);
}

/* sock:write(...): a File's write. Unbuffered (a socket's default), it is
 * a send, which waits for nothing but the socket (a File's write would
 * wait for another fiber's read of it to end: a socket goes both ways). */
static int s_write(lua_State *L) {
  fio_file *f = tosock(L, 1);
  /* (buffered, or a buffered write on its way: io's path, in its order) */
  int writing = f->busy && !(f->bufop && f->bufop->code == FIO_OP_RECV);
  if (f->mode != BUF_NO || f->wpos < f->wlen || writing) return fio_file_write(L);
  fio_file_collect_args(L, 2);
  lua_settop(L, 2);
  lua_pushinteger(L, 0);
  push_deadline(L, f);
  lua_pushboolean(L, 1);
  fio_fiber pseudo;
  return run_send(L, NULL, &pseudo);
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_file *f = lua_touserdata(L, 1);
  fio_op *op = w->op;
  int res = step_result(L, w, f, NULL);
  if (res < 0) {
    fio_op_free(op);
    return fio_file_ioerr(L, -res);
  }
  lua_pushlstring(L, op->mem, (size_t)res);
  fio_buf_put(w->loop, op->mem, op->cap); /* (the loop's, again) */
  op->mem = NULL;
  fio_op_free(op);
  return 1;
}

/* sock:recv([max]) -> up to max bytes (64 KiB), as they come; "" at the end
 * of the stream | nil, msg, errno. What read buffered comes first. */
static int s_recv(lua_State *L) {
  fio_file *f = tosock(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, FIO_FILE_BUFSZ);
  luaL_argcheck(L, max > 0 && max <= FIO_MAXIO, 2, "size out of range");
  if (f->rpos < f->rlen) {
    size_t n = f->rlen - f->rpos < (size_t)max ? f->rlen - f->rpos : (size_t)max;
    lua_pushlstring(L, f->rbuf + f->rpos, n);
    f->rpos += n;
    return 1;
  }
  lua_settop(L, 1);
  lua_pushnil(L);
  push_deadline(L, f);
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = step_begin(L, loop, NULL, &pseudo);
  fio_op *op = newop(L, FIO_OP_RECV, f->fd, 0);
  /* (one of the loop's buffers, when max fits: no malloc per call; an op
   * freed before it completes frees it with its mem) */
  op->mem = max <= FIO_BUFSZ ? fio_buf_get(loop) : malloc((size_t)max);
  if (!op->mem) {
    fio_op_free(op);
    return luaL_error(L, "not enough memory");
  }
  op->buf = op->mem;
  op->cap = max <= FIO_BUFSZ ? FIO_BUFSZ : (size_t)max;
  op->len = (size_t)max;
  return step_wait(L, loop, w, f, op, recv_k, 3);
}

/* --- messages: sendto, recvfrom, fd passing ------------------------------------ */

/* What a RECVMSG or SENDMSG op holds at mem: the header, one iovec, the
 * peer's address, room for one fd's control message, then the data. */
typedef struct msgbuf {
  struct msghdr h;
  struct iovec iov;
  struct fio_sockaddr peer;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  char data[];
} msgbuf;

/* A message op for f: len bytes of data room (copied from src if any),
 * the peer's address room, with_fd: room for one fd. */
static fio_op *msgop(lua_State *L, fio_file *f, int code, const char *src,
                     size_t len, int with_fd) {
  fio_op *op = newop(L, code, f->fd, sizeof(msgbuf) + len);
  msgbuf *m = (msgbuf *)(void *)op->mem;
  memset(m, 0, sizeof *m);
  if (src) memcpy(m->data, src, len);
  m->iov.iov_base = m->data;
  m->iov.iov_len = len;
  m->h.msg_iov = &m->iov;
  m->h.msg_iovlen = 1;
  m->h.msg_name = &m->peer.addr;
  m->h.msg_namelen = sizeof m->peer.addr;
  if (with_fd) {
    m->h.msg_control = m->ctl.buf;
    m->h.msg_controllen = sizeof m->ctl.buf;
  }
  return op;
}

/* Stack of sendto / sendfd: socket, deadline. */
static int sendmsg_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_file *f = lua_touserdata(L, 1);
  fio_op *op = w->op;
  int res = step_result(L, w, f, NULL);
  fio_op_free(op);
  if (res < 0) return fio_file_ioerr(L, -res);
  lua_pushinteger(L, res);
  return 1;
}

static int sendmsg_go(lua_State *L, fio_file *f, fio_op *op, fio_fiber *w) {
  return step_wait(L, fio_loop_get(L), w, f, op, sendmsg_k, 2);
}

/* sock:sendto(data, host, port) -> bytes | nil, msg, errno. On a connected
 * socket, host may be nil. One datagram. */
static int s_sendto(lua_State *L) {
  fio_file *f = tosock(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  struct fio_sockaddr sa;
  int to = !lua_isnoneornil(L, 3);
  if (to) check_addr(L, 3, &sa);
  lua_settop(L, 1); /* (the data is copied into the op) */
  push_deadline(L, f);
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = step_begin(L, loop, NULL, &pseudo);
  fio_op *op = msgop(L, f, FIO_OP_SENDMSG, s, len, 0);
  msgbuf *m = (msgbuf *)(void *)op->mem;
  if (to) {
    m->peer = sa;
    m->h.msg_namelen = sa.len;
  } else {
    m->h.msg_name = NULL;
    m->h.msg_namelen = 0;
  }
  return sendmsg_go(L, f, op, w);
}

/* Stack of recvfrom / recvfd: socket, deadline (recvfd: then the File a
 * received fd goes into). */
static int recvmsg_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_file *f = lua_touserdata(L, 1);
  fio_op *op = w->op;
  int res = step_result(L, w, f, NULL);
  if (res < 0) {
    fio_op_free(op);
    return fio_file_ioerr(L, -res);
  }
  msgbuf *m = (msgbuf *)(void *)op->mem;
  int fd = -1;
  if (m->h.msg_control) { /* recvfd: the fd that came, if one did */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m->h); c; c = CMSG_NXTHDR(&m->h, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
          c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *fds = (int *)(void *)CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
          if (fd < 0) fd = fds[i];
          else close(fds[i]); /* (one asked for: the others closed) */
        }
      }
    if (fd >= 0) {
      /* (into the File made before the wait: nothing here allocates
       * before the fd is owned, so out of memory leaves no fd open) */
      fio_file *g = lua_touserdata(L, 3);
      struct stat st;
      if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
        lua_pushvalue(L, 3);
        luaL_setmetatable(L, FIO_SOCKET);
        lua_pop(L, 1);
        sock_init(g, fd);
      } else {
        int fl = fcntl(fd, F_GETFL);
        int acc = fl & O_ACCMODE;
        g->fd = fd;
        g->canread = acc == O_RDONLY || acc == O_RDWR;
        g->canwrite = acc == O_WRONLY || acc == O_RDWR;
      }
      lua_pushvalue(L, 3);
    } else {
      lua_pushnil(L);
    }
    lua_pushlstring(L, m->data, (size_t)res);
    fio_op_free(op);
    return 2; /* file | nil, data */
  }
  lua_pushlstring(L, m->data, (size_t)res);
  push_addr(L, (struct sockaddr *)&m->peer.addr, m->h.msg_namelen);
  fio_op_free(op);
  return 3;
}

/* sock:recvfrom([max]) -> data, host, port (a Unix peer: path, nil) | nil,
 * msg, errno. One datagram (its excess past max dropped, as recvfrom). */
static int s_recvfrom(lua_State *L) {
  fio_file *f = tosock(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 65536);
  luaL_argcheck(L, max > 0 && max <= FIO_MAXIO, 2, "size out of range");
  lua_settop(L, 1);
  push_deadline(L, f);
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = step_begin(L, loop, NULL, &pseudo);
  fio_op *op = msgop(L, f, FIO_OP_RECVMSG, NULL, (size_t)max, 0);
  return step_wait(L, loop, w, f, op, recvmsg_k, 2);
}

/* sock:sendfd(file_or_fd [, data]) -> bytes | nil, msg, errno: the fd
 * passed (SCM_RIGHTS) with data (one byte, "\0", when none: a stream needs
 * one) over a Unix socket. The sender's fd stays open. */
static int s_sendfd(lua_State *L) {
  fio_file *f = tosock(L, 1);
  int fd;
  if (lua_isinteger(L, 2)) {
    fd = (int)lua_tointeger(L, 2);
  } else {
    fio_file *g = fio_file_test(L, 2);
    if (!g) luaL_typeerror(L, 2, "File or fd");
    if (g->fd < 0) luaL_argerror(L, 2, "closed file");
    fd = g->fd;
  }
  size_t len;
  const char *s = luaL_optlstring(L, 3, "", &len);
  if (len == 0) {
    s = "";
    len = 1;
  }
  lua_settop(L, 2); /* (the File kept alive at 3 until it is sent) */
  push_deadline(L, f);
  lua_insert(L, 2);
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = step_begin(L, loop, NULL, &pseudo);
  fio_op *op = msgop(L, f, FIO_OP_SENDMSG, s, len, 1);
  msgbuf *m = (msgbuf *)(void *)op->mem;
  m->h.msg_name = NULL;
  m->h.msg_namelen = 0;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m->h);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  m->h.msg_controllen = CMSG_SPACE(sizeof(int));
  return sendmsg_go(L, f, op, w);
}

/* sock:recvfd([max]) -> File (a Socket if it is one), data | nil, data (no
 * fd came) | nil, msg, errno. The fd is close-on-exec. */
static int s_recvfd(lua_State *L) {
  fio_file *f = tosock(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, 4096);
  luaL_argcheck(L, max > 0 && max <= FIO_MAXIO, 2, "size out of range");
  lua_settop(L, 1);
  push_deadline(L, f);
  (void)fio_file_new(L, FIO_FILE); /* (slot 3: what a received fd goes into) */
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = step_begin(L, loop, NULL, &pseudo);
  fio_op *op = msgop(L, f, FIO_OP_RECVMSG, NULL, (size_t)max, 1);
  op->flags = MSG_CMSG_CLOEXEC;
  return step_wait(L, loop, w, f, op, recvmsg_k, 2);
}

/* --- plain calls --------------------------------------------------------------- */

/* sock:connect(host, port) (a datagram socket: its default peer) -> sock |
 * nil, msg, errno. Does not wait. */
static int s_dconnect(lua_State *L) {
  fio_file *f = tosock(L, 1);
  struct fio_sockaddr sa;
  check_addr(L, 2, &sa);
  if (connect(f->fd, (struct sockaddr *)&sa.addr, sa.len) < 0)
    return fio_errresult(L, lua_tostring(L, 2), errno);
  lua_settop(L, 1);
  return 1;
}

/* sock:shutdown([how]): "read", "write" or "both" (default) -> sock */
static int s_shutdown(lua_State *L) {
  fio_file *f = tosock(L, 1);
  static const char *const names[] = {"read", "write", "both", NULL};
  static const int hows[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
  int how = hows[luaL_checkoption(L, 2, "both", names)];
  if (shutdown(f->fd, how) < 0) return fio_errresult(L, NULL, errno);
  lua_settop(L, 1);
  return 1;
}

static int names(lua_State *L, int peer) {
  fio_file *f = toany(L, 1);
  struct fio_sockaddr sa;
  sa.len = sizeof sa.addr;
  int r = peer ? getpeername(f->fd, (struct sockaddr *)&sa.addr, &sa.len)
               : getsockname(f->fd, (struct sockaddr *)&sa.addr, &sa.len);
  if (r < 0) return fio_errresult(L, NULL, errno);
  return push_addr(L, (struct sockaddr *)&sa.addr, sa.len);
}

/* getpeername() / getsockname() -> host, port | path, nil */
static int s_getpeername(lua_State *L) { return names(L, 1); }
static int s_getsockname(lua_State *L) { return names(L, 0); }

/* settimeout([seconds]): each later call on the handle fails with nil,
 * "timeout" once it has waited that long; nil: no timeout. -> handle */
static int s_settimeout(lua_State *L) {
  fio_file *f = toany(L, 1);
  lua_Number t = fio_opttimeout(L, 2);
  f->timeout = t == HUGE_VAL ? -1 : t;
  lua_settop(L, 1);
  return 1;
}

/* The multicast group at idx (and the interface's address at idx + 1). */
static int membership(lua_State *L, int fd, int add, int idx) {
  const char *group = luaL_checkstring(L, idx);
  const char *iface = luaL_optstring(L, idx + 1, NULL);
  struct ip_mreq m4;
  struct ipv6_mreq m6;
  memset(&m4, 0, sizeof m4);
  memset(&m6, 0, sizeof m6);
  if (inet_pton(AF_INET, group, &m4.imr_multiaddr) == 1) {
    m4.imr_interface.s_addr = htonl(INADDR_ANY);
    if (iface && inet_pton(AF_INET, iface, &m4.imr_interface) != 1)
      luaL_argerror(L, idx + 1, "not an IPv4 address");
    return setsockopt(fd, IPPROTO_IP, add ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP,
                      &m4, sizeof m4);
  }
  if (inet_pton(AF_INET6, group, &m6.ipv6mr_multiaddr) == 1) {
    m6.ipv6mr_interface = iface ? (unsigned)atoi(iface) : 0;
    return setsockopt(fd, IPPROTO_IPV6, add ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP,
                      &m6, sizeof m6);
  }
  return luaL_argerror(L, idx, "not a multicast group address");
}

/* setoption(name, value [, iface]) -> handle | nil, msg, errno. Names:
 * nodelay, keepalive, linger (seconds, or false), rcvbuf, sndbuf,
 * reuseaddr, broadcast, ttl, multicast_ttl, multicast_loop, multicast_if
 * (the IPv4 address of the interface multicasts leave by), add_membership
 * and drop_membership (a group address, the interface's). */
static int s_setoption(lua_State *L) {
  fio_file *f = toany(L, 1);
  static const char *const opts[] = {
      "nodelay", "keepalive", "linger", "rcvbuf", "sndbuf", "reuseaddr",
      "broadcast", "ttl", "multicast_ttl", "multicast_loop", "add_membership",
      "drop_membership", "multicast_if", NULL};
  int which = luaL_checkoption(L, 2, NULL, opts), r;
  int on = lua_isboolean(L, 3) ? lua_toboolean(L, 3) : 0;
  switch (which) {
  case 0: r = setint(f->fd, IPPROTO_TCP, TCP_NODELAY, on); break;
  case 1: r = setint(f->fd, SOL_SOCKET, SO_KEEPALIVE, on); break;
  case 2: {
    struct linger lg = {0, 0};
    if (!(lua_isboolean(L, 3) && !on)) {
      lg.l_onoff = 1;
      lg.l_linger = (int)luaL_checkinteger(L, 3);
    }
    r = setsockopt(f->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    break;
  }
  case 3: r = setint(f->fd, SOL_SOCKET, SO_RCVBUF, (int)luaL_checkinteger(L, 3)); break;
  case 4: r = setint(f->fd, SOL_SOCKET, SO_SNDBUF, (int)luaL_checkinteger(L, 3)); break;
  case 5: r = setint(f->fd, SOL_SOCKET, SO_REUSEADDR, on); break;
  case 6: r = setint(f->fd, SOL_SOCKET, SO_BROADCAST, on); break;
  case 7: r = setint(f->fd, IPPROTO_IP, IP_TTL, (int)luaL_checkinteger(L, 3)); break;
  case 8: r = setint(f->fd, IPPROTO_IP, IP_MULTICAST_TTL, (int)luaL_checkinteger(L, 3)); break;
  case 9: r = setint(f->fd, IPPROTO_IP, IP_MULTICAST_LOOP, on); break;
  case 12: {
    struct in_addr a;
    if (inet_pton(AF_INET, luaL_checkstring(L, 3), &a) != 1)
      luaL_argerror(L, 3, "not an IPv4 address");
    r = setsockopt(f->fd, IPPROTO_IP, IP_MULTICAST_IF, &a, sizeof a);
    break;
  }
  default: r = membership(L, f->fd, which == 10, 3); break;
  }
  if (r < 0) return fio_errresult(L, lua_tostring(L, 2), errno);
  lua_settop(L, 1);
  return 1;
}

/* --- name resolution -------------------------------------------------------------- */

static void gai_dtor(fio_op *op) {
  if (op->buf && op->buf != op->mem) freeaddrinfo((struct addrinfo *)(void *)op->buf);
  op->buf = NULL;
}

/* Push the list of addresses ({family =, host =}) in ai, each once. */
static void push_addrinfo(lua_State *L, const struct addrinfo *ai) {
  lua_newtable(L);
  int n = 0;
  for (; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    push_addr(L, ai->ai_addr, ai->ai_addrlen);
    lua_pop(L, 1); /* (the port) */
    int dup = 0;
    for (int i = 1; i <= n && !dup; i++) {
      lua_rawgeti(L, -2, i);
      lua_getfield(L, -1, "host");
      dup = lua_rawequal(L, -1, -3);
      lua_pop(L, 2);
    }
    if (dup) {
      lua_pop(L, 1);
      continue;
    }
    lua_createtable(L, 0, 2);
    lua_insert(L, -2);
    lua_setfield(L, -2, "host");
    lua_pushstring(L, ai->ai_family == AF_INET ? "inet" : "inet6");
    lua_setfield(L, -2, "family");
    lua_rawseti(L, -2, ++n);
  }
}

static int resolve_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  if (!op) { /* canceled: the lookup goes on without us (detach_on_cancel) */
    fio_wait_end(L, w);
    return luaL_error(L, "resolve: woken without an answer"); /* (not reached) */
  }
  int res = fio_op_result(L, w); /* (a cancel frees op: its dtor the list) */
  w->op = NULL;
  if (res < 0) {
    fio_op_free(op);
    lua_pushnil(L);
    if (FIO_IS_GAI_ERR(res))
      lua_pushfstring(L, "%s: %s", lua_tostring(L, 1), gai_strerror(FIO_GAI_CODE(res)));
    else
      lua_pushfstring(L, "%s: %s", lua_tostring(L, 1), strerror(-res));
    lua_pushinteger(L, FIO_IS_GAI_ERR(res) ? ENOENT : -res);
    return 3;
  }
  push_addrinfo(L, (struct addrinfo *)(void *)op->buf);
  fio_op_free(op);
  return 1;
}

/* core._resolve(host [, family [, passive]]) -> { {family =, host =}, ... }
 * | nil, "host: msg", errno. A numeric host never waits. */
static int l_resolve(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int fam = lua_isnoneornil(L, 2) ? AF_UNSPEC : family_of(L, 2);
  int passive = lua_toboolean(L, 3);
  struct fio_sockaddr sa;
  if (!make_addr(host, 0, &sa) && sa.addr.ss_family != AF_UNIX &&
      (fam == AF_UNSPEC || fam == sa.addr.ss_family)) {
    struct addrinfo ai;
    memset(&ai, 0, sizeof ai);
    ai.ai_family = sa.addr.ss_family;
    ai.ai_addr = (struct sockaddr *)&sa.addr;
    ai.ai_addrlen = sa.len;
    push_addrinfo(L, &ai);
    return 1;
  }
  lua_settop(L, 1);
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  size_t n = strlen(host) + 1;
  fio_op *op = newop(L, FIO_OP_GETADDRINFO, -1, n);
  memcpy(op->mem, host, n);
  op->path = op->mem;
  op->path2 = NULL;
  op->buf = NULL;
  op->dtor = gai_dtor;
  op->flags = fam;
  op->mode = SOCK_STREAM;
  op->off = (uint64_t)((passive ? AI_PASSIVE : 0) | AI_ADDRCONFIG);
  op->detach_on_cancel = 1; /* (getaddrinfo cannot be stopped) */
  return fio_op_wait(loop, L, w, op, resolve_k);
}

/* --- the module ------------------------------------------------------------------- */

static int s_fd(lua_State *L) {
  lua_pushinteger(L, toany(L, 1)->fd);
  return 1;
}

/* Module table at -2, loop userdata at -1. */
void fio_open_socket(lua_State *L) {
  static const luaL_Reg sock_methods[] = {
      {"write", s_write},
      {"send", s_send},           {"recv", s_recv},
      {"sendto", s_sendto},       {"recvfrom", s_recvfrom},
      {"sendfd", s_sendfd},       {"recvfd", s_recvfd},
      {"connect", s_dconnect},    {"shutdown", s_shutdown},
      {"getpeername", s_getpeername}, {"getsockname", s_getsockname},
      {"settimeout", s_settimeout}, {"setoption", s_setoption},
      {NULL, NULL}};
  static const luaL_Reg server_methods[] = {
      {"accept", s_accept},       {"getsockname", s_getsockname},
      {"settimeout", s_settimeout}, {"setoption", s_setoption},
      {"close", fio_file_close},  {"fd", s_fd},  {NULL, NULL}};
  int loop = lua_absindex(L, -1);
  /* Socket: a File's stream methods and its own */
  luaL_newmetatable(L, FIO_SOCKET);
  fio_file_metamethods(L, loop);
  lua_newtable(L);
  fio_file_stream_methods(L, loop);
  lua_pushvalue(L, loop);
  luaL_setfuncs(L, sock_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  /* Server */
  luaL_newmetatable(L, FIO_SERVER);
  fio_file_metamethods(L, loop);
  lua_newtable(L);
  lua_pushvalue(L, loop);
  luaL_setfuncs(L, server_methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {
      {"_connect", l_connect}, {"_listen", l_listen}, {"_dgram", l_dgram},
      {"_socketpair", l_socketpair}, {"_resolve", l_resolve}, {NULL, NULL}};
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_pop(L, 1);
}
