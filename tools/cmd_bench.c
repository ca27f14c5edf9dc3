/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem bench codecs: measures the page codecs, the delta encoder and the
 * similarity detectors on real pages, all in one run so that the ratios
 * between them hold on a noisy machine. Each timed pass runs --repeat times
 * and the fastest is kept. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if DMEM_HAVE_ZLIB
#include <zlib.h>
#endif

#include <diffmem/codec.h>

#include "cmd.h"
#include "json.h"
#include "internal.h" /* dmem__page_is_zero */
#include "pages.h"

typedef struct codec_result {
  const char *name;
  size_t pages, in_bytes, out_bytes;
  double c_secs, d_secs;
  int roundtrip_ok;
} codec_result;

typedef struct delta_result {
  char detector[32];
  size_t pages_tried, pairs, patch_bytes, zlib_xor_bytes;
  size_t encodes; /* encode calls, those refused as too big included */
  double e_secs, d_secs, detect_secs;
  int roundtrip_ok;
} delta_result;

typedef struct bench_opts {
  int json;
  int repeat;
} bench_opts;

static double mbps(size_t bytes, double secs)
{
  return secs > 0 ? (double)bytes / 1e6 / secs : 0.0;
}

/* One page compressor under test: ours through a dmem_codec, or zlib as
 * the yardstick. compress returns the stream's length, 0 on failure;
 * decompress 0 when it rebuilt a whole page. */
typedef struct bench_impl {
  const char *name;
  size_t bound; /* room for one page's stream */
  size_t (*compress)(void *ctx, uint8_t *out, size_t cap, const void *page);
  int (*decompress)(void *ctx, void *page, const uint8_t *in, size_t len);
  void *ctx;
} bench_impl;

/* Compresses every non-zero page of the set, then decompresses every
 * stream and compares; each timed pass runs `repeat` times and the
 * fastest counts. */
static int bench_codec(codec_result *r, const bench_impl *b, const page_set *set, int repeat)
{
  size_t n = set->npages;
  uint8_t *blobs = malloc(n * b->bound + 1);
  size_t *lens = calloc(n + 1, sizeof *lens);
  uint8_t back[DMEM_PAGE_SIZE];
  if (!blobs || !lens) {
    free(blobs);
    free(lens);
    return -1;
  }
  memset(r, 0, sizeof *r);
  r->name = b->name;
  r->roundtrip_ok = 1;
  r->c_secs = r->d_secs = 1e30;
  for (int rep = 0; rep < repeat; rep++) {
    size_t out = 0;
    double t0 = now_seconds();
    for (size_t i = 0; i < n; i++) {
      lens[i] = b->compress(b->ctx, blobs + i * b->bound, b->bound, page_at(set, i));
      if (lens[i] == 0)
        r->roundtrip_ok = 0;
      out += lens[i];
    }
    double t1 = now_seconds();
    for (size_t i = 0; i < n; i++) {
      if (lens[i] && b->decompress(b->ctx, back, blobs + i * b->bound, lens[i]) != 0)
        r->roundtrip_ok = 0;
    }
    double t2 = now_seconds();
    if (t1 - t0 < r->c_secs)
      r->c_secs = t1 - t0;
    if (t2 - t1 < r->d_secs)
      r->d_secs = t2 - t1;
    r->out_bytes = out;
  }
  r->pages = n;
  /* Verify once more outside the timed loop. */
  for (size_t i = 0; i < n; i++) {
    if (!lens[i] || b->decompress(b->ctx, back, blobs + i * b->bound, lens[i]) != 0 ||
        memcmp(back, page_at(set, i), DMEM_PAGE_SIZE) != 0)
      r->roundtrip_ok = 0;
  }
  r->in_bytes = r->pages * DMEM_PAGE_SIZE;
  free(blobs);
  free(lens);
  return 0;
}

/* Ours: a codec (or DMEM_CODEC_BEST) of a context. */
typedef struct ours {
  dmem_codec *c;
  dmem_codec_id id;
} ours;

static size_t ours_compress(void *ctx, uint8_t *out, size_t cap, const void *page)
{
  ours *o = ctx;
  size_t len;
  return dmem_codec_compress(&len, out, cap, o->c, o->id, page) == 0 ? len : 0;
}

static int ours_decompress(void *ctx, void *page, const uint8_t *in, size_t len)
{
  return dmem_codec_decompress(page, ((ours *)ctx)->c, in, len);
}

