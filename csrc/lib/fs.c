/* fs.c — path operations (stat, lstat, readdir, mkdir, rmdir, unlink,
 * rename, link, symlink, readlink, access, chmod, truncate, realpath,
 * mkdtemp) and whole-file operations (readfile, writefile, copyfile).
 * Failures return nil, "path: message", errno, except rename, whose message
 * is the bare one, as os.rename's. mkdirp, scandir and walk are in Lua. */
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/loop.h"
#include "core/op.h"
#include "io/exec.h"
#include "lib/fs.h"
#include "lib/lib.h"

static const char *typename_of(unsigned mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "directory";
  case S_IFLNK: return "link";
  case S_IFIFO: return "fifo";
  case S_IFSOCK: return "socket";
  case S_IFCHR: return "char";
  case S_IFBLK: return "block";
  }
  return "unknown";
}

static const char *dtype_name(unsigned char t) {
  switch (t) {
  case DT_REG: return "file";
  case DT_DIR: return "directory";
  case DT_LNK: return "link";
  case DT_FIFO: return "fifo";
  case DT_SOCK: return "socket";
  case DT_CHR: return "char";
  case DT_BLK: return "block";
  }
  return "unknown";
}

static void setnum(lua_State *L, const char *k, lua_Number v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

void fio_push_statx(lua_State *L, const struct statx *st) {
  lua_createtable(L, 0, 17);
  fio_fill_statx(L, st);
}

void fio_fill_statx(lua_State *L, const struct statx *st) {
  setint(L, "size", (lua_Integer)st->stx_size);
  setint(L, "mode", st->stx_mode);
  lua_pushstring(L, typename_of(st->stx_mode));
  lua_setfield(L, -2, "type");
  setint(L, "perm", st->stx_mode & 07777);
  setint(L, "nlink", st->stx_nlink);
  setint(L, "uid", st->stx_uid);
  setint(L, "gid", st->stx_gid);
  setint(L, "ino", (lua_Integer)st->stx_ino);
  setint(L, "dev", (lua_Integer)makedev(st->stx_dev_major, st->stx_dev_minor));
  setint(L, "blocks", (lua_Integer)st->stx_blocks);
  setnum(L, "atime", (lua_Number)st->stx_atime.tv_sec + st->stx_atime.tv_nsec / 1e9);
  setnum(L, "mtime", (lua_Number)st->stx_mtime.tv_sec + st->stx_mtime.tv_nsec / 1e9);
  setnum(L, "ctime", (lua_Number)st->stx_ctime.tv_sec + st->stx_ctime.tv_nsec / 1e9);
  /* exact times, for fio.utime(path, st) (cp -a, rsync -t) */
  setint(L, "atime_ns", (lua_Integer)st->stx_atime.tv_sec * 1000000000 + st->stx_atime.tv_nsec);
  setint(L, "mtime_ns", (lua_Integer)st->stx_mtime.tv_sec * 1000000000 + st->stx_mtime.tv_nsec);
  setint(L, "ctime_ns", (lua_Integer)st->stx_ctime.tv_sec * 1000000000 + st->stx_ctime.tv_nsec);
  setint(L, "rdev", (lua_Integer)makedev(st->stx_rdev_major, st->stx_rdev_minor));
}

unsigned fio_checkperm(lua_State *L, int arg) {
  lua_Integer m = 0;
  int isint = 0;
  if (lua_type(L, arg) == LUA_TSTRING) {
    /* (not lua_tointeger: Lua reads "0755" as decimal 755) */
    const char *s = lua_tostring(L, arg);
    isint = *s != 0;
    for (; *s >= '0' && *s <= '7' && m <= 07777; s++) m = m * 8 + (*s - '0');
    if (*s && m <= 07777) isint = 0; /* (a stop at m > 07777: range) */
  } else if (lua_type(L, arg) == LUA_TNUMBER) {
    m = lua_tointegerx(L, arg, &isint);
  }
  if (!isint)
    return (unsigned)luaL_argerror(L, arg, "permission must be an integer or "
                                   "an octal string such as \"0644\"");
  if (m < 0 || m > 07777)
    return (unsigned)luaL_argerror(L, arg, "permission out of range (0 to 07777)");
  return (unsigned)m;
}

unsigned fio_optperm(lua_State *L, int arg, unsigned def) {
  return lua_isnoneornil(L, arg) ? def : fio_checkperm(L, arg);
}

/* --- one-op path calls ---------------------------------------------------------- */

/* What a registered function does, its upvalue 2 (a light userdata; one
 * read where three integer upvalues cost a tenth of a short call): the op
 * code of a path call (0: the function makes its own ops), the op's flags
 * and its default mode. */
typedef struct fs_fn {
  const char *name;
  lua_CFunction fn;
  int code, flags;
  unsigned mode;
} fs_fn;

static const fs_fn *fn_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(2));
}

