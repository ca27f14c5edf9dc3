/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The failure-injection sweep (lib/failpoint.h). One scenario runs a guest
 * region of the KVM adapter over an engine with every technique and a swap
 * file, under pressure: make the engine and the region (a memfd of its
 * own), make it a KVM memory slot with dirty logging where /dev/kvm opens,
 * attach, scan until pages are shared, patched, compressed and swapped,
 * touch every page from a host thread (real userfaultfd faults), write
 * some, scan again, touch again, detach, destroy.
 *
 * For each failure site, the scenario is run once clean to count the
 * site's calls, then once for each of its calls failing (up to a cap,
 * spread over all of them), and then with every site failing at random.
 * Each run must hold:
 *   - no page lost: every page reads back what was last written, through
 *     the mapping while attached and after detach (or, when attach failed,
 *     the memory is as it was);
 *   - no hang: the touching thread finishes within a deadline;
 *   - every failure visible: an API call that fails says why (errmsg), and
 *     a failure the engine or the adapter absorbs is counted in the
 *     statistics (dmem_stats.errors, dmem_kvm_stats.errors and
 *     faults_failed).
 *
 * The program links the core's and the adapter's objects (the internal
 * convenience libraries), so that it reaches their one failure table. It
 * skips (exit 77) where userfaultfd is missing. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "failpoint.h"
#include "kvm_guest.h"

#define PAGE DMEM_PAGE_SIZE
#define NPAGES 64
#define DEADLINE_S 20
#define MAX_RUNS_PER_SITE 400

/* The run in progress, for the messages: which site fails at which call,
 * or which seed. */
static char run_desc[128] = "a clean run";

/* What one run saw. */
typedef struct outcome {
  int failed_api;         /* an API call returned an error */
  uint64_t errors;        /* engine's errors counter, last read */
  uint64_t faults_fail;   /* region's faults_failed, last read */
  uint64_t region_errors; /* region's errors, last read */
  uint64_t evicted;       /* pages evicted at the peak */
  char what[256];         /* the first failed API call and its message */
} outcome;

typedef struct toucher {
  uint8_t *mem;
  uint8_t *want;
  unsigned gen;
  int done;
  uint64_t bad_gfn; /* first mismatch, or UINT64_MAX */
} toucher;

static void content(uint8_t *page, uint64_t gfn, unsigned gen)
{
  static const enum kt_kind kinds[8] = {KT_ZERO, KT_DUP,  KT_DUP,    KT_SIMILAR,
                                        KT_TEXT, KT_TEXT, KT_RANDOM, KT_SIMILAR};
  kt_fill(page, kinds[gfn % 8], gfn * 131 + gen);
}

/* Reads every page and compares; on gen > 0 writes new content into every
 * third page first. Runs in a thread so that a hang is caught. */
static void *touch_main(void *arg)
{
  toucher *t = arg;
  uint8_t page[PAGE];
  t->bad_gfn = UINT64_MAX;
  for (uint64_t g = 0; g < NPAGES; g++) {
    if (t->gen && g % 3 == 0) {
      content(page, g, t->gen);
      memcpy(t->mem + g * PAGE, page, PAGE);
      memcpy(t->want + g * PAGE, page, PAGE);
    }
    if (memcmp(t->mem + g * PAGE, t->want + g * PAGE, PAGE) != 0 && t->bad_gfn == UINT64_MAX)
      t->bad_gfn = g;
  }
  __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

/* The sites that failed so far in this run, "name×count ...". */
static const char *failed_sites(void)
{
  static char buf[512];
  size_t n = 0;
  buf[0] = 0;
  for (unsigned s = 0; s < DMEM__FP_NSITES && n < sizeof buf; s++)
    if (dmem__fp_failures((dmem__fp_site)s))
      n += (size_t)snprintf(buf + n, sizeof buf - n, " %s x%llu", dmem__fp_name((dmem__fp_site)s),
                            (unsigned long long)dmem__fp_failures((dmem__fp_site)s));
  return buf;
}

/* Touches the region from a host thread; fails the test on a hang or a
 * lost page. */
static void touch(uint8_t *mem, uint8_t *want, unsigned gen, const char *when)
{
  toucher t = {.mem = mem, .want = want, .gen = gen};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, touch_main, &t), 0);
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += DEADLINE_S;
  int rc = pthread_timedjoin_np(th, NULL, &dl);
  ck_assert_msg(rc == 0, "%s, %s: a touch of the guest's memory still waits after %d s", run_desc,
                when, DEADLINE_S);
  if (t.bad_gfn != UINT64_MAX) {
    size_t zero = 0;
    for (size_t i = 0; i < PAGE; i++)
      zero += mem[t.bad_gfn * PAGE + i] == 0;
    ck_abort_msg("%s, %s: page %llu lost its content (%zu zero bytes of %u; failed:%s)", run_desc,
                 when, (unsigned long long)t.bad_gfn, zero, PAGE, failed_sites());
  }
}

