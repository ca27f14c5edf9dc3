/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The KVM adapter under real vCPUs: a guest of our own (kvm_guest.h) runs a
 * bounded loop of memory operations in a region that the engine scans at
 * the same time, so that its pages are evicted and faulted back under the
 * running vCPUs (through KVM's get_user_pages into the adapter's
 * userfaultfd thread). The guest checks every entry it reads, and the host
 * replays the guest's LCG to know every page's final content exactly.
 *
 * DMEM_KVM_OPS sets the guest operations per test (all vCPUs together;
 * default 4,000,000). Skips (exit 77) where KVM, userfaultfd or such a
 * guest cannot run; has its own main() for that, not tests/runner.c. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "kvm_guest.h"

#define PAGE DMEM_PAGE_SIZE
static uint64_t total_ops(void)
{
  const char *v = getenv("DMEM_KVM_OPS");
  uint64_t n = v && *v ? strtoull(v, NULL, 0) : 4000000;
  return n < 1000 ? 1000 : n;
}

/* A run that takes longer than this fails (the vCPUs are stopped): 40 s
 * for the default 4,000,000 operations, and as much again for each
 * further 4,000,000 (make stress runs more). */
static unsigned deadline_s(void)
{
  uint64_t k = (total_ops() + 3999999) / 4000000;
  return (unsigned)(40 * (k < 1 ? 1 : k > 1000 ? 1000 : k));
}
#define DEADLINE_S deadline_s()

