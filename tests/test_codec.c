/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The codec interface: every codec round-trips, blobs name their codec,
 * short buffers and malformed blobs give errors, best-of keeps the smallest,
 * and allocation failures are clean. */
#include "config.h"

#include <check.h>
#include <string.h>

#include <diffmem/codec.h>

#include "testutil.h"

enum { KINDS = 6 };

/* Page kinds with the structure real memory has. */
static void make_page(uint8_t *p, int kind, uint64_t seed)
{
  uint64_t s = seed;
  switch (kind) {
  case 0: /* zero */
    memset(p, 0, DMEM_PAGE_SIZE);
    break;
  case 1: /* pointers and small integers, like a heap page */
    for (size_t i = 0; i < DMEM_PAGE_SIZE / 8; i++) {
      uint64_t r = test_rand(&s);
      uint64_t w = (r & 3) == 0 ? (r >> 40) & 0xff : 0x00007f3a12000000ull + ((r >> 8) & 0xfff0);
      memcpy(p + i * 8, &w, 8);
    }
    break;
  case 2: /* text */
    for (size_t i = 0; i < DMEM_PAGE_SIZE; i++)
      p[i] = "the quick brown fox jumps over the lazy dog\n"[(test_rand(&s) % 7) + i % 37];
    break;
  case 3: /* random */
    for (size_t i = 0; i < DMEM_PAGE_SIZE; i += 8) {
      uint64_t r = test_rand(&s);
      memcpy(p + i, &r, 8);
    }
    break;
  case 4: /* one repeated word */
    for (size_t i = 0; i < DMEM_PAGE_SIZE; i += 4)
      memcpy(p + i, &(uint32_t){0xdeadbeef}, 4);
    break;
  default: /* half zero, half small counters */
    memset(p, 0, DMEM_PAGE_SIZE);
    for (size_t i = DMEM_PAGE_SIZE / 2; i < DMEM_PAGE_SIZE; i += 4)
      memcpy(p + i, &(uint32_t){(uint32_t)(i * 3)}, 4);
    break;
  }
}

/* Every codec the library names, in id order, then DMEM_CODEC_BEST last:
 * the library's table drives the tests, so a new codec is tested too. */
static dmem_codec_id all_ids[DMEM_CODEC_BEST + 1];
static size_t nids;

static size_t codec_ids(void)
{
  if (nids == 0) {
    for (unsigned id = DMEM_CODEC_NONE + 1; id < DMEM_CODEC_BEST; id++)
      if (dmem_codec_name((dmem_codec_id)id))
        all_ids[nids++] = (dmem_codec_id)id;
    all_ids[nids++] = DMEM_CODEC_BEST;
  }
  return nids;
}
#define NIDS codec_ids()

START_TEST(names_round_trip)
{
  for (size_t i = 0; i < NIDS; i++) {
    const char *name = dmem_codec_name(all_ids[i]);
    ck_assert_ptr_nonnull(name);
    dmem_codec_id id = DMEM_CODEC_NONE;
    int rc = dmem_codec_from_name(&id, name);
    if (dmem_codec_available(all_ids[i])) {
      ck_assert_int_eq(rc, 0);
      ck_assert_int_eq(id, all_ids[i]);
    } else {
      ck_assert_int_eq(rc, DMEM_ENOTSUP);
    }
  }
  ck_assert_str_eq(dmem_codec_name(DMEM_CODEC_WKDM), "wkdm");
  ck_assert_str_eq(dmem_codec_name(DMEM_CODEC_LZO), "lzo");
  ck_assert_ptr_null(dmem_codec_name(DMEM_CODEC_NONE));
  ck_assert_ptr_null(dmem_codec_name((dmem_codec_id)200));
  dmem_codec_id id;
  ck_assert_int_eq(dmem_codec_from_name(&id, "gzip"), DMEM_ENOENT);
  ck_assert_int_eq(dmem_codec_available(DMEM_CODEC_WKDM), 1);
#if DMEM_HAVE_LZO
  ck_assert_int_eq(dmem_codec_available(DMEM_CODEC_LZO), 1);
#else
  ck_assert_int_eq(dmem_codec_available(DMEM_CODEC_LZO), 0);
  ck_assert_int_eq(dmem_codec_from_name(&id, "lzo"), DMEM_ENOTSUP);
#endif
  ck_assert_int_eq(dmem_codec_available(DMEM_CODEC_NONE), 0);
}
END_TEST

/* The engine's default pair follows what the build has: WKdm and LZO, or
 * WKdm and LZ4 in a build without liblzo2 (configure --disable-lzo). */
/* A best_mask bit of no codec is refused, and so is a mask of codecs the
 * build lacks (every compression would fail); a half allocator too. */
