/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Page codecs behind one interface, driven by one table (codec_impl.h).
 *
 * A blob is one header byte, the dmem_codec_id of the codec that made it,
 * followed by that codec's stream. The header makes blobs self-describing,
 * so a store can mix codecs (the best-of mode does) and a decoder never
 * guesses. Every decoder is handed the exact stream length and a 4 KiB
 * output, and a stream only counts as valid when it decodes to exactly
 * DMEM_PAGE_SIZE bytes and is consumed whole.
 *
 * WKdm is ours (wkdm.c). LZO1X-1, LZ4 and zstd come from their libraries
 * when configure found them (codec_lzo.c, codec_lz4.c, codec_zstd.c). A
 * context holds each built codec's working state, allocated through the
 * caller's allocator where the codec's library lets it.
 */
#include "config.h"

#include <string.h>

#include <diffmem/codec.h>

#include "codec_impl.h"
#include "internal.h"

/* Every codec this library knows, built in or not, in the order the
 * best-of mode tries them: the fast ones first (on a tie the first wins). */
static const dmem__codec_impl *const codecs[] = {&dmem__codec_wkdm, &dmem__codec_lz4,
                                                 &dmem__codec_lzo, &dmem__codec_zstd};
#define NCODECS (sizeof codecs / sizeof codecs[0])

struct dmem_codec {
  dmem__alloc alloc;
  void *state[NCODECS]; /* each codec's, as codecs[] */
  unsigned best_mask;
  /* Codecs that can overrun a short buffer write here first. */
  uint8_t scratch[DMEM__STREAM_BOUND] __attribute__((aligned(16)));
  uint8_t best[DMEM__STREAM_BOUND] __attribute__((aligned(16)));
};

/* The table's place of codec id, or -1 (DMEM_CODEC_BEST too). */
static int slot_of(unsigned id)
{
  for (unsigned i = 0; i < NCODECS; i++)
    if ((unsigned)codecs[i]->id == id)
      return (int)i;
  return -1;
}

static const dmem__codec_impl *impl_of(unsigned id)
{
  int i = slot_of(id);
  return i < 0 ? NULL : codecs[i];
}

unsigned dmem_codec_default_mask(void)
{
  /* zstd at level 1 alone: on real guest pages it writes fewer bytes than
   * zlib at level 1 and decodes as fast as LZO (bench/README.md, "The
   * default codec"), and WKdm beside it wins too few pages to pay for
   * trying it. Without libzstd, the paper's pair, or WKdm with LZ4 where
   * liblzo2 is missing too. */
  if (dmem__codec_zstd.built)
    return 1u << DMEM_CODEC_ZSTD;
  unsigned lz = dmem__codec_lzo.built   ? 1u << DMEM_CODEC_LZO
                : dmem__codec_lz4.built ? 1u << DMEM_CODEC_LZ4
                                        : 0;
  return (1u << DMEM_CODEC_WKDM) | lz;
}

int dmem_codec_available(dmem_codec_id id)
{
  if (id == DMEM_CODEC_BEST)
    return 1;
  const dmem__codec_impl *k = impl_of((unsigned)id);
  return k && k->built;
}

const char *dmem_codec_name(dmem_codec_id id)
{
  if (id == DMEM_CODEC_BEST)
    return "best";
  const dmem__codec_impl *k = impl_of((unsigned)id);
  return k ? k->name : NULL;
}

int dmem_codec_from_name(dmem_codec_id *out, const char *name)
{
  if (!out || !name)
    return DMEM_EINVAL;
  dmem_codec_id id = DMEM_CODEC_NONE;
  if (strcmp(name, "best") == 0)
    id = DMEM_CODEC_BEST;
  for (unsigned i = 0; i < NCODECS && id == DMEM_CODEC_NONE; i++)
    if (strcmp(codecs[i]->name, name) == 0)
      id = codecs[i]->id;
  if (id == DMEM_CODEC_NONE)
    return DMEM_ENOENT;
  if (!dmem_codec_available(id))
    return DMEM_ENOTSUP;
  *out = id;
  return 0;
}

dmem_codec_id dmem_codec_of_blob(const void *blob, size_t blob_len)
{
  if (!blob || blob_len == 0)
    return DMEM_CODEC_NONE;
  unsigned id = ((const uint8_t *)blob)[0];
  return impl_of(id) ? (dmem_codec_id)id : DMEM_CODEC_NONE;
}

