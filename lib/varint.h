/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Byte-stream helpers of the delta formats (delta.c, delta_lz.c): varints,
 * zigzag for signed values, and a multiplicative hash for their tables. */
#ifndef DMEM_VARINT_H
#define DMEM_VARINT_H

#include <stdint.h>

#include <diffmem/common.h>

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
 * hashing): the table slots of both delta formats. */
static inline unsigned hash64(uint64_t w, unsigned bits)
{
  return (unsigned)((w * 0x9e3779b97f4a7c15ull) >> (64 - bits));
}

#endif /* DMEM_VARINT_H */
