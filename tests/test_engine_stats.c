/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's statistics and per-VM accounting, on the in-memory
 * adapter: the versioned dmem_stats struct, and savings and entitlement
 * split between the VMs that share. (Every test's fixture also checks the
 * statistics against the pages: fx_check_stats().) The fixture is
 * tests/engine_fixture.h. */
#include "config.h"

#include <check.h>
#include <string.h>

#include "engine_fixture.h"

/* ---------------------------------------------------------------- statistics */

/* dmem_stats carries the version its caller knows; another is refused, and
 * nothing is written. */
START_TEST(stats_version_checked)
{
  fx f;
  fx_init(&f, 1, 8, 0);
  fx_start(&f);
  for (unsigned v = 0; v < 4; v += 3) { /* 0 and 3: no such version */
    dmem_stats s;
    memset(&s, 0x5a, sizeof s);
    s.version = v;
    ck_assert_int_eq(dmem_engine_stats(&s, f.e), DMEM_EVERSION);
    ck_assert_int_eq(dmem_vm_stats(&s, f.vm[0]), DMEM_EVERSION);
    ck_assert_uint_eq(s.version, v);
    ck_assert_uint_eq(s.pages, 0x5a5a5a5a5a5a5a5aull);
  }
  dmem_stats s = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&s, f.vm[0]), 0);
  ck_assert_uint_eq(s.version, DMEM_STATS_VERSION);
  ck_assert_uint_eq(s.pages, 8);
  /* A caller built against version 1 gets version 1: nothing is written
   * past its struct's end (retries_skipped came with version 2). */
  memset(&s, 0x5a, sizeof s);
  s.version = 1;
  ck_assert_int_eq(dmem_engine_stats(&s, f.e), 0);
  ck_assert_uint_eq(s.version, 1);
  ck_assert_uint_eq(s.pages, 8);
  ck_assert_uint_eq(s.retries_skipped, 0x5a5a5a5a5a5a5a5aull);
  ck_assert_int_eq(dmem_engine_stats(NULL, f.e), DMEM_EINVAL);
  ck_assert_int_eq(dmem_vm_stats(&s, NULL), DMEM_EINVAL);
  fx_end(&f);
}
END_TEST

/* ---------------------------------------------------------------- accounting */

START_TEST(entitlement_split)
{
  fx f;
  uint8_t b[PAGE], zero[PAGE] = {0};
  fx_init(&f, 2, 8, 0);
  fx_random(&f, 0, 4, 4, 17), fx_random(&f, 1, 4, 4, 18);
  for (uint64_t g = 0; g < 4; g++) {
    pg_random(b, 2000 + g);
    fx_set(&f, 0, g, b), fx_set(&f, 1, g, b);
  }
  fx_start(&f);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 4, DMEM_PAGE_SHARED);
  expect_kind(&f, 1, 0, 4, DMEM_PAGE_SHARED);
  dmem_stats es = fx_es(&f), v0 = fx_vs(&f, 0), v1 = fx_vs(&f, 1);
  ck_assert_uint_eq(es.frames, 4);
  /* Each of the 8 shared pages saves half a page: 4 pages per VM... less
   * nothing else, since VM figures count pages, not the store's slack. */
  ck_assert_int_eq(v0.bytes_saved, v1.bytes_saved);
  ck_assert_int_eq(v0.bytes_saved, 2 * PAGE);
  ck_assert_int_gt(v0.entitlement_bytes, 0);
  ck_assert_int_eq(v0.entitlement_bytes, v1.entitlement_bytes);
  ck_assert_int_eq(v0.entitlement_bytes + v1.entitlement_bytes, es.entitlement_bytes);
  for (uint64_t g = 4; g < 8; g++) {
    memset(fx_want(&f, 0, g), 0, PAGE);
    ck_assert_int_eq(mem_write(f.m[0], g, 0, zero, PAGE, 0), 0);
  }
  fx_pass(&f);
  expect_kind(&f, 0, 4, 4, DMEM_PAGE_ZERO);
  es = fx_es(&f), v0 = fx_vs(&f, 0), v1 = fx_vs(&f, 1);
  ck_assert_int_gt(v0.bytes_saved, v1.bytes_saved);
  ck_assert_int_gt(v0.entitlement_bytes, v1.entitlement_bytes);
  ck_assert_int_eq(v0.entitlement_bytes + v1.entitlement_bytes, es.entitlement_bytes);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("engine_stats");
  TCase *tc = tcase_create("engine_stats");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, stats_version_checked);
  tcase_add_test(tc, entitlement_split);
  suite_add_tcase(s, tc);
  return s;
}
