/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Xen adapter against the simulated hypervisor (xensim.h): opening and
 * its refusals, eviction and fault-back through the vm_event ring in every
 * paging state, sharing in the p2m with Xen's handle rules, clones and
 * grant references, failures where the hypervisor says no, and the
 * engine's randomized model (model.h) run through the adapter. None of it
 * needs Xen; one test checks the clear error of the real libxenctrl path
 * on a machine without Xen. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <diffmem/diffmem.h>
#include <diffmem/xen.h>

#include "model.h"
#include "testutil.h"
#include "xensim.h"

#define PAGE DMEM_PAGE_SIZE

/* ---------------------------------------------------------------- fixture */

typedef struct fix {
  xensim *s;
  dmem_engine *e;
  dmem_xen_guest *x[2];
  dmem_vm *vm[2];
  unsigned n;
  uint64_t npages;
} fix;

static void serve_all(void *ud)
{
  fix *f = ud;
  for (unsigned i = 0; i < f->n; i++)
    if (f->x[i])
      (void)dmem_xen_guest_poll(f->x[i], 0, NULL);
}

static void fill(uint8_t *b, uint64_t seed)
{
  uint64_t s = seed;
  for (size_t i = 0; i < PAGE; i += 8) {
    uint64_t v = test_rand(&s) & 0xff; /* distinct, and compressible */
    memcpy(b + i, &v, 8);
  }
}

/* @n domains of @npages pages, content from fill(seed + gfn) (so equal
 * across domains), one engine, each domain attached. With @table, the
 * guests are given one table of sharing sources (the fixture drops its
 * own reference at once: the guests hold it); without, each has its own. */
static void setup_with(fix *f, unsigned n, uint64_t npages, int share, int table)
{
  memset(f, 0, sizeof *f);
  f->npages = npages;
  f->s = xs_create(7);
  ck_assert_ptr_nonnull(f->s);
  xs_set_service(f->s, serve_all, f);
  dmem_engine_options o = DMEM_ENGINE_OPTIONS_INIT;
  o.seed = 99;
  o.c4_passes = 2;
  o.map_shared = share;
  ck_assert_int_eq(dmem_engine_create(&f->e, &o), 0);
  dmem_xen_sources *t = NULL;
  if (table)
    ck_assert_int_eq(dmem_xen_sources_create(&t, NULL), 0);
  uint8_t b[PAGE];
  for (unsigned i = 0; i < n; i++) {
    ck_assert_int_eq(xs_domain(f->s, 10 + i, npages, 1, 1), 0);
    for (uint64_t g = 0; g < npages; g++) {
      fill(b, 1000 + g);
      xs_load(f->s, 10 + i, g, b);
    }
    dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
    xo.domid = 10 + i;
    xo.calls = xs_calls();
    xo.hv = f->s;
    xo.share = share;
    xo.sharing_domain = 1; /* the fixture's guests are one tenant's */
    xo.sources = t;
    char err[256];
    int rc = dmem_xen_guest_create(&f->x[i], &xo, err, sizeof err);
    ck_assert_msg(rc == 0, "open: %s: %s", dmem_err_name(rc), err);
    f->n = i + 1;
    ck_assert_int_eq(dmem_xen_guest_attach(&f->vm[i], f->e, f->x[i], "xen"), 0);
  }
  dmem_xen_sources_destroy(t);
}

static void setup(fix *f, unsigned n, uint64_t npages, int share)
{
  setup_with(f, n, npages, share, 1);
}

static void teardown(fix *f)
{
  for (unsigned i = 0; i < f->n; i++) {
    if (f->vm[i])
      ck_assert_int_eq(dmem_xen_guest_detach(f->x[i]), 0);
    f->vm[i] = NULL;
  }
  for (unsigned i = 0; i < f->n; i++) {
    dmem_xen_guest_destroy(f->x[i]);
    f->x[i] = NULL;
  }
  dmem_engine_destroy(f->e);
  xs_destroy(f->s);
}

static void scan_all(fix *f, unsigned rounds)
{
  for (unsigned r = 0; r < rounds; r++)
    ck_assert_int_eq(dmem_engine_scan(NULL, f->e, f->n * f->npages), 0); /* one pass */
}

static void expect_page(fix *f, unsigned dom, uint64_t gfn, uint64_t seed)
{
  uint8_t want[PAGE], got[PAGE];
  fill(want, seed);
  ck_assert_int_eq(xs_access(f->s, 10 + dom, 0, gfn, 0, 0, got, PAGE), 0);
  ck_assert_msg(memcmp(got, want, PAGE) == 0, "dom %u gfn %llu differs", dom,
                (unsigned long long)gfn);
}

static uint64_t count_type(fix *f, unsigned dom, uint64_t npages, int type)
{
  uint64_t n = 0;
  for (uint64_t g = 0; g < npages; g++)
    n += xs_type(f->s, 10 + dom, g) == type;
  return n;
}

/* ---------------------------------------------------------------- opening */

static int try_open(xensim *s, uint32_t domid, char *err, size_t len)
{
  dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
  xo.domid = domid;
  xo.calls = xs_calls();
  xo.hv = s;
  dmem_xen_guest *x = NULL;
  int rc = dmem_xen_guest_create(&x, &xo, err, len);
  if (rc == 0)
    dmem_xen_guest_destroy(x);
  else
    ck_assert_ptr_null(x);
  return rc;
}

START_TEST(open_refusals)
{
  xensim *s = xs_create(1);
  char err[256];
  ck_assert_int_eq(xs_domain(s, 1, 16, 0, 0), 0); /* PV */
  ck_assert_int_eq(xs_domain(s, 2, 16, 1, 0), 0); /* HVM without HAP */
  ck_assert_int_eq(xs_domain(s, 3, 16, 1, 1), 0);
  ck_assert_int_eq(xs_domain(s, 4, 16, 1, 1), 0);
  xs_set_ring_param(s, 4, 0);

  ck_assert_int_eq(try_open(s, 1, err, sizeof err), DMEM_ENOTSUP);
  ck_assert_msg(strstr(err, "HVM") && strstr(err, "PV"), "%s", err);
  ck_assert_int_eq(try_open(s, 2, err, sizeof err), DMEM_ENOTSUP);
  ck_assert_msg(strstr(err, "without HAP"), "%s", err);
  ck_assert_int_eq(try_open(s, 9, err, sizeof err), DMEM_ENOENT);
  ck_assert_msg(strstr(err, "no such domain"), "%s", err);
  ck_assert_int_eq(try_open(s, 4, err, sizeof err), DMEM_ENOTSUP);
  ck_assert_msg(strstr(err, "HVM_PARAM_PAGING_RING_PFN"), "%s", err);

  /* One pager per guest: a second one is refused while the first runs. */
  dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
  xo.domid = 3;
  xo.calls = xs_calls();
  xo.hv = s;
  dmem_xen_guest *x;
  ck_assert_int_eq(dmem_xen_guest_create(&x, &xo, err, sizeof err), 0);
  ck_assert_int_eq(xs_type(s, 3, 0), XS_RAM);
  ck_assert_int_eq(try_open(s, 3, err, sizeof err), DMEM_EBUSY);
  ck_assert_msg(strstr(err, "another pager"), "%s", err);
  dmem_xen_guest_destroy(x);
  /* Closing put the ring pages back: a new pager can start. */
  ck_assert_int_eq(try_open(s, 3, err, sizeof err), 0);

  xo.version = 99;
  ck_assert_int_eq(dmem_xen_guest_create(&x, &xo, NULL, 0), DMEM_EVERSION);
  ck_assert_int_eq(dmem_xen_guest_create(NULL, &xo, NULL, 0), DMEM_EINVAL);
  xs_destroy(s);
}
END_TEST

