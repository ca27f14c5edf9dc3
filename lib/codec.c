/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Page codecs behind one interface.
 *
 * A blob is one header byte, the dmem_codec_id of the codec that made it,
 * followed by that codec's stream. The header makes blobs self-describing,
 * so a store can mix codecs (the best-of mode does) and a decoder never
 * guesses. Every decoder is handed the exact stream length and a 4 KiB
 * output, and a stream only counts as valid when it decodes to exactly
 * DMEM_PAGE_SIZE bytes and is consumed whole.
 *
 * WKdm is ours (wkdm.c). LZO1X-1, LZ4 and zstd come from their libraries
 * when configure found them (liblzo2 is GPL-2.0-or-later, so a build
 * without it stays LGPL-only: README, "License"). liblzo2 and liblz4 work in
 * state that the context allocates through the caller's allocator; zstd
 * allocates its own contexts with malloc (its custom-allocator API is
 * experimental).
 */
#include "config.h"

#include <string.h>

#if DMEM_HAVE_LZO
#include <lzo/lzo1x.h>
#endif
#if DMEM_HAVE_LZ4
#include <lz4.h>
#endif
#if DMEM_HAVE_ZSTD
#include <zstd.h>
#include <zstd_errors.h>
#endif

#include <diffmem/codec.h>

#include "codec_internal.h"
#include "internal.h"

#define STREAM_BOUND (DMEM_COMPRESS_BOUND - 1)

#if DMEM_HAVE_LZO
#define HAVE_LZO 1
#else
#define HAVE_LZO 0
#endif
#if DMEM_HAVE_LZ4
#define HAVE_LZ4 1
#else
#define HAVE_LZ4 0
#endif
#if DMEM_HAVE_ZSTD
#define HAVE_ZSTD 1
#else
#define HAVE_ZSTD 0
#endif

struct dmem_codec {
  dmem__alloc alloc;
#if DMEM_HAVE_LZO
  void *lzo_wrk; /* LZO1X_1_MEM_COMPRESS bytes */
#endif
#if DMEM_HAVE_LZ4
  void *lz4_state; /* LZ4_sizeofState() bytes */
#endif
#if DMEM_HAVE_ZSTD
  ZSTD_CCtx *zc;
  ZSTD_DCtx *zd;
#endif
  int zstd_level;
  unsigned best_mask;
  /* Codecs that can overrun a short buffer write here first. */
  uint8_t scratch[STREAM_BOUND] __attribute__((aligned(16)));
  uint8_t best[STREAM_BOUND] __attribute__((aligned(16)));
};

static const char *const names[] = {
  [DMEM_CODEC_WKDM] = "wkdm",
  [DMEM_CODEC_LZO] = "lzo",
  [DMEM_CODEC_LZ4] = "lz4",
  [DMEM_CODEC_ZSTD] = "zstd",
  [DMEM_CODEC_BEST] = "best",
};
#define NNAMES (sizeof names / sizeof names[0])

unsigned dmem_codec_default_mask(void)
{
  /* The paper's pair; without liblzo2, LZ4 is the LZ-class partner. */
  unsigned lz = HAVE_LZO ? 1u << DMEM_CODEC_LZO : HAVE_LZ4 ? 1u << DMEM_CODEC_LZ4 : 0;
  return (1u << DMEM_CODEC_WKDM) | lz;
}

int dmem_codec_available(dmem_codec_id id)
{
  switch (id) {
  case DMEM_CODEC_WKDM:
  case DMEM_CODEC_BEST:
    return 1;
  case DMEM_CODEC_LZO:
    return HAVE_LZO;
  case DMEM_CODEC_LZ4:
    return HAVE_LZ4;
  case DMEM_CODEC_ZSTD:
    return HAVE_ZSTD;
  default:
    return 0;
  }
}

const char *dmem_codec_name(dmem_codec_id id)
{
  if ((unsigned)id >= NNAMES)
    return NULL;
  return names[id];
}

int dmem_codec_from_name(dmem_codec_id *out, const char *name)
{
  if (!out || !name)
    return DMEM_EINVAL;
  for (unsigned i = 0; i < NNAMES; i++) {
    if (names[i] && strcmp(names[i], name) == 0) {
      if (!dmem_codec_available((dmem_codec_id)i))
        return DMEM_ENOTSUP;
      *out = (dmem_codec_id)i;
      return 0;
    }
  }
  return DMEM_ENOENT;
}

/* Is id a codec that can stand in a blob header? */
static int is_stream_codec(unsigned id)
{
  return id != DMEM_CODEC_BEST && id < NNAMES && names[id] != NULL;
}

dmem_codec_id dmem_codec_of_blob(const void *blob, size_t blob_len)
{
  if (!blob || blob_len == 0)
    return DMEM_CODEC_NONE;
  unsigned id = ((const uint8_t *)blob)[0];
  return is_stream_codec(id) ? (dmem_codec_id)id : DMEM_CODEC_NONE;
}