static void note_api(outcome *o, int rc, const char *call, const char *msg)
{
  if (rc == 0)
    return;
  ck_assert_msg(rc < 0, "%s returned %d, not a DMEM_E* code", call, rc);
  if (!o->failed_api)
    snprintf(o->what, sizeof o->what, "%s: %s (%s)", call, dmem_strerror(rc), msg ? msg : "");
  o->failed_api = 1;
}

static void read_counters(outcome *o, dmem_engine *e, dmem_kvm_region *r)
{
  dmem_stats s = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_engine_stats(&s, e), 0);
  o->errors = s.errors;
  uint64_t ev = s.zero + s.shared + s.patched + s.compressed + s.swapped;
  if (ev > o->evicted)
    o->evicted = ev;
  dmem_kvm_stats ks = kt_region_stats(r);
  o->faults_fail = ks.faults_failed;
  o->region_errors = ks.errors;
}

/* The engine both tests run: every technique, two passes to C4, one
 * slice a pass, a swap file in swapdir and a store limit of one byte (so
 * patched and compressed pages go on to swap). */
static dmem_engine_options engine_options(const char *swapdir, unsigned npages, uint64_t seed)
{
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.seed = seed;
  eo.c4_passes = 2;
  eo.slice_pages = npages;
  eo.swap_dir = swapdir;
  eo.store_limit_bytes = 1;
  return eo;
}

/* The scenario; returns what it saw, asserting the invariants that hold
 * whatever failed. */
