/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The identical-page index of the Difference Engine (Gupta et al., OSDI
 * 2008, section 3.1: pages are hashed, and a hash match is confirmed by a
 * byte-by-byte compare before the pages are shared).
 *
 * Layout. One open-addressing table of 8-byte slots {tag, id}, Robin Hood
 * linear probing, backward-shift deletion (no tombstones):
 *  - tag is the high 32 bits of the keyed XXH3 page hash; the slot keeps
 *    nothing else of it. A slot's home bucket is tag & mask, so it can be
 *    derived from the slot alone: the table can double and entries can
 *    shift without the pages being fetched and hashed again. (Any bucket
 *    taken from hash bits outside the tag would be lost once inserted.)
 *    Within a probe run the tag then tells apart entries of other homes
 *    outright, and entries of the same home by its 32 - log2(cap) bits
 *    above the mask.
 *  - id UINT32_MAX marks an empty slot, so that id cannot be inserted.
 *  - Robin Hood order: along a run of full slots, each entry sits at most
 *    one slot further from its home than the entry before it. So a walk
 *    from home h that has gone d slots can stop at an empty slot or at one
 *    whose entry is nearer than d to its own home: no entry of home h lies
 *    beyond. The entries of one home (and so of one tag) are contiguous.
 *  - a tag match is only a candidate: lookup fetches the entry's current
 *    bytes through the callback and memcmp()s them, so a hash match never
 *    counts alone, and a stale entry whose page changed does not match.
 *  - (tag, id) pairs are a set: inserting one already present does nothing.
 *  - count <= limit = cap - cap / 8 (load 7/8); the table doubles past it.
 *    A tracked page then costs 8 / load bytes: 9.1 just below a doubling,
 *    18.3 just above, 8 / (7/8 * ln 2) = 13.2 on average over sizes.
 *    A failed doubling changes nothing.
 * The key is random per index (getrandom) unless the caller fixes it, so a
 * guest cannot aim pages at one bucket.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#include <diffmem/index.h>

#include "internal.h"

#define EMPTY_ID UINT32_MAX
#define MIN_CAP ((size_t)32)
/* Homes come from 32 tag bits: a larger table would only add probes. */
#define MAX_CAP_LOG2 32

typedef struct slot {
  uint32_t tag;
  uint32_t id;
} slot;

struct dmem_index {
  dmem__alloc alloc;
  uint64_t seed;
  dmem_page_fetch_fn fetch;
  void *fetch_ud;
  slot *slots; /* cap of them; cap = mask + 1, a power of two */
  size_t mask;
  size_t count; /* entries */
  size_t limit; /* count may reach this; one more doubles the table */
};

static inline uint32_t tag_of(uint64_t hash)
{
  return (uint32_t)(hash >> 32);
}

/* How far slot i sits from the home of its entry. */
static inline size_t dist(size_t i, uint32_t tag, size_t mask)
{
  return (i - (tag & mask)) & mask;
}

static inline size_t limit_of(size_t cap)
{
  return cap - cap / 8;
}

/* Is a table of cap slots one we may allocate? */
static int cap_ok(size_t cap)
{
  if (cap > SIZE_MAX / sizeof(slot))
    return 0;
#if SIZE_MAX > UINT32_MAX
  if (cap > (size_t)1 << MAX_CAP_LOG2)
    return 0;
#endif
  return 1;
}

static slot *alloc_slots(const dmem__alloc *a, size_t cap)
{
  slot *s = dmem__malloc_aligned(a, cap * sizeof *s, 64);
  if (s)
    memset(s, 0xff, cap * sizeof *s); /* every id EMPTY_ID */
  return s;
}

/* Puts s in its Robin Hood place; the table has an empty slot. */
static void rh_place(slot *slots, size_t mask, slot s)
{
  size_t i = s.tag & mask;
  for (size_t d = 0;; d++, i = (i + 1) & mask) {
    slot cur = slots[i];
    if (cur.id == EMPTY_ID) {
      slots[i] = s;
      return;
    }
    size_t cd = dist(i, cur.tag, mask);
    if (cd < d) { /* the richer entry yields its place */
      slots[i] = s;
      s = cur;
      d = cd;
    }
  }
}

/* The slot holding (tag, id), or SIZE_MAX. */
static size_t find(const dmem_index *x, uint32_t tag, uint32_t id)
{
  size_t mask = x->mask, i = tag & mask;
  for (size_t d = 0;; d++, i = (i + 1) & mask) {
    slot s = x->slots[i];
    if (s.id == EMPTY_ID || dist(i, s.tag, mask) < d)
      return SIZE_MAX;
    if (s.tag == tag && s.id == id)
      return i;
  }
}