static int bench_ours(codec_result *r, dmem_codec *c, dmem_codec_id id, const char *name,
                      const page_set *set, int repeat)
{
  ours o = {c, id};
  bench_impl b = {name, DMEM_COMPRESS_BOUND, ours_compress, ours_decompress, &o};
  return bench_codec(r, &b, set, repeat);
}

static const void *fetch_page(uint32_t id, void *ud)
{
  return page_at((const page_set *)ud, id);
}

#if DMEM_HAVE_ZLIB
/* zlib at level 1, page by page, as raw deflate (no header, no checksum:
 * the yardstick at its smallest), beside the codecs: the size a
 * general-purpose compressor's fastest level reaches on the same pages. */
typedef struct zlib_ctx {
  z_stream d, in;
} zlib_ctx;

static size_t zlib_compress(void *ctx, uint8_t *out, size_t cap, const void *page)
{
  z_stream *d = &((zlib_ctx *)ctx)->d;
  deflateReset(d);
  d->next_in = (Bytef *)page;
  d->avail_in = DMEM_PAGE_SIZE;
  d->next_out = out;
  d->avail_out = (uInt)cap;
  return deflate(d, Z_FINISH) == Z_STREAM_END ? cap - d->avail_out : 0;
}

static int zlib_decompress(void *ctx, void *page, const uint8_t *in, size_t len)
{
  z_stream *z = &((zlib_ctx *)ctx)->in;
  inflateReset(z);
  z->next_in = (Bytef *)in;
  z->avail_in = (uInt)len;
  z->next_out = page;
  z->avail_out = DMEM_PAGE_SIZE;
  return inflate(z, Z_FINISH) == Z_STREAM_END && z->avail_out == 0 ? 0 : -1;
}

static int bench_zlib(codec_result *r, const page_set *set, int repeat)
{
  zlib_ctx z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z.d, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  if (inflateInit2(&z.in, -15) != Z_OK) {
    deflateEnd(&z.d);
    return -1;
  }
  bench_impl b = {"zlib-1", DMEM_PAGE_SIZE + 64, zlib_compress, zlib_decompress, &z};
  int rc = bench_codec(r, &b, set, repeat);
  deflateEnd(&z.d);
  inflateEnd(&z.in);
  return rc;
}

static size_t zlib_xor_size(const uint8_t *page, const uint8_t *ref)
{
  uint8_t x[DMEM_PAGE_SIZE], z[DMEM_PAGE_SIZE + 256];
  for (size_t i = 0; i < DMEM_PAGE_SIZE; i++)
    x[i] = page[i] ^ ref[i];
  uLongf zl = sizeof z;
  if (compress2(z, &zl, x, DMEM_PAGE_SIZE, 6) != Z_OK)
    return DMEM_PAGE_SIZE;
  return zl;
}
#endif

/* Walks the pages in order, as a scanner would: a page with an identical
 * earlier page is shared and skipped; otherwise the detector proposes
 * references among the earlier pages, the best patch under half a page
 * (encoded with `flags`) is kept, and the page is indexed. */
