/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The KVM adapter's region (diffmem/kvm.h) against the real kernel: a memfd
 * registered with userfaultfd, host threads touching it (their page faults
 * are real userfaultfd faults served by the adapter's thread) while the
 * engine scans. Needs /dev/kvm and userfaultfd like the adapter does: the
 * program skips (exit 77) with a message where they are missing. It has
 * its own main() for that reason instead of tests/runner.c. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "kvm_guest.h"
#include "testutil.h"
#include "uffd.h" /* the adapter's, compiled in (Makefile.am) */

#define PAGE DMEM_PAGE_SIZE

static uint64_t env_u64(const char *name, uint64_t dflt)
{
  const char *v = getenv(name);
  return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static dmem_kvm_region *make_region(uint64_t npages)
{
  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  o.size = npages * PAGE;
  dmem_kvm_region *r = NULL;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), 0);
  return r;
}

static uint64_t memfd_bytes(dmem_kvm_region *r)
{
  uint64_t b = 0;
  ck_assert_int_eq(dmem_kvm_region_memfd_bytes(&b, r), 0);
  return b;
}

static dmem_kvm_stats region_stats(dmem_kvm_region *r)
{
  dmem_kvm_stats s;
  memset(&s, 0, sizeof s);
  s.version = DMEM_KVM_STATS_VERSION;
  ck_assert_int_eq(dmem_kvm_region_stats(&s, r), 0);
  return s;
}

/* Scans whole passes. */
static void scan_passes(dmem_engine *e, uint64_t npages, unsigned passes)
{
  for (unsigned i = 0; i < passes; i++) {
    size_t visited = 0;
    ck_assert_int_eq(dmem_engine_scan(&visited, e, npages), 0);
    ck_assert_uint_eq(visited, npages);
  }
}

/* ---------------------------------------------------------------- options */

START_TEST(options_checked)
{
  dmem_kvm_region *r = NULL;
  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), DMEM_EINVAL); /* size 0 */
  o.size = PAGE + 1;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), DMEM_EINVAL);
  o.size = PAGE;
  o.version = 99;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), DMEM_EVERSION);
  o.version = DMEM_KVM_REGION_OPTIONS_VERSION;
  dmem_kvm_caps caps = DMEM_KVM_CAPS_INIT;
  caps.version = 0; /* a caller that does not say which it knows */
  caps.kvm_api_version = 77;
  ck_assert_int_eq(dmem_kvm_probe(&caps), DMEM_EVERSION);
  ck_assert_int_eq(caps.kvm_api_version, 77);
  caps.version = DMEM_KVM_CAPS_VERSION;
  ck_assert_int_eq(dmem_kvm_probe(&caps), 0);
  ck_assert_uint_eq(caps.version, DMEM_KVM_CAPS_VERSION);
  ck_assert_int_gt(caps.kvm_api_version, 0);
  o.addr = &o; /* a mapping without its fd */
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), DMEM_EINVAL);
  o.addr = NULL;
  o.track = 0x80;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), DMEM_EINVAL);
  o.track = 0;
  ck_assert_int_eq(dmem_kvm_region_create(NULL, &o, NULL, 0), DMEM_EINVAL);
  ck_assert_int_eq(dmem_kvm_region_create(&r, NULL, NULL, 0), DMEM_EINVAL);

  /* A file that is not shared memory, and a memfd that is too short. */
  int pipefd[2];
  ck_assert_int_eq(pipe(pipefd), 0);
  o.fd = pipefd[0];
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), DMEM_EINVAL);
  close(pipefd[0]);
  close(pipefd[1]);
  int mfd = memfd_create("short", MFD_CLOEXEC);
  ck_assert_int_ge(mfd, 0);
  ck_assert_int_eq(ftruncate(mfd, PAGE), 0);
  o.fd = mfd;
  o.size = 2 * PAGE;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), DMEM_EINVAL);
  o.fd_offset = 100;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), DMEM_EINVAL);
  close(mfd);

  dmem_kvm_region_destroy(NULL);
  ck_assert_int_eq(dmem_kvm_region_detach(NULL), DMEM_EINVAL);
  ck_assert_ptr_null(dmem_kvm_region_addr(NULL));

  r = make_region(4);
  dmem_kvm_stats s;
  s.version = 0;
  ck_assert_int_eq(dmem_kvm_region_stats(&s, r), DMEM_EVERSION);
  ck_assert_int_eq(dmem_kvm_region_set_slot(r, 0, 0, 123, 0), DMEM_EINVAL);
  ck_assert_int_eq(dmem_kvm_region_attach(NULL, NULL, r, NULL), DMEM_EINVAL);
  ck_assert_uint_eq(dmem_kvm_region_npages(r), 4);
  ck_assert_uint_eq(dmem_kvm_region_size(r), 4 * PAGE);
  ck_assert_ptr_null(dmem_kvm_region_vm(r));
  ck_assert_uint_eq(dmem_kvm_region_track(r), 0);
  dmem_kvm_region_destroy(r);

  /* The histogram's buckets and percentiles. */
  for (unsigned b = 0; b < DMEM_KVM_LAT_BUCKETS; b++)
    ck_assert_uint_lt(dmem_kvm_lat_bucket_us(b), dmem_kvm_lat_bucket_us(b + 1));
  ck_assert_uint_eq(dmem_kvm_lat_bucket_us(4), 4);
  ck_assert_uint_eq(dmem_kvm_lat_bucket_us(8), 8);
  ck_assert_uint_eq(dmem_kvm_lat_bucket_us(10), 12);
  memset(&s, 0, sizeof s);
  ck_assert(dmem_kvm_stats_percentile_us(&s, 0.5) == 0);
  s.lat_hist[10] = 99; /* [12, 14) µs */
  s.lat_hist[20] = 1;
  s.lat_count = 100;
  ck_assert(dmem_kvm_stats_percentile_us(&s, 0.5) == 14);
  ck_assert(dmem_kvm_stats_percentile_us(&s, 1.0) == (double)dmem_kvm_lat_bucket_us(21));
}
END_TEST