/* The adapter's memory goes through the caller's allocator hook (it once
 * called calloc directly); a failing allocation is a clean DMEM_ENOMEM. */
START_TEST(allocator_hook_used)
{
  xensim *s = xs_create(1);
  ck_assert_int_eq(xs_domain(s, 3, 16, 1, 1), 0);
  dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
  xo.domid = 3;
  xo.calls = xs_calls();
  xo.hv = s;
  test_alloc ta;
  long ok_at = 0;
  for (long n = 1; n < 64 && !ok_at; n++) {
    test_alloc_init(&ta);
    ta.fail_at = n;
    xo.allocator = &ta.hook;
    dmem_xen_guest *x = NULL;
    int rc = dmem_xen_guest_create(&x, &xo, NULL, 0);
    if (rc == 0) {
      ok_at = n;
      ck_assert_int_gt(ta.live_bytes, 0); /* the adapter's state is the hook's */
      dmem_xen_guest_destroy(x);
    } else {
      ck_assert_int_eq(rc, DMEM_ENOMEM);
    }
    ck_assert_int_eq(ta.live_bytes, 0);
  }
  ck_assert_int_gt(ok_at, 2);
  dmem_allocator half = {ta.hook.alloc, NULL, NULL};
  xo.allocator = &half;
  dmem_xen_guest *x = NULL;
  ck_assert_int_eq(dmem_xen_guest_create(&x, &xo, NULL, 0), DMEM_EINVAL);
  xs_destroy(s);
}
END_TEST

/* The real libxenctrl path on a machine without Xen: a clear error. */
START_TEST(open_without_xen)
{
  if (access("/dev/xen/privcmd", F_OK) == 0 || access("/proc/xen/privcmd", F_OK) == 0)
    return; /* Xen is here: nothing to check about its absence */
  dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
  xo.domid = 1;
  dmem_xen_guest *x = NULL;
  char err[256];
  ck_assert_int_eq(dmem_xen_guest_create(&x, &xo, err, sizeof err), DMEM_ENOTSUP);
  ck_assert_ptr_null(x);
  ck_assert_msg(strstr(err, "privcmd") || strstr(err, "Xen"), "message: %s", err);
  dmem_xen_info info = DMEM_XEN_INFO_INIT;
  info.version = 2;
  ck_assert_int_eq(dmem_xen_probe(&info), DMEM_EVERSION);
  ck_assert_int_eq(info.major, 0);
  info.version = DMEM_XEN_INFO_VERSION;
  ck_assert_int_eq(dmem_xen_probe(&info), DMEM_ENOTSUP);
  ck_assert_int_eq(info.major, -1);
  ck_assert_str_ne(info.reason, "");
}
END_TEST

/* ---------------------------------------------------------------- paging */

START_TEST(evict_and_fault_back)
{
  fix f;
  setup(&f, 1, 64, 0);
  uint8_t z[PAGE] = {0};
  for (uint64_t g = 48; g < 56; g++) /* zero pages */
    xs_load(f.s, 10, g, z);
  scan_all(&f, 6);
  uint64_t paged = count_type(&f, 0, 64, XS_PAGED);
  ck_assert_uint_gt(paged, 40);
  dmem_stats st = DMEM_STATS_INIT;
  dmem_vm_stats(&st, f.vm[0]);
  ck_assert_uint_eq(st.zero + st.shared + st.patched + st.compressed, paged);
  ck_assert_uint_gt(st.zero, 0);

  /* Every page read back through the ring: the vCPU waits, the service
   * rebuilds it, Xen loads it and resumes the vCPU. */
  uint64_t before = xs_requests(f.s);
  for (uint64_t g = 0; g < 64; g++) {
    if (g >= 48 && g < 56) {
      uint8_t got[PAGE];
      ck_assert_int_eq(xs_access(f.s, 10, 0, g, 0, 0, got, PAGE), 0);
      ck_assert_mem_eq(got, z, PAGE);
    } else {
      expect_page(&f, 0, g, 1000 + g);
    }
    ck_assert(!xs_paused(f.s, 10, 0));
  }
  ck_assert_uint_eq(xs_requests(f.s) - before, paged);
  ck_assert_uint_eq(xs_responses(f.s), xs_requests(f.s));
  ck_assert_uint_eq(count_type(&f, 0, 64, XS_RAM), 64);
  dmem_xen_stats xs = DMEM_XEN_STATS_INIT;
  xs.version = 0;
  ck_assert_int_eq(dmem_xen_guest_stats(&xs, f.x[0]), DMEM_EVERSION);
  ck_assert_uint_eq(xs.faults, 0);
  xs.version = DMEM_XEN_STATS_VERSION;
  ck_assert_int_eq(dmem_xen_guest_stats(&xs, f.x[0]), 0);
  ck_assert_uint_eq(xs.version, DMEM_XEN_STATS_VERSION);
  ck_assert_uint_eq(xs.faults, paged);
  ck_assert_uint_eq(xs.evicts, paged + 0);
  ck_assert_uint_ge(xs_count(f.s, XS_PAGING_LOAD), paged);

  /* Pages faulted in by reads are referenced, not modified: C2. */
  scan_all(&f, 1);
  dmem_page_kind k;
  dmem_page_state ps;
  ck_assert_int_eq(dmem_vm_page(&k, &ps, f.vm[0], 3), 0);
  ck_assert_int_eq(ps, DMEM_C2);

  /* Evicted again, then the VM is detached: every page is loaded back. */
  scan_all(&f, 6);
  ck_assert_uint_gt(count_type(&f, 0, 64, XS_PAGED), 0);
  ck_assert_int_eq(dmem_xen_guest_detach(f.x[0]), 0);
  f.vm[0] = NULL;
  ck_assert_uint_eq(count_type(&f, 0, 64, XS_RAM), 64);
  for (uint64_t g = 0; g < 48; g++)
    expect_page(&f, 0, g, 1000 + g);
  teardown(&f);
}
END_TEST

typedef struct writer {
  fix *f;
  uint64_t gfn;
  uint8_t byte;
  int vcpu;
} writer;

static void guest_writes(void *ud)
{
  writer *w = ud;
  ck_assert_int_eq(xs_access(w->f->s, 10, w->vcpu, w->gfn, 1, 100, &w->byte, 1), 0);
}

/* A guest write between nomination and eviction: the page is paging-in
 * with its memory, the request says EVICT_FAIL, the service answers with
 * prep alone, and the evict fails. The write survives. */
