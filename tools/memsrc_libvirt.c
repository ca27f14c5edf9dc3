/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Memory of a libvirt domain, read with virDomainMemoryPeek(VIR_MEMORY_PHYSICAL)
 * in chunks of 4 MiB, which libvirt 9 carries in one call; older libvirt
 * carried 64 KiB (REMOTE_DOMAIN_MEMORY_PEEK_BUFFER_MAX), so a refused chunk
 * is tried again at that size. Each call costs QEMU a pmemsave to a
 * temporary file: 4 MiB chunks read a 256 MiB guest in about 3 s here, 64
 * KiB chunks take 48 s. It reads guest-physical addresses
 * [0, memory size), where memory size is the domain's maximum memory. On a
 * PC guest with more than about 3 GiB, RAM above the PCI hole sits above
 * 4 GiB and this range misses it: dump such a guest with `virsh dump
 * --memory-only` and analyze the core instead. The guest keeps running. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/common.h>

#include "memsrc.h"

#if DMEM_HAVE_LIBVIRT
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

enum { PEEK_MAX = 4 << 20, PEEK_OLD_MAX = 64 << 10 };

typedef struct virt_src {
  virConnectPtr conn;
  virDomainPtr dom;
  uint64_t size, pos;
  size_t chunk; /* PEEK_MAX, or PEEK_OLD_MAX once a large one was refused */
} virt_src;

static const char *last_error(void)
{
  const char *m = virGetLastErrorMessage();
  return m && *m ? m : "unknown libvirt error";
}

/* libvirt prints every error to stderr by default; we report our own. */
static void quiet(void *ud, virErrorPtr e)
{
  (void)ud;
  (void)e;
}

/* Reads len bytes at guest-physical addr; on failure *at is where. */
static int peek(virt_src *v, uint64_t addr, uint8_t *buf, size_t len, uint64_t *at)
{
  for (size_t off = 0; off < len;) {
    size_t n = len - off < v->chunk ? len - off : v->chunk;
    if (virDomainMemoryPeek(v->dom, addr + off, n, buf + off, VIR_MEMORY_PHYSICAL) == 0) {
      off += n;
      continue;
    }
    if (v->chunk == PEEK_OLD_MAX) {
      *at = addr + off;
      return -1;
    }
    v->chunk = PEEK_OLD_MAX; /* an older libvirt: smaller chunks */
  }
  return 0;
}

static long virt_read(memsrc *s, uint8_t *buf, size_t max)
{
  virt_src *v = s->priv;
  uint64_t left = (v->size - v->pos) / DMEM_PAGE_SIZE, at = 0;
  size_t n = left < max ? (size_t)left : max;
  if (peek(v, v->pos, buf, n * DMEM_PAGE_SIZE, &at) != 0) {
    snprintf(s->err, sizeof s->err, "%s: reading guest-physical memory at %#llx failed: %s",
             s->name, (unsigned long long)at, last_error());
    return -1;
  }
  v->pos += n * DMEM_PAGE_SIZE;
  s->done = v->pos;
  return (long)n;
}

static void virt_close(memsrc *s)
{
  virt_src *v = s->priv;
  if (v) {
    if (v->dom)
      virDomainFree(v->dom);
    if (v->conn)
      virConnectClose(v->conn);
    free(v);
  }
  free(s);
}

static const memsrc_ops virt_ops = {virt_read, virt_close};

int memsrc_open_libvirt(memsrc **out, const char *uri, const char *domain, char *err, size_t errlen)
{
  char name[256];
  snprintf(name, sizeof name, "%s", domain);
  memsrc *s = memsrc__new(&virt_ops, name, "libvirt", sizeof(virt_src), err, errlen);
  if (!s)
    return -1;
  virt_src *v = s->priv;
  virSetErrorFunc(NULL, quiet);
  virDomainInfo info;
  v->conn = virConnectOpen(uri);
  if (!v->conn)
    snprintf(err, errlen, "%s: cannot connect to libvirt at %s: %s", domain,
             uri ? uri : "(default)", last_error());
  else if (!(v->dom = virDomainLookupByName(v->conn, domain)))
    snprintf(err, errlen, "%s: no such libvirt domain on %s: %s", domain, uri ? uri : "(default)",
             last_error());
  else if (virDomainGetInfo(v->dom, &info) != 0)
    snprintf(err, errlen, "%s: cannot get the domain's info: %s", domain, last_error());
  else if (info.state != VIR_DOMAIN_RUNNING && info.state != VIR_DOMAIN_PAUSED &&
           info.state != VIR_DOMAIN_BLOCKED)
    snprintf(err, errlen,
             "%s: the domain is not running (state %d): only a running domain's "
             "memory can be read",
             domain, (int)info.state);
  else {
    v->chunk = PEEK_MAX;
    v->size = (uint64_t)info.maxMem * 1024 / DMEM_PAGE_SIZE * DMEM_PAGE_SIZE;
    s->expected = v->size;
    *out = s;
    return 0;
  }
  virt_close(s);
  return -1;
}

int memsrc_libvirt_domains(char ***out, size_t *n, const char *uri, char *err, size_t errlen)
{
  *out = NULL;
  *n = 0;
  virSetErrorFunc(NULL, quiet);
  virConnectPtr conn = virConnectOpenReadOnly(uri);
  if (!conn) {
    snprintf(err, errlen, "cannot connect to libvirt at %s: %s", uri ? uri : "(default)",
             last_error());
    return -1;
  }
  virDomainPtr *doms = NULL;
  int k = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (k < 0) {
    snprintf(err, errlen, "cannot list the domains at %s: %s", uri ? uri : "(default)",
             last_error());
    virConnectClose(conn);
    return -1;
  }
  char **names = calloc((size_t)k + 1, sizeof *names);
  int rc = names ? 0 : -1;
  for (int i = 0; i < k; i++) {
    const char *name = virDomainGetName(doms[i]);
    if (rc == 0 && name && !(names[*n] = strdup(name)))
      rc = -1;
    else if (rc == 0 && name)
      (*n)++;
    virDomainFree(doms[i]);
  }
  free(doms);
  virConnectClose(conn);
  if (rc != 0) {
    for (size_t i = 0; names && i < *n; i++)
      free(names[i]);
    free(names);
    *n = 0;
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  *out = names;
  return 0;
}

#else

int memsrc_libvirt_domains(char ***out, size_t *n, const char *uri, char *err, size_t errlen)
{
  (void)uri;
  *out = NULL;
  *n = 0;
  snprintf(err, errlen, "this diffmem was built without libvirt");
  return -1;
}

int memsrc_open_libvirt(memsrc **out, const char *uri, const char *domain, char *err, size_t errlen)
{
  (void)out;
  (void)uri;
  snprintf(err, errlen,
           "%s: this diffmem was built without libvirt: install libvirt-dev and run configure "
           "again to read libvirt domains (or analyze a `virsh dump --memory-only` core)",
           domain);
  return -1;
}

#endif
