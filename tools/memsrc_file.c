/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Memory from files: a raw image read as 4 KiB pages, or an ELF core whose
 * PT_LOAD segments hold the memory (their p_filesz bytes; the part of a
 * segment the file does not hold is not memory we can see). A segment that
 * ends inside a page is padded with zeros to a whole page. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diffmem/common.h>

#include "elfcore.h"
#include "memsrc.h"

typedef struct file_src {
  int fd;
  uint64_t size;
  elfcore core; /* nsegs == 0 for a raw image */
  size_t seg;   /* current segment */
  uint64_t pos; /* raw: file offset; ELF: offset within the segment */
} file_src;

memsrc *memsrc__new(const memsrc_ops *ops, const char *name, const char *kind, size_t priv_size,
                    char *err, size_t errlen)
{
  memsrc *s = calloc(1, sizeof *s);
  void *priv = calloc(1, priv_size);
  if (!s || !priv) {
    snprintf(err, errlen, "%s: out of memory", name);
    free(s);
    free(priv);
    return NULL;
  }
  s->ops = ops;
  s->priv = priv;
  snprintf(s->name, sizeof s->name, "%s", name);
  snprintf(s->kind, sizeof s->kind, "%s", kind);
  return s;
}

void memsrc_close(memsrc *s)
{
  if (s)
    s->ops->close(s);
}

/* pread all of len, or -1 with errno (EIO standing for an early end). */
static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = EIO;
      return -1;
    }
    got += (size_t)n;
  }
  return 0;
}

static int elf_read(void *buf, size_t len, uint64_t off, void *ud)
{
  return pread_full(*(int *)ud, buf, len, off);
}

/* Reads n bytes at off, or sets the source's error naming the offset. */
static int read_or_fail(memsrc *s, file_src *f, void *buf, size_t n, uint64_t off)
{
  if (pread_full(f->fd, buf, n, off) == 0)
    return 0;
  if (errno == EIO)
    snprintf(s->err, sizeof s->err,
             "%s: read of %zu bytes at offset %llu failed (file shorter than it was, or an I/O "
             "error)",
             s->name, n, (unsigned long long)off);
  else
    snprintf(s->err, sizeof s->err, "%s: read at offset %llu failed: %s", s->name,
             (unsigned long long)off, strerror(errno));
  return -1;
}

static long raw_read(memsrc *s, uint8_t *buf, size_t max)
{
  file_src *f = s->priv;
  uint64_t left = (f->size - f->pos) / DMEM_PAGE_SIZE;
  size_t n = left < max ? (size_t)left : max;
  if (!n)
    return 0;
  if (read_or_fail(s, f, buf, n * DMEM_PAGE_SIZE, f->pos) != 0)
    return -1;
  f->pos += (uint64_t)n * DMEM_PAGE_SIZE;
  s->done = f->pos;
  return (long)n;
}

static long elf_pages(memsrc *s, uint8_t *buf, size_t max)
{
  file_src *f = s->priv;
  size_t n = 0;
  while (n < max && f->seg < f->core.nsegs) {
    const elfcore_segment *g = &f->core.segs[f->seg];
    if (f->pos >= g->filesz) {
      f->seg++;
      f->pos = 0;
      continue;
    }
    uint64_t left = g->filesz - f->pos;
    uint64_t whole = left / DMEM_PAGE_SIZE;
    size_t k = whole < max - n ? (size_t)whole : max - n;
    size_t bytes = k * DMEM_PAGE_SIZE;
    if (!k) { /* a partial last page */
      bytes = (size_t)left;
      k = 1;
      memset(buf + n * DMEM_PAGE_SIZE + bytes, 0, DMEM_PAGE_SIZE - bytes);
    }
    if (read_or_fail(s, f, buf + n * DMEM_PAGE_SIZE, bytes, g->offset + f->pos) != 0)
      return -1;
    f->pos += bytes;
    s->done += bytes;
    n += k;
  }
  return (long)n;
}

static void file_close(memsrc *s)
{
  file_src *f = s->priv;
  if (f) {
    close(f->fd);
    elfcore_free(&f->core);
    free(f);
  }
  free(s);
}

static const memsrc_ops raw_ops = {raw_read, file_close};
static const memsrc_ops elf_ops = {elf_pages, file_close};

/* The raw image must be whole pages: anything else is a truncated copy. */
static int open_raw(memsrc *s, file_src *f, char *err, size_t errlen)
{
  uint64_t tail = f->size % DMEM_PAGE_SIZE;
  if (tail) {
    snprintf(err, errlen,
             "%s: truncated raw image: %llu bytes is not a whole number of %d-byte pages "
             "(%llu stray bytes at offset %llu)",
             s->name, (unsigned long long)f->size, DMEM_PAGE_SIZE, (unsigned long long)tail,
             (unsigned long long)(f->size - tail));
    return -1;
  }
  s->ops = &raw_ops;
  snprintf(s->kind, sizeof s->kind, "raw");
  s->expected = f->size;
  return 0;
}

static int open_elf(memsrc *s, file_src *f, char *err, size_t errlen)
{
  char why[512];
  int rc = elfcore_parse(&f->core, f->size, elf_read, &f->fd, why, sizeof why);
  if (rc) {
    snprintf(err, errlen, "%s: %s%s", s->name, why,
             strstr(why, "not ET_CORE") ? " (--raw reads any file as a raw image)" : "");
    return -1;
  }
  s->ops = &elf_ops;
  snprintf(s->kind, sizeof s->kind, "elf");
  for (size_t i = 0; i < f->core.nsegs; i++)
    s->expected += f->core.segs[i].filesz;
  return 0;
}

int memsrc_open_file(memsrc **out, const char *path, int force_raw, char *err, size_t errlen)
{
  memsrc *s = memsrc__new(&raw_ops, path, "raw", sizeof(file_src), err, errlen);
  if (!s)
    return -1;
  file_src *f = s->priv;
  f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not hang */
  struct stat st;
  int rc = -1;
  uint8_t head[16];
  if (f->fd < 0)
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
  else if (fstat(f->fd, &st) != 0)
    snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    snprintf(err, errlen, "%s: not a regular file", path);
  else {
    f->size = (uint64_t)st.st_size;
    size_t n = f->size < sizeof head ? (size_t)f->size : sizeof head;
    if (pread_full(f->fd, head, n, 0) != 0)
      snprintf(err, errlen, "%s: read at offset 0 failed: %s", path, strerror(errno));
    else if (!force_raw && n >= 12 &&
             (memcmp(head, "KDUMP   ", 8) == 0 || memcmp(head, "makedumpfile", 12) == 0))
      snprintf(err, errlen,
               "%s: a kdump-compressed dump, which diffmem does not read: dump "
               "with `virsh dump --memory-only --format elf` (or --raw to read it as pages)",
               path);
    else if (!force_raw && elfcore_is_elf(head, n))
      rc = open_elf(s, f, err, errlen);
    else
      rc = open_raw(s, f, err, errlen);
  }
  if (rc) {
    if (f->fd >= 0)
      close(f->fd);
    elfcore_free(&f->core);
    free(f);
    free(s);
    return -1;
  }
  *out = s;
  return 0;
}
