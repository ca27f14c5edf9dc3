/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sharing domains and secure mode, on the in-memory adapter: nothing
 * crosses domains (frames, patches, statistics, each domain's frames
 * memfd), and in secure mode every idle candidate is treated alike and an
 * I/O hint merges nothing (README, "Security"). The fixture is
 * tests/engine_fixture.h. */
#include "config.h"

#include <check.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_fixture.h"

/* ---------------------------------------------------------------- domains */

/* VM 0 and VM 1 hold the same pages (unique within each VM) and pages
 * similar to each other's: within one domain they share and patch across
 * the VMs; each in its own domain (the default), nothing crosses. */
static void domains_run(unsigned flags, uint64_t *shared, uint64_t *patched, uint64_t *frames)
{
  fx f;
  fx_init(&f, 2, 16, flags);
  uint8_t b[PAGE], r[PAGE];
  for (uint64_t g = 0; g < 8; g++) {
    pg_text(b, 300 + g);
    fx_set(&f, 0, g, b);
    fx_set(&f, 1, g, b); /* the same page in the other VM */
    pg_random(r, 400 + g);
    fx_set(&f, 0, 8 + g, r);
    pg_similar(b, r, 500 + g, 2);
    fx_set(&f, 1, 8 + g, b); /* similar to the other VM's page */
  }
  fx_start(&f);
  for (unsigned i = 0; i < f.o.c4_passes + 2; i++)
    fx_pass(&f);
  dmem_stats es = fx_es(&f);
  *shared = es.shared + es.mapped;
  *patched = es.patched;
  *frames = es.frames;
  fx_verify(&f);
  fx_end(&f);
}

START_TEST(domains_keep_vms_apart)
{
  uint64_t shared, patched, frames;
  domains_run(0, &shared, &patched, &frames); /* one domain */
  ck_assert_uint_ge(shared, 16);
  ck_assert_uint_ge(patched, 1);
  domains_run(FX_OWN, &shared, &patched, &frames); /* a domain each */
  ck_assert_uint_eq(shared, 0);
  ck_assert_uint_eq(patched, 0);
  ck_assert_uint_eq(frames, 0);
}
END_TEST

/* What VM 0 can read of its own statistics does not change with what a
 * VM of another domain holds: a copy of VM 0's pages, or pages of its own. */
static dmem_stats lonely_stats(int twin)
{
  fx f;
  fx_init(&f, 2, 16, FX_OWN);
  fx_mixed(&f, 0);
  if (twin) {
    for (uint64_t g = 0; g < 16; g++)
      fx_set(&f, 1, g, fx_want(&f, 0, g));
  } else {
    fx_random(&f, 1, 0, 16, 999);
  }
  fx_start(&f);
  for (unsigned i = 0; i < f.o.c4_passes + 2; i++)
    fx_pass(&f);
  dmem_stats vs = fx_vs(&f, 0);
  fx_verify(&f);
  fx_end(&f);
  return vs;
}

START_TEST(stats_blind_to_other_domains)
{
  dmem_stats a = lonely_stats(1), b = lonely_stats(0);
  ck_assert_uint_eq(a.shared, b.shared);
  ck_assert_uint_eq(a.mapped, b.mapped);
  ck_assert_uint_eq(a.patched, b.patched);
  ck_assert_uint_eq(a.compressed, b.compressed);
  ck_assert_uint_eq(a.zero, b.zero);
  ck_assert_uint_eq(a.resident, b.resident);
  ck_assert_int_eq(a.bytes_saved, b.bytes_saved);
  ck_assert_int_eq(a.entitlement_bytes, b.entitlement_bytes);
  ck_assert_uint_eq(a.merges, b.merges);
  ck_assert_uint_eq(a.faults, b.faults);
  ck_assert_uint_gt(a.shared, 0); /* its own duplicates, shared within it */
}
END_TEST

/* Secure mode: the attack of the README's "Security" section, in one
 * domain. VM 0 holds a secret S; VM 1 holds an exact guess E = S, a near
 * miss N (one byte off) and an unrelated page U, all left idle, and a hot
 * copy of S that it keeps reading. Every idle candidate is evicted onto a
 * frame, E onto S's, N and U onto frames of their own: no patch, no
 * mapping, nothing done to the hot page. A fault frees no frame; the next
 * scan does. */
