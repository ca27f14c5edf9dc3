/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* WKdm (lib/wkdm.c) through its internal entry points: round trips on many
 * kinds of page, the exact stream of a few fixed pages (known answers, so
 * that a format change cannot pass unnoticed), the cap contract of the
 * encoder, and a decoder that rejects every truncation, trailing byte and
 * inconsistent header and survives every bit flip. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/common.h>

#include "wkdm.h"
#include "testutil.h"

#define PAGE DMEM_PAGE_SIZE
#define WORDS (PAGE / 4)
#define HDR 6
#define TAGS 256
#define MAX_STREAM (HDR + PAGE + TAGS) /* every word a MISS */
#define GUARD 64
#define GUARD_BYTE 0xa5

/* ---------------------------------------------------------------- pages */

static void put32(uint8_t *p, unsigned i, uint32_t w)
{
  p[4 * i] = (uint8_t)w;
  p[4 * i + 1] = (uint8_t)(w >> 8);
  p[4 * i + 2] = (uint8_t)(w >> 16);
  p[4 * i + 3] = (uint8_t)(w >> 24);
}

static unsigned get16(const uint8_t *p)
{
  return (unsigned)p[0] | (unsigned)p[1] << 8;
}

enum kind {
  K_ZERO,
  K_SAME,     /* one nonzero word repeated */
  K_RANDOM,   /* incompressible */
  K_POINTERS, /* 64-bit heap pointers, NULLs and small counters */
  K_TEXT,     /* ASCII prose */
  K_SMALL,    /* small nonzero integers: all PARTIAL or EXACT */
  K_MISSES,   /* every word a MISS */
  K_MIXED,    /* quarters of pointers, text, zeros and random */
  K_SPARSE,   /* mostly zero with a few words set */
  K_NKINDS
};

static void fill_pointers(uint8_t *p, uint64_t *rng, unsigned from, unsigned to)
{
  for (unsigned i = from; i + 1 < to; i += 2) {
    uint64_t r = test_rand(rng), v;
    switch (r % 4) {
    case 0:
      v = 0;
      break;
    case 1:
      v = (r >> 8) % 64; /* a refcount */
      break;
    default:
      v = 0x00007f3a12340000ull + ((r >> 12) % (1u << 20) & ~15ull);
      break;
    }
    put32(p, i, (uint32_t)v);
    put32(p, i + 1, (uint32_t)(v >> 32));
  }
}

static void fill_text(uint8_t *p, uint64_t *rng, unsigned from, unsigned to)
{
  static const char *const words[] = {"the ",   "page ",   "memory ", "of ",     "a ",
                                      "guest ", "shares ", "with ",   "another ", "\n"};
  unsigned n = 0;
  char buf[PAGE];
  while (n < sizeof buf) {
    const char *w = words[test_rand(rng) % 10];
    for (size_t k = 0; w[k] && n < sizeof buf; k++)
      buf[n++] = w[k];
  }
  memcpy(p + 4 * from, buf, 4 * (size_t)(to - from));
}

static void make_page(uint8_t *p, enum kind k, uint64_t seed)
{
  uint64_t rng = seed;
  memset(p, 0, PAGE);
  switch (k) {
  case K_ZERO:
    break;
  case K_SAME:
    for (unsigned i = 0; i < WORDS; i++)
      put32(p, i, 0xdeadbeef);
    break;
  case K_RANDOM:
    for (unsigned i = 0; i < WORDS; i++)
      put32(p, i, (uint32_t)test_rand(&rng));
    break;
  case K_POINTERS:
    fill_pointers(p, &rng, 0, WORDS);
    break;
  case K_TEXT:
    fill_text(p, &rng, 0, WORDS);
    break;
  case K_SMALL:
    for (unsigned i = 0; i < WORDS; i++)
      put32(p, i, 1 + (uint32_t)(test_rand(&rng) % 1000));
    break;
  case K_MISSES: /* distinct high bits everywhere: nothing ever matches */
    for (unsigned i = 0; i < WORDS; i++)
      put32(p, i, (uint32_t)(i + 1) << 10 | (i * 7 & 1023));
    break;
  case K_MIXED:
    fill_pointers(p, &rng, 0, 256);
    fill_text(p, &rng, 256, 512);
    for (unsigned i = 768; i < WORDS; i++)
      put32(p, i, (uint32_t)test_rand(&rng));
    break;
  case K_SPARSE:
    for (unsigned n = 0; n < 20; n++)
      put32(p, (unsigned)(test_rand(&rng) % WORDS), (uint32_t)test_rand(&rng));
    break;
  case K_NKINDS:
    break;
  }
}