START_TEST(allocation_failures)
{
  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  o.size = 16 * PAGE;
  test_alloc ta;
  for (long n = 1;; n++) {
    test_alloc_init(&ta);
    ta.fail_at = n;
    o.allocator = &ta.hook;
    dmem_kvm_region *r = NULL;
    int rc = dmem_kvm_region_create(&r, &o, NULL, 0);
    if (rc == 0) {
      ck_assert_int_eq(dmem_kvm_region_set_slot(r, -1, 0, 0, 0), 0);
      dmem_kvm_region_destroy(r);
      ck_assert_int_eq(ta.live_bytes, 0);
      ck_assert_int_ge(n, 3); /* the region and its page table */
      break;
    }
    ck_assert_int_eq(rc, DMEM_ENOMEM);
    ck_assert_int_eq(ta.live_bytes, 0);
  }
}
END_TEST

/* ------------------------------------------------------- fresh memory */

START_TEST(fresh_region_fills_and_reclaims)
{
  enum { N = 256 };
  dmem_kvm_region *r = make_region(N);
  uint8_t *m = dmem_kvm_region_addr(r);
  ck_assert_uint_eq(memfd_bytes(r), 0); /* a fresh memfd holds nothing */
  static uint8_t want[N][PAGE];
  memset(want, 0, sizeof want);
  for (unsigned i = 0; i < N; i += 4) { /* a quarter written, the rest never */
    kt_fill(want[i], KT_TEXT, i);
    memcpy(m + (size_t)i * PAGE, want[i], PAGE);
  }
  ck_assert_uint_eq(memfd_bytes(r), N / 4 * PAGE);

  dmem_engine *e;
  ck_assert_int_eq(kt_engine(&e, 2, 64), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "fresh"), 0);
  ck_assert_ptr_eq(dmem_kvm_region_vm(r), vm);
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "again"), DMEM_EBUSY);
  ck_assert_uint_ne(dmem_kvm_region_track(r), 0);

  /* A never-written page reads as zeros, through a MISSING fault. */
  ck_assert_uint_eq(m[1 * PAGE + 17], 0);
  dmem_kvm_stats s = region_stats(r);
  ck_assert_uint_ge(s.faults_missing, 1);
  ck_assert_uint_ge(s.zero_fills, 1);

  /* The touch filled the rest of its run of 16 pages too (fault-around):
   * 12 holes, page 1 among them (pages 0, 4, 8 and 12 hold text). */
  ck_assert_uint_eq(memfd_bytes(r), (N / 4 + 12) * PAGE);

  /* Three passes: zero pages go first, the text pages when cold (C4). The
   * holes hold nothing (DMEM_BIT_ABSENT): they are neither read nor
   * evicted, and stay resident for the engine. */
  scan_passes(e, N, 3);
  dmem_stats vs = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_eq(vs.zero, 12);
  ck_assert_uint_eq(vs.compressed, N / 4);
  ck_assert_uint_eq(vs.resident, N - N / 4 - 12);
  ck_assert_uint_eq(vs.errors, 0);
  ck_assert_uint_eq(memfd_bytes(r), 0);

  /* Every page comes back on touch, with its content. */
  for (unsigned i = 0; i < N; i++)
    ck_assert_mem_eq(m + (size_t)i * PAGE, want[i], PAGE);
  s = region_stats(r);
  ck_assert_uint_ge(s.lat_count, N / 4);
  ck_assert_uint_ge(s.installs, N / 4 + 12); /* the evicted ones; the holes are filled */
  ck_assert_uint_eq(memfd_bytes(r), (uint64_t)N * PAGE);

  /* Reclaim again, then detach: the engine's pages come back. */
  scan_passes(e, N, 4);
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_gt(vs.zero + vs.compressed, N / 2);
  ck_assert_int_eq(dmem_kvm_region_detach(r), 0);
  ck_assert_ptr_null(dmem_kvm_region_vm(r));
  ck_assert_uint_eq(memfd_bytes(r), (uint64_t)N * PAGE);
  for (unsigned i = 0; i < N; i++)
    ck_assert_mem_eq(m + (size_t)i * PAGE, want[i], PAGE);

  /* And it can attach again, to another engine. */
  dmem_engine *e2;
  ck_assert_int_eq(kt_engine(&e2, 2, 64), 0);
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e2, r, "fresh2"), 0);
  scan_passes(e2, N, 3);
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_eq(vs.zero + vs.compressed, N);
  for (unsigned i = 0; i < N; i++)
    ck_assert_mem_eq(m + (size_t)i * PAGE, want[i], PAGE);
  dmem_kvm_region_destroy(r); /* detaches */
  dmem_engine_destroy(e2);
  dmem_engine_destroy(e);
}
END_TEST