START_TEST(secure_treats_candidates_alike)
{
  fx f;
  fx_init(&f, 2, 8, FX_MAPPING);
  f.o.secure = 1;
  fx_random(&f, 0, 0, 8, 100);
  fx_random(&f, 1, 0, 8, 200);
  uint8_t p[PAGE];
  fx_set(&f, 1, 0, fx_want(&f, 0, 0)); /* E */
  memcpy(p, fx_want(&f, 0, 0), PAGE);
  p[100] ^= 1;
  fx_set(&f, 1, 1, p);                 /* N */
  fx_set(&f, 1, 3, fx_want(&f, 0, 0)); /* hot copy of S */
  memset(p, 0, PAGE);
  fx_set(&f, 1, 4, p); /* zero */
  fx_start(&f);
  for (unsigned i = 0; i < f.o.c4_passes + 2; i++) {
    fx_touch(&f, 1, 3);
    fx_pass(&f);
  }
  for (unsigned v = 0; v < 2; v++)
    for (uint64_t g = 0; g < 8; g++) {
      dmem_page_kind k = fx_kind(&f, v, g);
      if (v == 1 && g == 3)
        ck_assert_int_eq(k, DMEM_PAGE_RESIDENT);
      else if (v == 1 && g == 4)
        ck_assert_int_eq(k, DMEM_PAGE_ZERO);
      else
        ck_assert_msg(k == DMEM_PAGE_SHARED, "vm%u gfn %llu: kind %d", v, (unsigned long long)g,
                      (int)k);
    }
  dmem_stats es = fx_es(&f);
  ck_assert_uint_eq(es.patched + es.compressed + es.mapped, 0);
  ck_assert_uint_eq(es.frames, 16 - 2 - 1); /* every idle page, E with S */
  /* Faults of E (merged) and U (alone): both copied, no frame freed yet. */
  fx_touch(&f, 1, 0);
  fx_touch(&f, 1, 2);
  ck_assert_int_eq(fx_kind(&f, 1, 0), DMEM_PAGE_RESIDENT);
  ck_assert_int_eq(fx_kind(&f, 1, 2), DMEM_PAGE_RESIDENT);
  ck_assert_uint_eq(fx_es(&f).frames, 13);
  ck_assert_uint_eq(fx_es(&f).mapped, 0);
  /* U changes (so it is not a candidate again); the next scan frees its
   * frame, and S's stays for VM 0. */
  fx_write(&f, 1, 2, 0, "new", 3);
  fx_touch(&f, 1, 0);
  fx_touch(&f, 1, 3);
  fx_pass(&f);
  ck_assert_uint_eq(fx_es(&f).frames, 12);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

/* An I/O hint merges ahead of the scan by default, and not in secure mode
 * (the guest would set the pace of its own probe). */
static dmem_page_kind hinted_kind(int secure)
{
  fx f;
  fx_init(&f, 2, 4, FX_SHARE | FX_PROTECT);
  f.o.secure = secure;
  fx_random(&f, 0, 0, 4, 5);
  fx_set(&f, 1, 0, fx_want(&f, 0, 0));
  fx_start(&f);
  ck_assert_int_eq(dmem_vm_io_hint(f.vm[0], 0, 1), 0);
  ck_assert_int_eq(dmem_vm_io_hint(f.vm[1], 0, 1), 0);
  ck_assert_uint_eq(fx_es(&f).hints, 2);
  dmem_page_kind k = fx_kind(&f, 1, 0);
  fx_check_stats(&f);
  fx_verify(&f);
  fx_end(&f);
  return k;
}

START_TEST(secure_hints_merge_nothing)
{
  ck_assert_int_eq(hinted_kind(0), DMEM_PAGE_SHARED);
  ck_assert_int_eq(hinted_kind(1), DMEM_PAGE_RESIDENT);
}
END_TEST

/* Counts the pages of memfd fd that hold content (non-zero) with first
 * byte b. */
static unsigned memfd_pages_with(int fd, uint8_t b)
{
  struct stat st;
  ck_assert_int_eq(fstat(fd, &st), 0);
  uint8_t page[PAGE];
  unsigned n = 0;
  for (off_t off = 0; off + PAGE <= st.st_size; off += PAGE) {
    ck_assert_int_eq(pread(fd, page, PAGE, off), PAGE);
    n += page[0] == b;
  }
  return n;
}

START_TEST(frames_memfd_per_domain)
{
  /* Two tenants, each with pages it holds twice: each domain's frames go
   * into its own memfd, which holds no frame of the other. */
  fx f;
  fx_init(&f, 2, 32, FX_SHARE | FX_PROTECT | FX_OWN);
  for (unsigned v = 0; v < 2; v++)
    for (uint64_t g = 0; g < f.npages; g++) {
      uint8_t p[PAGE];
      memset(p, v ? 0xbb : 0xaa, PAGE);
      p[1] = (uint8_t)(g % 8); /* 8 contents, each 4 times */
      fx_set(&f, v, g, p);
    }
  fx_start(&f);
  for (unsigned i = 0; i < 3; i++)
    fx_pass(&f);
  ck_assert_uint_gt(fx_vs(&f, 0).shared, 0);
  ck_assert_uint_gt(fx_vs(&f, 1).shared, 0);
  int a = dmem_vm_frames_fd(f.vm[0]), b = dmem_vm_frames_fd(f.vm[1]);
  ck_assert_int_ge(a, 0);
  ck_assert_int_ge(b, 0);
  ck_assert_int_ne(a, b);
  ck_assert_uint_eq(memfd_pages_with(a, 0xaa), 8);
  ck_assert_uint_eq(memfd_pages_with(a, 0xbb), 0);
  ck_assert_uint_eq(memfd_pages_with(b, 0xbb), 8);
  ck_assert_uint_eq(memfd_pages_with(b, 0xaa), 0);
  uint64_t bytes = 0;
  ck_assert_int_eq(dmem_engine_memfd_bytes(f.e, &bytes), 0);
  ck_assert_uint_ge(bytes, 16 * PAGE);
  ck_assert_int_eq(dmem_vm_frames_fd(NULL), -1);
  ck_assert_int_eq(dmem_engine_memfd_bytes(NULL, &bytes), DMEM_EINVAL);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("engine_domains");
  TCase *tc = tcase_create("engine_domains");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, domains_keep_vms_apart);
  tcase_add_test(tc, secure_treats_candidates_alike);
  tcase_add_test(tc, secure_hints_merge_nothing);
  tcase_add_test(tc, frames_memfd_per_domain);
  tcase_add_test(tc, stats_blind_to_other_domains);
  suite_add_tcase(s, tc);
  return s;
}
