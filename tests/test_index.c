/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The identical-page index: the keyed hash (known answers against XXH3),
 * lookups that report identical content and only that (hash collisions
 * forced by inserting under a chosen hash), many ids under one hash,
 * removal, growth to 200k entries, Robin Hood order under heavy clustering
 * against a model, memory per entry across sizes, and every allocation
 * failure. */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <diffmem/index.h>

#include "testutil.h"

#define PAGE DMEM_PAGE_SIZE

/* ---- Page sources for the fetch callback ---- */

/* Pages made on demand from their id, so that 200k of them cost nothing:
 * id in the first word, a tweak in the second. fetch returns NULL for the
 * id `gone`. */
typedef struct synth {
  uint8_t buf[PAGE];
  uint32_t gone;
  long fetches;
} synth;

static void synth_page(uint8_t *page, uint32_t id, uint64_t tweak)
{
  memset(page, 0, PAGE);
  uint64_t w = id;
  memcpy(page, &w, 8);
  memcpy(page + 8, &tweak, 8);
  memcpy(page + PAGE - 8, &w, 8);
}

static const void *synth_fetch(uint32_t id, void *ud)
{
  synth *s = ud;
  s->fetches++;
  if (id == s->gone)
    return NULL;
  synth_page(s->buf, id, 0);
  return s->buf;
}

/* A table of real pages, id = index. */
typedef struct table {
  uint8_t (*pages)[PAGE];
  size_t n;
} table;

static const void *table_fetch(uint32_t id, void *ud)
{
  table *t = ud;
  return id < t->n ? t->pages[id] : NULL;
}

static void random_page(uint8_t *page, uint64_t seed)
{
  for (unsigned i = 0; i < PAGE; i += 8) {
    uint64_t r = test_rand(&seed);
    memcpy(page + i, &r, 8);
  }
}

static dmem_index *make_index(dmem_page_fetch_fn fetch, void *ud, uint64_t seed,
                              const dmem_allocator *alloc)
{
  dmem_index_options o = DMEM_INDEX_OPTIONS_INIT;
  o.fetch = fetch;
  o.fetch_ud = ud;
  o.seed = seed;
  o.allocator = alloc;
  dmem_index *x = NULL;
  ck_assert_int_eq(dmem_index_create(&x, &o), 0);
  ck_assert_ptr_nonnull(x);
  return x;
}

/* ---- Options and the hash ---- */

START_TEST(create_checks_options)
{
  synth s = {.gone = UINT32_MAX};
  dmem_index_options o = DMEM_INDEX_OPTIONS_INIT;
  dmem_index *x = (dmem_index *)&s;
  ck_assert_int_eq(dmem_index_create(&x, &o), DMEM_EINVAL); /* no fetch */
  ck_assert_ptr_eq(x, (dmem_index *)&s);                    /* untouched */
  o.fetch = synth_fetch;
  ck_assert_int_eq(dmem_index_create(NULL, &o), DMEM_EINVAL);
  ck_assert_int_eq(dmem_index_create(&x, NULL), DMEM_EINVAL);
  o.version = 0;
  ck_assert_int_eq(dmem_index_create(&x, &o), DMEM_EVERSION);
  o.version = DMEM_INDEX_OPTIONS_VERSION + 1;
  ck_assert_int_eq(dmem_index_create(&x, &o), DMEM_EVERSION);
  o.version = DMEM_INDEX_OPTIONS_VERSION;
  o.expected_pages = SIZE_MAX; /* no table could hold it */
  ck_assert_int_eq(dmem_index_create(&x, &o), DMEM_ENOMEM);
  o.expected_pages = 0;
  ck_assert_int_eq(dmem_index_create(&x, &o), 0);
  ck_assert_uint_eq(dmem_index_count(x), 0);
  ck_assert_uint_gt(dmem_index_memory(x), 0);
  dmem_index_destroy(x);
  dmem_index_destroy(NULL);
  ck_assert_uint_eq(dmem_index_count(NULL), 0);
  ck_assert_uint_eq(dmem_index_memory(NULL), 0);
}
END_TEST

