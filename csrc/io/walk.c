/* walk.c — the tree walker's engine (walk.h): readers on pool threads take
 * directories off the walk's stack, read each whole into a batch, queue
 * its subdirectories and hand the batch to the consumer. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "io/backend.h"
#include "io/walk.h"

enum { D_QUEUED, D_READING, D_DONE };

/* Bytes of batches the readers may get ahead of the consumer. */
#define WALK_CAP (4u << 20)
/* Directory fds kept open for their children's openat at once; past it a
 * child is opened by its whole path. */
#define WALK_KEPT_FDS 64
/* getdents64's buffer, per reader. */
#define WALK_BUFSZ (64 * 1024)
/* Directories one reader job reads before it goes to the back of the
 * pool's queue: readers take turns with the other jobs (a copy, a
 * readfile) instead of holding the pool's threads for a whole tree. */
#define READER_TURN 16

struct fio_walk {
  pthread_mutex_t mu;
  fio_pool_client client; /* the pool's count of its queued readers */
  fio_dlist todo;        /* directories to read, the newest at head */
  fio_dlist all;         /* every directory not yet freed */
  fio_walk_dir *wanted;  /* the one the consumer waits for */
  fio_op *waiter;        /* its op, completed once wanted is read */
  size_t buffered;       /* bytes of batches read, not yet released */
  int active;            /* readers submitted and not yet exited */
  int jobs;              /* at most this many readers */
  int refs;              /* the consumer's, plus one per reader job */
  int kept_fds;
  int maxdepth;
  unsigned flags;
  dev_t root_dev;
  atomic_int stopping;   /* the consumer is gone: readers end */
  char *here_buf;        /* the consumer's getdents buffer (read_here) */
};

typedef struct reader {
  fio_job job;
  fio_walk *w;
} reader;

static void destroy(fio_walk *w) {
  fio_dnode *n;
  while ((n = fio_dlist_pop(&w->all))) {
    fio_walk_dir *d = fio_entry(n, fio_walk_dir, all_node);
    if (d->fd >= 0) close(d->fd);
    free(d->ents);
    free(d->names);
    free(d->stats);
    free(d);
  }
  pthread_mutex_destroy(&w->mu);
  free(w->here_buf);
  free(w);
}

/* A directory record for path parent/name (parent NULL: the root, path
 * as given). Not yet on any list. */
static fio_walk_dir *dir_new(fio_walk_dir *parent, const char *name,
                             size_t namelen) {
  size_t plen = parent ? parent->pathlen : 0;
  int sep = parent && plen && parent->path[plen - 1] != '/';
  fio_walk_dir *d = calloc(1, sizeof *d + plen + sep + namelen + 1);
  if (!d) return NULL;
  if (parent) memcpy(d->path, parent->path, plen);
  if (sep) d->path[plen] = '/';
  memcpy(d->path + plen + sep, name, namelen);
  d->pathlen = plen + sep + namelen;
  d->name_off = (uint32_t)(plen + sep);
  d->parent = parent;
  d->depth = parent ? parent->depth + 1 : 0;
  d->refs = 1;
  d->fd = -1;
  return d;
}

/* Under mu: drop a reference to d; the last frees it (and drops its
 * parent's). */
static void dir_unref(fio_walk *w, fio_walk_dir *d) {
  while (d && --d->refs == 0) {
    fio_walk_dir *parent = d->parent;
    if (w->wanted == d) w->wanted = NULL;
    fio_dlist_remove(&w->all, &d->all_node);
    if (d->fd >= 0) {
      close(d->fd);
      w->kept_fds--;
    }
    free(d);
    d = parent;
  }
}

/* --- reading one directory --------------------------------------------------- */

typedef struct batch {
  fio_walk_entry *ents;
  char *names;
  struct statx *stats;
  size_t n, cap, namelen, namecap;
} batch;