/* ---------------------------------------------------------------- helpers */

/* Are p[from..to) all GUARD_BYTE? (One assert per buffer: Check records
 * every passing assert, which is slow in a loop over bytes.) */
static int guard_intact(const uint8_t *p, size_t from, size_t to)
{
  for (size_t i = from; i < to; i++)
    if (p[i] != GUARD_BYTE)
      return 0;
  return 1;
}

/* Compresses with room to spare and checks that nothing past the stream's
 * end was written. */
static int compress_checked(uint8_t *out, const uint8_t *page)
{
  uint8_t buf[DMEM__WKDM_BOUND + GUARD];
  memset(buf, GUARD_BYTE, sizeof buf);
  int n = dmem__wkdm_compress(buf, DMEM__WKDM_BOUND, page);
  ck_assert_int_gt(n, 0);
  ck_assert_int_le(n, MAX_STREAM);
  ck_assert(guard_intact(buf, DMEM__WKDM_BOUND, sizeof buf));
  memcpy(out, buf, (size_t)n);
  return n;
}

/* Decompresses from an exactly sized heap copy (so that ASan sees any read
 * past the end) into a page with guard bytes behind it. */
static int decompress_exact(uint8_t *page, const uint8_t *in, size_t len)
{
  uint8_t *copy = malloc(len ? len : 1);
  uint8_t *dst = malloc(PAGE + GUARD);
  ck_assert_ptr_nonnull(copy);
  ck_assert_ptr_nonnull(dst);
  if (len)
    memcpy(copy, in, len);
  memset(dst, GUARD_BYTE, PAGE + GUARD);
  int rc = dmem__wkdm_decompress(dst, copy, len);
  ck_assert(guard_intact(dst, PAGE, PAGE + GUARD));
  memcpy(page, dst, PAGE);
  free(copy);
  free(dst);
  return rc;
}

