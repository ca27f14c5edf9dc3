/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: dmem_codec_decompress() on any bytes must return an error
 * or a page, never crash or touch memory out of bounds. When it returns a
 * page, compressing that page again must round-trip. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/codec.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static dmem_codec *codec;
  if (!codec && dmem_codec_create(&codec, NULL) != 0)
    return 0;
  uint8_t page[DMEM_PAGE_SIZE], again[DMEM_PAGE_SIZE];
  uint8_t blob[DMEM_COMPRESS_BOUND];
  if (dmem_codec_decompress(page, codec, data, size) != 0)
    return 0;
  dmem_codec_id id = dmem_codec_of_blob(data, size);
  size_t len = 0;
  if (dmem_codec_compress(&len, blob, sizeof blob, codec, id, page) != 0)
    abort();
  if (dmem_codec_decompress(again, codec, blob, len) != 0 || memcmp(page, again, sizeof page))
    abort();
  return 0;
}