/* Stack: the call's arguments; upvalue 2: its fs_fn. The op's memory:
 * [result area][path\0][path2\0]. */
static int path_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  int res = fio_op_result(L, w); /* raises Canceled (op freed) */
  w->op = NULL;
  if (res == -ERANGE && op->code == FIO_OP_GETXATTR && op->len < XATTR_SIZE_MAX) {
    /* (the ring read into the first area: room for the largest value) */
    if (fio_op_area_grow(op, XATTR_SIZE_MAX) < 0) {
      fio_op_give(w->loop, op);
      return luaL_error(L, "not enough memory");
    }
    return fio_op_again(L, w, op, path_k, NULL);
  }
  if (res < 0) {
    int code = op->code;
    fio_op_give(w->loop, op);
    if (code == FIO_OP_RENAMEAT) return fio_errresult(L, NULL, -res);
    /* symlink fails about the link it makes, never about its target text */
    if (code == FIO_OP_SYMLINKAT)
      return fio_errresult(L, lua_tostring(L, 2), -res);
    return fio_errresult(L, lua_tostring(L, 1), -res);
  }
  switch (op->code) {
  case FIO_OP_STATX:
    fio_push_statx(L, (struct statx *)op->mem);
    break;
  case FIO_OP_GETDENTS: {
    lua_createtable(L, res / 32, 0);
    int n = 0;
    for (int pos = 0; pos < res;) {
      struct dirent64 *d = (struct dirent64 *)(op->mem + pos);
      pos += d->d_reclen;
      const char *name = d->d_name;
      if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
        continue;
      lua_createtable(L, 0, 2);
      lua_pushstring(L, name);
      lua_setfield(L, -2, "name");
      lua_pushstring(L, dtype_name(d->d_type));
      lua_setfield(L, -2, "type");
      lua_rawseti(L, -2, ++n);
    }
    break;
  }
  case FIO_OP_READLINK:
  case FIO_OP_REALPATH:
    lua_pushlstring(L, op->mem, (size_t)res);
    break;
  case FIO_OP_MKDTEMP:
    lua_pushstring(L, op->mem);
    break;
  case FIO_OP_GETXATTR:
    lua_pushlstring(L, op->mem, (size_t)res);
    break;
  case FIO_OP_LISTXATTR: {
    lua_newtable(L);
    int n = 0;
    for (const char *p = op->mem, *end = op->mem + res; p < end; p += strlen(p) + 1)
      if (*p) {
        lua_pushstring(L, p);
        lua_rawseti(L, -2, ++n);
      }
    break;
  }
  case FIO_OP_STATVFS: {
    const struct statvfs *v = (const struct statvfs *)(void *)op->mem;
    lua_createtable(L, 0, 11);
    setint(L, "bsize", (lua_Integer)v->f_bsize);
    setint(L, "frsize", (lua_Integer)v->f_frsize);
    setint(L, "blocks", (lua_Integer)v->f_blocks);
    setint(L, "bfree", (lua_Integer)v->f_bfree);
    setint(L, "bavail", (lua_Integer)v->f_bavail);
    setint(L, "files", (lua_Integer)v->f_files);
    setint(L, "ffree", (lua_Integer)v->f_ffree);
    setint(L, "favail", (lua_Integer)v->f_favail);
    setint(L, "fsid", (lua_Integer)v->f_fsid);
    setint(L, "flag", (lua_Integer)v->f_flag);
    setint(L, "namemax", (lua_Integer)v->f_namemax);
    break;
  }
  default:
    lua_pushboolean(L, 1);
  }
  fio_op_give(w->loop, op);
  return 1;
}

/* Run fn's op on path (and path2), with `area` bytes for the result before
 * the paths. */
