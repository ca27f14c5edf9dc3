/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's scan and what it reclaims, on the in-memory adapter: every
 * clock transition, zero pages, identical pages shared within and across
 * VMs (evicted, or mapped copy-on-write), similar pages patched and idle
 * pages compressed in C4, each faulted back. Each test checks the content
 * of the pages (through the guest and dmem_vm_read()) and the statistics.
 * The fixture is tests/engine_fixture.h. */
#include "config.h"

#include <check.h>
#include <string.h>

#include "engine_fixture.h"

/* ---------------------------------------------------------------- the clock */

START_TEST(clock_transitions)
{
  fx f;
  fx_init(&f, 1, 8, 0);
  fx_random(&f, 0, 0, 8, 2);
  fx_start(&f);
  mem_set_bits(f.m[0], 0, DMEM_BIT_REFERENCED);
  mem_set_bits(f.m[0], 1, DMEM_BIT_REFERENCED | DMEM_BIT_MODIFIED);
  fx_pass(&f);
  expect_states(&f, 0, "21333333");
  fx_pass(&f);
  expect_states(&f, 0, "33333333");
  fx_pass(&f); /* c4_passes = 3 idle scans for gfn 2..7 */
  expect_states(&f, 0, "33444444");
  fx_pass(&f);
  expect_states(&f, 0, "44444444");
  uint8_t x = 0x5a;
  fx_write(&f, 0, 3, 17, &x, 1);
  fx_touch(&f, 0, 4);
  fx_pass(&f);
  expect_states(&f, 0, "44412444");
  fx_pass(&f);
  expect_states(&f, 0, "44433444");
  expect_kind(&f, 0, 0, 8, DMEM_PAGE_RESIDENT);
  dmem_stats es = fx_es(&f);
  ck_assert_uint_eq(es.scanned, 6 * 8);
  ck_assert_uint_eq(es.merges, 0);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

/* ---------------------------------------------------------------- zero and identical pages */

START_TEST(zero_pages)
{
  fx f;
  uint8_t buf[PAGE], zero[PAGE] = {0};
  fx_init(&f, 1, 8, 0);
  fx_random(&f, 0, 4, 4, 3);
  fx_start(&f);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 4, DMEM_PAGE_ZERO);
  expect_kind(&f, 0, 4, 4, DMEM_PAGE_RESIDENT);
  dmem_stats es = fx_es(&f);
  ck_assert_uint_eq(es.zero, 4);
  ck_assert_uint_eq(es.frames, 0);
  ck_assert_uint_eq(es.store_bytes, 0);
  ck_assert_uint_ge(es.merges, 4);
  ck_assert(!mem_present(f.m[0], 0));
  ck_assert_int_eq(dmem_vm_read(buf, f.vm[0], 1), 0);
  ck_assert_mem_eq(buf, zero, PAGE);
  expect_kind(&f, 0, 1, 1, DMEM_PAGE_ZERO);
  fx_touch(&f, 0, 2); /* faults: zeros, resident, C1 */
  expect_kind(&f, 0, 2, 1, DMEM_PAGE_RESIDENT);
  ck_assert_int_eq(fx_state(&f, 0, 2), DMEM_C1);
  ck_assert_uint_eq(fx_es(&f).faults, es.faults + 1);
  ck_assert_uint_eq(fx_es(&f).zero, 3);
  fx_write(&f, 0, 3, 100, "hello", 5);
  fx_pass(&f);
  expect_kind(&f, 0, 3, 1, DMEM_PAGE_RESIDENT);
  ck_assert_int_eq(fx_state(&f, 0, 3), DMEM_C1);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

/* A page the adapter reports absent (no memory behind it) is neither read
 * nor evicted, and stays resident; once it holds memory again, it is
 * scanned as any other. */
START_TEST(absent_pages_skipped)
{
  fx f;
  fx_init(&f, 1, 8, 0); /* every page zeros */
  fx_start(&f);
  for (int pass = 0; pass < 3; pass++) {
    for (uint64_t g = 0; g < 4; g++)
      mem_set_bits(f.m[0], g, DMEM_BIT_ABSENT);
    fx_pass(&f);
  }
  expect_kind(&f, 0, 0, 4, DMEM_PAGE_RESIDENT);
  expect_kind(&f, 0, 4, 4, DMEM_PAGE_ZERO);
  ck_assert_uint_eq(mem_calls(f.m[0], MEM_OP_READ), 4);
  ck_assert_uint_eq(mem_calls(f.m[0], MEM_OP_EVICT), 4);
  ck_assert_uint_eq(fx_es(&f).zero, 4);
  fx_pass(&f); /* no longer absent */
  expect_kind(&f, 0, 0, 8, DMEM_PAGE_ZERO);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

START_TEST(share_same_vm)
{
  fx f;
  uint8_t x[PAGE];
  fx_init(&f, 1, 4, 0);
  fx_random(&f, 0, 0, 4, 4);
  pg_random(x, 999);
  fx_set(&f, 0, 0, x), fx_set(&f, 0, 1, x), fx_set(&f, 0, 3, x);
  fx_start(&f);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 2, DMEM_PAGE_SHARED);
  expect_kind(&f, 0, 2, 1, DMEM_PAGE_RESIDENT);
  expect_kind(&f, 0, 3, 1, DMEM_PAGE_SHARED);
  dmem_stats es = fx_es(&f);
  ck_assert_uint_eq(es.frames, 1);
  ck_assert_uint_eq(es.shared, 3);
  ck_assert_uint_ge(es.store_bytes, PAGE);
  ck_assert_uint_ge(es.merges, 3);
  ck_assert(!mem_present(f.m[0], 0) && !mem_present(f.m[0], 3));
  fx_touch(&f, 0, 1);
  expect_kind(&f, 0, 1, 1, DMEM_PAGE_RESIDENT);
  ck_assert_int_eq(fx_state(&f, 0, 1), DMEM_C1);
  fx_write(&f, 0, 0, 0, "abc", 3); /* faults, then writes a private copy */
  fx_verify(&f);                   /* gfn 3 still reads the frame */
  ck_assert_uint_eq(fx_es(&f).frames, 1);
  fx_touch(&f, 0, 3);
  es = fx_es(&f);
  ck_assert_uint_eq(es.frames, 0);
  ck_assert_uint_eq(es.store_bytes, 0);
  fx_check_stats(&f);
  fx_end(&f);
}
END_TEST

START_TEST(share_cross_vm_mapped)
{
  fx f;
  uint8_t x[PAGE], y[PAGE];
  fx_init(&f, 2, 4, FX_MAPPING);
  fx_random(&f, 0, 0, 4, 5), fx_random(&f, 1, 0, 4, 6);
  pg_random(x, 1001), pg_random(y, 1002);
  fx_set(&f, 0, 0, x), fx_set(&f, 1, 0, x);
  fx_set(&f, 0, 1, y), fx_set(&f, 1, 2, y);
  fx_start(&f);
  for (int i = 0; i < 2; i++) {
    touch_all(&f);
    fx_pass(&f);
    ck_assert_int_eq(fx_kind(&f, 0, 0), DMEM_PAGE_MAPPED);
    ck_assert_int_eq(fx_kind(&f, 1, 0), DMEM_PAGE_MAPPED);
    ck_assert_int_eq(fx_kind(&f, 0, 1), DMEM_PAGE_MAPPED);
    ck_assert_int_eq(fx_kind(&f, 1, 2), DMEM_PAGE_MAPPED);
    ck_assert_int_eq(fx_state(&f, 1, 2), DMEM_C2);
    ck_assert(mem_mapped(f.m[0], 0) && mem_mapped(f.m[1], 2));
    dmem_stats es = fx_es(&f);
    ck_assert_uint_eq(es.frames, 2);
    ck_assert_uint_eq(es.mapped, 4);
    ck_assert_uint_eq(fx_vs(&f, 0).mapped, 2);
  }
  fx_write(&f, 0, 0, 64, "guest", 5); /* breaks copy-on-write */
  ck_assert(!mem_mapped(f.m[0], 0) && mem_mapped(f.m[1], 0));
  fx_touch(&f, 1, 0);
  touch_all(&f);
  fx_pass(&f);
  ck_assert_int_eq(fx_kind(&f, 0, 0), DMEM_PAGE_RESIDENT);
  ck_assert_int_eq(fx_state(&f, 0, 0), DMEM_C1);
  ck_assert_int_eq(fx_kind(&f, 0, 1), DMEM_PAGE_MAPPED);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

/* Shared pages are evicted unless C2 with share() and map_shared. */
START_TEST(share_evicts_unless_mapped)
{
  for (int c2 = 0; c2 < 2; c2++) {
    fx f;
    uint8_t x[PAGE];
    fx_init(&f, 1, 4, FX_SHARE | FX_PROTECT | (c2 ? 0 : FX_MAP));
    fx_random(&f, 0, 0, 4, 7);
    pg_random(x, 1003);
    fx_set(&f, 0, 0, x), fx_set(&f, 0, 1, x);
    fx_start(&f);
    if (c2)
      touch_all(&f);
    fx_pass(&f);
    expect_kind(&f, 0, 0, 2, DMEM_PAGE_SHARED);
    ck_assert_int_eq(fx_state(&f, 0, 0), c2 ? DMEM_C2 : DMEM_C3);
    ck_assert_uint_eq(mem_calls(f.m[0], MEM_OP_SHARE), 0);
    ck_assert(!mem_present(f.m[0], 0) && !mem_present(f.m[0], 1));
    fx_verify(&f);
    fx_end(&f);
  }
}
END_TEST

/* ---------------------------------------------------------------- patch, compress */

START_TEST(similar_patched)
{
  static const unsigned flags[] = {0, FX_MAPPING};
  for (int i = 0; i < 2; i++) {
    fx f;
    uint8_t r[PAGE], p[PAGE];
    fx_init(&f, 1, 4, flags[i]);
    fx_random(&f, 0, 0, 4, 8);
    pg_random(r, 1004);
    pg_similar(p, r, 5, 2);
    fx_set(&f, 0, 0, r), fx_set(&f, 0, 1, p);
    fx_start(&f);
    for (int pass = 0; pass < 2 && fx_kind(&f, 0, 1) != DMEM_PAGE_PATCHED; pass++) {
      fx_touch(&f, 0, 0); /* the reference stays C2 */
      fx_pass(&f);
    }
    ck_assert_int_eq(fx_kind(&f, 0, 1), DMEM_PAGE_PATCHED);
    ck_assert_int_eq(fx_state(&f, 0, 1), DMEM_C3);
    dmem_page_kind rk = fx_kind(&f, 0, 0);
    ck_assert(rk == DMEM_PAGE_RESIDENT || rk == DMEM_PAGE_MAPPED || rk == DMEM_PAGE_SHARED);
    dmem_stats es = fx_es(&f);
    ck_assert_uint_eq(es.patched, 1);
    ck_assert_uint_ge(es.frames, 1);
    ck_assert_uint_gt(es.store_bytes, 0);
    fx_verify(&f);
    fx_touch(&f, 0, 1);
    ck_assert_int_eq(fx_kind(&f, 0, 1), DMEM_PAGE_RESIDENT);
    ck_assert_int_eq(fx_state(&f, 0, 1), DMEM_C1);
    fx_end(&f);
  }
}
END_TEST

START_TEST(compressed_in_c4)
{
  fx f;
  uint8_t t[PAGE];
  fx_init(&f, 1, 4, 0);
  fx_random(&f, 0, 1, 3, 9);
  pg_text(t, 1);
  fx_set(&f, 0, 0, t);
  fx_start(&f);
  fx_pass(&f);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 1, DMEM_PAGE_RESIDENT); /* C3: share or patch only */
  ck_assert_int_eq(fx_state(&f, 0, 0), DMEM_C3);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 1, DMEM_PAGE_COMPRESSED);
  expect_kind(&f, 0, 1, 3, DMEM_PAGE_RESIDENT);
  ck_assert_int_eq(fx_state(&f, 0, 0), DMEM_C4);
  dmem_stats es = fx_es(&f);
  ck_assert_uint_eq(es.compressed, 1);
  ck_assert_uint_eq(es.frames, 0);
  ck_assert_uint_gt(es.store_bytes, 0); /* the store may count whole chunks */
  ck_assert(!mem_present(f.m[0], 0));
  fx_verify(&f);
  expect_kind(&f, 0, 0, 1, DMEM_PAGE_COMPRESSED);
  fx_touch(&f, 0, 0);
  expect_kind(&f, 0, 0, 1, DMEM_PAGE_RESIDENT);
  ck_assert_int_eq(fx_state(&f, 0, 0), DMEM_C1);
  fx_end(&f);
}
END_TEST