static void assert_round_trip(const uint8_t *page)
{
  uint8_t s[MAX_STREAM], back[PAGE];
  int n = compress_checked(s, page);
  ck_assert_int_eq(decompress_exact(back, s, (size_t)n), 0);
  ck_assert(memcmp(back, page, PAGE) == 0);
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static int is_stream_error(int rc)
{
  return rc == DMEM_ECORRUPT || rc == DMEM_ETRUNC;
}

/* ---------------------------------------------------------------- round trips */

START_TEST(round_trip_kinds)
{
  uint8_t page[PAGE];
  for (int k = 0; k < K_NKINDS; k++) {
    for (uint64_t seed = 1; seed <= 8; seed++) {
      make_page(page, (enum kind)k, seed * 0x1234567ull);
      assert_round_trip(page);
    }
  }
}
END_TEST

START_TEST(sizes_follow_the_model)
{
  uint8_t page[PAGE], s[MAX_STREAM];
  /* Zero page: header and tags only. */
  make_page(page, K_ZERO, 0);
  ck_assert_int_eq(compress_checked(s, page), HDR + TAGS);
  ck_assert_uint_eq(get16(s), 0);
  ck_assert_uint_eq(get16(s + 2), 0);
  ck_assert_uint_eq(get16(s + 4), 0);
  /* One word repeated: a MISS, then 1023 EXACT (512 index bytes). */
  make_page(page, K_SAME, 0);
  ck_assert_int_eq(compress_checked(s, page), HDR + 4 + TAGS + 512);
  ck_assert_uint_eq(get16(s), 1);
  ck_assert_uint_eq(get16(s + 2), 1023);
  ck_assert_uint_eq(get16(s + 4), 0);
  /* Nothing matches: the worst case, exactly. */
  make_page(page, K_MISSES, 0);
  ck_assert_int_eq(compress_checked(s, page), MAX_STREAM);
  ck_assert_uint_eq(get16(s), WORDS);
  /* Small integers share their high bits with the initial zero entry. */
  make_page(page, K_SMALL, 5);
  compress_checked(s, page);
  ck_assert_uint_eq(get16(s), 0);
  ck_assert_uint_eq(get16(s + 2), WORDS);
  ck_assert_uint_gt(get16(s + 4), 0);
}
END_TEST

START_TEST(tags_of_a_short_sequence)
{
  /* A, A, A+5 (same high bits), 0, B: MISS, EXACT, PARTIAL, ZERO, MISS. */
  uint8_t page[PAGE] = {0}, s[MAX_STREAM];
  put32(page, 0, 0x12345678);
  put32(page, 1, 0x12345678);
  put32(page, 2, 0x1234567d);
  put32(page, 4, 0x9abcdef0);
  int n = compress_checked(s, page);
  ck_assert_uint_eq(get16(s), 2);     /* misses */
  ck_assert_uint_eq(get16(s + 2), 2); /* indices */
  ck_assert_uint_eq(get16(s + 4), 1); /* low fields */
  ck_assert_int_eq(n, HDR + 8 + TAGS + 1 + 4);
  const uint8_t *tags = s + HDR + 8;
  ck_assert_uint_eq(tags[0], 3 | 1 << 2 | 2 << 4 | 0 << 6);
  ck_assert_uint_eq(tags[1], 3);
  const uint8_t *low = tags + TAGS + 1;
  ck_assert_uint_eq(low[0] | (low[1] & 3) << 8, 0x27d);
  assert_round_trip(page);
}
END_TEST

START_TEST(any_alignment)
{
  uint8_t src[PAGE + 8], dst[PAGE + 8], buf[DMEM__WKDM_BOUND + 8];
  make_page(src + 3, K_MIXED, 42);
  int n = dmem__wkdm_compress(buf + 1, DMEM__WKDM_BOUND, src + 3);
  ck_assert_int_gt(n, 0);
  ck_assert_int_eq(dmem__wkdm_decompress(dst + 5, buf + 1, (size_t)n), 0);
  ck_assert(memcmp(dst + 5, src + 3, PAGE) == 0);
}
END_TEST

START_TEST(deterministic)
{
  uint8_t page[PAGE], a[MAX_STREAM], b[MAX_STREAM];
  make_page(page, K_POINTERS, 9);
  int na = compress_checked(a, page), nb = compress_checked(b, page);
  ck_assert_int_eq(na, nb);
  ck_assert(memcmp(a, b, (size_t)na) == 0);
}
END_TEST

/* ---------------------------------------------------------------- known answers */

/* Generated once from this implementation; they pin the format. */
static const struct {
  enum kind kind;
  uint64_t seed;
  int len;
  uint64_t fnv;
} kat[] = {
  {K_POINTERS, 1, 1739, 0xe0e3792b91bd2b5full},
  {K_TEXT, 2, 3569, 0x0dc0ebf4c2f28023ull},
  {K_MIXED, 3, 2469, 0xff3516dc578f2898ull},
};

START_TEST(known_answers)
{
  uint8_t page[PAGE], s[MAX_STREAM];
  for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
    make_page(page, kat[i].kind, kat[i].seed);
    int n = compress_checked(s, page);
    uint64_t h = fnv1a64(s, (size_t)n);
    if (n != kat[i].len || h != kat[i].fnv) /* say what changed */
      fprintf(stderr, "kat %zu: len %d fnv 0x%016llxull\n", i, n, (unsigned long long)h);
    ck_assert_int_eq(n, kat[i].len);
    ck_assert(h == kat[i].fnv);
  }
}
END_TEST

/* ---------------------------------------------------------------- encoder cap */

START_TEST(too_small_cap)
{
  uint8_t page[PAGE], ref[MAX_STREAM], buf[DMEM__WKDM_BOUND + GUARD];
  static const enum kind kinds[] = {K_ZERO, K_POINTERS, K_RANDOM, K_SMALL};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    make_page(page, kinds[k], 77);
    int n = compress_checked(ref, page);
    for (int cap = 0; cap <= n; cap++) {
      memset(buf, GUARD_BYTE, sizeof buf);
      int rc = dmem__wkdm_compress(buf, (size_t)cap, page);
      ck_assert_msg(guard_intact(buf, (size_t)cap, sizeof buf), "wrote past cap %d", cap);
      if (cap < n) {
        ck_assert_int_eq(rc, DMEM_ETOOBIG);
      } else { /* exactly enough: the same stream as with room to spare */
        ck_assert_int_eq(rc, n);
        ck_assert(memcmp(buf, ref, (size_t)n) == 0);
      }
    }
  }
}
END_TEST

/* ---------------------------------------------------------------- decoder */

