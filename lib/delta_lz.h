/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The delta encoder's LZ-style format (delta_lz.c), which delta.c calls
 * for pages its word forms refuse. The public functions add the one-byte
 * header that names the format. */
#ifndef DMEM_DELTA_LZ_H
#define DMEM_DELTA_LZ_H

#include <stddef.h>
#include <stdint.h>

/* The LZ-style format, without the header byte. The encoder writes the
 * patch to out and returns 0, or returns DMEM_ETOOBIG, writing nothing,
 * when the patch would be longer than the smaller of cap and
 * DMEM_DELTA_MAX; the answer never depends on cap beyond that. The decoder rebuilds
 * page from ref and exactly len bytes at in, or returns DMEM_ECORRUPT /
 * DMEM_ETRUNC without reading or writing out of bounds. */
int dmem__delta_lz_encode(size_t *out_len, uint8_t *out, size_t cap, const uint8_t *page,
                          const uint8_t *ref);
int dmem__delta_lz_decode(uint8_t *page, const uint8_t *ref, const uint8_t *in, size_t len);

#endif /* DMEM_DELTA_LZ_H */
