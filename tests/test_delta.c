/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The delta codec: round trips on the kinds of page pairs it is made for,
 * the cap, hand-made patches that pin the three formats, every way a patch can be
 * malformed, and known answers for four fixed pairs. */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/delta.h>

#include "testutil.h"

#define PAGE DMEM_PAGE_SIZE
#define GUARD 64
#define GUARD_BYTE 0xa5

/* ---- Page makers and helpers ---- */

/* Words in little-endian order, so that the pages, and the known answers
 * below, are the same on any host. */
static void put64(uint8_t *p, uint64_t v)
{
  for (unsigned k = 0; k < 8; k++)
    p[k] = (uint8_t)(v >> (8 * k));
}

static uint64_t get64(const uint8_t *p)
{
  uint64_t v = 0;
  for (unsigned k = 0; k < 8; k++)
    v |= (uint64_t)p[k] << (8 * k);
  return v;
}

/* A page like a heap page: small integers, pointers into two mappings,
 * zero words and a little text, all from the seed. */
static void make_page(uint8_t *page, uint64_t seed)
{
  for (unsigned i = 0; i < PAGE / 8; i++) {
    uint64_t r = test_rand(&seed), w = r; /* 1 in 6: random bits */
    unsigned kind = (unsigned)(r % 6);
    if (kind == 0)
      w = 0;
    else if (kind == 1)
      w = (r >> 8) % 1000;
    else if (kind == 2)
      w = 0x00007f3a12340000ull + ((r >> 8) & 0xfff8);
    else if (kind == 3)
      w = 0x000055d0a0000000ull + ((r >> 8) & 0xfffff8);
    else if (kind == 4)
      w = get64((const uint8_t *)"key_1234") + ((r >> 60) << 56);
    put64(page + i * 8, w);
  }
}

static void make_random(uint8_t *page, uint64_t seed)
{
  for (unsigned i = 0; i < PAGE; i += 8)
    put64(page + i, test_rand(&seed));
}

/* What two address-space layouts do to a page: every pointer into the
 * first mapping moves by one slide, every pointer into the second by
 * another. */
static void relocate(uint8_t *page)
{
  for (unsigned i = 0; i < PAGE; i += 8) {
    uint64_t w = get64(page + i);
    if ((w >> 32) == 0x7f3a)
      put64(page + i, w + 0x0000005c21000000ull);
    else if ((w >> 32) == 0x55d0)
      put64(page + i, w - 0x0000002e00400000ull);
  }
}

