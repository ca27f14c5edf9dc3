/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Similarity detectors: find a reference page for a page to patch, after
 * the Difference Engine (Gupta et al., OSDI 2008, section 3.2).
 *
 * Keys. A page has k * s blocks of 64 bytes, block j chosen by rule j;
 * key g is made of blocks g*s .. g*s+s-1 (their keyed XXH3 hashes, hashed
 * again with g when s > 1, tagged with g when s = 1), so block j of one
 * page only ever meets block j of another. The rules:
 *  - DMEM_SIMDET_HASH, the paper's HashSimilarityDetector(k, s): block j
 *    sits at a fixed pseudo-random 8-byte-aligned offset drawn once from
 *    the seed (the k * s offsets distinct). Cheap: k * s XXH3 calls on 64
 *    bytes.
 *  - DMEM_SIMDET_CONTENT, shift-tolerant min-hash: every 8-byte-aligned
 *    64-byte window has a rolling value (a polynomial over its 8 words in
 *    a seeded odd multiplier, updated in O(1) per window), and block j is
 *    the window whose value is smallest under seeded function j, a xor and
 *    a multiply. The choice depends on content only, so content that moves
 *    within the page by a multiple of 8 bytes keeps its blocks and keys;
 *    and a change that hits one block moves only the keys holding it
 *    (choosing by rank among one function's smallest would move them all).
 *    Cost: 2 multiplies per window for the values, one per window and
 *    block for the minima; 505 windows. About 1.4 us a page at (2, 1),
 *    where HASH takes 40 ns.
 * A block that is one repeated 8-byte word (zeros, 0xff, a fill pattern)
 * is never used: it would make every page holding it "similar" and flood
 * its bucket. HASH then tries the block's fallback offsets (TRIES - 1 of
 * them, also fixed) and drops the key when all are such; CONTENT passes
 * over such windows, and drops the key when the page has no other. Keys
 * repeated within a page count once.
 *
 * Table. The Robin Hood table of rhtab.h, as under pageindex.c, with one
 * entry per tag: 1 + candidates 32-bit words, {tag, ids[candidates]}; tag
 * is the key's high 32 bits. Two keys with one tag share a bucket, which
 * only adds a hint: candidates are hints the caller checks. ids fill from
 * the front, oldest first; the rest are UINT32_MAX, so an entry whose
 * ids[0] is UINT32_MAX is empty and that id cannot be inserted. A full
 * bucket drops its oldest id; an id inserted again moves to the newest
 * place; a bucket left with no id is deleted. Room for the new buckets is
 * made before any change.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#include <diffmem/simdet.h>

#include "internal.h"
#include "rhtab.h"

#define MAX_K 8
#define MAX_S 8
#define MAX_C 8
#define MAX_BLOCKS (MAX_K * MAX_S)
#define BLOCK 64
#define NWIN ((DMEM_PAGE_SIZE - BLOCK) / 8 + 1) /* 8-byte-aligned windows */
#define TRIES 4                                 /* HASH offsets per block */
#define NO_POS UINT16_MAX
#define EMPTY_ID DMEM__RH_EMPTY
_Static_assert(1 + MAX_C <= DMEM__RH_MAX_STRIDE, "a bucket fits a table entry");

struct dmem_simdet {
  dmem__alloc alloc;
  dmem_simdet_kind kind;
  unsigned k, s, cand;
  uint64_t seed;
  uint64_t mul, mul8;                      /* CONTENT: rolling multiplier and its 8th power */
  uint64_t fx[MAX_BLOCKS], fm[MAX_BLOCKS]; /* CONTENT: block j's function */
  dmem__rhtab t;                           /* entries {tag, ids[cand]} */
  uint16_t off[MAX_BLOCKS][TRIES]; /* HASH: byte offsets */
};