START_TEST(hash_is_keyed_xxh3)
{
  static uint8_t page[PAGE];
  random_page(page, 7);
  synth s = {.gone = UINT32_MAX};
  dmem_index *a = make_index(synth_fetch, &s, 42, NULL);
  dmem_index *b = make_index(synth_fetch, &s, 42, NULL);
  dmem_index *c = make_index(synth_fetch, &s, 43, NULL);
  uint64_t h = dmem_index_hash(a, page);
  ck_assert_uint_eq(h, XXH3_64bits_withSeed(page, PAGE, 42));
  ck_assert_uint_eq(h, dmem_index_hash(b, page));
  ck_assert_uint_ne(h, dmem_index_hash(c, page));
  page[100] ^= 1;
  ck_assert_uint_ne(h, dmem_index_hash(a, page));
  dmem_index_destroy(a);
  dmem_index_destroy(b);
  dmem_index_destroy(c);
}
END_TEST

START_TEST(seed_zero_is_random)
{
  static uint8_t page[PAGE];
  random_page(page, 8);
  synth s = {.gone = UINT32_MAX};
  dmem_index *a = make_index(synth_fetch, &s, 0, NULL);
  dmem_index *b = make_index(synth_fetch, &s, 0, NULL);
  uint64_t ha = dmem_index_hash(a, page), hb = dmem_index_hash(b, page);
  ck_assert_uint_ne(ha, hb);
  ck_assert_uint_ne(ha, XXH3_64bits_withSeed(page, PAGE, 0));
  ck_assert_uint_eq(ha, dmem_index_hash(a, page)); /* fixed per index */
  dmem_index_destroy(a);
  dmem_index_destroy(b);
}
END_TEST

/* ---- Lookups ---- */

START_TEST(finds_identical_only)
{
  table t = {calloc(16, PAGE), 16};
  ck_assert_ptr_nonnull(t.pages);
  dmem_index *x = make_index(table_fetch, &t, 1, NULL);
  uint32_t id = 99;
  static uint8_t probe[PAGE];
  random_page(probe, 1);
  ck_assert_int_eq(dmem_index_lookup(&id, x, probe, dmem_index_hash(x, probe)), DMEM_ENOENT);
  for (uint32_t i = 0; i < 16; i++) {
    random_page(t.pages[i], 100 + i);
    ck_assert_int_eq(dmem_index_insert(x, dmem_index_hash(x, t.pages[i]), i), 0);
  }
  ck_assert_uint_eq(dmem_index_count(x), 16);
  for (uint32_t i = 0; i < 16; i++) {
    memcpy(probe, t.pages[i], PAGE);
    ck_assert_int_eq(dmem_index_lookup(&id, x, probe, dmem_index_hash(x, probe)), 0);
    ck_assert_uint_eq(id, i);
    probe[i * 200 + 3] ^= 0x10; /* one bit off: another page */
    id = 99;
    ck_assert_int_eq(dmem_index_lookup(&id, x, probe, dmem_index_hash(x, probe)), DMEM_ENOENT);
    ck_assert_uint_eq(id, 99);
  }
  uint8_t *p = t.pages[3];
  ck_assert_int_eq(dmem_index_lookup(NULL, x, p, 0), DMEM_EINVAL);
  ck_assert_int_eq(dmem_index_lookup(&id, NULL, p, 0), DMEM_EINVAL);
  ck_assert_int_eq(dmem_index_lookup(&id, x, NULL, 0), DMEM_EINVAL);
  dmem_index_destroy(x);
  free(t.pages);
}
END_TEST

/* The hash is only a hint: a page with other bytes under the same hash,
 * as a collision would give, is never reported. */
