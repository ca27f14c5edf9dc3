/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* delta-ab: times two builds of libdiffmem's delta encoder against each
 * other in one process, on the pairs a similarity detector finds in page
 * files (as `diffmem bench codecs` walks them). A machine shared with other
 * work swings MB/s by a third from run to run; here both builds see the
 * same load: they are loaded side by side with dlmopen(3), each pair is
 * encoded by both in turn (which goes first alternates), and before each
 * call the reference is flushed from the caches and the page read back in,
 * as a scanner meets them (its detector has just read the page).
 *
 *   cc -O2 $(pkg-config --cflags libdiffmem) bench/delta-ab.c -o delta-ab \
 *      $(pkg-config --libs libdiffmem) -ldl
 *   ./delta-ab content 3 old/libdiffmem.so.0 new/libdiffmem.so.0 anon.pages file.pages
 *
 * DETECTOR is hash (the paper's (2,1)), hash4 (k = 4) or content (2,1). The
 * detector comes from the libdiffmem the program is linked with; the two
 * libraries given only encode. Prints each build's MB/s, pairs patched and
 * mean patch, and B's time over A's for each round. x86-64 only (it flushes
 * with clflush). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <emmintrin.h>

#include <diffmem/codec.h>

typedef int (*encode_fn)(size_t *, void *, size_t, const void *, const void *);

static uint8_t *pages;
static size_t npages;

static const void *fetch(uint32_t id, void *ud)
{
  (void)ud;
  return pages + (size_t)id * DMEM_PAGE_SIZE;
}

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void flush(const uint8_t *p)
{
  for (size_t k = 0; k < DMEM_PAGE_SIZE; k += 64)
    _mm_clflush(p + k);
}

static int read_pages(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  uint8_t buf[DMEM_PAGE_SIZE];
  while (fread(buf, 1, sizeof buf, f) == sizeof buf) {
    uint8_t *more = realloc(pages, (npages + 1) * DMEM_PAGE_SIZE);
    if (!more) {
      fclose(f);
      fprintf(stderr, "delta-ab: out of memory\n");
      return -1;
    }
    pages = more;
    memcpy(pages + npages++ * DMEM_PAGE_SIZE, buf, sizeof buf);
  }
  fclose(f);
  return 0;
}

static encode_fn load(const char *path)
{
  void *h = dlmopen(LM_ID_NEWLM, path, RTLD_NOW | RTLD_LOCAL);
  encode_fn f = h ? (encode_fn)dlsym(h, "dmem_delta_encode") : NULL;
  if (!f)
    fprintf(stderr, "delta-ab: %s: %s\n", path, dlerror());
  return f;
}

int main(int argc, char **argv)
{
  if (argc < 6) {
    fprintf(stderr, "usage: delta-ab hash|hash4|content ROUNDS LIB_A LIB_B FILE...\n");
    return 2;
  }
  dmem_simdet_options so = DMEM_SIMDET_OPTIONS_INIT;
  so.seed = 0x5eed; /* as diffmem bench codecs */
  if (strcmp(argv[1], "hash4") == 0)
    so.k = 4;
  else if (strcmp(argv[1], "content") == 0)
    so.kind = DMEM_SIMDET_CONTENT;
  else if (strcmp(argv[1], "hash") != 0) {
    fprintf(stderr, "delta-ab: unknown detector %s\n", argv[1]);
    return 2;
  }
  int rounds = atoi(argv[2]);
  if (rounds < 1 || rounds > 100) {
    fprintf(stderr, "delta-ab: ROUNDS is 1 to 100\n");
    return 2;
  }
  encode_fn enc[2] = {load(argv[3]), load(argv[4])};
  if (!enc[0] || !enc[1])
    return 1;
  for (int a = 5; a < argc; a++)
    if (read_pages(argv[a]) != 0)
      return 1;

  /* The pairs, found once with the linked library's detector. */
  dmem_index_options io = DMEM_INDEX_OPTIONS_INIT;
  io.seed = 0x9e3779b97f4a7c15ull;
  io.fetch = fetch;
  dmem_index *idx = NULL;
  dmem_simdet *det = NULL;
  uint32_t *pairs = malloc(2 * sizeof *pairs * (npages + 1));
  static const uint8_t zero[DMEM_PAGE_SIZE];
  if (!pairs || dmem_index_create(&idx, &io) != 0 || dmem_simdet_create(&det, &so) != 0) {
    fprintf(stderr, "delta-ab: cannot set up the detector\n");
    return 1;
  }
  size_t n = 0;
  for (size_t i = 0; i < npages; i++) {
    const uint8_t *p = pages + i * DMEM_PAGE_SIZE;
    if (memcmp(p, zero, sizeof zero) == 0)
      continue;
    uint64_t h = dmem_index_hash(idx, p);
    uint32_t same, cand;
    if (dmem_index_lookup(&same, idx, p, h) == 0)
      continue;
    if (dmem_simdet_query(&cand, 1, det, p) == 1) {
      pairs[2 * n] = (uint32_t)i;
      pairs[2 * n + 1] = cand;
      n++;
    }
    if (dmem_index_insert(idx, h, (uint32_t)i) != 0 ||
        dmem_simdet_insert(det, (uint32_t)i, p) != 0) {
      fprintf(stderr, "delta-ab: out of memory\n");
      return 1;
    }
  }
  if (n == 0) {
    fprintf(stderr, "delta-ab: the detector found no pairs\n");
    return 1;
  }

  double total[2] = {0, 0};
  size_t ok[2] = {0, 0}, bytes[2] = {0, 0};
  uint8_t patch[DMEM_DELTA_MAX];
  printf("%zu pairs; B's time over A's by round:", n);
  for (int r = 0; r < rounds; r++) {
    double t[2] = {0, 0};
    for (size_t k = 0; k < n; k++) {
      const uint8_t *p = pages + (size_t)pairs[2 * k] * DMEM_PAGE_SIZE;
      const uint8_t *ref = pages + (size_t)pairs[2 * k + 1] * DMEM_PAGE_SIZE;
      for (int w = 0; w < 2; w++) {
        int b = (int)((k + (size_t)r + (size_t)w) & 1);
        flush(p);
        flush(ref);
        _mm_mfence();
        for (size_t z = 0; z < DMEM_PAGE_SIZE; z += 64)
          (void)*(volatile const uint8_t *)(p + z);
        size_t len;
        double t0 = now();
        int rc = enc[b](&len, patch, sizeof patch, p, ref);
        t[b] += now() - t0;
        if (r == 0 && rc == 0) {
          ok[b]++;
          bytes[b] += len;
        }
      }
    }
    printf(" %.3f", t[1] / t[0]);
    total[0] += t[0];
    total[1] += t[1];
  }
  printf("\n");
  for (int b = 0; b < 2; b++)
    printf("%s: %.0f MB/s, %zu patched, mean patch %.1f B\n", argv[3 + b],
           (double)n * DMEM_PAGE_SIZE * rounds / total[b] / 1e6, ok[b],
           ok[b] ? (double)bytes[b] / (double)ok[b] : 0.0);
  printf("B/A time %.3f\n", total[1] / total[0]);
  dmem_simdet_destroy(det);
  dmem_index_destroy(idx);
  free(pairs);
  free(pages);
  return 0;
}