int dmem_codec_create(dmem_codec **out, const dmem_codec_options *opts)
{
  static const dmem_codec_options defaults = DMEM_CODEC_OPTIONS_INIT;
  if (!out)
    return DMEM_EINVAL;
  if (!opts)
    opts = &defaults;
  if (opts->version != DMEM_CODEC_OPTIONS_VERSION)
    return DMEM_EVERSION;
  if (opts->zstd_level < 1 || opts->zstd_level > 19 || !dmem__alloc_valid(opts->allocator))
    return DMEM_EINVAL;
  /* Bits of no codec are a mistake; a mask of codecs this build lacks
   * would make every compression fail. */
  unsigned known = 0, built = 0;
  for (unsigned i = 0; i < NCODECS; i++) {
    known |= 1u << codecs[i]->id;
    built |= codecs[i]->built ? 1u << codecs[i]->id : 0;
  }
  if (opts->best_mask & ~known)
    return DMEM_EINVAL;
  if (opts->best_mask && !(opts->best_mask & built))
    return DMEM_ENOTSUP;

  dmem__alloc a;
  dmem__alloc_init(&a, opts->allocator);
  dmem_codec *c = dmem__malloc_aligned(&a, sizeof *c, 64);
  if (!c)
    return DMEM_ENOMEM;
  memset(c, 0, offsetof(dmem_codec, scratch));
  c->alloc = a;
  c->best_mask = opts->best_mask;
  for (unsigned i = 0; i < NCODECS; i++) {
    int rc = codecs[i]->built && codecs[i]->init ? codecs[i]->init(&c->state[i], &a, opts) : 0;
    if (rc) {
      dmem_codec_destroy(c);
      return rc;
    }
  }
  *out = c;
  return 0;
}

void dmem_codec_destroy(dmem_codec *c)
{
  if (!c)
    return;
  dmem__alloc a = c->alloc;
  for (unsigned i = 0; i < NCODECS; i++)
    if (c->state[i] && codecs[i]->fini)
      codecs[i]->fini(c->state[i], &a);
  dmem__free(&a, c, sizeof *c);
}

/* Compresses with the codec of slot i into dst (DMEM__STREAM_BOUND bytes
 * of room). Returns the stream length, or a negative error. */
static int stream_compress(dmem_codec *c, unsigned i, uint8_t *dst, const void *page)
{
  return codecs[i]->compress(c->state[i], dst, DMEM__STREAM_BOUND, page);
}

/* The best-of mode tries every codec it may; all of them, since the
 * smallest output is the point. */
static int best_compress(dmem_codec *c, dmem_codec_id *won, const void *page)
{
  int best_len = -1;
  for (unsigned i = 0; i < NCODECS; i++) {
    dmem_codec_id id = codecs[i]->id;
    if (!codecs[i]->built || (c->best_mask && !(c->best_mask & (1u << id))))
      continue;
    int n = stream_compress(c, i, c->scratch, page);
    if (n > 0 && (best_len < 0 || n < best_len)) {
      best_len = n;
      *won = id;
      memcpy(c->best, c->scratch, (size_t)n);
    }
  }
  return best_len < 0 ? DMEM_ENOTSUP : best_len;
}

int dmem_codec_compress(size_t *out_len, void *out, size_t out_cap, dmem_codec *c,
                        dmem_codec_id id, const void *page)
{
  if (!out_len || !out || !c || !page)
    return DMEM_EINVAL;
  int slot = slot_of((unsigned)id);
  if (id != DMEM_CODEC_BEST && slot < 0)
    return DMEM_EINVAL;
  if (!dmem_codec_available(id))
    return DMEM_ENOTSUP;
  if (out_cap < 2)
    return DMEM_ETOOBIG;

  uint8_t *o = out;
  const uint8_t *stream;
  int n;
  if (id == DMEM_CODEC_BEST) {
    n = best_compress(c, &id, page);
    stream = c->best;
  } else if (out_cap >= DMEM_COMPRESS_BOUND) {
    /* Room for the worst case: compress in place, no copy. */
    n = stream_compress(c, (unsigned)slot, o + 1, page);
    stream = o + 1;
  } else {
    n = stream_compress(c, (unsigned)slot, c->scratch, page);
    stream = c->scratch;
  }
  if (n < 0)
    return n;
  if ((size_t)n + 1 > out_cap)
    return DMEM_ETOOBIG;
  if (stream != o + 1)
    memcpy(o + 1, stream, (size_t)n);
  o[0] = (uint8_t)id;
  *out_len = (size_t)n + 1;
  return 0;
}

int dmem_codec_decompress(void *page, dmem_codec *c, const void *blob, size_t blob_len)
{
  if (!page || !c || !blob)
    return DMEM_EINVAL;
  if (blob_len < 2)
    return DMEM_ETRUNC;
  int slot = slot_of(((const uint8_t *)blob)[0]);
  if (slot < 0)
    return DMEM_ECORRUPT;
  if (!codecs[slot]->built)
    return DMEM_ENOTSUP;
  return codecs[slot]->decompress(c->state[slot], page, (const uint8_t *)blob + 1, blob_len - 1);
}
