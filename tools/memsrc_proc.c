/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Memory of a live process: the resident pages of its readable mappings.
 *
 * /proc/PID/maps lists the mappings, /proc/PID/pagemap says which pages are
 * resident (bit 63; a swapped or never-touched page is left out, so reading
 * never faults memory in), and /proc/PID/mem reads them. The process keeps
 * running: the pages are a walk over moving memory, not a snapshot.
 * Mappings the kernel will not let us read ([vvar], [vsyscall], device
 * memory) are left out and counted in src->skipped. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <diffmem/common.h>

#include "memsrc.h"

typedef struct range {
  uint64_t lo, hi;
} range;

typedef struct proc_src {
  pid_t pid;
  int mem, pagemap;
  range *r;
  size_t nr, cur;
  uint64_t addr; /* next address in r[cur] */
} proc_src;

static void proc_close(memsrc *s)
{
  proc_src *p = s->priv;
  if (p) {
    if (p->mem >= 0)
      close(p->mem);
    if (p->pagemap >= 0)
      close(p->pagemap);
    free(p->r);
    free(p);
  }
  free(s);
}

static int gone(memsrc *s, proc_src *p, int err)
{
  if (err == ESRCH || err == 0 || kill(p->pid, 0) != 0)
    snprintf(s->err, sizeof s->err, "%s: the process exited while it was being read", s->name);
  else
    snprintf(s->err, sizeof s->err, "%s: reading its memory failed: %s", s->name, strerror(err));
  return -1;
}

/* Reads the resident pages among the next n pages at p->addr. */
static long read_run(memsrc *s, proc_src *p, uint8_t *buf, size_t n)
{
  uint64_t ent[256];
  if (n > 256)
    n = 256;
  ssize_t got = pread(p->pagemap, ent, n * 8, (off_t)(p->addr / DMEM_PAGE_SIZE * 8));
  if (got <= 0)
    return gone(s, p, got < 0 ? errno : 0);
  n = (size_t)got / 8;
  size_t out = 0;
  for (size_t i = 0; i < n; i++) {
    if (!(ent[i] >> 63 & 1))
      continue;
    uint64_t a = p->addr + i * DMEM_PAGE_SIZE;
    ssize_t r = pread(p->mem, buf + out * DMEM_PAGE_SIZE, DMEM_PAGE_SIZE, (off_t)a);
    if (r == DMEM_PAGE_SIZE)
      out++;
    else if (r < 0 && (errno == EIO || errno == EFAULT))
      s->skipped++; /* not readable through mem: leave it out */
    else if (r < 0 && errno == EINTR)
      i--;
    else
      return gone(s, p, r < 0 ? errno : 0);
  }
  p->addr += n * DMEM_PAGE_SIZE;
  s->done += n * DMEM_PAGE_SIZE;
  return (long)out;
}

static long proc_read(memsrc *s, uint8_t *buf, size_t max)
{
  proc_src *p = s->priv;
  while (p->cur < p->nr) {
    const range *r = &p->r[p->cur];
    if (p->addr < r->lo)
      p->addr = r->lo;
    if (p->addr >= r->hi) {
      p->cur++;
      continue;
    }
    size_t n = (size_t)((r->hi - p->addr) / DMEM_PAGE_SIZE);
    long got = read_run(s, p, buf, n < max ? n : max);
    if (got != 0)
      return got;
  }
  return 0;
}

static const memsrc_ops proc_ops = {proc_read, proc_close};

static int want_mapping(const char *perms, const char *path, const memsrc_pid_options *o)
{
  if (perms[0] != 'r')
    return 0;
  if (o->writable_only && perms[1] != 'w')
    return 0;
  if (o->private_only && perms[3] != 'p')
    return 0;
  /* The kernel refuses reads of these through /proc/PID/mem. */
  return strcmp(path, "[vvar]") != 0 && strcmp(path, "[vsyscall]") != 0;
}

static int add_range(proc_src *p, size_t *cap, uint64_t lo, uint64_t hi)
{
  if (p->nr == *cap) {
    size_t c = *cap ? *cap * 2 : 64;
    range *r = realloc(p->r, c * sizeof *r);
    if (!r)
      return -1;
    p->r = r;
    *cap = c;
  }
  p->r[p->nr++] = (range){lo, hi};
  return 0;
}

