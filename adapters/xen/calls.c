/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The default call table: every Xen call of the adapter, forwarded to
 * libxenctrl, libxenforeignmemory and libxenevtchn. Each keeps the
 * library's convention (-1 and errno on failure). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <xenctrl.h>
#include <xenevtchn.h>
#include <xenforeignmemory.h>

#include "xen_internal.h"

/* libxenctrl logs through a xentoollog logger, which it keeps for the
 * life of the handle; this one keeps the first error while the handle is
 * opened (for the caller's message) and is silent afterwards, instead of
 * printing on the caller's stderr. */
typedef struct first_error {
  xentoollog_logger base; /* first, so the callbacks can cast back */
  char *buf;              /* NULL: silent */
  size_t len;
} first_error;

typedef struct xc_ctx {
  first_error log; /* lives as long as xch */
  char first[200];
  xc_interface *xch;
  xenforeignmemory_handle *fmem;
  xenevtchn_handle *xce;
} xc_ctx;

static void first_vmessage(xentoollog_logger *logger, xentoollog_level level, int errnoval,
                           const char *context, const char *format, va_list al)
  __attribute__((format(printf, 5, 0)));

static void first_vmessage(xentoollog_logger *logger, xentoollog_level level, int errnoval,
                           const char *context, const char *format, va_list al)
{
  first_error *c = (first_error *)logger;
  (void)context;
  if (level < XTL_ERROR || !c->buf || c->buf[0] != '\0')
    return;
  int n = vsnprintf(c->buf, c->len, format, al);
  if (n >= 0 && (size_t)n < c->len && errnoval > 0)
    snprintf(c->buf + n, c->len - (size_t)n, ": %s", strerror(errnoval));
}

static void first_destroy(xentoollog_logger *logger) { (void)logger; }

/* Silent once open: the adapter reports errors through its own messages. */
static void quiet_vmessage(xentoollog_logger *logger, xentoollog_level level, int errnoval,
                           const char *context, const char *format, va_list al)
{
  (void)logger, (void)level, (void)errnoval, (void)context, (void)format, (void)al;
}

static xentoollog_logger quiet = {.vmessage = quiet_vmessage, .progress = NULL,
                                  .destroy = first_destroy};

int dmem__xen_default_open(void **hv, char *errbuf, size_t errlen)
{
  char dummy[1];
  if (!errbuf || !errlen)
    errbuf = dummy, errlen = sizeof dummy;
  errbuf[0] = '\0';
  xc_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(errbuf, errlen, "out of memory");
    return DMEM_ENOMEM;
  }
  c->log = (first_error){
    .base = {.vmessage = first_vmessage, .progress = NULL, .destroy = first_destroy},
    .buf = c->first,
    .len = sizeof c->first,
  };
  const char *lib = c->first;
  c->xch = xc_interface_open(&c->log.base, &quiet, 0);
  if (!c->xch) {
    /* libxenctrl says "Could not obtain handle on privileged command
     * interface"; say which device is missing, and keep its words. */
    int e = errno;
    struct stat st;
    if (stat("/dev/xen/privcmd", &st) != 0)
      snprintf(errbuf, errlen, "cannot open /dev/xen/privcmd: %s (no Xen here; libxenctrl: %s)",
               strerror(errno), lib[0] ? lib : strerror(e));
    else
      snprintf(errbuf, errlen, "cannot open the Xen control interface: %s",
               lib[0] ? lib : strerror(e));
    free(c);
    return DMEM_ENOTSUP;
  }
  c->log.buf = NULL; /* silent from here on */
  c->fmem = xenforeignmemory_open(&quiet, 0);
  c->xce = xenevtchn_open(&quiet, 0);
  if (!c->fmem || !c->xce) {
    snprintf(errbuf, errlen, "cannot open %s: %s", c->fmem ? "xenevtchn" : "xenforeignmemory",
             strerror(errno));
    dmem__xen_default_close(c);
    return DMEM_ENOTSUP;
  }
  *hv = c;
  return 0;
}

void dmem__xen_default_close(void *hv)
{
  xc_ctx *c = hv;
  if (!c)
    return;
  if (c->xce)
    xenevtchn_close(c->xce);
  if (c->fmem)
    xenforeignmemory_close(c->fmem);
  if (c->xch)
    xc_interface_close(c->xch);
  free(c);
}

#define XCH(hv) (((xc_ctx *)(hv))->xch)

struct xc_interface_core *dmem__xen_default_xch(void *hv)
{
  return XCH(hv);
}