START_TEST(forced_collision_compares_bytes)
{
  table t = {calloc(2, PAGE), 2};
  ck_assert_ptr_nonnull(t.pages);
  random_page(t.pages[0], 1);
  memcpy(t.pages[1], t.pages[0], PAGE);
  t.pages[1][4095] ^= 0x80;
  dmem_index *x = make_index(table_fetch, &t, 1, NULL);
  const uint64_t h = 0x0123456789abcdefull;
  uint32_t id = 77;
  ck_assert_int_eq(dmem_index_insert(x, h, 0), 0);
  ck_assert_int_eq(dmem_index_lookup(&id, x, t.pages[1], h), DMEM_ENOENT);
  ck_assert_uint_eq(id, 77);
  ck_assert_int_eq(dmem_index_lookup(&id, x, t.pages[0], h), 0);
  ck_assert_uint_eq(id, 0);
  /* Both under one hash: each finds itself. */
  ck_assert_int_eq(dmem_index_insert(x, h, 1), 0);
  ck_assert_int_eq(dmem_index_lookup(&id, x, t.pages[1], h), 0);
  ck_assert_uint_eq(id, 1);
  ck_assert_int_eq(dmem_index_lookup(&id, x, t.pages[0], h), 0);
  ck_assert_uint_eq(id, 0);
  /* A hash that shares only its high half (the stored tag) still compares. */
  ck_assert_int_eq(dmem_index_lookup(&id, x, t.pages[1], h ^ 1), 0);
  ck_assert_uint_eq(id, 1);
  /* Another hash: nothing, though the bytes are there. */
  ck_assert_int_eq(dmem_index_lookup(&id, x, t.pages[0], ~h), DMEM_ENOENT);
  dmem_index_destroy(x);
  free(t.pages);
}
END_TEST

/* Many ids under one hash, as a guest makes them by writing one content
 * into many pages and then changing them: every lookup costs at most
 * DMEM_INDEX_MAX_FETCHES fetches and compares (it once cost one per
 * entry, 8,192 of them in milliseconds under the engine's lock), so only
 * that many of the ids can be found; removal works on all of them. */
START_TEST(many_ids_one_hash)
{
  enum { N = 1000 };
  synth s = {.gone = UINT32_MAX};
  dmem_index *x = make_index(synth_fetch, &s, 5, NULL);
  const uint64_t h = 0xfeedfacecafebeefull;
  for (uint32_t i = 0; i < N; i++)
    ck_assert_int_eq(dmem_index_insert(x, h, i * 3), 0);
  ck_assert_uint_eq(dmem_index_count(x), N);
  static uint8_t page[PAGE];
  uint32_t id, found = 0;
  for (uint32_t i = 0; i < N; i++) {
    synth_page(page, i * 3, 0);
    s.fetches = 0;
    int rc = dmem_index_lookup(&id, x, page, h);
    ck_assert_int_le(s.fetches, DMEM_INDEX_MAX_FETCHES);
    if (rc == 0) {
      ck_assert_uint_eq(id, i * 3);
      found++;
    } else {
      ck_assert_int_eq(rc, DMEM_ENOENT);
    }
  }
  ck_assert_uint_eq(found, DMEM_INDEX_MAX_FETCHES);
  synth_page(page, 1, 0); /* id 1 was never inserted */
  s.fetches = 0;
  ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), DMEM_ENOENT);
  ck_assert_int_eq(s.fetches, DMEM_INDEX_MAX_FETCHES); /* capped, none taken */
  ck_assert_uint_eq(dmem_index_count(x), N);           /* nothing was gone */
  for (uint32_t i = 0; i < N; i += 2)
    ck_assert_int_eq(dmem_index_remove(x, h, i * 3), 0);
  ck_assert_uint_eq(dmem_index_count(x), N / 2);
  for (uint32_t i = 0; i < N; i += 2) {
    synth_page(page, i * 3, 0);
    ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), DMEM_ENOENT);
  }
  dmem_index_destroy(x);
}
END_TEST