static int bench_delta(delta_result *r, const dmem_simdet_options *so, unsigned flags,
                       const char *label, const page_set *set)
{
  memset(r, 0, sizeof *r);
  snprintf(r->detector, sizeof r->detector, "%s", label);
  r->roundtrip_ok = 1;
  dmem_index_options io = DMEM_INDEX_OPTIONS_INIT;
  io.seed = 0x9e3779b97f4a7c15ull;
  io.expected_pages = set->npages;
  io.fetch = fetch_page;
  io.fetch_ud = (void *)set;
  dmem_index *idx = NULL;
  dmem_simdet *det = NULL;
  int rc = dmem_index_create(&idx, &io);
  if (rc == 0)
    rc = dmem_simdet_create(&det, so);
  if (rc != 0) {
    fprintf(stderr, "diffmem bench: %s: %s\n", label, dmem_strerror(rc));
    dmem_index_destroy(idx);
    return -1;
  }
  uint8_t patch[DMEM_DELTA_MAX], best[DMEM_DELTA_MAX], back[DMEM_PAGE_SIZE];
  uint32_t cand[8];
  for (size_t i = 0; i < set->npages; i++) {
    const uint8_t *p = page_at(set, i);
    if (dmem__page_is_zero(p))
      continue;
    uint64_t h = dmem_index_hash(idx, p);
    uint32_t same;
    if (dmem_index_lookup(&same, idx, p, h) == 0)
      continue;
    r->pages_tried++;
    double t0 = now_seconds();
    size_t nc = dmem_simdet_query(cand, so->candidates, det, p);
    double t1 = now_seconds();
    r->detect_secs += t1 - t0;
    size_t best_len = 0;
    uint32_t best_ref = 0;
    for (size_t k = 0; k < nc; k++) {
      size_t len;
      double e0 = now_seconds();
      int erc = dmem_delta_encode_flags(&len, patch, sizeof patch, p, page_at(set, cand[k]), flags);
      r->e_secs += now_seconds() - e0;
      r->encodes++;
      if (erc == 0 && (best_len == 0 || len < best_len)) {
        best_len = len;
        best_ref = cand[k];
        memcpy(best, patch, len);
      }
    }
    if (best_len) {
      double d0 = now_seconds();
      int drc = dmem_delta_decode(back, page_at(set, best_ref), best, best_len);
      r->d_secs += now_seconds() - d0;
      if (drc != 0 || memcmp(back, p, DMEM_PAGE_SIZE) != 0)
        r->roundtrip_ok = 0;
      r->pairs++;
      r->patch_bytes += best_len;
#if DMEM_HAVE_ZLIB
      r->zlib_xor_bytes += zlib_xor_size(p, page_at(set, best_ref));
#endif
    }
    if (dmem_index_insert(idx, h, (uint32_t)i) != 0 ||
        dmem_simdet_insert(det, (uint32_t)i, p) != 0) {
      fprintf(stderr, "diffmem bench: out of memory indexing page %zu\n", i);
      break;
    }
  }
  dmem_simdet_destroy(det);
  dmem_index_destroy(idx);
  return 0;
}

static void print_codec_table(const codec_result *r, size_t n, const char *title)
{
  printf("%s\n", title);
  printf("  %-7s %8s %12s %12s %7s %10s %10s %s\n", "codec", "pages", "in_bytes", "out_bytes",
         "ratio", "comp MB/s", "dec MB/s", "roundtrip");
  for (size_t i = 0; i < n; i++)
    printf("  %-7s %8zu %12zu %12zu %7.3f %10.0f %10.0f %s\n", r[i].name, r[i].pages, r[i].in_bytes,
           r[i].out_bytes, r[i].out_bytes ? (double)r[i].in_bytes / (double)r[i].out_bytes : 0.0,
           mbps(r[i].in_bytes, r[i].c_secs), mbps(r[i].in_bytes, r[i].d_secs),
           r[i].roundtrip_ok ? "ok" : "FAILED");
}

static void json_codecs(const codec_result *r, size_t n)
{
  printf("[");
  for (size_t i = 0; i < n; i++) {
    printf("%s{\"name\":", i ? "," : "");
    json_str(stdout, r[i].name);
    printf(",\"pages\":%zu,\"in_bytes\":%zu,\"out_bytes\":%zu,\"ratio\":%.4f,"
           "\"compress_MBps\":%.1f,\"decompress_MBps\":%.1f,\"roundtrip_ok\":%s}",
           r[i].pages, r[i].in_bytes, r[i].out_bytes,
           r[i].out_bytes ? (double)r[i].in_bytes / (double)r[i].out_bytes : 0.0,
           mbps(r[i].in_bytes, r[i].c_secs), mbps(r[i].in_bytes, r[i].d_secs),
           r[i].roundtrip_ok ? "true" : "false");
  }
  printf("]");
}

/* Results one set can have at most: one per codec id, the engine's
 * default and zlib. */
#define NBENCH ((size_t)DMEM_CODEC_BEST + 3)

/* Runs every available codec over one set; returns how many results. c
 * tries every codec in its best-of mode, dflt those of the engine's
 * default (dmem_codec_default_mask()). */
