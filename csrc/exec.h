/* exec.h — operations run as blocking system calls (exec.c). */
#ifndef FIBERIO_EXEC_H
#define FIBERIO_EXEC_H

#include "fiberio.h"

/* Run op synchronously on the calling thread: returns res (>= 0) or -errno.
 * Touches only op and the memory it owns; safe on any thread. Checks
 * op->abort between the steps of a long operation (GETDENTS, COPY). */
int fio_exec(fio_op *op);

#endif
