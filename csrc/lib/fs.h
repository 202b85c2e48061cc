/* fs.h — what file.c and fs.c share. */
#ifndef FIBERIO_FS_H
#define FIBERIO_FS_H

#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#pragma GCC visibility push(hidden) /* (core/loop.h) */

/* Push the table fio.stat returns for st. */
void fio_push_statx(lua_State *L, const struct statx *st);
/* Set those fields in the table at -1 (fio.walk refills one table). */
void fio_fill_statx(lua_State *L, const struct statx *st);

/* The permission bits at argument arg: an integer in 0..07777 (0x1ed,
 * tonumber("755", 8)) or a string of octal digits ("0644", "755"), read as
 * chmod(1) reads it. Anything else raises a bad-argument error. fio_optperm:
 * def when the argument is absent or nil. Every call that takes a perm
 * reads it here. */
unsigned fio_checkperm(lua_State *L, int arg);
unsigned fio_optperm(lua_State *L, int arg, unsigned def);


#pragma GCC visibility pop
#endif
