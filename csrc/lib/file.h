/* file.h — the handle behind a File, and what socket.c (Socket and Server
 * are handles too, with their own metatables) shares with file.c. */
#ifndef FIBERIO_FILE_H
#define FIBERIO_FILE_H

#include <sys/types.h>

#include <lauxlib.h>
#include <lua.h>

#include "core/loop.h"
#include "core/op.h"

#pragma GCC visibility push(hidden) /* (core/loop.h) */

#define FIO_SOCKET "fiberio.Socket"
#define FIO_SERVER "fiberio.Server"

#define FIO_FILE_BUFSZ (64 * 1024) /* a buffer's size, unless setvbuf says */

enum { BUF_FULL, BUF_LINE, BUF_NO }; /* fio_file.mode */

typedef struct fio_file {
  int fd;             /* -1: closed */
  uint8_t isstd;      /* fio.stdin/stdout/stderr: close refuses */
  uint8_t cstdout;    /* fio.stdout: writes go through C's stdout */
  uint8_t mode;       /* BUF_* */
  int8_t seekable;    /* -1: not known yet */
  uint8_t append;     /* O_APPEND (known with seekable) */
  int8_t disk;        /* a regular file or block device; -1: not known */
  uint8_t eof;        /* the last fill of this read call read nothing */
  uint8_t canread, canwrite; /* from the open mode, as stdio's */
  int busy;           /* an op of this handle's buffered I/O is in flight */
  int inflight;       /* ops in flight on fd (pread, pwrite, sync, ...) */
  fio_op *bufop;      /* the op that borrows a buffer, and which one */
  char *bufop_base;
  fio_list idle;      /* callers waiting for busy to clear */
  size_t bufsize;     /* capacity for new buffers (setvbuf) */
  char *rbuf;         /* unread bytes: rbuf[rpos, rlen) */
  size_t rcap, rpos, rlen;
  char *wbuf;         /* unwritten bytes: wbuf[wpos, wlen) */
  size_t wcap, wpos, wlen;
  struct fio_file *eprev, *enext; /* the at-exit list */
  int etracked;                   /* on it (from the first buffered write) */
  uint8_t sock;       /* a socket: its reads and writes are recv and send */
  int sending;        /* a Socket's send() calls in flight (socket.c) */
  lua_Number timeout; /* a Socket's, per operation, in seconds; < 0: none */
} fio_file;

/* A new closed handle with metatable tname (FIO_FILE, FIO_SOCKET,
 * FIO_SERVER), pushed. */
fio_file *fio_file_new(lua_State *L, const char *tname);
/* The handle at idx (any of the three kinds), or NULL. */
fio_file *fio_file_test(lua_State *L, int idx);
/* The open handle at idx, or raise ("attempt to use a closed file"). */
fio_file *fio_file_check(lua_State *L, int idx);
/* The File methods a stream has (read, write, lines, flush, setvbuf,
 * close, stat, fd; not seek, pread, pwrite, sync, truncate): set into the
 * table at -1, with the loop userdata at index loop as their upvalue. */
void fio_file_stream_methods(lua_State *L, int loop);
/* file:write(...), the method; and its arguments (strings and numbers,
 * formatted as io formats them) from first on, made one string there. */
int fio_file_write(lua_State *L);
void fio_file_collect_args(lua_State *L, int first);
/* handle:close(): a File's, a Socket's, a Server's (the method). */
int fio_file_close(lua_State *L);
/* The metamethods of every handle (__gc, __close, __tostring): likewise. */
void fio_file_metamethods(lua_State *L, int loop);
/* A socket's bytes sent at once, on this thread, when nothing of f is
 * on its way out already (so nothing overtakes it): what send(2) with
 * MSG_DONTWAIT took (0: none, the socket is full), or -errno. luv's
 * uv_try_write; the rest goes as an op, which waits. */
ssize_t fio_file_send_now(fio_file *f, const char *p, size_t n);
/* Push nil, the message for err ("timeout" for ETIMEDOUT: a Socket's
 * deadline), err; returns 3. */
int fio_file_ioerr(lua_State *L, int err);

#pragma GCC visibility pop
#endif
