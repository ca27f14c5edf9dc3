/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Copy-on-write sharing in the KVM adapter (diffmem/kvm.h, "share"), with
 * host threads touching the region: a read of an evicted shared page maps
 * the engine's frame, later reads need no fault, a write gives a private
 * copy that the engine puts back into the memfd, the VMA budget holds and
 * when it is spent reads copy instead, and detach puts every page back. A
 * stress run reads and writes at random from two threads while the engine
 * scans, against a shadow copy (DMEM_COW_OPS operations, default 1,000,000).
 * Skips (77) without KVM or userfaultfd; its own main() for that. */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "kvm_guest.h"

#define PAGE DMEM_PAGE_SIZE
#define N 512

/* Even pages hold one of 8 contents (shared), odd pages their own. */
static void content(uint8_t *p, uint64_t i, uint32_t gen)
{
  uint64_t key = i % 2 == 0 ? (i / 2) % 8 : 1000 + i;
  for (unsigned w = 0; w < PAGE / 8; w++) {
    uint64_t v = (key + 1) * 0x9e3779b97f4a7c15ull ^ (w * 0x100000001b3ull) ^ gen;
    memcpy(p + w * 8, &v, 8);
  }
}

typedef struct fixture {
  dmem_kvm_region *r;
  dmem_engine *e;
  dmem_vm *vm;
  uint8_t *m;
  uint8_t *shadow;
} fixture;

static void setup(fixture *f, uint64_t vma_budget, int map_shared)
{
  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  o.size = (uint64_t)N * PAGE;
  o.vma_budget = vma_budget;
  char err[DMEM_ERRBUF_SIZE];
  ck_assert_msg(dmem_kvm_region_create(&f->r, &o, err, sizeof err) == 0, "%s", err);
  f->m = dmem_kvm_region_addr(f->r);
  f->shadow = malloc((size_t)N * PAGE);
  ck_assert_ptr_nonnull(f->shadow);
  for (uint64_t i = 0; i < N; i++) {
    content(f->shadow + i * PAGE, i, 0);
    memcpy(f->m + i * PAGE, f->shadow + i * PAGE, PAGE);
  }
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.seed = 0x5eed;
  eo.c4_passes = 2;
  eo.slice_pages = 64;
  eo.map_shared = map_shared;
  ck_assert_int_eq(dmem_engine_create(&f->e, &eo), 0);
  ck_assert_int_eq(dmem_kvm_region_attach(&f->vm, f->e, f->r, "cow"), 0);
  ck_assert_int_ge(dmem_vm_frames_fd(f->vm), 0);
}

static void scan(fixture *f, unsigned passes)
{
  for (unsigned i = 0; i < passes; i++)
    ck_assert_int_eq(dmem_engine_scan(NULL, f->e, N), 0);
}

static dmem_kvm_stats kstats(fixture *f)
{
  return kt_region_stats(f->r);
}

static uint64_t memfd_pages(fixture *f)
{
  uint64_t b;
  ck_assert_int_eq(dmem_kvm_region_memfd_bytes(&b, f->r), 0);
  return b / PAGE;
}

static void verify(fixture *f)
{
  for (uint64_t i = 0; i < N; i++)
    ck_assert_msg(memcmp(f->m + i * PAGE, f->shadow + i * PAGE, PAGE) == 0, "page %llu differs",
                  (unsigned long long)i);
}

static void teardown(fixture *f)
{
  ck_assert_int_eq(dmem_kvm_region_detach(f->r), 0);
  ck_assert_uint_eq(memfd_pages(f), N); /* every page back in the memfd */
  verify(f);
  dmem_stats es = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_engine_stats(&es, f->e), 0);
  ck_assert_uint_eq(es.errors, 0);
  dmem_kvm_region_destroy(f->r);
  dmem_engine_destroy(f->e);
  free(f->shadow);
}

/* Reads map; reads again fault no more; nothing of it costs memfd blocks. */
START_TEST(reads_map_the_frame)
{
  fixture f;
  setup(&f, 0, 1);
  scan(&f, 3);
  dmem_stats vs = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&vs, f.vm), 0);
  ck_assert_uint_ge(vs.shared, N / 2 - 8);
  uint64_t blocks = memfd_pages(&f);
  ck_assert_uint_le(blocks, N / 2 + 8);
  verify(&f); /* reads every page */
  dmem_kvm_stats ks = kstats(&f);
  ck_assert_uint_ge(ks.cow_maps, N / 2 - 8);
  ck_assert_uint_eq(ks.cow_mapped, ks.cow_maps);
  ck_assert_uint_eq(ks.cow_fallbacks, 0);
  ck_assert_uint_gt(ks.vma_budget, 0);
  ck_assert_uint_le(ks.vmas_used, ks.vma_budget);
  ck_assert_uint_le(memfd_pages(&f), blocks); /* mapped pages hold no block */
  ck_assert_int_eq(dmem_vm_stats(&vs, f.vm), 0);
  ck_assert_uint_ge(vs.mapped, N / 2 - 8);
  /* Read again, after scans: no fault, no copy. */
  scan(&f, 3);
  uint64_t missing = kstats(&f).faults_missing;
  verify(&f);
  ks = kstats(&f);
  ck_assert_uint_eq(ks.faults_missing, missing);
  ck_assert_uint_eq(ks.cow_mapped, ks.cow_maps);
  teardown(&f);
}
END_TEST

/* A write to a mapped page: a private copy, which the engine puts back into
 * the memfd; the frame stays as it was for the other pages. */