static int d_domain_info(void *hv, uint32_t domid, dmem_xen_domain *out)
{
  xc_dominfo_t info;
  int n = xc_domain_getinfo(XCH(hv), domid, 1, &info);
  if (n < 0)
    return -1;
  if (n != 1 || info.domid != domid) {
    errno = ESRCH;
    return -1;
  }
  xen_pfn_t max = 0;
  if (xc_domain_maximum_gpfn(XCH(hv), domid, &max) < 0)
    return -1;
  out->hvm = info.hvm;
  out->hap = info.hap;
  out->dying = info.dying;
  out->npages = (uint64_t)max + 1;
  return 0;
}

static int d_memshr_control(void *hv, uint32_t domid, int enable)
{
  return xc_memshr_control(XCH(hv), domid, enable);
}

static int d_nominate_gfn(void *hv, uint32_t domid, uint64_t gfn, uint64_t *handle)
{
  return xc_memshr_nominate_gfn(XCH(hv), domid, (unsigned long)gfn, handle);
}

static int d_nominate_gref(void *hv, uint32_t domid, uint32_t gref, uint64_t *handle)
{
  return xc_memshr_nominate_gref(XCH(hv), domid, gref, handle);
}

static int d_share_gfns(void *hv, uint32_t sdom, uint64_t sgfn, uint64_t sh, uint32_t cdom,
                        uint64_t cgfn, uint64_t ch)
{
  return xc_memshr_share_gfns(XCH(hv), sdom, (unsigned long)sgfn, sh, cdom, (unsigned long)cgfn,
                              ch);
}

static int d_share_grefs(void *hv, uint32_t sdom, uint32_t sgref, uint64_t sh, uint32_t cdom,
                         uint32_t cgref, uint64_t ch)
{
  return xc_memshr_share_grefs(XCH(hv), sdom, sgref, sh, cdom, cgref, ch);
}

static int d_memshr_ring_enable(void *hv, uint32_t domid, uint32_t *port)
{
  return xc_memshr_ring_enable(XCH(hv), domid, port);
}

static int d_memshr_ring_disable(void *hv, uint32_t domid)
{
  return xc_memshr_ring_disable(XCH(hv), domid);
}

static int d_range_share(void *hv, uint32_t sdom, uint32_t cdom, uint64_t first, uint64_t last)
{
  return xc_memshr_range_share(XCH(hv), sdom, cdom, first, last);
}

static int d_hvm_param_get(void *hv, uint32_t domid, uint32_t param, uint64_t *value)
{
  return xc_hvm_param_get(XCH(hv), domid, param, value);
}

static int d_paging_enable(void *hv, uint32_t domid, uint32_t *port)
{
  return xc_mem_paging_enable(XCH(hv), domid, port);
}

static int d_paging_disable(void *hv, uint32_t domid)
{
  return xc_mem_paging_disable(XCH(hv), domid);
}

static int d_paging_nominate(void *hv, uint32_t domid, uint64_t gfn)
{
  return xc_mem_paging_nominate(XCH(hv), domid, gfn);
}

static int d_paging_evict(void *hv, uint32_t domid, uint64_t gfn)
{
  return xc_mem_paging_evict(XCH(hv), domid, gfn);
}

static int d_paging_prep(void *hv, uint32_t domid, uint64_t gfn)
{
  return xc_mem_paging_prep(XCH(hv), domid, gfn);
}

static int d_paging_load(void *hv, uint32_t domid, uint64_t gfn, void *buffer)
{
  return xc_mem_paging_load(XCH(hv), domid, gfn, buffer);
}

static int d_paging_resume(void *hv, uint32_t domid)
{
  return xc_mem_paging_resume(XCH(hv), domid);
}

static int d_decrease_reservation(void *hv, uint32_t domid, uint64_t gfn)
{
  xen_pfn_t pfn = (xen_pfn_t)gfn;
  return xc_domain_decrease_reservation_exact(XCH(hv), domid, 1, 0, &pfn);
}

static int d_populate_physmap(void *hv, uint32_t domid, uint64_t gfn)
{
  xen_pfn_t pfn = (xen_pfn_t)gfn;
  return xc_domain_populate_physmap_exact(XCH(hv), domid, 1, 0, 0, &pfn);
}

