/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target, encode first: the input builds a page and a reference page;
 * the page goes through every codec built in (and DMEM_CODEC_BEST) and both
 * delta forms (words, and words with DMEM_DELTA_LZ), and each output must
 * decode to exactly the page. The other targets start from the decoder's
 * side, where most inputs are refused; this one reaches the encoders with
 * pages of every shape.
 *
 * Input: byte 0 chooses the shapes, then two halves. The reference is the
 * first half repeated over the page, as 8-byte words (word w gets the
 * half's bytes at w*8 on, with the word's index added when bit 0 is set, so
 * that pointer-like runs appear). The page is the reference with the second
 * half applied as edits, 3 bytes each (offset high, offset low, value:
 * a byte set, or with bit 1 a word cleared, or with bit 2 the page shifted
 * by the value in bytes first), or, with bit 3, the second half repeated
 * on its own (a page unlike its reference).
 *
 * Every codec must take every page: a blob may be as large as
 * DMEM_COMPRESS_BOUND. With one byte less room than the blob it made, a
 * codec must refuse (DMEM_ETOOBIG) or make a blob that still fits and
 * decodes. A delta encoder may refuse (DMEM_ETOOBIG) but nothing else. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/codec.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PAGE DMEM_PAGE_SIZE

/* half repeated over out as words; word index added when counting. */
static void tile(uint8_t *out, const uint8_t *half, size_t n, int counting)
{
  if (n == 0) {
    memset(out, 0, PAGE);
    return;
  }
  for (size_t i = 0; i < PAGE; i++)
    out[i] = half[i % n];
  if (counting)
    for (size_t w = 0; w < PAGE / 8; w++) {
      uint64_t v;
      memcpy(&v, out + w * 8, 8);
      v += w * 24;
      memcpy(out + w * 8, &v, 8);
    }
}

static void check_codec(dmem_codec *codec, dmem_codec_id id, const uint8_t *page)
{
  static uint8_t blob[DMEM_COMPRESS_BOUND], again[PAGE];
  size_t len = 0;
  int rc = dmem_codec_compress(&len, blob, sizeof blob, codec, id, page);
  if (rc == DMEM_ENOTSUP && id != DMEM_CODEC_BEST)
    return; /* not built in */
  if (rc != 0 || len == 0 || len > sizeof blob)
    abort();
  if (dmem_codec_decompress(again, codec, blob, len) != 0 || memcmp(again, page, PAGE) != 0)
    abort();
  if (id != DMEM_CODEC_BEST && dmem_codec_of_blob(blob, len) != id)
    abort();
  size_t len2 = 0;
  rc = dmem_codec_compress(&len2, blob, len - 1, codec, id, page);
  if (rc == DMEM_ETOOBIG)
    return;
  if (rc != 0 || len2 > len - 1 || dmem_codec_decompress(again, codec, blob, len2) != 0 ||
      memcmp(again, page, PAGE) != 0)
    abort();
}

static void check_delta(const uint8_t *page, const uint8_t *ref, unsigned flags)
{
  static uint8_t patch[DMEM_DELTA_MAX], again[PAGE];
  size_t len = 0;
  int rc = dmem_delta_encode_flags(&len, patch, sizeof patch, page, ref, flags);
  if (rc == DMEM_ETOOBIG)
    return;
  if (rc != 0 || len == 0 || len > sizeof patch)
    abort();
  if (dmem_delta_decode(again, ref, patch, len) != 0 || memcmp(again, page, PAGE) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static dmem_codec *codec;
  if (!codec && dmem_codec_create(&codec, NULL) != 0)
    abort();
  static uint8_t ref[PAGE], page[PAGE], moved[PAGE];
  if (size == 0)
    return 0;
  unsigned shape = data[0];
  data++, size--;
  size_t a = size / 2;
  const uint8_t *edits = data + a;
  size_t ne = size - a;
  tile(ref, data, a, shape & 1);
  if (shape & 8) {
    tile(page, edits, ne, shape & 16);
  } else {
    memcpy(page, ref, PAGE);
    for (size_t i = 0; i + 3 <= ne; i += 3) {
      size_t off = ((size_t)edits[i] << 8 | edits[i + 1]) % PAGE;
      uint8_t v = edits[i + 2];
      if ((shape & 4) && i == 0) {
        /* The content moved within the page by v bytes. */
        memcpy(moved, page + v, PAGE - v);
        memcpy(moved + PAGE - v, page, v);
        memcpy(page, moved, PAGE);
      } else if (shape & 2) {
        memset(page + off / 8 * 8, 0, 8);
      } else {
        page[off] = v;
      }
    }
  }
  static const dmem_codec_id ids[] = {DMEM_CODEC_WKDM, DMEM_CODEC_LZO, DMEM_CODEC_LZ4,
                                      DMEM_CODEC_ZSTD, DMEM_CODEC_BEST};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
    check_codec(codec, ids[i], page);
  check_delta(page, ref, 0);
  check_delta(page, ref, DMEM_DELTA_LZ);
  return 0;
}