/* A VMM's own memfd and mapping: the region uses part of them. */
START_TEST(caller_memfd_and_mapping)
{
  enum { TOTAL = 128, OFF = 32, N = 64 };
  int mfd = memfd_create("vmm-ram", MFD_CLOEXEC);
  ck_assert_int_ge(mfd, 0);
  ck_assert_int_eq(ftruncate(mfd, TOTAL * PAGE), 0);
  uint8_t *map = mmap(NULL, N * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, OFF * PAGE);
  ck_assert_ptr_ne(map, MAP_FAILED);
  static uint8_t want[N][PAGE];
  for (unsigned i = 0; i < N; i++) {
    kt_fill(want[i], i % 2 ? KT_DUP : KT_TEXT, i);
    memcpy(map + (size_t)i * PAGE, want[i], PAGE);
  }
  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  o.size = N * PAGE;
  o.fd = mfd;
  o.fd_offset = OFF * PAGE;
  o.addr = map;
  dmem_kvm_region *r;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), 0);
  ck_assert_ptr_eq(dmem_kvm_region_addr(r), map);
  ck_assert_int_eq(dmem_kvm_region_fd(r), mfd);
  dmem_engine *e;
  ck_assert_int_eq(kt_engine(&e, 2, 64), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "vmm"), 0);
  scan_passes(e, N, 3);
  dmem_stats vs = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_eq(vs.shared, N / 2);
  ck_assert_uint_eq(vs.compressed, N / 2);
  ck_assert_uint_eq(memfd_bytes(r), 0);
  for (unsigned i = 0; i < N; i++) {
    uint8_t buf[PAGE];
    ck_assert_int_eq(dmem_vm_read(buf, vm, i), 0);
    ck_assert_mem_eq(buf, want[i], PAGE);
    ck_assert_mem_eq(map + (size_t)i * PAGE, want[i], PAGE);
  }
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
  /* The caller's fd and mapping are still theirs. */
  ck_assert_mem_eq(map, want[0], PAGE);
  ck_assert_int_eq(munmap(map, N * PAGE), 0);
  ck_assert_int_eq(close(mfd), 0);
}
END_TEST

