/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: dmem_delta_decode() on any patch must return an error or a
 * page, never crash or touch memory out of bounds. The reference is a fixed
 * page with structure (words, a pointer-like pattern, zeros). A page that
 * decodes is encoded again against the same reference, with and without
 * DMEM_DELTA_LZ, and must round-trip whenever the encoder accepts it, and
 * encoded with one byte less room (refused) and with exactly the room it
 * needs (the same bytes). */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/delta.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encodes page with flags; a patch the encoder accepts must round-trip,
 * one byte less room must refuse it, and the exact room give the same
 * bytes: the cap decides only whether the patch is taken. */
static void check_encode(const uint8_t *page, const uint8_t *ref, unsigned flags)
{
  uint8_t again[DMEM_PAGE_SIZE], patch[DMEM_DELTA_MAX], exact[DMEM_DELTA_MAX];
  size_t len = 0, len2 = 0;
  if (dmem_delta_encode_flags(&len, patch, sizeof patch, page, ref, flags) != 0)
    return;
  if (dmem_delta_decode(again, ref, patch, len) != 0 || memcmp(page, again, sizeof again))
    abort();
  if (dmem_delta_encode_flags(&len2, exact, len - 1, page, ref, flags) != DMEM_ETOOBIG ||
      dmem_delta_encode_flags(&len2, exact, len, page, ref, flags) != 0 || len2 != len ||
      memcmp(exact, patch, len) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static uint8_t ref[DMEM_PAGE_SIZE];
  static int ready;
  if (!ready) {
    for (size_t i = 0; i < DMEM_PAGE_SIZE / 8; i++) {
      uint64_t w = i < 128 ? 0 : 0x00007f0012340000ull + i * 24;
      memcpy(ref + i * 8, &w, 8);
    }
    ready = 1;
  }
  uint8_t page[DMEM_PAGE_SIZE];
  if (dmem_delta_decode(page, ref, data, size) != 0)
    return 0;
  check_encode(page, ref, 0);
  check_encode(page, ref, DMEM_DELTA_LZ);
  return 0;
}