static size_t run_codecs(codec_result *out, dmem_codec *c, dmem_codec *dflt, const page_set *set,
                         int repeat)
{
  size_t n = 0;
  /* Every codec the library has built in, in id order, then the best-of
   * mode. */
  for (unsigned id = DMEM_CODEC_NONE + 1; id <= DMEM_CODEC_BEST; id++) {
    if (!dmem_codec_name((dmem_codec_id)id) || !dmem_codec_available((dmem_codec_id)id))
      continue;
    if (bench_ours(&out[n], c, (dmem_codec_id)id, dmem_codec_name((dmem_codec_id)id), set,
                   repeat) == 0)
      n++;
  }
  /* What the engine stores a compressed page as, unless told otherwise. */
  if (bench_ours(&out[n], dflt, DMEM_CODEC_BEST, "default", set, repeat) == 0)
    n++;
#if DMEM_HAVE_ZLIB
  if (bench_zlib(&out[n], set, repeat) == 0)
    n++;
#endif
  return n;
}

/* Drops all-zero pages: the engine never compresses them (it keeps no frame
 * for a zero page at all), so they would only flatter every codec. */
static size_t drop_zero_pages(page_set *set)
{
  size_t kept = 0;
  for (size_t i = 0; i < set->npages; i++) {
    if (dmem__page_is_zero(page_at(set, i)))
      continue;
    if (kept != i)
      memcpy(set->data + kept * DMEM_PAGE_SIZE, page_at(set, i), DMEM_PAGE_SIZE);
    kept++;
  }
  size_t dropped = set->npages - kept;
  set->npages = kept;
  return dropped;
}