/* ---------------------------------------------------------------- bits */

/* Referenced and modified bits through MINOR and WP faults, as the
 * engine's clock states show them. Random pages: never reclaimed. */
START_TEST(tracking_bits)
{
  enum { N = 64 };
  dmem_kvm_region *r = make_region(N);
  volatile uint8_t *m = dmem_kvm_region_addr(r);
  for (unsigned i = 0; i < N; i++)
    kt_fill((uint8_t *)m + (size_t)i * PAGE, KT_RANDOM, i);
  dmem_engine *e;
  ck_assert_int_eq(kt_engine(&e, 2, N), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "bits"), 0);
  ck_assert_uint_eq(dmem_kvm_region_track(r), DMEM_KVM_TRACK_MINOR | DMEM_KVM_TRACK_WP);
  scan_passes(e, N, 1); /* nothing touched since attach: all C3 */
  dmem_page_state st;
  for (unsigned i = 0; i < N; i++) {
    ck_assert_int_eq(dmem_vm_page(NULL, &st, vm, i), 0);
    ck_assert_int_eq(st, DMEM_C3);
  }
  dmem_kvm_stats s0 = region_stats(r);
  m[1 * PAGE] = 0x5a;    /* write first (a store, no load): MINOR (write) */
  (void)m[2 * PAGE + 5]; /* read: MINOR */
  (void)m[4 * PAGE + 5]; /* read then write: MINOR, then WP */
  m[4 * PAGE + 9] ^= 1;
  dmem_kvm_stats s1 = region_stats(r);
  ck_assert_uint_eq(s1.faults_minor - s0.faults_minor, 3);
  ck_assert_uint_eq(s1.faults_wp - s0.faults_wp, 1);
  scan_passes(e, N, 1);
  dmem_page_kind kind;
  ck_assert_int_eq(dmem_vm_page(&kind, &st, vm, 1), 0);
  ck_assert_int_eq(st, DMEM_C1);
  ck_assert_int_eq(kind, DMEM_PAGE_RESIDENT);
  ck_assert_int_eq(dmem_vm_page(NULL, &st, vm, 2), 0);
  ck_assert_int_eq(st, DMEM_C2);
  ck_assert_int_eq(dmem_vm_page(NULL, &st, vm, 3), 0);
  ck_assert_int_eq(st, DMEM_C4);
  ck_assert_int_eq(dmem_vm_page(NULL, &st, vm, 4), 0);
  ck_assert_int_eq(st, DMEM_C1);

  /* Untouched since: the bits were cleared by the last read. */
  scan_passes(e, N, 1);
  ck_assert_int_eq(dmem_vm_page(NULL, &st, vm, 1), 0);
  ck_assert_int_eq(st, DMEM_C3);
  ck_assert_int_eq(dmem_vm_page(NULL, &st, vm, 2), 0);
  ck_assert_int_eq(st, DMEM_C3);
  ck_assert_int_eq(dmem_kvm_region_detach(r), 0);
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
}
END_TEST

/* With one tracking mode only: MINOR alone reports writes as references
 * (so idle pages still go cold), WP alone reports every page referenced
 * (so pages stay C2: only zero and identical pages are reclaimed). */