START_TEST(writes_go_private)
{
  fixture f;
  setup(&f, 0, 1);
  scan(&f, 3);
  verify(&f);
  uint64_t mapped = kstats(&f).cow_mapped;
  ck_assert_uint_gt(mapped, 16);
  for (uint64_t i = 0; i < N; i += 8) { /* shared pages, one in four */
    content(f.shadow + i * PAGE, i, 7);
    memcpy(f.m + i * PAGE, f.shadow + i * PAGE, PAGE);
  }
  verify(&f);
  ck_assert_uint_ge(kstats(&f).faults_wp, N / 8);
  scan(&f, 1); /* the engine sees them modified: private again */
  dmem_kvm_stats ks = kstats(&f);
  ck_assert_uint_le(ks.cow_mapped, mapped - N / 8);
  verify(&f);
  scan(&f, 4);
  verify(&f);
  teardown(&f);
}
END_TEST

/* A budget of 3 VMAs: a few reads map, the rest copy, nothing is lost. */
START_TEST(budget_spent_copies)
{
  fixture f;
  setup(&f, 3, 1);
  scan(&f, 3);
  for (uint64_t i = 0; i < N; i++) {
    ck_assert_int_eq(memcmp(f.m + i * PAGE, f.shadow + i * PAGE, PAGE), 0);
    ck_assert_uint_le(kstats(&f).vmas_used, 3);
  }
  dmem_kvm_stats ks = kstats(&f);
  ck_assert_uint_gt(ks.cow_maps, 0);
  ck_assert_uint_gt(ks.cow_fallbacks, 0);
  ck_assert_uint_eq(ks.vma_budget, 3);
  teardown(&f);
}
END_TEST

/* Mapping off (map_shared 0): reads copy, as before. */
START_TEST(mapping_off_copies)
{
  fixture f;
  setup(&f, 0, 0);
  scan(&f, 3);
  verify(&f);
  ck_assert_uint_eq(kstats(&f).cow_maps, 0);
  ck_assert_uint_eq(memfd_pages(&f), N);
  teardown(&f);
}
END_TEST

/* ------------------------------------------------------------ stress */

typedef struct worker {
  fixture *f;
  unsigned id;
  uint64_t ops, seed, bad;
} worker;

/* Worker id touches the pages p with p % 2 == id, so that each page's
 * shadow has one writer; the shared contents span both. */
static void *work(void *arg)
{
  worker *w = arg;
  uint64_t x = w->seed;
  uint8_t buf[PAGE];
  for (uint64_t k = 0; k < w->ops; k++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t i = ((x >> 33) % (N / 2)) * 2 + w->id; /* this thread's pages */
    uint8_t *pg = w->f->m + i * PAGE, *sh = w->f->shadow + i * PAGE;
    if ((x >> 20) % 16 == 0) {
      /* a write: sometimes back to a shared content, sometimes a word */
      if ((x >> 24) % 2) {
        content(sh, i, (uint32_t)((x >> 40) % 2));
        memcpy(pg, sh, PAGE);
      } else {
        unsigned off = (unsigned)((x >> 12) % (PAGE / 8)) * 8;
        memcpy(sh + off, &x, 8);
        memcpy(pg + off, &x, 8);
      }
    } else {
      unsigned off = (unsigned)((x >> 12) % (PAGE / 64)) * 64;
      memcpy(buf, pg + off, 64);
      w->bad += memcmp(buf, sh + off, 64) != 0;
    }
  }
  return NULL;
}

static void stress(uint64_t vma_budget)
{
  const char *v = getenv("DMEM_COW_OPS");
  uint64_t total = v && *v ? strtoull(v, NULL, 0) : 1000000;
  fixture f;
  setup(&f, vma_budget, 1);
  scan(&f, 3);
  worker w[2];
  pthread_t t[2];
  for (unsigned i = 0; i < 2; i++) {
    w[i] = (worker){&f, i, total / 2, 0x1234 + i, 0};
    ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
  }
  /* Scan while they run, checking the budget at every step. */
  int running = 2, joined[2] = {0, 0};
  uint64_t scans = 0;
  while (running) {
    ck_assert_int_eq(dmem_engine_scan(NULL, f.e, 64), 0);
    scans++;
    dmem_kvm_stats ks = kstats(&f);
    ck_assert_uint_le(ks.vmas_used, ks.vma_budget);
    running = 0;
    for (unsigned i = 0; i < 2; i++) {
      if (!joined[i])
        joined[i] = pthread_tryjoin_np(t[i], NULL) == 0;
      running += !joined[i];
    }
  }
  dmem_kvm_stats ks = kstats(&f);
  printf("copy-on-write stress (budget %llu): %llu ops, %llu scans, %llu maps, %llu fallbacks, "
         "%llu wp faults, %llu missing\n",
         (unsigned long long)ks.vma_budget, (unsigned long long)total, (unsigned long long)scans,
         (unsigned long long)ks.cow_maps, (unsigned long long)ks.cow_fallbacks,
         (unsigned long long)ks.faults_wp, (unsigned long long)ks.faults_missing);
  ck_assert_uint_eq(w[0].bad + w[1].bad, 0);
  ck_assert_uint_gt(ks.cow_maps, 0);
  verify(&f);
  teardown(&f);
}

START_TEST(stress_default_budget)
{
  stress(0);
}
END_TEST

START_TEST(stress_small_budget)
{
  stress(8);
}
END_TEST

static Suite *cow_suite(void)
{
  Suite *s = suite_create("kvm_cow");
  TCase *tc = tcase_create("cow");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, reads_map_the_frame);
  tcase_add_test(tc, writes_go_private);
  tcase_add_test(tc, budget_spent_copies);
  tcase_add_test(tc, mapping_off_copies);
  tcase_add_test(tc, stress_default_budget);
  tcase_add_test(tc, stress_small_budget);
  suite_add_tcase(s, tc);
  return s;
}

int main(void)
{
  kt_skip_unless_supported("test_kvm_cow");
  return kt_run_suite(cow_suite());
}