/* Moves the page's content by `by` bytes; vacated bytes get a pattern. */
static void move_content(uint8_t *page, const uint8_t *src, int by)
{
  for (int i = 0; i < (int)PAGE; i++) {
    int from = i - by;
    page[i] = from >= 0 && from < (int)PAGE ? src[from] : (uint8_t)(i * 37 + 11);
  }
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* One assertion, not one a byte: each costs Check a message to its parent. */
static void assert_guard(const uint8_t *p, size_t from, size_t to)
{
  size_t i = from;
  while (i < to && p[i] == GUARD_BYTE)
    i++;
  ck_assert_msg(i == to, "byte %zu past the end was written", i);
}

/* Encodes page against ref with the default cap and the given flags,
 * checks that the patch decodes to page exactly, and returns its length;
 * *format gets the patch's first byte (when format is not NULL). */
static size_t round_trip_flags(const uint8_t *page, const uint8_t *ref, unsigned flags,
                               unsigned *format)
{
  uint8_t patch[DMEM_DELTA_MAX], out[PAGE + GUARD];
  size_t len = 0;
  ck_assert_int_eq(dmem_delta_encode_flags(&len, patch, sizeof patch, page, ref, flags), 0);
  ck_assert(len >= 1 && len <= DMEM_DELTA_MAX);
  memset(out, GUARD_BYTE, sizeof out);
  ck_assert_int_eq(dmem_delta_decode(out, ref, patch, len), 0);
  ck_assert(memcmp(out, page, PAGE) == 0);
  assert_guard(out, PAGE, sizeof out);
  if (format)
    *format = patch[0];
  return len;
}

static size_t round_trip(const uint8_t *page, const uint8_t *ref)
{
  return round_trip_flags(page, ref, 0, NULL);
}

enum { F_WORD = 0, F_LZ = 1, F_MOVED = 2 }; /* a patch's first byte */

/* Decodes a patch from an exactly sized heap copy, so that ASan sees any
 * read past its end. */
static int decode_exact(uint8_t *page, const uint8_t *ref, const uint8_t *patch, size_t len)
{
  uint8_t *copy = malloc(len ? len : 1);
  ck_assert_ptr_nonnull(copy);
  memcpy(copy, patch, len);
  int rc = dmem_delta_decode(page, ref, copy, len);
  free(copy);
  return rc;
}

/* ---- Round trips ---- */

START_TEST(identical_is_tiny)
{
  uint8_t page[PAGE];
  make_page(page, 1);
  ck_assert_uint_le(round_trip(page, page), 3);
  memset(page, 0, PAGE);
  ck_assert_uint_le(round_trip(page, page), 3);
}
END_TEST

START_TEST(one_word_changed)
{
  uint8_t ref[PAGE], page[PAGE];
  make_page(ref, 2);
  for (unsigned w = 0; w < PAGE / 8; w += 37) {
    memcpy(page, ref, PAGE);
    put64(page + w * 8, get64(page + w * 8) ^ 0x0123456789abcdefull);
    /* a tag and 8 bytes, with a copy tag or two around them */
    ck_assert_uint_le(round_trip(page, ref), 14);
  }
  memcpy(page, ref, PAGE);
  page[PAGE - 1] ^= 1;
  ck_assert_uint_le(round_trip(page, ref), 6); /* COPY 4095, LIT 1 */
  page[PAGE - 1] ^= 1, page[0] ^= 0x80;
  ck_assert_uint_le(round_trip(page, ref), 6);
}
END_TEST

START_TEST(scattered_changes)
{
  uint8_t ref[PAGE], page[PAGE];
  uint64_t s = 3;
  for (int round = 0; round < 50; round++) {
    make_page(ref, 100 + (uint64_t)round);
    memcpy(page, ref, PAGE);
    unsigned n = 1 + (unsigned)(test_rand(&s) % 40);
    for (unsigned k = 0; k < n; k++)
      page[test_rand(&s) % PAGE] ^= (uint8_t)(1 + test_rand(&s) % 255);
    /* each changed byte costs at most a literal byte and two tags */
    ck_assert_uint_le(round_trip(page, ref), 3 + 6 * n);
  }
}
END_TEST

/* Content that moved within the page: the word format against the
 * reference moved back, whatever the shift. */
START_TEST(shifted_content)
{
  static const int moves[] = {1, 8, 24, 100, 1000, -3, -8, -24, -100, -1000};
  uint8_t ref[PAGE], page[PAGE];
  make_page(ref, 4);
  for (unsigned k = 0; k < sizeof moves / sizeof moves[0]; k++) {
    move_content(page, ref, moves[k]);
    unsigned format;
    size_t len = round_trip_flags(page, ref, 0, &format);
    size_t fresh = (size_t)abs(moves[k]);
    /* the fresh bytes, a token a word, and the header */
    ck_assert_msg(len <= fresh + fresh / 8 + 16, "move %d: %zu bytes", moves[k], len);
    ck_assert_msg(format == F_MOVED, "move %d: format %u", moves[k], format);
  }
}
END_TEST

/* 24-byte objects: a count, a pointer to their type, a pointer onwards. */
static void make_objects(uint8_t *page, uint64_t seed)
{
  for (unsigned i = 0; i + 24 <= PAGE; i += 24) {
    put64(page + i, 1 + test_rand(&seed) % 50);
    put64(page + i + 8, 0x00007f3a12340000ull + 64 * (test_rand(&seed) % 4));
    put64(page + i + 16, 0x000055d0a0000000ull + 8 * (test_rand(&seed) % 100000));
  }
  memset(page + PAGE - PAGE % 24, 0, PAGE % 24);
}

START_TEST(relocated_pointers)
{
  uint8_t ref[PAGE], page[PAGE];
  make_page(ref, 5);
  memcpy(page, ref, PAGE);
  relocate(page);
  unsigned moved = 0;
  for (unsigned i = 0; i < PAGE; i += 8)
    moved += get64(page + i) != get64(ref + i);
  ck_assert_uint_ge(moved, 100);
  /* Pointers at random places: a literal for each would cost 5 bytes. */
  ck_assert_uint_le(round_trip(page, ref), 4 * moved);
  /* Pointers in a row of objects: the difference repeats, one op or two. */
  make_objects(ref, 6);
  memcpy(page, ref, PAGE);
  relocate(page);
  moved = 0;
  for (unsigned i = 0; i < PAGE; i += 8)
    moved += get64(page + i) != get64(ref + i);
  /* The word format: a byte for each word whose difference repeats. */
  ck_assert_uint_le(round_trip(page, ref), moved + 20);
  page[1000] ^= 1;
  ck_assert_uint_le(round_trip(page, ref), moved + 24);
}
END_TEST

START_TEST(fills)
{
  uint8_t ref[PAGE], page[PAGE];
  make_page(ref, 6);
  memcpy(page, ref, PAGE);
  memset(page + 1000, 0, 1500); /* a run of zero words: one token */
  ck_assert_uint_le(round_trip(page, ref), 8);
  memset(page + 3001, 0, 9); /* zero, but not a whole word */
  ck_assert_uint_le(round_trip(page, ref), 8 + 12);
  make_random(ref, 7);
  memset(page, 0, PAGE);
  ck_assert_uint_le(round_trip(page, ref), 6);
  /* Other fills the word format cannot express cheaply: when it cannot fit
   * them at all, the page is refused, unless the caller asks for the
   * LZ-style format, whose fill takes them. */
  memset(page, 0xff, PAGE);
  uint8_t patch[DMEM_DELTA_MAX];
  size_t len;
  ck_assert_int_eq(dmem_delta_encode(&len, patch, sizeof patch, page, ref), DMEM_ETOOBIG);
  unsigned format;
  ck_assert_uint_le(round_trip_flags(page, ref, DMEM_DELTA_LZ, &format), 6);
  ck_assert_uint_eq(format, F_LZ);
}
END_TEST

/* Many mutated pairs: whatever the encoder accepts must decode exactly. */
START_TEST(random_mutations)
{
  uint8_t ref[PAGE], page[PAGE], patch[DMEM_DELTA_MAX];
  uint64_t s = 8;
  unsigned accepted = 0;
  for (int round = 0; round < 400; round++) {
    make_page(ref, 1000 + (uint64_t)round);
    memcpy(page, ref, PAGE);
    unsigned kind = (unsigned)(test_rand(&s) % 4), n = (unsigned)(test_rand(&s) % 64);
    if (kind == 1)
      relocate(page);
    if (kind == 2)
      move_content(page, ref, (int)(test_rand(&s) % 200) - 100);
    for (unsigned k = 0; k < n; k++) {
      unsigned at = (unsigned)(test_rand(&s) % (PAGE - 16)),
               len = 1 + (unsigned)(test_rand(&s) % 16);
      if (kind == 3)
        memmove(page + at, ref + (test_rand(&s) % (PAGE - 16)), len);
      else
        memset(page + at, (int)(test_rand(&s) & 0xff), len);
    }
    unsigned flags = round % 2 ? DMEM_DELTA_LZ : 0;
    size_t len;
    int rc = dmem_delta_encode_flags(&len, patch, sizeof patch, page, ref, flags);
    if (rc == DMEM_ETOOBIG)
      continue;
    ck_assert_int_eq(rc, 0);
    accepted++;
    ck_assert_uint_eq(round_trip_flags(page, ref, flags, NULL), len);
  }
  ck_assert_uint_ge(accepted, 300);
}
END_TEST

/* ---- The cap ---- */

/* Every cap from 0 to the patch's length: refused below it, the same bytes
 * at it, and nothing written past the cap either way. */
static void check_cap(const uint8_t *page, const uint8_t *ref, unsigned flags, unsigned format)
{
  uint8_t full[DMEM_DELTA_MAX], buf[DMEM_DELTA_MAX + GUARD];
  size_t len, got;
  ck_assert_int_eq(dmem_delta_encode_flags(&len, full, sizeof full, page, ref, flags), 0);
  ck_assert_uint_ge(len, 16);
  ck_assert_uint_eq(full[0], format);
  for (size_t cap = 0; cap <= len; cap++) {
    memset(buf, GUARD_BYTE, sizeof buf);
    int rc = dmem_delta_encode_flags(&got, buf, cap, page, ref, flags);
    if (cap < len) {
      ck_assert_int_eq(rc, DMEM_ETOOBIG);
    } else {
      ck_assert_int_eq(rc, 0);
      ck_assert_uint_eq(got, len);
      ck_assert(memcmp(buf, full, len) == 0);
    }
    assert_guard(buf, cap, sizeof buf);
  }
}

START_TEST(cap_is_exact)
{
  uint8_t ref[PAGE], page[PAGE];
  make_page(ref, 13);
  memcpy(page, ref, PAGE);
  relocate(page);
  for (unsigned i = 0; i < PAGE; i += 97)
    page[i] ^= 0x5a;
  check_cap(page, ref, 0, F_WORD);
  move_content(page, ref, -40);
  check_cap(page, ref, 0, F_MOVED);
  make_random(ref, 16);
  memcpy(page, ref, PAGE);
  make_random(page, 17);
  memcpy(page + 1900, ref + 1900, PAGE - 1900); /* too many new words for the word format */
  check_cap(page, ref, DMEM_DELTA_LZ, F_LZ);
}
END_TEST

/* Unrelated pages, and a page 2100 bytes of which are new, are refused
 * whatever room the caller gives; 1900 new bytes fit in the LZ-style
 * format's literal, but not in the word format, a token and eight bytes a
 * word. */
START_TEST(too_big)
{
  uint8_t ref[PAGE], page[PAGE], *big = malloc(2 * PAGE);
  size_t len;
  ck_assert_ptr_nonnull(big);
  for (unsigned flags = 0; flags <= DMEM_DELTA_LZ; flags++) {
    make_page(ref, 11);
    make_page(page, 12);
    ck_assert_int_eq(dmem_delta_encode_flags(&len, big, 2 * PAGE, page, ref, flags), DMEM_ETOOBIG);
    make_random(ref, 14);
    make_random(page, 15);
    ck_assert_int_eq(dmem_delta_encode_flags(&len, big, 2 * PAGE, page, ref, flags), DMEM_ETOOBIG);
    memcpy(page + 2100, ref + 2100, PAGE - 2100);
    memset(big, GUARD_BYTE, 2 * PAGE);
    ck_assert_int_eq(dmem_delta_encode_flags(&len, big, 2 * PAGE, page, ref, flags), DMEM_ETOOBIG);
    assert_guard(big, DMEM_DELTA_MAX, 2 * PAGE);
    memcpy(page + 1900, ref + 1900, PAGE - 1900);
    int rc = dmem_delta_encode_flags(&len, big, 2 * PAGE, page, ref, flags);
    if (flags == 0) {
      ck_assert_int_eq(rc, DMEM_ETOOBIG);
    } else {
      ck_assert_int_eq(rc, 0);
      ck_assert_uint_le(len, 1900 + 8);
    }
  }
  free(big);
}
END_TEST

START_TEST(null_arguments)
{
  uint8_t ref[PAGE] = {0}, page[PAGE] = {0}, patch[16];
  size_t len;
  ck_assert_int_eq(dmem_delta_encode(NULL, patch, sizeof patch, page, ref), DMEM_EINVAL);
  ck_assert_int_eq(dmem_delta_encode(&len, NULL, sizeof patch, page, ref), DMEM_EINVAL);
  ck_assert_int_eq(dmem_delta_encode(&len, patch, sizeof patch, NULL, ref), DMEM_EINVAL);
  ck_assert_int_eq(dmem_delta_encode(&len, patch, sizeof patch, page, NULL), DMEM_EINVAL);
  ck_assert_int_eq(dmem_delta_encode_flags(&len, patch, sizeof patch, page, ref, 2), DMEM_EINVAL);
  ck_assert_int_eq(dmem_delta_encode_flags(&len, patch, sizeof patch, page, ref, ~0u), DMEM_EINVAL);
  ck_assert_int_eq(dmem_delta_encode_flags(NULL, patch, sizeof patch, page, ref, 0), DMEM_EINVAL);
  ck_assert_int_eq(dmem_delta_decode(NULL, ref, patch, 1), DMEM_EINVAL);
  ck_assert_int_eq(dmem_delta_decode(page, NULL, patch, 1), DMEM_EINVAL);
  ck_assert_int_eq(dmem_delta_decode(page, ref, NULL, 0), DMEM_EINVAL);
}
END_TEST

/* ---- Hand-made patches ---- */

enum { K_COPY, K_SHIFT, K_LIT, K_FILL, K_XREP, K_XNEW, K_XREP1, K_XREP2 };

static uint8_t pb[2 * PAGE]; /* the patch being built */
static size_t pbn;

static void pb_varint(unsigned v)
{
  for (; v >= 0x80; v >>= 7)
    pb[pbn++] = (uint8_t)(v | 0x80);
  pb[pbn++] = (uint8_t)v;
}

/* Builds a patch from (len, kind, argument) triples, leaving out arguments
 * of -1. A literal's bytes are 1, 2, 3 ..., a fill's byte is 0xee. */
static void build(const int *ops, size_t n)
{
  pbn = 0;
  pb[pbn++] = 1; /* the LZ-style format */
  for (size_t i = 0; i + 2 < n; i += 3) {
    pb_varint(((unsigned)ops[i] - 1) << 3 | (unsigned)ops[i + 1]);
    if (ops[i + 2] >= 0)
      pb_varint((unsigned)ops[i + 2]);
    for (int k = 0; ops[i + 1] == K_LIT && k < ops[i]; k++)
      pb[pbn++] = (uint8_t)(k + 1);
    if (ops[i + 1] == K_FILL)
      pb[pbn++] = 0xee;
  }
}

static void ref_pattern(uint8_t *ref)
{
  for (unsigned i = 0; i < PAGE; i++)
    ref[i] = (uint8_t)(i * 7 + 1);
}

/* Pins the LZ-style format: every op kind, decoded as lib/delta_lz.c says. */
START_TEST(format_by_hand)
{
  /* clang-format off */
  static const int ops[] = {
      100, K_COPY, -1, 50, K_SHIFT, 10 /* +5 */, 4, K_LIT, -1, 46, K_FILL, -1,
      /* dist: {100}, {3,100}, {100,3}, {8,100,3}, {3,8,100}, {3,8,100} */
      50, K_XNEW, 100, 10, K_XNEW, 3, 20, K_XREP1, -1, 10, K_XNEW, 8, 10, K_XREP2, -1, 5, K_XREP, -1,
      PAGE - 305, K_SHIFT, 9 /* -5, back to 0 */};
  /* clang-format on */
  static const unsigned xlen[] = {50, 10, 20, 10, 10, 5}, xdist[] = {100, 3, 100, 8, 3, 3};
  uint8_t ref[PAGE], want[PAGE], got[PAGE];
  ref_pattern(ref);
  memcpy(want, ref, 100);
  memcpy(want + 100, ref + 105, 50);
  memcpy(want + 150, "\1\2\3\4", 4);
  memset(want + 154, 0xee, 46);
  for (unsigned k = 0, pos = 200; k < 6; pos += xlen[k++])
    for (unsigned i = pos; i < pos + xlen[k]; i++)
      want[i] = ref[i] ^ want[i - xdist[k]] ^ ref[i - xdist[k]];
  memcpy(want + 305, ref + 305, PAGE - 305);
  build(ops, sizeof ops / sizeof ops[0]);
  ck_assert_int_eq(decode_exact(got, ref, pb, pbn), 0);
  ck_assert(memcmp(got, want, PAGE) == 0);
}
END_TEST

static int decode_ops(const int *ops, size_t n)
{
  uint8_t ref[PAGE], page[PAGE];
  ref_pattern(ref);
  build(ops, n);
  return decode_exact(page, ref, pb, pbn);
}

#define DECODE_OPS(...)                                                                            \
  decode_ops((const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

START_TEST(malformed_by_hand)
{
  uint8_t ref[PAGE], page[PAGE];
  static const uint8_t long_varint[] = {1, 0x80, 0x80, 0x80, 0x01};
  ref_pattern(ref);
  ck_assert_int_eq(DECODE_OPS(PAGE, K_COPY, -1), 0);
  ck_assert_int_eq(DECODE_OPS(PAGE, K_LIT, -1), 0);
  ck_assert_int_eq(decode_exact(page, ref, (const uint8_t *)"", 0), DMEM_ETRUNC);
  ck_assert_int_eq(decode_exact(page, ref, long_varint, 5), DMEM_ECORRUPT);
  /* copy sources past either end of the reference */
  ck_assert_int_eq(DECODE_OPS(PAGE, K_SHIFT, 2), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(PAGE, K_SHIFT, 1), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(4000, K_COPY, -1, 96, K_SHIFT, 2), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(4000, K_COPY, -1, 96, K_SHIFT, 16383), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(4000, K_COPY, -1, 95, K_SHIFT, 2, 1, K_COPY, -1), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(100, K_COPY, -1, 96, K_SHIFT, 2000000, 3900, K_COPY, -1),
                   DMEM_ECORRUPT);
  /* ops past the page end, or short of it */
  ck_assert_int_eq(DECODE_OPS(100, K_COPY, -1, 4000, K_COPY, -1), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(100, K_COPY, -1, 3996, K_LIT, -1, 1, K_FILL, -1), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(100, K_COPY, -1, 3995, K_FILL, -1), DMEM_ETRUNC);
  /* XOR copies without a distance, or reading ahead of themselves */
  ck_assert_int_eq(DECODE_OPS(10, K_LIT, -1, 4086, K_XREP, -1), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(10, K_LIT, -1, 4086, K_XREP1, -1), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(10, K_LIT, -1, 4086, K_XREP2, -1), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(10, K_LIT, -1, 4086, K_XNEW, 0), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(10, K_LIT, -1, 4086, K_XNEW, 11), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(10, K_LIT, -1, 4086, K_XNEW, 10), 0);
  ck_assert_int_eq(DECODE_OPS(10, K_LIT, -1, 10, K_XNEW, 10, 4076, K_XREP1, -1), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_OPS(10, K_LIT, -1, 10, K_XNEW, 10, 10, K_XNEW, 1, 4066, K_XREP1, -1), 0);
}
END_TEST

/* ---- The word format, by hand ---- */

/* The tables' slots, as lib/delta.c defines them: part of the format. */
static unsigned exact_slot(uint64_t x)
{
  return (unsigned)((x * 0x9e3779b97f4a7c15ull) >> 60);
}

static unsigned high_slot(uint64_t x)
{
  return (unsigned)(((x >> 24) * 0x9e3779b97f4a7c15ull) >> 58);
}

enum { W_PART = 16, W_RANGE = 17, W_ZERO = 53, W_END = 63 };

/* A token with skip bits s (0..3) and a code. */
static void pb_tok(unsigned s, unsigned code)
{
  pb[pbn++] = (uint8_t)(s << 6 | code);
}

static void pb_bytes(const uint8_t *b, size_t n)
{
  memcpy(pb + pbn, b, n);
  pbn += n;
}

/* Byte k of x is byte 8i + k of the page, on any host. */
static void xor_word(uint8_t *page, unsigned i, uint64_t x)
{
  for (unsigned k = 0; k < 8; k++)
    page[8 * i + k] ^= (uint8_t)(x >> (8 * k));
}

/* Every code, decoded as lib/delta.c says. */
START_TEST(word_format_by_hand)
{
  const uint64_t x1 = 0x0000123456789a00ull, x2 = (x1 & ~0xffffull) | 0x2211;
  uint8_t ref[PAGE], want[PAGE], got[PAGE];
  ref_pattern(ref);
  memcpy(want, ref, PAGE);
  pbn = 0;
  pb[pbn++] = 0; /* the word format */
  /* word 0: bytes 1..5 of x1 (range (1,5) is rank 8 + 4) */
  pb_tok(0, W_RANGE + 12);
  pb_bytes((const uint8_t *)"\x9a\x78\x56\x34\x12", 5);
  xor_word(want, 0, x1);
  /* word 3: x1 again, from the exact table */
  pb_tok(2, exact_slot(x1));
  xor_word(want, 3, x1);
  /* word 14: skip 10 (3 + varint 7); x1's high bytes with low bytes 11 22 */
  pb_tok(3, W_PART);
  pb_varint(7);
  pb[pbn++] = (uint8_t)(2u << 6 | high_slot(x1));
  pb_bytes((const uint8_t *)"\x11\x22", 2);
  xor_word(want, 14, x2);
  /* words 16..19 are zero in the page */
  pb_tok(1, W_ZERO);
  pb_varint(3);
  memset(want + 16 * 8, 0, 32);
  /* word 20: x2 from the exact table (the zero run left the tables alone) */
  pb_tok(0, exact_slot(x2));
  xor_word(want, 20, x2);
  /* word 511: byte 7 only (range (7,7), rank 35); skip 490 = 3 + 487 */
  pb_tok(3, W_RANGE + 35);
  pb_varint(487);
  pb[pbn++] = 0x80;
  xor_word(want, 511, 0x80ull << 56);
  pb_tok(0, W_END);
  ck_assert_int_eq(decode_exact(got, ref, pb, pbn), 0);
  ck_assert(memcmp(got, want, PAGE) == 0);
  /* The ranks of (lo, hi): (0,0) is 0, (0,7) is 7, (1,1) is 8, (6,7) 34. */
  static const struct {
    unsigned rank;
    uint64_t x;
  } ranks[] = {{0, 0xaa}, {7, 0xaabbccddeeff0011ull}, {8, 0xaa00}, {34, 0xaabb000000000000ull}};
  for (unsigned k = 0; k < 4; k++) {
    unsigned lo = (unsigned)__builtin_ctzll(ranks[k].x) / 8,
             n = 8 - lo - (unsigned)__builtin_clzll(ranks[k].x) / 8;
    pbn = 0;
    pb[pbn++] = 0;
    pb_tok(0, W_RANGE + ranks[k].rank);
    for (unsigned j = 0; j < n; j++)
      pb[pbn++] = (uint8_t)(ranks[k].x >> (8 * (lo + j)));
    pb_tok(0, W_END);
    memcpy(want, ref, PAGE);
    xor_word(want, 0, ranks[k].x);
    ck_assert_int_eq(decode_exact(got, ref, pb, pbn), 0);
    ck_assert_msg(memcmp(got, want, PAGE) == 0, "rank %u", ranks[k].rank);
  }
}
END_TEST

/* Builds a word-format patch from bytes after the header. */
static int decode_words(const uint8_t *b, size_t n)
{
  uint8_t ref[PAGE], page[PAGE];
  ref_pattern(ref);
  pbn = 0;
  pb[pbn++] = 0;
  pb_bytes(b, n);
  return decode_exact(page, ref, pb, pbn);
}

#define DECODE_WORDS(...)                                                                          \
  decode_words((const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

START_TEST(word_format_malformed)
{
  uint8_t ref[PAGE], page[PAGE];
  ref_pattern(ref);
  /* headers */
  ck_assert_int_eq(decode_exact(page, ref, (const uint8_t *)"\0", 1), DMEM_ETRUNC);
  ck_assert_int_eq(decode_exact(page, ref, (const uint8_t *)"\x03\x3f", 2), DMEM_ECORRUPT);
  ck_assert_int_eq(decode_exact(page, ref, (const uint8_t *)"\xff\x3f", 2), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_WORDS(W_END), 0);
  /* the end: no skip bits, nothing after it; no end at all */
  ck_assert_int_eq(DECODE_WORDS(1u << 6 | W_END), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_WORDS(W_END, 0), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_WORDS(W_RANGE, 5), DMEM_ETRUNC);
  /* unused codes */
  for (unsigned c = W_ZERO + 1; c < W_END; c++)
    ck_assert_int_eq(DECODE_WORDS((uint8_t)c, W_END), DMEM_ECORRUPT);
  /* empty table entries, and a high entry that comes out zero */
  ck_assert_int_eq(DECODE_WORDS(0, W_END), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_WORDS(W_PART, 0, W_END), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_WORDS(W_PART, 1u << 6, 0, W_END), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_WORDS(W_PART, 1u << 6, 5, W_END), 0);
  /* payloads cut short */
  ck_assert_int_eq(DECODE_WORDS(W_PART), DMEM_ETRUNC);
  ck_assert_int_eq(DECODE_WORDS(W_PART, 3u << 6, 1, 2), DMEM_ETRUNC);
  ck_assert_int_eq(DECODE_WORDS(W_RANGE + 7, 1, 2, 3, 4, 5, 6, 7), DMEM_ETRUNC);
  ck_assert_int_eq(DECODE_WORDS(3u << 6 | W_RANGE, 0x80), DMEM_ETRUNC);
  ck_assert_int_eq(DECODE_WORDS(W_ZERO), DMEM_ETRUNC);
  ck_assert_int_eq(DECODE_WORDS(3u << 6 | W_RANGE, 0x80, 0x80, 0x80, 0x01, 1, W_END),
                   DMEM_ECORRUPT);
  /* words past the page end: skip 511 (3 + 508) reaches word 511, 512 word 512 */
  ck_assert_int_eq(DECODE_WORDS(3u << 6 | W_RANGE, 0xfc, 0x03, 1, W_END), 0);
  ck_assert_int_eq(DECODE_WORDS(3u << 6 | W_RANGE, 0xfd, 0x03, 1, W_END), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_WORDS(3u << 6 | W_RANGE, 0xfc, 0x03, 1, W_RANGE, 1, W_END),
                   DMEM_ECORRUPT);
  /* zero runs: 512 words fit, 513 do not, nor 2 from word 511 */
  ck_assert_int_eq(DECODE_WORDS(W_ZERO, 0xff, 0x03, W_END), 0);
  ck_assert_int_eq(DECODE_WORDS(W_ZERO, 0x80, 0x04, W_END), DMEM_ECORRUPT);
  ck_assert_int_eq(DECODE_WORDS(3u << 6 | W_ZERO, 0xfc, 0x03, 0, W_END), 0);
  ck_assert_int_eq(DECODE_WORDS(3u << 6 | W_ZERO, 0xfc, 0x03, 1, W_END), DMEM_ECORRUPT);
}
END_TEST

/* The moved format: the word format against the reference moved by a
 * shift (a zigzag varint after the header byte), zero past its ends. */
START_TEST(moved_format_by_hand)
{
  static const int shifts[] = {1, -1, 8, -24, 100, 4095, -4095};
  uint8_t ref[PAGE], want[PAGE], got[PAGE];
  ref_pattern(ref);
  for (unsigned k = 0; k < sizeof shifts / sizeof shifts[0]; k++) {
    int s = shifts[k];
    for (int i = 0; i < (int)PAGE; i++)
      want[i] = i + s >= 0 && i + s < (int)PAGE ? ref[i + s] : 0;
    pbn = 0;
    pb[pbn++] = F_MOVED;
    pb_varint(s < 0 ? (unsigned)(-2 * s - 1) : (unsigned)(2 * s));
    /* word 2: bytes 0..1 of 0x0102 (range (0,1), rank 1) */
    pb_tok(2, W_RANGE + 1);
    pb_bytes((const uint8_t *)"\x02\x01", 2);
    xor_word(want, 2, 0x0102);
    pb_tok(0, W_END);
    ck_assert_int_eq(decode_exact(got, ref, pb, pbn), 0);
    ck_assert_msg(memcmp(got, want, PAGE) == 0, "shift %d", s);
  }
}
END_TEST

START_TEST(moved_format_malformed)
{
  uint8_t ref[PAGE], page[PAGE];
  ref_pattern(ref);
  static const struct {
    const char *b;
    size_t n;
    int rc;
  } cases[] = {
      {"\x02", 1, DMEM_ETRUNC},                       /* no shift */
      {"\x02\x80", 2, DMEM_ETRUNC},                   /* a shift cut short */
      {"\x02\x80\x80\x80\x01\x3f", 6, DMEM_ECORRUPT}, /* a varint of four bytes */
      {"\x02\x00\x3f", 3, DMEM_ECORRUPT},             /* shift 0: the word format's */
      {"\x02\xfe\x3f\x3f", 4, 0},                     /* 4095 */
      {"\x02\xfd\x3f\x3f", 4, 0},                     /* -4095 */
      {"\x02\xff\x3f\x3f", 4, DMEM_ECORRUPT},         /* -4096 */
      {"\x02\x80\x40\x3f", 4, DMEM_ECORRUPT},         /* 4096 */
      {"\x02\x02", 2, DMEM_ETRUNC},                   /* no words, no end */
      {"\x02\x02\x3f\x00", 4, DMEM_ECORRUPT},         /* bytes after the end */
      {"\x02\x02\x00\x3f", 4, DMEM_ECORRUPT},         /* an empty table entry */
  };
  for (unsigned k = 0; k < sizeof cases / sizeof cases[0]; k++)
    ck_assert_msg(decode_exact(page, ref, (const uint8_t *)cases[k].b, cases[k].n) == cases[k].rc,
                  "case %u", k);
}
END_TEST

/* Valid patches of several shapes, for the corruption tests: which % 3 is
 * 0 or 1 for the word format, 2 for the moved one; which >= 6, the
 * LZ-style format. */
#define SAMPLES 9
static size_t sample_patch(uint8_t *patch, uint8_t *ref, unsigned which)
{
  uint8_t page[PAGE];
  if (which >= 6)
    make_random(ref, 30 + which); /* a fill over it costs the word format 9 bytes a word */
  else
    make_page(ref, 30 + which);
  memcpy(page, ref, PAGE);
  if (which % 3 == 1)
    relocate(page);
  if (which % 3 == 2)
    move_content(page, ref, 24);
  for (unsigned i = which; i < PAGE; i += 301 + which)
    page[i] ^= (uint8_t)(i | 1);
  memset(page + 3000, which >= 6 ? 0x77 : 0, 100);
  if (which >= 6)
    memset(page + 1000, 0xee, 2000);
  size_t len;
  ck_assert_int_eq(dmem_delta_encode_flags(&len, patch, DMEM_DELTA_MAX, page, ref,
                                           which >= 6 ? DMEM_DELTA_LZ : 0),
                   0);
  ck_assert_uint_eq(patch[0], which >= 6 ? F_LZ : which % 3 == 2 ? F_MOVED : F_WORD);
  return len;
}

START_TEST(every_truncation_fails)
{
  uint8_t ref[PAGE], patch[DMEM_DELTA_MAX], out[PAGE + GUARD];
  for (unsigned which = 0; which < SAMPLES; which++) {
    size_t len = sample_patch(patch, ref, which);
    for (size_t cut = 0; cut < len; cut++) {
      memset(out, GUARD_BYTE, sizeof out);
      ck_assert_int_eq(decode_exact(out, ref, patch, cut), DMEM_ETRUNC);
      assert_guard(out, PAGE, sizeof out);
    }
    ck_assert_int_eq(decode_exact(out, ref, patch, len), 0);
  }
}
END_TEST

START_TEST(trailing_bytes_rejected)
{
  uint8_t ref[PAGE], patch[DMEM_DELTA_MAX + 8], out[PAGE];
  for (unsigned which = 0; which < SAMPLES; which++) {
    size_t len = sample_patch(patch, ref, which);
    memcpy(patch + len, "\0\x01garbage", 8);
    for (size_t extra = 1; extra <= 8; extra++)
      ck_assert_int_eq(decode_exact(out, ref, patch, len + extra), DMEM_ECORRUPT);
  }
}
END_TEST

static void check_any_outcome(const uint8_t *ref, const uint8_t *patch, size_t len)
{
  uint8_t out[PAGE + GUARD];
  memset(out, GUARD_BYTE, sizeof out);
  int rc = decode_exact(out, ref, patch, len);
  ck_assert(rc == 0 || rc == DMEM_ECORRUPT || rc == DMEM_ETRUNC);
  assert_guard(out, PAGE, sizeof out);
}

START_TEST(bit_flips_never_crash)
{
  uint8_t ref[PAGE], patch[DMEM_DELTA_MAX], bad[DMEM_DELTA_MAX];
  uint64_t s = 40;
  for (unsigned which = 0; which < SAMPLES; which++) {
    size_t len = sample_patch(patch, ref, which);
    for (unsigned k = 0; k < 1000; k++) {
      size_t bit = test_rand(&s) % (len * 8), bit2 = test_rand(&s) % (len * 8);
      memcpy(bad, patch, len);
      bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
      bad[bit2 / 8] ^= (uint8_t)((k & 1u) << (bit2 % 8)); /* every other time */
      check_any_outcome(ref, bad, len);
    }
  }
}
END_TEST

START_TEST(random_bytes_never_crash)
{
  uint8_t ref[PAGE], junk[600];
  uint64_t s = 41;
  make_page(ref, 42);
  for (unsigned k = 0; k < 5000; k++) {
    size_t len = test_rand(&s) % sizeof junk;
    for (size_t i = 0; i < len; i++)
      junk[i] = (uint8_t)test_rand(&s);
    /* small tags now and then, so that some inputs get far */
    for (size_t i = 0; i < len; i += 1 + test_rand(&s) % 8)
      junk[i] &= 0x7f;
    check_any_outcome(ref, junk, len);
  }
}
END_TEST

/* Both encoders write whole words and blocks past their cursor into slack:
 * differences in the last bytes of the page, at every length up to 40,
 * must still round-trip and stay small. */
START_TEST(page_end_edges)
{
  uint8_t ref[PAGE], page[PAGE];
  make_page(ref, 17);
  for (unsigned n = 1; n <= 40; n++) {
    memcpy(page, ref, PAGE);
    for (unsigned i = PAGE - n; i < PAGE; i++)
      page[i] ^= (uint8_t)(0x3c + i);                        /* a literal that ends the page */
    ck_assert_uint_le(round_trip(page, ref), n + n / 8 + 8); /* a token a word */
    memcpy(page, ref, PAGE);
    for (unsigned i = PAGE - n; i < PAGE; i++)
      page[i] ^= (uint8_t)(0x11 * (i % 8 + 1)); /* x repeats every 8 bytes */
    /* the first words as they are, then a byte for each repeat */
    ck_assert_uint_le(round_trip(page, ref), n < 16 ? n + 8 : 20 + n / 8);
  }
}
END_TEST

/* ---- Known answers: generated once, checked forever ---- A change is a
 * change of the encoder's output; look at the sizes before updating. */

static void kat_pair(uint8_t *page, uint8_t *ref, unsigned which)
{
  make_page(ref, 21 + which);
  memcpy(page, ref, PAGE);
  if (which == 0) {
    put64(page + 24, get64(page + 24) ^ 0xffull);
    put64(page + 800, 12345);
    put64(page + 3200, get64(page + 3200) + 1);
  } else if (which == 1) {
    relocate(page);
    page[1234] ^= 7;
  } else if (which == 2) {
    move_content(page, ref, 24);
    memcpy(page + 2000, "changed!", 8);
  } else {
    make_random(ref, 24); /* a fill over it costs the word format 9 bytes a word */
    memcpy(page, ref, PAGE);
    memset(page + 1000, 0xee, 2000);
    put64(page + 3200, 12345);
  }
}

START_TEST(known_answers)
{
  static const struct {
    size_t len;
    uint64_t fnv;
    unsigned flags, format;
  } want[4] = {
      {17, 0x2f1da1abd5be9af9ull, 0, F_WORD},           /* three words changed */
      {242, 0xd82cdae5e1a6f56bull, 0, F_WORD},          /* pointers relocated, one byte changed */
      {41, 0xe88e2e4baeffaba6ull, 0, F_MOVED},          /* content moved by 24, 8 bytes changed */
      {19, 0xfcb8b40eb588b92dull, DMEM_DELTA_LZ, F_LZ}, /* a fill and a word over random bytes */
  };
  uint8_t ref[PAGE], page[PAGE], patch[DMEM_DELTA_MAX];
  for (unsigned k = 0; k < 4; k++) {
    kat_pair(page, ref, k);
    size_t len;
    ck_assert_int_eq(dmem_delta_encode_flags(&len, patch, sizeof patch, page, ref, want[k].flags),
                     0);
    ck_assert_msg(len == want[k].len && fnv1a(patch, len) == want[k].fnv,
                  "pair %u: %zu bytes, fnv1a 0x%016llx", k, len,
                  (unsigned long long)fnv1a(patch, len));
    ck_assert_uint_eq(patch[0], want[k].format);
    ck_assert_uint_eq(round_trip_flags(page, ref, want[k].flags, NULL), len);
  }
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("delta");
  TCase *tc = tcase_create("round_trip");
  tcase_add_test(tc, identical_is_tiny);
  tcase_add_test(tc, one_word_changed);
  tcase_add_test(tc, scattered_changes);
  tcase_add_test(tc, shifted_content);
  tcase_add_test(tc, relocated_pointers);
  tcase_add_test(tc, fills);
  tcase_add_test(tc, random_mutations);
  tcase_add_test(tc, page_end_edges);
  suite_add_tcase(s, tc);
  tc = tcase_create("cap");
  tcase_add_test(tc, cap_is_exact);
  tcase_add_test(tc, too_big);
  tcase_add_test(tc, null_arguments);
  suite_add_tcase(s, tc);
  tc = tcase_create("malformed");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, format_by_hand);
  tcase_add_test(tc, malformed_by_hand);
  tcase_add_test(tc, word_format_by_hand);
  tcase_add_test(tc, word_format_malformed);
  tcase_add_test(tc, moved_format_by_hand);
  tcase_add_test(tc, moved_format_malformed);
  tcase_add_test(tc, every_truncation_fails);
  tcase_add_test(tc, trailing_bytes_rejected);
  tcase_add_test(tc, bit_flips_never_crash);
  tcase_add_test(tc, random_bytes_never_crash);
  suite_add_tcase(s, tc);
  tc = tcase_create("known_answers");
  tcase_add_test(tc, known_answers);
  suite_add_tcase(s, tc);
  return s;
}