START_TEST(write_after_nominate)
{
  fix f;
  setup(&f, 1, 1, 0);
  writer w = {&f, 0, 0xab, 0};
  xs_set_hook(f.s, XS_PAGING_EVICT, guest_writes, &w);
  scan_all(&f, 6);
  dmem_xen_stats xs = DMEM_XEN_STATS_INIT;
  dmem_xen_guest_stats(&xs, f.x[0]);
  ck_assert_uint_eq(xs.evict_fail, 1);
  ck_assert_uint_ge(xs_count(f.s, XS_PAGING_PREP), 1);
  uint8_t want[PAGE], got[PAGE];
  fill(want, 1000);
  want[100] = 0xab;
  ck_assert_int_eq(xs_access(f.s, 10, 0, 0, 0, 0, got, PAGE), 0);
  ck_assert_mem_eq(got, want, PAGE);
  dmem_stats st = DMEM_STATS_INIT;
  dmem_engine_stats(&st, f.e);
  ck_assert_uint_ge(st.errors, 1); /* the failed evict, counted */
  teardown(&f);
}
END_TEST

/* A guest write between the engine's read and the nomination: the adapter
 * sees the bytes changed and refuses; the page stays nominated until the
 * guest writes it again, which goes through the ring. */
START_TEST(write_before_nominate)
{
  fix f;
  setup(&f, 1, 1, 0);
  writer w = {&f, 0, 0xcd, 0};
  xs_set_hook(f.s, XS_PAGING_NOMINATE, guest_writes, &w);
  for (int i = 0; i < 6 && xs_type(f.s, 10, 0) != XS_PAGING_OUT; i++)
    scan_all(&f, 1);
  dmem_xen_stats xs = DMEM_XEN_STATS_INIT;
  dmem_xen_guest_stats(&xs, f.x[0]);
  ck_assert_uint_eq(xs.evict_changed, 1);
  ck_assert_int_eq(xs_type(f.s, 10, 0), XS_PAGING_OUT);
  dmem_page_kind k;
  dmem_page_state ps;
  dmem_vm_page(&k, &ps, f.vm[0], 0);
  ck_assert_int_eq(k, DMEM_PAGE_RESIDENT);
  w.byte = 0xce;
  w.gfn = 0;
  guest_writes(&w); /* read-only now: the ring lets it through */
  ck_assert_int_eq(xs_type(f.s, 10, 0), XS_RAM);
  uint8_t want[PAGE], got[PAGE];
  fill(want, 1000);
  want[100] = 0xce;
  ck_assert_int_eq(xs_access(f.s, 10, 0, 0, 0, 0, got, PAGE), 0);
  ck_assert_mem_eq(got, want, PAGE);
  /* And it can be evicted later, with its new bytes. */
  scan_all(&f, 8);
  ck_assert_int_eq(xs_type(f.s, 10, 0), XS_PAGED);
  ck_assert_int_eq(xs_access(f.s, 10, 0, 0, 0, 0, got, PAGE), 0);
  ck_assert_mem_eq(got, want, PAGE);
  teardown(&f);
}
END_TEST

/* A foreign write (the VMM's, no vCPU) to a page in the instant between
 * its paging-out and the adapter's record of it. The ring service must not
 * answer the request as "not evicted": Xen would keep the page paging-in,
 * and a foreign mapper never asks twice, so the write would wait forever
 * (the model's concurrent run once met this: DMEM_EIO after 20 s). */
typedef struct racer {
  fix *f;
  uint64_t gfn;
  pthread_t t;
  int started, rc;
  uint8_t byte;
} racer;

static void *foreign_write(void *p)
{
  racer *r = p;
  r->rc = xs_access(r->f->s, 10, -1, r->gfn, 1, 0, &r->byte, 1);
  return NULL;
}

static void write_while_evicting(void *ud)
{
  racer *r = ud;
  uint64_t before = xs_responses(r->f->s);
  r->gfn = xs_hook_gfn(r->f->s);
  r->started = pthread_create(&r->t, NULL, foreign_write, r) == 0;
  /* Time enough for the ring thread to answer, if it answers now. */
  for (int i = 0; i < 50 && xs_responses(r->f->s) == before; i++)
    usleep(4000);
}

START_TEST(request_during_evict_waits)
{
  fix f;
  setup(&f, 1, 8, 0);
  xs_set_service(f.s, NULL, NULL); /* the adapter's thread serves the ring */
  ck_assert_int_eq(dmem_xen_guest_start(f.x[0]), 0);
  racer r = {&f, 0, 0, 0, -1, 0x5a};
  xs_set_after_evict(f.s, write_while_evicting, &r);
  scan_all(&f, 4);
  ck_assert_msg(r.started, "no page was evicted");
  pthread_join(r.t, NULL);
  ck_assert_msg(r.rc == 0, "the write of gfn %llu waited in vain: %s", (unsigned long long)r.gfn,
                dmem_xen_guest_errmsg(f.x[0]));
  uint8_t want[PAGE], got[PAGE];
  fill(want, 1000 + r.gfn);
  want[0] = 0x5a;
  ck_assert_int_eq(xs_access(f.s, 10, 0, r.gfn, 0, 0, got, PAGE), 0);
  ck_assert_mem_eq(got, want, PAGE);
  dmem_xen_guest_stop(f.x[0]);
  xs_set_service(f.s, serve_all, &f);
  teardown(&f);
}
END_TEST

typedef struct nth_writer {
  fix *f;
  unsigned n, calls;
  int wrote;
} nth_writer;

/* Re-armed before every foreign map; the guest writes before the n-th map
 * of page 0. */
static void write_at_nth_map(void *ud)
{
  nth_writer *w = ud;
  if (xs_hook_gfn(w->f->s) != 0) {
    xs_set_hook(w->f->s, XS_MAP, write_at_nth_map, w);
    return;
  }
  if (++w->calls == w->n) {
    /* Not on a page already paged out: that touch would need the engine,
     * whose lock this thread holds (a real guest runs on its own). */
    int t = xs_type(w->f->s, 10, 0);
    if (t == XS_PAGED || t == XS_PAGING_IN)
      return;
    uint8_t byte = 0x3c;
    ck_assert_int_eq(xs_access(w->f->s, 10, 0, 0, 1, 64, &byte, 1), 0);
    w->wrote = 1;
  } else {
    xs_set_hook(w->f->s, XS_MAP, write_at_nth_map, w);
  }
}

/* A guest write before any one of the adapter's reads of page 0 while the
 * engine reclaims it (its lock read, the check after nomination, and the
 * other reads these passes and hints make) is never lost. */
START_TEST(write_at_every_read)
{
  for (unsigned n = 1; n <= 8; n++) {
    fix f;
    setup(&f, 1, 2, 0);
    uint8_t similar[PAGE];
    fill(similar, 1000);
    similar[4000] ^= 0xff; /* page 1: page 0 but for a byte, a patch target */
    xs_load(f.s, 10, 1, similar);
    nth_writer w = {&f, n, 0, 0};
    xs_set_hook(f.s, XS_MAP, write_at_nth_map, &w);
    /* A hint reads the page and enters it in the engine's index, so that
     * the scan that follows reads it twice: once to lock it, once when the
     * index compares it with itself. */
    ck_assert_int_eq(dmem_vm_io_hint(f.vm[0], 0, 1), 0);
    for (int i = 0; i < 6; i++) {
      scan_all(&f, 1);
      if (i == 2)
        ck_assert_int_eq(dmem_vm_io_hint(f.vm[0], 0, 1), 0);
    }
    xs_set_hook(f.s, XS_MAP, NULL, NULL);
    uint8_t want[PAGE], got[PAGE];
    fill(want, 1000);
    if (w.wrote)
      want[64] = 0x3c;
    ck_assert_int_eq(xs_access(f.s, 10, 0, 0, 0, 0, got, PAGE), 0);
    ck_assert_msg(memcmp(got, want, PAGE) == 0, "write before map call %u lost", n);
    teardown(&f);
  }
}
END_TEST

