/* zero.h — zeroing a record on a hot path. */
#ifndef FIBERIO_UTIL_ZERO_H
#define FIBERIO_UTIL_ZERO_H

#include <stddef.h>

#pragma GCC visibility push(hidden) /* (core/loop.h) */

/* memset(p, 0, n) through libc's memset, for a record of more than 64
 * bytes zeroed again on every call while in the cache (an op's reset, a
 * spare's above all; a wait's pseudo fiber on the stack).
 * gcc expands a memset of a known size over 64 bytes into `rep stos`,
 * whose start-up alone costs tens of cycles on some CPUs (on this
 * project's AMD machines, 2.5% of a lone readlink for its two records);
 * libc stores a few hundred bytes with vector stores. Being in its own
 * file keeps n unknown where it is called, so the call stays a call (the
 * build uses no link-time optimisation). */
void fio_zero(void *p, size_t n);

#pragma GCC visibility pop
#endif