static outcome scenario(void)
{
  outcome o;
  memset(&o, 0, sizeof o);
  char swapdir[] = "/tmp/dmem-fp-swap.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(swapdir));
  uint8_t *want = malloc((size_t)NPAGES * PAGE);
  ck_assert_ptr_nonnull(want);

  dmem_engine_options eo = engine_options(swapdir, NPAGES, 0); /* a random key: getrandom */
  dmem_engine *e = NULL;
  int rc = dmem_engine_create(&e, &eo);
  note_api(&o, rc, "dmem_engine_create", "");
  if (rc)
    goto out_dir;

  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = (uint64_t)NPAGES * PAGE;
  char err[DMEM_ERRBUF_SIZE] = "";
  dmem_kvm_region *r = NULL;
  rc = dmem_kvm_region_create(&r, &ro, err, sizeof err);
  if (rc)
    ck_assert_msg(err[0], "dmem_kvm_region_create failed (%s) without a message",
                  dmem_strerror(rc));
  note_api(&o, rc, "dmem_kvm_region_create", err);
  if (rc)
    goto out_engine;
  uint8_t *mem = dmem_kvm_region_addr(r);
  for (uint64_t g = 0; g < NPAGES; g++) {
    content(want + g * PAGE, g, 0);
    if (g % 8) /* the zero pages stay holes: their touches are zero fills */
      memcpy(mem + g * PAGE, want + g * PAGE, PAGE);
  }

  /* A KVM memory slot with dirty logging, where KVM is here. */
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vmfd = -1;
  if (kvm >= 0)
    vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vmfd >= 0) {
    rc = dmem_kvm_region_set_slot(r, vmfd, 0, 0, 1);
    if (rc)
      ck_assert_msg(dmem_kvm_region_errmsg(r)[0], "set_slot failed without a message");
    note_api(&o, rc, "dmem_kvm_region_set_slot", dmem_kvm_region_errmsg(r));
  }

  dmem_vm *vm = NULL;
  rc = dmem_kvm_region_attach(&vm, e, r, "fp");
  if (rc)
    ck_assert_msg(dmem_kvm_region_errmsg(r)[0] || dmem_engine_errmsg(e)[0],
                  "dmem_kvm_region_attach failed (%s) without a message", dmem_strerror(rc));
  note_api(&o, rc, "dmem_kvm_region_attach", dmem_kvm_region_errmsg(r));
  if (rc) {
    touch(mem, want, 0, "after a failed attach");
    goto out_region;
  }

  /* The engine's own thread, started and stopped (a site of its own). */
  rc = dmem_engine_start(e, 1, NPAGES);
  note_api(&o, rc, "dmem_engine_start", dmem_engine_errmsg(e));
  if (rc == 0) {
    usleep(5000);
    dmem_engine_stop(e);
  }
  for (unsigned pass = 0; pass < 8; pass++) {
    size_t visited = 0;
    rc = dmem_engine_scan(&visited, e, NPAGES);
    note_api(&o, rc, "dmem_engine_scan", dmem_engine_errmsg(e));
    read_counters(&o, e, r);
  }
  touch(mem, want, 0, "first touch");
  touch(mem, want, 1, "writes");
  for (unsigned pass = 0; pass < 6; pass++) {
    size_t visited = 0;
    rc = dmem_engine_scan(&visited, e, NPAGES);
    note_api(&o, rc, "dmem_engine_scan", dmem_engine_errmsg(e));
    read_counters(&o, e, r);
    if (pass == 0) /* resident pages, their mappings dropped for tracking: minor faults */
      touch(mem, want, 0, "touch between passes");
  }
  touch(mem, want, 0, "second touch");
  read_counters(&o, e, r);

  /* Detach puts every page back; a failed detach may be retried. */
  rc = dmem_kvm_region_detach(r);
  if (rc) {
    ck_assert_msg(dmem_engine_errmsg(e)[0] || dmem_kvm_region_errmsg(r)[0],
                  "dmem_kvm_region_detach failed (%s) without a message", dmem_strerror(rc));
    note_api(&o, rc, "dmem_kvm_region_detach", dmem_engine_errmsg(e));
    /* Once the system calls work again, that is (random failures could
     * fail every retry on one call or another). */
    dmem__fp_disarm();
    rc = dmem_kvm_region_detach(r);
    ck_assert_msg(rc == 0, "%s: detach still fails when retried: %s (%s; %s; first: %s; failed:%s)",
                  run_desc, dmem_strerror(rc), dmem_engine_errmsg(e), dmem_kvm_region_errmsg(r),
                  o.what, failed_sites());
  }
  read_counters(&o, e, r);
  touch(mem, want, 0, "after detach");

out_region:
  dmem_kvm_region_destroy(r);
  if (vmfd >= 0)
    close(vmfd);
  if (kvm >= 0)
    close(kvm);
out_engine:
  dmem_engine_destroy(e);
out_dir:
  ck_assert_int_eq(rmdir(swapdir), 0); /* the swap file was never named */
  free(want);
  return o;
}

static void check_visible(dmem__fp_site s, const outcome *o, uint64_t n)
{
  if (!dmem__fp_failures(s))
    return;
  ck_assert_msg(o->failed_api || o->errors || o->faults_fail || o->region_errors,
                "site %s, call %llu failed, and nothing says so (no API error, errors 0, "
                "faults_failed 0, the region's errors 0)",
                dmem__fp_name(s), (unsigned long long)n);
}

/* ------------------------------------------------------------------ tests */