/* Closing without a detach: every page comes back, a vCPU waiting on the
 * ring is answered, and the guest can run on without a pager. */
START_TEST(close_answers_and_restores)
{
  fix f;
  setup(&f, 1, 8, 0);
  scan_all(&f, 6);
  ck_assert_uint_gt(count_type(&f, 0, 8, XS_PAGED), 0);
  ck_assert_int_eq(xs_type(f.s, 10, 3), XS_PAGED);
  ck_assert_int_eq(xs_touch_nowait(f.s, 10, 1, 3, 0), 1);
  ck_assert(xs_paused(f.s, 10, 1));
  dmem_xen_guest_destroy(f.x[0]);
  f.x[0] = NULL;
  f.vm[0] = NULL;
  ck_assert(!xs_paused(f.s, 10, 1));
  ck_assert_uint_eq(count_type(&f, 0, 8, XS_RAM), 8);
  for (uint64_t g = 0; g < 8; g++)
    expect_page(&f, 0, g, 1000 + g);
  ck_assert(!xs_crashed(f.s, 10));
  ck_assert_uint_eq(xs_responses(f.s), xs_requests(f.s));
  teardown(&f);
}
END_TEST

/* Two vCPUs touch the same evicted page: two requests, one load, both
 * resumed. A foreign access waits without a paused vCPU. */
START_TEST(ring_requests)
{
  fix f;
  setup(&f, 1, 8, 0);
  scan_all(&f, 6);
  ck_assert_int_eq(xs_type(f.s, 10, 2), XS_PAGED);
  ck_assert_int_eq(xs_touch_nowait(f.s, 10, 0, 2, 0), 1);
  ck_assert_int_eq(xs_touch_nowait(f.s, 10, 1, 2, 1), 1);
  ck_assert(xs_paused(f.s, 10, 0) && xs_paused(f.s, 10, 1));
  unsigned served = 0;
  ck_assert_int_eq(dmem_xen_guest_poll(f.x[0], 0, &served), 0);
  ck_assert_uint_eq(served, 2);
  ck_assert(!xs_paused(f.s, 10, 0) && !xs_paused(f.s, 10, 1));
  ck_assert_int_eq(xs_type(f.s, 10, 2), XS_RAM);
  ck_assert_uint_eq(xs_count(f.s, XS_PAGING_LOAD), 1);
  expect_page(&f, 0, 2, 1002);

  /* The VMM (no vCPU) writes an evicted page: it waits for the load. */
  ck_assert_int_eq(xs_type(f.s, 10, 5), XS_PAGED);
  uint8_t b = 0x5a;
  ck_assert_int_eq(xs_access(f.s, 10, -1, 5, 1, 7, &b, 1), 0);
  uint8_t got[PAGE], want[PAGE];
  fill(want, 1005);
  want[7] = 0x5a;
  ck_assert_int_eq(xs_access(f.s, 10, 0, 5, 0, 0, got, PAGE), 0);
  ck_assert_mem_eq(got, want, PAGE);
  ck_assert_uint_eq(xs_responses(f.s), xs_requests(f.s));

  /* Nothing pending: a poll with a timeout returns quietly. */
  ck_assert_int_eq(dmem_xen_guest_poll(f.x[0], 10, &served), 0);
  ck_assert_uint_eq(served, 0);
  teardown(&f);
}
END_TEST

/* The hypervisor refuses a load: the request stays, its vCPU stays
 * paused, the error names the page; the next poll serves it. */
START_TEST(load_refused_then_retried)
{
  fix f;
  setup(&f, 1, 8, 0);
  scan_all(&f, 6);
  ck_assert_int_eq(xs_type(f.s, 10, 4), XS_PAGED);
  xs_fail(f.s, XS_PAGING_LOAD, 1.0, ENOMEM);
  ck_assert_int_eq(xs_touch_nowait(f.s, 10, 0, 4, 0), 1);
  unsigned served = 9;
  ck_assert_int_eq(dmem_xen_guest_poll(f.x[0], 0, &served), DMEM_EIO);
  ck_assert_uint_eq(served, 0);
  ck_assert(xs_paused(f.s, 10, 0));
  ck_assert_msg(strstr(dmem_xen_guest_errmsg(f.x[0]), "0x4"), "%s", dmem_xen_guest_errmsg(f.x[0]));
  ck_assert_int_eq(xs_type(f.s, 10, 4), XS_PAGING_IN);
  dmem_page_kind k;
  dmem_page_state ps;
  dmem_vm_page(&k, &ps, f.vm[0], 4);
  ck_assert_int_ne(k, DMEM_PAGE_RESIDENT); /* the engine still holds it */
  xs_fail(f.s, XS_PAGING_LOAD, 0, 0);
  ck_assert_int_eq(dmem_xen_guest_poll(f.x[0], 0, &served), 0);
  ck_assert_uint_eq(served, 1);
  ck_assert(!xs_paused(f.s, 10, 0));
  expect_page(&f, 0, 4, 1004);
  dmem_xen_stats xs = DMEM_XEN_STATS_INIT;
  dmem_xen_guest_stats(&xs, f.x[0]);
  ck_assert_uint_eq(xs.retries, 1);

  /* Refused nominations and evictions leave pages resident and counted. */
  xs_fail(f.s, XS_PAGING_NOMINATE, 1.0, EBUSY);
  expect_page(&f, 0, 5, 1005);
  dmem_stats st0 = DMEM_STATS_INIT, st1 = DMEM_STATS_INIT;
  dmem_engine_stats(&st0, f.e);
  scan_all(&f, 6);
  dmem_engine_stats(&st1, f.e);
  ck_assert_uint_gt(st1.errors, st0.errors);
  ck_assert_int_eq(xs_type(f.s, 10, 5), XS_RAM);
  xs_fail(f.s, XS_PAGING_NOMINATE, 0, 0);
  teardown(&f);
}
END_TEST

/* The guest gives an evicted page back: a drop notice, no load, and the
 * detach does not try to load it. */
START_TEST(drop_notice)
{
  fix f;
  setup(&f, 1, 4, 0);
  scan_all(&f, 6);
  ck_assert_int_eq(xs_type(f.s, 10, 1), XS_PAGED);
  ck_assert_int_eq(xs_drop(f.s, 10, 1), 0);
  ck_assert_int_eq(dmem_xen_guest_poll(f.x[0], 0, NULL), 0);
  dmem_xen_stats xs = DMEM_XEN_STATS_INIT;
  dmem_xen_guest_stats(&xs, f.x[0]);
  ck_assert_uint_eq(xs.dropped, 1);
  uint64_t loads = xs_count(f.s, XS_PAGING_LOAD);
  ck_assert_int_eq(dmem_xen_guest_detach(f.x[0]), 0);
  f.vm[0] = NULL;
  ck_assert_uint_eq(xs_count(f.s, XS_PAGING_LOAD), loads + 3); /* the other three */
  ck_assert_int_eq(xs_type(f.s, 10, 1), XS_HOLE);
  teardown(&f);
}
END_TEST

