/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Custom policies (policy.h), on the in-memory adapter: what each hook
 * is shown, and that the engine does what it answers. The fixture is
 * tests/engine_fixture.h. */
#include "config.h"

#include <check.h>

#include "engine_fixture.h"

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

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("engine_policy");
  TCase *tc = tcase_create("engine_policy");
  tcase_set_timeout(tc, 120);
  tcase_add_loop_test(tc, custom_policy, POL_COMPRESS_C3, POL_NO_VICTIM + 1);
  suite_add_tcase(s, tc);
  return s;
}
