/* list.h — the intrusive doubly linked list fiberio's queues are made of:
 * a node inside each element, a list that knows its ends and its length.
 * Insert at either end, remove any element, in O(1); no allocation. An
 * element is on one list per node it has; a node off every list has both
 * links NULL. Not thread-safe: the owner of the list guards it. */
#ifndef FIBERIO_UTIL_LIST_H
#define FIBERIO_UTIL_LIST_H

#include <stddef.h>

#pragma GCC visibility push(hidden) /* (core/loop.h) */

typedef struct fio_dnode {
  struct fio_dnode *prev, *next;
} fio_dnode;

typedef struct fio_dlist {
  fio_dnode *head, *tail;
  size_t len;
} fio_dlist;

/* The element of type T whose member m is the node p; fio_entry: NULL for
 * a NULL p. p is evaluated twice: pass a variable, never a call. */
#define fio_container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))
#define fio_entry(p, T, m) ((p) ? fio_container_of(p, T, m) : (T *)NULL)

static inline void fio_dlist_push(fio_dlist *l, fio_dnode *n) {
  n->next = NULL;
  n->prev = l->tail;
  if (l->tail) l->tail->next = n;
  else l->head = n;
  l->tail = n;
  l->len++;
}

static inline void fio_dlist_push_head(fio_dlist *l, fio_dnode *n) {
  n->prev = NULL;
  n->next = l->head;
  if (l->head) l->head->prev = n;
  else l->tail = n;
  l->head = n;
  l->len++;
}

/* n must be on l. */
static inline void fio_dlist_remove(fio_dlist *l, fio_dnode *n) {
  if (n->prev) n->prev->next = n->next;
  else l->head = n->next;
  if (n->next) n->next->prev = n->prev;
  else l->tail = n->prev;
  n->prev = n->next = NULL;
  l->len--;
}

/* Take the first node off l: it, or NULL when l is empty. */
static inline fio_dnode *fio_dlist_pop(fio_dlist *l) {
  fio_dnode *n = l->head;
  if (n) fio_dlist_remove(l, n);
  return n;
}

/* Whether n is on l, whatever list it may be on (a scan: for short lists). */
static inline int fio_dlist_contains(const fio_dlist *l, const fio_dnode *n) {
  for (const fio_dnode *m = l->head; m; m = m->next)
    if (m == n) return 1;
  return 0;
}

/* Whether n is on l (given that it is on l or on no list). */
static inline int fio_dlist_has(const fio_dlist *l, const fio_dnode *n) {
  return n->prev != NULL || l->head == n;
}


#pragma GCC visibility pop
#endif
