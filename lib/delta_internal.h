/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internals of the delta codec (lib/delta.c, lib/delta_lz.c): the helpers
 * both of its formats use, and the LZ-style format's entry points. The
 * public functions add the one-byte header that names the format. */
#ifndef DMEM_DELTA_INTERNAL_H
#define DMEM_DELTA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <diffmem/delta.h>

#include "internal.h"

/* Varints: 7 bits a byte, low first, at most three bytes (v < 2^21). The
 * writer stores three bytes and keeps one to three, so the buffer needs
 * two bytes of slack past what it keeps: a length's size is as
 * unpredictable as the length, and a mispredicted branch costs more. */
static inline uint8_t *put_varint(uint8_t *op, unsigned v)
{
  unsigned n = 1 + (v >= 0x80) + (v >= 0x4000);
  op[0] = (uint8_t)(v | 0x80);
  op[1] = (uint8_t)((v >> 7) | 0x80);
  op[2] = (uint8_t)(v >> 14);
  op[n - 1] &= 0x7f;
  return op + n;
}

/* Reads a varint; DMEM_ETRUNC if the input ends inside it, DMEM_ECORRUPT
 * if it runs past three bytes. */
static inline int get_varint(unsigned *v, const uint8_t **ip, const uint8_t *end)
{
  const uint8_t *in = *ip;
  unsigned r = 0;
  for (unsigned k = 0; k < 3; k++) {
    if (in == end)
      return DMEM_ETRUNC;
    r |= (unsigned)(*in & 0x7f) << (7 * k);
    if (*in++ < 0x80) {
      *v = r;
      *ip = in;
      return 0;
    }
  }
  return DMEM_ECORRUPT;
}

/* Signed values as varints: z = 0, 1, 2, 3 .. means 0, -1, 1, -2 .. */
static inline unsigned zigzag(int v)
{
  return v < 0 ? ((0u - (unsigned)v) << 1) - 1 : (unsigned)v << 1;
}

static inline int unzigzag(unsigned z)
{
  return z & 1u ? -(int)(z >> 1) - 1 : (int)(z >> 1);
}

/* A multiplicative hash of a 64-bit value to `bits` bits (Fibonacci
 * hashing): the table slots of both formats. */
static inline unsigned hash64(uint64_t w, unsigned bits)
{
  return (unsigned)((w * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

/* The LZ-style format, without the header byte. The encoder writes the
 * patch to out and returns 0, or returns DMEM_ETOOBIG, writing nothing,
 * when the patch would be longer than the smaller of cap and
 * DMEM_DELTA_MAX; the answer never depends on cap beyond that. The decoder rebuilds
 * page from ref and exactly len bytes at in, or returns DMEM_ECORRUPT /
 * DMEM_ETRUNC without reading or writing out of bounds. */
int dmem__delta_lz_encode(size_t *out_len, uint8_t *out, size_t cap, const uint8_t *page,
                          const uint8_t *ref);
int dmem__delta_lz_decode(uint8_t *page, const uint8_t *ref, const uint8_t *in, size_t len);

#endif /* DMEM_DELTA_INTERNAL_H */
