/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* zstd through libzstd when configure found it (else the entry is only a
 * name). libzstd allocates its own contexts with malloc (its custom-
 * allocator API is experimental); the pair of them is ours. Frames carry
 * no checksum (the store keeps its own), no dictionary id and no content
 * size: 4 or more bytes saved on every page. */
#include "config.h"

#if DMEM_HAVE_ZSTD
#include <zstd.h>
#include <zstd_errors.h>
#endif

#include "codec_impl.h"

#if DMEM_HAVE_ZSTD
typedef struct zstd_ctx {
  ZSTD_CCtx *c;
  ZSTD_DCtx *d;
} zstd_ctx;

static void zstd_free(void *state, const dmem__alloc *a)
{
  zstd_ctx *z = state;
  if (!z)
    return;
  ZSTD_freeCCtx(z->c);
  ZSTD_freeDCtx(z->d);
  dmem__free(a, z, sizeof *z);
}

static int zstd_state(void **state, const dmem__alloc *a, const dmem_codec_options *opts)
{
  zstd_ctx *z = dmem__malloc(a, sizeof *z);
  if (!z)
    return DMEM_ENOMEM;
  z->c = ZSTD_createCCtx();
  z->d = ZSTD_createDCtx();
  if (!z->c || !z->d) {
    zstd_free(z, a);
    return DMEM_ENOMEM;
  }
  ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, opts->zstd_level);
  ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 0);
  ZSTD_CCtx_setParameter(z->c, ZSTD_c_dictIDFlag, 0);
  ZSTD_CCtx_setParameter(z->c, ZSTD_c_contentSizeFlag, 0);
  *state = z;
  return 0;
}

static int zstd_compress(void *state, uint8_t *dst, size_t cap, const void *page)
{
  size_t n = ZSTD_compress2(((zstd_ctx *)state)->c, dst, cap, page, DMEM_PAGE_SIZE);
  return ZSTD_isError(n) ? DMEM_EIO : (int)n;
}

static int zstd_decompress(void *state, void *page, const uint8_t *in, size_t len)
{
  size_t n = ZSTD_decompressDCtx(((zstd_ctx *)state)->d, page, DMEM_PAGE_SIZE, in, len);
  if (ZSTD_isError(n))
    return ZSTD_getErrorCode(n) == ZSTD_error_srcSize_wrong ? DMEM_ETRUNC : DMEM_ECORRUPT;
  return n == DMEM_PAGE_SIZE ? 0 : DMEM_ECORRUPT;
}

const dmem__codec_impl dmem__codec_zstd = {
    DMEM_CODEC_ZSTD, "zstd", 1, zstd_state, zstd_free, zstd_compress, zstd_decompress};
#else
const dmem__codec_impl dmem__codec_zstd = {DMEM_CODEC_ZSTD, "zstd", 0, NULL, NULL, NULL, NULL};
#endif