START_TEST(bad_masks_refused)
{
  dmem_codec *c = NULL;
  dmem_codec_options o = DMEM_CODEC_OPTIONS_INIT;
  o.best_mask = 1u << 9;
  ck_assert_int_eq(dmem_codec_create(&c, &o), DMEM_EINVAL);
  o.best_mask = (1u << DMEM_CODEC_WKDM) | (1u << 31);
  ck_assert_int_eq(dmem_codec_create(&c, &o), DMEM_EINVAL);
  o.best_mask = 1u << DMEM_CODEC_LZO;
  ck_assert_int_eq(dmem_codec_create(&c, &o),
                   dmem_codec_available(DMEM_CODEC_LZO) ? 0 : DMEM_ENOTSUP);
  dmem_codec_destroy(c);
  c = NULL;
  dmem_allocator half = {NULL, NULL, NULL};
  o = (dmem_codec_options)DMEM_CODEC_OPTIONS_INIT;
  o.allocator = &half;
  ck_assert_int_eq(dmem_codec_create(&c, &o), DMEM_EINVAL);
  ck_assert_ptr_null(c);
}
END_TEST

START_TEST(default_mask_follows_build)
{
  unsigned m = dmem_codec_default_mask();
  unsigned lz = dmem_codec_available(DMEM_CODEC_LZO)   ? 1u << DMEM_CODEC_LZO
                : dmem_codec_available(DMEM_CODEC_LZ4) ? 1u << DMEM_CODEC_LZ4
                                                       : 0;
  if (dmem_codec_available(DMEM_CODEC_ZSTD))
    ck_assert_uint_eq(m, 1u << DMEM_CODEC_ZSTD);
  else
    ck_assert_uint_eq(m, (1u << DMEM_CODEC_WKDM) | lz);
  for (unsigned id = 0; id < 16; id++)
    if (m & (1u << id))
      ck_assert_int_eq(dmem_codec_available((dmem_codec_id)id), 1);
}
END_TEST

/* Without liblzo2 an LZO blob is refused as not supported, never decoded
 * as something else, and LZO compression is refused the same way. With
 * it, the same blob (LZO1X's end marker alone: no page) is corrupt. */
START_TEST(missing_codec_is_refused)
{
  int have = dmem_codec_available(DMEM_CODEC_LZO);
  dmem_codec *c;
  ck_assert_int_eq(dmem_codec_create(&c, NULL), 0);
  uint8_t page[DMEM_PAGE_SIZE], blob[DMEM_COMPRESS_BOUND];
  make_page(page, 1, 3);
  size_t len = 0;
  ck_assert_int_eq(dmem_codec_compress(&len, blob, sizeof blob, c, DMEM_CODEC_LZO, page),
                   have ? 0 : DMEM_ENOTSUP);
  static const uint8_t lzo_blob[] = {DMEM_CODEC_LZO, 0x11, 0x00, 0x00};
  ck_assert_int_eq(dmem_codec_of_blob(lzo_blob, sizeof lzo_blob), DMEM_CODEC_LZO);
  ck_assert_int_eq(dmem_codec_decompress(page, c, lzo_blob, sizeof lzo_blob),
                   have ? DMEM_ECORRUPT : DMEM_ENOTSUP);
  dmem_codec_destroy(c);
}
END_TEST

START_TEST(every_codec_round_trips)
{
  dmem_codec *c;
  ck_assert_int_eq(dmem_codec_create(&c, NULL), 0);
  uint8_t page[DMEM_PAGE_SIZE], back[DMEM_PAGE_SIZE], blob[DMEM_COMPRESS_BOUND];
  for (size_t i = 0; i < NIDS; i++) {
    if (!dmem_codec_available(all_ids[i]))
      continue;
    for (int kind = 0; kind < KINDS; kind++) {
      for (uint64_t seed = 1; seed <= 8; seed++) {
        make_page(page, kind, seed * 977 + (uint64_t)kind);
        size_t len = 0;
        ck_assert_int_eq(dmem_codec_compress(&len, blob, sizeof blob, c, all_ids[i], page), 0);
        ck_assert_uint_ge(len, 2);
        ck_assert_uint_le(len, DMEM_COMPRESS_BOUND);
        dmem_codec_id made = dmem_codec_of_blob(blob, len);
        if (all_ids[i] == DMEM_CODEC_BEST)
          ck_assert_int_ne(made, DMEM_CODEC_NONE);
        else
          ck_assert_int_eq(made, all_ids[i]);
        memset(back, 0xa5, sizeof back);
        ck_assert_int_eq(dmem_codec_decompress(back, c, blob, len), 0);
        ck_assert_mem_eq(back, page, DMEM_PAGE_SIZE);
      }
    }
  }
  dmem_codec_destroy(c);
}
END_TEST

