/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* LZ4 through liblz4 when configure found it (else the entry is only a
 * name). Its compression state comes through the caller's allocator. */
#include "config.h"

#if DMEM_HAVE_LZ4
#include <lz4.h>
#endif

#include "codec_impl.h"

#if DMEM_HAVE_LZ4
static int lz4_state(void **state, const dmem__alloc *a, const dmem_codec_options *opts)
{
  (void)opts;
  *state = dmem__malloc_aligned(a, (size_t)LZ4_sizeofState(), 64);
  return *state ? 0 : DMEM_ENOMEM;
}

static void lz4_free(void *state, const dmem__alloc *a)
{
  dmem__free(a, state, (size_t)LZ4_sizeofState());
}

static int lz4_compress(void *state, uint8_t *dst, size_t cap, const void *page)
{
  int n = LZ4_compress_fast_extState(state, page, (char *)dst, DMEM_PAGE_SIZE, (int)cap, 1);
  return n > 0 ? n : DMEM_EIO;
}

static int lz4_decompress(void *state, void *page, const uint8_t *in, size_t len)
{
  (void)state;
  if (len > (size_t)LZ4_MAX_INPUT_SIZE)
    return DMEM_ECORRUPT;
  int n = LZ4_decompress_safe((const char *)in, page, (int)len, DMEM_PAGE_SIZE);
  return n == DMEM_PAGE_SIZE ? 0 : DMEM_ECORRUPT;
}

const dmem__codec_impl dmem__codec_lz4 = {DMEM_CODEC_LZ4, "lz4",         1, lz4_state, lz4_free,
                                          lz4_compress,   lz4_decompress};
#else
const dmem__codec_impl dmem__codec_lz4 = {DMEM_CODEC_LZ4, "lz4", 0, NULL, NULL, NULL, NULL};
#endif