START_TEST(fetch_null_never_matches)
{
  synth s = {.gone = 7};
  dmem_index *x = make_index(synth_fetch, &s, 5, NULL);
  static uint8_t page[PAGE];
  synth_page(page, 7, 0);
  uint64_t h = dmem_index_hash(x, page);
  ck_assert_int_eq(dmem_index_insert(x, h, 7), 0);
  uint32_t id;
  ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), DMEM_ENOENT);
  /* Its page gone, the entry was dropped on the way. */
  ck_assert_uint_eq(dmem_index_count(x), 0);
  s.gone = UINT32_MAX;
  ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), DMEM_ENOENT);
  ck_assert_int_eq(dmem_index_insert(x, h, 7), 0);
  ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), 0);
  ck_assert_uint_eq(id, 7);
  /* A stale entry: id 7 now holds other bytes. */
  page[8] = 1;
  ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), DMEM_ENOENT);
  dmem_index_destroy(x);
}
END_TEST

/* ---- Insert and remove ---- */

START_TEST(insert_remove)
{
  synth s = {.gone = UINT32_MAX};
  dmem_index *x = make_index(synth_fetch, &s, 9, NULL);
  static uint8_t page[PAGE];
  synth_page(page, 4, 0);
  uint64_t h = dmem_index_hash(x, page);
  uint32_t id;
  ck_assert_int_eq(dmem_index_insert(x, h, UINT32_MAX), DMEM_EINVAL); /* reserved */
  ck_assert_int_eq(dmem_index_insert(NULL, h, 4), DMEM_EINVAL);
  ck_assert_int_eq(dmem_index_insert(x, h, 4), 0);
  ck_assert_int_eq(dmem_index_insert(x, h, 4), 0); /* a set: no second entry */
  ck_assert_uint_eq(dmem_index_count(x), 1);
  ck_assert_int_eq(dmem_index_remove(x, h, 5), DMEM_ENOENT);
  ck_assert_int_eq(dmem_index_remove(x, h ^ (1ull << 63), 4), DMEM_ENOENT);
  ck_assert_int_eq(dmem_index_remove(x, h, UINT32_MAX), DMEM_ENOENT);
  ck_assert_int_eq(dmem_index_remove(NULL, h, 4), DMEM_EINVAL);
  ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), 0);
  ck_assert_int_eq(dmem_index_remove(x, h, 4), 0);
  ck_assert_uint_eq(dmem_index_count(x), 0);
  ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), DMEM_ENOENT);
  ck_assert_int_eq(dmem_index_remove(x, h, 4), DMEM_ENOENT);
  ck_assert_int_eq(dmem_index_insert(x, h, 4), 0);
  ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), 0);
  ck_assert_uint_eq(id, 4);
  dmem_index_destroy(x);
}
END_TEST

START_TEST(grows_to_200k)
{
  enum { N = 200000 };
  synth s = {.gone = UINT32_MAX};
  test_alloc ta;
  test_alloc_init(&ta);
  dmem_index *x = make_index(synth_fetch, &s, 11, &ta.hook);
  static uint8_t page[PAGE];
  for (uint32_t i = 0; i < N; i++) {
    synth_page(page, i, 0);
    ck_assert_int_eq(dmem_index_insert(x, dmem_index_hash(x, page), i), 0);
  }
  ck_assert_uint_eq(dmem_index_count(x), N);
  ck_assert_int_eq(ta.live_bytes, (long)dmem_index_memory(x));
  uint32_t id;
  for (uint32_t i = 0; i < N; i++) {
    synth_page(page, i, 0);
    ck_assert_int_eq(dmem_index_lookup(&id, x, page, dmem_index_hash(x, page)), 0);
    ck_assert_uint_eq(id, i);
  }
  for (uint32_t i = 0; i < N; i += 2) {
    synth_page(page, i, 0);
    ck_assert_int_eq(dmem_index_remove(x, dmem_index_hash(x, page), i), 0);
  }
  ck_assert_uint_eq(dmem_index_count(x), N / 2);
  for (uint32_t i = 0; i < N; i++) {
    synth_page(page, i, 0);
    int rc = dmem_index_lookup(&id, x, page, dmem_index_hash(x, page));
    ck_assert_int_eq(rc, i % 2 ? 0 : DMEM_ENOENT);
    if (i % 2)
      ck_assert_uint_eq(id, i);
  }
  dmem_index_destroy(x);
  ck_assert_int_eq(ta.live_bytes, 0);
}
END_TEST

