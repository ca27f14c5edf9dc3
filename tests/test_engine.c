/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine against its headers (diffmem.h, adapter.h, policy.h), on the
 * in-memory adapter: every clock transition, every technique, faults,
 * hints, detach and destroy, failures of each adapter operation and of
 * each allocation, custom policies and the per-VM accounting. Each test
 * checks the content of the pages (through the guest and dmem_vm_read())
 * and the statistics, not just return codes. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <diffmem/codec.h>
#include <diffmem/diffmem.h>

#include "memadapter.h"
#include "testutil.h"

#define PAGE DMEM_PAGE_SIZE
#define MAXVM 2

enum { FX_SHARE = 1, FX_PROTECT = 2, FX_MAP = 4, FX_SWAP = 8, FX_TS = 16, FX_OWN = 32 };
#define FX_MAPPING (FX_SHARE | FX_PROTECT | FX_MAP)

typedef struct fx {
  dmem_engine_options o;
  dmem_engine *e;
  mem_adapter *m[MAXVM];
  dmem_vm *vm[MAXVM];
  uint8_t *want[MAXVM]; /* expected content, npages * PAGE */
  unsigned nvm;
  uint64_t npages;
  char swap[64];
} fx;

/* ---------------------------------------------------------------- page content */

static void pg_random(uint8_t *b, uint64_t seed)
{
  uint64_t s = seed * 7919 + 1;
  for (unsigned i = 0; i < PAGE; i += 8) {
    uint64_t v = test_rand(&s);
    memcpy(b + i, &v, 8);
  }
}

/* Unique but compressible: words from a small vocabulary (no zero blocks,
 * so that two such pages are not similar). */
static void pg_text(uint8_t *b, uint64_t seed)
{
  static const char *const words[] = {"page ",  "frame ", "guest ", "share ",
                                      "patch ", "clock ", "zero ",  "swap "};
  uint64_t s = seed * 104729 + 3;
  size_t n = 0;
  while (n < PAGE) {
    const char *w = words[test_rand(&s) % 8];
    size_t l = strlen(w) < PAGE - n ? strlen(w) : PAGE - n;
    memcpy(b + n, w, l);
    n += l;
  }
  memcpy(b, &seed, sizeof seed);
}

/* @ref with @nwords 8-byte words changed at spread-out offsets. */
static void pg_similar(uint8_t *b, const uint8_t *ref, uint64_t seed, unsigned nwords)
{
  uint64_t s = seed;
  memcpy(b, ref, PAGE);
  for (unsigned i = 0; i < nwords; i++) {
    uint64_t v = test_rand(&s);
    memcpy(b + (i * 1031 * 8 + 24) % PAGE / 8 * 8, &v, 8);
  }
}

/* ---------------------------------------------------------------- fixture */

static void fx_init(fx *f, unsigned nvm, uint64_t npages, unsigned flags)
{
  memset(f, 0, sizeof *f);
  f->o = (dmem_engine_options)DMEM_ENGINE_OPTIONS_INIT;
  f->o.seed = 0x5eed;
  f->o.c4_passes = 3;
  f->o.slice_pages = (unsigned)npages;
  f->o.map_shared = (flags & FX_MAP) != 0;
  f->nvm = nvm;
  f->npages = npages;
  if (flags & FX_SWAP) {
    snprintf(f->swap, sizeof f->swap, "/tmp/dmem-test-swap.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->swap));
    f->o.swap_dir = f->swap;
    f->o.store_limit_bytes = 1;
  }
  for (unsigned v = 0; v < nvm; v++) {
    /* The fixture's VMs are one tenant's (one sharing domain) unless the
     * test says otherwise. */
    mem_options mo = {npages,
                      (flags & FX_SHARE) != 0,
                      (flags & FX_PROTECT) != 0,
                      (flags & FX_TS) != 0,
                      77 + v,
                      (flags & FX_OWN) ? DMEM_DOMAIN_OWN : 1};
    f->m[v] = mem_create(&mo);
    f->want[v] = calloc(npages, PAGE);
    ck_assert(f->m[v] && f->want[v]);
  }
}

static void fx_start(fx *f)
{
  ck_assert_int_eq(dmem_engine_create(&f->e, &f->o), 0);
  for (unsigned v = 0; v < f->nvm; v++)
    ck_assert_int_eq(mem_attach(&f->vm[v], f->e, f->m[v], v ? "vm1" : "vm0"), 0);
}

static uint8_t *fx_want(fx *f, unsigned v, uint64_t gfn)
{
  return f->want[v] + gfn * PAGE;
}

/* Sets a page's content before the engine runs. */
static void fx_set(fx *f, unsigned v, uint64_t gfn, const uint8_t *content)
{
  memcpy(fx_want(f, v, gfn), content, PAGE);
  mem_load(f->m[v], gfn, content);
}

static void fx_write(fx *f, unsigned v, uint64_t gfn, size_t off, const void *d, size_t len)
{
  ck_assert_int_eq(mem_guest_write(f->m[v], gfn, off, d, len), 0);
  memcpy(fx_want(f, v, gfn) + off, d, len);
}

static void fx_touch(fx *f, unsigned v, uint64_t gfn)
{
  uint8_t buf[PAGE];
  ck_assert_int_eq(mem_guest_read(f->m[v], gfn, buf), 0);
  ck_assert_mem_eq(buf, fx_want(f, v, gfn), PAGE);
}

static dmem_page_kind fx_kind(fx *f, unsigned v, uint64_t gfn)
{
  dmem_page_kind k;
  dmem_page_state s;
  ck_assert_int_eq(dmem_vm_page(&k, &s, f->vm[v], gfn), 0);
  return k;
}

static dmem_page_state fx_state(fx *f, unsigned v, uint64_t gfn)
{
  dmem_page_kind k;
  dmem_page_state s;
  ck_assert_int_eq(dmem_vm_page(&k, &s, f->vm[v], gfn), 0);
  return s;
}

static dmem_stats fx_es(fx *f)
{
  dmem_stats s = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_engine_stats(&s, f->e), 0);
  return s;
}

static dmem_stats fx_vs(fx *f, unsigned v)
{
  dmem_stats s = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&s, f->vm[v]), 0);
  return s;
}

static uint64_t kinds_sum(const dmem_stats *s)
{
  return s->resident + s->mapped + s->zero + s->shared + s->patched + s->compressed + s->swapped;
}

