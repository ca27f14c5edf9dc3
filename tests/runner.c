/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one main() of every Check test program: each test file defines
 * dmem_test_suite(), and this runs it. CK_FORK isolates each test, and
 * every test case carries a timeout (Check's default or its own). */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "testutil.h"

int main(void)
{
  SRunner *sr = srunner_create(dmem_test_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
