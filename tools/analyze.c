/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem analyze: the study behind the Difference Engine paper's Table 1
 * (Gupta et al., OSDI 2008, section 5.1), with the engine's own parts.
 *
 * Pass 1 (analyze_add_page) streams every page once. The keyed XXH3 index
 * of codec.h finds an earlier page with the same bytes (it compares bytes,
 * never trusts the hash), so the sharing figure is exact: pages saved =
 * pages - distinct contents, and a zero page is a content like any other.
 * Only distinct contents are kept, in order of first sight, each with how
 * often it was seen, the first input that had it and the last.
 *
 * A page whose content this input already had is a within-input duplicate;
 * a page whose content first appeared in an earlier input, seen here for
 * the first time, is an across-input duplicate. So per input, saved_within
 * = pages - distinct, and the inputs' figures add up to the set's.
 *
 * Pass 2 (analyze_finish) walks the unique contents (seen exactly once) in
 * order of first sight, as the engine's scanner would meet them. A content
 * seen twice or more is shared: its one frame stays whole and serves as a
 * patch reference, as in the engine. A unique page is patched when the
 * detector (the engine's: HashSimilarityDetector(2,1), one candidate from
 * the frames and one from unpatched unique pages) proposes a reference
 * whose patch is under half a page; otherwise it becomes a reference itself
 * and is offered to the compressor (the engine's default codecs),
 * which counts when its blob is under half a page. Patched pages are never
 * references, so there are no chains.
 *
 * The zero-free view is the same analysis with zero pages left out: zero
 * pages are never patched (no detector keys them) and never references. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"

enum { CHUNK_PAGES = 4096 }; /* 16 MiB of distinct contents per chunk */

typedef struct content {
  uint32_t count; /* saturates at UINT32_MAX */
  uint32_t first_input;
  uint32_t last_input;
} content;

struct analyze {
  analyze_options opts;
  dmem_index *index;
  uint8_t **chunks;
  size_t nchunks, chunk_cap;
  content *meta;
  size_t ncontents, meta_cap;
  uint32_t zero_id; /* UINT32_MAX: no zero page yet */
  analyze_row *rows;
  size_t nrows, rows_cap;
};

static int is_zero(const uint8_t *p)
{
  static const uint8_t zero[DMEM_PAGE_SIZE];
  return memcmp(p, zero, DMEM_PAGE_SIZE) == 0;
}

static const uint8_t *content_at(const analyze *a, uint32_t id)
{
  return a->chunks[id / CHUNK_PAGES] + (size_t)(id % CHUNK_PAGES) * DMEM_PAGE_SIZE;
}

static const void *fetch(uint32_t id, void *ud)
{
  const analyze *a = ud;
  return id < a->ncontents ? content_at(a, id) : NULL;
}

int analyze_create(analyze **out, const analyze_options *opts)
{
  analyze_options def = ANALYZE_OPTIONS_INIT;
  analyze *a = calloc(1, sizeof *a);
  if (!out || !a) {
    free(a);
    return out ? DMEM_ENOMEM : DMEM_EINVAL;
  }
  a->opts = opts ? *opts : def;
  if (!a->opts.seed)
    a->opts.seed = def.seed;
  a->zero_id = UINT32_MAX;
  dmem_index_options io = DMEM_INDEX_OPTIONS_INIT;
  io.seed = a->opts.seed;
  io.fetch = fetch;
  io.fetch_ud = a;
  int rc = dmem_index_create(&a->index, &io);
  if (rc) {
    free(a);
    return rc;
  }
  *out = a;
  return 0;
}

void analyze_destroy(analyze *a)
{
  if (!a)
    return;
  dmem_index_destroy(a->index);
  for (size_t i = 0; i < a->nchunks; i++)
    free(a->chunks[i]);
  free(a->chunks);
  free(a->meta);
  free(a->rows);
  free(a);
}

int analyze_begin_input(analyze *a, const char *name, const char *kind)
{
  if (a->nrows >= UINT32_MAX - 1)
    return DMEM_ERANGE;
  if (a->nrows == a->rows_cap) {
    size_t cap = a->rows_cap ? a->rows_cap * 2 : 16;
    analyze_row *r = realloc(a->rows, cap * sizeof *r);
    if (!r)
      return DMEM_ENOMEM;
    a->rows = r;
    a->rows_cap = cap;
  }
  analyze_row *row = &a->rows[a->nrows++];
  memset(row, 0, sizeof *row);
  snprintf(row->name, sizeof row->name, "%s", name);
  snprintf(row->kind, sizeof row->kind, "%s", kind);
  return 0;
}

/* Room for one more distinct content; returns its id or UINT32_MAX. */
static uint32_t new_content(analyze *a, const uint8_t *page)
{
  if (a->ncontents >= UINT32_MAX - 1)
    return UINT32_MAX;
  if (a->ncontents == a->meta_cap) {
    size_t cap = a->meta_cap ? a->meta_cap * 2 : 4096;
    content *m = realloc(a->meta, cap * sizeof *m);
    if (!m)
      return UINT32_MAX;
    a->meta = m;
    a->meta_cap = cap;
  }
  if (a->ncontents == a->nchunks * CHUNK_PAGES) {
    if (a->nchunks == a->chunk_cap) {
      size_t cap = a->chunk_cap ? a->chunk_cap * 2 : 16;
      uint8_t **c = realloc(a->chunks, cap * sizeof *c);
      if (!c)
        return UINT32_MAX;
      a->chunks = c;
      a->chunk_cap = cap;
    }
    a->chunks[a->nchunks] = malloc((size_t)CHUNK_PAGES * DMEM_PAGE_SIZE);
    if (!a->chunks[a->nchunks])
      return UINT32_MAX;
    a->nchunks++;
  }
  uint32_t id = (uint32_t)a->ncontents;
  memcpy(a->chunks[id / CHUNK_PAGES] + (size_t)(id % CHUNK_PAGES) * DMEM_PAGE_SIZE, page,
         DMEM_PAGE_SIZE);
  return id;
}

int analyze_add_page(analyze *a, const void *page)
{
  if (!a->nrows)
    return DMEM_EINVAL;
  uint32_t cur = (uint32_t)(a->nrows - 1);
  analyze_row *row = &a->rows[cur];
  int zero = is_zero(page);
  analyze_counts *nz = zero ? NULL : &row->nonzero;
  uint64_t h = dmem_index_hash(a->index, page);
  uint32_t id;
  if (dmem_index_lookup(&id, a->index, page, h) == 0) {
    content *m = &a->meta[id];
    if (m->count < UINT32_MAX)
      m->count++;
    if (m->last_input == cur) {
      row->all.saved_within++;
      if (nz)
        nz->saved_within++;
    } else {
      m->last_input = cur;
      row->all.distinct_pages++;
      row->all.saved_across++;
      if (nz) {
        nz->distinct_pages++;
        nz->saved_across++;
      }
    }
  } else {
    id = new_content(a, page);
    if (id == UINT32_MAX)
      return DMEM_ENOMEM;
    int rc = dmem_index_insert(a->index, h, id);
    if (rc)
      return rc;
    a->meta[id] = (content){.count = 1, .first_input = cur, .last_input = cur};
    a->ncontents++;
    if (zero)
      a->zero_id = id;
    row->all.distinct_pages++;
    if (nz)
      nz->distinct_pages++;
  }
  row->all.pages++;
  if (zero)
    row->all.zero_pages++;
  else
    row->nonzero.pages++;
  return 0;
}

void analyze_note_unreadable(analyze *a, uint64_t pages)
{
  if (a->nrows)
    a->rows[a->nrows - 1].unreadable_pages += pages;
}

void analyze_note_ksm(analyze *a, uint64_t pages)
{
  if (a->nrows)
    a->rows[a->nrows - 1].ksm_pages += pages;
}

typedef struct pass2 {
  dmem_codec *codec;
  dmem_simdet *frames, *live;
  uint8_t patch[DMEM_DELTA_MAX], blob[DMEM_COMPRESS_BOUND];
} pass2;

/* Half a page: a patch or blob counts when it is shorter. */
enum { HALF = DMEM_PAGE_SIZE / 2 };

/* The shortest patch under half a page against the detector's candidates,
 * or 0 when none is. */
static size_t best_patch(pass2 *p, const analyze *a, const uint8_t *page)
{
  uint32_t cand[16];
  size_t best = 0;
  unsigned want = a->opts.simdet_candidates;
  if (want > 8)
    want = 8;
  size_t n = dmem_simdet_query(cand, want, p->frames, page);
  n += dmem_simdet_query(cand + n, want, p->live, page);
  for (size_t i = 0; i < n; i++) {
    size_t len;
    size_t cap = best ? best - 1 : HALF - 1;
    if (dmem_delta_encode(&len, p->patch, cap, page, content_at(a, cand[i])) == 0)
      best = len;
  }
  return best;
}

static int make_pass2(pass2 *p, const analyze *a)
{
  memset(p, 0, sizeof *p);
  dmem_codec_options co = DMEM_CODEC_OPTIONS_INIT;
  co.best_mask = a->opts.codec_best_mask ? a->opts.codec_best_mask : dmem_codec_default_mask();
  int rc = dmem_codec_create(&p->codec, &co);
  if (rc || !a->opts.simdet_kind)
    return rc;
  dmem_simdet_options so = DMEM_SIMDET_OPTIONS_INIT;
  so.kind = a->opts.simdet_kind;
  so.k = a->opts.simdet_k;
  so.s = a->opts.simdet_s;
  so.candidates = a->opts.simdet_candidates;
  so.seed = a->opts.seed;
  so.expected_pages = a->ncontents;
  rc = dmem_simdet_create(&p->frames, &so);
  if (!rc)
    rc = dmem_simdet_create(&p->live, &so);
  return rc;
}

static void free_pass2(pass2 *p)
{
  dmem_simdet_destroy(p->frames);
  dmem_simdet_destroy(p->live);
  dmem_codec_destroy(p->codec);
}

static void add_counts(analyze_counts *sum, const analyze_counts *c)
{
  sum->pages += c->pages;
  sum->zero_pages += c->zero_pages;
  sum->saved_within += c->saved_within;
  sum->saved_across += c->saved_across;
  sum->patched_pages += c->patched_pages;
  sum->compressed_pages += c->compressed_pages;
  sum->bytes_patching += c->bytes_patching;
  sum->bytes_compression += c->bytes_compression;
}

/* Patches or compresses content id, which only input row has. */
static int reclaim_unique(pass2 *p, analyze *a, uint32_t id, analyze_row *row)
{
  const uint8_t *page = content_at(a, id);
  int zero = id == a->zero_id;
  size_t len = zero || !p->frames ? 0 : best_patch(p, a, page);
  if (len) {
    row->all.patched_pages++;
    row->all.bytes_patching += DMEM_PAGE_SIZE - len;
    row->nonzero.patched_pages++;
    row->nonzero.bytes_patching += DMEM_PAGE_SIZE - len;
    return 0;
  }
  if (p->live && !zero) {
    int rc = dmem_simdet_insert(p->live, id, page);
    if (rc)
      return rc;
  }
  if (dmem_codec_compress(&len, p->blob, HALF - 1, p->codec, a->opts.codec, page) == 0) {
    row->all.compressed_pages++;
    row->all.bytes_compression += DMEM_PAGE_SIZE - len;
    if (!zero) {
      row->nonzero.compressed_pages++;
      row->nonzero.bytes_compression += DMEM_PAGE_SIZE - len;
    }
  }
  return 0;
}

int analyze_finish(analyze_result *out, analyze *a, analyze_progress_fn progress, void *ud)
{
  memset(out, 0, sizeof *out);
  pass2 p;
  int rc = make_pass2(&p, a);
  uint64_t unique = 0, done = 0;
  for (size_t i = 0; i < a->ncontents; i++) {
    if (a->meta[i].count >= 2 && i != a->zero_id && p.frames)
      rc = rc ? rc : dmem_simdet_insert(p.frames, (uint32_t)i, content_at(a, (uint32_t)i));
    unique += a->meta[i].count == 1;
  }
  for (size_t i = 0; !rc && i < a->ncontents; i++) {
    if (a->meta[i].count != 1)
      continue;
    rc = reclaim_unique(&p, a, (uint32_t)i, &a->rows[a->meta[i].first_input]);
    if (progress && (++done % 1024 == 0 || done == unique))
      progress(done, unique, ud);
  }
  free_pass2(&p);
  if (rc)
    return rc;

  snprintf(out->total.name, sizeof out->total.name, "all inputs");
  snprintf(out->total.kind, sizeof out->total.kind, "set");
  for (size_t i = 0; i < a->nrows; i++) {
    add_counts(&out->total.all, &a->rows[i].all);
    add_counts(&out->total.nonzero, &a->rows[i].nonzero);
    out->total.unreadable_pages += a->rows[i].unreadable_pages;
    out->total.ksm_pages += a->rows[i].ksm_pages;
  }
  out->total.all.distinct_pages = a->ncontents;
  out->total.nonzero.distinct_pages = a->ncontents - (a->zero_id != UINT32_MAX);
  out->inputs = a->rows;
  out->ninputs = a->nrows;
  a->rows = NULL;
  a->nrows = a->rows_cap = 0;

  const char *cn = dmem_codec_name(a->opts.codec);
  snprintf(out->codec, sizeof out->codec, "%s", cn ? cn : "?");
  if (a->opts.codec == DMEM_CODEC_BEST && !a->opts.codec_best_mask) {
    /* The engine's default codecs, named: "best (zstd)". */
    unsigned mask = dmem_codec_default_mask();
    size_t len = strlen(out->codec);
    const char *sep = " (";
    for (unsigned id = 0; id < 32 && len < sizeof out->codec; id++) {
      if (!(mask & (1u << id)))
        continue;
      len += (size_t)snprintf(out->codec + len, sizeof out->codec - len, "%s%s", sep,
                              dmem_codec_name((dmem_codec_id)id));
      sep = ", ";
    }
    if (len < sizeof out->codec)
      snprintf(out->codec + len, sizeof out->codec - len, ")");
  }
  if (!a->opts.simdet_kind)
    snprintf(out->detector, sizeof out->detector, "none");
  else
    snprintf(out->detector, sizeof out->detector, "%s(%u,%u) x%u",
             a->opts.simdet_kind == DMEM_SIMDET_HASH ? "hash" : "content", a->opts.simdet_k,
             a->opts.simdet_s, a->opts.simdet_candidates);
  return 0;
}

void analyze_result_free(analyze_result *r)
{
  free(r->inputs);
  memset(r, 0, sizeof *r);
}

analyze_percent analyze_percent_of(const analyze_counts *c)
{
  analyze_percent p = {0, 0, 0, 0, 0};
  if (!c->pages)
    return p;
  double bytes = (double)c->pages * DMEM_PAGE_SIZE;
  double share = (double)analyze_saved_sharing(c) * DMEM_PAGE_SIZE;
  p.within = 100.0 * (double)c->saved_within * DMEM_PAGE_SIZE / bytes;
  p.across = 100.0 * (double)c->saved_across * DMEM_PAGE_SIZE / bytes;
  p.sharing = 100.0 * share / bytes;
  p.sharing_patching = 100.0 * (share + (double)c->bytes_patching) / bytes;
  p.total = 100.0 * (share + (double)c->bytes_patching + (double)c->bytes_compression) / bytes;
  return p;
}
