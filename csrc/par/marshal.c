/* marshal.c — values copied between Lua states as bytes (marshal.h):
 * pure functions of a state and a buffer, no threads, no loop. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "par/marshal.h"

void fio_sb_put(sbuf *b, const void *data, size_t n) {
  if (b->err) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->err = "not enough memory";
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
}

enum { T_NIL, T_FALSE, T_TRUE, T_INT, T_FLT, T_STR, T_TABLE, T_END };

/* Append the value at idx. seen (at stack index `seen`) holds the tables on
 * the current path, for cycles. */
static void ser(lua_State *L, int idx, sbuf *b, int seen, int depth) {
  unsigned char t;
  idx = lua_absindex(L, idx);
  if (b->err) return;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    t = T_NIL;
    fio_sb_put(b, &t, 1);
    break;
  case LUA_TBOOLEAN:
    t = lua_toboolean(L, idx) ? T_TRUE : T_FALSE;
    fio_sb_put(b, &t, 1);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer v = lua_tointeger(L, idx);
      t = T_INT;
      fio_sb_put(b, &t, 1);
      fio_sb_put(b, &v, sizeof v);
    } else {
      lua_Number v = lua_tonumber(L, idx);
      t = T_FLT;
      fio_sb_put(b, &t, 1);
      fio_sb_put(b, &v, sizeof v);
    }
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    t = T_STR;
    fio_sb_put(b, &t, 1);
    fio_sb_put(b, &n, sizeof n);
    fio_sb_put(b, s, n);
    break;
  }
  case LUA_TTABLE:
    if (depth > 200) {
      b->err = "tables nested too deep";
      return;
    }
    lua_pushvalue(L, idx);
    if (lua_rawget(L, seen) != LUA_TNIL) {
      lua_pop(L, 1);
      b->err = "a table with a cycle cannot be copied";
      return;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    t = T_TABLE;
    fio_sb_put(b, &t, 1);
    luaL_checkstack(L, 4, "tables nested too deep");
    lua_pushnil(L);
    while (!b->err && lua_next(L, idx)) {
      ser(L, -2, b, seen, depth + 1);
      ser(L, -1, b, seen, depth + 1);
      lua_pop(L, 1);
    }
    if (b->err) lua_pop(L, 1); /* the key lua_next left */
    t = T_END;
    fio_sb_put(b, &t, 1);
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, seen);
    break;
  default:
    b->err = lua_type(L, idx) == LUA_TFUNCTION ? "a function cannot be copied"
             : lua_type(L, idx) == LUA_TUSERDATA ? "a userdata cannot be copied"
             : lua_type(L, idx) == LUA_TTHREAD  ? "a thread cannot be copied"
                                                : "a value cannot be copied";
  }
}

/* The same, for a worker that must not raise: returns the error or NULL. */
const char *fio_ser_values(lua_State *L, int idx, int n, sbuf *b) {
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  int seen = lua_gettop(L);
  int32_t cnt = n;
  fio_sb_put(b, &cnt, sizeof cnt);
  for (int i = 0; i < n; i++) ser(L, idx + i, b, seen, 0);
  lua_remove(L, seen);
  return b->err;
}

typedef struct rd {
  const char *p, *e;
} rd;

static int rd_get(rd *r, void *out, size_t n) {
  if ((size_t)(r->e - r->p) < n) return 0;
  memcpy(out, r->p, n);
  r->p += n;
  return 1;
}

static int deser(lua_State *L, rd *r, int depth) {
  unsigned char t;
  if (!rd_get(r, &t, 1) || depth > 210) return 0;
  luaL_checkstack(L, 3, "too many values");
  switch (t) {
  case T_NIL: lua_pushnil(L); return 1;
  case T_FALSE: lua_pushboolean(L, 0); return 1;
  case T_TRUE: lua_pushboolean(L, 1); return 1;
  case T_INT: {
    lua_Integer v;
    if (!rd_get(r, &v, sizeof v)) return 0;
    lua_pushinteger(L, v);
    return 1;
  }
  case T_FLT: {
    lua_Number v;
    if (!rd_get(r, &v, sizeof v)) return 0;
    lua_pushnumber(L, v);
    return 1;
  }
  case T_STR: {
    size_t n;
    if (!rd_get(r, &n, sizeof n) || (size_t)(r->e - r->p) < n) return 0;
    lua_pushlstring(L, r->p, n);
    r->p += n;
    return 1;
  }
  case T_TABLE:
    lua_newtable(L);
    for (;;) {
      if (r->p < r->e && (unsigned char)*r->p == T_END) {
        r->p++;
        return 1;
      }
      if (!deser(L, r, depth + 1) || !deser(L, r, depth + 1)) return 0;
      lua_rawset(L, -3);
    }
  }
  return 0;
}

/* Push the values of buffer p (n bytes); returns how many. */
int fio_deser_values(lua_State *L, const char *p, size_t n) {
  rd r = {p, p + n};
  int32_t cnt;
  if (!rd_get(&r, &cnt, sizeof cnt)) return luaL_error(L, "fio.parallel: bad copy");
  luaL_checkstack(L, cnt + 2, "too many values");
  for (int i = 0; i < cnt; i++)
    if (!deser(L, &r, 0)) return luaL_error(L, "fio.parallel: bad copy");
  return cnt;
}