static uint64_t splitmix(uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t load64(const uint8_t *p)
{
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}

/* Is the 64-byte block one 8-byte word repeated? */
static int uniform_block(const uint8_t *b)
{
  uint64_t w0 = load64(b);
  for (int i = 8; i < BLOCK; i += 8)
    if (load64(b + i) != w0)
      return 0;
  return 1;
}

/* ------------------------------------------------------------------ keys */

static uint64_t block_hash(const dmem_simdet *d, const uint8_t *b)
{
  return XXH3_64bits_withSeed(b, BLOCK, d->seed);
}

/* Key g of a page from its s block hashes. The group is part of the key:
 * block j of one page is only compared with block j of another. */
static uint64_t group_key(const dmem_simdet *d, const uint64_t *h, unsigned g)
{
  if (d->s == 1)
    return h[0] ^ (g * 0x9e3779b97f4a7c15ull); /* high bits stay uniform */
  return XXH3_64bits_withSeed(h, d->s * sizeof *h, d->seed + g);
}

/* Appends key unless a key with its tag is there; returns the new count. */
static unsigned add_key(uint64_t *keys, unsigned nk, uint64_t key)
{
  for (unsigned i = 0; i < nk; i++)
    if (keys[i] >> 32 == key >> 32)
      return nk;
  keys[nk] = key;
  return nk + 1;
}

static unsigned hash_keys(const dmem_simdet *d, const uint8_t *page, uint64_t *keys)
{
  unsigned nk = 0;
  for (unsigned g = 0; g < d->k; g++) {
    uint64_t h[MAX_S];
    unsigned j;
    for (j = 0; j < d->s; j++) {
      const uint16_t *off = d->off[g * d->s + j];
      unsigned t = 0;
      while (t < TRIES && uniform_block(page + off[t]))
        t++;
      if (t == TRIES)
        break;
      h[j] = block_hash(d, page + off[t]);
    }
    if (j == d->s)
      nk = add_key(keys, nk, group_key(d, h, g));
  }
  return nk;
}

/* The rolling values of the page's windows that are not uniform, and
 * their word indexes; returns how many. A window's value is the
 * polynomial sum of word[w + i] * mul^(7 - i), i < 8, updated in O(1);
 * it is uniform when it ends a run of 8 or more equal words. */
static unsigned window_values(const dmem_simdet *d, const uint8_t *page, uint64_t *v, uint16_t *at)
{
  uint64_t r = 0, prev = load64(page);
  unsigned run = 0, n = 0;
  for (unsigned i = 0; i < 8; i++) {
    uint64_t x = load64(page + 8 * i);
    run = x == prev ? run + 1 : 1;
    prev = x;
    r = r * d->mul + x;
  }
  for (unsigned w = 0;; w++) {
    if (run < 8) {
      v[n] = r;
      at[n++] = (uint16_t)w;
    }
    if (w + 1 == NWIN)
      return n;
    uint64_t x = load64(page + 8 * (w + 8));
    run = x == prev ? run + 1 : 1;
    prev = x;
    r = r * d->mul - load64(page + 8 * w) * d->mul8 + x;
  }
}

/* For each of the k * s content functions, the window (word index) whose
 * value under it is smallest, or NO_POS when every window is uniform.
 * Function j orders windows by (value ^ fx[j]) * fm[j]; on a tie (equal
 * windows) the first wins. */
static void content_anchors(const dmem_simdet *d, const uint8_t *page, uint16_t *pos)
{
  uint64_t v[NWIN];
  uint16_t at[NWIN];
  unsigned n = window_values(d, page, v, at);
  for (unsigned j = 0; j < d->k * d->s; j++) {
    uint64_t fx = d->fx[j], fm = d->fm[j], best = UINT64_MAX;
    unsigned bi = 0;
    for (unsigned i = 0; i < n; i++) {
      uint64_t x = (v[i] ^ fx) * fm;
      if (x < best) {
        best = x;
        bi = i;
      }
    }
    pos[j] = n ? at[bi] : NO_POS;
  }
}

static unsigned content_keys(const dmem_simdet *d, const uint8_t *page, uint64_t *keys)
{
  uint16_t pos[MAX_BLOCKS];
  content_anchors(d, page, pos);
  unsigned nk = 0;
  for (unsigned g = 0; g < d->k; g++) {
    uint64_t h[MAX_S];
    unsigned j;
    for (j = 0; j < d->s && pos[g * d->s + j] != NO_POS; j++)
      h[j] = block_hash(d, page + 8 * (size_t)pos[g * d->s + j]);
    if (j == d->s)
      nk = add_key(keys, nk, group_key(d, h, g));
  }
  return nk;
}

/* The page's distinct keys (at most k); returns how many. */
static unsigned page_keys(const dmem_simdet *d, const void *page, uint64_t *keys)
{
  return d->kind == DMEM_SIMDET_CONTENT ? content_keys(d, page, keys) : hash_keys(d, page, keys);
}

/* ----------------------------------------------------------------- table */

static inline uint32_t *entry(const dmem_simdet *d, size_t i)
{
  return dmem__rh_entry(&d->t, i);
}

static inline int is_empty(const uint32_t *e)
{
  return e[1] == EMPTY_ID;
}

/* The entry of tag (one at most), or SIZE_MAX. */
static size_t find(const dmem_simdet *d, uint32_t tag)
{
  dmem__rh_walk w = dmem__rh_start(&d->t, tag);
  return dmem__rh_find(&d->t, tag, &w);
}

/* Removes id from bucket ids (cand of them); returns 1 if it was there. */
static int bucket_drop(uint32_t *ids, unsigned cand, uint32_t id)
{
  for (unsigned j = 0; j < cand && ids[j] != EMPTY_ID; j++) {
    if (ids[j] != id)
      continue;
    memmove(ids + j, ids + j + 1, (cand - 1 - j) * sizeof *ids);
    ids[cand - 1] = EMPTY_ID;
    return 1;
  }
  return 0;
}

/* Appends id as the newest, dropping it from older places or the oldest. */
static void bucket_push(uint32_t *ids, unsigned cand, uint32_t id)
{
  if (!bucket_drop(ids, cand, id) && ids[cand - 1] != EMPTY_ID)
    bucket_drop(ids, cand, ids[0]);
  unsigned n = 0;
  while (ids[n] != EMPTY_ID)
    n++;
  ids[n] = id;
}

/* ------------------------------------------------------------------- API */

static int check_options(const dmem_simdet_options *o)
{
  if (o->version != DMEM_SIMDET_OPTIONS_VERSION)
    return DMEM_EVERSION;
  if (o->kind != DMEM_SIMDET_HASH && o->kind != DMEM_SIMDET_CONTENT)
    return DMEM_EINVAL;
  if (o->k < 1 || o->k > MAX_K || o->s < 1 || o->s > MAX_S)
    return DMEM_EINVAL;
  if (o->candidates < 1 || o->candidates > MAX_C)
    return DMEM_EINVAL;
  return 0;
}

/* HASH offsets: k * s distinct primary ones, then fallbacks, 8-aligned. */
static void draw_offsets(dmem_simdet *d)
{
  uint8_t used[NWIN] = {0};
  uint64_t x = d->seed;
  for (unsigned t = 0; t < TRIES; t++) {
    for (unsigned b = 0; b < d->k * d->s; b++) {
      unsigned w;
      do
        w = (unsigned)(splitmix(&x) % NWIN);
      while (t == 0 && used[w]);
      used[w] = 1;
      d->off[b][t] = (uint16_t)(w * 8);
    }
  }
}

static void init_keys(dmem_simdet *d)
{
  uint64_t x = d->seed ^ 0x243f6a8885a308d3ull;
  d->mul = splitmix(&x) | 1;
  d->mul8 = 1;
  for (int i = 0; i < 8; i++)
    d->mul8 *= d->mul;
  for (unsigned j = 0; j < MAX_BLOCKS; j++) {
    d->fx[j] = splitmix(&x);
    d->fm[j] = splitmix(&x) | 1;
  }
  draw_offsets(d);
}

int dmem_simdet_create(dmem_simdet **out, const dmem_simdet_options *opts)
{
  if (!out || !opts)
    return DMEM_EINVAL;
  int rc = check_options(opts);
  if (rc)
    return rc;
  if (!dmem__alloc_valid(opts->allocator))
    return DMEM_EINVAL;
  uint64_t seed = opts->seed;
  if (!seed && dmem__random_key(&seed))
    return DMEM_ESYS;
  dmem__alloc a;
  dmem__alloc_init(&a, opts->allocator);
  dmem_simdet *d = dmem__calloc(&a, sizeof *d);
  if (!d)
    return DMEM_ENOMEM;
  d->alloc = a;
  d->kind = opts->kind;
  d->k = opts->k;
  d->s = opts->s;
  d->cand = opts->candidates;
  d->seed = seed;
  init_keys(d);
  /* Sized for k keys a page, as far as a table can be. */
  size_t want =
      opts->expected_pages > SIZE_MAX / opts->k ? SIZE_MAX : opts->expected_pages * opts->k;
  rc = dmem__rh_init(&d->t, &a, 1 + (size_t)d->cand, want);
  if (rc) {
    dmem__free(&a, d, sizeof *d);
    return rc;
  }
  *out = d;
  return 0;
}

void dmem_simdet_destroy(dmem_simdet *d)
{
  if (!d)
    return;
  dmem__alloc a = d->alloc;
  dmem__rh_fini(&d->t, &a);
  dmem__free(&a, d, sizeof *d);
}

int dmem_simdet_insert(dmem_simdet *d, uint32_t id, const void *page)
{
  if (!d || !page || id == EMPTY_ID)
    return DMEM_EINVAL;
  uint64_t keys[MAX_K];
  unsigned nk = page_keys(d, page, keys), missing = 0;
  for (unsigned i = 0; i < nk; i++)
    missing += find(d, (uint32_t)(keys[i] >> 32)) == SIZE_MAX;
  /* Room for every new bucket first: a failure then changes nothing. */
  if (dmem__rh_reserve(&d->t, &d->alloc, missing))
    return DMEM_ENOMEM;
  for (unsigned i = 0; i < nk; i++) {
    uint32_t tag = (uint32_t)(keys[i] >> 32);
    size_t b = find(d, tag);
    if (b == SIZE_MAX) {
      uint32_t e[1 + MAX_C];
      memset(e, 0xff, sizeof e);
      e[0] = tag;
      b = dmem__rh_place(&d->t, e);
    }
    bucket_push(entry(d, b) + 1, d->cand, id);
  }
  return 0;
}

void dmem_simdet_remove(dmem_simdet *d, uint32_t id, const void *page)
{
  if (!d || !page || id == EMPTY_ID)
    return;
  uint64_t keys[MAX_K];
  unsigned nk = page_keys(d, page, keys);
  for (unsigned i = 0; i < nk; i++) {
    size_t b = find(d, (uint32_t)(keys[i] >> 32));
    if (b == SIZE_MAX || !bucket_drop(entry(d, b) + 1, d->cand, id))
      continue;
    if (is_empty(entry(d, b)))
      dmem__rh_delete(&d->t, b);
  }
}

/* Orders found/votes by votes, most first; stable, so ties keep the order
 * in which the ids were met (key order, newest first in a bucket). */
static void sort_votes(uint32_t *found, uint8_t *votes, size_t n)
{
  for (size_t i = 1; i < n; i++) {
    uint32_t id = found[i];
    uint8_t v = votes[i];
    size_t j = i;
    for (; j > 0 && votes[j - 1] < v; j--) {
      found[j] = found[j - 1];
      votes[j] = votes[j - 1];
    }
    found[j] = id;
    votes[j] = v;
  }
}

size_t dmem_simdet_query(uint32_t *out_ids, size_t max, const dmem_simdet *d, const void *page)
{
  if (!out_ids || !d || !page || !max)
    return 0;
  uint64_t keys[MAX_K];
  unsigned nk = page_keys(d, page, keys);
  uint32_t found[MAX_K * MAX_C];
  uint8_t votes[MAX_K * MAX_C];
  size_t nf = 0;
  for (unsigned i = 0; i < nk; i++) {
    size_t b = find(d, (uint32_t)(keys[i] >> 32));
    if (b == SIZE_MAX)
      continue;
    const uint32_t *ids = entry(d, b) + 1;
    for (unsigned j = d->cand; j-- > 0;) {
      if (ids[j] == EMPTY_ID)
        continue;
      size_t f = 0;
      while (f < nf && found[f] != ids[j])
        f++;
      if (f == nf) {
        found[nf] = ids[j];
        votes[nf++] = 0;
      }
      votes[f]++;
    }
  }
  sort_votes(found, votes, nf);
  size_t n = nf < max ? nf : max;
  memcpy(out_ids, found, n * sizeof *out_ids);
  return n;
}

size_t dmem_simdet_memory(const dmem_simdet *d)
{
  return d ? sizeof *d + dmem__rh_bytes(&d->t) : 0;
}