static int path_call(lua_State *L, const fs_fn *fn, const char *path,
                     const char *path2, size_t area, const void *area_init) {
  int code = fn->code;
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  size_t n1 = strlen(path) + 1, n2 = path2 ? strlen(path2) + 1 : 0;
  /* (readdir's memory grows to hold the directory: not a spare's) */
  fio_op *op = code == FIO_OP_GETDENTS ? fio_op_new(area + n1 + n2)
                                       : fio_op_take(loop, area + n1 + n2);
  if (!op) return luaL_error(L, "not enough memory");
  op->code = (uint8_t)code;
  memcpy(op->mem + area, path, n1);
  op->path = op->mem + area;
  if (path2) {
    memcpy(op->mem + area + n1, path2, n2);
    op->path2 = op->mem + area + n1;
  }
  op->len = area;
  if (area_init) memcpy(op->mem, area_init, area);
  /* the caller set nothing else yet: flags and mode are the function's */
  op->flags = fn->flags;
  op->mode = fn->mode;
  if (code == FIO_OP_MKDIRAT || code == FIO_OP_CHMOD) {
    if (!lua_isnoneornil(L, 2)) op->mode = (uint32_t)lua_tointeger(L, 2);
  } else if (code == FIO_OP_ACCESS) {
    op->mode = (uint32_t)lua_tointeger(L, 2);
  } else if (code == FIO_OP_TRUNCATE) {
    op->off = (uint64_t)lua_tointeger(L, 2);
  } else if (code == FIO_OP_CHOWN || code == FIO_OP_MKNOD) {
    op->mode = (uint32_t)lua_tointeger(L, 2); /* uid; type and perm */
    op->off = (uint64_t)lua_tointeger(L, 3);  /* gid; dev */
  } else if (code == FIO_OP_SETXATTR) {
    size_t n;
    op->buf = (char *)lua_tolstring(L, 3, &n); /* (lives on this stack) */
    op->want = n;
    op->mode = (uint32_t)lua_tointeger(L, 4);
  }
  return fio_op_wait(loop, L, w, op, path_k);
}

/* The generic path function: upvalues loop, its fs_fn. */
static int l_path1(lua_State *L) {
  const fs_fn *fn = fn_of(L);
  int code = fn->code;
  const char *path = luaL_checkstring(L, 1);
  size_t area = 0;
  switch (code) {
  case FIO_OP_STATX: area = sizeof(struct statx); break;
  case FIO_OP_READLINK: area = 256; break; /* (exec.c reads a longer again) */
  case FIO_OP_MKDIRAT:
  case FIO_OP_CHMOD:
    if (code == FIO_OP_CHMOD || !lua_isnoneornil(L, 2)) {
      lua_pushinteger(L, fio_checkperm(L, 2)); /* ("0755": octal) */
      lua_replace(L, 2);
    }
    break;
  case FIO_OP_ACCESS: {
    /* a string of r, w, x ("" or nil: exists) */
    const char *m = luaL_optstring(L, 2, "");
    int mode = 0;
    for (; *m; m++) {
      if (*m == 'r') mode |= R_OK;
      else if (*m == 'w') mode |= W_OK;
      else if (*m == 'x') mode |= X_OK;
      else if (*m != 'f') return luaL_argerror(L, 2, "invalid mode (use r, w, x)");
    }
    lua_settop(L, 1);
    lua_pushinteger(L, mode ? mode : F_OK);
    break;
  }
  case FIO_OP_TRUNCATE: {
    lua_Integer n = luaL_optinteger(L, 2, 0);
    luaL_argcheck(L, n >= 0, 2, "negative size");
    lua_settop(L, 1);
    lua_pushinteger(L, n);
    break;
  }
  case FIO_OP_LISTXATTR: area = 4096; break; /* (exec.c grows it) */
  case FIO_OP_STATVFS: area = sizeof(struct statvfs); break;
  }
  return path_call(L, fn, path, NULL, area, NULL);
}

/* rename, link, symlink: two paths. */
static int l_path2(lua_State *L) {
  const char *a = luaL_checkstring(L, 1), *b = luaL_checkstring(L, 2);
  lua_settop(L, 2);
  return path_call(L, fn_of(L), a, b, 0, NULL);
}

/* One of fio.utime's times at arg: seconds (a float keeps what a double
 * holds of the nanoseconds), nil: now, false: left as it is. */
static struct timespec check_time(lua_State *L, int arg) {
  struct timespec ts = {0, 0};
  int t = lua_type(L, arg);
  if (t <= LUA_TNIL) ts.tv_nsec = UTIME_NOW;
  else if (t == LUA_TBOOLEAN && !lua_toboolean(L, arg)) ts.tv_nsec = UTIME_OMIT;
  else if (lua_isinteger(L, arg)) ts.tv_sec = (time_t)lua_tointeger(L, arg);
  else if (t == LUA_TNUMBER) {
    double d = lua_tonumber(L, arg), sec = floor(d);
    luaL_argcheck(L, isfinite(d), arg, "time must be finite");
    long ns = lround((d - sec) * 1e9);
    if (ns >= 1000000000L) {
      sec += 1;
      ns -= 1000000000L;
    }
    ts.tv_sec = (time_t)sec;
    ts.tv_nsec = ns;
  } else
    luaL_argerror(L, arg, "number, nil (now) or false (unchanged) expected");
  return ts;
}

