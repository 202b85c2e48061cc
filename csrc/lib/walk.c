/* walk.c — fio.walk's iterator (lua/fiberio/fs.lua checks the options and
 * calls core._walk): hands out the entries io/walk.c reads, in depth-first
 * order — a directory's entry, then what is below it, then its next
 * sibling — as `path, type` (and `st`, one table refilled for each entry,
 * with stat = true). Calls onerror and enter (which may wait) between
 * entries, never while the engine's lock is held. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/loop.h"
#include "core/op.h"
#include "io/walk.h"
#include "lib/fs.h"
#include "lib/lib.h"
#include "util/clock.h"

#define WALKER "fiberio.walker"

/* Where the consumer is in one directory's batch. */
typedef struct cursor {
  fio_walk_dir *d;
  uint32_t next;     /* the next entry to hand out */
  uint32_t filtered; /* entries offered to enter so far */
  uint8_t started;   /* d was read and its error, if any, dealt with */
} cursor;

/* The iterator's state; its user values: 1 onerror, 2 enter, 3 the stat
 * table. */
typedef struct walker {
  fio_walk *w;
  cursor *cs;
  int ncs, capcs;
  fio_walk_dir *descend; /* the directory just handed out: entered next */
  char *path;            /* the entry path being built */
  size_t pathcap;
  unsigned flags;
  int maxdepth;
  int read_here;         /* directories may be read on the loop thread */
} walker;

/* Upvalues of the iterator: 1 the loop, then the type names. */
enum { UV_FILE = 2, UV_DIR, UV_LINK, UV_FIFO, UV_SOCK, UV_CHR, UV_BLK, UV_UNKNOWN };

static int type_upvalue(uint8_t t) {
  switch (t) {
  case DT_REG: return UV_FILE;
  case DT_DIR: return UV_DIR;
  case DT_LNK: return UV_LINK;
  case DT_FIFO: return UV_FIFO;
  case DT_SOCK: return UV_SOCK;
  case DT_CHR: return UV_CHR;
  case DT_BLK: return UV_BLK;
  }
  return UV_UNKNOWN;
}

static void walker_close(walker *wk) {
  if (wk->w) fio_walk_close(wk->w);
  wk->w = NULL;
  free(wk->cs);
  wk->cs = NULL;
  wk->ncs = 0;
  free(wk->path);
  wk->path = NULL;
}

static int walker_gc(lua_State *L) {
  walker_close(luaL_checkudata(L, 1, WALKER));
  return 0;
}

static void push_cursor(lua_State *L, walker *wk, fio_walk_dir *d) {
  if (wk->ncs == wk->capcs) {
    int cap = wk->capcs ? wk->capcs * 2 : 16;
    cursor *cs = realloc(wk->cs, (size_t)cap * sizeof *cs);
    if (!cs) luaL_error(L, "not enough memory");
    wk->cs = cs;
    wk->capcs = cap;
  }
  wk->cs[wk->ncs++] = (cursor){d, 0, 0, 0};
}

/* Pop the top cursor, giving its directory back to the engine. */
static void pop_cursor(walker *wk) {
  fio_walk_release(wk->w, wk->cs[--wk->ncs].d);
}

/* Push d's path + "/" + name (the path of one of its entries). */
static void push_path(lua_State *L, walker *wk, fio_walk_dir *d,
                      const char *name, size_t namelen) {
  size_t plen = d->pathlen;
  int sep = plen && d->path[plen - 1] != '/';
  size_t n = plen + (size_t)sep + namelen;
  if (n > wk->pathcap) {
    size_t cap = wk->pathcap ? wk->pathcap : 256;
    while (cap < n) cap *= 2;
    char *p = realloc(wk->path, cap);
    if (!p) luaL_error(L, "not enough memory");
    wk->path = p;
    wk->pathcap = cap;
  }
  memcpy(wk->path, d->path, plen);
  if (sep) wk->path[plen] = '/';
  memcpy(wk->path + plen + sep, name, namelen);
  lua_pushlstring(L, wk->path, n);
}