int dmem_codec_create(dmem_codec **out, const dmem_codec_options *opts)
{
  static const dmem_codec_options defaults = DMEM_CODEC_OPTIONS_INIT;
  if (!out)
    return DMEM_EINVAL;
  if (!opts)
    opts = &defaults;
  if (opts->version != DMEM_CODEC_OPTIONS_VERSION)
    return DMEM_EVERSION;
  if (opts->zstd_level < 1 || opts->zstd_level > 19 || !dmem__alloc_valid(opts->allocator))
    return DMEM_EINVAL;
  /* Bits of no codec are a mistake; a mask of codecs this build lacks
   * would make every compression fail. */
  unsigned known = (1u << DMEM_CODEC_WKDM) | (1u << DMEM_CODEC_LZO) | (1u << DMEM_CODEC_LZ4) |
                   (1u << DMEM_CODEC_ZSTD);
  if (opts->best_mask & ~known)
    return DMEM_EINVAL;
  unsigned built = 0;
  for (unsigned id = 1; id < DMEM_CODEC_BEST; id++)
    built |= dmem_codec_available((dmem_codec_id)id) ? 1u << id : 0;
  if (opts->best_mask && !(opts->best_mask & built))
    return DMEM_ENOTSUP;
#if DMEM_HAVE_LZO
  if (lzo_init() != LZO_E_OK)
    return DMEM_ENOTSUP;
#endif

  dmem__alloc a;
  dmem__alloc_init(&a, opts->allocator);
  dmem_codec *c = dmem__malloc_aligned(&a, sizeof *c, 64);
  if (!c)
    return DMEM_ENOMEM;
  memset(c, 0, offsetof(dmem_codec, scratch));
  c->alloc = a;
  c->zstd_level = opts->zstd_level;
  c->best_mask = opts->best_mask;
#if DMEM_HAVE_LZO
  c->lzo_wrk = dmem__malloc_aligned(&a, LZO1X_1_MEM_COMPRESS, 64);
  if (!c->lzo_wrk)
    goto fail;
#endif
#if DMEM_HAVE_LZ4
  c->lz4_state = dmem__malloc_aligned(&a, (size_t)LZ4_sizeofState(), 64);
  if (!c->lz4_state)
    goto fail;
#endif
#if DMEM_HAVE_ZSTD
  c->zc = ZSTD_createCCtx();
  c->zd = ZSTD_createDCtx();
  if (!c->zc || !c->zd)
    goto fail;
  /* No checksum (the store keeps its own) and no dictionary id: 4 bytes
   * saved on every page. */
  ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, c->zstd_level);
  ZSTD_CCtx_setParameter(c->zc, ZSTD_c_checksumFlag, 0);
  ZSTD_CCtx_setParameter(c->zc, ZSTD_c_dictIDFlag, 0);
  ZSTD_CCtx_setParameter(c->zc, ZSTD_c_contentSizeFlag, 0);
#endif
  *out = c;
  return 0;
fail:
  dmem_codec_destroy(c);
  return DMEM_ENOMEM;
}

void dmem_codec_destroy(dmem_codec *c)
{
  if (!c)
    return;
  dmem__alloc a = c->alloc;
#if DMEM_HAVE_LZO
  dmem__free(&a, c->lzo_wrk, LZO1X_1_MEM_COMPRESS);
#endif
#if DMEM_HAVE_LZ4
  dmem__free(&a, c->lz4_state, (size_t)LZ4_sizeofState());
#endif
#if DMEM_HAVE_ZSTD
  ZSTD_freeCCtx(c->zc);
  ZSTD_freeDCtx(c->zd);
#endif
  dmem__free(&a, c, sizeof *c);
}

/* Compresses with one codec into dst (STREAM_BOUND bytes of room).
 * Returns the stream length, or a negative error. */
static int stream_compress(dmem_codec *c, dmem_codec_id id, uint8_t *dst, const void *page)
{
  switch (id) {
  case DMEM_CODEC_WKDM:
    return dmem__wkdm_compress(dst, STREAM_BOUND, page);
#if DMEM_HAVE_LZO
  case DMEM_CODEC_LZO: {
    lzo_uint n = STREAM_BOUND;
    if (lzo1x_1_compress(page, DMEM_PAGE_SIZE, dst, &n, c->lzo_wrk) != LZO_E_OK)
      return DMEM_EIO;
    return (int)n;
  }
#endif
#if DMEM_HAVE_LZ4
  case DMEM_CODEC_LZ4: {
    int n = LZ4_compress_fast_extState(c->lz4_state, page, (char *)dst, DMEM_PAGE_SIZE,
                                       STREAM_BOUND, 1);
    return n > 0 ? n : DMEM_EIO;
  }
#endif
#if DMEM_HAVE_ZSTD
  case DMEM_CODEC_ZSTD: {
    size_t n = ZSTD_compress2(c->zc, dst, STREAM_BOUND, page, DMEM_PAGE_SIZE);
    return ZSTD_isError(n) ? DMEM_EIO : (int)n;
  }
#endif
  default:
    return DMEM_ENOTSUP;
  }
}