/* Robin Hood placement and backward-shift deletion under heavy clustering
 * (hashes from 1024 neighbouring tags, so long runs that wrap around the
 * table; few ids per tag, below the lookup's fetch cap), against a model
 * of which ids are in. */
START_TEST(clustered_against_model)
{
  enum { IDS = 3000, OPS = 40000 };
  synth s = {.gone = UINT32_MAX};
  dmem_index *x = make_index(synth_fetch, &s, 13, NULL);
  static uint8_t in[IDS];
  uint64_t hash[IDS], r = 99;
  for (uint32_t i = 0; i < IDS; i++) /* tags 0xfffffc00.. wrap the table */
    hash[i] = ((uint64_t)(0xfffffc00u + test_rand(&r) % 1024) << 32) | test_rand(&r) >> 32;
  size_t count = 0;
  static uint8_t page[PAGE];
  for (int op = 0; op < OPS; op++) {
    uint32_t i = (uint32_t)(test_rand(&r) % IDS);
    if (in[i]) {
      ck_assert_int_eq(dmem_index_remove(x, hash[i], i), 0);
      count--;
    } else {
      ck_assert_int_eq(dmem_index_insert(x, hash[i], i), 0);
      count++;
    }
    in[i] ^= 1;
    ck_assert_uint_eq(dmem_index_count(x), count);
    uint32_t j = (uint32_t)(test_rand(&r) % IDS), id;
    synth_page(page, j, 0);
    ck_assert_int_eq(dmem_index_lookup(&id, x, page, hash[j]), in[j] ? 0 : DMEM_ENOENT);
  }
  for (uint32_t i = 0; i < IDS; i++) {
    uint32_t id;
    synth_page(page, i, 0);
    ck_assert_int_eq(dmem_index_lookup(&id, x, page, hash[i]), in[i] ? 0 : DMEM_ENOENT);
  }
  dmem_index_destroy(x);
}
END_TEST

/* ---- Memory ---- */

/* Bytes per entry from 1k to 1M entries, at 60 sizes spaced evenly on a
 * log scale: at most 20 at any size (a table just doubled is 16 / (7/8)
 * per entry plus the struct), at most 16 on average. */
START_TEST(memory_per_entry)
{
  synth s = {.gone = UINT32_MAX};
  dmem_index *x = make_index(synth_fetch, &s, 17, NULL);
  uint64_t r = 5;
  double sum = 0, worst = 0;
  int sizes = 0;
  uint32_t n = 0;
  for (double target = 1000; target <= 1000000.5; target *= 1.1233, sizes++) {
    for (; n < (uint32_t)target; n++)
      ck_assert_int_eq(dmem_index_insert(x, test_rand(&r), n), 0);
    double per = (double)dmem_index_memory(x) / (double)dmem_index_count(x);
    ck_assert_double_le(per, 20.0);
    sum += per;
    worst = per > worst ? per : worst;
  }
  ck_assert_int_ge(sizes, 55);
  ck_assert_double_le(sum / sizes, 16.0);
  ck_assert_double_gt(worst, 16.0); /* the measure does see the doublings */
  dmem_index_destroy(x);
}
END_TEST

