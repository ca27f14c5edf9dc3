/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem analyze: exact answers on inputs built so that the answer is
 * known (sharing within and across inputs, zero pages, a patch, a
 * compressible page), a hand-built ELF core, a live child process,
 * malformed files that must be named with their offset, and the table,
 * JSON and SVG agreeing with each other. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <diffmem/codec.h>

#include "analyze.h"
#include "elfcore.h"
#include "json.h"
#include "memsrc.h"
#include "report.h"
#include "testutil.h"

enum { PS = DMEM_PAGE_SIZE };

static void random_page(uint8_t *p, uint64_t seed)
{
  uint64_t s = seed;
  for (size_t i = 0; i < PS; i += 8) {
    uint64_t r = test_rand(&s);
    memcpy(p + i, &r, 8);
  }
}

static void fill_page(uint8_t *p, uint8_t v)
{
  memset(p, v, PS);
}

static analyze *new_study(void)
{
  analyze *a = NULL;
  ck_assert_int_eq(analyze_create(&a, NULL), 0);
  return a;
}

static void add(analyze *a, const uint8_t *p)
{
  ck_assert_int_eq(analyze_add_page(a, p), 0);
}

/* A: 3 zero, 4 x X, R1 R2 R3.  B: X X, zero, R4 R5. */
static void two_inputs(analyze_result *r)
{
  uint8_t zero[PS] = {0}, x[PS], rnd[PS];
  fill_page(x, 0x5a);
  analyze *a = new_study();
  ck_assert_int_eq(analyze_begin_input(a, "A", "raw"), 0);
  for (int i = 0; i < 3; i++)
    add(a, zero);
  for (int i = 0; i < 4; i++)
    add(a, x);
  for (int i = 1; i <= 3; i++) {
    random_page(rnd, (uint64_t)i);
    add(a, rnd);
  }
  ck_assert_int_eq(analyze_begin_input(a, "B", "raw"), 0);
  add(a, x);
  add(a, x);
  add(a, zero);
  for (int i = 4; i <= 5; i++) {
    random_page(rnd, (uint64_t)i);
    add(a, rnd);
  }
  ck_assert_int_eq(analyze_finish(r, a, NULL, NULL), 0);
  analyze_destroy(a);
}

START_TEST(sharing_within_and_across)
{
  analyze_result r;
  two_inputs(&r);
  ck_assert_uint_eq(r.ninputs, 2);
  const analyze_counts *A = &r.inputs[0].all, *B = &r.inputs[1].all, *T = &r.total.all;
  ck_assert_uint_eq(A->pages, 10);
  ck_assert_uint_eq(A->zero_pages, 3);
  ck_assert_uint_eq(A->distinct_pages, 5);
  ck_assert_uint_eq(A->saved_within, 5);
  ck_assert_uint_eq(A->saved_across, 0);
  ck_assert_uint_eq(B->pages, 5);
  ck_assert_uint_eq(B->zero_pages, 1);
  ck_assert_uint_eq(B->distinct_pages, 4);
  ck_assert_uint_eq(B->saved_within, 1);
  ck_assert_uint_eq(B->saved_across, 2);
  ck_assert_uint_eq(T->pages, 15);
  ck_assert_uint_eq(T->zero_pages, 4);
  ck_assert_uint_eq(T->distinct_pages, 7);
  ck_assert_uint_eq(analyze_saved_sharing(T), 8); /* 15 pages - 7 contents */
  ck_assert_uint_eq(T->saved_within, 6);
  ck_assert_uint_eq(T->saved_across, 2);
  /* Random pages neither patch nor compress. */
  ck_assert_uint_eq(T->patched_pages, 0);
  ck_assert_uint_eq(T->compressed_pages, 0);
  /* Without zero pages: A 7 pages, 4 contents; B 4 pages, 3 contents. */
  const analyze_counts *An = &r.inputs[0].nonzero, *Bn = &r.inputs[1].nonzero;
  const analyze_counts *Tn = &r.total.nonzero;
  ck_assert_uint_eq(An->pages, 7);
  ck_assert_uint_eq(An->distinct_pages, 4);
  ck_assert_uint_eq(An->saved_within, 3);
  ck_assert_uint_eq(Bn->pages, 4);
  ck_assert_uint_eq(Bn->distinct_pages, 3);
  ck_assert_uint_eq(Bn->saved_within, 1);
  ck_assert_uint_eq(Bn->saved_across, 1);
  ck_assert_uint_eq(Tn->pages, 11);
  ck_assert_uint_eq(Tn->zero_pages, 0);
  ck_assert_uint_eq(Tn->distinct_pages, 6);
  ck_assert_uint_eq(analyze_saved_sharing(Tn), 5);
  analyze_percent p = analyze_percent_of(T);
  ck_assert_double_eq_tol(p.sharing, 800.0 / 15, 1e-9);
  ck_assert_double_eq_tol(p.within + p.across, p.sharing, 1e-9);
  analyze_result_free(&r);
}
END_TEST

