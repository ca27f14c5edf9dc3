/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the ELF core parser of diffmem analyze on any file must
 * return an error or segments that lie inside the file, never crash, read
 * out of bounds or ask for bytes past the end. Every segment it returns is
 * then read whole, as diffmem analyze would. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/elfcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct buf {
  const uint8_t *data;
  size_t size;
} buf;

static int read_buf(void *out, size_t len, uint64_t off, void *ud)
{
  const buf *b = ud;
  if (off > b->size || b->size - off < len)
    abort(); /* the parser promised never to ask past the end */
  memcpy(out, b->data + off, len);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  buf b = {data, size};
  elfcore core;
  char err[512];
  int rc = elfcore_parse(&core, size, read_buf, &b, err, sizeof err);
  if (rc != 0) {
    if (core.segs || core.nsegs || !memchr(err, 0, sizeof err))
      abort();
    if (rc == ELFCORE_MALFORMED && strncmp(err, "malformed ELF core at offset ", 29) != 0)
      abort();
    return 0;
  }
  uint8_t page[4096];
  for (size_t i = 0; i < core.nsegs; i++) {
    const elfcore_segment *s = &core.segs[i];
    if (s->offset > size || size - s->offset < s->filesz || s->filesz > s->memsz)
      abort();
    for (uint64_t at = 0; at < s->filesz; at += sizeof page) {
      size_t n = s->filesz - at < sizeof page ? (size_t)(s->filesz - at) : sizeof page;
      read_buf(page, n, s->offset + at, &b);
    }
  }
  elfcore_free(&core);
  return 0;
}