/* ---------------------------------------------------------------- sharing */

/* The rules of the simulated hypervisor itself, as xenctrl.h states them. */
START_TEST(sim_sharing_rules)
{
  xensim *s = xs_create(3);
  const dmem_xen_calls *c = xs_calls();
  ck_assert_int_eq(xs_domain(s, 1, 4, 1, 1), 0);
  ck_assert_int_eq(xs_domain(s, 2, 4, 1, 0), 0);
  uint8_t a[PAGE], b[PAGE];
  fill(a, 1);
  xs_load(s, 1, 0, a);
  xs_load(s, 1, 1, a);
  uint64_t h0, h1;
  errno = 0;
  ck_assert_int_eq(c->memshr_nominate_gfn(s, 1, 0, &h0), -1);
  ck_assert_int_eq(errno, EINVAL); /* sharing not enabled */
  ck_assert_int_eq(c->memshr_control(s, 2, 1), -1);
  ck_assert_int_eq(errno, ENODEV); /* no HAP */
  ck_assert_int_eq(c->memshr_control(s, 1, 1), 0);
  ck_assert_int_eq(c->memshr_nominate_gfn(s, 1, 0, &h0), 0);
  uint64_t again;
  ck_assert_int_eq(c->memshr_nominate_gfn(s, 1, 0, &again), 0);
  ck_assert_uint_eq(again, h0); /* the same handle while it is valid */
  ck_assert_int_eq(c->memshr_nominate_gfn(s, 1, 1, &h1), 0);
  /* A write invalidates the client's handle: errno 9. */
  uint8_t byte = 1;
  ck_assert_int_eq(xs_access(s, 1, 0, 1, 1, 0, &byte, 1), 0);
  ck_assert_int_eq(c->memshr_share_gfns(s, 1, 0, h0, 1, 1, h1), -1);
  ck_assert_int_eq(errno, DMEM_XEN_ESHARE_CLIENT);
  ck_assert_int_eq(c->memshr_nominate_gfn(s, 1, 1, &h1), 0);
  ck_assert_int_eq(xs_access(s, 1, 0, 0, 1, 0, &byte, 1), 0);
  ck_assert_int_eq(c->memshr_share_gfns(s, 1, 0, h0, 1, 1, h1), -1);
  ck_assert_int_eq(errno, DMEM_XEN_ESHARE_SOURCE);
  /* Shared pages are copy-on-write. */
  ck_assert_int_eq(c->memshr_nominate_gfn(s, 1, 0, &h0), 0);
  ck_assert_int_eq(c->memshr_share_gfns(s, 1, 0, h0, 1, 1, h1), 0);
  ck_assert_uint_eq(xs_sharers(s, 1, 0), 2);
  byte = 0x77;
  ck_assert_int_eq(xs_access(s, 1, 0, 1, 1, 9, &byte, 1), 0);
  ck_assert_uint_eq(xs_sharers(s, 1, 0), 1);
  ck_assert_uint_eq(xs_sharers(s, 1, 1), 1);
  xs_peek(s, 1, 0, b);
  ck_assert_int_eq(b[9], a[9]);
  xs_peek(s, 1, 1, b);
  ck_assert_int_eq(b[9], 0x77);
  /* A page mapped by someone else cannot be nominated. */
  void *m = c->map(s, 1, 1 /* PROT_READ */, 2, 1);
  ck_assert_ptr_nonnull(m);
  ck_assert_int_eq(c->memshr_nominate_gfn(s, 1, 2, &h0), -1);
  ck_assert_int_eq(errno, E2BIG);
  ck_assert_int_eq(c->paging_nominate(s, 1, 2), -1);
  ck_assert_int_eq(errno, ENODEV); /* paging not enabled */
  c->unmap(s, m, 1);
  xs_destroy(s);
}
END_TEST

/* Two guests with the same pages: cold pages are evicted and shared in the
 * engine; once read back (referenced), they are mapped copy-on-write in
 * Xen's p2m across the two domains. */
START_TEST(share_across_domains)
{
  fix f;
  setup(&f, 2, 16, 1);
  scan_all(&f, 6);
  for (unsigned d = 0; d < 2; d++)
    for (uint64_t g = 0; g < 16; g++)
      expect_page(&f, d, g, 1000 + g);
  scan_all(&f, 1); /* read back, so referenced: C2, mapped */
  uint64_t shared = 0;
  for (uint64_t g = 0; g < 16; g++)
    shared += xs_sharers(f.s, 10, g) > 1;
  dmem_stats st = DMEM_STATS_INIT;
  dmem_engine_stats(&st, f.e);
  ck_assert_uint_gt(shared, 8);
  ck_assert_uint_gt(st.mapped, 8);
  dmem_xen_stats a = DMEM_XEN_STATS_INIT, b = DMEM_XEN_STATS_INIT;
  dmem_xen_guest_stats(&a, f.x[0]);
  dmem_xen_guest_stats(&b, f.x[1]);
  ck_assert_uint_gt(a.shares + b.shares, 8);
  /* A write gives the writer its own copy; the other guest keeps the old. */
  uint64_t g = 0;
  while (xs_sharers(f.s, 11, g) < 2)
    g++;
  uint8_t byte = 0xee;
  ck_assert_int_eq(xs_access(f.s, 11, 0, g, 1, 5, &byte, 1), 0);
  expect_page(&f, 0, g, 1000 + g);
  uint8_t got[PAGE], want[PAGE];
  fill(want, 1000 + g);
  want[5] = 0xee;
  ck_assert_int_eq(xs_access(f.s, 11, 0, g, 0, 0, got, PAGE), 0);
  ck_assert_mem_eq(got, want, PAGE);
  /* The engine sees the write and makes the page private. */
  scan_all(&f, 1);
  dmem_page_kind k;
  dmem_page_state ps;
  dmem_vm_page(&k, &ps, f.vm[1], g);
  ck_assert_int_eq(k, DMEM_PAGE_RESIDENT);
  teardown(&f);
}
END_TEST

/* Guests given no table each keep their own sources: the engine still
 * keeps each frame once, but Xen shares no page across the two domains
 * (and no table outside the guests joins them). */
START_TEST(share_without_table_stays_in_guest)
{
  fix f;
  setup_with(&f, 2, 16, 1, 0);
  scan_all(&f, 6);
  for (unsigned d = 0; d < 2; d++)
    for (uint64_t g = 0; g < 16; g++)
      expect_page(&f, d, g, 1000 + g);
  scan_all(&f, 1); /* read back, so referenced: C2, mapped */
  dmem_stats st = DMEM_STATS_INIT;
  dmem_engine_stats(&st, f.e);
  ck_assert_uint_gt(st.mapped, 8);
  for (unsigned d = 0; d < 2; d++)
    for (uint64_t g = 0; g < 16; g++) {
      ck_assert_uint_eq(xs_sharers(f.s, 10 + d, g), 1);
      expect_page(&f, d, g, 1000 + g);
    }
  dmem_xen_stats a = DMEM_XEN_STATS_INIT, b = DMEM_XEN_STATS_INIT;
  dmem_xen_guest_stats(&a, f.x[0]);
  dmem_xen_guest_stats(&b, f.x[1]);
  ck_assert_uint_eq(a.shares + b.shares, 0);
  teardown(&f);
}
END_TEST