START_TEST(patch_and_compress)
{
  uint8_t base[PS], near[PS], text[PS], zero[PS] = {0};
  random_page(base, 42);
  memcpy(near, base, PS);
  memset(near + 3000, 0xee, 8); /* one word differs */
  for (size_t i = 0; i < PS; i++)
    text[i] = "memory that compresses well "[i % 28];
  analyze *a = new_study();
  ck_assert_int_eq(analyze_begin_input(a, "one", "raw"), 0);
  add(a, base);
  add(a, near);
  add(a, text);
  add(a, zero);
  analyze_result r;
  ck_assert_int_eq(analyze_finish(&r, a, NULL, NULL), 0);
  analyze_destroy(a);
  const analyze_counts *c = &r.total.all, *n = &r.total.nonzero;
  ck_assert_uint_eq(c->pages, 4);
  ck_assert_uint_eq(analyze_saved_sharing(c), 0);
  ck_assert_uint_eq(c->patched_pages, 1); /* near against base */
  ck_assert_uint_gt(c->bytes_patching, PS / 2);
  ck_assert_uint_eq(c->compressed_pages, 2); /* text and the lone zero page */
  ck_assert_uint_eq(n->pages, 3);
  ck_assert_uint_eq(n->patched_pages, 1);
  ck_assert_uint_eq(n->compressed_pages, 1);
  ck_assert_uint_lt(n->bytes_compression, c->bytes_compression);
  ck_assert_uint_eq(r.inputs[0].all.patched_pages, 1);
  analyze_result_free(&r);
}
END_TEST

/* A shared content is a patch reference and is itself neither patched nor
 * compressed. */
START_TEST(shared_content_is_a_reference)
{
  uint8_t base[PS], near[PS];
  random_page(base, 7);
  memcpy(near, base, PS);
  near[100] ^= 1;
  analyze *a = new_study();
  ck_assert_int_eq(analyze_begin_input(a, "one", "raw"), 0);
  add(a, near);
  ck_assert_int_eq(analyze_begin_input(a, "two", "raw"), 0);
  add(a, base);
  add(a, base);
  analyze_result r;
  ck_assert_int_eq(analyze_finish(&r, a, NULL, NULL), 0);
  analyze_destroy(a);
  ck_assert_uint_eq(r.total.all.patched_pages, 1);
  ck_assert_uint_eq(r.inputs[0].all.patched_pages, 1);
  ck_assert_uint_eq(r.inputs[1].all.saved_within, 1);
  ck_assert_uint_eq(r.total.all.compressed_pages, 0);
  analyze_result_free(&r);
}
END_TEST

static char tmpdir[64];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Each test runs in its own process and makes its own directory. */
static void remove_tmpdir(void)
{
  if (tmpdir[0])
    nftw(tmpdir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
  tmpdir[0] = 0;
}

static const char *tmp_path(const char *name)
{
  static char path[128];
  if (!tmpdir[0]) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_analyze.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
  }
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  return path;
}

static void write_file(const char *path, const void *data, size_t len)
{
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, len, f), len);
  ck_assert_int_eq(fclose(f), 0);
}

static void put16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
  put16(p, (uint16_t)v);
  put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
  put32(p, (uint32_t)v);
  put32(p + 4, (uint32_t)(v >> 32));
}

/* An ELF64 core: a PT_NOTE, then PT_LOAD of pages X X 0 at 0x1000 and a
 * PT_LOAD of one and a half pages of Y (the half page is padded). Returns
 * its size; the buffer must hold 8 pages. */