START_TEST(compressible_pages_shrink)
{
  dmem_codec *c;
  ck_assert_int_eq(dmem_codec_create(&c, NULL), 0);
  uint8_t page[DMEM_PAGE_SIZE], blob[DMEM_COMPRESS_BOUND];
  make_page(page, 0, 1);
  for (size_t i = 0; i < NIDS; i++) {
    if (!dmem_codec_available(all_ids[i]))
      continue;
    size_t len = 0;
    ck_assert_int_eq(dmem_codec_compress(&len, blob, sizeof blob, c, all_ids[i], page), 0);
    ck_assert_uint_lt(len, 400); /* a zero page is tiny in every codec */
  }
  dmem_codec_destroy(c);
}
END_TEST

START_TEST(best_keeps_the_smallest)
{
  dmem_codec *c;
  ck_assert_int_eq(dmem_codec_create(&c, NULL), 0);
  uint8_t page[DMEM_PAGE_SIZE], blob[DMEM_COMPRESS_BOUND];
  for (int kind = 0; kind < KINDS; kind++) {
    make_page(page, kind, 42);
    size_t best = 0;
    ck_assert_int_eq(dmem_codec_compress(&best, blob, sizeof blob, c, DMEM_CODEC_BEST, page), 0);
    for (size_t i = 0; i + 1 < NIDS; i++) {
      if (!dmem_codec_available(all_ids[i]))
        continue;
      size_t len = 0;
      ck_assert_int_eq(dmem_codec_compress(&len, blob, sizeof blob, c, all_ids[i], page), 0);
      ck_assert_uint_le(best, len);
    }
  }
  dmem_codec_destroy(c);
}
END_TEST

START_TEST(best_mask_limits_candidates)
{
  dmem_codec_options o = DMEM_CODEC_OPTIONS_INIT;
  dmem_codec_id only = dmem_codec_available(DMEM_CODEC_LZO) ? DMEM_CODEC_LZO : DMEM_CODEC_WKDM;
  o.best_mask = 1u << only;
  dmem_codec *c;
  ck_assert_int_eq(dmem_codec_create(&c, &o), 0);
  uint8_t page[DMEM_PAGE_SIZE], blob[DMEM_COMPRESS_BOUND];
  for (int kind = 0; kind < KINDS; kind++) {
    make_page(page, kind, 7);
    size_t len = 0;
    ck_assert_int_eq(dmem_codec_compress(&len, blob, sizeof blob, c, DMEM_CODEC_BEST, page), 0);
    ck_assert_int_eq(dmem_codec_of_blob(blob, len), only);
  }
  dmem_codec_destroy(c);
}
END_TEST

START_TEST(short_buffer_is_refused_without_overrun)
{
  dmem_codec *c;
  ck_assert_int_eq(dmem_codec_create(&c, NULL), 0);
  uint8_t page[DMEM_PAGE_SIZE], buf[DMEM_COMPRESS_BOUND + 64];
  for (size_t i = 0; i < NIDS; i++) {
    if (!dmem_codec_available(all_ids[i]))
      continue;
    make_page(page, 3, 5); /* random: incompressible */
    memset(buf, 0x5c, sizeof buf);
    size_t len = 12345;
    ck_assert_int_eq(dmem_codec_compress(&len, buf, DMEM_PAGE_SIZE / 2, c, all_ids[i], page),
                     DMEM_ETOOBIG);
    ck_assert_uint_eq(len, 12345);
    for (size_t j = DMEM_PAGE_SIZE / 2; j < sizeof buf; j++)
      ck_assert_uint_eq(buf[j], 0x5c);
    /* A compressible page (one repeated word) fits the same cap. */
    make_page(page, 4, 5);
    ck_assert_int_eq(dmem_codec_compress(&len, buf, DMEM_PAGE_SIZE / 2, c, all_ids[i], page), 0);
    ck_assert_uint_le(len, DMEM_PAGE_SIZE / 2);
  }
  dmem_codec_destroy(c);
}
END_TEST

