/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine under failures, on the in-memory adapter: each adapter
 * operation failing (always, once, at random, with results outside the
 * error table) and each allocation failing in turn through the allocator
 * hook. Nothing is lost and nothing leaks. The fixture is
 * tests/engine_fixture.h. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_fixture.h"

/* ---------------------------------------------------------------- adapter failures */

static const mem_op failing_ops[] = {MEM_OP_READ, MEM_OP_BITS, MEM_OP_PROTECT, MEM_OP_EVICT};

/* While @op fails, nothing is reclaimed and nothing is lost. */
START_TEST(failed_op_leaves_pages)
{
  fx f;
  uint8_t buf[PAGE];
  mem_op op = failing_ops[_i];
  fx_init(&f, 1, 16, FX_SHARE | FX_PROTECT);
  fx_mixed(&f, 0);
  fx_start(&f);
  mem_fail_next(f.m[0], op, 1000000, DMEM_EIO);
  for (unsigned i = 0; i < f.o.c4_passes + 1; i++)
    fx_pass(&f);
  ck_assert_uint_gt(mem_failed(f.m[0], op), 0);
  ck_assert_uint_gt(fx_es(&f).errors, 0);
  expect_kind(&f, 0, 0, 16, DMEM_PAGE_RESIDENT);
  for (uint64_t g = 0; g < 16; g++) {
    ck_assert_int_eq(mem_peek(f.m[0], g, buf), 0);
    ck_assert_mem_eq(buf, fx_want(&f, 0, g), PAGE);
  }
  mem_fail_clear(f.m[0]);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 2, DMEM_PAGE_ZERO);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