static size_t build_core64(uint8_t *f)
{
  memset(f, 0, 8 * PS);
  memcpy(f, "\177ELF", 4);
  f[4] = 2; /* ELFCLASS64 */
  f[5] = 1; /* little-endian */
  f[6] = 1;
  put16(f + 16, 4);  /* ET_CORE */
  put16(f + 18, 62); /* EM_X86_64 */
  put32(f + 20, 1);
  put64(f + 32, 64); /* e_phoff */
  put16(f + 52, 64);
  put16(f + 54, 56); /* e_phentsize */
  put16(f + 56, 3);  /* e_phnum */
  uint8_t *ph = f + 64;
  put32(ph, 4); /* PT_NOTE */
  put64(ph + 8, 232);
  put64(ph + 32, 16);
  ph += 56;
  put32(ph, 1); /* PT_LOAD */
  put64(ph + 8, PS);
  put64(ph + 16, 0x1000);
  put64(ph + 24, 0x1000);
  put64(ph + 32, 3 * PS);
  put64(ph + 40, 3 * PS);
  ph += 56;
  put32(ph, 1);
  put64(ph + 8, 4 * PS);
  put64(ph + 16, 0x100000);
  put64(ph + 32, PS + PS / 2);
  put64(ph + 40, 2 * PS);
  memset(f + PS, 0x11, 2 * PS);
  memset(f + 4 * PS, 0x22, PS + PS / 2);
  return 5 * PS + PS / 2;
}

/* Reads every page of a source; returns the count. */
static size_t drain(memsrc *s, uint8_t *out, size_t max)
{
  size_t n = 0;
  long got;
  while ((got = memsrc_read(s, out + n * PS, max - n)) > 0)
    n += (size_t)got;
  ck_assert_int_eq(got, 0);
  return n;
}

START_TEST(elf_core_pages)
{
  static uint8_t core[8 * PS], pages[8 * PS];
  size_t len = build_core64(core);
  const char *path = tmp_path("core64");
  write_file(path, core, len);
  memsrc *s = NULL;
  char err[768];
  ck_assert_msg(memsrc_open_file(&s, path, 0, err, sizeof err) == 0, "%s", err);
  ck_assert_str_eq(s->kind, "elf");
  ck_assert_uint_eq(s->expected, 3 * PS + PS + PS / 2);
  ck_assert_uint_eq(drain(s, pages, 8), 5);
  memsrc_close(s);
  uint8_t want[PS];
  fill_page(want, 0x11);
  ck_assert_mem_eq(pages, want, PS);
  ck_assert_mem_eq(pages + PS, want, PS);
  fill_page(want, 0);
  ck_assert_mem_eq(pages + 2 * PS, want, PS);
  fill_page(want, 0x22);
  ck_assert_mem_eq(pages + 3 * PS, want, PS);
  ck_assert_mem_eq(pages + 4 * PS, want, PS / 2);
  fill_page(want, 0);
  ck_assert_mem_eq(pages + 4 * PS + PS / 2, want, PS / 2);
  /* --raw reads the same file as pages, and refuses its partial page. */
  ck_assert_int_eq(memsrc_open_file(&s, path, 1, err, sizeof err), -1);
  ck_assert_ptr_nonnull(strstr(err, path));
  ck_assert_ptr_nonnull(strstr(err, "offset 20480"));
}
END_TEST

/* Opens path expecting failure; the message must name the file and say
 * `expect`. */
static void expect_error(const char *path, const char *expect)
{
  memsrc *s = NULL;
  char err[768];
  ck_assert_int_eq(memsrc_open_file(&s, path, 0, err, sizeof err), -1);
  ck_assert_msg(strstr(err, path) != NULL, "no file name in: %s", err);
  ck_assert_msg(strstr(err, expect) != NULL, "'%s' not in: %s", expect, err);
}

START_TEST(malformed_files)
{
  static uint8_t core[8 * PS];
  size_t len = build_core64(core);
  const char *path;
  path = tmp_path("truncated");
  write_file(path, core, len - 100); /* the last segment runs past the end */
  expect_error(path, "malformed ELF core at offset 176: program header 2");
  expect_error(path, "truncated");
  path = tmp_path("badphoff");
  build_core64(core);
  put64(core + 32, 1u << 30);
  write_file(path, core, len);
  expect_error(path, "at offset 32:");
  path = tmp_path("bigendian");
  build_core64(core);
  core[5] = 2;
  write_file(path, core, len);
  expect_error(path, "at offset 5:");
  path = tmp_path("notcore");
  build_core64(core);
  put16(core + 16, 2); /* ET_EXEC */
  write_file(path, core, len);
  expect_error(path, "not a core file");
  path = tmp_path("shortheader");
  write_file(path, core, 40);
  expect_error(path, "truncated ELF header");
  path = tmp_path("filesz");
  build_core64(core);
  put64(core + 64 + 56 + 40, PS); /* p_memsz < p_filesz */
  write_file(path, core, len);
  expect_error(path, "at offset 120: program header 1: p_filesz");
  path = tmp_path("partial.raw");
  memset(core, 1, 4); /* not ELF any more */
  write_file(path, core, PS + 1);
  expect_error(path, "1 stray bytes at offset 4096");
  expect_error(tmp_path("does-not-exist"), "cannot open");
  path = tmp_path("flattened.kdump"); /* what `virsh dump --format kdump-zlib` writes */
  memcpy(core, "makedumpfile\0\0\0\0", 16);
  write_file(path, core, 2 * PS);
  expect_error(path, "kdump-compressed");
}
END_TEST