static int run(lua_State *L);

static int callback_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  walker *wk = lua_touserdata(L, 1);
  if (ctx && wk->w) { /* enter's answer for the entry being filtered */
    cursor *c = &wk->cs[wk->ncs - 1];
    fio_walk_entry *e = &c->d->ents[c->filtered];
    if (lua_toboolean(L, -1) && !(e->child = fio_walk_child(wk->w, c->d, e)))
      return luaL_error(L, "not enough memory");
    c->filtered++;
  }
  lua_settop(L, 1);
  return run(L);
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  fio_fiber *fw = (fio_fiber *)ctx;
  fio_op *op = fw->op;
  int res = fio_op_result(L, fw); /* a cancel raises (op freed) */
  fw->op = NULL;
  fio_op_free(op);
  if (res == -ENOMEM) return luaL_error(L, "not enough memory");
  return run(L);
}

/* Wait until the top cursor's directory is read; run again then. */
static int wait_read(lua_State *L, walker *wk) {
  fio_loop *loop = fio_loop_get(L);
  fio_fiber pseudo, *fw = fio_wait_begin(loop, L, &pseudo);
  fio_op *op = fio_op_new(sizeof wk->w);
  if (!op) return luaL_error(L, "not enough memory");
  memcpy(op->mem, &wk->w, sizeof wk->w);
  op->code = FIO_OP_TASK;
  op->executor = &fio_walk_waiter;
  return fio_op_wait(loop, L, fw, op, wait_k);
}

/* Stack: the walker. Hand out the next entry, or nothing at the end. */
static int run(lua_State *L) {
  walker *wk = lua_touserdata(L, 1);
  for (;;) {
    if (!wk->w) return 0; /* ended, or closed by a break */
    if (wk->descend) {
      push_cursor(L, wk, wk->descend);
      wk->descend = NULL;
    }
    if (wk->ncs == 0) {
      walker_close(wk);
      return 0;
    }
    cursor *c = &wk->cs[wk->ncs - 1];
    fio_walk_dir *d = c->d;
    if (!c->started) {
      if (wk->read_here && fio_ops_idle(fio_loop_get(L))) {
        /* Nothing else to run: read it here rather than sleep until a
         * pool thread has (a small tree costs what readdir costs). One
         * read slower than the slow-call rule's bound ends this. */
        fio_loop *loop = fio_loop_get(L);
        uint64_t t0 = fio_now_ns();
        if (fio_walk_read_here(wk->w, d)) {
          loop->walk_here++;
          if (fio_now_ns() - t0 > loop->cfg.slow_ns) wk->read_here = 0;
        }
      }
      if (!fio_walk_ready(wk->w, d)) return wait_read(L, wk);
      c->started = 1;
      if (d->err) {
        int err = d->err;
        lua_pushstring(L, d->path); /* (d goes with its cursor) */
        pop_cursor(wk);
        lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), strerror(err));
        lua_getiuservalue(L, 1, 1);
        if (lua_isnil(L, -1)) {
          lua_pop(L, 1);
          return luaL_error(L, "%s", lua_tostring(L, -1));
        }
        lua_insert(L, -3); /* onerror, path, msg */
        lua_pushinteger(L, err);
        lua_callk(L, 3, 0, 0, callback_k);
        return callback_k(L, LUA_OK, 0);
      }
    }
    if (wk->flags & FIO_WALK_FILTER) {
      int deeper = wk->maxdepth < 0 || d->depth + 1 < wk->maxdepth;
      while (deeper && c->filtered < d->n) {
        fio_walk_entry *e = &d->ents[c->filtered];
        if (e->type != DT_DIR) {
          c->filtered++;
          continue;
        }
        lua_getiuservalue(L, 1, 2);
        push_path(L, wk, d, d->names + e->name, e->namelen);
        lua_callk(L, 1, 1, 1, callback_k);
        return callback_k(L, LUA_OK, 1);
      }
    }
    if (c->next == d->n) {
      pop_cursor(wk);
      continue;
    }
    uint32_t i = c->next++;
    fio_walk_entry *e = &d->ents[i];
    push_path(L, wk, d, d->names + e->name, e->namelen);
    lua_pushvalue(L, lua_upvalueindex(type_upvalue(e->type)));
    if (e->child) wk->descend = e->child;
    if (!(wk->flags & FIO_WALK_STAT)) return 2;
    if (!e->has_stat) {
      lua_pushnil(L);
      return 3;
    }
    lua_getiuservalue(L, 1, 3);
    fio_fill_statx(L, &d->stats[i]);
    return 3;
  }
}