static int batch_add(batch *b, const char *name, size_t len, uint8_t type) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    fio_walk_entry *e = realloc(b->ents, cap * sizeof *e);
    if (!e) return -ENOMEM;
    b->ents = e;
    b->cap = cap;
  }
  if (b->namelen + len + 1 > b->namecap) {
    size_t cap = b->namecap ? b->namecap * 2 : 2048;
    while (cap < b->namelen + len + 1) cap *= 2;
    char *m = realloc(b->names, cap);
    if (!m) return -ENOMEM;
    b->names = m;
    b->namecap = cap;
  }
  memcpy(b->names + b->namelen, name, len + 1);
  b->ents[b->n++] = (fio_walk_entry){NULL, (uint32_t)b->namelen,
                                     (uint16_t)len, type, 0};
  b->namelen += len + 1;
  return 0;
}

static uint8_t dtype_of(mode_t m) {
  return (uint8_t)IFTODT(m);
}

/* Whether a directory with (dev, ino) is d or one of its ancestors. */
static int is_ancestor(const fio_walk_dir *d, dev_t dev, ino_t ino) {
  for (; d; d = d->parent)
    if (d->dev == dev && d->ino == ino) return 1;
  return 0;
}

/* The stats of d's entries in b, where asked or needed (no d_type; a link
 * to follow: one to d or an ancestor stays a link, as with find -L). */
static int batch_stat(batch *b, const fio_walk_dir *d, int fd, unsigned flags) {
  int want_all = flags & FIO_WALK_STAT;
  if (want_all) {
    b->stats = malloc((b->n ? b->n : 1) * sizeof *b->stats);
    if (!b->stats) return -ENOMEM;
  }
  for (size_t i = 0; i < b->n; i++) {
    fio_walk_entry *e = &b->ents[i];
    int follow = (flags & FIO_WALK_FOLLOW) && e->type == DT_LNK;
    if (!want_all && !follow && e->type != DT_UNKNOWN) continue;
    struct statx one, *st = want_all ? &b->stats[i] : &one;
    const char *name = b->names + e->name;
    int ok = 0;
    if (follow) {
      ok = statx(fd, name, AT_NO_AUTOMOUNT, STATX_BASIC_STATS, st) == 0 &&
           !(S_ISDIR(st->stx_mode) &&
             is_ancestor(d, makedev(st->stx_dev_major, st->stx_dev_minor),
                         st->stx_ino));
      if (ok) e->type = dtype_of(st->stx_mode);
    }
    if (!ok && (want_all || e->type == DT_UNKNOWN)) {
      ok = statx(fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                 STATX_BASIC_STATS, st) == 0;
      if (ok && e->type == DT_UNKNOWN) e->type = dtype_of(st->stx_mode);
    }
    e->has_stat = (uint8_t)(ok && want_all);
  }
  return 0;
}

static int by_name(const void *a, const void *b, void *names) {
  const fio_walk_entry *x = a, *y = b;
  return strcmp((char *)names + x->name, (char *)names + y->name);
}

/* Sort b by name; its stats follow their entries. */
static int batch_sort(batch *b) {
  if (b->stats) {
    /* (stats follow their entries: each entry's old index rides in its
     * child field, unused until the sort is done) */
    struct statx *st = malloc(b->n * sizeof *st);
    if (!st) return -ENOMEM;
    for (size_t i = 0; i < b->n; i++) b->ents[i].child = (void *)i;
    qsort_r(b->ents, b->n, sizeof *b->ents, by_name, b->names);
    for (size_t i = 0; i < b->n; i++) {
      st[i] = b->stats[(size_t)b->ents[i].child];
      b->ents[i].child = NULL;
    }
    free(b->stats);
    b->stats = st;
    return 0;
  }
  qsort_r(b->ents, b->n, sizeof *b->ents, by_name, b->names);
  return 0;
}

/* List fd (a directory) into b. */
static int batch_read(batch *b, int fd, char *buf, atomic_int *stop) {
  for (;;) {
    if (atomic_load_explicit(stop, memory_order_relaxed)) return -ECANCELED;
    long got = syscall(SYS_getdents64, fd, buf, WALK_BUFSZ);
    if (got < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (got == 0) return 0;
    for (long pos = 0; pos < got;) {
      struct dirent64 *de = (struct dirent64 *)(buf + pos);
      pos += de->d_reclen;
      const char *name = de->d_name;
      if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]))) continue;
      int r = batch_add(b, name, strlen(name), de->d_type);
      if (r < 0) return r;
    }
  }
}