START_TEST(malformed_blobs_are_errors)
{
  dmem_codec *c;
  ck_assert_int_eq(dmem_codec_create(&c, NULL), 0);
  uint8_t page[DMEM_PAGE_SIZE], back[DMEM_PAGE_SIZE], blob[DMEM_COMPRESS_BOUND];
  ck_assert_int_eq(dmem_codec_decompress(back, c, blob, 0), DMEM_ETRUNC);
  blob[0] = 0;
  blob[1] = 0;
  ck_assert_int_eq(dmem_codec_decompress(back, c, blob, 2), DMEM_ECORRUPT);
  blob[0] = DMEM_CODEC_BEST;
  ck_assert_int_eq(dmem_codec_decompress(back, c, blob, 2), DMEM_ECORRUPT);
  blob[0] = 99;
  ck_assert_int_eq(dmem_codec_decompress(back, c, blob, 2), DMEM_ECORRUPT);
  ck_assert_int_eq(dmem_codec_of_blob(blob, 2), DMEM_CODEC_NONE);

  for (size_t i = 0; i + 1 < NIDS; i++) {
    if (!dmem_codec_available(all_ids[i]))
      continue;
    make_page(page, 1, 3);
    size_t len = 0;
    ck_assert_int_eq(dmem_codec_compress(&len, blob, sizeof blob, c, all_ids[i], page), 0);
    /* Every proper prefix must fail: a page is never half-returned. */
    for (size_t cut = 0; cut < len; cut++)
      ck_assert_int_ne(dmem_codec_decompress(back, c, blob, cut), 0);
    /* Trailing bytes are not part of any valid blob. */
    uint8_t longer[DMEM_COMPRESS_BOUND + 8];
    memcpy(longer, blob, len);
    memset(longer + len, 0x11, 8);
    ck_assert_int_ne(dmem_codec_decompress(back, c, longer, len + 8), 0);
  }
  dmem_codec_destroy(c);
}
END_TEST

START_TEST(bad_arguments)
{
  dmem_codec *c = NULL;
  dmem_codec_options o = DMEM_CODEC_OPTIONS_INIT;
  o.version = 999;
  ck_assert_int_eq(dmem_codec_create(&c, &o), DMEM_EVERSION);
  ck_assert_ptr_null(c);
  o = (dmem_codec_options)DMEM_CODEC_OPTIONS_INIT;
  o.zstd_level = 0;
  ck_assert_int_eq(dmem_codec_create(&c, &o), DMEM_EINVAL);
  ck_assert_int_eq(dmem_codec_create(NULL, NULL), DMEM_EINVAL);
  ck_assert_int_eq(dmem_codec_create(&c, NULL), 0);
  uint8_t page[DMEM_PAGE_SIZE] = {0}, blob[DMEM_COMPRESS_BOUND];
  size_t len;
  ck_assert_int_eq(dmem_codec_compress(&len, blob, sizeof blob, c, DMEM_CODEC_NONE, page),
                   DMEM_EINVAL);
  ck_assert_int_eq(dmem_codec_compress(&len, blob, sizeof blob, c, (dmem_codec_id)77, page),
                   DMEM_EINVAL);
  ck_assert_int_eq(dmem_codec_compress(NULL, blob, sizeof blob, c, DMEM_CODEC_LZO, page),
                   DMEM_EINVAL);
  ck_assert_int_eq(dmem_codec_decompress(NULL, c, blob, 4), DMEM_EINVAL);
  dmem_codec_destroy(c);
  dmem_codec_destroy(NULL);
}
END_TEST

START_TEST(allocation_failures_are_clean)
{
  /* Fail each allocation in turn; create must fail cleanly, leak nothing. */
  for (long n = 1; n < 16; n++) {
    test_alloc ta;
    test_alloc_init(&ta);
    ta.fail_at = n;
    dmem_codec_options o = DMEM_CODEC_OPTIONS_INIT;
    o.allocator = &ta.hook;
    dmem_codec *c = NULL;
    int rc = dmem_codec_create(&c, &o);
    if (rc == 0) {
      ck_assert_int_lt(ta.allocs, n); /* every allocation done, none failed */
      dmem_codec_destroy(c);
      ck_assert_int_eq(ta.live_bytes, 0);
      return;
    }
    ck_assert_int_eq(rc, DMEM_ENOMEM);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(ta.live_bytes, 0);
  }
  ck_abort_msg("codec creation never succeeded");
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("codec");
  TCase *tc = tcase_create("codec");
  tcase_add_test(tc, names_round_trip);
  tcase_add_test(tc, every_codec_round_trips);
  tcase_add_test(tc, compressible_pages_shrink);
  tcase_add_test(tc, best_keeps_the_smallest);
  tcase_add_test(tc, best_mask_limits_candidates);
  tcase_add_test(tc, default_mask_follows_build);
  tcase_add_test(tc, bad_masks_refused);
  tcase_add_test(tc, missing_codec_is_refused);
  tcase_add_test(tc, short_buffer_is_refused_without_overrun);
  tcase_add_test(tc, malformed_blobs_are_errors);
  tcase_add_test(tc, bad_arguments);
  tcase_add_test(tc, allocation_failures_are_clean);
  suite_add_tcase(s, tc);
  return s;
}