/* cow: the engine maps shared pages copy-on-write on a read fault. */
static void run_guest(unsigned nvcpus, int log_dirty, int cow)
{
  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = (uint64_t)KT_GUEST_PAGES * PAGE;
  dmem_kvm_region *r;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &ro, NULL, 0), 0);
  kt_guest_config cfg = {.program = KT_PROG_LOOP,
                         .nvcpus = nvcpus,
                         .ops = total_ops() / nvcpus,
                         .seed = 12345,
                         .report_log = 13,
                         .win_log = 11,
                         .win_entries = 4096, /* 8 pages */
                         .win_step = 1024,    /* 2 pages */
                         .log_dirty = log_dirty};
  kt_guest *g = NULL;
  char err[256];
  int rc = kt_guest_create(&g, r, &cfg, err, sizeof err);
  ck_assert_msg(rc == 0, "cannot make the guest: %s", err);
  dmem_engine *e;
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.seed = 0x5eed5eedull;
  eo.c4_passes = 2;
  eo.slice_pages = 64;
  eo.map_shared = cow;
  ck_assert_int_eq(dmem_engine_create(&e, &eo), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "guest"), 0);
  uint64_t bytes0 = 0, bytes_min = UINT64_MAX;
  ck_assert_int_eq(dmem_kvm_region_memfd_bytes(&bytes0, r), 0);

  uint64_t t0 = kt_now_ns(), scans = 0;
  ck_assert_int_eq(kt_guest_start(g), 0);
  dmem_stats vs = DMEM_STATS_INIT, most = DMEM_STATS_INIT;
  memset(&most, 0, sizeof most);
  int late = 0;
  /* Lockstep with overlap: each scan runs while the vCPUs run their next
   * 2^report_log operations; then the vCPUs wait at their report until
   * the scan is done, and the scanner until they got there. */
  while (kt_guest_running(g)) {
    ck_assert_int_eq(dmem_engine_scan(NULL, e, 128), 0);
    scans++;
    kt_guest_wait_reports(g, 1000);
    kt_guest_tick(g);
    ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
    uint64_t evicted = vs.zero + vs.shared + vs.patched + vs.compressed;
    if (evicted > most.merges) {
      most = vs;
      most.merges = evicted; /* here: the most pages evicted at once */
    }
    uint64_t b;
    ck_assert_int_eq(dmem_kvm_region_memfd_bytes(&b, r), 0);
    if (b < bytes_min)
      bytes_min = b;
    if (kt_now_ns() - t0 > DEADLINE_S * 1000000000ull) {
      late = 1;
      break;
    }
  }
  kt_guest_join(g);
  double secs = (double)(kt_now_ns() - t0) / 1e9;
  dmem_kvm_stats ks = kt_region_stats(r);
  dmem_stats es = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_engine_stats(&es, e), 0);
  uint64_t exits = 0, ops = 0;
  for (unsigned i = 0; i < nvcpus; i++) {
    exits += kt_guest_result(g, i)->exits;
    ops += kt_guest_result(g, i)->ops;
  }
  printf("guest %u vCPU%s%s%s: %llu ops in %.2f s, %llu scans, %llu KVM exits; faults missing %llu "
         "minor %llu wp %llu waited %llu; service p50 %.0f p99 %.0f max %.0f us; most evicted "
         "%llu (zero %llu shared %llu patched %llu compressed %llu); memfd %llu -> min %llu KiB\n",
         nvcpus, nvcpus > 1 ? "s" : "", log_dirty ? ", dirty log" : "",
         cow ? ", copy-on-write" : "", (unsigned long long)ops, secs, (unsigned long long)scans,
         (unsigned long long)exits, (unsigned long long)ks.faults_missing,
         (unsigned long long)ks.faults_minor, (unsigned long long)ks.faults_wp,
         (unsigned long long)ks.faults_waited, dmem_kvm_stats_percentile_us(&ks, 0.5),
         dmem_kvm_stats_percentile_us(&ks, 0.99), (double)ks.lat_max_ns / 1000,
         (unsigned long long)most.merges, (unsigned long long)most.zero,
         (unsigned long long)most.shared, (unsigned long long)most.patched,
         (unsigned long long)most.compressed, (unsigned long long)bytes0 / 1024,
         (unsigned long long)bytes_min / 1024);
  ck_assert_msg(!late, "the guest did not finish within %u s", DEADLINE_S);
  for (unsigned i = 0; i < nvcpus; i++) {
    const kt_vcpu_result *res = kt_guest_result(g, i);
    ck_assert_msg(res->error[0] == 0, "vCPU %u: %s", i, res->error);
    ck_assert_msg(res->done, "vCPU %u did not finish", i);
    ck_assert_uint_eq(res->ops, cfg.ops);
    ck_assert_uint_eq(res->reports, cfg.ops >> cfg.report_log);
    ck_assert_msg(res->mismatch == 0, "vCPU %u read %u wrong entries", i, res->mismatch);
  }

  /* The engine's view first (no faults), then the guest's memory. */
  uint8_t *copy = malloc((size_t)KT_GUEST_PAGES * PAGE);
  ck_assert_ptr_nonnull(copy);
  for (uint64_t i = 0; i < KT_GUEST_PAGES; i++)
    ck_assert_int_eq(dmem_vm_read(copy + i * PAGE, vm, i), 0);
  char msg[256];
  uint64_t bad = kt_guest_verify(g, copy, msg, sizeof msg);
  ck_assert_msg(bad == 0, "%llu pages wrong where the engine keeps them; first: %s",
                (unsigned long long)bad, msg);
  bad = kt_guest_verify(g, dmem_kvm_region_addr(r), msg, sizeof msg);
  ck_assert_msg(bad == 0, "%llu pages wrong in guest memory; first: %s", (unsigned long long)bad,
                msg);
  free(copy);

  ck_assert_uint_eq(es.errors, 0);
  ck_assert_uint_eq(ks.faults_failed, 0);
  ck_assert_uint_gt(ks.faults_missing, 0);
  ck_assert_uint_gt(ks.lat_count, 0);
  ck_assert_uint_gt(ks.faults_minor, 0);
  ck_assert_uint_gt(ks.faults_wp, 0);
  ck_assert_uint_gt(most.merges, 0);
  ck_assert_uint_lt(bytes_min, bytes0);
  if (cow) {
    printf("  copy-on-write: %llu maps, %llu mapped at the end, %llu fallbacks, VMAs %llu of "
           "%llu\n",
           (unsigned long long)ks.cow_maps, (unsigned long long)ks.cow_mapped,
           (unsigned long long)ks.cow_fallbacks, (unsigned long long)ks.vmas_used,
           (unsigned long long)ks.vma_budget);
    ck_assert_uint_gt(ks.cow_maps, 0);
    ck_assert_uint_le(ks.vmas_used, ks.vma_budget);
  } else {
    ck_assert_uint_eq(ks.cow_maps, 0);
  }

  kt_guest_destroy(g);
  ck_assert_int_eq(dmem_kvm_region_detach(r), 0);
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
}

