/* walk.h — the tree walker's engine (walk.c): the directories of one tree
 * read on pool threads, several at once, each into a batch of entries that
 * the loop thread hands out in depth-first order (lib/walk.c). As in bfs
 * and fd: each directory opened relative to its parent's descriptor, read
 * with getdents64 into a large buffer, the type taken from d_type (a stat
 * only when asked, or when the file system does not say).
 *
 * Work order and memory: directories to read are a stack (the newest found
 * first, so the walk goes deep before wide, as the consumer does), and the
 * pool stops reading ahead once `cap` bytes of batches wait for the
 * consumer; the directory the consumer waits for is read whatever the cap.
 * So memory is bounded by the cap plus the widest directory.
 *
 * The consumer (one thread: the loop's) owns the batches it is handed;
 * everything else is under the walk's mutex. */
#ifndef FIBERIO_IO_WALK_H
#define FIBERIO_IO_WALK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "core/op.h"

#pragma GCC visibility push(hidden) /* (core/loop.h) */

enum {
  FIO_WALK_FOLLOW = 1, /* symbolic links to directories are walked into */
  FIO_WALK_XDEV = 2,   /* directories on another file system not read */
  FIO_WALK_STAT = 4,   /* every entry statx'd (lstat, or stat when FOLLOW) */
  FIO_WALK_SORT = 8,   /* a directory's entries in byte order of names */
  FIO_WALK_FILTER = 16 /* the consumer picks the subdirectories to read
                        * (fio_walk_child); none is queued by a reader */
};

typedef struct fio_walk fio_walk;
typedef struct fio_walk_dir fio_walk_dir;

typedef struct fio_walk_entry {
  fio_walk_dir *child; /* the directory the walk reads for it, or NULL */
  uint32_t name;       /* offset of its name in the batch's names */
  uint16_t namelen;
  uint8_t type;        /* DT_* (a followed link: its target's) */
  uint8_t has_stat;    /* stats[i] is its statx (FIO_WALK_STAT) */
} fio_walk_entry;

struct fio_walk_dir {
  /* The consumer's to read once fio_walk_ready said so. */
  int err;                /* errno of opening or reading it, or 0 */
  uint32_t n;             /* entries */
  fio_walk_entry *ents;
  char *names;            /* the names, each NUL-terminated */
  struct statx *stats;    /* FIO_WALK_STAT: one per entry */
  int depth;              /* the root: 0 */
  size_t pathlen;         /* path: the root as given, or parent/name */
  /* The engine's. */
  fio_dnode todo_node, all_node;
  fio_walk_dir *parent;
  size_t bytes;           /* of the batch, counted in the walk's buffered */
  uint32_t name_off;      /* its name's offset in path */
  int refs;               /* the consumer's visit, plus one per child */
  int fd;                 /* kept open for its children's openat, or -1 */
  int unopened;           /* children still to open relative to fd */
  dev_t dev;
  ino_t ino;
  uint8_t state;
  uint8_t via_link;       /* reached through a followed symbolic link */
  uint8_t uses_parent_fd; /* counted in its parent's unopened */
  char path[];
};

/* A walk of root (at most `jobs` directories read at once; maxdepth < 0:
 * no limit, else entries deeper than maxdepth are not listed and
 * directories at maxdepth not read). NULL: out of memory. */
fio_walk *fio_walk_open(const char *root, size_t rootlen, unsigned flags,
                        int maxdepth, int jobs);
/* The root's directory (the consumer visits it first). */
fio_walk_dir *fio_walk_root(fio_walk *w);
/* 1 if d has been read (d->err, d->ents are the consumer's now). 0: not
 * yet; the consumer should wait with an op run by fio_walk_waiter (op->mem
 * holds the fio_walk *), which completes once d is read. */
int fio_walk_ready(fio_walk *w, fio_walk_dir *d);
extern const fio_executor fio_walk_waiter;
/* Read d on the calling thread (the consumer's, when it would otherwise
 * sleep until a reader has), unless a reader took it already: 1 if it
 * did (d is read: fio_walk_ready says so). */
int fio_walk_read_here(fio_walk *w, fio_walk_dir *d);
/* FIO_WALK_FILTER: read entry e of parent (read) too: its directory, or
 * NULL when out of memory. The walk reads the newest ones first. */
fio_walk_dir *fio_walk_child(fio_walk *w, fio_walk_dir *parent,
                             const fio_walk_entry *e);
/* The consumer is done with d (and its batch). */
void fio_walk_release(fio_walk *w, fio_walk_dir *d);
/* The consumer is done with the walk: reads still running end soon; all is
 * freed once the last ends. */
void fio_walk_close(fio_walk *w);

#pragma GCC visibility pop
#endif
