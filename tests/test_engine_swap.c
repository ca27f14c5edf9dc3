/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's swap file and store pressure, on the in-memory adapter:
 * pages swapped only under pressure and faulted back, a corrupted swap
 * file detected, the file unnamed (no name the caller gives is opened as
 * it), and pressure with no swap to go to counted as no error. The
 * fixture is tests/engine_fixture.h. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_fixture.h"

/* ---------------------------------------------------------------- swap */

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

/* ---------------------------------------------------------------- pressure */

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

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("engine_swap");
  TCase *tc = tcase_create("engine_swap");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, pressure_without_swap_is_no_error);
  tcase_add_test(tc, swapped_under_pressure);
  tcase_add_test(tc, swap_needs_pressure);
  tcase_add_test(tc, swap_corruption_detected);
  tcase_add_test(tc, swap_file_is_unnamed);
  suite_add_tcase(s, tc);
  return s;
}