START_TEST(one_vcpu)
{
  run_guest(1, 0, 0);
}
END_TEST

START_TEST(two_vcpus_dirty_log)
{
  run_guest(2, 1, 0);
}
END_TEST

/* Shared pages the guest reads are mapped copy-on-write under the running
 * vCPUs, written, made private again and evicted again. */
START_TEST(two_vcpus_copy_on_write)
{
  run_guest(2, 0, 1);
}
END_TEST

/* Runs a KT_PROG_TOUCH guest to its end. */
static void run_touch(kt_guest *g)
{
  ck_assert_int_eq(kt_guest_start(g), 0);
  uint64_t t0 = kt_now_ns();
  while (kt_guest_running(g) && kt_now_ns() - t0 < DEADLINE_S * 1000000000ull) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  kt_guest_join(g);
  const kt_vcpu_result *res = kt_guest_result(g, 0);
  ck_assert_msg(res->error[0] == 0, "vCPU: %s", res->error);
  ck_assert(res->done);
}

/* The yardstick: the same guest reading holes that a bare userfaultfd
 * thread fills (no engine). */
static void bare_vcpu_latency(uint64_t *ns)
{
  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = (uint64_t)KT_GUEST_PAGES * PAGE;
  dmem_kvm_region *r;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &ro, NULL, 0), 0);
  kt_guest_config cfg = {.program = KT_PROG_TOUCH, .nvcpus = 1};
  kt_guest *g = NULL;
  char err[256];
  ck_assert_msg(kt_guest_create(&g, r, &cfg, err, sizeof err) == 0, "cannot make the guest: %s",
                err);
  ck_assert_int_eq(kt_guest_punch_data(g), 0);
  kt_bare *b = kt_bare_start(dmem_kvm_region_addr(r), dmem_kvm_region_size(r));
  ck_assert_ptr_nonnull(b);
  run_touch(g);
  kt_bare_stop(b);
  ck_assert_uint_eq(kt_guest_touch_ns(g, ns, KT_DATA_PAGES), KT_DATA_PAGES);
  kt_guest_destroy(g);
  dmem_kvm_region_destroy(r);
}

/* What a vCPU's touch of an evicted (compressed) page costs, end to end as
 * the guest's TSC sees it, next to the fault thread's service time, and to
 * the same touches served by a bare userfaultfd thread in the same run. */
