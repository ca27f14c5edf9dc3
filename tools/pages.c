/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <diffmem/common.h>

#include "pages.h"

static int grow(page_set *set, size_t need)
{
  if (need <= set->cap)
    return 0;
  size_t cap = set->cap ? set->cap : 256;
  while (cap < need)
    cap *= 2;
  uint8_t *d = realloc(set->data, cap * DMEM_PAGE_SIZE);
  if (!d)
    return -1;
  set->data = d;
  set->cap = cap;
  return 0;
}

int page_set_load(page_set *set, const char *path)
{
  /* O_NONBLOCK: a FIFO must not hang the open; refused below anyway. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    fprintf(stderr, "diffmem: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    fprintf(stderr, "diffmem: %s: not a regular file\n", path);
    close(fd);
    return -1;
  }
  size_t whole = (size_t)st.st_size / DMEM_PAGE_SIZE;
  if ((size_t)st.st_size % DMEM_PAGE_SIZE)
    fprintf(stderr, "diffmem: %s: ignoring %zu trailing bytes at offset %zu (not a whole page)\n",
            path, (size_t)st.st_size % DMEM_PAGE_SIZE, whole * DMEM_PAGE_SIZE);
  if (whole == 0) {
    fprintf(stderr, "diffmem: %s: not a single whole 4 KiB page\n", path);
    close(fd);
    return -1;
  }
  if (grow(set, set->npages + whole) != 0) {
    fprintf(stderr, "diffmem: %s: out of memory for %zu pages\n", path, whole);
    close(fd);
    return -1;
  }
  uint8_t *dst = set->data + set->npages * DMEM_PAGE_SIZE;
  size_t want = whole * DMEM_PAGE_SIZE, got = 0;
  while (got < want) {
    ssize_t n = read(fd, dst + got, want - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      fprintf(stderr, "diffmem: %s: read failed at offset %zu: %s\n", path, got,
              n < 0 ? strerror(errno) : "unexpected end of file");
      close(fd);
      return -1;
    }
    got += (size_t)n;
  }
  close(fd);
  set->npages += whole;
  return 0;
}

void page_set_free(page_set *set)
{
  free(set->data);
  memset(set, 0, sizeof *set);
}

double now_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