static void degraded(unsigned track)
{
  enum { N = 48 };
  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  o.size = N * PAGE;
  o.track = track;
  dmem_kvm_region *r;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), 0);
  uint8_t *m = dmem_kvm_region_addr(r);
  static const enum kt_kind kinds[3] = {KT_ZERO, KT_DUP, KT_TEXT};
  for (unsigned i = 0; i < N; i++)
    kt_fill(m + (size_t)i * PAGE, kinds[i % 3], i);
  dmem_engine *e;
  ck_assert_int_eq(kt_engine(&e, 2, N), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "degraded"), 0);
  ck_assert_uint_eq(dmem_kvm_region_track(r), track);
  scan_passes(e, N, 3);
  dmem_stats vs = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_eq(vs.zero, N / 3);
  ck_assert_uint_eq(vs.shared, N / 3);
  ck_assert_uint_eq(vs.compressed, track == DMEM_KVM_TRACK_MINOR ? N / 3 : 0);
  ck_assert_uint_eq(vs.errors, 0);
  for (unsigned i = 0; i < N; i++) {
    uint8_t want[PAGE];
    kt_fill(want, kinds[i % 3], i);
    ck_assert_mem_eq(m + (size_t)i * PAGE, want, PAGE);
  }
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_eq(vs.resident, N);
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
}

START_TEST(minor_tracking_only)
{
  degraded(DMEM_KVM_TRACK_MINOR);
}
END_TEST

START_TEST(wp_tracking_only)
{
  degraded(DMEM_KVM_TRACK_WP);
}
END_TEST

/* ---------------------------------------------------------------- stress */

enum { SN = 1024, SHALF = SN / 2, SWIN = 64 };

typedef struct stress {
  uint8_t *mem, *shadow;
  unsigned id;
  int stop;
  uint64_t reads, writes, checks, bad;
  char msg[160];
} stress;

static void *stress_thread(void *arg)
{
  stress *t = arg;
  uint64_t s = 0xabcdef + t->id, t0 = kt_now_ns();
  uint64_t first = (uint64_t)t->id * SHALF;
  while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
    /* A hot window of SWIN pages that moves on every 20 ms. */
    uint64_t phase = (kt_now_ns() - t0) / 20000000u;
    uint64_t r = kt_rand(&s);
    uint64_t gfn = first + (phase * 8 + r % SWIN) % SHALF;
    size_t off = (size_t)(r >> 32) % (PAGE / 8) * 8;
    uint8_t *mp = t->mem + gfn * PAGE, *sp = t->shadow + gfn * PAGE;
    unsigned op = (unsigned)(r >> 20) % 16;
    if (op < 8) {
      uint64_t a, b;
      memcpy(&a, (const void *)(volatile uint8_t *)(mp + off), 8);
      memcpy(&b, sp + off, 8);
      t->reads++;
      if (a != b && t->bad++ == 0)
        snprintf(t->msg, sizeof t->msg, "gfn %llu offset %zu reads %#llx, expected %#llx",
                 (unsigned long long)gfn, off, (unsigned long long)a, (unsigned long long)b);
    } else if (op < 15) {
      uint64_t v = (r >> 8) & 0xff; /* small values keep pages compressible */
      memcpy(sp + off, &v, 8);
      *(volatile uint64_t *)(mp + off) = v;
      t->writes++;
    } else {
      t->checks++;
      if (memcmp(mp, sp, PAGE) != 0 && t->bad++ == 0)
        snprintf(t->msg, sizeof t->msg, "gfn %llu differs from its shadow",
                 (unsigned long long)gfn);
    }
  }
  return NULL;
}

static enum kt_kind stress_kind(uint64_t gfn)
{
  static const enum kt_kind k[8] = {KT_ZERO, KT_DUP,  KT_DUP,    KT_SIMILAR,
                                    KT_TEXT, KT_TEXT, KT_RANDOM, KT_SIMILAR};
  return k[gfn % 8];
}