START_TEST(failed_share_keeps_content)
{
  fx f;
  uint8_t x[PAGE];
  fx_init(&f, 1, 4, FX_MAPPING);
  fx_random(&f, 0, 0, 4, 15);
  pg_random(x, 1008);
  fx_set(&f, 0, 0, x), fx_set(&f, 0, 1, x);
  fx_start(&f);
  mem_fail_next(f.m[0], MEM_OP_SHARE, 1000000, DMEM_EIO);
  touch_all(&f);
  fx_pass(&f);
  ck_assert_uint_gt(mem_failed(f.m[0], MEM_OP_SHARE), 0);
  ck_assert_uint_gt(fx_es(&f).errors, 0);
  for (uint64_t g = 0; g < 2; g++) {
    dmem_page_kind k = fx_kind(&f, 0, g);
    ck_assert(k == DMEM_PAGE_RESIDENT || k == DMEM_PAGE_SHARED);
    ck_assert(!mem_mapped(f.m[0], g));
  }
  fx_verify(&f);
  mem_fail_clear(f.m[0]);
  for (int i = 0; i < 4 && fx_kind(&f, 0, 1) != DMEM_PAGE_MAPPED; i++) {
    touch_all(&f);
    fx_pass(&f);
  }
  expect_kind(&f, 0, 0, 2, DMEM_PAGE_MAPPED);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

/* An adapter that answers with something other than 0 or a DMEM_E* code
 * (1, a code the table lacks): the engine passes on DMEM_EIO, and counts
 * the failure like any other. */
START_TEST(adapter_results_outside_the_table_are_io_errors)
{
  fx f;
  fx_init(&f, 1, 4, 0);
  fx_random(&f, 0, 2, 2, 16);
  fx_start(&f);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 2, DMEM_PAGE_ZERO);
  static const int odd[] = {1, 77, -1000};
  for (unsigned i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    uint64_t errors = fx_es(&f).errors;
    mem_fail_next(f.m[0], MEM_OP_INSTALL, 1, odd[i]);
    ck_assert_int_eq(dmem_vm_fault(f.vm[0], 0), DMEM_EIO);
    ck_assert_uint_eq(fx_es(&f).errors, errors + 1);
    ck_assert_int_eq(fx_kind(&f, 0, 0), DMEM_PAGE_ZERO);
  }
  uint8_t buf[PAGE];
  mem_fail_next(f.m[0], MEM_OP_READ, 1, 1);
  ck_assert_int_eq(dmem_vm_read(buf, f.vm[0], 2), DMEM_EIO);
  ck_assert_int_eq(dmem_vm_fault(f.vm[0], 0), 0);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

START_TEST(failed_install_keeps_page)
{
  fx f;
  uint8_t buf[PAGE];
  fx_init(&f, 1, 4, 0);
  fx_random(&f, 0, 2, 2, 16);
  fx_start(&f);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 2, DMEM_PAGE_ZERO);
  mem_fail_next(f.m[0], MEM_OP_INSTALL, 1, DMEM_EIO);
  ck_assert_int_eq(dmem_vm_fault(f.vm[0], 0), DMEM_EIO);
  ck_assert_int_eq(fx_kind(&f, 0, 0), DMEM_PAGE_ZERO);
  ck_assert(!mem_present(f.m[0], 0));
  ck_assert_uint_gt(fx_es(&f).errors, 0);
  ck_assert_int_eq(dmem_vm_fault(f.vm[0], 0), 0);
  ck_assert_int_eq(fx_kind(&f, 0, 0), DMEM_PAGE_RESIDENT);
  mem_fail_next(f.m[0], MEM_OP_INSTALL, 1, DMEM_EIO);
  ck_assert_int_eq(mem_guest_read(f.m[0], 1, buf), DMEM_EIO);
  fx_touch(&f, 0, 1);
  fx_pass(&f);
  expect_kind(&f, 0, 0, 1, DMEM_PAGE_ZERO);
  /* A detach that cannot install keeps the VM attached; a retry works. */
  mem_fail_next(f.m[0], MEM_OP_INSTALL, 1, DMEM_EIO);
  ck_assert_int_eq(dmem_vm_detach(f.vm[0]), DMEM_EIO);
  ck_assert_uint_eq(fx_vs(&f, 0).pages, 4);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

static int retry_touch(fx *f, unsigned v, uint64_t g, const void *wr, size_t len)
{
  uint8_t buf[PAGE];
  for (int i = 0; i < 100; i++) {
    int rc = wr ? mem_guest_write(f->m[v], g, 8, wr, len) : mem_guest_read(f->m[v], g, buf);
    if (rc == DMEM_EIO)
      continue;
    ck_assert_int_eq(rc, 0);
    if (wr)
      memcpy(fx_want(f, v, g) + 8, wr, len);
    else
      ck_assert_mem_eq(buf, fx_want(f, v, g), PAGE);
    return 0;
  }
  ck_abort_msg("guest access failed 100 times");
  return -1;
}

START_TEST(random_failures_keep_content)
{
  fx f;
  uint64_t s = 99;
  fx_init(&f, 2, 16, FX_MAPPING);
  fx_mixed(&f, 0), fx_mixed(&f, 1);
  fx_start(&f);
  for (unsigned v = 0; v < 2; v++)
    for (int op = 0; op < MEM_OP_COUNT; op++)
      if (op != MEM_OP_UNPROTECT)
        mem_fail_prob(f.m[v], (mem_op)op, 0.25, DMEM_EIO);
  for (int pass = 0; pass < 30; pass++) {
    for (int i = 0; i < 8; i++) {
      uint64_t r = test_rand(&s);
      retry_touch(&f, r & 1, (r >> 8) % 16, (r >> 16) % 4 ? NULL : &r, sizeof r);
    }
    fx_pass(&f);
  }
  ck_assert_uint_gt(fx_es(&f).errors, 0);
  mem_fail_clear(f.m[0]), mem_fail_clear(f.m[1]);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

/* ---------------------------------------------------------------- allocation failures */

/* Engine create, two attaches, one detach and destroy with allocation
 * @fail_at failing; returns the allocations asked for. */
static long alloc_setup_once(long fail_at)
{
  test_alloc ta;
  test_alloc_init(&ta);
  ta.fail_at = fail_at;
  fx f;
  fx_init(&f, 2, 8, FX_SWAP);
  f.o.allocator = &ta.hook;
  int rc = dmem_engine_create(&f.e, &f.o);
  for (unsigned v = 0; rc == 0 && v < 2; v++)
    rc = mem_attach(&f.vm[v], f.e, f.m[v], "vm");
  if (f.vm[0]) {
    int drc = dmem_vm_detach(f.vm[0]);
    ck_assert_int_eq(drc == DMEM_ENOMEM ? dmem_vm_detach(f.vm[0]) : drc, 0);
  }
  dmem_engine_destroy(f.e);
  ck_assert_msg(rc == 0 || (rc == DMEM_ENOMEM && ta.allocs >= fail_at), "fail_at %ld: %s", fail_at,
                dmem_err_name(rc));
  ck_assert_msg(ta.live_bytes == 0, "fail_at %ld: %ld bytes leaked", fail_at, ta.live_bytes);
  ck_assert_msg(rmdir(f.swap) == 0, "swap directory %s: %s", f.swap, strerror(errno));
  for (unsigned v = 0; v < 2; v++) {
    mem_destroy(f.m[v]);
    free(f.want[v]);
  }
  return ta.allocs;
}

START_TEST(alloc_failures_setup)
{
  long i = 1;
  while (alloc_setup_once(i) >= i)
    i++;
  ck_assert_int_gt(i, 1);
}
END_TEST

/* A mixed VM scanned, read and detached while allocation number @k after
 * the attach fails; returns the allocations the run asked for after attach. */
static long alloc_scan_once(long k)
{
  test_alloc ta;
  test_alloc_init(&ta);
  fx f;
  uint8_t buf[PAGE];
  fx_init(&f, 1, 16, 0);
  fx_mixed(&f, 0);
  f.o.allocator = &ta.hook;
  fx_start(&f);
  long a0 = ta.allocs;
  ta.fail_at = k ? a0 + k : 0;
  for (unsigned i = 0; i < f.o.c4_passes + 2; i++) {
    fx_touch(&f, 0, 4);
    int rc = dmem_engine_scan(NULL, f.e, 16);
    ck_assert(rc == 0 || rc == DMEM_ENOMEM);
  }
  fx_check_stats(&f);
  for (uint64_t g = 0; g < 16; g++) {
    int rc = dmem_vm_read(buf, f.vm[0], g);
    if (rc == DMEM_ENOMEM)
      rc = dmem_vm_read(buf, f.vm[0], g);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(memcmp(buf, fx_want(&f, 0, g), PAGE) == 0, "k %ld gfn %llu", k,
                  (unsigned long long)g);
  }
  int rc = dmem_vm_detach(f.vm[0]);
  if (rc == DMEM_ENOMEM)
    rc = dmem_vm_detach(f.vm[0]);
  ck_assert_int_eq(rc, 0);
  f.vm[0] = NULL;
  fx_end(&f);
  ck_assert_msg(ta.live_bytes == 0, "k %ld: %ld bytes leaked", k, ta.live_bytes);
  return ta.allocs - a0;
}

START_TEST(alloc_failures_scan)
{
  long n = alloc_scan_once(0);
  ck_assert_int_gt(n, 0);
  for (long k = 1; k <= n; k++)
    alloc_scan_once(k);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("engine_failures");
  TCase *tc = tcase_create("engine_failures");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, adapter_results_outside_the_table_are_io_errors);
  tcase_add_loop_test(tc, failed_op_leaves_pages, 0, 4);
  tcase_add_test(tc, failed_share_keeps_content);
  tcase_add_test(tc, failed_install_keeps_page);
  tcase_add_test(tc, random_failures_keep_content);
  tcase_add_test(tc, alloc_failures_setup);
  tcase_add_test(tc, alloc_failures_scan);
  suite_add_tcase(s, tc);
  return s;
}