/* Field k (integer nanoseconds since the epoch) of the table at arg. */
static struct timespec ns_field(lua_State *L, int arg, const char *k) {
  lua_getfield(L, arg, k);
  int ok;
  lua_Integer ns = lua_tointegerx(L, -1, &ok);
  lua_pop(L, 1);
  if (!ok)
    luaL_argerror(L, arg, lua_pushfstring(L, "table without integer field '%s'", k));
  lua_Integer sec = ns / 1000000000, rem = ns % 1000000000;
  if (rem < 0) {
    rem += 1000000000;
    sec -= 1;
  }
  return (struct timespec){(time_t)sec, (long)rem};
}

/* fio.utime(path [, atime [, mtime]]) and fio.lutime: times in seconds;
 * or (path, st): st.atime_ns and st.mtime_ns, to the nanosecond. */
static int l_utime(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct timespec ts[2];
  if (lua_istable(L, 2)) {
    ts[0] = ns_field(L, 2, "atime_ns");
    ts[1] = ns_field(L, 2, "mtime_ns");
  } else {
    ts[0] = check_time(L, 2);
    ts[1] = check_time(L, 3);
  }
  lua_settop(L, 1);
  return path_call(L, fn_of(L), path, NULL, sizeof ts, ts);
}

/* An id at arg: an integer >= 0, or nil/-1: unchanged. */
static lua_Integer check_id(lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return -1;
  lua_Integer id = luaL_checkinteger(L, arg);
  luaL_argcheck(L, id >= -1 && id <= 0xfffffffe, arg, "id out of range");
  return id;
}

/* fio.chown(path, uid, gid) and fio.lchown: nil leaves one as it is. */
static int l_chown(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer uid = check_id(L, 2), gid = check_id(L, 3);
  lua_settop(L, 1);
  lua_pushinteger(L, (lua_Integer)(uint32_t)uid);
  lua_pushinteger(L, (lua_Integer)(uint32_t)gid);
  return path_call(L, fn_of(L), path, NULL, 0, NULL);
}

/* fio.mknod(path, type [, perm [, dev]]): type "fifo", "char", "block",
 * "file" or "socket"; fio.mkfifo(path [, perm]). perm default 0666 (less
 * the umask). */
static int l_mknod(lua_State *L) {
  static const char *const types[] = {"fifo", "char", "block", "file", "socket", NULL};
  static const unsigned fmt[] = {S_IFIFO, S_IFCHR, S_IFBLK, S_IFREG, S_IFSOCK};
  const char *path = luaL_checkstring(L, 1);
  int fifo = fn_of(L)->flags != 0; /* (mkfifo) */
  int t = fifo ? 0 : luaL_checkoption(L, 2, NULL, types);
  unsigned perm = fio_optperm(L, fifo ? 2 : 3, 0666);
  lua_Integer dev = fifo ? 0 : luaL_optinteger(L, 4, 0);
  lua_settop(L, 1);
  lua_pushinteger(L, fmt[t] | perm);
  lua_pushinteger(L, dev);
  return path_call(L, fn_of(L), path, NULL, 0, NULL);
}

/* fio.getxattr(path, name) -> value and fio.lgetxattr; nil, msg, errno
 * (ENODATA: no such attribute). */
static int l_getxattr(lua_State *L) {
  const char *path = luaL_checkstring(L, 1), *name = luaL_checkstring(L, 2);
  lua_settop(L, 2);
  return path_call(L, fn_of(L), path, name, 256, NULL);
}

/* fio.setxattr(path, name, value [, "create" | "replace"]) and
 * fio.lsetxattr. */
static int l_setxattr(lua_State *L) {
  static const char *const how[] = {"any", "create", "replace", NULL};
  static const int xflags[] = {0, XATTR_CREATE, XATTR_REPLACE};
  const char *path = luaL_checkstring(L, 1), *name = luaL_checkstring(L, 2);
  luaL_checkstring(L, 3);
  int f = xflags[luaL_checkoption(L, 4, "any", how)];
  lua_settop(L, 3);
  lua_pushinteger(L, f);
  return path_call(L, fn_of(L), path, name, 0, NULL);
}