static int read_maps(memsrc *s, proc_src *p, const memsrc_pid_options *o, char *err, size_t errlen)
{
  char path[64], line[4096];
  snprintf(path, sizeof path, "/proc/%d/maps", (int)p->pid);
  FILE *f = fopen(path, "re");
  if (!f) {
    if (errno == ENOENT)
      snprintf(err, errlen, "%s: no such process", s->name);
    else
      snprintf(err, errlen, "%s: cannot read %s: %s", s->name, path, strerror(errno));
    return -1;
  }
  size_t cap = 0;
  int rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    uint64_t lo, hi;
    char perms[8] = "", name[4096] = "";
    if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*s %*s %*s %4095[^\n]", &lo, &hi, perms, name) <
        3)
      continue;
    if (!want_mapping(perms, name, o))
      continue;
    if (o->hi) {
      lo = lo > o->lo ? lo : o->lo;
      hi = hi < o->hi ? hi : o->hi;
    }
    if (lo >= hi)
      continue;
    rc = add_range(p, &cap, lo, hi);
    s->expected += hi - lo;
  }
  fclose(f);
  if (rc)
    snprintf(err, errlen, "%s: out of memory", s->name);
  return rc;
}

int memsrc_open_pid(memsrc **out, pid_t pid, const char *name, const memsrc_pid_options *opts,
                    char *err, size_t errlen)
{
  memsrc_pid_options none = {0, 0, 0, 0};
  memsrc *s = memsrc__new(&proc_ops, name, "pid", sizeof(proc_src), err, errlen);
  if (!s)
    return -1;
  proc_src *p = s->priv;
  p->pid = pid;
  s->pid = pid;
  p->mem = p->pagemap = -1;
  if (pid <= 0) {
    snprintf(err, errlen, "%s: not a process id", name);
    proc_close(s);
    return -1;
  }
  if (read_maps(s, p, opts ? opts : &none, err, errlen) != 0) {
    proc_close(s);
    return -1;
  }
  char path[64];
  const char *what = "mem";
  snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
  p->mem = open(path, O_RDONLY | O_CLOEXEC);
  if (p->mem >= 0) {
    what = "pagemap";
    snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
    p->pagemap = open(path, O_RDONLY | O_CLOEXEC);
  }
  if (p->mem < 0 || p->pagemap < 0) {
    if (errno == ENOENT || errno == ESRCH)
      snprintf(err, errlen, "%s: no such process", name);
    else
      snprintf(err, errlen,
               "%s: cannot open /proc/%d/%s: %s (reading another user's process "
               "needs root or ptrace rights)",
               name, (int)pid, what, strerror(errno));
    proc_close(s);
    return -1;
  }
  *out = s;
  return 0;
}

static int has_mappings(pid_t pid)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return 0;
  int c = fgetc(f);
  fclose(f);
  return c != EOF;
}

int memsrc_list_processes(pid_t **out, size_t *n)
{
  DIR *d = opendir("/proc");
  if (!d)
    return -1;
  pid_t self = getpid(), *v = NULL;
  size_t cnt = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!isdigit((unsigned char)e->d_name[0]))
      continue;
    pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
    if (pid == self || !has_mappings(pid)) /* kernel threads have none */
      continue;
    if (cnt == cap) {
      cap = cap ? cap * 2 : 128;
      pid_t *nv = realloc(v, cap * sizeof *nv);
      if (!nv) {
        free(v);
        closedir(d);
        return -1;
      }
      v = nv;
    }
    v[cnt++] = pid;
  }
  closedir(d);
  *out = v;
  *n = cnt;
  return 0;
}

void memsrc_process_comm(char *buf, size_t len, pid_t pid)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
  FILE *f = fopen(path, "re");
  snprintf(buf, len, "?");
  if (f) {
    if (fgets(buf, (int)len, f))
      buf[strcspn(buf, "\n")] = 0;
    fclose(f);
  }
}