static int run_codecs_cmd(const bench_opts *o, int nfiles, char **files)
{
  int rc = 1;
  page_set all = {0};
  page_set *per = calloc((size_t)nfiles, sizeof *per);
  codec_result *res = calloc(NBENCH, sizeof *res);
  codec_result *fres = calloc(NBENCH * (size_t)nfiles, sizeof *fres);
  size_t *fn = calloc((size_t)nfiles, sizeof *fn);
  delta_result dres[4];
  size_t ndelta = 0, zeros = 0;
  dmem_codec *c = NULL, *dflt = NULL;
  if (!per || !res || !fres || !fn) {
    fprintf(stderr, "diffmem bench: out of memory\n");
    goto out;
  }
  for (int f = 0; f < nfiles; f++) {
    if (page_set_load(&per[f], files[f]) != 0 || page_set_load(&all, files[f]) != 0)
      goto out;
    drop_zero_pages(&per[f]);
  }
  zeros = drop_zero_pages(&all);
  if (all.npages == 0) {
    fprintf(stderr, "diffmem bench: the input has no non-zero pages\n");
    goto out;
  }
  dmem_codec_options dco = DMEM_CODEC_OPTIONS_INIT;
  dco.best_mask = dmem_codec_default_mask();
  int err = dmem_codec_create(&c, NULL);
  if (err == 0)
    err = dmem_codec_create(&dflt, &dco);
  if (err != 0) {
    fprintf(stderr, "diffmem bench: cannot make a codec context: %s\n", dmem_strerror(err));
    goto out;
  }
  size_t nres = run_codecs(res, c, dflt, &all, o->repeat);
  if (nfiles > 1)
    for (int f = 0; f < nfiles; f++)
      fn[f] = per[f].npages ? run_codecs(fres + NBENCH * (size_t)f, c, dflt, &per[f], 1) : 0;

  dmem_simdet_options paper = DMEM_SIMDET_OPTIONS_INIT;
  paper.seed = 0x5eed;
  if (bench_delta(&dres[ndelta], &paper, 0, "hash(2,1)", &all) == 0)
    ndelta++;
  dmem_simdet_options wide = paper;
  wide.k = 4;
  if (bench_delta(&dres[ndelta], &wide, 0, "hash(4,1)", &all) == 0)
    ndelta++;
  dmem_simdet_options content = paper;
  content.kind = DMEM_SIMDET_CONTENT;
  if (bench_delta(&dres[ndelta], &content, 0, "content(2,1)", &all) == 0)
    ndelta++;
  /* The same pairs with the LZ-style form also tried (DMEM_DELTA_LZ). */
  if (bench_delta(&dres[ndelta], &content, DMEM_DELTA_LZ, "content(2,1)+lz", &all) == 0)
    ndelta++;

  rc = 0;
  for (size_t i = 0; i < nres; i++)
    if (!res[i].roundtrip_ok)
      rc = 1;
  for (size_t i = 0; i < ndelta; i++)
    if (!dres[i].roundtrip_ok)
      rc = 1;

  if (o->json) {
    printf("{\"schema\":%d,\"codecs\":", DMEM_JSON_SCHEMA);
    json_codecs(res, nres);
    printf(",\"delta\":[");
    for (size_t i = 0; i < ndelta; i++) {
      const delta_result *d = &dres[i];
      printf("%s{\"detector\":", i ? "," : "");
      json_str(stdout, d->detector);
      printf(",\"pairs\":%zu,\"mean_patch_bytes\":%.1f,\"encode_MBps\":%.1f,"
             "\"decode_MBps\":%.1f,\"roundtrip_ok\":%s,\"pages_tried\":%zu,"
             "\"bytes_saved\":%zu,\"zlib_xor_mean_bytes\":%.1f,\"detect_MBps\":%.1f}",
             d->pairs, d->pairs ? (double)d->patch_bytes / (double)d->pairs : 0.0,
             mbps(d->encodes * DMEM_PAGE_SIZE, d->e_secs),
             mbps(d->pairs * DMEM_PAGE_SIZE, d->d_secs), d->roundtrip_ok ? "true" : "false",
             d->pages_tried, d->pairs * DMEM_PAGE_SIZE - d->patch_bytes,
             d->pairs ? (double)d->zlib_xor_bytes / (double)d->pairs : 0.0,
             mbps(d->pages_tried * DMEM_PAGE_SIZE, d->detect_secs));
    }
    printf("],\"zero_pages_dropped\":%zu,\"files\":[", zeros);
    for (int f = 0; f < nfiles && nfiles > 1; f++) {
      printf("%s{\"path\":", f ? "," : "");
      json_str(stdout, files[f]);
      printf(",\"codecs\":");
      json_codecs(fres + NBENCH * (size_t)f, fn[f]);
      printf("}");
    }
    printf("]}\n");
  } else {
    printf("%zu non-zero pages from %d file(s); %zu zero pages left out\n\n", all.npages, nfiles,
           zeros);
    print_codec_table(res, nres, "codecs, all pages:");
    for (int f = 0; f < nfiles && nfiles > 1; f++) {
      char title[512];
      snprintf(title, sizeof title, "\ncodecs, %s:", files[f]);
      print_codec_table(fres + NBENCH * (size_t)f, fn[f], title);
    }
    printf("\ndelta (pages not identical to an earlier page, patched against a candidate):\n");
    printf("  %-15s %8s %8s %10s %10s %11s %10s %10s %s\n", "detector", "tried", "pairs",
           "mean patch", "zlib(xor)", "saved KiB", "enc MB/s", "dec MB/s", "roundtrip");
    for (size_t i = 0; i < ndelta; i++) {
      const delta_result *d = &dres[i];
      printf("  %-15s %8zu %8zu %10.1f %10.1f %11zu %10.0f %10.0f %s\n", d->detector,
             d->pages_tried, d->pairs, d->pairs ? (double)d->patch_bytes / (double)d->pairs : 0.0,
             d->pairs ? (double)d->zlib_xor_bytes / (double)d->pairs : 0.0,
             (d->pairs * DMEM_PAGE_SIZE - d->patch_bytes) / 1024,
             mbps(d->encodes * DMEM_PAGE_SIZE, d->e_secs),
             mbps(d->pairs * DMEM_PAGE_SIZE, d->d_secs), d->roundtrip_ok ? "ok" : "FAILED");
    }
  }
out:
  dmem_codec_destroy(c);
  dmem_codec_destroy(dflt);
  for (int f = 0; per && f < nfiles; f++)
    page_set_free(&per[f]);
  page_set_free(&all);
  free(per);
  free(res);
  free(fres);
  free(fn);
  return rc;
}