START_TEST(vcpu_fault_latency)
{
  static uint64_t ns[KT_DATA_PAGES], bare[KT_DATA_PAGES];
  bare_vcpu_latency(bare);

  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = (uint64_t)KT_GUEST_PAGES * PAGE;
  dmem_kvm_region *r;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &ro, NULL, 0), 0);
  kt_guest_config cfg = {.program = KT_PROG_TOUCH, .nvcpus = 1};
  kt_guest *g = NULL;
  char err[256];
  ck_assert_msg(kt_guest_create(&g, r, &cfg, err, sizeof err) == 0, "cannot make the guest: %s",
                err);
  dmem_engine *e;
  ck_assert_int_eq(kt_engine(&e, 2, 256), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "touch"), 0);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(dmem_engine_scan(NULL, e, KT_GUEST_PAGES), 0);
  dmem_stats vs = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_ge(vs.compressed, KT_DATA_PAGES);
  dmem_kvm_stats s0, s1;
  memset(&s0, 0, sizeof s0);
  s0.version = s1.version = DMEM_KVM_STATS_VERSION;
  ck_assert_int_eq(dmem_kvm_region_stats(&s0, r), 0);

  run_touch(g);
  ck_assert_int_eq(dmem_kvm_region_stats(&s1, r), 0);
  for (int i = 0; i < 1000 && s1.lat_count - s0.lat_count < KT_DATA_PAGES; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    ck_assert_int_eq(dmem_kvm_region_stats(&s1, r), 0);
  }
  ck_assert_uint_ge(s1.faults_missing - s0.faults_missing, KT_DATA_PAGES);
  for (unsigned b = 0; b < DMEM_KVM_LAT_BUCKETS; b++)
    s1.lat_hist[b] -= s0.lat_hist[b];
  s1.lat_count -= s0.lat_count;
  s1.lat_sum_ns -= s0.lat_sum_ns;

  size_t n = kt_guest_touch_ns(g, ns, KT_DATA_PAGES);
  ck_assert_uint_eq(n, KT_DATA_PAGES);
  printf("vCPU touch of a compressed page: p50 %.1f p99 %.1f us; fault service p50 <= %.0f p99 "
         "<= %.0f us (mean %.1f us, %llu faults); vCPU touch of a hole served by a bare "
         "userfaultfd thread p50 %.1f p99 %.1f us\n",
         kt_quantile_us(ns, n, 0.5), kt_quantile_us(ns, n, 0.99),
         dmem_kvm_stats_percentile_us(&s1, 0.5), dmem_kvm_stats_percentile_us(&s1, 0.99),
         s1.lat_count ? (double)s1.lat_sum_ns / (double)s1.lat_count / 1000 : 0.0,
         (unsigned long long)s1.lat_count, kt_quantile_us(bare, KT_DATA_PAGES, 0.5),
         kt_quantile_us(bare, KT_DATA_PAGES, 0.99));

  char msg[256];
  uint64_t bad = kt_guest_verify(g, dmem_kvm_region_addr(r), msg, sizeof msg);
  ck_assert_msg(bad == 0, "%llu pages wrong; first: %s", (unsigned long long)bad, msg);
  kt_guest_destroy(g);
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
}
END_TEST

/* Whether this host runs our guest at all: a run of a few operations
 * without the engine. Returns 0, or prints why not and returns 77. */
static int guest_runs_here(void)
{
  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = (uint64_t)KT_GUEST_PAGES * PAGE;
  dmem_kvm_region *r;
  if (dmem_kvm_region_create(&r, &ro, NULL, 0) != 0) {
    printf("SKIP: test_kvm_guest: cannot make a region\n");
    return 77;
  }
  kt_guest_config cfg = {.program = KT_PROG_LOOP,
                         .nvcpus = 1,
                         .ops = 1 << 10,
                         .seed = 1,
                         .report_log = 8,
                         .win_log = 8,
                         .win_entries = 64,
                         .win_step = 32,
                         .log_dirty = 0};
  kt_guest *g;
  char err[256];
  int rc = kt_guest_create(&g, r, &cfg, err, sizeof err);
  if (rc == 0) {
    if (kt_guest_start(g) == 0) {
      for (int i = 0; i < 100 && kt_guest_running(g); i++) {
        kt_guest_tick(g);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
      }
    }
    kt_guest_join(g);
    const kt_vcpu_result *res = kt_guest_result(g, 0);
    if (!res->done) {
      snprintf(err, sizeof err, "a trial guest did not finish: %s", res->error);
      rc = 77;
    }
    kt_guest_destroy(g);
  }
  dmem_kvm_region_destroy(r);
  if (rc) {
    printf("SKIP: test_kvm_guest: %s\n", err);
    return 77;
  }
  return 0;
}

int main(void)
{
  kt_skip_unless_supported("test_kvm_guest");
  if (guest_runs_here() != 0)
    return 77;
  Suite *s = suite_create("kvm_guest");
  TCase *tc = tcase_create("guest");
  tcase_set_timeout(tc, DEADLINE_S + 20);
  tcase_add_test(tc, one_vcpu);
  tcase_add_test(tc, two_vcpus_dirty_log);
  tcase_add_test(tc, two_vcpus_copy_on_write);
  tcase_add_test(tc, vcpu_fault_latency);
  suite_add_tcase(s, tc);
  return kt_run_suite(s);
}