START_TEST(host_threads_fault_while_scanning)
{
  dmem_kvm_region *r = make_region(SN);
  uint8_t *m = dmem_kvm_region_addr(r);
  uint8_t *shadow = malloc((size_t)SN * PAGE);
  ck_assert_ptr_nonnull(shadow);
  for (uint64_t i = 0; i < SN; i++) {
    kt_fill(shadow + i * PAGE, stress_kind(i), i);
    memcpy(m + i * PAGE, shadow + i * PAGE, PAGE);
  }
  uint64_t bytes0 = memfd_bytes(r), bytes_min = bytes0;
  dmem_engine *e;
  ck_assert_int_eq(kt_engine(&e, 2, 128), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "stress"), 0);

  stress t[2];
  pthread_t th[2];
  for (unsigned i = 0; i < 2; i++) {
    memset(&t[i], 0, sizeof t[i]);
    t[i].mem = m;
    t[i].shadow = shadow;
    t[i].id = i;
    ck_assert_int_eq(pthread_create(&th[i], NULL, stress_thread, &t[i]), 0);
  }
  uint64_t ms = env_u64("DMEM_KVM_STRESS_MS", 3000);
  uint64_t end = kt_now_ns() + ms * 1000000u, scans = 0;
  dmem_stats vs = DMEM_STATS_INIT, most = DMEM_STATS_INIT;
  memset(&most, 0, sizeof most);
  while (kt_now_ns() < end) {
    ck_assert_int_eq(dmem_engine_scan(NULL, e, 128), 0);
    scans++;
    ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
    if (vs.zero > most.zero)
      most.zero = vs.zero;
    if (vs.shared > most.shared)
      most.shared = vs.shared;
    if (vs.patched > most.patched)
      most.patched = vs.patched;
    if (vs.compressed > most.compressed)
      most.compressed = vs.compressed;
    uint64_t b = memfd_bytes(r);
    if (b < bytes_min)
      bytes_min = b;
  }
  for (unsigned i = 0; i < 2; i++) {
    __atomic_store_n(&t[i].stop, 1, __ATOMIC_RELEASE);
    pthread_join(th[i], NULL);
  }
  dmem_kvm_stats ks = region_stats(r);
  dmem_stats es = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_engine_stats(&es, e), 0);
  printf("stress: %llu scans; threads %llu+%llu reads, %llu+%llu writes; most evicted: zero %llu "
         "shared %llu patched %llu compressed %llu; memfd %llu -> min %llu KiB\n",
         (unsigned long long)scans, (unsigned long long)t[0].reads, (unsigned long long)t[1].reads,
         (unsigned long long)t[0].writes, (unsigned long long)t[1].writes,
         (unsigned long long)most.zero, (unsigned long long)most.shared,
         (unsigned long long)most.patched, (unsigned long long)most.compressed,
         (unsigned long long)bytes0 / 1024, (unsigned long long)bytes_min / 1024);
  printf("stress: faults missing %llu minor %llu wp %llu waited %llu spurious %llu failed %llu; "
         "engine faults %llu errors %llu; service p50 %.0f p99 %.0f max %.0f us\n",
         (unsigned long long)ks.faults_missing, (unsigned long long)ks.faults_minor,
         (unsigned long long)ks.faults_wp, (unsigned long long)ks.faults_waited,
         (unsigned long long)ks.faults_spurious, (unsigned long long)ks.faults_failed,
         (unsigned long long)es.faults, (unsigned long long)es.errors,
         dmem_kvm_stats_percentile_us(&ks, 0.5), dmem_kvm_stats_percentile_us(&ks, 0.99),
         (double)ks.lat_max_ns / 1000);
  for (unsigned i = 0; i < 2; i++)
    ck_assert_msg(t[i].bad == 0, "thread %u: %llu bad reads, first: %s", i,
                  (unsigned long long)t[i].bad, t[i].msg);

  /* Where the engine keeps it, and then through the mapping. */
  uint8_t buf[PAGE];
  for (uint64_t i = 0; i < SN; i++) {
    ck_assert_int_eq(dmem_vm_read(buf, vm, i), 0);
    ck_assert_msg(memcmp(buf, shadow + i * PAGE, PAGE) == 0, "engine's copy of gfn %llu",
                  (unsigned long long)i);
  }
  for (uint64_t i = 0; i < SN; i++)
    ck_assert_msg(memcmp(m + i * PAGE, shadow + i * PAGE, PAGE) == 0, "gfn %llu",
                  (unsigned long long)i);
  ck_assert_uint_eq(es.errors, 0);
  ck_assert_uint_eq(ks.faults_failed, 0);
  ck_assert_uint_gt(most.zero, 0);
  ck_assert_uint_gt(most.shared, 0);
  ck_assert_uint_gt(most.patched, 0);
  ck_assert_uint_gt(most.compressed, 0);
  ck_assert_uint_lt(bytes_min, bytes0 * 3 / 4);
  ck_assert_uint_gt(ks.faults_missing, 0);
  ck_assert_uint_gt(ks.lat_count, 0);
  ck_assert_uint_gt(ks.faults_minor, 0);
  ck_assert_uint_gt(ks.faults_wp, 0);
  ck_assert_uint_gt(es.faults, 0);

  ck_assert_int_eq(dmem_kvm_region_detach(r), 0);
  for (uint64_t i = 0; i < SN; i++)
    ck_assert_msg(memcmp(m + i * PAGE, shadow + i * PAGE, PAGE) == 0, "gfn %llu after detach",
                  (unsigned long long)i);
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
  free(shadow);
}
END_TEST

