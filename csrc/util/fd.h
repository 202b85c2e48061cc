/* fd.h — descriptors fiberio makes for itself. */
#ifndef FIBERIO_UTIL_FD_H
#define FIBERIO_UTIL_FD_H

#pragma GCC visibility push(hidden) /* (core/loop.h) */

/* An fd fiberio makes for itself (eventfd, ring, epoll set, signalfd), fd
 * (>= 0), moved to 3 or above if the kernel handed out 0, 1 or 2 (a
 * standard stream was closed): an internal fd must never stand where
 * fio.stdin, stdout or stderr read and write. Returns the fd to use, or
 * -errno (fd is closed either way when it is moved). */
int fio_fd_above_std(int fd);


#pragma GCC visibility pop
#endif
