/* exec.h — operations run as the blocking system calls they stand for
 * (exec.c): plain syscalls on the op's arguments, nothing else. */
#ifndef FIBERIO_IO_EXEC_H
#define FIBERIO_IO_EXEC_H

#include <stdatomic.h>

#include "core/op.h"

#pragma GCC visibility push(hidden) /* (core/loop.h) */

/* Run op synchronously on the calling thread: returns res (>= 0) or -errno.
 * Touches only op and the memory it owns; safe on any thread. A long
 * operation (GETDENTS, COPY, a FIFO open) looks at *stop (stop may be NULL)
 * between its steps and ends with -ECANCELED once it is set. */
int fio_exec(fio_op *op, const atomic_int *stop);

/* Make op's area at mem (op->len bytes, before its paths) `area` bytes,
 * moving the paths after it. 0 or -ENOMEM (op unchanged). */
int fio_op_area_grow(fio_op *op, size_t area);

/* READFILE without waiting for ever, for the loop thread: the path is opened
 * O_NONBLOCK, and only a regular file is read. -EAGAIN: not done; run the op
 * with fio_exec (on the pool) instead. If the path was opened (a FIFO, a
 * device, a large file), that fd is in op->fd2 (owned: FIO_OWN_FD2), and
 * fio_exec reads it rather than open the path again: a FIFO writer this
 * open let in must neither find no reader nor leave before a second open
 * waits for it. Else as fio_exec. A regular file's read can take a disk's
 * time, never for ever. */
int fio_exec_readfile_nowait(fio_op *op);
/* Regular files larger than this go to the pool too (open). */
#define FIO_NOWAIT_READ_MAX (1u << 20)

/* Run op on the loop thread, which must not wait for ever: as fio_exec,
 * but an open is made O_NONBLOCK (then cleared), so that a FIFO's open
 * cannot wait for its other end, and READFILE is
 * fio_exec_readfile_nowait. -EAGAIN: not done, it could wait (a FIFO, a
 * lease): run it with fio_exec elsewhere. A FIFO opened for reading stays
 * open in op->fd2 (owned) meanwhile, for the reason given above; fio_exec
 * takes it over when op->fifo_waits, else opens the path again. Only ops
 * whose calls wait on nothing but a disk may come here (core/op.h's
 * FIO_OPS_HERE). */
int fio_exec_here(fio_op *op);

/* A readfile's op->buf (op->want bytes, not op->mem) doubled, contents
 * kept: 0, or -ENOMEM (the buffer is as it was). Any thread. */
int fio_op_buf_double(fio_op *op);


#pragma GCC visibility pop
#endif