static void *d_map(void *hv, uint32_t domid, int prot, uint64_t gfn, size_t n)
{
  xen_pfn_t stack[8] = {0};
  int errs[8] = {0};
  xen_pfn_t *pfns = n <= 8 ? stack : malloc(n * sizeof *pfns);
  int *err = n <= 8 ? errs : malloc(n * sizeof *err);
  void *p = NULL;
  if (pfns && err) {
    for (size_t i = 0; i < n; i++)
      pfns[i] = (xen_pfn_t)(gfn + i);
    p = xenforeignmemory_map(((xc_ctx *)hv)->fmem, domid, prot, n, pfns, err);
    for (size_t i = 0; p && i < n; i++) {
      if (err[i]) { /* one page could not be mapped: the whole call fails */
        xenforeignmemory_unmap(((xc_ctx *)hv)->fmem, p, n);
        errno = -err[i];
        p = NULL;
      }
    }
  } else {
    errno = ENOMEM;
  }
  if (pfns != stack)
    free(pfns);
  if (err != errs)
    free(err);
  return p;
}

static int d_unmap(void *hv, void *addr, size_t n)
{
  return xenforeignmemory_unmap(((xc_ctx *)hv)->fmem, addr, n);
}

static int d_logdirty(void *hv, uint32_t domid, unsigned op, unsigned long *bitmap,
                      uint64_t npages)
{
  xc_interface *xch = XCH(hv);
  if (op == DMEM_XEN_LOGDIRTY_ENABLE || op == DMEM_XEN_LOGDIRTY_OFF)
    return xc_shadow_control(xch, domid, op, NULL, 0);
  /* CLEAN and PEEK carry the bitmap in hypercall-safe memory. */
  size_t bytes = (size_t)((npages + 63) / 64) * 8;
  int nr = (int)((bytes + XC_PAGE_SIZE - 1) / XC_PAGE_SIZE);
  DECLARE_HYPERCALL_BUFFER(unsigned long, buf);
  buf = xc_hypercall_buffer_alloc_pages(xch, buf, nr);
  if (!buf) {
    errno = ENOMEM;
    return -1;
  }
  long long rc = xc_logdirty_control(xch, domid, op, HYPERCALL_BUFFER(buf),
                                     (unsigned long)npages, 0, NULL);
  if (rc >= 0)
    memcpy(bitmap, buf, bytes);
  int saved = errno;
  xc_hypercall_buffer_free_pages(xch, buf, nr);
  errno = saved;
  return rc < 0 ? -1 : 0;
}

static int d_evtchn_bind(void *hv, uint32_t domid, uint32_t remote)
{
  xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(((xc_ctx *)hv)->xce, domid, remote);
  return p < 0 ? -1 : (int)p;
}

static int d_evtchn_unbind(void *hv, uint32_t port)
{
  return xenevtchn_unbind(((xc_ctx *)hv)->xce, port);
}

static int d_evtchn_notify(void *hv, uint32_t port)
{
  return xenevtchn_notify(((xc_ctx *)hv)->xce, port);
}

static int d_evtchn_fd(void *hv) { return xenevtchn_fd(((xc_ctx *)hv)->xce); }

static int d_evtchn_pending(void *hv)
{
  xenevtchn_port_or_error_t p = xenevtchn_pending(((xc_ctx *)hv)->xce);
  return p < 0 ? -1 : (int)p;
}

static int d_evtchn_unmask(void *hv, uint32_t port)
{
  return xenevtchn_unmask(((xc_ctx *)hv)->xce, port);
}

const dmem_xen_calls dmem__xen_default_calls = {
    .version = DMEM_XEN_CALLS_VERSION,
    .domain_info = d_domain_info,
    .memshr_control = d_memshr_control,
    .memshr_nominate_gfn = d_nominate_gfn,
    .memshr_nominate_gref = d_nominate_gref,
    .memshr_share_gfns = d_share_gfns,
    .memshr_share_grefs = d_share_grefs,
    .memshr_ring_enable = d_memshr_ring_enable,
    .memshr_ring_disable = d_memshr_ring_disable,
    .memshr_range_share = d_range_share,
    .hvm_param_get = d_hvm_param_get,
    .paging_enable = d_paging_enable,
    .paging_disable = d_paging_disable,
    .paging_nominate = d_paging_nominate,
    .paging_evict = d_paging_evict,
    .paging_prep = d_paging_prep,
    .paging_load = d_paging_load,
    .paging_resume = d_paging_resume,
    .decrease_reservation = d_decrease_reservation,
    .populate_physmap = d_populate_physmap,
    .map = d_map,
    .unmap = d_unmap,
    .logdirty = d_logdirty,
    .evtchn_bind = d_evtchn_bind,
    .evtchn_unbind = d_evtchn_unbind,
    .evtchn_notify = d_evtchn_notify,
    .evtchn_fd = d_evtchn_fd,
    .evtchn_pending = d_evtchn_pending,
    .evtchn_unmask = d_evtchn_unmask,
};