/* ---------------------------------------------------------------- unregister */

typedef struct writer {
  uint8_t *mem;
  uint64_t npages;
  int stop;
  uint64_t writes; /* atomic */
} writer;

static void *writer_thread(void *arg)
{
  writer *w = arg;
  for (uint64_t i = 0; !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); i++) {
    *(volatile uint64_t *)(w->mem + (i % w->npages) * PAGE) = i;
    __atomic_store_n(&w->writes, i + 1, __ATOMIC_RELEASE);
  }
  return NULL;
}

/* Every thread waiting on a range is let go when the range is
 * unregistered (dmem__uffd_unregister(), which region detach, the
 * daemon's client and its keeper rely on). UFFDIO_UNREGISTER alone does
 * not do it: it wakes nobody where the range is registered for WP alone (a
 * frame the client's agent mapped), and elsewhere it wakes before it
 * changes the mapping, so a woken thread may fault again in between and
 * sleep for good (Linux 6.18: 2 times in 23,000 unregisters;
 * tests/daemon.sh hung on it in CI). A writer goes round a memfd's pages,
 * which are registered and write-protected over and over with nobody
 * serving the faults, so it is nearly always waiting when they are
 * unregistered, in WP mode alone every other time; after every unregister
 * it must move on. */
START_TEST(unregister_wakes_every_waiter)
{
  enum { N = 64 };
  int fd = memfd_create("unregister", MFD_CLOEXEC);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(ftruncate(fd, N * PAGE), 0);
  uint8_t *m = mmap(NULL, N * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ck_assert_ptr_ne(m, MAP_FAILED);
  memset(m, 1, N * PAGE);
  char err[DMEM_ERRBUF_SIZE];
  int u = dmem__uffd_open(err, sizeof err);
  ck_assert_msg(u >= 0, "%s", err);
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
  ck_assert_int_eq(ioctl(u, UFFDIO_API, &api), 0);
  writer w = {.mem = m, .npages = N};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, writer_thread, &w), 0);
  uint64_t cycles = env_u64("DMEM_UFFD_UNREGISTER_CYCLES", 10000), s = 7, waited = 0;
  const uint64_t base = (uint64_t)(uintptr_t)m, len = (uint64_t)N * PAGE;
  for (uint64_t c = 0; c < cycles; c++) {
    uint64_t modes = UFFDIO_REGISTER_MODE_WP | (c % 2 ? 0 : UFFDIO_REGISTER_MODE_MISSING);
    struct uffdio_register reg = {.range = {base, len}, .mode = modes};
    ck_assert_int_eq(ioctl(u, UFFDIO_REGISTER, &reg), 0);
    struct uffdio_writeprotect wp = {.range = {base, len}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    ck_assert_int_eq(ioctl(u, UFFDIO_WRITEPROTECT, &wp), 0);
    usleep((useconds_t)(kt_rand(&s) % 200));
    /* Read, a fault stays waiting until someone wakes it. */
    struct uffd_msg msgs[16];
    waited += read(u, msgs, sizeof msgs) > 0;
    uint64_t before = __atomic_load_n(&w.writes, __ATOMIC_ACQUIRE);
    dmem__uffd_unregister(u, base, len);
    uint64_t until = kt_now_ns() + 5000000000u;
    while (__atomic_load_n(&w.writes, __ATOMIC_ACQUIRE) == before && kt_now_ns() < until)
      usleep(20);
    ck_assert_msg(__atomic_load_n(&w.writes, __ATOMIC_ACQUIRE) != before,
                  "the writer still waits 5 s after unregister %llu of %llu (%s mode)",
                  (unsigned long long)c + 1, (unsigned long long)cycles,
                  c % 2 ? "WP" : "MISSING and WP");
  }
  __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
  pthread_join(th, NULL);
  printf("unregister: %llu cycles, the writer waiting (fault read) in %llu, never left waiting\n",
         (unsigned long long)cycles, (unsigned long long)waited);
  ck_assert_uint_gt(waited, cycles / 2);
  close(u);
  munmap(m, N * PAGE);
  close(fd);
}
END_TEST

