/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The identical-page index of the Difference Engine (Gupta et al., OSDI
 * 2008, section 3.1: pages are hashed, and a hash match is confirmed by a
 * byte-by-byte compare before the pages are shared).
 *
 * Layout. A Robin Hood table (rhtab.h) of 8-byte entries {tag, id}:
 *  - tag is the high 32 bits of the keyed XXH3 page hash; the entry keeps
 *    nothing else of it. Its home bucket is tag & mask, so the table can
 *    double and entries can shift without the pages being fetched and
 *    hashed again. (Any bucket taken from hash bits outside the tag would
 *    be lost once inserted.) Within a probe run the tag then tells apart
 *    entries of other homes outright, and entries of the same home by its
 *    32 - log2(cap) bits above the mask.
 *  - id UINT32_MAX marks an empty entry, so that id cannot be inserted.
 *  - the entries of one tag are contiguous (Robin Hood order), so a walk
 *    visits them all and stops.
 *  - a tag match is only a candidate: lookup fetches the entry's current
 *    bytes through the callback and memcmp()s them, so a hash match never
 *    counts alone, and a stale entry whose page changed does not match.
 *  - (tag, id) pairs are a set: inserting one already present does nothing.
 *  - load at most 7/8; the table doubles past it. A tracked page then
 *    costs 8 / load bytes: 9.1 just below a doubling, 18.3 just above,
 *    8 / (7/8 * ln 2) = 13.2 on average over sizes. A failed doubling
 *    changes nothing.
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
#include "rhtab.h"

#define EMPTY_ID DMEM__RH_EMPTY

struct dmem_index {
  dmem__alloc alloc;
  uint64_t seed;
  dmem_page_fetch_fn fetch;
  void *fetch_ud;
  dmem__rhtab t; /* entries {tag, id} */
};

static inline uint32_t tag_of(uint64_t hash)
{
  return (uint32_t)(hash >> 32);
}

/* The slot holding (tag, id), or SIZE_MAX. */
static size_t find(const dmem_index *x, uint32_t tag, uint32_t id)
{
  dmem__rh_walk w = dmem__rh_start(&x->t, tag);
  size_t i;
  while ((i = dmem__rh_find(&x->t, tag, &w)) != SIZE_MAX) {
    if (dmem__rh_entry(&x->t, i)[1] == id)
      return i;
    dmem__rh_past(&x->t, &w);
  }
  return SIZE_MAX;
}

int dmem_index_create(dmem_index **out, const dmem_index_options *opts)
{
  if (!out || !opts)
    return DMEM_EINVAL;
  if (opts->version != DMEM_INDEX_OPTIONS_VERSION)
    return DMEM_EVERSION;
  if (!opts->fetch)
    return DMEM_EINVAL;
  if (!dmem__rh_fits(2, opts->expected_pages))
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
  int rc = dmem__rh_init(&x->t, &a, 2, opts->expected_pages);
  if (rc) {
    dmem__free(&a, x, sizeof *x);
    return rc;
  }
  *out = x;
  return 0;
}

void dmem_index_destroy(dmem_index *x)
{
  if (!x)
    return;
  dmem__alloc a = x->alloc;
  dmem__rh_fini(&x->t, &a);
  dmem__free(&a, x, sizeof *x);
}

uint64_t dmem_index_hash(const dmem_index *x, const void *page)
{
  if (!x || !page)
    return 0;
  return XXH3_64bits_withSeed(page, DMEM_PAGE_SIZE, x->seed);
}

int dmem_index_lookup(uint32_t *out_id, dmem_index *x, const void *page, uint64_t hash)
{
  if (!out_id || !x || !page)
    return DMEM_EINVAL;
  uint32_t tag = tag_of(hash);
  dmem__rh_walk w = dmem__rh_start(&x->t, tag);
  unsigned fetched = 0;
  size_t i;
  while ((i = dmem__rh_find(&x->t, tag, &w)) != SIZE_MAX) {
    /* Each candidate costs a fetch and a compare, under the caller's
     * lock: a guest that floods one content's tag with pages it then
     * changes must not make lookups cost more than a few. */
    if (fetched++ == DMEM_INDEX_MAX_FETCHES)
      return DMEM_ENOENT;
    uint32_t id = dmem__rh_entry(&x->t, i)[1];
    const void *content = x->fetch(id, x->fetch_ud);
    if (content && memcmp(content, page, DMEM_PAGE_SIZE) == 0) {
      *out_id = id;
      return 0;
    }
    /* Gone (the fetch has no page for the id any more): stale, so drop
     * it. The next entry shifts into slot i, where the walk looks again.
     * An entry whose page changed stays until the caller removes it or
     * rebuilds the index; the cap above bounds what it costs. */
    if (!content)
      dmem__rh_delete(&x->t, i);
    else
      dmem__rh_past(&x->t, &w);
  }
  return DMEM_ENOENT;
}

int dmem_index_insert(dmem_index *x, uint64_t hash, uint32_t id)
{
  if (!x || id == EMPTY_ID)
    return DMEM_EINVAL;
  uint32_t tag = tag_of(hash);
  if (find(x, tag, id) != SIZE_MAX)
    return 0;
  int rc = dmem__rh_reserve(&x->t, &x->alloc, 1);
  if (rc)
    return rc;
  uint32_t e[2] = {tag, id};
  dmem__rh_place(&x->t, e);
  return 0;
}

int dmem_index_remove(dmem_index *x, uint64_t hash, uint32_t id)
{
  if (!x)
    return DMEM_EINVAL;
  size_t i = id == EMPTY_ID ? SIZE_MAX : find(x, tag_of(hash), id);
  if (i == SIZE_MAX)
    return DMEM_ENOENT;
  dmem__rh_delete(&x->t, i);
  return 0;
}

size_t dmem_index_count(const dmem_index *x)
{
  return x ? x->t.count : 0;
}

size_t dmem_index_memory(const dmem_index *x)
{
  return x ? sizeof *x + dmem__rh_bytes(&x->t) : 0;
}