START_TEST(every_truncation_fails)
{
  uint8_t page[PAGE], s[MAX_STREAM], back[PAGE];
  static const enum kind kinds[] = {K_ZERO, K_SAME, K_POINTERS, K_TEXT, K_MIXED};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    make_page(page, kinds[k], 3);
    int n = compress_checked(s, page);
    for (int len = 0; len < n; len++) {
      int rc = decompress_exact(back, s, (size_t)len);
      ck_assert_msg(is_stream_error(rc), "kind %zu len %d/%d: %d", k, len, n, rc);
    }
    /* A valid header with a short body says truncated, not corrupt. */
    ck_assert_int_eq(decompress_exact(back, s, (size_t)n - 1), DMEM_ETRUNC);
    ck_assert_int_eq(decompress_exact(back, s, 0), DMEM_ETRUNC);
  }
}
END_TEST

START_TEST(trailing_garbage_rejected)
{
  uint8_t page[PAGE], s[MAX_STREAM + 16], back[PAGE];
  make_page(page, K_POINTERS, 4);
  int n = compress_checked(s, page);
  for (int extra = 1; extra <= 16; extra++) {
    memset(s + n, extra == 1 ? 0 : 0x5a, (size_t)extra);
    ck_assert_int_eq(decompress_exact(back, s, (size_t)(n + extra)), DMEM_ECORRUPT);
  }
}
END_TEST

/* Flips every bit of a stream. A flip in the header or the tags changes a
 * count that must match, so it must fail; a flip in a payload may give
 * another valid page, which must then round-trip itself. */
static void flip_every_bit(enum kind kind, uint64_t seed)
{
  uint8_t page[PAGE], s[MAX_STREAM], back[PAGE];
  make_page(page, kind, seed);
  int n = compress_checked(s, page);
  size_t tags_end = HDR + 4 * (size_t)get16(s) + TAGS;
  for (size_t bit = 0; bit < (size_t)n * 8; bit++) {
    s[bit / 8] ^= (uint8_t)(1u << bit % 8);
    int rc = decompress_exact(back, s, (size_t)n);
    s[bit / 8] ^= (uint8_t)(1u << bit % 8);
    if (bit / 8 < HDR || (bit / 8 >= tags_end - TAGS && bit / 8 < tags_end))
      ck_assert_msg(is_stream_error(rc), "bit %zu of %d: %d", bit, n, rc);
    if (rc == 0)
      assert_round_trip(back);
    else
      ck_assert(is_stream_error(rc));
  }
}

START_TEST(bit_flips)
{
  flip_every_bit(K_POINTERS, 5);
  flip_every_bit(K_SMALL, 6);
  flip_every_bit(K_SPARSE, 7);
}
END_TEST

START_TEST(inconsistent_headers)
{
  uint8_t page[PAGE], s[MAX_STREAM], back[PAGE];
  make_page(page, K_SMALL, 8);
  int n = compress_checked(s, page);
  unsigned ni = get16(s + 2), nl = get16(s + 4);
  ck_assert_uint_eq(get16(s), 0);

  /* Counts beyond a page. */
  uint8_t t[MAX_STREAM];
  memcpy(t, s, (size_t)n);
  t[0] = 0x01;
  t[1] = 0x04; /* nf = 1025 */
  ck_assert_int_eq(decompress_exact(back, t, (size_t)n), DMEM_ECORRUPT);
  memcpy(t, s, (size_t)n);
  t[4] = (uint8_t)(ni + 1);
  t[5] = (uint8_t)((ni + 1) >> 8); /* nl > ni */
  ck_assert(is_stream_error(decompress_exact(back, t, (size_t)n)));

  /* Counts that fit the length but not the tags: nl - 1 keeps the size of
   * the low-bit section (three fields a word) unless nl % 3 == 1. */
  ck_assert_uint_ne(nl % 3, 1);
  memcpy(t, s, (size_t)n);
  t[4] = (uint8_t)(nl - 1);
  t[5] = (uint8_t)((nl - 1) >> 8);
  ck_assert_int_eq(decompress_exact(back, t, (size_t)n), DMEM_ECORRUPT);

  /* Nonzero padding: bits 30-31 of the first low word. */
  size_t low_at = HDR + TAGS + (ni + 1) / 2;
  memcpy(t, s, (size_t)n);
  t[low_at + 3] |= 0x40;
  ck_assert_int_eq(decompress_exact(back, t, (size_t)n), DMEM_ECORRUPT);
}
END_TEST