static int run(int argc, char **argv)
{
  bench_opts o = {.json = 0, .repeat = 3};
  if (argc < 2)
    return cmd_usage_error(&dmem_cmd_bench,
                           "missing what to measure (codecs, ksm, sidechannel or faults)");
  if (strcmp(argv[1], "ksm") == 0)
    return bench_ksm_run(argc - 1, argv + 1);
  if (strcmp(argv[1], "sidechannel") == 0)
    return bench_sidechannel_run(argc - 1, argv + 1);
  if (strcmp(argv[1], "faults") == 0)
    return bench_faults_run(argc - 1, argv + 1);
  if (strcmp(argv[1], "codecs") != 0)
    return cmd_usage_error(&dmem_cmd_bench, "unknown benchmark '%s'", argv[1]);
  int nfiles = 0;
  char **files = calloc((size_t)argc, sizeof *files);
  if (!files)
    return 1;
  enum { O_JSON = 256, O_REPEAT };
  static const struct option opts[] = {{"json", no_argument, NULL, O_JSON},
                                       {"repeat", required_argument, NULL, O_REPEAT},
                                       {NULL, 0, NULL, 0}};
  optind = 0;
  for (int c; (c = cmd_getopt(&dmem_cmd_bench, argc - 1, argv + 1, opts)) != -1;) {
    if (c == '?') {
      free(files);
      return EXIT_USAGE;
    }
    if (c == O_JSON) {
      o.json = 1;
    } else if (c == O_REPEAT) {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (*end || v < 1 || v > 100) {
        free(files);
        return cmd_usage_error(&dmem_cmd_bench, "--repeat takes a number from 1 to 100");
      }
      o.repeat = (int)v;
    }
  }
  for (int i = optind + 1; i < argc; i++)
    files[nfiles++] = argv[i];
  if (nfiles == 0) {
    free(files);
    return cmd_usage_error(&dmem_cmd_bench, "no page file given");
  }
  int rc = run_codecs_cmd(&o, nfiles, files);
  free(files);
  return rc;
}

