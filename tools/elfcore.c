/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* ELF core parser: the PT_LOAD segments, every field checked before use.
 *
 * Invariants: no read is issued past file_size; every multiplication and
 * addition on file values is checked for overflow (file values are 64-bit
 * and untrusted); the segment table is sized by the program header count,
 * which is itself bounded by the file size, so a hostile count cannot ask
 * for more memory than the file holds. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elfcore.h"

/* The largest program header table read (see read_header). */
#define ELF_MAX_PHTAB ((uint64_t)64 << 20)

enum { ET_CORE = 4, PT_LOAD = 1, PN_XNUM = 0xffff };

static uint16_t le16(const uint8_t *p)
{
  return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
  return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* A 32- or 64-bit address-sized field. */
static uint64_t word(const uint8_t *p, int is64)
{
  return is64 ? le64(p) : le32(p);
}

static int fail(char *err, size_t errlen, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, uint64_t off, const char *fmt, ...)
{
  int n = snprintf(err, errlen, "malformed ELF core at offset %llu: ", (unsigned long long)off);
  if (n >= 0 && (size_t)n < errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return ELFCORE_MALFORMED;
}

static int read_at(void *buf, size_t len, uint64_t off, elfcore_read_fn read, void *ud, char *err,
                   size_t errlen)
{
  if (read(buf, len, off, ud) == 0)
    return 0;
  snprintf(err, errlen, "read of %zu bytes at offset %llu failed: %s", len, (unsigned long long)off,
           strerror(errno));
  return ELFCORE_READ;
}

int elfcore_is_elf(const void *head, size_t n)
{
  return n >= 4 && memcmp(head, "\177ELF", 4) == 0;
}

typedef struct ehdr {
  int is64;
  uint64_t phoff, shoff;
  uint32_t phnum;
  uint16_t phentsize, shentsize, machine;
} ehdr;

/* The real program header count when e_phnum is PN_XNUM: sh_info of
 * section header 0. */
static int extended_phnum(ehdr *h, uint64_t size, elfcore_read_fn read, void *ud, char *err,
                          size_t errlen)
{
  size_t shsize = h->is64 ? 64 : 40, info = h->is64 ? 44 : 28;
  uint8_t sh[64];
  if (h->shoff == 0 || h->shoff > size || size - h->shoff < shsize)
    return fail(err, errlen, h->is64 ? 40 : 32,
                "e_phnum is PN_XNUM but section header 0 (e_shoff %llu) is not in the file",
                (unsigned long long)h->shoff);
  if (h->shentsize < shsize)
    return fail(err, errlen, h->is64 ? 58 : 46, "e_shentsize %u is smaller than %zu", h->shentsize,
                shsize);
  int rc = read_at(sh, shsize, h->shoff, read, ud, err, errlen);
  if (rc)
    return rc;
  h->phnum = le32(sh + info);
  return 0;
}

static int parse_ehdr(ehdr *h, uint64_t size, elfcore_read_fn read, void *ud, char *err,
                      size_t errlen)
{
  uint8_t e[64];
  if (size < 16)
    return size >= 4 ? fail(err, errlen, size, "truncated ELF identification (%llu bytes)",
                            (unsigned long long)size)
                     : ELFCORE_NOTELF;
  int rc = read_at(e, 16, 0, read, ud, err, errlen);
  if (rc)
    return rc;
  if (!elfcore_is_elf(e, 16))
    return ELFCORE_NOTELF;
  if (e[4] != 1 && e[4] != 2)
    return fail(err, errlen, 4, "unknown ELF class %u", e[4]);
  if (e[5] != 1)
    return fail(err, errlen, 5, "ELF data encoding %u is not little-endian (1)", e[5]);
  h->is64 = e[4] == 2;
  size_t esize = h->is64 ? 64 : 52;
  if (size < esize)
    return fail(err, errlen, size, "truncated ELF header: needs %zu bytes, the file has %llu",
                esize, (unsigned long long)size);
  rc = read_at(e, esize, 0, read, ud, err, errlen);
  if (rc)
    return rc;
  uint16_t type = le16(e + 16);
  if (type != ET_CORE)
    return fail(err, errlen, 16, "e_type %u is not ET_CORE (4): not a core file", type);
  h->machine = le16(e + 18);
  h->phoff = word(e + (h->is64 ? 32 : 28), h->is64);
  h->shoff = word(e + (h->is64 ? 40 : 32), h->is64);
  size_t b = h->is64 ? 54 : 42; /* e_phentsize, e_phnum, e_shentsize */
  h->phentsize = le16(e + b);
  h->phnum = le16(e + b + 2);
  h->shentsize = le16(e + b + 4);
  if (h->phnum == PN_XNUM) {
    rc = extended_phnum(h, size, read, ud, err, errlen);
    if (rc)
      return rc;
  }
  size_t phsize = h->is64 ? 56 : 32;
  if (h->phnum && h->phentsize < phsize)
    return fail(err, errlen, b, "e_phentsize %u is smaller than a program header (%zu)",
                h->phentsize, phsize);
  /* Bounds that hold for any real core, so that a header cannot make this
   * read gigabytes of a sparse file: entries padded at most 4 times, and a
   * table of at most 64 MiB (over a million segments). */
  if (h->phnum && h->phentsize > 4 * phsize)
    return fail(err, errlen, b, "e_phentsize %u is over 4 times a program header (%zu)",
                h->phentsize, phsize);
  if ((uint64_t)h->phnum * h->phentsize > ELF_MAX_PHTAB)
    return fail(err, errlen, b + 2, "%u program headers of %u bytes: a table over %u MiB", h->phnum,
                h->phentsize, (unsigned)(ELF_MAX_PHTAB >> 20));
  if (h->phnum && (h->phoff > size || (size - h->phoff) / h->phentsize < h->phnum))
    return fail(err, errlen, h->is64 ? 32 : 28,
                "%u program headers of %u bytes at e_phoff %llu run past the end of the file "
                "(%llu bytes)",
                h->phnum, h->phentsize, (unsigned long long)h->phoff, (unsigned long long)size);
  return 0;
}

static int parse_phdr(elfcore_segment *s, int *is_load, const uint8_t *p, const ehdr *h,
                      uint64_t at, uint32_t i, uint64_t size, char *err, size_t errlen)
{
  *is_load = le32(p) == PT_LOAD;
  if (!*is_load)
    return 0;
  s->phdr_offset = at;
  if (h->is64) {
    s->offset = le64(p + 8);
    s->vaddr = le64(p + 16);
    s->paddr = le64(p + 24);
    s->filesz = le64(p + 32);
    s->memsz = le64(p + 40);
  } else {
    s->offset = le32(p + 4);
    s->vaddr = le32(p + 8);
    s->paddr = le32(p + 12);
    s->filesz = le32(p + 16);
    s->memsz = le32(p + 20);
  }
  if (s->filesz > s->memsz)
    return fail(err, errlen, at, "program header %u: p_filesz %llu is larger than p_memsz %llu", i,
                (unsigned long long)s->filesz, (unsigned long long)s->memsz);
  if (s->offset > size || size - s->offset < s->filesz)
    return fail(err, errlen, at,
                "program header %u: segment of %llu bytes at file offset %llu runs past the end "
                "of the file (%llu bytes): truncated?",
                i, (unsigned long long)s->filesz, (unsigned long long)s->offset,
                (unsigned long long)size);
  return 0;
}

int elfcore_parse(elfcore *out, uint64_t file_size, elfcore_read_fn read, void *ud, char *err,
                  size_t errlen)
{
  memset(out, 0, sizeof *out);
  if (errlen)
    err[0] = 0;
  ehdr h;
  memset(&h, 0, sizeof h);
  int rc = parse_ehdr(&h, file_size, read, ud, err, errlen);
  if (rc)
    return rc;
  if (h.phnum == 0)
    return fail(err, errlen, h.is64 ? 56 : 44,
                "no program headers: a core has its memory in "
                "PT_LOAD segments");
  /* Bounded by the file size through the check in parse_ehdr(). */
  size_t tab = (size_t)h.phnum * h.phentsize;
  uint8_t *ph = malloc(tab);
  elfcore_segment *segs = calloc(h.phnum, sizeof *segs);
  if (!ph || !segs) {
    free(ph);
    free(segs);
    snprintf(err, errlen, "out of memory for %u program headers", h.phnum);
    return ELFCORE_NOMEM;
  }
  rc = read_at(ph, tab, h.phoff, read, ud, err, errlen);
  size_t n = 0;
  for (uint32_t i = 0; !rc && i < h.phnum; i++) {
    int is_load;
    uint64_t at = h.phoff + (uint64_t)i * h.phentsize;
    rc = parse_phdr(&segs[n], &is_load, ph + (size_t)i * h.phentsize, &h, at, i, file_size, err,
                    errlen);
    n += !rc && is_load;
  }
  free(ph);
  if (rc) {
    free(segs);
    return rc;
  }
  out->segs = segs;
  out->nsegs = n;
  out->elf_class = h.is64 ? 64 : 32;
  out->machine = h.machine;
  return 0;
}

void elfcore_free(elfcore *core)
{
  free(core->segs);
  memset(core, 0, sizeof *core);
}