/* Where the engine says a page lives agrees with the adapter: evicted
 * pages are absent, and only a page the engine calls MAPPED may be mapped
 * (the reverse need not hold: a guest write breaks the mapping first). */
static void fx_check_where(fx *f, unsigned v, uint64_t g, dmem_page_kind k)
{
  int resident = k == DMEM_PAGE_RESIDENT || k == DMEM_PAGE_MAPPED;
  ck_assert_msg(mem_present(f->m[v], g) == resident, "vm%u gfn %llu: kind %d but %s", v,
                (unsigned long long)g, (int)k, resident ? "absent" : "present");
  ck_assert_msg(k == DMEM_PAGE_MAPPED || !mem_mapped(f->m[v], g),
                "vm%u gfn %llu: kind %d but the adapter still maps frame", v, (unsigned long long)g,
                (int)k);
}

/* The statistics agree with themselves, with dmem_vm_page(), with the
 * adapter and across VMs. */
static void fx_check_stats(fx *f)
{
  dmem_stats es = fx_es(f), sum;
  memset(&sum, 0, sizeof sum);
  for (unsigned v = 0; v < f->nvm; v++) {
    dmem_stats vs = fx_vs(f, v);
    uint64_t kinds[7] = {0}, states[5] = {0};
    for (uint64_t g = 0; g < f->npages; g++) {
      dmem_page_kind k;
      dmem_page_state s;
      ck_assert_int_eq(dmem_vm_page(&k, &s, f->vm[v], g), 0);
      ck_assert(k <= DMEM_PAGE_SWAPPED && s >= DMEM_C1 && s <= DMEM_C4);
      fx_check_where(f, v, g, k);
      kinds[k]++, states[s]++;
    }
    uint64_t got[7] = {vs.resident, vs.mapped,     vs.zero,   vs.shared,
                       vs.patched,  vs.compressed, vs.swapped};
    for (int k = 0; k < 7; k++)
      ck_assert_msg(got[k] == kinds[k], "vm%u kind %d: stats %llu, pages %llu", v, k,
                    (unsigned long long)got[k], (unsigned long long)kinds[k]);
    for (int s = 1; s <= 4; s++)
      ck_assert_uint_eq(vs.state[s], states[s]);
    ck_assert_uint_eq(vs.pages, f->npages);
    sum.pages += vs.pages, sum.resident += vs.resident, sum.zero += vs.zero;
    sum.entitlement_bytes += vs.entitlement_bytes;
  }
  ck_assert_uint_eq(es.pages, sum.pages);
  ck_assert_uint_eq(es.resident, sum.resident);
  ck_assert_uint_eq(es.zero, sum.zero);
  ck_assert_uint_eq(kinds_sum(&es), es.pages);
  ck_assert_int_eq(es.entitlement_bytes, sum.entitlement_bytes);
  ck_assert_int_eq(es.bytes_saved,
                   (int64_t)((es.pages - es.resident) * PAGE) - (int64_t)es.store_bytes);
  for (unsigned v = 0; v < f->nvm; v++) {
    for (uint64_t g = 0; g < f->npages; g++)
      ck_assert_msg(!mem_protected(f->m[v], g), "vm%u gfn %llu left protected", v,
                    (unsigned long long)g);
    ck_assert_msg(mem_violations(f->m[v]) == 0, "adapter contract: %s", mem_violation_msg(f->m[v]));
  }
}

/* One full pass over every VM. */
static void fx_pass(fx *f)
{
  size_t visited = 0;
  size_t budget = f->nvm * f->npages;
  ck_assert_int_eq(dmem_engine_scan(&visited, f->e, budget), 0);
  ck_assert_uint_eq(visited, budget);
  fx_check_stats(f);
}

/* Every page reads back as expected through the engine. */
static void fx_verify(fx *f)
{
  uint8_t buf[PAGE];
  for (unsigned v = 0; v < f->nvm; v++)
    for (uint64_t g = 0; g < f->npages; g++) {
      ck_assert_int_eq(dmem_vm_read(buf, f->vm[v], g), 0);
      ck_assert_msg(memcmp(buf, fx_want(f, v, g), PAGE) == 0, "vm%u gfn %llu differs (kind %d)", v,
                    (unsigned long long)g, (int)fx_kind(f, v, g));
    }
}

/* After detach or destroy: the adapter holds every page, privately. */
static void fx_verify_adapter(fx *f)
{
  uint8_t buf[PAGE];
  for (unsigned v = 0; v < f->nvm; v++)
    for (uint64_t g = 0; g < f->npages; g++) {
      ck_assert_msg(mem_present(f->m[v], g) && !mem_mapped(f->m[v], g),
                    "vm%u gfn %llu not restored", v, (unsigned long long)g);
      ck_assert_int_eq(mem_peek(f->m[v], g, buf), 0);
      ck_assert_msg(memcmp(buf, fx_want(f, v, g), PAGE) == 0, "vm%u gfn %llu restored wrong", v,
                    (unsigned long long)g);
    }
}

static void fx_no_violations(fx *f)
{
  for (unsigned v = 0; v < f->nvm; v++)
    ck_assert_msg(mem_violations(f->m[v]) == 0, "adapter contract: %s", mem_violation_msg(f->m[v]));
}

/* Detaches every VM (checking the adapters), destroys the engine. */
static void fx_end(fx *f)
{
  for (unsigned v = 0; v < f->nvm; v++)
    if (f->vm[v]) {
      ck_assert_int_eq(dmem_vm_detach(f->vm[v]), 0);
      f->vm[v] = NULL;
      mem_set_vm(f->m[v], NULL);
    }
  fx_verify_adapter(f);
  dmem_stats es = fx_es(f);
  ck_assert_uint_eq(es.pages, 0);
  ck_assert_uint_eq(es.frames, 0);
  ck_assert_uint_eq(es.store_bytes, 0);
  dmem_engine_destroy(f->e);
  fx_no_violations(f);
  if (f->swap[0])
    ck_assert_msg(rmdir(f->swap) == 0, "swap directory %s: %s (a file left behind?)", f->swap,
                  strerror(errno));
  for (unsigned v = 0; v < f->nvm; v++) {
    mem_destroy(f->m[v]);
    free(f->want[v]);
  }
}

