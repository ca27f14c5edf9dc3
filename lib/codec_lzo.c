/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* LZO1X-1, the Difference Engine's LZ-class codec, through liblzo2 when
 * configure found it. liblzo2 is GPL-2.0-or-later, so a build without it
 * stays LGPL-only (README, "License"); the entry is then only a name. Its
 * work memory comes through the caller's allocator. */
#include "config.h"

#if DMEM_HAVE_LZO
#include <lzo/lzo1x.h>
#endif

#include "codec_impl.h"

#if DMEM_HAVE_LZO
static int lzo_state(void **state, const dmem__alloc *a, const dmem_codec_options *opts)
{
  (void)opts;
  if (lzo_init() != LZO_E_OK)
    return DMEM_ENOTSUP;
  *state = dmem__malloc_aligned(a, LZO1X_1_MEM_COMPRESS, 64);
  return *state ? 0 : DMEM_ENOMEM;
}

static void lzo_free(void *state, const dmem__alloc *a)
{
  dmem__free(a, state, LZO1X_1_MEM_COMPRESS);
}

static int lzo_compress(void *state, uint8_t *dst, size_t cap, const void *page)
{
  lzo_uint n = cap;
  if (lzo1x_1_compress(page, DMEM_PAGE_SIZE, dst, &n, state) != LZO_E_OK)
    return DMEM_EIO;
  return (int)n;
}

static int lzo_decompress(void *state, void *page, const uint8_t *in, size_t len)
{
  (void)state;
  lzo_uint n = DMEM_PAGE_SIZE;
  int rc = lzo1x_decompress_safe(in, len, page, &n, NULL);
  if (rc == LZO_E_INPUT_OVERRUN)
    return DMEM_ETRUNC;
  return rc == LZO_E_OK && n == DMEM_PAGE_SIZE ? 0 : DMEM_ECORRUPT;
}

const dmem__codec_impl dmem__codec_lzo = {DMEM_CODEC_LZO, "lzo",         1, lzo_state, lzo_free,
                                          lzo_compress,   lzo_decompress};
#else
const dmem__codec_impl dmem__codec_lzo = {DMEM_CODEC_LZO, "lzo", 0, NULL, NULL, NULL, NULL};
#endif
