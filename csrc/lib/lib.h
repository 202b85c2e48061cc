/* lib.h — what the Lua bindings (csrc/lib) share: the pieces of the module
 * table each file fills, and the error result every failure returns. */
#ifndef FIBERIO_LIB_H
#define FIBERIO_LIB_H

#include <lauxlib.h>
#include <lua.h>

#pragma GCC visibility push(hidden) /* (core/loop.h) */

/* Each fills the module table at -2; the loop userdata at -1 becomes
 * upvalue 1 of its functions (module.c). */
void fio_open_fiber(lua_State *L);
void fio_open_time(lua_State *L);
void fio_open_file(lua_State *L);
void fio_open_fs(lua_State *L);
void fio_open_walk(lua_State *L);
void fio_open_process(lua_State *L);
void fio_open_watch(lua_State *L);
void fio_open_socket(lua_State *L);
void fio_open_sync(lua_State *L);
void fio_open_parallel(lua_State *L);
/* Sets field "_errno" of the table at -1: a function that makes the table
 * of errno names to numbers (init.lua's fio.errno, on first use). */
void fio_open_errno(lua_State *L);

/* Push nil, "what: strerror(err)" (or strerror(err) alone when what is
 * NULL), err; returns 3. */
int fio_errresult(lua_State *L, const char *what, int err);


#pragma GCC visibility pop
#endif