/* Start readers for work that waits, as many as it can use (under mu);
 * returns how many the caller must submit once mu is released. */
static int readers_wanted(fio_walk *w) {
  if (w->stopping) return 0;
  int more = 0;
  size_t todo = w->todo.len;
  int room = w->buffered < WALK_CAP;
  int wanted_waits = w->wanted && w->wanted->state == D_QUEUED;
  while (w->active + more < w->jobs && todo > 0 &&
         (room || (wanted_waits && more == 0 && w->active == 0))) {
    more++;
    todo--;
  }
  w->active += more;
  w->refs += more;
  return more;
}

static int reader_run(fio_job *job, const atomic_int *stop);
static void reader_done(fio_job *job, int res, int forgotten);

static void readers_submit(fio_walk *w, int n) {
  for (; n > 0; n--) {
    reader *r = calloc(1, sizeof *r);
    if (!r) {
      /* (no reader: the others, or the consumer's next wait, go on) */
      pthread_mutex_lock(&w->mu);
      w->active--;
      int last = --w->refs == 0;
      pthread_mutex_unlock(&w->mu);
      if (last) destroy(w);
      continue;
    }
    r->w = w;
    r->job.run = reader_run;
    r->job.done = reader_done;
    r->job.client = &w->client;
    fio_pool_submit(&r->job);
  }
}

/* Read d (taken off todo by this reader) and publish its batch. */
static void read_dir(fio_walk *w, fio_walk_dir *d, char *buf) {
  unsigned flags = w->flags;
  fio_walk_dir *parent = d->parent;
  int pfd = d->uses_parent_fd ? parent->fd : AT_FDCWD;
  const char *name = d->uses_parent_fd ? d->path + d->name_off : d->path;
  int oflags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  if (parent && !d->via_link) oflags |= O_NOFOLLOW;
  int fd = openat(pfd, name, oflags);
  int err = fd < 0 ? errno : 0;
  int parent_fd_done = -1;
  if (d->uses_parent_fd) {
    pthread_mutex_lock(&w->mu);
    if (--parent->unopened == 0) {
      parent_fd_done = parent->fd;
      parent->fd = -1;
      w->kept_fds--;
    }
    pthread_mutex_unlock(&w->mu);
    if (parent_fd_done >= 0) close(parent_fd_done);
  }
  batch b = {0};
  int skip = 0;
  if (!err && (!parent || (flags & (FIO_WALK_XDEV | FIO_WALK_FOLLOW)))) {
    struct stat sb;
    if (fstat(fd, &sb) < 0) err = errno;
    else {
      d->dev = sb.st_dev;
      d->ino = sb.st_ino;
      if (!parent) w->root_dev = sb.st_dev; /* (read by readers of its
                                             * children, queued after) */
      else if ((flags & FIO_WALK_XDEV) && sb.st_dev != w->root_dev) skip = 1;
      else if ((flags & FIO_WALK_FOLLOW) && is_ancestor(d->parent, d->dev, d->ino))
        err = ELOOP; /* (a link changed since it was listed) */
    }
  }
  if (!err && !skip) {
    int r = batch_read(&b, fd, buf, &w->stopping);
    if (!r) r = batch_stat(&b, d, fd, flags);
    if (!r && (flags & FIO_WALK_SORT) && b.n > 1) r = batch_sort(&b);
    if (r < 0) err = -r;
  }
  /* Its subdirectories, to read next (unless the consumer picks them). */
  size_t nkids = 0;
  fio_walk_dir **kids = NULL;
  if (!err && !(flags & FIO_WALK_FILTER) &&
      (w->maxdepth < 0 || d->depth + 1 < w->maxdepth)) {
    for (size_t i = 0; i < b.n; i++)
      if (b.ents[i].type == DT_DIR) nkids++;
    if (nkids && !(kids = malloc(nkids * sizeof *kids))) err = ENOMEM;
    size_t k = 0;
    for (size_t i = 0; !err && i < b.n; i++) {
      fio_walk_entry *e = &b.ents[i];
      if (e->type != DT_DIR) continue;
      fio_walk_dir *c = dir_new(d, b.names + e->name, e->namelen);
      if (!c) {
        err = ENOMEM;
        break;
      }
      /* (following links: a subdirectory may be one, so no O_NOFOLLOW) */
      c->via_link = (flags & FIO_WALK_FOLLOW) != 0;
      e->child = c;
      kids[k++] = c;
    }
    if (err) {
      for (size_t i = 0; i < k; i++) free(kids[i]);
      nkids = 0;
    }
  }
  if (err) {
    free(b.ents);
    free(b.names);
    free(b.stats);
    b = (batch){0};
  }
  pthread_mutex_lock(&w->mu);
  d->err = err;
  d->ents = b.ents;
  d->names = b.names;
  d->stats = b.stats;
  d->n = (uint32_t)b.n;
  d->bytes = b.n * sizeof *b.ents + b.namecap +
             (b.stats ? b.n * sizeof *b.stats : 0);
  w->buffered += d->bytes;
  d->state = D_DONE;
  int keep = fd >= 0 && nkids && w->kept_fds < WALK_KEPT_FDS;
  if (keep) {
    d->fd = fd;
    d->unopened = (int)nkids;
    w->kept_fds++;
    fd = -1;
  }
  for (size_t i = nkids; i-- > 0;) { /* the first listed on top */
    fio_walk_dir *c = kids[i];
    c->uses_parent_fd = (uint8_t)keep;
    d->refs++;
    fio_dlist_push(&w->all, &c->all_node);
    fio_dlist_push_head(&w->todo, &c->todo_node);
  }
  fio_op *post = NULL;
  if (w->wanted == d && w->waiter) {
    post = w->waiter;
    w->waiter = NULL;
    w->wanted = NULL;
  }
  int more = readers_wanted(w);
  pthread_mutex_unlock(&w->mu);
  free(kids);
  if (fd >= 0) close(fd);
  if (post) fio_loop_post(post->loop, post, 0);
  readers_submit(w, more);
}

