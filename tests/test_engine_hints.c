/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the VMM tells the engine, and the writes it must follow, on the
 * in-memory adapter: I/O hints that share at once, dirty marks that force
 * C1, and pages mapped copy-on-write while the guest or the VMM writes
 * them (no write lost, no frame freed under a mapping). The fixture is
 * tests/engine_fixture.h. */
#include "config.h"

#include <check.h>
#include <string.h>

#include "engine_fixture.h"

/* ---------------------------------------------------------------- hints and dirty */

START_TEST(io_hint_shares_now)
{
  fx f;
  uint8_t x[PAGE], y[PAGE], zero[PAGE] = {0};
  fx_init(&f, 1, 10, 0);
  fx_random(&f, 0, 0, 10, 12);
  pg_random(x, 1005), pg_random(y, 1010);
  fx_set(&f, 0, 0, x), fx_set(&f, 0, 1, x);
  fx_start(&f);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 2, DMEM_PAGE_SHARED);
  dmem_stats es0 = fx_es(&f);
  /* The VMM fills gfn 5 with a copy of a shared frame, 6 and 7 with the
   * same new content, 8 with zeros. */
  const uint8_t *fill[4] = {x, y, y, zero};
  for (uint64_t i = 0; i < 4; i++) {
    memcpy(fx_want(&f, 0, 5 + i), fill[i], PAGE);
    ck_assert_int_eq(mem_write(f.m[0], 5 + i, 0, fill[i], PAGE, 0), 0);
  }
  ck_assert_int_eq(dmem_vm_io_hint(f.vm[0], 5, 1), 0);
  ck_assert_int_eq(fx_kind(&f, 0, 5), DMEM_PAGE_SHARED);
  dmem_stats es = fx_es(&f);
  ck_assert_uint_eq(es.frames, 1);
  ck_assert_uint_eq(es.hints, es0.hints + 1);
  ck_assert_uint_eq(es.scanned, es0.scanned);
  /* gfn 6 is remembered as a candidate, so gfn 7 shares with it. */
  ck_assert_int_eq(dmem_vm_io_hint(f.vm[0], 6, 3), 0);
  ck_assert_int_eq(fx_kind(&f, 0, 7), DMEM_PAGE_SHARED);
  ck_assert_int_eq(fx_kind(&f, 0, 6), DMEM_PAGE_SHARED);
  ck_assert_int_eq(fx_kind(&f, 0, 8), DMEM_PAGE_ZERO);
  ck_assert_uint_eq(fx_es(&f).frames, 2);
  ck_assert_uint_eq(fx_es(&f).hints, es0.hints + 4);
  ck_assert_uint_eq(fx_es(&f).scanned, es0.scanned);
  ck_assert_int_eq(dmem_vm_io_hint(f.vm[0], 9, 2), DMEM_ERANGE);
  fx_check_stats(&f);
  fx_verify(&f);
  fx_touch(&f, 0, 6);
  fx_end(&f);
}
END_TEST

START_TEST(dirty_forces_c1)
{
  fx f;
  fx_init(&f, 1, 5, 0);
  fx_random(&f, 0, 0, 4, 13); /* gfn 4 stays zero */
  fx_start(&f);
  ck_assert_int_eq(dmem_vm_dirty(f.vm[0], 4, 1), 0);
  fx_pass(&f);
  expect_states(&f, 0, "33331");
  expect_kind(&f, 0, 4, 1, DMEM_PAGE_RESIDENT); /* C1 is left alone */
  ck_assert_int_eq(dmem_vm_dirty(f.vm[0], 1, 2), 0);
  fx_pass(&f);
  expect_states(&f, 0, "31133");
  expect_kind(&f, 0, 4, 1, DMEM_PAGE_ZERO);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

/* ---------------------------------------------------------------- mapped pages and writes */

/* Two identical pages mapped copy-on-write; then variant @i: the VMM writes
 * page 0 and hints it (0) or marks it dirty and detaches (1); an adapter
 * that reports both bits for a read (2); dmem_vm_dirty with no write (3).
 * Whatever the engine makes of it, no write is lost and no frame is freed
 * under a mapping. */
START_TEST(mapped_pages_follow_writes)
{
  fx f;
  uint8_t x[PAGE], y[PAGE];
  fx_init(&f, 1, 2, FX_MAPPING);
  pg_random(x, 1011), pg_random(y, 1012);
  fx_set(&f, 0, 0, x), fx_set(&f, 0, 1, x);
  fx_start(&f);
  touch_all(&f);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 2, DMEM_PAGE_MAPPED);
  if (_i <= 1) {
    memcpy(fx_want(&f, 0, 0), y, PAGE);
    ck_assert_int_eq(mem_write(f.m[0], 0, 0, y, PAGE, 0), 0); /* VMM write */
    ck_assert_int_eq(_i ? dmem_vm_dirty(f.vm[0], 0, 1) : dmem_vm_io_hint(f.vm[0], 0, 1), 0);
    if (_i == 1) {
      fx_end(&f); /* detach before any scan sees the dirty mark */
      return;
    }
  } else if (_i == 2) {
    mem_set_bits(f.m[0], 0, DMEM_BIT_REFERENCED | DMEM_BIT_MODIFIED);
    mem_set_bits(f.m[0], 1, DMEM_BIT_REFERENCED | DMEM_BIT_MODIFIED);
  } else {
    ck_assert_int_eq(dmem_vm_dirty(f.vm[0], 0, 2), 0);
  }
  for (int pass = 0; pass < 3; pass++) {
    fx_pass(&f); /* checks the adapter still maps only what the engine calls MAPPED */
    fx_verify(&f);
  }
  touch_all(&f);
  fx_end(&f);
}
END_TEST

/* Bits read for a slice must not be applied to a page whose kind changed
 * since: P, visited first, takes Q as patch reference (Q becomes a mapped
 * frame); Q's MODIFIED bit was read with the slice, before the mapping. */
START_TEST(stale_slice_bits)
{
  fx f;
  uint8_t q[PAGE], p[PAGE];
  fx_init(&f, 1, 2, FX_MAPPING);
  pg_random(q, 1013);
  pg_similar(p, q, 7, 2);
  fx_set(&f, 0, 0, p), fx_set(&f, 0, 1, q);
  fx_start(&f);
  fx_touch(&f, 0, 1);
  fx_pass(&f);                                         /* P C3, Q C2 */
  ck_assert_int_eq(dmem_vm_io_hint(f.vm[0], 1, 1), 0); /* Q: reference candidate */
  fx_write(&f, 0, 1, 8, q + 8, 8);                     /* same bytes, MODIFIED */
  fx_pass(&f);
  fx_touch(&f, 0, 0); /* P's patch goes; Q's frame must stay while mapped */
  fx_check_stats(&f);
  fx_touch(&f, 0, 1);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("engine_hints");
  TCase *tc = tcase_create("engine_hints");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, io_hint_shares_now);
  tcase_add_test(tc, dirty_forces_c1);
  tcase_add_loop_test(tc, mapped_pages_follow_writes, 0, 4);
  tcase_add_test(tc, stale_slice_bits);
  suite_add_tcase(s, tc);
  return s;
}
