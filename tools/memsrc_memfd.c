/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Guest RAM that a VMM maps shared, and what Linux KSM does now.
 *
 * A VMM that keeps guest RAM in a memfd mapped shared (QEMU's
 * memory-backend-memfd with share=on, which vhost-user and diffmemd need;
 * cloud-hypervisor's shared memory) holds it in no process's private
 * memory, so the survey of processes misses it. memsrc_list_memfds()
 * finds every memfd some process maps shared and writable, once each
 * however many processes map it; memsrc_open_memfd() reads its resident
 * pages. mincore() on a read-only mapping of its own, which is never
 * touched, says which pages are in memory (holes and swapped pages are
 * left out), and pread() reads them. Never through the mapping: a read
 * fault on a hole would put a page of zeros into the memfd, where diffmemd
 * had punched out a page it keeps elsewhere, and the VMM's next touch
 * would find zeros instead of faulting to the daemon. pread() of a hole
 * (evicted since mincore()) allocates nothing and reads zeros.
 *
 * KSM merges only private anonymous memory that is MADV_MERGEABLE: never
 * a memfd mapped shared. /proc/PID/ksm_merging_pages says how many pages
 * of a process it merges; /sys/kernel/mm/ksm what it saves in all. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diffmem/common.h>

#include "memsrc.h"

#define PAGE DMEM_PAGE_SIZE

/* Whether the memfd (dev, ino) is in v already. */
static int seen(const memsrc_memfd *v, size_t n, uint64_t dev, uint64_t ino)
{
  for (size_t i = 0; i < n; i++)
    if (v[i].dev == dev && v[i].ino == ino)
      return 1;
  return 0;
}

/* Adds the shared writable memfd mappings of pid to *v. */
static int scan_pid(memsrc_memfd **v, size_t *n, size_t *cap, pid_t pid)
{
  char path[64], line[4096];
  snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return 0; /* gone, or not ours to read */
  int rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    uint64_t lo, hi, ino;
    unsigned maj, min;
    char perms[8] = "", name[4096] = "";
    if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*s %x:%x %" SCNu64 " %4095[^\n]", &lo, &hi,
               perms, &maj, &min, &ino, name) < 7)
      continue;
    if (perms[1] != 'w' || perms[3] != 's' || strncmp(name, "/memfd:", 7) != 0)
      continue;
    uint64_t dev = (uint64_t)maj << 32 | min;
    if (seen(*v, *n, dev, ino))
      continue;
    if (*n == *cap) {
      size_t c = *cap ? *cap * 2 : 16;
      memsrc_memfd *nv = realloc(*v, c * sizeof *nv);
      if (!nv) {
        rc = -1;
        break;
      }
      *v = nv;
      *cap = c;
    }
    memsrc_memfd *m = &(*v)[(*n)++];
    memset(m, 0, sizeof *m);
    m->pid = pid;
    m->lo = lo;
    m->hi = hi;
    m->dev = dev;
    m->ino = ino;
    /* "/memfd:memory-backend-memfd (deleted)" -> "memory-backend-memfd" */
    const char *s = name + 7;
    size_t len = strlen(s);
    if (len >= 10 && strcmp(s + len - 10, " (deleted)") == 0)
      len -= 10;
    snprintf(m->name, sizeof m->name, "%.*s", (int)len, s);
  }
  fclose(f);
  return rc;
}

int memsrc_list_memfds(memsrc_memfd **out, size_t *n, const pid_t *pids, size_t npids)
{
  *out = NULL;
  *n = 0;
  size_t cap = 0;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < npids; i++)
    rc = scan_pid(out, n, &cap, pids[i]);
  if (rc) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return rc;
}

typedef struct memfd_src {
  int fd;
  const uint8_t *map; /* for mincore() only: never read */
  size_t size;        /* bytes mapped: the file, rounded down to pages */
  size_t off;         /* next byte to look at */
  uint8_t *core;      /* mincore() of one window */
} memfd_src;

enum { WINDOW = 4096 }; /* pages per mincore() call */