/* The best-of mode tries the fast codecs first; all of them, since the
 * smallest output is the point. */
static int best_compress(dmem_codec *c, dmem_codec_id *won, const void *page)
{
  static const dmem_codec_id order[] = {DMEM_CODEC_WKDM, DMEM_CODEC_LZ4, DMEM_CODEC_LZO,
                                        DMEM_CODEC_ZSTD};
  int best_len = -1;
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    dmem_codec_id id = order[i];
    if (!dmem_codec_available(id) || (c->best_mask && !(c->best_mask & (1u << id))))
      continue;
    int n = stream_compress(c, id, c->scratch, page);
    if (n > 0 && (best_len < 0 || n < best_len)) {
      best_len = n;
      *won = id;
      memcpy(c->best, c->scratch, (size_t)n);
    }
  }
  return best_len < 0 ? DMEM_ENOTSUP : best_len;
}

int dmem_codec_compress(size_t *out_len, void *out, size_t out_cap, dmem_codec *c,
                        dmem_codec_id id, const void *page)
{
  if (!out_len || !out || !c || !page)
    return DMEM_EINVAL;
  if (id != DMEM_CODEC_BEST && !is_stream_codec((unsigned)id))
    return DMEM_EINVAL;
  if (!dmem_codec_available(id))
    return DMEM_ENOTSUP;
  if (out_cap < 2)
    return DMEM_ETOOBIG;

  uint8_t *o = out;
  const uint8_t *stream;
  int n;
  if (id == DMEM_CODEC_BEST) {
    n = best_compress(c, &id, page);
    stream = c->best;
  } else if (out_cap >= DMEM_COMPRESS_BOUND) {
    /* Room for the worst case: compress in place, no copy. */
    n = stream_compress(c, id, o + 1, page);
    stream = o + 1;
  } else {
    n = stream_compress(c, id, c->scratch, page);
    stream = c->scratch;
  }
  if (n < 0)
    return n;
  if ((size_t)n + 1 > out_cap)
    return DMEM_ETOOBIG;
  if (stream != o + 1)
    memcpy(o + 1, stream, (size_t)n);
  o[0] = (uint8_t)id;
  *out_len = (size_t)n + 1;
  return 0;
}

int dmem_codec_decompress(void *page, dmem_codec *c, const void *blob, size_t blob_len)
{
  if (!page || !c || !blob)
    return DMEM_EINVAL;
  if (blob_len < 2)
    return DMEM_ETRUNC;
  const uint8_t *in = (const uint8_t *)blob + 1;
  size_t len = blob_len - 1;
  dmem_codec_id id = dmem_codec_of_blob(blob, blob_len);
  if (id == DMEM_CODEC_NONE)
    return DMEM_ECORRUPT;
  if (!dmem_codec_available(id))
    return DMEM_ENOTSUP;
  switch (id) {
  case DMEM_CODEC_WKDM:
    return dmem__wkdm_decompress(page, in, len);
#if DMEM_HAVE_LZO
  case DMEM_CODEC_LZO: {
    lzo_uint n = DMEM_PAGE_SIZE;
    int rc = lzo1x_decompress_safe(in, len, page, &n, NULL);
    if (rc == LZO_E_INPUT_OVERRUN)
      return DMEM_ETRUNC;
    return rc == LZO_E_OK && n == DMEM_PAGE_SIZE ? 0 : DMEM_ECORRUPT;
  }
#endif
#if DMEM_HAVE_LZ4
  case DMEM_CODEC_LZ4: {
    if (len > (size_t)LZ4_MAX_INPUT_SIZE)
      return DMEM_ECORRUPT;
    int n = LZ4_decompress_safe((const char *)in, page, (int)len, DMEM_PAGE_SIZE);
    return n == DMEM_PAGE_SIZE ? 0 : DMEM_ECORRUPT;
  }
#endif
#if DMEM_HAVE_ZSTD
  case DMEM_CODEC_ZSTD: {
    size_t n = ZSTD_decompressDCtx(c->zd, page, DMEM_PAGE_SIZE, in, len);
    if (ZSTD_isError(n))
      return ZSTD_getErrorCode(n) == ZSTD_error_srcSize_wrong ? DMEM_ETRUNC : DMEM_ECORRUPT;
    return n == DMEM_PAGE_SIZE ? 0 : DMEM_ECORRUPT;
  }
#endif
  default:
    return DMEM_ENOTSUP;
  }
}