int dmem_index_create(dmem_index **out, const dmem_index_options *opts)
{
  if (!out || !opts)
    return DMEM_EINVAL;
  if (opts->version != DMEM_INDEX_OPTIONS_VERSION)
    return DMEM_EVERSION;
  if (!opts->fetch)
    return DMEM_EINVAL;
  size_t cap = MIN_CAP;
  while (limit_of(cap) < opts->expected_pages && cap_ok(cap * 2))
    cap *= 2;
  if (limit_of(cap) < opts->expected_pages)
    return DMEM_ENOMEM; /* more pages than any table could hold */
  if (!dmem__alloc_valid(opts->allocator))
    return DMEM_EINVAL;
  uint64_t seed = opts->seed;
  if (!seed && dmem__random_key(&seed))
    return DMEM_ESYS;
  dmem__alloc a;
  dmem__alloc_init(&a, opts->allocator);
  dmem_index *x = dmem__malloc(&a, sizeof *x);
  if (!x)
    return DMEM_ENOMEM;
  *x = (dmem_index){.alloc = a, .seed = seed, .fetch = opts->fetch, .fetch_ud = opts->fetch_ud};
  x->slots = alloc_slots(&a, cap);
  if (!x->slots) {
    dmem__free(&a, x, sizeof *x);
    return DMEM_ENOMEM;
  }
  x->mask = cap - 1;
  x->limit = limit_of(cap);
  *out = x;
  return 0;
}

void dmem_index_destroy(dmem_index *x)
{
  if (!x)
    return;
  dmem__alloc a = x->alloc;
  dmem__free(&a, x->slots, (x->mask + 1) * sizeof *x->slots);
  dmem__free(&a, x, sizeof *x);
}

uint64_t dmem_index_hash(const dmem_index *x, const void *page)
{
  if (!x || !page)
    return 0;
  return XXH3_64bits_withSeed(page, DMEM_PAGE_SIZE, x->seed);
}

/* Backward-shift deletion of the entry at slot i: each later entry of
 * the run that is not at its home moves one slot nearer it, which keeps
 * the Robin Hood order. */
static void delete_at(dmem_index *x, size_t i)
{
  size_t mask = x->mask;
  for (;;) {
    size_t j = (i + 1) & mask;
    slot s = x->slots[j];
    if (s.id == EMPTY_ID || dist(j, s.tag, mask) == 0)
      break;
    x->slots[i] = s;
    i = j;
  }
  x->slots[i] = (slot){UINT32_MAX, EMPTY_ID};
  x->count--;
}

int dmem_index_lookup(uint32_t *out_id, dmem_index *x, const void *page, uint64_t hash)
{
  if (!out_id || !x || !page)
    return DMEM_EINVAL;
  uint32_t tag = tag_of(hash);
  size_t mask = x->mask, i = tag & mask;
  unsigned fetched = 0;
  for (size_t d = 0;;) {
    slot s = x->slots[i];
    if (s.id == EMPTY_ID || dist(i, s.tag, mask) < d)
      return DMEM_ENOENT;
    if (s.tag == tag) {
      /* Each candidate costs a fetch and a compare, under the caller's
       * lock: a guest that floods one content's tag with pages it then
       * changes must not make lookups cost more than a few. */
      if (fetched++ == DMEM_INDEX_MAX_FETCHES)
        return DMEM_ENOENT;
      const void *content = x->fetch(s.id, x->fetch_ud);
      if (content && memcmp(content, page, DMEM_PAGE_SIZE) == 0) {
        *out_id = s.id;
        return 0;
      }
      /* Gone (the fetch has no page for the id any more): stale, so drop
       * it. The next entry shifts into slot i, which is looked at again.
       * An entry whose page changed stays until the caller removes it or
       * rebuilds the index; the cap above bounds what it costs. */
      if (!content) {
        delete_at(x, i);
        continue;
      }
    }
    d++;
    i = (i + 1) & mask;
  }
}

/* Doubles the table; on failure the index is as it was. */
static int grow(dmem_index *x)
{
  size_t cap = x->mask + 1, ncap = cap * 2;
  if (ncap < cap || !cap_ok(ncap))
    return DMEM_ENOMEM;
  slot *ns = alloc_slots(&x->alloc, ncap);
  if (!ns)
    return DMEM_ENOMEM;
  for (size_t i = 0; i < cap; i++)
    if (x->slots[i].id != EMPTY_ID)
      rh_place(ns, ncap - 1, x->slots[i]);
  dmem__free(&x->alloc, x->slots, cap * sizeof *x->slots);
  x->slots = ns;
  x->mask = ncap - 1;
  x->limit = limit_of(ncap);
  return 0;
}

int dmem_index_insert(dmem_index *x, uint64_t hash, uint32_t id)
{
  if (!x || id == EMPTY_ID)
    return DMEM_EINVAL;
  uint32_t tag = tag_of(hash);
  if (find(x, tag, id) != SIZE_MAX)
    return 0;
  if (x->count >= x->limit) {
    int rc = grow(x);
    if (rc)
      return rc;
  }
  rh_place(x->slots, x->mask, (slot){tag, id});
  x->count++;
  return 0;
}

int dmem_index_remove(dmem_index *x, uint64_t hash, uint32_t id)
{
  if (!x)
    return DMEM_EINVAL;
  size_t i = id == EMPTY_ID ? SIZE_MAX : find(x, tag_of(hash), id);
  if (i == SIZE_MAX)
    return DMEM_ENOENT;
  delete_at(x, i);
  return 0;
}

size_t dmem_index_count(const dmem_index *x)
{
  return x ? x->count : 0;
}

size_t dmem_index_memory(const dmem_index *x)
{
  return x ? sizeof *x + (x->mask + 1) * sizeof *x->slots : 0;
}
