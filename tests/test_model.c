/* The randomized model (model.h) in each of its configurations, as a Check
 * suite. DMEM_MODEL_OPS sets the operations shared among all
 * configurations (default 1,000,000), DMEM_MODEL_SEED the seed. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "model.h"
#include "testutil.h"

#define MAXCFG 8

static uint64_t env_u64(const char *name, uint64_t def)
{
  const char *s = getenv(name);
  return s && *s ? strtoull(s, NULL, 0) : def;
}

static size_t configs(model_config *c)
{
  return model_configs(c, MAXCFG, env_u64("DMEM_MODEL_OPS", 1000000),
                       env_u64("DMEM_MODEL_SEED", 1));
}

static void expect_seen(const model_config *c, const model_result *r, dmem_page_kind k,
                        const char *name)
{
  ck_assert_msg(r->kinds_seen[k] > 0, "%s: no %s page seen in the run", c->name, name);
}

START_TEST(model_config_run)
{
  model_config c[MAXCFG];
  size_t n = configs(c);
  ck_assert_uint_lt((size_t)_i, n);
  const model_config *cfg = &c[_i];
  model_result r;
  int rc = model_run(&r, cfg);
  model_print(stdout, cfg, &r);
  fflush(stdout);
  ck_assert_msg(r.mismatches == 0, "%s: %llu mismatches; first: %s", cfg->name,
                (unsigned long long)r.mismatches, r.mismatch);
  ck_assert_msg(r.errors == 0, "%s: %llu errors; first: %s", cfg->name,
                (unsigned long long)r.errors, r.error);
  ck_assert_msg(r.violations == 0, "%s: adapter contract: %s", cfg->name, r.violation);
  ck_assert_int_eq(rc, 0);
  ck_assert_uint_eq(r.ops, cfg->ops);
  ck_assert_uint_gt(r.stats.merges, 0);
  ck_assert_uint_gt(r.stats.faults, 0);
  expect_seen(cfg, &r, DMEM_PAGE_ZERO, "zero");
  expect_seen(cfg, &r, DMEM_PAGE_SHARED, "shared");
  if (cfg->concurrent)
    return; /* a short run; every technique is not guaranteed */
  expect_seen(cfg, &r, DMEM_PAGE_PATCHED, "patched");
  expect_seen(cfg, &r, DMEM_PAGE_COMPRESSED, "compressed");
  if (cfg->share)
    expect_seen(cfg, &r, DMEM_PAGE_MAPPED, "mapped");
  if (cfg->swap)
    expect_seen(cfg, &r, DMEM_PAGE_SWAPPED, "swapped");
  if (cfg->reattach && cfg->ops >= 100000)
    ck_assert_uint_gt(r.reattaches, 0);
}
END_TEST

Suite *dmem_test_suite(void)
{
  model_config c[MAXCFG];
  Suite *s = suite_create("model");
  TCase *tc = tcase_create("model");
  tcase_set_timeout(tc, 1800); /* generous: sanitizer builds are slow */
  tcase_add_loop_test(tc, model_config_run, 0, (int)configs(c));
  suite_add_tcase(s, tc);
  return s;
}