START_TEST(clean_run_reclaims)
{
  dmem__fp_reset();
  outcome o = scenario();
  ck_assert_msg(!o.failed_api, "a clean run failed: %s", o.what);
  ck_assert_uint_eq(o.errors, 0);
  ck_assert_uint_eq(o.faults_fail, 0);
  ck_assert_uint_eq(o.region_errors, 0);
  ck_assert_uint_gt(o.evicted, NPAGES / 2);
  /* The scenario reaches every site the sweep is about (KVM's where
   * /dev/kvm is open). */
  for (unsigned s = 0; s < DMEM__FP_NSITES; s++) {
    if (s == DMEM__FP_KVM_IOCTL && access("/dev/kvm", R_OK | W_OK) != 0)
      continue;
    printf("site %-18s %6llu calls\n", dmem__fp_name(s),
           (unsigned long long)dmem__fp_calls((dmem__fp_site)s));
    ck_assert_msg(dmem__fp_calls((dmem__fp_site)s) > 0, "the scenario never reaches site %s",
                  dmem__fp_name(s));
  }
}
END_TEST

/* Each call of site _i fails in turn (up to MAX_RUNS_PER_SITE of them,
 * spread over all its calls, the first and the last among them). */
START_TEST(sweep_site)
{
  dmem__fp_site s = (dmem__fp_site)_i;
  dmem__fp_reset();
  (void)scenario();
  uint64_t calls = dmem__fp_calls(s);
  if (calls == 0)
    return; /* not reached here (clean_run_reclaims says which may not be) */
  uint64_t runs = calls < MAX_RUNS_PER_SITE ? calls : MAX_RUNS_PER_SITE;
  for (uint64_t k = 0; k < runs; k++) {
    uint64_t n = runs == calls ? k + 1 : 1 + k * (calls - 1) / (runs - 1);
    dmem__fp_reset();
    snprintf(run_desc, sizeof run_desc, "site %s failing at call %llu", dmem__fp_name(s),
             (unsigned long long)n);
    dmem__fp_arm(s, n, 0, 0, 0);
    outcome o = scenario();
    check_visible(s, &o, n);
  }
}
END_TEST

/* Every site fails now and then, with several seeds. */
START_TEST(random_failures)
{
  for (uint64_t seed = 1; seed <= 100; seed++) {
    dmem__fp_reset();
    snprintf(run_desc, sizeof run_desc, "every site failing 2%% of calls, seed %llu",
             (unsigned long long)seed);
    for (unsigned s = 0; s < DMEM__FP_NSITES; s++)
      dmem__fp_arm((dmem__fp_site)s, 0, 20000, seed * 7919 + s, 0); /* 2% */
    outcome o = scenario();
    uint64_t failed = 0;
    for (unsigned s = 0; s < DMEM__FP_NSITES; s++)
      failed += dmem__fp_failures((dmem__fp_site)s);
    ck_assert_msg(!failed || o.failed_api || o.errors || o.faults_fail || o.region_errors,
                  "seed %llu: %llu calls failed, and nothing says so", (unsigned long long)seed,
                  (unsigned long long)failed);
  }
}
END_TEST

/* The injected errno reaches the message: a swap file on a full disk. */
START_TEST(swap_write_failure_is_counted)
{
  dmem__fp_reset();
  dmem__fp_arm(DMEM__FP_SWAP_WRITE, 0, 1000000, 0, ENOSPC); /* every write */
  outcome o = scenario();
  ck_assert_uint_gt(dmem__fp_failures(DMEM__FP_SWAP_WRITE), 0);
  ck_assert_uint_ge(o.errors, dmem__fp_failures(DMEM__FP_SWAP_WRITE));
}
END_TEST

/* A swap file truncated behind the engine (through
 * dmem_engine_store_fds()): what it held is gone, and the engine says so,
 * page by page; every other page comes back. */