START_TEST(elf32_and_pn_xnum)
{
  /* ELF32: header 52 bytes, phdrs of 32 bytes at 52; one PT_LOAD page. */
  static uint8_t f[3 * PS], pages[8 * PS];
  memset(f, 0, sizeof f);
  memcpy(f, "\177ELF", 4);
  f[4] = 1;
  f[5] = 1;
  put16(f + 16, 4);
  put32(f + 28, 52);
  put16(f + 42, 32);
  put16(f + 44, 1);
  put32(f + 52, 1);
  put32(f + 56, PS);
  put32(f + 68, PS);
  put32(f + 72, PS);
  memset(f + PS, 0x33, PS);
  const char *path = tmp_path("core32");
  write_file(path, f, 2 * PS);
  memsrc *s = NULL;
  char err[768];
  ck_assert_msg(memsrc_open_file(&s, path, 0, err, sizeof err) == 0, "%s", err);
  ck_assert_uint_eq(drain(s, pages, 8), 1);
  ck_assert_uint_eq(pages[123], 0x33);
  memsrc_close(s);
  /* ELF64 with e_phnum = PN_XNUM: the count is sh_info of section 0. */
  static uint8_t core[8 * PS];
  size_t len = build_core64(core);
  put16(core + 56, 0xffff);
  put64(core + 40, 400); /* e_shoff */
  put16(core + 58, 64);  /* e_shentsize */
  put32(core + 400 + 44, 3);
  path = tmp_path("xnum");
  write_file(path, core, len);
  ck_assert_msg(memsrc_open_file(&s, path, 0, err, sizeof err) == 0, "%s", err);
  ck_assert_uint_eq(drain(s, pages, 8), 5);
  memsrc_close(s);
}
END_TEST

/* A child maps 48 pages: 16 copies of one page, 16 zero pages, 16 random;
 * reading just that range through pid:N must see exactly them. */