/* iter(walker) -> path, type [, st] */
static int walk_next(lua_State *L) {
  luaL_checkudata(L, 1, WALKER);
  lua_settop(L, 1);
  return run(L);
}

/* core._walk(root, flags, maxdepth, jobs, onerror, enter) -> iter, walker,
 * nil, walker (its __close ends the walk). Arguments checked by fs.lua. */
static int l_walk(lua_State *L) {
  size_t rootlen;
  const char *root = luaL_checklstring(L, 1, &rootlen);
  unsigned flags = (unsigned)luaL_checkinteger(L, 2);
  int maxdepth = (int)luaL_checkinteger(L, 3);
  int jobs = (int)luaL_checkinteger(L, 4);
  if (!lua_isnil(L, 6)) flags |= FIO_WALK_FILTER;
  lua_pushvalue(L, lua_upvalueindex(1)); /* the loop */
  for (int t = UV_FILE; t <= UV_UNKNOWN; t++)
    lua_pushvalue(L, lua_upvalueindex(t));
  lua_pushcclosure(L, walk_next, UV_UNKNOWN);
  walker *wk = lua_newuserdatauv(L, sizeof *wk, 3);
  memset(wk, 0, sizeof *wk);
  luaL_setmetatable(L, WALKER);
  lua_pushvalue(L, 5);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 6);
  lua_setiuservalue(L, -2, 2);
  if (flags & FIO_WALK_STAT) {
    lua_createtable(L, 0, 13);
    lua_setiuservalue(L, -2, 3);
  }
  wk->flags = flags;
  wk->maxdepth = maxdepth;
  wk->read_here = !fio_loop_get(L)->cfg.no_inline;
  if (maxdepth != 0) { /* (maxdepth 0: nothing below root is listed) */
    wk->w = fio_walk_open(root, rootlen, flags, maxdepth, jobs);
    if (!wk->w) return luaL_error(L, "not enough memory");
    push_cursor(L, wk, fio_walk_root(wk->w));
  }
  lua_pushnil(L);
  lua_pushvalue(L, -2);
  return 4;
}

/* Module table at -2, loop userdata at -1. */
void fio_open_walk(lua_State *L) {
  luaL_newmetatable(L, WALKER);
  lua_pushcfunction(L, walker_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, walker_gc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  lua_pushvalue(L, -1); /* loop */
  static const char *const names[] = {"file", "directory", "link", "fifo",
                                      "socket", "char", "block", "unknown"};
  for (int i = 0; i < 8; i++) lua_pushstring(L, names[i]);
  lua_pushcclosure(L, l_walk, 9);
  lua_setfield(L, -3, "_walk");
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, FIO_WALK_FOLLOW);
  lua_setfield(L, -2, "follow");
  lua_pushinteger(L, FIO_WALK_XDEV);
  lua_setfield(L, -2, "xdev");
  lua_pushinteger(L, FIO_WALK_STAT);
  lua_setfield(L, -2, "stat");
  lua_pushinteger(L, FIO_WALK_SORT);
  lua_setfield(L, -2, "sort");
  lua_setfield(L, -3, "_walkflags");
}