/* fio.mkdtemp([template]) -> path: template ends in XXXXXX; default
 * $TMPDIR/fiberio-XXXXXX. */
static int l_mkdtemp(lua_State *L) {
  const char *tmpl = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (!tmpl) {
    const char *dir = getenv("TMPDIR");
    lua_pushfstring(L, "%s/fiberio-XXXXXX", dir && *dir ? dir : "/tmp");
    lua_replace(L, 1);
    tmpl = lua_tostring(L, 1);
  }
  size_t n = strlen(tmpl);
  luaL_argcheck(L, n >= 6 && strcmp(tmpl + n - 6, "XXXXXX") == 0, 1,
                "template must end in XXXXXX");
  lua_settop(L, 1);
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  fio_op *op = fio_op_new(n + 1);
  if (!op) return luaL_error(L, "not enough memory");
  memcpy(op->mem, tmpl, n + 1);
  op->path = op->mem;
  op->code = FIO_OP_MKDTEMP;
  return fio_op_wait(loop, L, w, op, path_k);
}

/* --- whole files ------------------------------------------------------------------ */

/* A whole-file call runs several ops in turn with one op record, which owns
 * the call's fds (op->fd, op->fd2; owns): they are closed whatever
 * happens — on error, on cancel (before Canceled is raised), and by the loop
 * if the call is gone while an op is in flight. Stack: 1 path (src), 2 data
 * or dst. */
enum { WF_OPEN, WF_WRITE, CF_OPEN1, CF_OPEN2, CF_COPY };
/* writefile's op->flags once open: writes go at the current position (the
 * fd cannot seek: pwrite said ESPIPE). */
enum { WF_AT_CUR = 1 };

static int wf_k(lua_State *L, int status, lua_KContext ctx);

/* End the call canceled: free op (closing its fds; a half copy goes) and
 * raise Canceled. */
static int wf_canceled(lua_State *L, fio_fiber *w, fio_op *op) {
  if (op->step == CF_COPY && lua_isstring(L, 3)) unlink(lua_tostring(L, 3));
  fio_op_free(op);
  return fio_raise_canceled(L, w->loop, fio_owner(w));
}

/* End the call: free op (closing its fds) and return the error result. */
static int wf_fail(lua_State *L, fio_op *op, int err, const char *path) {
  fio_op_free(op);
  return fio_errresult(L, path, err);
}

/* Grow op->mem to cap bytes, or fail the call (raises after freeing op). */
static void wf_grow(lua_State *L, fio_op *op, size_t cap) {
  char *m = realloc(op->mem, cap);
  if (!m) {
    fio_op_free(op);
    luaL_error(L, "not enough memory");
  }
  op->mem = m;
  op->cap = cap;
}

/* Close fd now, reporting close's error (a write's last chance to fail). */
static int wf_close(int *fd) {
  int r = close(*fd);
  *fd = -1;
  return r < 0 && errno != EINTR ? errno : 0;
}

/* Push a new name for copyfile's temporary: .fio-PID-N.tmp in dst's
 * directory, short whatever dst's name (which may be NAME_MAX long). */
static void push_tmpname(lua_State *L, const char *dst) {
  static atomic_uint counter;
  const char *slash = strrchr(dst, '/');
  lua_pushlstring(L, dst, slash ? (size_t)(slash - dst) + 1 : 0);
  lua_pushfstring(L, ".fio-%d-%d.tmp", (int)getpid(),
                  (int)atomic_fetch_add(&counter, 1));
  lua_concat(L, 2);
}