START_TEST(expected_pages_presizes)
{
  synth s = {.gone = UINT32_MAX};
  dmem_index_options o = DMEM_INDEX_OPTIONS_INIT;
  o.fetch = synth_fetch;
  o.fetch_ud = &s;
  o.seed = 3;
  o.expected_pages = 50000;
  dmem_index *x;
  ck_assert_int_eq(dmem_index_create(&x, &o), 0);
  size_t before = dmem_index_memory(x);
  ck_assert_uint_ge(before, 50000 * 8);
  ck_assert_uint_le(before, 50000 * 20);
  uint64_t r = 1;
  for (uint32_t i = 0; i < 50000; i++)
    ck_assert_int_eq(dmem_index_insert(x, test_rand(&r), i), 0);
  ck_assert_uint_eq(dmem_index_memory(x), before);
  dmem_index_destroy(x);
}
END_TEST

/* ---- Allocation failure ---- */

/* Fails each allocation in turn, through creation and enough inserts to
 * double the table several times: creation fails cleanly, a failed insert
 * leaves the index as it was and usable, and nothing leaks. */
START_TEST(alloc_failure_everywhere)
{
  enum { N = 600 };
  synth s = {.gone = UINT32_MAX};
  static uint8_t page[PAGE];
  for (long fail = 1;; fail++) {
    test_alloc ta;
    test_alloc_init(&ta);
    ta.fail_at = fail;
    dmem_index_options o = DMEM_INDEX_OPTIONS_INIT;
    o.fetch = synth_fetch;
    o.fetch_ud = &s;
    o.seed = 21;
    o.allocator = &ta.hook;
    dmem_index *x = NULL;
    int rc = dmem_index_create(&x, &o);
    if (rc) {
      ck_assert_int_eq(rc, DMEM_ENOMEM);
      ck_assert_ptr_null(x);
      ck_assert_int_eq(ta.live_bytes, 0);
      continue;
    }
    int failed = 0;
    for (uint32_t i = 0; i < N; i++) {
      synth_page(page, i, 0);
      uint64_t h = dmem_index_hash(x, page);
      size_t mem = dmem_index_memory(x);
      rc = dmem_index_insert(x, h, i);
      if (rc) {
        ck_assert_int_eq(rc, DMEM_ENOMEM);
        ck_assert_uint_eq(dmem_index_count(x), i);
        ck_assert_uint_eq(dmem_index_memory(x), mem);
        uint32_t id;
        ck_assert_int_eq(dmem_index_lookup(&id, x, page, h), DMEM_ENOENT);
        failed++;
        ck_assert_int_eq(dmem_index_insert(x, h, i), 0); /* the next try works */
      }
    }
    ck_assert_uint_eq(dmem_index_count(x), N);
    for (uint32_t i = 0; i < N; i++) {
      uint32_t id;
      synth_page(page, i, 0);
      ck_assert_int_eq(dmem_index_lookup(&id, x, page, dmem_index_hash(x, page)), 0);
      ck_assert_uint_eq(id, i);
    }
    dmem_index_destroy(x);
    ck_assert_int_eq(ta.live_bytes, 0);
    ck_assert_int_eq(ta.allocs - (ta.allocs >= fail), ta.frees);
    if (!failed && ta.allocs < fail)
      break; /* every allocation has been failed once */
  }
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("index");
  TCase *tc = tcase_create("index");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, create_checks_options);
  tcase_add_test(tc, hash_is_keyed_xxh3);
  tcase_add_test(tc, seed_zero_is_random);
  tcase_add_test(tc, finds_identical_only);
  tcase_add_test(tc, forced_collision_compares_bytes);
  tcase_add_test(tc, many_ids_one_hash);
  tcase_add_test(tc, fetch_null_never_matches);
  tcase_add_test(tc, insert_remove);
  tcase_add_test(tc, grows_to_200k);
  tcase_add_test(tc, clustered_against_model);
  tcase_add_test(tc, memory_per_entry);
  tcase_add_test(tc, expected_pages_presizes);
  tcase_add_test(tc, alloc_failure_everywhere);
  suite_add_tcase(s, tc);
  return s;
}