static long memfd_read(memsrc *s, uint8_t *buf, size_t max)
{
  memfd_src *m = s->priv;
  size_t got = 0;
  while (got < max && m->off < m->size) {
    size_t pages = (m->size - m->off) / PAGE;
    if (pages > WINDOW)
      pages = WINDOW;
    if (pages > max - got)
      pages = max - got;
    if (mincore((void *)(m->map + m->off), pages * PAGE, m->core) != 0) {
      snprintf(s->err, sizeof s->err, "%s: mincore: %s", s->name, strerror(errno));
      return -1;
    }
    for (size_t i = 0; i < pages; i++) {
      if (!(m->core[i] & 1))
        continue;
      off_t at = (off_t)(m->off + i * PAGE);
      ssize_t k = pread(m->fd, buf + got * PAGE, PAGE, at);
      if (k != (ssize_t)PAGE) {
        snprintf(s->err, sizeof s->err, "%s: reading at %lld: %s", s->name, (long long)at,
                 k < 0 ? strerror(errno) : "short read (the file shrank)");
        return -1;
      }
      got++;
    }
    m->off += pages * PAGE;
    s->done = m->off;
  }
  return (long)got;
}

static void memfd_close(memsrc *s)
{
  memfd_src *m = s->priv;
  if (m) {
    if (m->map)
      munmap((void *)m->map, m->size);
    if (m->fd >= 0)
      close(m->fd);
    free(m->core);
  }
  free(m);
  free(s);
}

static const memsrc_ops memfd_ops = {memfd_read, memfd_close};

int memsrc_open_memfd(memsrc **out, const memsrc_memfd *mf, const char *name, char *err,
                      size_t errlen)
{
  memsrc *s = memsrc__new(&memfd_ops, name, "memfd", sizeof(memfd_src), err, errlen);
  if (!s)
    return -1;
  memfd_src *m = s->priv;
  m->fd = -1;
  /* The file behind the mapping (needs CAP_SYS_ADMIN, as reading another
   * user's process does anyway). */
  char path[96];
  snprintf(path, sizeof path, "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)mf->pid, mf->lo,
           mf->hi);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open %s: %s", name, path, strerror(errno));
  } else if (fstat(fd, &st) != 0 || (uint64_t)st.st_ino != mf->ino) {
    snprintf(err, errlen, "%s: the mapping changed while it was looked at", name);
  } else if ((m->size = (size_t)st.st_size / PAGE * PAGE) == 0) {
    m->fd = fd;
    *out = s; /* nothing in it: an input with no pages */
    return 0;
  } else if ((m->map = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED) {
    m->map = NULL;
    snprintf(err, errlen, "%s: mmap: %s", name, strerror(errno));
  } else if (!(m->core = malloc(WINDOW))) {
    snprintf(err, errlen, "%s: out of memory", name);
  } else {
    s->expected = m->size;
    m->fd = fd;
    *out = s;
    return 0;
  }
  if (fd >= 0)
    close(fd);
  memfd_close(s);
  return -1;
}

int memsrc_read_u64(uint64_t *out, const char *path)
{
  FILE *f = fopen(path, "re");
  int ok = f && fscanf(f, "%" SCNu64, out) == 1;
  if (f)
    fclose(f);
  return ok ? 0 : -1;
}

long memsrc_ksm_merging_pages(pid_t pid)
{
  char path[64];
  uint64_t v;
  snprintf(path, sizeof path, "/proc/%d/ksm_merging_pages", (int)pid);
  return memsrc_read_u64(&v, path) == 0 ? (long)v : -1;
}

void memsrc_ksm_state(int *present, long *run, uint64_t *pages_shared, uint64_t *pages_sharing,
                      uint64_t *merging_pages)
{
  uint64_t r = 0;
  *present = memsrc_read_u64(&r, "/sys/kernel/mm/ksm/run") == 0;
  *run = *present ? (long)r : -1;
  *pages_shared = *pages_sharing = *merging_pages = 0;
  if (!*present)
    return;
  (void)memsrc_read_u64(pages_shared, "/sys/kernel/mm/ksm/pages_shared");
  (void)memsrc_read_u64(pages_sharing, "/sys/kernel/mm/ksm/pages_sharing");
  pid_t *pids;
  size_t n;
  if (memsrc_list_processes(&pids, &n) != 0)
    return;
  for (size_t i = 0; i < n; i++) {
    long k = memsrc_ksm_merging_pages(pids[i]);
    if (k > 0)
      *merging_pages += (uint64_t)k;
  }
  free(pids);
}