START_TEST(padding_must_be_zero)
{
  /* One PARTIAL after one MISS: ni = 1 (a pad nibble), nl = 1 (two empty
   * fields in its word). */
  uint8_t page[PAGE] = {0}, s[MAX_STREAM], back[PAGE], t[MAX_STREAM];
  put32(page, 0, 0x40000000);
  put32(page, 1, 0x40000001);
  int n = compress_checked(s, page);
  ck_assert_int_eq(n, HDR + 4 + TAGS + 1 + 4);
  size_t idx_at = HDR + 4 + TAGS, low_at = idx_at + 1;
  ck_assert_uint_eq(s[idx_at] >> 4, 0);
  ck_assert_int_eq(decompress_exact(back, s, (size_t)n), 0);

  memcpy(t, s, (size_t)n);
  t[idx_at] |= 0x10; /* the pad nibble */
  ck_assert_int_eq(decompress_exact(back, t, (size_t)n), DMEM_ECORRUPT);
  for (int bit = 10; bit < 32; bit++) { /* the empty fields and bits 30-31 */
    memcpy(t, s, (size_t)n);
    t[low_at + bit / 8] ^= (uint8_t)(1u << bit % 8);
    ck_assert_int_eq(decompress_exact(back, t, (size_t)n), DMEM_ECORRUPT);
  }
}
END_TEST

START_TEST(random_garbage)
{
  uint64_t rng = 0xfeed;
  uint8_t s[MAX_STREAM + 8], back[PAGE];
  for (int round = 0; round < 3000; round++) {
    size_t len = (size_t)(test_rand(&rng) % sizeof s);
    for (size_t i = 0; i < len; i++)
      s[i] = (uint8_t)test_rand(&rng);
    if (round % 2 && len >= HDR) {
      /* Often make the header agree with the length, to get further in. */
      unsigned nf = (unsigned)(test_rand(&rng) % 64);
      size_t rest = len > HDR + TAGS + 4 * nf ? len - HDR - TAGS - 4 * nf : 0;
      unsigned ni = (unsigned)(rest * 2 > 1024 - nf ? 1024 - nf : rest * 2);
      s[0] = (uint8_t)nf;
      s[1] = 0;
      s[2] = (uint8_t)ni;
      s[3] = (uint8_t)(ni >> 8);
      s[4] = s[5] = 0;
    }
    int rc = decompress_exact(back, s, len);
    if (rc == 0)
      assert_round_trip(back);
    else
      ck_assert(is_stream_error(rc));
  }
}
END_TEST

START_TEST(decoded_garbage_round_trips)
{
  /* A hand-made stream the encoder would never write (an EXACT that names
   * a slot the word does not hash to) still decodes to some page, which
   * must then compress and decode back to itself. */
  uint8_t s[HDR + 4 + TAGS + 1] = {0}, back[PAGE];
  s[0] = 1; /* nf = 1 */
  s[2] = 1; /* ni = 1 */
  put32(s + HDR, 0, 0xcafef00d);
  s[HDR + 4] = 3 | 1 << 2; /* MISS, EXACT, then ZERO */
  s[HDR + 4 + TAGS] = 9;   /* slot 9, whatever the word hashed to */
  ck_assert_int_eq(decompress_exact(back, s, sizeof s), 0);
  assert_round_trip(back);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("wkdm");
  TCase *tc = tcase_create("round_trip");
  tcase_add_test(tc, round_trip_kinds);
  tcase_add_test(tc, sizes_follow_the_model);
  tcase_add_test(tc, tags_of_a_short_sequence);
  tcase_add_test(tc, any_alignment);
  tcase_add_test(tc, deterministic);
  tcase_add_test(tc, known_answers);
  suite_add_tcase(s, tc);

  tc = tcase_create("encoder_cap");
  tcase_add_test(tc, too_small_cap);
  suite_add_tcase(s, tc);

  tc = tcase_create("decoder");
  tcase_set_timeout(tc, 120); /* bit flips are slow under sanitizers */
  tcase_add_test(tc, every_truncation_fails);
  tcase_add_test(tc, trailing_garbage_rejected);
  tcase_add_test(tc, bit_flips);
  tcase_add_test(tc, inconsistent_headers);
  tcase_add_test(tc, padding_must_be_zero);
  tcase_add_test(tc, random_garbage);
  tcase_add_test(tc, decoded_garbage_round_trips);
  suite_add_tcase(s, tc);
  return s;
}
