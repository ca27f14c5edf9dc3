/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The page codecs behind diffmem/codec.h, as one table (codec.c). Each
 * codec is an entry defined in a file of its own (wkdm.c, codec_lzo.c,
 * codec_lz4.c, codec_zstd.c), which holds all the codec knows; codec.c
 * adds the blob header, the context and the best-of mode, and knows no
 * codec by name. Adding a codec: its dmem_codec_id (diffmem/codec.h), a
 * file that defines its entry, and the entry in codec.c's table. */
#ifndef DMEM_CODEC_IMPL_H
#define DMEM_CODEC_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/codec.h>

#include "internal.h"

/* Room a codec is given for one page's stream: the blob bound less the
 * header byte. No codec's worst case passes it. */
#define DMEM__STREAM_BOUND (DMEM_COMPRESS_BOUND - 1)

typedef struct dmem__codec_impl {
  dmem_codec_id id;
  const char *name;
  /* 0: configure did not find the codec's library; the entry is then only
   * a name (dmem_codec_from_name() says DMEM_ENOTSUP), and the functions
   * below are NULL. */
  int built;
  /* Working state of one context, allocated through a (NULL: none, and
   * state stays NULL): 0, or DMEM_ENOMEM / DMEM_ENOTSUP. */
  int (*init)(void **state, const dmem__alloc *a, const dmem_codec_options *opts);
  void (*fini)(void *state, const dmem__alloc *a);
  /* One DMEM_PAGE_SIZE page (any alignment) into dst, which has cap bytes
   * of room (at least DMEM__STREAM_BOUND): the stream's length (> 0), or a
   * negative DMEM_E* code. */
  int (*compress)(void *state, uint8_t *dst, size_t cap, const void *page);
  /* A page from a stream of exactly len bytes: 0, or DMEM_ECORRUPT /
   * DMEM_ETRUNC for a malformed stream; never reads past in + len nor
   * writes past page + DMEM_PAGE_SIZE. */
  int (*decompress)(void *state, void *page, const uint8_t *in, size_t len);
} dmem__codec_impl;

extern const dmem__codec_impl dmem__codec_wkdm;
extern const dmem__codec_impl dmem__codec_lzo;
extern const dmem__codec_impl dmem__codec_lz4;
extern const dmem__codec_impl dmem__codec_zstd;

#endif