/* ---------------------------------------------------------------- latency */

/* What a touch of an evicted page costs a host thread, end to end, next to
 * a bare userfaultfd round trip in the same run. */
START_TEST(fault_latency)
{
  enum { N = 1024 };
  dmem_kvm_region *r = make_region(N);
  uint8_t *m = dmem_kvm_region_addr(r);
  for (unsigned i = 0; i < N; i++)
    kt_fill(m + (size_t)i * PAGE, KT_TEXT, i);
  dmem_engine *e;
  ck_assert_int_eq(kt_engine(&e, 2, N), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "latency"), 0);
  scan_passes(e, N, 3);
  dmem_stats vs = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_eq(vs.compressed, N);
  static uint64_t ns[N], bare[N];
  dmem_kvm_stats s0 = region_stats(r);
  for (unsigned i = 0; i < N; i++) {
    uint64_t t0 = kt_now_ns();
    (void)*(volatile uint8_t *)(m + (size_t)i * PAGE + 8);
    ns[i] = kt_now_ns() - t0;
  }
  /* The fault thread records a latency after the install woke the
   * toucher: give the last one a moment. */
  dmem_kvm_stats s1 = region_stats(r);
  for (int i = 0; i < 1000 && s1.lat_count - s0.lat_count < N; i++) {
    usleep(1000);
    s1 = region_stats(r);
  }
  ck_assert_uint_eq(s1.faults_missing - s0.faults_missing, N);
  ck_assert_uint_eq(s1.lat_count - s0.lat_count, N);
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_eq(vs.resident, N);
  for (unsigned i = 0; i < N; i++) {
    uint8_t want[PAGE];
    kt_fill(want, KT_TEXT, i);
    ck_assert_mem_eq(m + (size_t)i * PAGE, want, PAGE);
  }
  ck_assert_int_eq(kt_bare_uffd_latency(bare, N), 0);
  printf("latency: touch of a compressed page p50 %.1f p99 %.1f us (service p50 <= %.0f p99 <= "
         "%.0f us, mean %.1f us); bare userfaultfd round trip p50 %.1f p99 %.1f us\n",
         kt_quantile_us(ns, N, 0.5), kt_quantile_us(ns, N, 0.99),
         dmem_kvm_stats_percentile_us(&s1, 0.5), dmem_kvm_stats_percentile_us(&s1, 0.99),
         (double)s1.lat_sum_ns / (double)s1.lat_count / 1000, kt_quantile_us(bare, N, 0.5),
         kt_quantile_us(bare, N, 0.99));
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
}
END_TEST

static Suite *region_suite(void)
{
  Suite *s = suite_create("kvm_region");
  TCase *tc = tcase_create("region");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, options_checked);
  tcase_add_test(tc, allocation_failures);
  tcase_add_test(tc, fresh_region_fills_and_reclaims);
  tcase_add_test(tc, caller_memfd_and_mapping);
  tcase_add_test(tc, tracking_bits);
  tcase_add_test(tc, minor_tracking_only);
  tcase_add_test(tc, wp_tracking_only);
  tcase_add_test(tc, host_threads_fault_while_scanning);
  tcase_add_test(tc, unregister_wakes_every_waiter);
  tcase_add_test(tc, fault_latency);
  suite_add_tcase(s, tc);
  return s;
}

/* Check's main lives in tests/runner.c, which cannot skip: this program
 * has its own, so that a host without KVM or userfaultfd skips it (77). */
int main(void)
{
  kt_skip_unless_supported("test_kvm_region");
  return kt_run_suite(region_suite());
}
