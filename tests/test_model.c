/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
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

static size_t configs(model_config *c)
{
  return model_configs_env(c, MAXCFG, "DMEM_MODEL_OPS", NULL);
}

START_TEST(model_config_run)
{
  model_config c[MAXCFG];
  size_t n = configs(c);
  ck_assert_uint_lt((size_t)_i, n);
  model_run_checked(&c[_i]);
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