/* Fills pages with distinct random content from @first on. */
static void fx_random(fx *f, unsigned v, uint64_t first, uint64_t n, uint64_t seed)
{
  uint8_t b[PAGE];
  for (uint64_t g = first; g < first + n; g++) {
    pg_random(b, seed * 1000 + g * 10 + v);
    fx_set(f, v, g, b);
  }
}

static void expect_states(fx *f, unsigned v, const char *states)
{
  for (uint64_t g = 0; states[g]; g++)
    ck_assert_msg(fx_state(f, v, g) == (dmem_page_state)(states[g] - '0'),
                  "vm%u gfn %llu: state C%d, want C%c", v, (unsigned long long)g,
                  (int)fx_state(f, v, g), states[g]);
}

static void expect_kind(fx *f, unsigned v, uint64_t first, uint64_t n, dmem_page_kind k)
{
  for (uint64_t g = first; g < first + n; g++)
    ck_assert_msg(fx_kind(f, v, g) == k, "vm%u gfn %llu: kind %d, want %d", v,
                  (unsigned long long)g, (int)fx_kind(f, v, g), (int)k);
}

static void touch_all(fx *f)
{
  for (unsigned v = 0; v < f->nvm; v++)
    for (uint64_t g = 0; g < f->npages; g++)
      fx_touch(f, v, g);
}

/* ---------------------------------------------------------------- API edges */

/* dmem_stats carries the version its caller knows; another is refused, and
 * nothing is written. */
START_TEST(stats_version_checked)
{
  fx f;
  fx_init(&f, 1, 8, 0);
  fx_start(&f);
  for (unsigned v = 0; v < 3; v += 2) {
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
  ck_assert_int_eq(dmem_engine_stats(NULL, f.e), DMEM_EINVAL);
  ck_assert_int_eq(dmem_vm_stats(&s, NULL), DMEM_EINVAL);
  fx_end(&f);
}
END_TEST

START_TEST(options_validated)
{
  dmem_engine *e = NULL;
  dmem_engine_options o = DMEM_ENGINE_OPTIONS_INIT;
  o.version = DMEM_ENGINE_OPTIONS_VERSION + 1;
  ck_assert_int_eq(dmem_engine_create(&e, &o), DMEM_EVERSION);
  o = (dmem_engine_options)DMEM_ENGINE_OPTIONS_INIT;
  o.c4_passes = 1;
  ck_assert_int_eq(dmem_engine_create(&e, &o), DMEM_EINVAL);
  o.c4_passes = 0;
  ck_assert_int_eq(dmem_engine_create(&e, &o), DMEM_EINVAL);
  o = (dmem_engine_options)DMEM_ENGINE_OPTIONS_INIT;
  o.slice_pages = 0;
  ck_assert_int_eq(dmem_engine_create(&e, &o), DMEM_EINVAL);
  o = (dmem_engine_options)DMEM_ENGINE_OPTIONS_INIT;
  o.c4_passes = 2;
  ck_assert_int_eq(dmem_engine_create(&e, &o), 0);
  ck_assert_ptr_nonnull(dmem_engine_errmsg(e));
  dmem_engine_destroy(e);
  dmem_engine_destroy(NULL);
}
END_TEST

/* An allocator that says when it hands out a block of at least `big`
 * bytes (a big VM's page table). */
typedef struct big_alloc {
  size_t big;
  int handed; /* atomic */
} big_alloc;

static void *ba_alloc(size_t size, size_t align, void *ud)
{
  big_alloc *b = ud;
  void *p = NULL;
  if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size) != 0)
    return NULL;
  if (size >= b->big)
    __atomic_store_n(&b->handed, 1, __ATOMIC_RELEASE);
  return p;
}

static void ba_free(void *p, size_t size, void *ud)
{
  (void)size;
  (void)ud;
  free(p);
}

static int never_read(void *buf, uint64_t gfn, void *ud)
{
  (void)buf, (void)gfn, (void)ud;
  return DMEM_EIO;
}

static int never_bits(uint8_t *out, uint64_t first, size_t n, void *ud)
{
  (void)out, (void)first, (void)n, (void)ud;
  return DMEM_EIO;
}

static int never_evict(uint64_t gfn, void *ud)
{
  (void)gfn, (void)ud;
  return DMEM_EIO;
}

static int never_install(uint64_t gfn, const void *content, void *ud)
{
  (void)gfn, (void)content, (void)ud;
  return DMEM_EIO;
}

typedef struct attacher {
  dmem_engine *e;
  const dmem_adapter_ops *ops;
  uint64_t npages;
  dmem_vm *vm;
  int rc;
  int done; /* atomic */
} attacher;

static void *attach_main(void *arg)
{
  attacher *a = arg;
  dmem_vm_options vo = DMEM_VM_OPTIONS_INIT;
  vo.ops = a->ops;
  vo.npages = a->npages;
  a->rc = dmem_vm_attach(&a->vm, a->e, &vo);
  __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

/* Attaching a big VM fills its page table without the engine's lock: the
 * engine answers another thread while it does (it once held the lock for
 * 3.4 s over 10^8 pages). */
START_TEST(attach_fills_pages_unlocked)
{
  enum { NPAGES = 20 * 1000 * 1000 };
  big_alloc b = {.big = (size_t)NPAGES * 4};
  dmem_allocator hook = {ba_alloc, ba_free, &b};
  dmem_engine_options o = DMEM_ENGINE_OPTIONS_INIT;
  o.allocator = &hook;
  dmem_engine *e = NULL;
  ck_assert_int_eq(dmem_engine_create(&e, &o), 0);
  static const dmem_adapter_ops ops = {.version = DMEM_ADAPTER_OPS_VERSION,
                                       .read = never_read,
                                       .bits = never_bits,
                                       .evict = never_evict,
                                       .install = never_install};
  attacher a = {.e = e, .ops = &ops, .npages = NPAGES};
  pthread_t th;
  ck_assert_int_eq(pthread_create(&th, NULL, attach_main, &a), 0);
  while (!__atomic_load_n(&b.handed, __ATOMIC_ACQUIRE))
    ;
  dmem_stats st = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_engine_stats(&st, e), 0); /* takes the engine's lock */
  int attach_done = __atomic_load_n(&a.done, __ATOMIC_ACQUIRE);
  ck_assert_int_eq(pthread_join(th, NULL), 0);
  ck_assert_int_eq(a.rc, 0);
  ck_assert_msg(!attach_done, "the engine's lock was held while %d pages were filled", NPAGES);
  ck_assert_int_eq(dmem_vm_stats(&st, a.vm), 0);
  ck_assert_uint_eq(st.resident, NPAGES);
  ck_assert_uint_eq(st.state[DMEM_C1], NPAGES);
  ck_assert_int_eq(dmem_vm_detach(a.vm), 0);
  dmem_engine_destroy(e);
}
END_TEST

