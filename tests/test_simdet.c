/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The similarity detectors: a page with a few words changed finds its
 * original first, with both kinds; content moved within the page is found
 * by the content-defined kind (and, as the paper's detector is built,
 * mostly not by the fixed-offset one); unrelated pages find nothing; zero
 * and fill pages match nothing; buckets keep the newest ids; ranking by
 * shared keys; removal; option checks; every allocation failure. */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/simdet.h>

#include "testutil.h"

#define PAGE DMEM_PAGE_SIZE
#define NPAGES 200

static const dmem_simdet_kind kinds[2] = {DMEM_SIMDET_HASH, DMEM_SIMDET_CONTENT};

static void put64(uint8_t *p, uint64_t v)
{
  memcpy(p, &v, 8);
}

static void random_page(uint8_t *page, uint64_t seed)
{
  for (unsigned i = 0; i < PAGE; i += 8)
    put64(page + i, test_rand(&seed));
}

/* A page like a heap page: zeros, small integers, pointers, random bits. */
static void heap_page(uint8_t *page, uint64_t seed)
{
  for (unsigned i = 0; i < PAGE; i += 8) {
    uint64_t r = test_rand(&seed), w = r;
    switch (r % 5) {
    case 0:
      w = 0;
      break;
    case 1:
      w = (r >> 8) % 1000;
      break;
    case 2:
      w = 0x00007f3a12340000ull + ((r >> 8) & 0xfff8);
      break;
    default:
      break;
    }
    put64(page + i, w);
  }
}

static void make_page(uint8_t *page, uint64_t seed)
{
  if (seed % 2)
    random_page(page, seed);
  else
    heap_page(page, seed);
}

/* Changes n random 8-byte words of page. */
static void touch_words(uint8_t *page, unsigned n, uint64_t *r)
{
  for (unsigned i = 0; i < n; i++)
    put64(page + 8 * (test_rand(r) % (PAGE / 8)), test_rand(r));
}

/* Moves the page's content up by shift bytes; new bytes at the front. */
static void shift_page(uint8_t *dst, const uint8_t *src, unsigned shift, uint64_t seed)
{
  memmove(dst + shift, src, PAGE - shift);
  for (unsigned i = 0; i < shift; i++)
    dst[i] = (uint8_t)test_rand(&seed);
}

static dmem_simdet *make_det(dmem_simdet_kind kind, unsigned k, unsigned s, unsigned c,
                             const dmem_allocator *alloc)
{
  dmem_simdet_options o = DMEM_SIMDET_OPTIONS_INIT;
  o.kind = kind;
  o.k = k;
  o.s = s;
  o.candidates = c;
  o.seed = 0x5eed + k * 100 + s * 10 + c;
  o.allocator = alloc;
  dmem_simdet *d = NULL;
  ck_assert_int_eq(dmem_simdet_create(&d, &o), 0);
  ck_assert_ptr_nonnull(d);
  return d;
}

static uint8_t (*pages)[PAGE];

static void setup(void)
{
  pages = malloc((size_t)NPAGES * PAGE);
  ck_assert_ptr_nonnull(pages);
  for (unsigned i = 0; i < NPAGES; i++)
    make_page(pages[i], 1000 + i);
}

static void teardown(void)
{
  free(pages);
}

static void insert_all(dmem_simdet *d)
{
  for (uint32_t i = 0; i < NPAGES; i++)
    ck_assert_int_eq(dmem_simdet_insert(d, i, pages[i]), 0);
}

/* ---- Options ---- */

