/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The open-addressing table under the identical-page index (pageindex.c)
 * and the similarity detectors (simdet.c).
 *
 * An entry is `stride` 32-bit words: word 0 its tag, word 1 UINT32_MAX
 * when the entry is empty (so that value is never stored there), the rest
 * the owner's. The home bucket of an entry is tag & mask, derived from the
 * entry alone: the table can double and entries can shift without the
 * pages they stand for being fetched and hashed again.
 *
 * Robin Hood linear probing with backward-shift deletion (no tombstones):
 * along a run of full slots, each entry sits at most one slot further from
 * its home than the entry before it. So a walk from home h that has gone d
 * slots can stop at an empty slot or at one whose entry is nearer than d to
 * its own home: no entry of home h lies beyond, and the entries of one home
 * (so of one tag) are contiguous. count <= limit = cap - cap / 8 (load
 * 7/8); growing doubles the table, and a failed doubling changes nothing.
 * The table itself never fails a lookup or a delete. */
#ifndef DMEM_RHTAB_H
#define DMEM_RHTAB_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define DMEM__RH_EMPTY UINT32_MAX
#define DMEM__RH_MAX_STRIDE 16

typedef struct dmem__rhtab {
  uint32_t *tab; /* (mask + 1) * stride words, 64-byte aligned */
  size_t mask;   /* cap - 1; cap a power of two */
  size_t stride; /* words an entry */
  size_t count;  /* entries */
  size_t limit;  /* count may reach this; one more needs dmem__rh_reserve() */
} dmem__rhtab;

/* A table of entries of stride words (2 to DMEM__RH_MAX_STRIDE), the
 * smallest that holds `want` entries without growing, or the largest
 * there may be (dmem__rh_fits() says which). 0, DMEM_EINVAL or
 * DMEM_ENOMEM. */
int dmem__rh_init(dmem__rhtab *t, const dmem__alloc *a, size_t stride, size_t want);
/* Could a table of entries of stride words hold `want` of them? */
int dmem__rh_fits(size_t stride, size_t want);
void dmem__rh_fini(dmem__rhtab *t, const dmem__alloc *a);

/* Room for `more` new entries (doubling as often as needed): 0, or
 * DMEM_ENOMEM with the table as it was. */
int dmem__rh_reserve(dmem__rhtab *t, const dmem__alloc *a, size_t more);

/* Puts entry e (stride words; clobbered) in its place; there must be room
 * (count < limit). Returns the slot where e itself went. */
size_t dmem__rh_place(dmem__rhtab *t, uint32_t *e);

/* Deletes the entry in slot i: the entries after it in its run shift one
 * slot back, so the walk that found it finds the next one in slot i. */
void dmem__rh_delete(dmem__rhtab *t, size_t i);

static inline uint32_t *dmem__rh_entry(const dmem__rhtab *t, size_t i)
{
  return t->tab + i * t->stride;
}

static inline size_t dmem__rh_bytes(const dmem__rhtab *t)
{
  return (t->mask + 1) * t->stride * sizeof(uint32_t);
}

/* How far slot i sits from the home of its entry's tag. */
static inline size_t dmem__rh_dist(const dmem__rhtab *t, size_t i, uint32_t tag)
{
  return (i - (tag & t->mask)) & t->mask;
}

/* A walk over the entries of one tag: start, then find; find stays on
 * what it found, and past moves on (not after deleting it). */
typedef struct dmem__rh_walk {
  size_t i, d;
} dmem__rh_walk;

static inline dmem__rh_walk dmem__rh_start(const dmem__rhtab *t, uint32_t tag)
{
  dmem__rh_walk w = {tag & t->mask, 0};
  return w;
}

/* The slot of the next entry of tag, at w->i or after, or SIZE_MAX. */
static inline size_t dmem__rh_find(const dmem__rhtab *t, uint32_t tag, dmem__rh_walk *w)
{
  for (;; w->i = (w->i + 1) & t->mask, w->d++) {
    const uint32_t *e = dmem__rh_entry(t, w->i);
    if (e[1] == DMEM__RH_EMPTY || dmem__rh_dist(t, w->i, e[0]) < w->d)
      return SIZE_MAX;
    if (e[0] == tag)
      return w->i;
  }
}

static inline void dmem__rh_past(const dmem__rhtab *t, dmem__rh_walk *w)
{
  w->i = (w->i + 1) & t->mask;
  w->d++;
}

#endif