START_TEST(attach_and_ranges)
{
  fx f;
  uint8_t buf[PAGE];
  dmem_page_kind k;
  dmem_page_state st;
  fx_init(&f, 2, 4, 0);
  fx_random(&f, 0, 0, 4, 1);
  fx_start(&f);
  ck_assert_uint_ne(dmem_vm_id(f.vm[0]), dmem_vm_id(f.vm[1]));
  dmem_vm *vm;
  dmem_vm_options vo = DMEM_VM_OPTIONS_INIT;
  vo.npages = 4;
  ck_assert_int_eq(dmem_vm_attach(&vm, f.e, &vo), DMEM_EINVAL);
  vo.ops = mem_ops(f.m[0]);
  vo.ud = f.m[0];
  vo.npages = 0;
  ck_assert_int_eq(dmem_vm_attach(&vm, f.e, &vo), DMEM_EINVAL);
  ck_assert_int_eq(dmem_vm_fault(f.vm[0], 4), DMEM_ERANGE);
  ck_assert_int_eq(dmem_vm_read(buf, f.vm[0], 4), DMEM_ERANGE);
  ck_assert_int_eq(dmem_vm_page(&k, &st, f.vm[0], 4), DMEM_ERANGE);
  ck_assert_int_eq(dmem_vm_io_hint(f.vm[0], 3, 2), DMEM_ERANGE);
  ck_assert_int_eq(dmem_vm_dirty(f.vm[0], 4, 1), DMEM_ERANGE);
  ck_assert_int_eq(dmem_vm_dirty(f.vm[0], 2, 3), DMEM_ERANGE);
  expect_states(&f, 0, "1111");
  expect_kind(&f, 1, 0, 4, DMEM_PAGE_RESIDENT);
  dmem_stats vs = fx_vs(&f, 0);
  ck_assert_uint_eq(vs.pages, 4);
  ck_assert_uint_eq(vs.resident, 4);
  ck_assert_uint_eq(vs.state[1], 4);
  ck_assert_uint_eq(fx_es(&f).pages, 8);
  /* A fault on a resident page does nothing. */
  ck_assert_int_eq(dmem_vm_fault(f.vm[0], 2), 0);
  ck_assert_uint_eq(mem_calls(f.m[0], MEM_OP_INSTALL), 0);
  ck_assert_uint_eq(fx_es(&f).faults, 0);
  fx_check_stats(&f);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

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

/* ---------------------------------------------------------------- patch, compress, swap */

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

/* Compressible pages 0..3, random 4..5, swap under pressure; passes until
 * page 0..@n-1 are all swapped. */
static void swap_setup(fx *f, unsigned n)
{
  uint8_t t[PAGE];
  fx_init(f, 1, 6, FX_SWAP);
  fx_random(f, 0, 4, 2, 10);
  for (uint64_t g = 0; g < 4; g++) {
    pg_text(t, 20 + g);
    fx_set(f, 0, g, t);
  }
  fx_start(f);
  struct stat st;
  ck_assert_msg(stat(f->swap, &st) == 0, "no swap file at %s", f->swap);
  for (unsigned pass = 0; pass < f->o.c4_passes + 4; pass++) {
    unsigned swapped = 0;
    for (uint64_t g = 0; g < n; g++)
      swapped += fx_kind(f, 0, g) == DMEM_PAGE_SWAPPED;
    if (swapped == n)
      return;
    fx_pass(f);
  }
  ck_abort_msg("pages not swapped out");
}

START_TEST(swapped_under_pressure)
{
  fx f;
  swap_setup(&f, 4);
  dmem_stats es = fx_es(&f);
  ck_assert_uint_ge(es.swapped, 4);
  ck_assert_uint_gt(es.swap_bytes, 0);
  ck_assert(!mem_present(f.m[0], 0));
  fx_verify(&f);
  for (uint64_t g = 0; g < 4; g++) {
    fx_touch(&f, 0, g);
    ck_assert_int_eq(fx_kind(&f, 0, g), DMEM_PAGE_RESIDENT);
    ck_assert_int_eq(fx_state(&f, 0, g), DMEM_C1);
  }
  fx_check_stats(&f);
  fx_end(&f);
}
END_TEST

START_TEST(swap_needs_pressure)
{
  fx f;
  uint8_t t[PAGE];
  fx_init(&f, 1, 4, FX_SWAP);
  f.o.store_limit_bytes = 0; /* never under pressure */
  fx_random(&f, 0, 1, 3, 11);
  pg_text(t, 30);
  fx_set(&f, 0, 0, t);
  fx_start(&f);
  for (unsigned i = 0; i < f.o.c4_passes + 3; i++)
    fx_pass(&f);
  expect_kind(&f, 0, 0, 1, DMEM_PAGE_COMPRESSED);
  expect_kind(&f, 0, 1, 3, DMEM_PAGE_RESIDENT);
  ck_assert_uint_eq(fx_es(&f).swapped, 0);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

/* The engine's unnamed swap file in dir, found through /proc/self/fd
 * (its link reads "DIR/#INODE (deleted)"), opened again; -1 if none. */
static int swap_file_fd(const char *dir)
{
  DIR *d = opendir("/proc/self/fd");
  ck_assert_ptr_nonnull(d);
  int fd = -1;
  size_t dl = strlen(dir);
  struct dirent *de;
  while (fd < 0 && (de = readdir(d))) {
    char path[300], link[300];
    snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n <= 0)
      continue;
    link[n] = 0;
    if (strncmp(link, dir, dl) == 0 && link[dl] == '/' && strstr(link, "(deleted)"))
      fd = open(path, O_RDWR | O_CLOEXEC);
  }
  closedir(d);
  return fd;
}

START_TEST(swap_corruption_detected)
{
  fx f;
  uint8_t buf[PAGE];
  swap_setup(&f, 1);
  int fd = swap_file_fd(f.swap);
  ck_assert_int_ge(fd, 0);
  struct stat st;
  ck_assert_int_eq(fstat(fd, &st), 0);
  ck_assert_int_gt(st.st_size, 0);
  memset(buf, 0xa5, PAGE);
  for (off_t off = 0; off < st.st_size; off += PAGE)
    ck_assert_int_gt(pwrite(fd, buf, PAGE, off), 0);
  close(fd);
  uint64_t installs = mem_calls(f.m[0], MEM_OP_INSTALL);
  uint64_t errors = fx_es(&f).errors;
  int rc = dmem_vm_fault(f.vm[0], 0);
  ck_assert_msg(rc == DMEM_ECORRUPT || rc == DMEM_EIO, "fault: %s", dmem_err_name(rc));
  ck_assert_int_eq(fx_kind(&f, 0, 0), DMEM_PAGE_SWAPPED);
  ck_assert(!mem_present(f.m[0], 0));
  ck_assert_uint_eq(mem_calls(f.m[0], MEM_OP_INSTALL), installs);
  ck_assert_uint_gt(fx_es(&f).errors, errors);
  rc = dmem_vm_read(buf, f.vm[0], 0);
  ck_assert_msg(rc == DMEM_ECORRUPT || rc == DMEM_EIO, "read: %s", dmem_err_name(rc));
  rc = mem_guest_read(f.m[0], 0, buf);
  ck_assert_msg(rc == DMEM_ECORRUPT || rc == DMEM_EIO, "guest: %s", dmem_err_name(rc));
  ck_assert_int_ne(dmem_vm_detach(f.vm[0]), 0);
  ck_assert_int_eq(fx_kind(&f, 0, 0), DMEM_PAGE_SWAPPED); /* still attached */
  fx_check_stats(&f);
  dmem_engine_destroy(f.e);
  ck_assert_msg(rmdir(f.swap) == 0, "swap directory %s: %s", f.swap, strerror(errno));
  fx_no_violations(&f);
  mem_destroy(f.m[0]);
  free(f.want[0]);
}
END_TEST

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

/* ---------------------------------------------------------------- detach, destroy */

/* 16 pages: zero 0-1, identical 2-3, reference 4 and similar 5,
 * compressible 6-7, random 8-15. */
static void fx_mixed(fx *f, unsigned v)
{
  uint8_t b[PAGE], r[PAGE];
  fx_random(f, v, 8, 8, 14 + v);
  pg_random(b, 1006);
  fx_set(f, v, 2, b), fx_set(f, v, 3, b);
  pg_random(r, 1007 + v);
  fx_set(f, v, 4, r);
  pg_similar(b, r, 6, 2);
  fx_set(f, v, 5, b);
  pg_text(b, 40 + v);
  fx_set(f, v, 6, b);
  pg_text(b, 50 + v);
  fx_set(f, v, 7, b);
}

/* Passes with gfn 4 kept referenced; returns the kinds seen, as bits. */
static unsigned fx_cycle(fx *f, unsigned passes)
{
  unsigned seen = 0;
  for (unsigned i = 0; i < passes; i++) {
    for (unsigned v = 0; v < f->nvm; v++)
      fx_touch(f, v, 4);
    fx_pass(f);
    for (unsigned v = 0; v < f->nvm; v++)
      for (uint64_t g = 0; g < f->npages; g++)
        seen |= 1u << fx_kind(f, v, g);
  }
  return seen;
}

static const unsigned restore_flags[] = {0, FX_MAPPING, FX_SWAP};

START_TEST(detach_restores)
{
  fx f;
  fx_init(&f, 1, 16, restore_flags[_i]);
  fx_mixed(&f, 0);
  fx_start(&f);
  unsigned seen = fx_cycle(&f, f.o.c4_passes + 3);
  unsigned want = 1u << DMEM_PAGE_ZERO | 1u << DMEM_PAGE_SHARED | 1u << DMEM_PAGE_PATCHED |
                  1u << DMEM_PAGE_COMPRESSED;
  if (f.swap[0])
    want |= 1u << DMEM_PAGE_SWAPPED;
  ck_assert_msg((seen & want) == want, "kinds seen %#x, want %#x", seen, want);
  fx_verify(&f);
  fx_end(&f); /* detach: every page back in the adapter, privately */
}
END_TEST

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

/* A half allocator hook (alloc or free missing) is refused by every
 * object, never replaced by the C library's behind the caller's back; and
 * dmem_vm_id(NULL) answers instead of crashing. */
static void *only_alloc(size_t size, size_t align, void *ud)
{
  (void)ud;
  return aligned_alloc(align, (size + align - 1) / align * align);
}

START_TEST(half_allocator_refused)
{
  dmem_allocator half = {only_alloc, NULL, NULL};
  dmem_engine_options o = DMEM_ENGINE_OPTIONS_INIT;
  o.allocator = &half;
  dmem_engine *e = NULL;
  ck_assert_int_eq(dmem_engine_create(&e, &o), DMEM_EINVAL);
  ck_assert_ptr_null(e);
  dmem_index_options io = DMEM_INDEX_OPTIONS_INIT;
  io.allocator = &half;
  dmem_index *x = NULL;
  ck_assert_int_eq(dmem_index_create(&x, &io), DMEM_EINVAL);
  dmem_simdet_options so = DMEM_SIMDET_OPTIONS_INIT;
  so.allocator = &half;
  dmem_simdet *d = NULL;
  ck_assert_int_eq(dmem_simdet_create(&d, &so), DMEM_EINVAL);
  o.allocator = NULL;
  o.codec_best_mask = 1u << 12;
  ck_assert_int_eq(dmem_engine_create(&e, &o), DMEM_EINVAL);
  ck_assert_uint_eq(dmem_vm_id(NULL), UINT32_MAX);
}
END_TEST

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

/* Options of version 2 (before `secure`) are still taken, as secure off. */
START_TEST(engine_options_v2_accepted)
{
  dmem_engine_options o = DMEM_ENGINE_OPTIONS_INIT;
  o.version = 2;
  o.secure = 7; /* beyond a version-2 struct: never read */
  dmem_engine *e = NULL;
  ck_assert_int_eq(dmem_engine_create(&e, &o), 0);
  dmem_engine_destroy(e);
  o.version = 1;
  ck_assert_int_eq(dmem_engine_create(&e, &o), DMEM_EVERSION);
}
END_TEST

/* Journals: at every instant, each page the adapter does not hold can be
 * rebuilt from its VM's journal and the store's descriptors alone, as a
 * process would after the engine's died. Checked inside every evict and
 * install (the instants a page leaves or comes back), and after every
 * pass and fault, over two VMs with every technique and the swap file. */
static struct {
  mem_adapter *m[MAXVM];
  uint8_t *journal[MAXVM];
  size_t size;
  dmem_journal_store st;
  dmem_codec *codec;
  const dmem_adapter_ops *real;
  uint64_t checks;
} J;

static unsigned j_vm(void *ud)
{
  for (unsigned v = 0; v < MAXVM; v++)
    if (J.m[v] == ud)
      return v;
  ck_abort_msg("unknown adapter");
  return 0;
}

static int j_evict(uint64_t gfn, void *ud)
{
  unsigned v = j_vm(ud);
  uint8_t now[PAGE], got[PAGE];
  ck_assert_int_eq(mem_peek(ud, gfn, now), 0);
  /* About to leave guest memory: the journal must already rebuild it. */
  int rc = dmem_journal_page(got, J.journal[v], J.size, gfn, &J.st, J.codec);
  ck_assert_msg(rc == 1, "vm%u gfn %llu evicted with journal answer %d", v, (unsigned long long)gfn,
                rc);
  ck_assert_mem_eq(got, now, PAGE);
  J.checks++;
  return J.real->evict(gfn, ud);
}

static int j_install(uint64_t gfn, const void *content, void *ud)
{
  unsigned v = j_vm(ud);
  uint8_t got[PAGE];
  int present = mem_present(ud, gfn);
  int rc = dmem_journal_page(got, J.journal[v], J.size, gfn, &J.st, J.codec);
  /* Still away: the journal still finds it, and it is what comes back. */
  if (!present) {
    ck_assert_int_eq(rc, 1);
    ck_assert_mem_eq(got, content, PAGE);
    J.checks++;
  }
  return J.real->install(gfn, content, ud);
}

static void j_check_all(fx *f)
{
  uint8_t got[PAGE];
  for (unsigned v = 0; v < f->nvm; v++)
    for (uint64_t g = 0; g < f->npages; g++) {
      int rc = dmem_journal_page(got, J.journal[v], J.size, g, &J.st, J.codec);
      if (mem_present(f->m[v], g)) {
        ck_assert_msg(rc == 0, "vm%u gfn %llu present, journal says %d", v, (unsigned long long)g,
                      rc);
      } else {
        ck_assert_msg(rc == 1, "vm%u gfn %llu away, journal says %d", v, (unsigned long long)g, rc);
        ck_assert_mem_eq(got, fx_want(f, v, g), PAGE);
      }
    }
}

START_TEST(journal_rebuilds_every_page)
{
  fx f;
  fx_init(&f, 2, 16, FX_SHARE | FX_PROTECT | FX_SWAP);
  for (unsigned v = 0; v < 2; v++)
    fx_mixed(&f, v);
  ck_assert_int_eq(dmem_engine_create(&f.e, &f.o), 0);
  ck_assert_int_eq(dmem_engine_store_fds(f.e, &J.st.blobs_fd, &J.st.swap_fd), 0);
  ck_assert_int_ge(J.st.swap_fd, 0);
  ck_assert_int_eq(dmem_codec_create(&J.codec, NULL), 0);
  static dmem_adapter_ops ops;
  J.real = mem_ops(f.m[0]);
  ops = *J.real;
  ops.evict = j_evict;
  ops.install = j_install;
  ops.share = NULL; /* a journal's pages are evicted, never mapped */
  J.size = dmem_journal_size(f.npages);
  J.checks = 0;
  for (unsigned v = 0; v < 2; v++) {
    J.m[v] = f.m[v];
    J.journal[v] = aligned_alloc(64, (J.size + 63) / 64 * 64);
    ck_assert_ptr_nonnull(J.journal[v]);
    dmem_vm_options o = DMEM_VM_OPTIONS_INIT;
    o.ops = &ops;
    o.ud = f.m[v];
    o.npages = f.npages;
    o.sharing_domain = 1;
    ck_assert_int_eq(dmem_vm_attach(&f.vm[v], f.e, &o), 0);
    mem_set_vm(f.m[v], f.vm[v]);
    ck_assert_int_eq(dmem_vm_set_journal(f.vm[v], J.journal[v], J.size - 8), DMEM_EINVAL);
    ck_assert_int_eq(dmem_vm_set_journal(f.vm[v], J.journal[v], J.size), 0);
  }
  /* One domain: one frames memfd. */
  J.st.frames_fd = dmem_vm_frames_fd(f.vm[0]);
  ck_assert_int_ge(J.st.frames_fd, 0);
  ck_assert_int_eq(dmem_vm_frames_fd(f.vm[1]), J.st.frames_fd);
  unsigned seen = 0;
  for (unsigned i = 0; i < f.o.c4_passes + 4; i++) {
    fx_pass(&f);
    j_check_all(&f);
    for (unsigned v = 0; v < 2; v++)
      for (uint64_t g = 0; g < f.npages; g++)
        seen |= 1u << fx_kind(&f, v, g);
    /* Fault some back, write one, and check again. */
    fx_touch(&f, 0, i % f.npages);
    fx_write(&f, 1, (i * 5) % f.npages, 8, "journal", 7);
    j_check_all(&f);
  }
  ck_assert_msg(seen & (1u << DMEM_PAGE_SHARED), "no shared page");
  ck_assert_msg(seen & (1u << DMEM_PAGE_ZERO), "no zero page");
  ck_assert_msg(seen & ((1u << DMEM_PAGE_COMPRESSED) | (1u << DMEM_PAGE_SWAPPED)),
                "no compressed or swapped page");
  ck_assert_uint_gt(J.checks, 20);
  /* Another layout, or a page beyond it, is refused. */
  uint8_t got[PAGE];
  ck_assert_int_eq(dmem_journal_page(got, J.journal[0], J.size, f.npages, &J.st, J.codec),
                   DMEM_ERANGE);
  J.journal[0][4] ^= 0xff; /* the version */
  ck_assert_int_eq(dmem_journal_page(got, J.journal[0], J.size, 0, &J.st, J.codec), DMEM_EVERSION);
  J.journal[0][4] ^= 0xff;
  fx_verify(&f);
  fx_end(&f);
  /* Detached: every entry says "in guest memory". */
  for (unsigned v = 0; v < 2; v++) {
    for (uint64_t g = 0; g < 16; g++)
      ck_assert_int_eq(dmem_journal_page(got, J.journal[v], J.size, g, &J.st, J.codec), 0);
    free(J.journal[v]);
  }
  dmem_codec_destroy(J.codec);
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

static int dir_entries(const char *dir)
{
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
  closedir(d);
  return n;
}

/* The swap file has no name: nothing appears in its directory while pages
 * are swapped, nothing is left after destroy. No name the caller gives is
 * ever opened as the file itself: a regular file, a symlink planted to
 * one, a device and a missing directory are refused, and stay as they
 * were (the engine once truncated and removed whatever swap_path named,
 * /dev/null included). */
START_TEST(swap_file_is_unnamed)
{
  char dir[] = "/tmp/dmem-swap-safety.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char victim[64], link[64];
  snprintf(victim, sizeof victim, "%s/victim", dir);
  snprintf(link, sizeof link, "%s/link", dir);
  int fd = open(victim, O_WRONLY | O_CREAT | O_EXCL, 0644);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, "precious", 8), 8);
  close(fd);
  ck_assert_int_eq(chmod(victim, 0644), 0);
  ck_assert_int_eq(symlink(victim, link), 0);
  const char *refused[] = {victim, link, "/dev/null", "/nonexistent-dmem-dir"};
  dmem_engine_options o = DMEM_ENGINE_OPTIONS_INIT;
  o.seed = 9;
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    dmem_engine *e = NULL;
    o.swap_dir = refused[i];
    ck_assert_int_eq(dmem_engine_create(&e, &o), DMEM_EINVAL);
    ck_assert_ptr_null(e);
  }
  struct stat st;
  ck_assert_int_eq(stat(victim, &st), 0);
  ck_assert_int_eq(st.st_size, 8);
  ck_assert_int_eq(st.st_mode & 0777, 0644);
  ck_assert_int_eq(lstat(link, &st), 0);
  ck_assert(S_ISLNK(st.st_mode));
  ck_assert_int_eq(stat("/dev/null", &st), 0);
  ck_assert(S_ISCHR(st.st_mode));

  /* A good directory: pages go to swap, and the directory stays as it was. */
  fx f;
  fx_init(&f, 1, 16, FX_SWAP);
  fx_mixed(&f, 0);
  fx_start(&f);
  ck_assert_uint_ne(fx_cycle(&f, f.o.c4_passes + 3) & (1u << DMEM_PAGE_SWAPPED), 0);
  ck_assert_int_eq(dir_entries(f.swap), 0);
  fx_verify(&f);
  fx_end(&f); /* also: rmdir of f.swap succeeds, so nothing was left */

  /* The planted files are untouched by all of it. */
  ck_assert_int_eq(stat(victim, &st), 0);
  ck_assert_int_eq(st.st_size, 8);
  ck_assert_int_eq(unlink(link), 0);
  ck_assert_int_eq(unlink(victim), 0);
  ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(destroy_restores)
{
  fx f;
  fx_init(&f, 2, 16, restore_flags[_i]);
  fx_mixed(&f, 0), fx_mixed(&f, 1);
  fx_start(&f);
  unsigned seen = fx_cycle(&f, f.o.c4_passes + 3);
  ck_assert(seen & (1u << DMEM_PAGE_PATCHED));
  dmem_engine_destroy(f.e);
  fx_verify_adapter(&f);
  fx_no_violations(&f);
  if (f.swap[0])
    ck_assert_msg(rmdir(f.swap) == 0, "swap directory %s: %s", f.swap, strerror(errno));
  for (unsigned v = 0; v < 2; v++) {
    mem_destroy(f.m[v]);
    free(f.want[v]);
  }
}
END_TEST

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