static int reader_run(fio_job *job, const atomic_int *stop) {
  (void)stop; /* (nobody cancels a reader: it looks at w->stopping) */
  fio_walk *w = ((reader *)job)->w;
  char *buf = malloc(WALK_BUFSZ);
  int turn = READER_TURN;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    fio_walk_dir *d = NULL;
    if (w->stopping || !buf || turn-- == 0) break;
    if (w->wanted && w->wanted->state == D_QUEUED) d = w->wanted;
    else if (w->todo.head && w->buffered < WALK_CAP)
      d = fio_entry(w->todo.head, fio_walk_dir, todo_node);
    if (!d) break;
    fio_dlist_remove(&w->todo, &d->todo_node);
    d->state = D_READING;
    pthread_mutex_unlock(&w->mu);
    read_dir(w, d, buf);
    pthread_mutex_lock(&w->mu);
  }
  w->active--;
  /* (out of memory for the buffer: the consumer's wait starts another) */
  fio_op *post = NULL;
  if (!buf && w->active == 0 && w->waiter) {
    post = w->waiter;
    w->waiter = NULL;
  }
  int more = buf ? readers_wanted(w) : 0; /* (its turn over: queued again) */
  pthread_mutex_unlock(&w->mu);
  free(buf);
  if (post) fio_loop_post(post->loop, post, -ENOMEM);
  readers_submit(w, more);
  return 0;
}

static void reader_done(fio_job *job, int res, int forgotten) {
  (void)res;
  (void)forgotten;
  reader *r = (reader *)job;
  fio_walk *w = r->w;
  free(r);
  pthread_mutex_lock(&w->mu);
  int last = --w->refs == 0;
  pthread_mutex_unlock(&w->mu);
  if (last) destroy(w);
}

/* --- the consumer's side ----------------------------------------------------------- */

fio_walk *fio_walk_open(const char *root, size_t rootlen, unsigned flags,
                        int maxdepth, int jobs) {
  fio_walk *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  fio_walk_dir *d = dir_new(NULL, root, rootlen);
  if (!d) {
    free(w);
    return NULL;
  }
  pthread_mutex_init(&w->mu, NULL);
  w->flags = flags;
  w->maxdepth = maxdepth;
  w->jobs = jobs > 0 ? jobs : 1;
  w->refs = 1;
  fio_dlist_push(&w->all, &d->all_node);
  fio_dlist_push(&w->todo, &d->todo_node);
  return w;
}