static int wf_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  int res = op->res;
  w->op = NULL;
  if (res == -ECANCELED && fio_cancel_pending(w)) return wf_canceled(L, w, op);
  switch (op->step) {
  case WF_OPEN:
    if (res < 0) return wf_fail(L, op, -res, lua_tostring(L, 1));
    op->fd = res;
    op->owns &= (uint8_t)~FIO_OWN_RESULT;
    op->got = 0;
    op->flags = 0; /* explicit offsets until a write says ESPIPE */
    /* (a regular file, if the open looked: its writes may run inline) */
    op->may_inline = S_ISREG(op->res_mode);
    op->step = WF_WRITE;
    break;
  case WF_WRITE:
    if (res == -ESPIPE && !(op->flags & WF_AT_CUR)) {
      op->flags |= WF_AT_CUR; /* a pipe, socket or terminal: no offsets */
      break;
    }
    if (res <= 0) return wf_fail(L, op, res < 0 ? -res : EIO, lua_tostring(L, 1));
    op->got += (size_t)res;
    if (op->got >= op->want) {
      int err = wf_close(&op->fd);
      fio_op_free(op);
      if (err) return fio_errresult(L, lua_tostring(L, 1), err);
      lua_pushboolean(L, 1);
      return 1;
    }
    break;
  case CF_OPEN1: {
    if (res < 0) return wf_fail(L, op, -res, lua_tostring(L, 1));
    op->fd = res;
    op->owns &= (uint8_t)~FIO_OWN_RESULT;
    struct stat sb;
    if (fstat(op->fd, &sb) < 0) return wf_fail(L, op, errno, lua_tostring(L, 1));
    if (S_ISDIR(sb.st_mode)) return wf_fail(L, op, EISDIR, lua_tostring(L, 1));
    op->mode = sb.st_mode & 07777;
    op->step = CF_OPEN2;
    /* Stack 3: the temporary, or nil: dst is written in place; 4: dst is
     * a file that may be written in place if the temporary cannot be made
     * or renamed over it. (As the rename below, these path syscalls run
     * here, not as ops.) */
    const char *dst = lua_tostring(L, 2);
    struct stat db; /* dst's, through a link (stat only then) */
    int have = lstat(dst, &db) == 0;
    if (!have && errno != ENOENT) return wf_fail(L, op, errno, dst);
    int islink = have && S_ISLNK(db.st_mode);
    if (islink && stat(dst, &db) < 0) /* dangling: as GNU cp, no write
                                       * through it; or ELOOP... */
      return wf_fail(L, op, errno, dst);
    if (have && db.st_dev == sb.st_dev && db.st_ino == sb.st_ino) {
      fio_op_free(op); /* dst is src (a link to it): it holds the copy */
      lua_pushboolean(L, 1);
      return 1;
    }
    if (have && S_ISDIR(db.st_mode)) return wf_fail(L, op, EISDIR, dst);
    lua_settop(L, 2);
    if (have && (!S_ISREG(db.st_mode) || islink)) {
      /* A device, FIFO or socket is written in place, as cp does: a new
       * file renamed over it would replace the node itself. So is what a
       * symbolic link names, as cp does: the link stays, and a link such
       * as /dev/stdout or /proc/self/fd/N names a file open in this
       * process, which a rename would take from under it. */
      lua_pushnil(L);
      break;
    }
    /* Otherwise the copy goes to a new file beside dst, renamed over it
     * once whole: a failed or canceled copy leaves dst as it was. (A dst
     * with other hard links becomes a new file, as with rsync: the other
     * names keep the old content.) */
    op->got = 0; /* names tried */
    push_tmpname(L, dst);
    lua_pushboolean(L, have);
    break;
  }
  case CF_OPEN2:
    if (res == -EEXIST && lua_isstring(L, 3) && ++op->got < 100) {
      push_tmpname(L, lua_tostring(L, 2)); /* a name taken (left by a */
      lua_replace(L, 3);                   /* killed copy?): the next */
      break;
    }
    if ((res == -EACCES || res == -EPERM) && lua_isstring(L, 3) &&
        lua_toboolean(L, 4)) {
      /* dst's directory refuses a new file, but dst itself may be
       * writable: write it in place, as cp does */
      lua_pushnil(L);
      lua_replace(L, 3);
      break;
    }
    if (res < 0) return wf_fail(L, op, -res, lua_tostring(L, 2));
    /* (the temporary's name failing is dst's failure: same directory) */
    op->fd2 = res;
    op->owns &= (uint8_t)~FIO_OWN_RESULT;
    op->step = CF_COPY;
    break;
  case CF_COPY: {
    const char *tmp = lua_tostring(L, 3); /* (NULL: in place) */
    if (res < 0) {
      if (tmp) unlink(tmp); /* no half copy left behind */
      return wf_fail(L, op, -res, lua_tostring(L, 2));
    }
    int err = wf_close(&op->fd2);
    if (!err && tmp && rename(tmp, lua_tostring(L, 2)) < 0) {
      err = errno;
      unlink(tmp);
      tmp = NULL;
      if ((err == EPERM || err == EACCES) && lua_toboolean(L, 4) &&
          lseek(op->fd, 0, SEEK_SET) == 0) {
        /* The directory refuses the rename (sticky, dst another user's):
         * copy again into dst in place, as cp does. */
        lua_pushnil(L);
        lua_replace(L, 3);
        op->step = CF_OPEN2;
        break;
      }
    }
    fio_op_free(op);
    if (err) {
      if (tmp) unlink(tmp);
      return fio_errresult(L, lua_tostring(L, 2), err);
    }
    lua_pushboolean(L, 1);
    return 1;
  }
  }
  /* The next step is a new suspension point: a pending cancel lands here,
   * after the fds are closed. */
  if (fio_cancel_pending(w)) return wf_canceled(L, w, op);
  w->wake = FIO_WAKE_NONE;
  switch (op->step) {
  case WF_WRITE: {
    size_t len;
    const char *data = lua_tolstring(L, 2, &len);
    if (len == 0) {
      int err = wf_close(&op->fd);
      fio_op_free(op);
      if (err) return fio_errresult(L, lua_tostring(L, 1), err);
      lua_pushboolean(L, 1);
      return 1;
    }
    op->code = FIO_OP_WRITE;
    op->buf = (char *)data + op->got; /* the string lives on this stack */
    op->want = len;
    op->len = len - op->got > FIO_MAXIO ? FIO_MAXIO : len - op->got;
    /* The file is new or truncated, so byte got goes at offset got: a
     * short write at the current position could leave it wrong (on the
     * ring, a short write to a full tmpfs left f_pos at 0 on 6.18, and the
     * next write went over offset 0 instead of failing with ENOSPC). */
    op->off = op->flags & WF_AT_CUR ? (uint64_t)-1 : (uint64_t)op->got;
    break;
  }
  case CF_OPEN2: {
    int inplace = lua_isnil(L, 3);
    const char *tmp = lua_tostring(L, inplace ? 2 : 3);
    size_t n = strlen(tmp) + 1;
    if (op->cap < n) wf_grow(L, op, n);
    memcpy(op->mem, tmp, n);
    op->path = op->mem;
    op->code = FIO_OP_OPENAT;
    op->flags = inplace ? O_WRONLY | O_TRUNC | O_CLOEXEC
                        : O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
    op->owns |= FIO_OWN_RESULT;
    break;
  }
  case CF_COPY:
    op->code = FIO_OP_COPY;
    break;
  }
  return fio_op_wait(w->loop, L, w, op, wf_k);
}

