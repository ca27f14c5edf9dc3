/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The guest's primitives that the adapter's operations (adapter.c), the
 * rings (ring.c) and sharing (share.c) all use: errors and their messages,
 * a page read or unshared through a foreign mapping, and the page states
 * and counters under the guest's lock. They call nothing of the adapter's
 * own, so that calls go one way: adapter.c -> ring.c, share.c -> here. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "xen_internal.h"

int dmem__xen_err(int errnum)
{
  switch (errnum) {
  case ENOMEM:
    return DMEM_ENOMEM;
  case EBUSY:
  case E2BIG:
  case EAGAIN:
  case DMEM_XEN_ESHARE_SOURCE:
  case DMEM_XEN_ESHARE_CLIENT:
    return DMEM_EBUSY;
  case ENOENT:
  case ESRCH:
    return DMEM_ENOENT;
  case EINVAL:
    return DMEM_EINVAL;
  case ENODEV:
  case ENOSYS:
  case EOPNOTSUPP:
    return DMEM_ENOTSUP;
  case EIO:
    return DMEM_EIO;
  default:
    return DMEM_ESYS;
  }
}

void dmem__xen_msg(dmem_xen_guest *x, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&x->mu);
  vsnprintf(x->errmsg, sizeof x->errmsg, fmt, ap);
  pthread_mutex_unlock(&x->mu);
  va_end(ap);
}

int dmem__xen_fail(dmem_xen_guest *x, const char *call, uint64_t gfn, int errnum)
{
  dmem__xen_msg(x, "dom%u gfn %#llx: %s: %s", (unsigned)x->domid, (unsigned long long)gfn, call,
                strerror(errnum));
  return dmem__xen_err(errnum);
}

int dmem__xen_read(dmem_xen_guest *x, uint64_t gfn, void *buf)
{
  void *p = x->calls->map(x->hv, x->domid, PROT_READ, gfn, 1);
  if (!p)
    return dmem__xen_fail(x, "xenforeignmemory_map", gfn, errno);
  memcpy(buf, p, XEN_PAGE);
  x->calls->unmap(x->hv, p, 1);
  return 0;
}

int dmem__xen_unshare(dmem_xen_guest *x, uint64_t gfn)
{
  void *p = x->calls->map(x->hv, x->domid, PROT_READ | PROT_WRITE, gfn, 1);
  if (!p)
    return dmem__xen_fail(x, "xenforeignmemory_map (writable)", gfn, errno);
  x->calls->unmap(x->hv, p, 1);
  return 0;
}

int dmem__xen_page_state(dmem_xen_guest *x, uint64_t gfn)
{
  pthread_mutex_lock(&x->mu);
  int s = x->pstate[gfn];
  pthread_mutex_unlock(&x->mu);
  return s;
}

void dmem__xen_set_page_state(dmem_xen_guest *x, uint64_t gfn, int s)
{
  pthread_mutex_lock(&x->mu);
  x->pstate[gfn] = (uint8_t)s;
  pthread_mutex_unlock(&x->mu);
}

void dmem__xen_count(dmem_xen_guest *x, uint64_t *field)
{
  pthread_mutex_lock(&x->mu);
  (*field)++;
  pthread_mutex_unlock(&x->mu);
}