fio_walk_dir *fio_walk_root(fio_walk *w) {
  return fio_entry(w->all.head, fio_walk_dir, all_node);
}

int fio_walk_read_here(fio_walk *w, fio_walk_dir *d) {
  if (!w->here_buf && !(w->here_buf = malloc(WALK_BUFSZ))) return 0;
  pthread_mutex_lock(&w->mu);
  int mine = d->state == D_QUEUED;
  if (mine) {
    fio_dlist_remove(&w->todo, &d->todo_node);
    d->state = D_READING;
  }
  pthread_mutex_unlock(&w->mu);
  if (mine) read_dir(w, d, w->here_buf);
  return mine;
}

int fio_walk_ready(fio_walk *w, fio_walk_dir *d) {
  pthread_mutex_lock(&w->mu);
  if (d->state == D_DONE) {
    if (w->wanted == d) w->wanted = NULL;
    pthread_mutex_unlock(&w->mu);
    return 1;
  }
  w->wanted = d;
  int more = readers_wanted(w);
  pthread_mutex_unlock(&w->mu);
  readers_submit(w, more);
  return 0;
}

fio_walk_dir *fio_walk_child(fio_walk *w, fio_walk_dir *parent,
                             const fio_walk_entry *e) {
  fio_walk_dir *c = dir_new(parent, parent->names + e->name, e->namelen);
  if (!c) return NULL;
  c->via_link = (w->flags & FIO_WALK_FOLLOW) != 0;
  pthread_mutex_lock(&w->mu);
  parent->refs++;
  fio_dlist_push(&w->all, &c->all_node);
  fio_dlist_push_head(&w->todo, &c->todo_node);
  int more = readers_wanted(w);
  pthread_mutex_unlock(&w->mu);
  readers_submit(w, more);
  return c;
}

void fio_walk_release(fio_walk *w, fio_walk_dir *d) {
  free(d->ents);
  free(d->names);
  free(d->stats);
  d->ents = NULL;
  d->names = NULL;
  d->stats = NULL;
  pthread_mutex_lock(&w->mu);
  w->buffered -= d->bytes;
  d->bytes = 0;
  dir_unref(w, d);
  int more = readers_wanted(w);
  pthread_mutex_unlock(&w->mu);
  readers_submit(w, more);
}

void fio_walk_close(fio_walk *w) {
  pthread_mutex_lock(&w->mu);
  w->stopping = 1;
  int last = --w->refs == 0;
  pthread_mutex_unlock(&w->mu);
  if (last) destroy(w);
}

/* --- the consumer's wait: an op completed once `wanted` is read -------------- */

static fio_walk *walk_of(fio_op *op) {
  return *(fio_walk **)(void *)op->mem;
}

static void waiter_submit(fio_loop *loop, fio_op *op) {
  fio_walk *w = walk_of(op);
  pthread_mutex_lock(&w->mu);
  int now = !w->wanted || w->wanted->state == D_DONE || w->active == 0;
  if (!now) w->waiter = op;
  pthread_mutex_unlock(&w->mu);
  /* (no reader left and none could start: the consumer looks again) */
  if (now) fio_loop_post(loop, op, 0);
}

static void waiter_cancel(fio_loop *loop, fio_op *op) {
  fio_walk *w = walk_of(op);
  pthread_mutex_lock(&w->mu);
  int mine = w->waiter == op;
  if (mine) w->waiter = NULL;
  pthread_mutex_unlock(&w->mu);
  if (mine) fio_loop_post(loop, op, -ECANCELED);
}

static void waiter_forget(fio_loop *loop, fio_op *op) {
  (void)loop;
  fio_walk *w = walk_of(op);
  pthread_mutex_lock(&w->mu);
  int mine = w->waiter == op;
  if (mine) w->waiter = NULL;
  pthread_mutex_unlock(&w->mu);
  if (mine) fio_op_drop(op, -ECANCELED);
}

const fio_executor fio_walk_waiter = {waiter_submit, waiter_cancel,
                                      waiter_forget};