/* Start a whole-file call: open path with flags, then go on in wf_k. */
static int wf_start(lua_State *L, int stage, const char *path, int flags,
                    unsigned perm) {
  fio_loop *loop = fio_loop_get(L);
  lua_settop(L, 2);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  size_t n = strlen(path) + 1;
  fio_op *op = fio_op_new(n < 256 ? 256 : n);
  if (!op) return luaL_error(L, "not enough memory");
  memcpy(op->mem, path, n);
  op->path = op->mem;
  op->code = FIO_OP_OPENAT;
  op->flags = flags | O_CLOEXEC;
  op->mode = perm;
  op->owns |= FIO_OWN_RESULT;
  op->owns |= FIO_OWN_FD | FIO_OWN_FD2;
  op->step = (uint8_t)stage;
  return fio_op_wait(loop, L, w, op, wf_k);
}

static int readfile1_k(lua_State *L, int status, lua_KContext ctx) {
  fio_fiber *w = (fio_fiber *)ctx;
  fio_op *op = w->op;
  int res = fio_op_result(L, w); /* a cancel raises (op freed) */
  w->op = NULL;
  if (res >= 0) lua_pushlstring(L, op->buf, op->got);
  if (op->buf != op->mem) /* back to the loop, even after a failure */
    fio_buf_put(w->loop, op->buf, op->want);
  op->buf = op->mem;
  fio_op_free(op);
  if (res < 0) return fio_errresult(L, lua_tostring(L, 1), -res);
  return 1;
}

/* A readfile op's buffer, unless given back to the loop. */
static void readfile_dtor(fio_op *op) {
  if (op->buf != op->mem) free(op->buf);
  op->buf = op->mem;
}

/* fio.readfile(path) -> the whole content. On io_uring: linked openat and
 * reads on a fixed-file slot (io/uring.c); without it: one pool job
 * does all. Either way, one op, reading into a buffer the loop lends. */
static int l_readfile(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  fio_loop *loop = fio_loop_get(L);
  lua_settop(L, 1);
  fio_fiber pseudo, *w = fio_wait_begin(loop, L, &pseudo);
  n++; /* (a path is what comes before a NUL, as for io.open) */
  fio_op *op = fio_op_new(n);
  if (!op) return luaL_error(L, "not enough memory");
  memcpy(op->mem, path, n);
  op->path = op->mem;
  op->code = FIO_OP_READFILE;
  op->dtor = readfile_dtor;
  op->buf = fio_buf_get(loop);
  op->want = op->buf ? FIO_BUFSZ : 0;
  if (!op->buf) op->buf = op->mem;
  return fio_op_wait(loop, L, w, op, readfile1_k);
}

