/* exec.h — operations run as blocking system calls (exec.c). */
#ifndef FIBERIO_EXEC_H
#define FIBERIO_EXEC_H

#include "fiberio.h"

/* Run op synchronously on the calling thread: returns res (>= 0) or -errno.
 * Touches only op and the memory it owns; safe on any thread. Checks
 * op->abort between the steps of a long operation (GETDENTS, COPY). */
int fio_exec(fio_op *op);

/* READFILE without waiting for ever, for the loop thread: the path is opened
 * O_NONBLOCK, and only a regular file is read. -EAGAIN: not done; run the op
 * with fio_exec (on the pool) instead. If the path was opened (a FIFO, a
 * device, a large file), that fd is in op->fd2 with op->owns_fds set, and fio_exec reads
 * it rather than open the path again: a FIFO writer this open let in must
 * neither find no reader nor leave before a second open waits for it. Else
 * as fio_exec. A regular file's read can take a disk's time, never for ever. */
int fio_exec_readfile_nowait(fio_op *op);
/* Regular files larger than this go to the pool too (open). */
#define FIO_NOWAIT_READ_MAX (1u << 20)

/* The pool's interrupt signal (a no-op handler without SA_RESTART,
 * unblocked on pool threads), or 0: set once by the pool before its first
 * thread starts. fio_exec sends it to its own thread on a timer to look
 * again, during a FIFO open, for a writer that came and left. */
extern int fio_exec_intr_sig;

#endif