static dmem_xen_guest *open_sharing(xensim *s, uint32_t domid, unsigned version,
                                    dmem_xen_sources *t)
{
  dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
  xo.version = version;
  xo.domid = domid;
  xo.calls = xs_calls();
  xo.hv = s;
  xo.sharing_domain = 1;
  xo.sources = t;
  dmem_xen_guest *x = NULL;
  ck_assert_int_eq(dmem_xen_guest_create(&x, &xo, NULL, 0), 0);
  return x;
}

/* The table's memory is its allocator's; each guest given it holds a
 * reference, so it outlives the caller's and goes with the last guest,
 * whatever the order. Version 2 options (before sources) still open, and
 * such a guest takes no reference. */
START_TEST(sources_table_counted)
{
  dmem_xen_sources *t = NULL;
  ck_assert_int_eq(dmem_xen_sources_create(NULL, NULL), DMEM_EINVAL);
  test_alloc ta;
  test_alloc_init(&ta);
  dmem_allocator half = {ta.hook.alloc, NULL, NULL};
  ck_assert_int_eq(dmem_xen_sources_create(&t, &half), DMEM_EINVAL);
  ck_assert_ptr_null(t);
  ta.fail_at = 1;
  ck_assert_int_eq(dmem_xen_sources_create(&t, &ta.hook), DMEM_ENOMEM);
  ck_assert_ptr_null(t);
  dmem_xen_sources_destroy(NULL);

  test_alloc_init(&ta);
  ck_assert_int_eq(dmem_xen_sources_create(&t, &ta.hook), 0);
  long table = ta.live_bytes;
  ck_assert_int_gt(table, 0);

  xensim *s = xs_create(3);
  ck_assert_ptr_nonnull(s);
  uint8_t b[PAGE];
  for (uint32_t d = 10; d < 13; d++) {
    ck_assert_int_eq(xs_domain(s, d, 8, 1, 1), 0);
    for (uint64_t g = 0; g < 8; g++) {
      fill(b, 1000 + g);
      xs_load(s, d, g, b);
    }
  }
  dmem_xen_guest *x0 = open_sharing(s, 10, DMEM_XEN_GUEST_OPTIONS_VERSION, t);
  dmem_xen_guest *x1 = open_sharing(s, 11, DMEM_XEN_GUEST_OPTIONS_VERSION, t);
  dmem_xen_guest *old = open_sharing(s, 12, 2, t); /* sources not read */
  dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
  xo.calls = xs_calls();
  xo.hv = s;
  xo.domid = 12;
  dmem_xen_guest *x = NULL;
  xo.version = 1;
  ck_assert_int_eq(dmem_xen_guest_create(&x, &xo, NULL, 0), DMEM_EVERSION);
  xo.version = DMEM_XEN_GUEST_OPTIONS_VERSION + 1;
  ck_assert_int_eq(dmem_xen_guest_create(&x, &xo, NULL, 0), DMEM_EVERSION);
  dmem_xen_guest_destroy(old);
  dmem_xen_sources_destroy(t); /* the guests hold it now */
  ck_assert_int_eq(ta.live_bytes, table);

  /* The two guests share in Xen through the table; its entries are the
   * table's allocator's, and a detach takes the guest's back. */
  dmem_engine_options o = DMEM_ENGINE_OPTIONS_INIT;
  o.seed = 99;
  o.c4_passes = 2;
  o.map_shared = 1;
  dmem_engine *e = NULL;
  ck_assert_int_eq(dmem_engine_create(&e, &o), 0);
  fix f;
  memset(&f, 0, sizeof f);
  f.s = s;
  f.x[0] = x0;
  f.x[1] = x1;
  f.n = 2;
  xs_set_service(s, serve_all, &f);
  dmem_vm *vm0, *vm1;
  ck_assert_int_eq(dmem_xen_guest_attach(&vm0, e, x0, "a"), 0);
  ck_assert_int_eq(dmem_xen_guest_attach(&vm1, e, x1, "b"), 0);
  for (unsigned r = 0; r < 6; r++)
    ck_assert_int_eq(dmem_engine_scan(NULL, e, 16), 0);
  for (unsigned d = 0; d < 2; d++)
    for (uint64_t g = 0; g < 8; g++) /* read back: referenced, so mapped next */
      expect_page(&f, d, g, 1000 + g);
  ck_assert_int_eq(dmem_engine_scan(NULL, e, 16), 0);
  uint64_t shared = 0;
  for (uint64_t g = 0; g < 8; g++)
    shared += xs_sharers(s, 11, g) > 1;
  ck_assert_uint_gt(shared, 4);
  ck_assert_int_gt(ta.live_bytes, table);
  ck_assert_int_eq(dmem_xen_guest_detach(x0), 0);
  ck_assert_int_eq(dmem_xen_guest_detach(x1), 0);
  ck_assert_int_eq(ta.live_bytes, table);
  dmem_xen_guest_destroy(x0);
  ck_assert_int_eq(ta.live_bytes, table); /* x1 still holds it */
  dmem_xen_guest_destroy(x1);
  ck_assert_int_eq(ta.live_bytes, 0);
  ck_assert_int_eq(ta.allocs, ta.frees);
  dmem_engine_destroy(e);
  xs_destroy(s);
}
END_TEST

typedef struct client_writer {
  xensim *s;
  uint32_t dom;
  uint64_t gfn;
} client_writer;

static void write_client(void *ud)
{
  client_writer *w = ud;
  uint8_t byte = 0x42;
  ck_assert_int_eq(xs_access(w->s, w->dom, 0, w->gfn, 1, 0, &byte, 1), 0);
}

/* A guest writes its page after the adapter compared it and before Xen
 * shares it: Xen refuses (client handle), and the write stays. */
START_TEST(share_refused_after_write)
{
  fix f;
  setup(&f, 2, 1, 1);
  scan_all(&f, 6);
  expect_page(&f, 0, 0, 1000);
  expect_page(&f, 1, 0, 1000);
  /* Whichever domain shares second is the client; write there. */
  client_writer w = {f.s, 11, 0};
  xs_set_hook(f.s, XS_SHARE_GFNS, write_client, &w);
  scan_all(&f, 1);
  uint8_t got[PAGE], want[PAGE];
  fill(want, 1000);
  ck_assert_int_eq(xs_peek(f.s, 11, 0, got), 0);
  if (got[0] == 0x42) { /* the hook ran: the write is there and not shared */
    ck_assert_uint_eq(xs_sharers(f.s, 11, 0), 1);
    dmem_xen_stats b = DMEM_XEN_STATS_INIT;
    dmem_xen_guest_stats(&b, f.x[1]);
    ck_assert_uint_eq(b.share_stale, 1);
  } else {
    ck_abort_msg("no share was attempted");
  }
  expect_page(&f, 0, 0, 1000);
  teardown(&f);
}
END_TEST