START_TEST(truncated_swap_file_is_reported)
{
  enum { N = 32 };
  dmem__fp_reset();
  char swapdir[] = "/tmp/dmem-fp-swap.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(swapdir));
  dmem_engine_options eo = engine_options(swapdir, N, 7);
  dmem_engine *e = NULL;
  ck_assert_int_eq(dmem_engine_create(&e, &eo), 0);
  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = (uint64_t)N * PAGE;
  dmem_kvm_region *r = NULL;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &ro, NULL, 0), 0);
  uint8_t *mem = dmem_kvm_region_addr(r);
  uint8_t *want = malloc((size_t)N * PAGE);
  ck_assert_ptr_nonnull(want);
  for (uint64_t g = 0; g < N; g++) {
    kt_fill(want + g * PAGE, g % 2 ? KT_RANDOM : KT_TEXT, g);
    memcpy(mem + g * PAGE, want + g * PAGE, PAGE);
  }
  dmem_vm *vm = NULL;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "trunc"), 0);
  dmem_stats st = DMEM_STATS_INIT;
  for (int pass = 0; pass < 20; pass++) {
    size_t visited;
    ck_assert_int_eq(dmem_engine_scan(&visited, e, N), 0);
    ck_assert_int_eq(dmem_engine_stats(&st, e), 0);
    if (st.swapped >= N / 4)
      break;
  }
  ck_assert_uint_ge(st.swapped, N / 4);
  uint64_t errors0 = st.errors;
  int blobs_fd = -1, swap_fd = -1;
  ck_assert_int_eq(dmem_engine_store_fds(e, &blobs_fd, &swap_fd), 0);
  ck_assert_int_ge(swap_fd, 0);
  ck_assert_int_eq(ftruncate(swap_fd, 0), 0);

  int lost[N];
  uint64_t nlost = 0;
  uint8_t page[PAGE];
  for (uint64_t g = 0; g < N; g++) {
    dmem_page_kind k;
    dmem_page_state s;
    ck_assert_int_eq(dmem_vm_page(&k, &s, vm, g), 0);
    lost[g] = k == DMEM_PAGE_SWAPPED;
    nlost += (uint64_t)lost[g];
    if (lost[g])
      ck_assert_int_eq(dmem_vm_read(page, vm, g), DMEM_ECORRUPT);
  }
  int rc = dmem_kvm_region_detach(r);
  ck_assert_int_eq(rc, DMEM_ECORRUPT);
  ck_assert_msg(strstr(dmem_engine_errmsg(e), "page") != NULL, "detach says only '%s'",
                dmem_engine_errmsg(e));
  ck_assert_int_eq(dmem_engine_stats(&st, e), 0);
  ck_assert_uint_gt(st.errors, errors0);
  ck_assert_uint_eq(st.swapped, nlost); /* kept where they were, for the record */
  /* Every other page is back in the memfd. */
  for (uint64_t g = 0; g < N; g++) {
    dmem_page_kind k;
    dmem_page_state s;
    ck_assert_int_eq(dmem_vm_page(&k, &s, vm, g), 0);
    if (lost[g])
      continue;
    ck_assert_int_eq(k, DMEM_PAGE_RESIDENT);
    ck_assert_int_eq(pread(dmem_kvm_region_fd(r), page, PAGE, (off_t)(g * PAGE)), PAGE);
    ck_assert_msg(memcmp(page, want + g * PAGE, PAGE) == 0, "page %llu changed",
                  (unsigned long long)g);
  }
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
  ck_assert_int_eq(rmdir(swapdir), 0);
  free(want);
}
END_TEST

static Suite *failpoint_suite(void)
{
  Suite *s = suite_create("failpoints");
  TCase *tc = tcase_create("sweep");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, clean_run_reclaims);
  tcase_add_test(tc, swap_write_failure_is_counted);
  tcase_add_test(tc, truncated_swap_file_is_reported);
  tcase_add_loop_test(tc, sweep_site, 0, DMEM__FP_NSITES);
  tcase_add_test(tc, random_failures);
  suite_add_tcase(s, tc);
  return s;
}

int main(void)
{
  kt_skip_unless_supported("test_failpoints");
  return kt_run_suite(failpoint_suite());
}