START_TEST(live_process)
{
  enum { N = 48 };
  uint8_t *m = mmap(NULL, N * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(m, MAP_FAILED);
  for (int i = 0; i < 16; i++) {
    fill_page(m + i * PS, 0x77);
    fill_page(m + (16 + i) * PS, 0);
    random_page(m + (32 + i) * PS, 1000 + (uint64_t)i);
  }
  int ready[2];
  ck_assert_int_eq(pipe(ready), 0);
  pid_t child = fork();
  ck_assert_int_ge(child, 0);
  if (child == 0) {
    close(ready[0]);
    /* Touch every page again so that it is the child's own and resident. */
    volatile uint8_t *vm = m;
    for (int i = 0; i < N; i++)
      vm[i * PS] = vm[i * PS];
    (void)!write(ready[1], "x", 1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char c;
  ck_assert_int_eq(read(ready[0], &c, 1), 1);
  close(ready[0]);
  char name[32], err[768];
  snprintf(name, sizeof name, "pid:%d", (int)child);
  memsrc_pid_options po = {1, 1, (uint64_t)(uintptr_t)m, (uint64_t)(uintptr_t)m + N * PS};
  memsrc *s = NULL;
  int rc = memsrc_open_pid(&s, child, name, &po, err, sizeof err);
  ck_assert_msg(rc == 0, "%s", err);
  analyze *a = new_study();
  ck_assert_int_eq(analyze_begin_input(a, s->name, s->kind), 0);
  static uint8_t buf[N * PS];
  size_t n = drain(s, buf, N);
  memsrc_close(s);
  ck_assert_uint_eq(n, N);
  for (size_t i = 0; i < n; i++)
    add(a, buf + i * PS);
  analyze_result r;
  ck_assert_int_eq(analyze_finish(&r, a, NULL, NULL), 0);
  analyze_destroy(a);
  ck_assert_uint_eq(r.total.all.pages, N);
  ck_assert_uint_eq(r.total.all.zero_pages, 16);
  ck_assert_uint_eq(r.total.all.distinct_pages, 18);
  ck_assert_uint_eq(analyze_saved_sharing(&r.total.all), 30);
  ck_assert_uint_eq(analyze_saved_sharing(&r.total.nonzero), 15);
  analyze_result_free(&r);
  /* A dead process is an error that names it. */
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  ck_assert_int_eq(memsrc_open_pid(&s, child, name, &po, err, sizeof err), -1);
  ck_assert_ptr_nonnull(strstr(err, name));
  ck_assert_ptr_nonnull(strstr(err, "no such process"));
  munmap(m, N * PS);
}
END_TEST

/* The set's row, as printed in the table: pages and the three figures. */
static void table_total(const char *table, const char *header, unsigned long long *pages,
                        char pct[3][16])
{
  const char *v = strstr(table, header);
  ck_assert_ptr_nonnull(v);
  const char *row = strstr(v, "  all inputs");
  ck_assert_ptr_nonnull(row);
  char within[16], across[16];
  ck_assert_int_eq(sscanf(row,
                          "  all inputs %llu %*u %15[0-9.]%% %15[0-9.]%% %15[0-9.]%% "
                          "%15[0-9.]%% %15[0-9.]%%",
                          pages, pct[0], within, across, pct[1], pct[2]),
                   6);
}

static double json_number(const char *json, const char *key)
{
  const char *p = strstr(json, key);
  ck_assert_msg(p != NULL, "%s not in the JSON", key);
  return strtod(p + strlen(key), NULL);
}

static char *capture(void (*fn)(FILE *, const analyze_result *, size_t), const analyze_result *r)
{
  FILE *f = tmpfile();
  ck_assert_ptr_nonnull(f);
  fn(f, r, 20);
  long len = ftell(f);
  ck_assert_int_gt(len, 0);
  char *buf = malloc((size_t)len + 1);
  ck_assert_ptr_nonnull(buf);
  rewind(f);
  ck_assert_uint_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
  buf[len] = 0;
  fclose(f);
  return buf;
}

static void json_adapter(FILE *f, const analyze_result *r, size_t rows)
{
  (void)rows;
  report_json(f, r);
}

START_TEST(reports_agree)
{
  analyze_result r;
  two_inputs(&r);
  char *table = capture(report_table, &r);
  char *json = capture(json_adapter, &r);
  char *svg = capture(report_svg, &r);
  static const char *const views[2] = {"Zero pages counted", "Zero pages left out"};
  static const char *const jkeys[2] = {"\"percent_saved\": {", "\"percent_saved_nonzero\": {"};
  static const char *const svgview[2] = {"all", "nonzero"};
  for (int v = 0; v < 2; v++) {
    unsigned long long pages;
    char pct[3][16];
    table_total(table, views[v], &pages, pct);
    const char *jp = strstr(json, jkeys[v]);
    ck_assert_ptr_nonnull(jp);
    double j[3] = {json_number(jp, "\"sharing\": "), json_number(jp, "\"sharing_patching\": "),
                   json_number(jp, "\"total\": ")};
    const analyze_counts *c = v ? &r.total.nonzero : &r.total.all;
    ck_assert_uint_eq(pages, c->pages);
    char want[256];
    snprintf(want, sizeof want,
             "<g data-row=\"all inputs\" data-view=\"%s\" data-pages=\"%llu\" "
             "data-sharing=\"%s\" data-sharing-patching=\"%s\" data-total=\"%s\">",
             svgview[v], pages, pct[0], pct[1], pct[2]);
    ck_assert_msg(strstr(svg, want) != NULL, "not in the SVG: %s", want);
    for (int k = 0; k < 3; k++)
      ck_assert_double_eq_tol(strtod(pct[k], NULL), j[k], 0.05 + 1e-9);
  }
  ck_assert_uint_eq((uint64_t)json_number(json, "\"total_pages\": "), 15);
  ck_assert_uint_eq((uint64_t)json_number(json, "\"pages_saved_sharing\": "), 8);
  ck_assert_double_eq_tol(json_number(json, "\"percent_saved\": {\"sharing\": "), 800.0 / 15, 1e-4);
  ck_assert_ptr_nonnull(strstr(json, "\"inputs\": ["));
  ck_assert_ptr_nonnull(strstr(json, "{\"name\": \"B\", \"kind\": \"raw\""));
  free(table);
  free(json);
  free(svg);
  analyze_result_free(&r);
}
END_TEST

/* More inputs than rows: the extra ones are added up into one row whose
 * figures are the sum of theirs. */
START_TEST(rows_merge_exactly)
{
  uint8_t p[PS];
  analyze *a = new_study();
  for (int i = 0; i < 6; i++) {
    char name[8];
    snprintf(name, sizeof name, "in%d", i);
    ck_assert_int_eq(analyze_begin_input(a, name, "raw"), 0);
    for (int k = 0; k <= i; k++) {
      fill_page(p, (uint8_t)(k % 3 + 1));
      add(a, p);
    }
  }
  analyze_result r;
  ck_assert_int_eq(analyze_finish(&r, a, NULL, NULL), 0);
  analyze_destroy(a);
  size_t n;
  analyze_row *rows = report_rows(&r, 3, &n);
  ck_assert_ptr_nonnull(rows);
  ck_assert_uint_eq(n, 4); /* two largest, "4 other inputs", the set */
  ck_assert_str_eq(rows[0].name, "in4");
  ck_assert_str_eq(rows[1].name, "in5");
  ck_assert_str_eq(rows[2].name, "4 other inputs");
  ck_assert_uint_eq(rows[2].all.pages, 1 + 2 + 3 + 4);
  ck_assert_uint_eq(rows[0].all.pages + rows[1].all.pages + rows[2].all.pages, r.total.all.pages);
  ck_assert_uint_eq(analyze_saved_sharing(&rows[0].all) + analyze_saved_sharing(&rows[1].all) +
                        analyze_saved_sharing(&rows[2].all),
                    analyze_saved_sharing(&r.total.all));
  ck_assert_uint_eq(r.total.all.distinct_pages, 3);
  free(rows);
  analyze_result_free(&r);
}
END_TEST

/* json_str() into a string. */
static char *json_of(const char *s)
{
  static char out[256];
  FILE *f = fmemopen(out, sizeof out, "w");
  ck_assert_ptr_nonnull(f);
  json_str(f, s);
  ck_assert_int_eq(fclose(f), 0);
  return out;
}

/* File names come in any encoding: the JSON is valid UTF-8 all the same,
 * well-formed UTF-8 passes through, and any other byte is the character
 * of its value. */
START_TEST(json_strings_are_utf8)
{
  ck_assert_str_eq(json_of("plain"), "\"plain\"");
  ck_assert_str_eq(json_of("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
  /* é, €, U+1F600: two, three and four bytes */
  ck_assert_str_eq(json_of("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
                   "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  /* Latin-1 é alone; a stray continuation byte; 0xff */
  ck_assert_str_eq(json_of("caf\xe9"), "\"caf\\u00e9\"");
  ck_assert_str_eq(json_of("\x80x\xff"), "\"\\u0080x\\u00ff\"");
  /* overlong '/', a UTF-16 surrogate, past U+10FFFF, cut short at the end */
  ck_assert_str_eq(json_of("\xc0\xaf"), "\"\\u00c0\\u00af\"");
  ck_assert_str_eq(json_of("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"");
  ck_assert_str_eq(json_of("\xf4\x90\x80\x80"), "\"\\u00f4\\u0090\\u0080\\u0080\"");
  ck_assert_str_eq(json_of("ok\xe2\x82"), "\"ok\\u00e2\\u0082\"");
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("analyze");
  TCase *tc = tcase_create("study");
  tcase_add_test(tc, sharing_within_and_across);
  tcase_add_test(tc, patch_and_compress);
  tcase_add_test(tc, shared_content_is_a_reference);
  tcase_add_test(tc, rows_merge_exactly);
  suite_add_tcase(s, tc);
  tc = tcase_create("inputs");
  tcase_add_checked_fixture(tc, NULL, remove_tmpdir);
  tcase_add_test(tc, elf_core_pages);
  tcase_add_test(tc, malformed_files);
  tcase_add_test(tc, elf32_and_pn_xnum);
  tcase_add_test(tc, live_process);
  suite_add_tcase(s, tc);
  tc = tcase_create("reports");
  tcase_add_test(tc, reports_agree);
  tcase_add_test(tc, json_strings_are_utf8);
  suite_add_tcase(s, tc);
  return s;
}