/* A store over its limit with no swap file (nothing to swap to) or a full
 * swap budget is no failure: no error is counted for either. */
START_TEST(pressure_without_swap_is_no_error)
{
  fx f;
  fx_init(&f, 1, 16, 0);
  f.o.store_limit_bytes = 1;
  fx_mixed(&f, 0);
  fx_start(&f);
  for (unsigned i = 0; i < f.o.c4_passes + 3; i++)
    fx_pass(&f);
  dmem_stats st = fx_es(&f);
  ck_assert_uint_eq(st.errors, 0);
  ck_assert_uint_gt(st.merges, 0);
  fx_verify(&f);
  fx_end(&f);

  fx_init(&f, 1, 16, FX_SWAP);
  f.o.swap_max_bytes = PAGE; /* one slot */
  fx_mixed(&f, 0);
  fx_start(&f);
  for (unsigned i = 0; i < f.o.c4_passes + 3; i++)
    fx_pass(&f);
  st = fx_es(&f);
  ck_assert_uint_eq(st.errors, 0);
  ck_assert_uint_le(st.swapped, 1);
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

/* ---------------------------------------------------------------- custom policies */

enum { POL_COMPRESS_C3, POL_NOTHING, POL_ALL_C4, POL_NO_VICTIM };

typedef struct pol_rec {
  unsigned mode, calls, bad, c4;
  uint32_t vm_id;
  uint64_t npages;
} pol_rec;

static void pol_see(const dmem_page_info *p, const dmem_policy_env *env, pol_rec *r)
{
  r->calls++;
  if (p->vm_id != r->vm_id || p->gfn >= r->npages || env->c4_passes != r->c4 ||
      p->state < DMEM_C1 || p->state > DMEM_C4 || p->kind > DMEM_PAGE_SWAPPED)
    r->bad++;
}

static dmem_page_state pol_classify(const dmem_page_info *p, const dmem_policy_env *env, void *ud)
{
  pol_see(p, env, ud);
  return DMEM_C4;
}

static unsigned pol_techniques(const dmem_page_info *p, dmem_page_state state,
                               const dmem_policy_env *env, void *ud)
{
  pol_rec *r = ud;
  pol_see(p, env, r);
  if (r->mode == POL_COMPRESS_C3 && state == DMEM_C3)
    return DMEM_TECH_COMPRESS;
  return 0;
}

static int pol_victim(const dmem_page_info *p, const dmem_policy_env *env, void *ud)
{
  pol_see(p, env, ud);
  return 0;
}

/* Text at 0-3, identical random pages at 4-5, zero at 6-7. */
static void policy_run(unsigned mode)
{
  fx f;
  uint8_t b[PAGE];
  pol_rec rec = {mode, 0, 0, 3, 0, 8};
  dmem_policy pol = {DMEM_POLICY_VERSION, NULL, NULL, NULL, &rec};
  if (mode == POL_ALL_C4)
    pol.classify = pol_classify;
  else if (mode == POL_NO_VICTIM)
    pol.victim = pol_victim;
  else
    pol.techniques = pol_techniques;
  fx_init(&f, 1, 8, mode == POL_NO_VICTIM ? FX_SWAP : 0);
  f.o.policy = &pol;
  for (uint64_t g = 0; g < 4; g++)
    pg_text(b, 60 + g), fx_set(&f, 0, g, b);
  pg_random(b, 1009);
  fx_set(&f, 0, 4, b), fx_set(&f, 0, 5, b);
  fx_start(&f);
  rec.vm_id = dmem_vm_id(f.vm[0]);
  fx_pass(&f);
  if (mode == POL_COMPRESS_C3 || mode == POL_ALL_C4) {
    expect_kind(&f, 0, 0, 4, DMEM_PAGE_COMPRESSED);
    ck_assert_int_eq(fx_state(&f, 0, 0), mode == POL_ALL_C4 ? DMEM_C4 : DMEM_C3);
  }
  for (unsigned i = 0; i < f.o.c4_passes + 2; i++)
    fx_pass(&f);
  if (mode == POL_COMPRESS_C3 || mode == POL_NOTHING) {
    expect_kind(&f, 0, 4, 2, DMEM_PAGE_RESIDENT); /* no share technique */
    ck_assert_int_ne(fx_kind(&f, 0, 6), DMEM_PAGE_ZERO);
    ck_assert_uint_eq(fx_es(&f).frames, 0);
  }
  if (mode == POL_NOTHING) {
    expect_kind(&f, 0, 0, 8, DMEM_PAGE_RESIDENT);
    ck_assert_uint_eq(fx_es(&f).merges, 0);
  }
  if (mode == POL_NO_VICTIM) {
    expect_kind(&f, 0, 0, 4, DMEM_PAGE_COMPRESSED);
    ck_assert_uint_eq(fx_es(&f).swapped, 0);
  }
  ck_assert_uint_gt(rec.calls, 0);
  ck_assert_uint_eq(rec.bad, 0);
  fx_verify(&f);
  fx_end(&f);
}

START_TEST(custom_policy)
{
  policy_run((unsigned)_i);
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

/* ---------------------------------------------------------------- the engine's thread */

START_TEST(background_thread)
{
  fx f;
  fx_init(&f, 1, 64, FX_SHARE | FX_PROTECT | FX_TS);
  fx_random(&f, 0, 32, 32, 19);
  fx_start(&f);
  ck_assert_int_eq(dmem_engine_start(f.e, 1, 16), 0);
  ck_assert_int_eq(dmem_engine_start(f.e, 1, 16), DMEM_EBUSY);
  for (int i = 0; i < 10000 && fx_es(&f).zero < 32; i++) {
    if (i % 16 == 0)
      fx_touch(&f, 0, 32 + (uint64_t)i / 16 % 32);
    usleep(1000);
  }
  dmem_engine_stop(f.e);
  dmem_engine_stop(f.e);
  ck_assert_uint_eq(fx_es(&f).zero, 32);
  fx_check_stats(&f);
  fx_verify(&f);
  fx_end(&f);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("engine");
  TCase *tc = tcase_create("engine");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, options_validated);
  tcase_add_test(tc, stats_version_checked);
  tcase_add_test(tc, attach_and_ranges);
  tcase_add_test(tc, attach_fills_pages_unlocked);
  tcase_add_test(tc, adapter_results_outside_the_table_are_io_errors);
  tcase_add_test(tc, pressure_without_swap_is_no_error);
  tcase_add_test(tc, clock_transitions);
  tcase_add_test(tc, zero_pages);
  tcase_add_test(tc, absent_pages_skipped);
  tcase_add_test(tc, share_same_vm);
  tcase_add_test(tc, share_cross_vm_mapped);
  tcase_add_test(tc, share_evicts_unless_mapped);
  tcase_add_test(tc, similar_patched);
  tcase_add_test(tc, compressed_in_c4);
  tcase_add_test(tc, swapped_under_pressure);
  tcase_add_test(tc, swap_needs_pressure);
  tcase_add_test(tc, swap_corruption_detected);
  tcase_add_test(tc, io_hint_shares_now);
  tcase_add_test(tc, dirty_forces_c1);
  tcase_add_loop_test(tc, detach_restores, 0, 3);
  tcase_add_loop_test(tc, destroy_restores, 0, 3);
  tcase_add_test(tc, swap_file_is_unnamed);
  tcase_add_test(tc, domains_keep_vms_apart);
  tcase_add_test(tc, secure_treats_candidates_alike);
  tcase_add_test(tc, secure_hints_merge_nothing);
  tcase_add_test(tc, engine_options_v2_accepted);
  tcase_add_test(tc, journal_rebuilds_every_page);
  tcase_add_test(tc, frames_memfd_per_domain);
  tcase_add_test(tc, half_allocator_refused);
  tcase_add_test(tc, stats_blind_to_other_domains);
  tcase_add_loop_test(tc, failed_op_leaves_pages, 0, 4);
  tcase_add_test(tc, failed_share_keeps_content);
  tcase_add_test(tc, failed_install_keeps_page);
  tcase_add_test(tc, random_failures_keep_content);
  tcase_add_loop_test(tc, mapped_pages_follow_writes, 0, 4);
  tcase_add_test(tc, stale_slice_bits);
  tcase_add_test(tc, alloc_failures_setup);
  tcase_add_test(tc, alloc_failures_scan);
  tcase_add_loop_test(tc, custom_policy, POL_COMPRESS_C3, POL_NO_VICTIM + 1);
  tcase_add_test(tc, entitlement_split);
  tcase_add_test(tc, background_thread);
  suite_add_tcase(s, tc);
  return s;
}
