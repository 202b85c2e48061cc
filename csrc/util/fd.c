/* fd.c — descriptors fiberio makes for itself (fd.h). */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "util/fd.h"

int fio_fd_above_std(int fd) {
  if (fd > 2) return fd;
  int hi = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int e = errno;
  close(fd);
  return hi < 0 ? -e : hi;
}
