/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Robin Hood table of rhtab.h: making, growing, placing, deleting. */
#include "config.h"

#include <string.h>

#include <diffmem/common.h>

#include "rhtab.h"

#define MIN_CAP ((size_t)32)
/* Homes come from 32 tag bits: a larger table would only add probes. */
#define MAX_CAP_LOG2 32

static size_t limit_of(size_t cap)
{
  return cap - cap / 8;
}

/* Is a table of cap entries one we may allocate? */
static int cap_ok(size_t cap, size_t stride)
{
  if (cap > SIZE_MAX / (stride * sizeof(uint32_t)))
    return 0;
#if SIZE_MAX > UINT32_MAX
  if (cap > (size_t)1 << MAX_CAP_LOG2)
    return 0;
#endif
  return 1;
}

static uint32_t *alloc_tab(const dmem__alloc *a, size_t cap, size_t stride)
{
  size_t bytes = cap * stride * sizeof(uint32_t);
  uint32_t *t = dmem__malloc_aligned(a, bytes, 64);
  if (t)
    memset(t, 0xff, bytes); /* every entry empty */
  return t;
}

/* The smallest cap whose limit reaches want, or the largest there may be. */
static size_t cap_for(size_t stride, size_t want)
{
  size_t cap = MIN_CAP;
  while (limit_of(cap) < want && cap_ok(cap * 2, stride))
    cap *= 2;
  return cap;
}

int dmem__rh_fits(size_t stride, size_t want)
{
  return limit_of(cap_for(stride, want)) >= want;
}

int dmem__rh_init(dmem__rhtab *t, const dmem__alloc *a, size_t stride, size_t want)
{
  if (stride < 2 || stride > DMEM__RH_MAX_STRIDE)
    return DMEM_EINVAL;
  size_t cap = cap_for(stride, want);
  t->tab = alloc_tab(a, cap, stride);
  if (!t->tab)
    return DMEM_ENOMEM;
  t->mask = cap - 1;
  t->stride = stride;
  t->count = 0;
  t->limit = limit_of(cap);
  return 0;
}

void dmem__rh_fini(dmem__rhtab *t, const dmem__alloc *a)
{
  if (t->tab)
    dmem__free(a, t->tab, dmem__rh_bytes(t));
  t->tab = NULL;
}

/* Puts e in its place in tab (mask, stride), which has an empty slot;
 * returns where e itself went. */
static size_t place(uint32_t *tab, size_t mask, size_t stride, uint32_t *e)
{
  uint32_t tmp[DMEM__RH_MAX_STRIDE];
  size_t bytes = stride * sizeof *e, i = e[0] & mask, where = SIZE_MAX;
  for (size_t d = 0;; d++, i = (i + 1) & mask) {
    uint32_t *cur = tab + i * stride;
    if (cur[1] == DMEM__RH_EMPTY) {
      memcpy(cur, e, bytes);
      return where == SIZE_MAX ? i : where;
    }
    size_t cd = (i - (cur[0] & mask)) & mask;
    if (cd < d) { /* the richer entry yields its place */
      memcpy(tmp, cur, bytes);
      memcpy(cur, e, bytes);
      memcpy(e, tmp, bytes);
      d = cd;
      if (where == SIZE_MAX)
        where = i;
    }
  }
}

size_t dmem__rh_place(dmem__rhtab *t, uint32_t *e)
{
  t->count++;
  return place(t->tab, t->mask, t->stride, e);
}

/* Doubles the table; on failure it is as it was. */
static int grow(dmem__rhtab *t, const dmem__alloc *a)
{
  size_t cap = t->mask + 1, ncap = cap * 2;
  if (ncap < cap || !cap_ok(ncap, t->stride))
    return DMEM_ENOMEM;
  uint32_t *nt = alloc_tab(a, ncap, t->stride);
  if (!nt)
    return DMEM_ENOMEM;
  uint32_t e[DMEM__RH_MAX_STRIDE];
  for (size_t i = 0; i < cap; i++) {
    const uint32_t *old = dmem__rh_entry(t, i);
    if (old[1] == DMEM__RH_EMPTY)
      continue;
    memcpy(e, old, t->stride * sizeof *e);
    place(nt, ncap - 1, t->stride, e);
  }
  dmem__free(a, t->tab, dmem__rh_bytes(t));
  t->tab = nt;
  t->mask = ncap - 1;
  t->limit = limit_of(ncap);
  return 0;
}

int dmem__rh_reserve(dmem__rhtab *t, const dmem__alloc *a, size_t more)
{
  while (t->limit - t->count < more) {
    int rc = grow(t, a);
    if (rc)
      return rc;
  }
  return 0;
}

void dmem__rh_delete(dmem__rhtab *t, size_t i)
{
  size_t mask = t->mask, bytes = t->stride * sizeof(uint32_t);
  for (;;) {
    size_t j = (i + 1) & mask;
    const uint32_t *e = dmem__rh_entry(t, j);
    if (e[1] == DMEM__RH_EMPTY || dmem__rh_dist(t, j, e[0]) == 0)
      break;
    memcpy(dmem__rh_entry(t, i), e, bytes);
    i = j;
  }
  memset(dmem__rh_entry(t, i), 0xff, bytes);
  t->count--;
}
