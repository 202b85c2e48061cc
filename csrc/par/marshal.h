/* marshal.h — values copied between Lua states as bytes: nil, booleans,
 * numbers, strings and tables of those (cycles refused). For fio.parallel:
 * a task's arguments and results cross threads this way. */
#ifndef FIBERIO_PAR_MARSHAL_H
#define FIBERIO_PAR_MARSHAL_H

#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>

#pragma GCC visibility push(hidden) /* (core/loop.h) */

/* A growing buffer; err is the first failure (a static message). */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  const char *err;
} sbuf;

/* Append n bytes (on failure: err set, the buffer as it was). */
void fio_sb_put(sbuf *b, const void *data, size_t n);
/* Append the n values from idx. Never raises: returns the error or NULL. */
const char *fio_ser_values(lua_State *L, int idx, int n, sbuf *b);
/* Push the values of buffer p (n bytes); returns how many. Raises on a
 * damaged buffer. */
int fio_deser_values(lua_State *L, const char *p, size_t n);


#pragma GCC visibility pop
#endif
