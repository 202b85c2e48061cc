/* fs.h — what file.c and fs.c share. */
#ifndef FIBERIO_FS_H
#define FIBERIO_FS_H

#include <sys/stat.h>

#include "fiberio.h"

/* Push the table fio.stat returns for st. */
void fio_push_statx(lua_State *L, const struct statx *st);

#endif
