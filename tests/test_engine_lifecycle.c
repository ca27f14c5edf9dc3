/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's life cycle against its headers (diffmem.h, adapter.h), on
 * the in-memory adapter: options and their versions, allocator hooks,
 * attach and its ranges, detach and destroy (every page back in the
 * adapter, privately) and the engine's own thread. The fixture is
 * tests/engine_fixture.h. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_fixture.h"

/* ---------------------------------------------------------------- options and attach */

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

/* ---------------------------------------------------------------- detach, destroy */

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
  Suite *s = suite_create("engine_lifecycle");
  TCase *tc = tcase_create("engine_lifecycle");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, options_validated);
  tcase_add_test(tc, attach_and_ranges);
  tcase_add_test(tc, attach_fills_pages_unlocked);
  tcase_add_loop_test(tc, detach_restores, 0, 3);
  tcase_add_loop_test(tc, destroy_restores, 0, 3);
  tcase_add_test(tc, engine_options_v2_accepted);
  tcase_add_test(tc, half_allocator_refused);
  tcase_add_test(tc, background_thread);
  suite_add_tcase(s, tc);
  return s;
}