typedef struct enomem_hook {
  xensim *s;
  unsigned calls;
  uint64_t gfn;
} enomem_hook;

static void make_room(dmem_xen_guest *x, uint64_t gfn, void *ud)
{
  enomem_hook *h = ud;
  (void)x;
  h->calls++;
  h->gfn = gfn;
  if (h->calls == 2) /* the first answer did not help; the second does */
    xs_set_free(h->s, 16);
}

/* A write to a shared page when Xen has no memory for the private copy:
 * the sharing ring carries the notice, the vCPU waits while the owner's
 * hook makes room, and the write lands. Without the ring, Xen would crash
 * the guest; the adapter refuses to share without one. */
START_TEST(sharing_ring_enomem)
{
  fix f;
  memset(&f, 0, sizeof f);
  f.npages = 4;
  f.s = xs_create(5);
  xs_set_service(f.s, serve_all, &f);
  dmem_engine_options o = DMEM_ENGINE_OPTIONS_INIT;
  o.map_shared = 1;
  ck_assert_int_eq(dmem_engine_create(&f.e, &o), 0);
  enomem_hook h = {f.s, 0, 0};
  uint8_t b[PAGE];
  fill(b, 1);
  for (unsigned i = 0; i < 2; i++) {
    ck_assert_int_eq(xs_domain(f.s, 10 + i, 4, 1, 1), 0);
    xs_load(f.s, 10 + i, 2, b);
    dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
    xo.domid = 10 + i;
    xo.calls = xs_calls();
    xo.hv = f.s;
    xo.on_enomem = make_room;
    xo.enomem_ud = &h;
    xo.sharing_domain = 1;
    ck_assert_int_eq(dmem_xen_guest_create(&f.x[i], &xo, NULL, 0), 0);
    f.n = i + 1;
    ck_assert_int_eq(dmem_xen_guest_attach(&f.vm[i], f.e, f.x[i], "xen"), 0);
  }
  ck_assert_int_eq(dmem_xen_guest_share_range(f.x[0], f.x[1], 2, 2), 0);
  ck_assert_uint_eq(xs_sharers(f.s, 11, 2), 2);
  xs_set_free(f.s, 0);
  uint8_t byte = 0x99;
  ck_assert_int_eq(xs_access(f.s, 11, 0, 2, 1, 3, &byte, 1), 0);
  ck_assert_uint_eq(h.calls, 2);
  ck_assert_uint_eq(h.gfn, 2);
  ck_assert(!xs_crashed(f.s, 11));
  uint8_t got[PAGE];
  ck_assert_int_eq(xs_peek(f.s, 11, 2, got), 0);
  ck_assert_int_eq(got[3], 0x99);
  ck_assert_int_eq(xs_peek(f.s, 10, 2, got), 0);
  ck_assert_mem_eq(got, b, PAGE);
  dmem_xen_stats xs = DMEM_XEN_STATS_INIT;
  dmem_xen_guest_stats(&xs, f.x[1]);
  ck_assert_uint_eq(xs.enomem, 2);
  ck_assert_uint_eq(xs_responses(f.s), xs_requests(f.s));
  teardown(&f);

  /* No sharing ring page: sharing is refused, paging alone still works. */
  xensim *s = xs_create(6);
  ck_assert_int_eq(xs_domain(s, 3, 4, 1, 1), 0);
  xs_set_sharing_ring_param(s, 3, 0);
  char err[256];
  dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
  xo.domid = 3;
  xo.calls = xs_calls();
  xo.hv = s;
  dmem_xen_guest *x;
  ck_assert_int_eq(dmem_xen_guest_create(&x, &xo, err, sizeof err), DMEM_ENOTSUP);
  ck_assert_msg(strstr(err, "SHARING_RING_PFN"), "%s", err);
  xo.share = 0;
  ck_assert_int_eq(dmem_xen_guest_create(&x, &xo, err, sizeof err), 0);
  dmem_xen_guest_destroy(x);

  /* What the ring prevents: without it, Xen crashes the writer. */
  const dmem_xen_calls *c = xs_calls();
  ck_assert_int_eq(c->memshr_control(s, 3, 1), 0);
  xs_load(s, 3, 0, b);
  xs_load(s, 3, 1, b);
  uint64_t h0, h1;
  ck_assert_int_eq(c->memshr_nominate_gfn(s, 3, 0, &h0), 0);
  ck_assert_int_eq(c->memshr_nominate_gfn(s, 3, 1, &h1), 0);
  ck_assert_int_eq(c->memshr_share_gfns(s, 3, 0, h0, 3, 1, h1), 0);
  xs_set_free(s, 0);
  ck_assert_int_eq(xs_access(s, 3, 0, 1, 1, 0, &byte, 1), -1);
  ck_assert(xs_crashed(s, 3));
  xs_destroy(s);
}
END_TEST

START_TEST(clones_and_grants)
{
  fix f;
  setup(&f, 2, 8, 1);
  ck_assert_int_eq(dmem_xen_guest_share_range(f.x[0], f.x[1], 0, 7), 0);
  for (uint64_t g = 0; g < 8; g++)
    ck_assert_uint_eq(xs_sharers(f.s, 11, g), 2);
  ck_assert_int_eq(dmem_xen_guest_share_range(f.x[0], f.x[1], 0, 8), DMEM_EINVAL);
  for (uint64_t g = 0; g < 8; g++)
    expect_page(&f, 1, g, 1000 + g);
  teardown(&f);

  setup(&f, 2, 8, 1);
  xs_grant(f.s, 10, 3, 5);
  xs_grant(f.s, 11, 4, 5);
  ck_assert_int_eq(dmem_xen_guest_share_grefs(f.x[0], 3, f.x[1], 4), 0);
  ck_assert_uint_eq(xs_sharers(f.s, 11, 5), 2);
  ck_assert_int_eq(dmem_xen_guest_share_grefs(f.x[0], 3, f.x[1], 9), DMEM_EINVAL);
  ck_assert_msg(strstr(dmem_xen_guest_errmsg(f.x[1]), "gref") ||
                    strstr(dmem_xen_guest_errmsg(f.x[1]), "nominate"),
                "%s", dmem_xen_guest_errmsg(f.x[1]));
  teardown(&f);
}
END_TEST

/* ---------------------------------------------------------------- the model through Xen */

typedef struct xg {
  xensim *s;
  uint32_t domid;
  dmem_xen_guest *x;
  dmem_vm *vm;
} xg;

/* The VMs of one model run share one simulated hypervisor. */
static struct {
  xensim *s;
  dmem_xen_sources *sources; /* the run's guests share on one engine */
  xg *vms[MODEL_MAXVM];
  unsigned users;
} run;

static void serve_run(void *ud)
{
  (void)ud;
  for (unsigned i = 0; i < MODEL_MAXVM; i++)
    if (run.vms[i])
      (void)dmem_xen_guest_poll(run.vms[i]->x, 0, NULL);
}