START_TEST(create_checks_options)
{
  dmem_simdet_options o = DMEM_SIMDET_OPTIONS_INIT;
  dmem_simdet *d = NULL;
  ck_assert_int_eq(dmem_simdet_create(NULL, &o), DMEM_EINVAL);
  ck_assert_int_eq(dmem_simdet_create(&d, NULL), DMEM_EINVAL);
  struct {
    unsigned kind, k, s, c;
    int rc;
  } cases[] = {
      {DMEM_SIMDET_HASH, 0, 1, 1, DMEM_EINVAL},
      {DMEM_SIMDET_HASH, 9, 1, 1, DMEM_EINVAL},
      {DMEM_SIMDET_HASH, 2, 0, 1, DMEM_EINVAL},
      {DMEM_SIMDET_HASH, 2, 9, 1, DMEM_EINVAL},
      {DMEM_SIMDET_HASH, 2, 1, 0, DMEM_EINVAL},
      {DMEM_SIMDET_HASH, 2, 1, 9, DMEM_EINVAL},
      {DMEM_SIMDET_CONTENT, 0, 1, 1, DMEM_EINVAL},
      {DMEM_SIMDET_CONTENT, 2, 0, 1, DMEM_EINVAL},
      {0, 2, 1, 1, DMEM_EINVAL},
      {3, 2, 1, 1, DMEM_EINVAL},
      {DMEM_SIMDET_HASH, 8, 8, 8, 0},
      {DMEM_SIMDET_CONTENT, 8, 8, 8, 0},
      {DMEM_SIMDET_HASH, 1, 1, 1, 0},
      {DMEM_SIMDET_CONTENT, 1, 1, 1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    o.kind = (dmem_simdet_kind)cases[i].kind;
    o.k = cases[i].k;
    o.s = cases[i].s;
    o.candidates = cases[i].c;
    d = NULL;
    ck_assert_int_eq(dmem_simdet_create(&d, &o), cases[i].rc);
    ck_assert(cases[i].rc ? d == NULL : d != NULL);
    dmem_simdet_destroy(d);
  }
  o = (dmem_simdet_options)DMEM_SIMDET_OPTIONS_INIT;
  o.version = 0;
  ck_assert_int_eq(dmem_simdet_create(&d, &o), DMEM_EVERSION);
  o.version = DMEM_SIMDET_OPTIONS_VERSION + 1;
  ck_assert_int_eq(dmem_simdet_create(&d, &o), DMEM_EVERSION);
  dmem_simdet_destroy(NULL);
  ck_assert_uint_eq(dmem_simdet_memory(NULL), 0);
}
END_TEST

START_TEST(seed_zero_works)
{
  dmem_simdet_options o = DMEM_SIMDET_OPTIONS_INIT; /* seed 0: getrandom */
  for (int kind = 0; kind < 2; kind++) {
    o.kind = kinds[kind];
    dmem_simdet *d;
    ck_assert_int_eq(dmem_simdet_create(&d, &o), 0);
    insert_all(d);
    uint32_t out[4];
    ck_assert_uint_eq(dmem_simdet_query(out, 4, d, pages[3]), 1);
    ck_assert_uint_eq(out[0], 3);
    dmem_simdet_destroy(d);
  }
}
END_TEST

/* ---- Finding similar pages ---- */

/* For each page, changes `words` words and queries: returns how many found
 * their original first; fails if any query returns another page. */
static int found_after_touch(dmem_simdet *d, unsigned words, uint64_t seed)
{
  static uint8_t probe[PAGE];
  int hits = 0;
  for (uint32_t i = 0; i < NPAGES; i++) {
    memcpy(probe, pages[i], PAGE);
    touch_words(probe, words, &seed);
    uint32_t out[8];
    size_t n = dmem_simdet_query(out, 8, d, probe);
    ck_assert_uint_le(n, 1);
    if (n == 1) {
      ck_assert_uint_eq(out[0], i);
      hits++;
    }
  }
  return hits;
}

START_TEST(few_words_changed)
{
  static const unsigned conf[][4] = {{2, 1, 1, 95}, {4, 1, 2, 95}, {4, 2, 1, 90}, {8, 3, 4, 90}};
  for (int kind = 0; kind < 2; kind++) {
    for (size_t c = 0; c < sizeof conf / sizeof conf[0]; c++) {
      dmem_simdet *d = make_det(kinds[kind], conf[c][0], conf[c][1], conf[c][2], NULL);
      insert_all(d);
      int hits = found_after_touch(d, 3, 77 + c);
      ck_assert_msg(hits * 100 >= (int)conf[c][3] * NPAGES, "kind %d (%u,%u): %d of %d",
                    kinds[kind], conf[c][0], conf[c][1], hits, NPAGES);
      dmem_simdet_destroy(d);
    }
  }
}
END_TEST

/* Content moved within the page: CONTENT keeps its blocks, so it finds the
 * original; HASH looks at fixed offsets, so it (almost always) cannot. */
START_TEST(shifted_content)
{
  static const unsigned shifts[] = {8, 40, 200, 1024};
  static uint8_t probe[PAGE];
  dmem_simdet *hd = make_det(DMEM_SIMDET_HASH, 2, 1, 1, NULL);
  dmem_simdet *cd = make_det(DMEM_SIMDET_CONTENT, 2, 1, 1, NULL);
  insert_all(hd);
  insert_all(cd);
  for (size_t s = 0; s < sizeof shifts / sizeof shifts[0]; s++) {
    int hhits = 0, chits = 0;
    for (uint32_t i = 0; i < NPAGES; i++) {
      shift_page(probe, pages[i], shifts[s], 5 + i);
      uint32_t out[4];
      size_t n = dmem_simdet_query(out, 4, cd, probe);
      chits += n >= 1 && out[0] == i;
      n = dmem_simdet_query(out, 4, hd, probe);
      hhits += n >= 1 && out[0] == i;
    }
    /* A key survives when its window lies in the part both pages share,
     * about (505 - m) / (505 + m) for m = shift / 8 windows moved out:
     * 0.9 at 200 bytes, 0.6 at 1024; the page is lost if every key is. */
    int want = shifts[s] <= 200 ? 95 : 70;
    ck_assert_msg(chits * 100 >= want * NPAGES, "CONTENT, shift %u: %d of %d", shifts[s], chits,
                  NPAGES);
    ck_assert_msg(hhits * 100 <= 20 * NPAGES, "HASH, shift %u: %d of %d", shifts[s], hhits, NPAGES);
  }
  dmem_simdet_destroy(hd);
  dmem_simdet_destroy(cd);
}
END_TEST

START_TEST(unrelated_find_nothing)
{
  static uint8_t probe[PAGE];
  for (int kind = 0; kind < 2; kind++) {
    dmem_simdet *d = make_det(kinds[kind], 8, 1, 8, NULL);
    insert_all(d);
    for (uint32_t i = 0; i < NPAGES; i++) {
      make_page(probe, 50000 + i);
      uint32_t out[8];
      ck_assert_uint_eq(dmem_simdet_query(out, 8, d, probe), 0);
    }
    dmem_simdet_destroy(d);
  }
}
END_TEST

/* Zero pages, fill pages and pages that are mostly zero must not make
 * every such page a candidate for every other. */
START_TEST(uniform_pages_match_nothing)
{
  static uint8_t zero[PAGE], ones[PAGE], fill[PAGE], sparse[PAGE];
  memset(ones, 0xff, PAGE);
  for (unsigned i = 0; i < PAGE; i += 8)
    put64(fill + i, 0xdeadbeef00c0ffeeull);
  for (int kind = 0; kind < 2; kind++) {
    dmem_simdet *d = make_det(kinds[kind], 4, 1, 8, NULL);
    ck_assert_int_eq(dmem_simdet_insert(d, 1, zero), 0);
    ck_assert_int_eq(dmem_simdet_insert(d, 2, ones), 0);
    ck_assert_int_eq(dmem_simdet_insert(d, 3, fill), 0);
    uint64_t r = 3;
    for (uint32_t i = 0; i < 50; i++) { /* 24 random bytes in a zero page */
      memset(sparse, 0, PAGE);
      unsigned at = (unsigned)(test_rand(&r) % (PAGE / 8 - 3)) * 8;
      for (int w = 0; w < 3; w++)
        put64(sparse + at + 8 * w, test_rand(&r));
      ck_assert_int_eq(dmem_simdet_insert(d, 100 + i, sparse), 0);
    }
    uint32_t out[8];
    ck_assert_uint_eq(dmem_simdet_query(out, 8, d, zero), 0);
    ck_assert_uint_eq(dmem_simdet_query(out, 8, d, ones), 0);
    ck_assert_uint_eq(dmem_simdet_query(out, 8, d, fill), 0);
    for (int i = 0; i < 20; i++) {
      memset(sparse, 0, PAGE);
      put64(sparse + 8 * (test_rand(&r) % (PAGE / 8)), test_rand(&r));
      ck_assert_uint_eq(dmem_simdet_query(out, 8, d, sparse), 0);
    }
    dmem_simdet_destroy(d);
  }
}
END_TEST

/* ---- Buckets and ranking ---- */

START_TEST(candidates_newest_kept)
{
  for (int kind = 0; kind < 2; kind++) {
    dmem_simdet *d = make_det(kinds[kind], 2, 1, 3, NULL);
    for (uint32_t id = 10; id < 20; id++) /* one content under ten ids */
      ck_assert_int_eq(dmem_simdet_insert(d, id, pages[0]), 0);
    uint32_t out[8];
    ck_assert_uint_eq(dmem_simdet_query(out, 8, d, pages[0]), 3);
    ck_assert_uint_eq(out[0], 19);
    ck_assert_uint_eq(out[1], 18);
    ck_assert_uint_eq(out[2], 17);
    ck_assert_uint_eq(dmem_simdet_query(out, 2, d, pages[0]), 2);
    ck_assert_uint_eq(out[0], 19);
    ck_assert_uint_eq(dmem_simdet_query(out, 0, d, pages[0]), 0);
    /* Inserted again, 17 becomes the newest: no repeat, nothing lost. */
    ck_assert_int_eq(dmem_simdet_insert(d, 17, pages[0]), 0);
    ck_assert_uint_eq(dmem_simdet_query(out, 8, d, pages[0]), 3);
    ck_assert_uint_eq(out[0], 17);
    ck_assert_uint_eq(out[1], 19);
    ck_assert_uint_eq(out[2], 18);
    ck_assert_int_eq(dmem_simdet_insert(d, UINT32_MAX, pages[0]), DMEM_EINVAL);
    ck_assert_int_eq(dmem_simdet_insert(NULL, 1, pages[0]), DMEM_EINVAL);
    ck_assert_int_eq(dmem_simdet_insert(d, 1, NULL), DMEM_EINVAL);
    ck_assert_uint_eq(dmem_simdet_query(NULL, 8, d, pages[0]), 0);
    ck_assert_uint_eq(dmem_simdet_query(out, 8, NULL, pages[0]), 0);
    ck_assert_uint_eq(dmem_simdet_query(out, 8, d, NULL), 0);
    dmem_simdet_destroy(d);
  }
}
END_TEST

/* A page that shares all its keys ranks before one that shares a few. */
START_TEST(most_shared_first)
{
  static uint8_t half[PAGE];
  for (int kind = 0; kind < 2; kind++) {
    int ranked = 0;
    for (uint32_t i = 0; i < 20; i++) {
      dmem_simdet *d = make_det(kinds[kind], 8, 1, 4, NULL);
      memcpy(half, pages[i], PAGE);
      random_page(half, 900 + i); /* a new first half, the old second */
      memcpy(half + PAGE / 2, pages[i] + PAGE / 2, PAGE / 2);
      ck_assert_int_eq(dmem_simdet_insert(d, 1, pages[i]), 0); /* older */
      ck_assert_int_eq(dmem_simdet_insert(d, 2, half), 0);     /* newer */
      uint32_t out[4];
      size_t n = dmem_simdet_query(out, 4, d, pages[i]);
      ck_assert_uint_ge(n, 1);
      ck_assert_uint_eq(out[0], 1);
      if (n == 2) {
        ck_assert_uint_eq(out[1], 2);
        ranked++;
      }
      n = dmem_simdet_query(out, 4, d, half);
      ck_assert_uint_ge(n, 1);
      ck_assert_uint_eq(out[0], 2);
      dmem_simdet_destroy(d);
    }
    ck_assert_int_ge(ranked, 15); /* usually both halves hold keys */
  }
}
END_TEST

START_TEST(remove_forgets)
{
  for (int kind = 0; kind < 2; kind++) {
    dmem_simdet *d = make_det(kinds[kind], 4, 1, 4, NULL);
    insert_all(d);
    ck_assert_int_eq(dmem_simdet_insert(d, 500, pages[7]), 0); /* twin of 7 */
    uint32_t out[8];
    dmem_simdet_remove(d, 7, pages[7]);
    ck_assert_uint_eq(dmem_simdet_query(out, 8, d, pages[7]), 1);
    ck_assert_uint_eq(out[0], 500);
    dmem_simdet_remove(d, 500, pages[7]);
    ck_assert_uint_eq(dmem_simdet_query(out, 8, d, pages[7]), 0);
    dmem_simdet_remove(d, 500, pages[7]); /* gone already: nothing */
    dmem_simdet_remove(d, 8, pages[9]);   /* wrong page: nothing */
    dmem_simdet_remove(NULL, 8, pages[8]);
    ck_assert_uint_eq(dmem_simdet_query(out, 8, d, pages[8]), 1);
    ck_assert_uint_eq(out[0], 8);
    /* Remove every page, check all gone, then bring them back. */
    for (uint32_t i = 0; i < NPAGES; i++)
      dmem_simdet_remove(d, i, pages[i]);
    for (uint32_t i = 0; i < NPAGES; i++)
      ck_assert_uint_eq(dmem_simdet_query(out, 8, d, pages[i]), 0);
    insert_all(d);
    for (uint32_t i = 0; i < NPAGES; i++) {
      ck_assert_uint_eq(dmem_simdet_query(out, 8, d, pages[i]), 1);
      ck_assert_uint_eq(out[0], i);
    }
    dmem_simdet_destroy(d);
  }
}
END_TEST

/* Many pages through a small table: growth, then removal of half, keep
 * every remaining page findable (Robin Hood moves, backward shifts). */
START_TEST(growth_and_churn)
{
  enum { N = 5000 };
  static uint8_t page[PAGE];
  for (int kind = 0; kind < 2; kind++) {
    test_alloc ta;
    test_alloc_init(&ta);
    dmem_simdet *d = make_det(kinds[kind], 2, 1, 1, &ta.hook);
    size_t mem0 = dmem_simdet_memory(d);
    for (uint32_t i = 0; i < N; i++) {
      make_page(page, 7000 + i);
      ck_assert_int_eq(dmem_simdet_insert(d, i, page), 0);
    }
    ck_assert_uint_gt(dmem_simdet_memory(d), mem0);
    ck_assert_int_eq(ta.live_bytes, (long)dmem_simdet_memory(d));
    for (uint32_t i = 0; i < N; i += 2) {
      make_page(page, 7000 + i);
      dmem_simdet_remove(d, i, page);
    }
    for (uint32_t i = 0; i < N; i++) {
      uint32_t out[2];
      make_page(page, 7000 + i);
      size_t n = dmem_simdet_query(out, 2, d, page);
      ck_assert_uint_eq(n, i % 2);
      if (n)
        ck_assert_uint_eq(out[0], i);
    }
    dmem_simdet_destroy(d);
    ck_assert_int_eq(ta.live_bytes, 0);
  }
}
END_TEST

START_TEST(expected_pages_presizes)
{
  dmem_simdet_options o = DMEM_SIMDET_OPTIONS_INIT;
  o.seed = 4;
  o.expected_pages = 1000;
  static uint8_t page[PAGE];
  for (int kind = 0; kind < 2; kind++) {
    o.kind = kinds[kind];
    dmem_simdet *d;
    ck_assert_int_eq(dmem_simdet_create(&d, &o), 0);
    size_t mem = dmem_simdet_memory(d);
    for (uint32_t i = 0; i < 1000; i++) {
      random_page(page, i);
      ck_assert_int_eq(dmem_simdet_insert(d, i, page), 0);
    }
    ck_assert_uint_eq(dmem_simdet_memory(d), mem);
    ck_assert_uint_le(mem, 1000 * 2 * 8 * 2 + 4096); /* 2 keys of 8 bytes, load >= 1/2 */
    dmem_simdet_destroy(d);
  }
}
END_TEST

/* ---- Allocation failure ---- */

START_TEST(alloc_failure_everywhere)
{
  enum { N = 300 };
  static uint8_t page[PAGE];
  for (int kind = 0; kind < 2; kind++) {
    for (long fail = 1;; fail++) {
      test_alloc ta;
      test_alloc_init(&ta);
      ta.fail_at = fail;
      dmem_simdet_options o = DMEM_SIMDET_OPTIONS_INIT;
      o.kind = kinds[kind];
      o.k = 3;
      o.candidates = 2;
      o.seed = 8;
      o.allocator = &ta.hook;
      dmem_simdet *d = NULL;
      int rc = dmem_simdet_create(&d, &o);
      if (rc) {
        ck_assert_int_eq(rc, DMEM_ENOMEM);
        ck_assert_ptr_null(d);
        ck_assert_int_eq(ta.live_bytes, 0);
        continue;
      }
      int failed = 0;
      for (uint32_t i = 0; i < N; i++) {
        random_page(page, 300 + i);
        size_t mem = dmem_simdet_memory(d);
        rc = dmem_simdet_insert(d, i, page);
        if (rc) {
          ck_assert_int_eq(rc, DMEM_ENOMEM);
          ck_assert_uint_eq(dmem_simdet_memory(d), mem);
          uint32_t out[2];
          ck_assert_uint_eq(dmem_simdet_query(out, 2, d, page), 0); /* unchanged */
          failed++;
          ck_assert_int_eq(dmem_simdet_insert(d, i, page), 0);
        }
      }
      for (uint32_t i = 0; i < N; i++) {
        uint32_t out[2];
        random_page(page, 300 + i);
        ck_assert_uint_eq(dmem_simdet_query(out, 2, d, page), 1);
        ck_assert_uint_eq(out[0], i);
      }
      dmem_simdet_destroy(d);
      ck_assert_int_eq(ta.live_bytes, 0);
      if (!failed && ta.allocs < fail)
        break;
    }
  }
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("simdet");
  TCase *tc = tcase_create("simdet");
  tcase_set_timeout(tc, 120);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, create_checks_options);
  tcase_add_test(tc, seed_zero_works);
  tcase_add_test(tc, few_words_changed);
  tcase_add_test(tc, shifted_content);
  tcase_add_test(tc, unrelated_find_nothing);
  tcase_add_test(tc, uniform_pages_match_nothing);
  tcase_add_test(tc, candidates_newest_kept);
  tcase_add_test(tc, most_shared_first);
  tcase_add_test(tc, remove_forgets);
  tcase_add_test(tc, growth_and_churn);
  tcase_add_test(tc, expected_pages_presizes);
  tcase_add_test(tc, alloc_failure_everywhere);
  suite_add_tcase(s, tc);
  return s;
}
