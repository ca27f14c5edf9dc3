/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The error table, dmem_strerror(), and the version agree with the headers. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include <diffmem/diffmem.h>

#include "testutil.h"

START_TEST(errors_are_negative_distinct_and_named)
{
  static const int codes[] = {
#define CODE_(name, value, msg) DMEM_E##name,
    DMEM_ERRNO_MAP(CODE_)
#undef CODE_
  };
  size_t n = sizeof codes / sizeof codes[0];
  ck_assert_uint_ge(n, 10);
  for (size_t i = 0; i < n; i++) {
    ck_assert_int_lt(codes[i], 0);
    ck_assert_int_gt(codes[i], DMEM_ERRNO_LAST_);
    ck_assert_str_ne(dmem_strerror(codes[i]), "unknown error");
    ck_assert_str_ne(dmem_err_name(codes[i]), "DMEM_E?");
    for (size_t j = i + 1; j < n; j++)
      ck_assert_int_ne(codes[i], codes[j]);
  }
}
END_TEST

START_TEST(strerror_matches_table)
{
  ck_assert_str_eq(dmem_strerror(0), "success");
  ck_assert_str_eq(dmem_strerror(DMEM_ENOMEM), "out of memory");
  ck_assert_str_eq(dmem_strerror(DMEM_ECORRUPT), "corrupt or malformed data");
  ck_assert_str_eq(dmem_err_name(DMEM_ECORRUPT), "DMEM_ECORRUPT");
  ck_assert_str_eq(dmem_err_name(0), "DMEM_OK");
  ck_assert_str_eq(dmem_strerror(12345), "unknown error");
  ck_assert_str_eq(dmem_strerror(-999), "unknown error");
  ck_assert_str_eq(dmem_err_name(-999), "DMEM_E?");
}
END_TEST

START_TEST(version_matches_header)
{
  ck_assert_str_eq(dmem_version(), DMEM_VERSION_STRING);
  ck_assert_uint_eq(dmem_version_number(), DMEM_VERSION_NUMBER);
  char buf[32];
  snprintf(buf, sizeof buf, "%d.%d.%d", DMEM_VERSION_MAJOR, DMEM_VERSION_MINOR,
           DMEM_VERSION_PATCH);
  ck_assert_str_eq(buf, DMEM_VERSION_STRING);
  ck_assert_str_eq(dmem_version(), PACKAGE_VERSION);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("common");
  TCase *tc = tcase_create("common");
  tcase_add_test(tc, errors_are_negative_distinct_and_named);
  tcase_add_test(tc, strerror_matches_table);
  tcase_add_test(tc, version_matches_header);
  suite_add_tcase(s, tc);
  return s;
}