/* A page whose content compresses to too much is not compressed again on
 * each pass; once it is written it is judged afresh. */
START_TEST(failed_compression_not_retried)
{
  fx f;
  fx_init(&f, 1, 4, 0);
  fx_random(&f, 0, 0, 4, 9);
  fx_start(&f);
  for (int i = 0; i < 3; i++) /* C4 on the third pass: compression fails */
    fx_pass(&f);
  ck_assert_int_eq(fx_state(&f, 0, 0), DMEM_C4);
  expect_kind(&f, 0, 0, 4, DMEM_PAGE_RESIDENT);
  ck_assert_uint_eq(fx_vs(&f, 0).retries_skipped, 0);
  fx_pass(&f);
  ck_assert_uint_eq(fx_vs(&f, 0).retries_skipped, 4);
  fx_pass(&f);
  ck_assert_uint_eq(fx_vs(&f, 0).retries_skipped, 8);
  ck_assert_uint_eq(fx_es(&f).retries_skipped, 8);
  expect_kind(&f, 0, 0, 4, DMEM_PAGE_RESIDENT);
  /* Page 2 now holds text: compressed once it is cold again. */
  uint8_t t[PAGE];
  pg_text(t, 5);
  fx_write(&f, 0, 2, 0, t, PAGE);
  int passes = 0;
  while (fx_kind(&f, 0, 2) == DMEM_PAGE_RESIDENT && passes < 10) {
    fx_pass(&f);
    passes++;
  }
  expect_kind(&f, 0, 2, 1, DMEM_PAGE_COMPRESSED);
  /* The other three were skipped on each of those passes, and only they. */
  ck_assert_uint_eq(fx_vs(&f, 0).retries_skipped, 8 + 3 * (uint64_t)passes);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("engine_scan");
  TCase *tc = tcase_create("engine_scan");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, clock_transitions);
  tcase_add_test(tc, zero_pages);
  tcase_add_test(tc, absent_pages_skipped);
  tcase_add_test(tc, share_same_vm);
  tcase_add_test(tc, share_cross_vm_mapped);
  tcase_add_test(tc, share_evicts_unless_mapped);
  tcase_add_test(tc, similar_patched);
  tcase_add_test(tc, compressed_in_c4);
  tcase_add_test(tc, failed_compression_not_retried);
  suite_add_tcase(s, tc);
  return s;
}