const dmem_cmd dmem_cmd_bench = {
    .name = "bench",
    .summary = "measure codecs and detectors on real pages, or the engine against KSM",
    .usage = "usage: diffmem bench codecs [--json] [--repeat N] FILE...\n"
             "       diffmem bench ksm [--json] [--seconds N] [--ksm-pages-to-scan N]\n"
             "                         [--ksm-sleep-ms N] [--guests N] [--guest-mib N]\n"
             "                         [--no-progress] [IMAGE...]\n"
             "       diffmem bench sidechannel [--json] [--pairs N] [--seed N]\n"
             "                                 [--where thread|vcpu|both]\n"
             "       diffmem bench faults [--json] [--pages N] [--rounds N] [--scan-ms N]\n"
             "                            [--scan-pages N] [--connect SOCKET]\n"
             "\n"
             "bench codecs:\n"
             "\n"
             "Reads each FILE as raw 4 KiB pages (for example from bench/capture-pages)\n"
             "and reports, for each page codec (wkdm, lzo, lz4, zstd, best), for the\n"
             "engine's default choice (default: best of dmem_codec_default_mask()) and,\n"
             "as a yardstick, zlib level 1 (zlib-1, raw deflate): pages, input and\n"
             "output bytes, ratio, compress and decompress MB/s, and whether every\n"
             "page round-tripped; with several files, the same per file. For\n"
             "each similarity detector it walks the pages in order, skips pages\n"
             "identical to an earlier one, patches the rest against the detector's\n"
             "candidate, and reports pairs found, mean patch size (beside zlib of\n"
             "page XOR reference), bytes saved, encode MB/s (over every encode call,\n"
             "refused ones included), decode MB/s and round trip. The row\n"
             "content(2,1)+lz encodes the content detector's pairs with DMEM_DELTA_LZ.\n"
             "All-zero pages are left out: the engine keeps no data for them.\n"
             "Each timed codec pass runs N times (default 3) and the fastest counts.\n"
             "Exit status 1 if any round trip failed.\n"
             "\n"
             "bench ksm (needs root, /dev/kvm and KSM):\n"
             "\n"
             "Runs the guests of `diffmem demo` (the same content: IMAGEs, or --guests\n"
             "generated guests of --guest-mib MiB, default 4 of 48; the same program)\n"
             "three times, --seconds each (default 60): with RAM in plain anonymous\n"
             "memory (none), in anonymous memory marked MADV_MERGEABLE with KSM\n"
             "running at --ksm-pages-to-scan (default 100) pages every --ksm-sleep-ms\n"
             "(default 20: the kernel's defaults) (ksm), and in memfd regions on one\n"
             "libdiffmem engine, all guests in one sharing domain, scanned at the\n"
             "demo's rate (diffmem). KSM's other settings (smart_scan, use_zero_pages,\n"
             "advisor) stay as the host has them. For ksm and diffmem it reports:\n"
             "  saved_pct, saved_mib  host memory saved at the end, by the kernel's\n"
             "                        accounting: memfd blocks plus this process's\n"
             "                        Pss_Anon (a KSM page counts once), before - end;\n"
             "  cpu_s                 CPU spent reclaiming: ksmd's utime + stime from\n"
             "                        /proc (KSM's work for other processes included),\n"
             "                        or the engine's scanning and fault threads;\n"
             "  t50_s, t90_s          time to 50% and 90% of the final savings\n"
             "                        (sampled every 0.25 s);\n"
             "  cpu_per_gib           CPU seconds at t90 per GiB saved at t90;\n"
             "  steady_cpu_pct        CPU in % of a core from t90 (or half the run, if\n"
             "                        later) to the end; null with under 5 s of it;\n"
             "  guest_ops_per_s       guest operations per second of vCPU time inside\n"
             "                        KVM_RUN (the guests are paced at a million a\n"
             "                        second; this is how fast they run when they run,\n"
             "                        faults and copy-on-write breaks included), and\n"
             "                        slowdown_pct against none's;\n"
             "  verify_mismatches     every page checked at the end, as the demo does.\n"
             "KSM's side also has pages_shared and pages_sharing (host-wide, at the\n"
             "end) and full_scans (made during its run): KSM scans every mergeable\n"
             "region of the host, so other mergeable memory (a QEMU guest) slows it.\n"
             "With --json one object: {\"ksm\": {...}, \"diffmem\": {...}, \"none\":\n"
             "{\"guest_ops_per_s\"}, \"ratio\": {\"saved\", \"cpu_per_gib\"}}.\n"
             "KSM's settings (run, pages_to_scan, sleep_millisecs) are written back\n"
             "when its run ends, on error and on SIGINT or SIGTERM, and the guests'\n"
             "pages are unmerged before they are freed (a SIGKILL leaves the rate\n"
             "set). Exit status 1 when KVM, KSM or root is missing (nothing is\n"
             "changed then), a run failed or was interrupted, or a page mismatched.\n"
             "\n"
             "bench sidechannel (needs root and userfaultfd; /dev/kvm for vcpu):\n"
             "\n"
             "The timing attack on deduplication, against the engine. A victim VM\n"
             "holds --pairs (default 1000) random secret pages; an attacker VM on the\n"
             "same engine holds, for each, a guess beside an unrelated page: the\n"
             "secret itself (exact) or the secret with one byte changed (near). Both\n"
             "stay idle while the engine scans them 8 times, then the attacker times\n"
             "one read (or one write of the byte already there) of each page, in\n"
             "random order, through a KVM region: from a host thread, and from a real\n"
             "vCPU with rdtsc. Modes: default (one sharing domain, default options),\n"
             "domains (victim and attacker in domains of their own), secure (one\n"
             "domain, dmem_engine_options.secure). Per run: the guess and other\n"
             "pages' latency p10/p50/p90, the two-sample Kolmogorov-Smirnov statistic\n"
             "of the two with its 5% critical value 1.358 * sqrt(2 / pairs), and the\n"
             "held-out accuracy of the best threshold classifier (trained on the\n"
             "even pairs, scored on the odd ones; 0.5 is a coin). With --json one\n"
             "object: {\"pairs\", \"runs\": [{\"mode\", \"where\", \"op\", \"guess\",\n"
             "\"accuracy\", \"ks\", \"ks_critical\", \"latency\": {\"guess\": {\"p10_us\",\n"
             "\"p50_us\", \"p90_us\"}, \"other\": {...}}}]}. Exit status 1 when a run failed.\n"
             "\n"
             "bench faults (needs root and userfaultfd):\n"
             "\n"
             "What a fault on an evicted page costs the thread that touches it, with\n"
             "the engine in this process (a KVM region) and in diffmemd (started here\n"
             "on a temporary socket, or --connect), in one run: each of --rounds\n"
             "(default 3) rounds per side fills --pages (default 4096) pages with 8\n"
             "contents, waits until the engine evicted nearly all, and times a read of\n"
             "one byte of every page in a random order, while the engine's scanner runs\n"
             "every --scan-ms (default 100) over --scan-pages (default 4096) pages,\n"
             "diffmemd's defaults. Both sides map shared pages copy-on-write on the\n"
             "read (diffmemd through the client's agent). Reports p50/p90/p99 of the\n"
             "reads per side and the ratios (daemon / in process); --json: {pages,\n"
             "rounds, scan_ms, scan_pages, in_process: {p50_us, p90_us, p99_us,\n"
             "evicted_pct}, daemon: {...}, ratio_p50, ratio_p90, ratio_p99,\n"
             "mismatches}. Exit status 1 when a page read wrong or a side failed.\n",
    .run = run,
};