/* fio.writefile(path, data [, perm]) -> true: creates or truncates. */
static int l_writefile(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  unsigned perm = fio_optperm(L, 3, 0666);
  return wf_start(L, WF_OPEN, path, O_WRONLY | O_CREAT | O_TRUNC, perm);
}

/* fio.copyfile(src, dst) -> true: the kernel copies (copy_file_range, or
 * sendfile across filesystems); dst gets src's permission bits (less the
 * umask). A failed or canceled copy leaves dst as it was; but a device,
 * FIFO or socket at dst, or a symbolic link, is written in place, and so is
 * an existing file whose directory refuses the temporary or its rename
 * (EACCES, EPERM), keeping its own mode, as cp does. */
static int l_copyfile(lua_State *L) {
  const char *src = luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  return wf_start(L, CF_OPEN1, src, O_RDONLY, 0);
}

static const fs_fn fs_fns[] = {
    {"stat", l_path1, FIO_OP_STATX, 0, 0},
    {"lstat", l_path1, FIO_OP_STATX, AT_SYMLINK_NOFOLLOW, 0},
    {"readdir", l_path1, FIO_OP_GETDENTS, 0, 0},
    {"mkdir", l_path1, FIO_OP_MKDIRAT, 0, 0777},
    {"rmdir", l_path1, FIO_OP_UNLINKAT, AT_REMOVEDIR, 0},
    {"unlink", l_path1, FIO_OP_UNLINKAT, 0, 0},
    {"readlink", l_path1, FIO_OP_READLINK, 0, 0},
    {"access", l_path1, FIO_OP_ACCESS, 0, 0},
    {"chmod", l_path1, FIO_OP_CHMOD, 0, 0},
    {"truncate", l_path1, FIO_OP_TRUNCATE, 0, 0},
    {"realpath", l_path1, FIO_OP_REALPATH, 0, 0},
    {"rename", l_path2, FIO_OP_RENAMEAT, 0, 0},
    {"link", l_path2, FIO_OP_LINKAT, 0, 0},
    {"symlink", l_path2, FIO_OP_SYMLINKAT, 0, 0},
    {"mkdtemp", l_mkdtemp, 0, 0, 0},
    {"utime", l_utime, FIO_OP_UTIME, 0, 0},
    {"lutime", l_utime, FIO_OP_UTIME, AT_SYMLINK_NOFOLLOW, 0},
    {"chown", l_chown, FIO_OP_CHOWN, 0, 0},
    {"lchown", l_chown, FIO_OP_CHOWN, AT_SYMLINK_NOFOLLOW, 0},
    {"mknod", l_mknod, FIO_OP_MKNOD, 0, 0},
    {"mkfifo", l_mknod, FIO_OP_MKNOD, 1, 0},
    {"getxattr", l_getxattr, FIO_OP_GETXATTR, 0, 0},
    {"lgetxattr", l_getxattr, FIO_OP_GETXATTR, AT_SYMLINK_NOFOLLOW, 0},
    {"setxattr", l_setxattr, FIO_OP_SETXATTR, 0, 0},
    {"lsetxattr", l_setxattr, FIO_OP_SETXATTR, AT_SYMLINK_NOFOLLOW, 0},
    {"listxattr", l_path1, FIO_OP_LISTXATTR, 0, 0},
    {"llistxattr", l_path1, FIO_OP_LISTXATTR, AT_SYMLINK_NOFOLLOW, 0},
    {"statvfs", l_path1, FIO_OP_STATVFS, 0, 0},
    {"readfile", l_readfile, 0, 0, 0},
    {"writefile", l_writefile, 0, 0, 0},
    {"copyfile", l_copyfile, 0, 0, 0},
};

/* Module table at -2, loop userdata at -1. */
void fio_open_fs(lua_State *L) {
  for (size_t i = 0; i < sizeof fs_fns / sizeof *fs_fns; i++) {
    lua_pushvalue(L, -1); /* loop */
    lua_pushlightuserdata(L, (void *)&fs_fns[i]);
    lua_pushcclosure(L, fs_fns[i].fn, 2);
    lua_setfield(L, -3, fs_fns[i].name);
  }
}