static void *xb_create(const model_config *c, unsigned v)
{
  if (!run.s) {
    run.s = xs_create(c->seed);
    if (!run.s)
      return NULL;
    xs_set_service(run.s, serve_run, NULL);
    if (dmem_xen_sources_create(&run.sources, NULL) != 0) {
      xs_destroy(run.s);
      run.s = NULL;
      return NULL;
    }
  }
  xg *g = calloc(1, sizeof *g);
  if (!g)
    return NULL;
  g->s = run.s;
  g->domid = 20 + v;
  run.users++;
  run.vms[v] = g;
  if (xs_domain(g->s, g->domid, c->npages, 1, 1) != 0)
    return g; /* open below fails: the model reports it */
  dmem_xen_guest_options xo = DMEM_XEN_GUEST_OPTIONS_INIT;
  xo.domid = g->domid;
  xo.calls = xs_calls();
  xo.hv = g->s;
  xo.share = c->share;
  xo.sharing_domain = 1; /* the model's VMs share, as one tenant's */
  xo.sources = run.sources;
  if (dmem_xen_guest_create(&g->x, &xo, NULL, 0) != 0)
    g->x = NULL;
  return g;
}

static void xb_destroy(void *p)
{
  xg *g = p;
  dmem_xen_guest_destroy(g->x);
  for (unsigned i = 0; i < MODEL_MAXVM; i++)
    if (run.vms[i] == g)
      run.vms[i] = NULL;
  free(g);
  if (--run.users == 0) {
    dmem_xen_sources_destroy(run.sources);
    run.sources = NULL;
    xs_destroy(run.s);
    run.s = NULL;
  }
}

static void xb_load(void *p, uint64_t gfn, const void *c)
{
  xg *g = p;
  xs_load(g->s, g->domid, gfn, c);
}

static int xb_attach(dmem_vm **out, dmem_engine *e, void *p)
{
  xg *g = p;
  if (!g->x)
    return DMEM_ENOTSUP;
  int rc = dmem_xen_guest_attach(out, e, g->x, "model");
  if (rc == 0)
    g->vm = *out;
  return rc;
}

static int xb_detach(void *p, dmem_vm *vm)
{
  xg *g = p;
  (void)vm;
  return dmem_xen_guest_detach(g->x);
}

static int xb_access(xg *g, int vcpu, uint64_t gfn, int write, size_t off, void *d, size_t len)
{
  if (xs_access(g->s, g->domid, vcpu, gfn, write, off, d, len) == 0)
    return 0;
  /* Where the engine and the adapter think the page is, for the log. */
  dmem_page_kind k = 0;
  dmem_page_state st = 0;
  if (g->vm)
    (void)dmem_vm_page(&k, &st, g->vm, gfn);
  fprintf(stderr, "xen backend: dom%u gfn %llu: engine kind %d state %d; adapter: %s\n",
          (unsigned)g->domid, (unsigned long long)gfn, (int)k, (int)st,
          g->x ? dmem_xen_guest_errmsg(g->x) : "none");
  return DMEM_EIO;
}

static int xb_guest_read(void *p, uint64_t gfn, void *buf)
{
  return xb_access(p, 0, gfn, 0, 0, buf, PAGE);
}

static int xb_write(void *p, uint64_t gfn, size_t off, const void *d, size_t len, unsigned bits)
{
  /* Writes without bits are the VMM's own: a foreign access. */
  return xb_access(p, bits ? 0 : -1, gfn, 1, off, (void *)d, len);
}

static int xb_present(void *p, uint64_t gfn)
{
  xg *g = p;
  int t = xs_type(g->s, g->domid, gfn);
  return t == XS_RAM || t == XS_SHARED || t == XS_PAGING_OUT;
}

static int xb_peek(void *p, uint64_t gfn, void *buf)
{
  xg *g = p;
  if (!xb_present(p, gfn))
    return DMEM_ENOENT;
  return xs_peek(g->s, g->domid, gfn, buf) == 0 ? 0 : DMEM_ENOENT;
}

/* Mapped: sharing its memory with another page in Xen's p2m. */
static int xb_mapped(void *p, uint64_t gfn)
{
  xg *g = p;
  return xs_sharers(g->s, g->domid, gfn) > 1;
}

static void xb_fail(void *p, double prob)
{
  xg *g = p;
  static const xs_call calls[] = {XS_NOMINATE_GFN, XS_SHARE_GFNS,  XS_PAGING_NOMINATE,
                                  XS_PAGING_EVICT, XS_PAGING_PREP, XS_PAGING_LOAD,
                                  XS_MAP,          XS_LOGDIRTY};
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++)
    xs_fail(g->s, calls[i], prob, EIO);
}

/* At the end of a run: every ring request answered, no vCPU left paused. */
static uint64_t xb_violations(void *p, const char **msg)
{
  xg *g = p;
  uint64_t n = xs_requests(g->s) - xs_responses(g->s);
  for (int v = 0; v < XS_MAXVCPU; v++)
    n += (uint64_t)xs_paused(g->s, g->domid, v);
  *msg = n ? "ring requests left unanswered or vCPUs left paused" : "";
  return n;
}

/* Concurrent: the vCPU sleeps while the adapter's own thread serves. */
static void xb_concurrent(void *p, int on)
{
  xg *g = p;
  if (on) {
    xs_set_service(g->s, NULL, NULL);
    ck_assert_int_eq(dmem_xen_guest_start(g->x), 0);
  } else {
    dmem_xen_guest_stop(g->x);
    xs_set_service(g->s, serve_run, NULL);
  }
}

static const model_backend xen_backend = {
    "xen",    xb_create, xb_destroy, xb_load,   xb_attach, xb_detach,     xb_guest_read,
    xb_write, xb_peek,   xb_present, xb_mapped, xb_fail,   xb_violations, xb_concurrent,
};

#define MAXCFG 8

static size_t xen_configs(model_config *c)
{
  return model_configs_env(c, MAXCFG, "DMEM_XEN_MODEL_OPS", &xen_backend);
}

START_TEST(model_through_xen)
{
  model_config c[MAXCFG];
  size_t n = xen_configs(c);
  ck_assert_uint_lt((size_t)_i, n);
  model_run_checked(&c[_i]);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("xen");
  TCase *tc = tcase_create("adapter");
  tcase_add_test(tc, open_refusals);
  tcase_add_test(tc, allocator_hook_used);
  tcase_add_test(tc, open_without_xen);
  tcase_add_test(tc, evict_and_fault_back);
  tcase_add_test(tc, write_after_nominate);
  tcase_add_test(tc, write_before_nominate);
  tcase_add_test(tc, write_at_every_read);
  tcase_add_test(tc, request_during_evict_waits);
  tcase_add_test(tc, close_answers_and_restores);
  tcase_add_test(tc, ring_requests);
  tcase_add_test(tc, load_refused_then_retried);
  tcase_add_test(tc, drop_notice);
  tcase_add_test(tc, sim_sharing_rules);
  tcase_add_test(tc, share_across_domains);
  tcase_add_test(tc, share_without_table_stays_in_guest);
  tcase_add_test(tc, sources_table_counted);
  tcase_add_test(tc, share_refused_after_write);
  tcase_add_test(tc, clones_and_grants);
  tcase_add_test(tc, sharing_ring_enomem);
  suite_add_tcase(s, tc);
  model_config c[MAXCFG];
  TCase *tm = tcase_create("model");
  tcase_set_timeout(tm, 1800);
  tcase_add_loop_test(tm, model_through_xen, 0, (int)xen_configs(c));
  suite_add_tcase(s, tm);
  return s;
}
