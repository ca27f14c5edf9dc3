/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The adapter's life cycle and its dmem_adapter_ops (see diffmem/xen.h for
 * how each operation maps onto Xen's calls). */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xen_internal.h"

#define LONG_BITS (8 * sizeof(unsigned long))

/* ---------------------------------------------------------------- operations */

/* The engine locks a page before it reclaims it: it reads the page's bits
 * alone, then the page. That read is what the engine stores, so it is the
 * one an eviction must be checked against; later reads of the same page
 * (an index comparing candidates, say) must not replace it, or a guest
 * write between the two reads would pass the check and be lost. */
static int op_read(void *buf, uint64_t gfn, void *ud)
{
  dmem_xen_guest *x = ud;
  int rc = dmem__xen_read(x, gfn, buf);
  if (rc)
    return rc;
  if (x->locking == gfn + 1) {
    x->locking = 0;
    xen_recent *r = &x->recent[x->recent_next++ % XEN_RECENT];
    memcpy(r->page, buf, XEN_PAGE);
    r->gfn = gfn;
    r->valid = 1;
  }
  return 0;
}

/* The content the engine last read of gfn, or NULL. */
static const uint8_t *recent_of(dmem_xen_guest *x, uint64_t gfn)
{
  for (unsigned i = 1; i <= XEN_RECENT; i++) {
    const xen_recent *r = &x->recent[(x->recent_next - i) % XEN_RECENT];
    if (r->valid && r->gfn == gfn)
      return r->page;
  }
  return NULL;
}

static void forget_recent(dmem_xen_guest *x, uint64_t gfn)
{
  for (unsigned i = 0; i < XEN_RECENT; i++)
    if (x->recent[i].gfn == gfn)
      x->recent[i].valid = 0;
}

static int op_bits(uint8_t *out, uint64_t first, size_t n, void *ud)
{
  dmem_xen_guest *x = ud;
  /* CLEAN hands over and clears the whole domain's bitmap; what is not
   * asked for now is kept for later calls. */
  if (x->calls->logdirty(x->hv, x->domid, DMEM_XEN_LOGDIRTY_CLEAN, x->bitmap, x->npages) != 0)
    return dmem__xen_fail(x, "xc_logdirty_control(CLEAN)", first, errno);
  /* The bits of one page: the engine is locking it (see op_read). */
  x->locking = n == 1 ? first + 1 : 0;
  if (n == 1)
    forget_recent(x, first);
  pthread_mutex_lock(&x->mu);
  for (size_t i = 0; i < x->bitmap_longs; i++)
    x->dirty[i] |= x->bitmap[i];
  for (size_t i = 0; i < n; i++) {
    uint64_t g = first + i;
    unsigned long bit = 1ul << (g % LONG_BITS);
    unsigned long *w = &x->dirty[g / LONG_BITS];
    unsigned long *t = &x->touched[g / LONG_BITS];
    int evicted = x->pstate[g] == XP_EVICTED;
    out[i] = 0;
    if (!evicted && (*w & bit))
      out[i] = DMEM_BIT_REFERENCED | DMEM_BIT_MODIFIED;
    else if (!evicted && (*t & bit))
      out[i] = DMEM_BIT_REFERENCED;
    *w &= ~bit;
    *t &= ~bit;
  }
  pthread_mutex_unlock(&x->mu);
  return 0;
}

static int op_evict(uint64_t gfn, void *ud)
{
  dmem_xen_guest *x = ud;
  const uint8_t *want = recent_of(x, gfn);
  if (!want) { /* the engine always reads a page before it evicts it */
    dmem__xen_count(x, &x->st.evict_changed);
    dmem__xen_msg(x, "dom%u gfn %#llx: evict without a recent read", (unsigned)x->domid,
                  (unsigned long long)gfn);
    return DMEM_EBUSY;
  }
  int state = dmem__xen_page_state(x, gfn);
  if (state == XP_SHARED) { /* Xen pages out private pages only */
    int rc = dmem__xen_unshare(x, gfn);
    if (rc)
      return rc;
    dmem__xen_set_page_state(x, gfn, XP_GUEST);
  }
  if (state != XP_NOMINATED) {
    /* Nomination and its record are one step for the ring service, which
     * answers a guest write to the nominated page (prep, XP_GUEST). */
    pthread_mutex_lock(&x->mu);
    int r = x->calls->paging_nominate(x->hv, x->domid, gfn), e = errno;
    if (r == 0)
      x->pstate[gfn] = XP_NOMINATED;
    pthread_mutex_unlock(&x->mu);
    if (r != 0)
      return dmem__xen_fail(x, "xc_mem_paging_nominate", gfn, e);
  }
  /* Read-only to the guest from here on: a write now makes the evict fail.
   * A write before it shows in the bytes. */
  uint8_t now[XEN_PAGE];
  int rc = dmem__xen_read(x, gfn, now);
  if (rc)
    return rc;
  if (memcmp(now, want, XEN_PAGE) != 0) {
    dmem__xen_count(x, &x->st.evict_changed);
    dmem__xen_msg(x, "dom%u gfn %#llx: changed after it was read", (unsigned)x->domid,
                  (unsigned long long)gfn);
    return DMEM_EBUSY;
  }
  /* From the evict until its record, a request for the page waits (the
   * ring service keeps it): answered as "not evicted", it would leave the
   * page paging-in with nothing to bring it back, since a foreign mapper
   * never asks twice. */
  pthread_mutex_lock(&x->mu);
  x->evicting = gfn + 1;
  pthread_mutex_unlock(&x->mu);
  if (x->calls->paging_evict(x->hv, x->domid, gfn) != 0) {
    int e = errno;
    pthread_mutex_lock(&x->mu);
    x->evicting = 0;
    pthread_mutex_unlock(&x->mu);
    return dmem__xen_fail(x, "xc_mem_paging_evict", gfn, e);
  }
  forget_recent(x, gfn);
  pthread_mutex_lock(&x->mu);
  x->evicting = 0;
  x->pstate[gfn] = XP_EVICTED;
  x->st.evicts++;
  x->dirty[gfn / LONG_BITS] &= ~(1ul << (gfn % LONG_BITS));
  pthread_mutex_unlock(&x->mu);
  return 0;
}

static int op_share(uint64_t gfn, uint32_t frame_id, const void *frame, void *ud)
{
  dmem_xen_guest *x = ud;
  dmem_engine *engine = x->engine;
  return dmem__xen_share(x, gfn, engine, frame_id, frame);
}

static int op_install(uint64_t gfn, const void *content, void *ud)
{
  dmem_xen_guest *x = ud;
  int state = dmem__xen_page_state(x, gfn);
  if (state != XP_EVICTED) {
    /* Guest memory already (a page the engine mapped, being made private):
     * what the guest sees is the truth, so only leave Xen's sharing. */
    if (state != XP_SHARED)
      return 0;
    int rc = dmem__xen_unshare(x, gfn);
    if (rc == 0)
      dmem__xen_set_page_state(x, gfn, XP_GUEST);
    return rc;
  }
  if (x->calls->paging_load(x->hv, x->domid, gfn, (void *)content) != 0)
    return dmem__xen_fail(x, "xc_mem_paging_load", gfn, errno);
  dmem__xen_set_page_state(x, gfn, XP_GUEST);
  return 0;
}

/* ---------------------------------------------------------------- life cycle */

static int open_fail(dmem_xen_guest *x, char *errbuf, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int open_fail(dmem_xen_guest *x, char *errbuf, size_t errlen, int rc, const char *fmt, ...)
{
  if (errbuf && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
  }
  dmem_xen_guest_destroy(x);
  return rc;
}

int dmem_xen_guest_create(dmem_xen_guest **out, const dmem_xen_guest_options *opts, char *errbuf,
                          size_t errlen)
{
  if (errbuf && errlen)
    errbuf[0] = '\0';
  if (!out || !opts)
    return DMEM_EINVAL;
  *out = NULL;
  /* Version 2 (no sources) is still read, for programs built before 3. */
  if (opts->version != 2 && opts->version != DMEM_XEN_GUEST_OPTIONS_VERSION)
    return DMEM_EVERSION;
  if (opts->calls && opts->calls->version != DMEM_XEN_CALLS_VERSION)
    return DMEM_EVERSION;
  if (!dmem__alloc_valid(opts->allocator))
    return DMEM_EINVAL;
  dmem__alloc a;
  dmem__alloc_init(&a, opts->allocator);
  dmem_xen_guest *x = dmem__calloc(&a, sizeof *x);
  if (!x)
    return DMEM_ENOMEM;
  x->alloc = a;
  pthread_mutex_init(&x->mu, NULL);
  pthread_mutex_init(&x->attach_mu, NULL);
  x->paging.port = x->sharing.port = -1;
  x->domid = opts->domid;
  x->share = opts->share != 0;
  x->on_enomem = opts->on_enomem;
  x->sharing_domain = opts->sharing_domain;
  x->enomem_ud = opts->enomem_ud;
  if (opts->calls) {
    x->calls = opts->calls;
    x->hv = opts->hv;
  } else {
    int rc = dmem__xen_default_open(&x->own_hv, errbuf, errlen);
    if (rc) {
      dmem_xen_guest_destroy(x);
      return rc;
    }
    x->calls = &dmem__xen_default_calls;
    x->hv = x->own_hv;
  }
  const dmem_xen_calls *c = x->calls;

  dmem_xen_domain d;
  memset(&d, 0, sizeof d);
  if (c->domain_info(x->hv, x->domid, &d) != 0) {
    int e = errno;
    return open_fail(x, errbuf, errlen, dmem__xen_err(e), "dom%u: %s", (unsigned)x->domid,
                     e == ESRCH ? "no such domain" : strerror(e));
  }
  if (!d.hvm || !d.hap)
    return open_fail(x, errbuf, errlen, DMEM_ENOTSUP,
                     "dom%u: sharing and paging need an HVM guest with hardware-assisted "
                     "paging (this one is %s%s)",
                     (unsigned)x->domid, d.hvm ? "HVM" : "PV",
                     d.hvm && !d.hap ? " without HAP" : "");
  if (d.dying)
    return open_fail(x, errbuf, errlen, DMEM_ENOENT, "dom%u is dying", (unsigned)x->domid);
  x->npages = opts->npages ? opts->npages : d.npages;
  if (!x->npages || x->npages > d.npages)
    return open_fail(x, errbuf, errlen, DMEM_EINVAL, "dom%u: %llu pages asked, it has %llu",
                     (unsigned)x->domid, (unsigned long long)x->npages,
                     (unsigned long long)d.npages);
  x->bitmap_longs = (size_t)((x->npages + LONG_BITS - 1) / LONG_BITS);
  x->pstate = dmem__calloc(&x->alloc, x->npages);
  x->dirty = dmem__calloc(&x->alloc, x->bitmap_longs * sizeof(unsigned long));
  x->bitmap = dmem__calloc(&x->alloc, x->bitmap_longs * sizeof(unsigned long));
  x->touched = dmem__calloc(&x->alloc, x->bitmap_longs * sizeof(unsigned long));
  if (!x->pstate || !x->dirty || !x->bitmap || !x->touched)
    return open_fail(x, errbuf, errlen, DMEM_ENOMEM, "out of memory");
  if (x->share && dmem__xen_share_init(x, opts->version >= 3 ? opts->sources : NULL) != 0)
    return open_fail(x, errbuf, errlen, DMEM_ENOMEM, "out of memory");

  int rc = dmem__xen_rings_init(x);
  if (rc)
    return open_fail(x, errbuf, errlen, rc, "%s", x->errmsg);
  if (c->logdirty(x->hv, x->domid, DMEM_XEN_LOGDIRTY_ENABLE, NULL, 0) != 0) {
    int e = errno;
    return open_fail(x, errbuf, errlen, dmem__xen_err(e), "dom%u: enabling log-dirty: %s",
                     (unsigned)x->domid, strerror(e));
  }
  x->logdirty_on = 1;
  if (opts->share) {
    if (c->memshr_control(x->hv, x->domid, 1) != 0) {
      int e = errno;
      return open_fail(x, errbuf, errlen, dmem__xen_err(e), "dom%u: xc_memshr_control: %s",
                       (unsigned)x->domid,
                       e == EXDEV ? "a passed-through device excludes sharing" : strerror(e));
    }
    x->memshr_on = 1;
  }

  x->ops = (dmem_adapter_ops){
      .version = DMEM_ADAPTER_OPS_VERSION,
      .read = op_read,
      .bits = op_bits,
      .evict = op_evict,
      .share = x->share ? op_share : NULL,
      .install = op_install,
  };
  *out = x;
  return 0;
}

void dmem_xen_guest_destroy(dmem_xen_guest *x)
{
  if (!x)
    return;
  /* Every page back first (the ring thread, if any, serves meanwhile),
   * then every request answered, so that no vCPU stays paused. */
  if (x->vm)
    (void)dmem_xen_guest_detach(x);
  dmem_xen_guest_stop(x);
  int evicted = 0;
  for (uint64_t g = 0; x->pstate && g < x->npages; g++)
    evicted += x->pstate[g] == XP_EVICTED;
  for (int i = 0; x->paging.back && i < 100; i++) {
    unsigned n = 0;
    (void)dmem_xen_guest_poll(x, 0, &n);
    if (n == 0 && x->npending == 0)
      break;
  }
  if (evicted) {
    /* Without a pager Xen crashes a guest that touches a paged-out page;
     * with paging left on (and its ring page kept from the guest), that
     * vCPU only waits. */
    x->paging.enabled = 0;
    x->paging.removed = 0;
  }
  dmem__xen_share_fini(x);
  if (x->logdirty_on)
    (void)x->calls->logdirty(x->hv, x->domid, DMEM_XEN_LOGDIRTY_OFF, NULL, 0);
  if (x->memshr_on) /* pages still shared stay so until written */
    (void)x->calls->memshr_control(x->hv, x->domid, 0);
  dmem__xen_rings_fini(x);
  if (x->own_hv)
    dmem__xen_default_close(x->own_hv);
  dmem__alloc a = x->alloc;
  dmem__free(&a, x->pstate, x->npages);
  dmem__free(&a, x->dirty, x->bitmap_longs * sizeof(unsigned long));
  dmem__free(&a, x->bitmap, x->bitmap_longs * sizeof(unsigned long));
  dmem__free(&a, x->touched, x->bitmap_longs * sizeof(unsigned long));
  dmem__free(&a, x->pending, x->cap_pending * sizeof *x->pending);
  pthread_mutex_destroy(&x->attach_mu);
  pthread_mutex_destroy(&x->mu);
  dmem__free(&a, x, sizeof *x);
}

const char *dmem_xen_guest_errmsg(const dmem_xen_guest *x)
{
  return x ? x->errmsg : "";
}

uint64_t dmem_xen_guest_npages(const dmem_xen_guest *x)
{
  return x ? x->npages : 0;
}

int dmem_xen_guest_attach(dmem_vm **out, dmem_engine *engine, dmem_xen_guest *x, const char *name)
{
  if (!out || !engine || !x)
    return DMEM_EINVAL;
  if (x->vm)
    return DMEM_EBUSY;
  /* The engine starts from "every page resident": bring back any page a
   * previous attachment left evicted is not possible without its content,
   * so refuse instead. */
  for (uint64_t g = 0; g < x->npages; g++)
    if (x->pstate[g] == XP_EVICTED)
      return DMEM_EBUSY;
  dmem_vm_options o = DMEM_VM_OPTIONS_INIT;
  o.ops = &x->ops;
  o.ud = x;
  o.npages = x->npages;
  o.name = name;
  o.sharing_domain = x->sharing_domain;
  dmem_vm *vm;
  int rc = dmem_vm_attach(&vm, engine, &o);
  if (rc)
    return rc;
  pthread_mutex_lock(&x->attach_mu);
  pthread_mutex_lock(&x->mu);
  x->vm = vm;
  x->engine = engine;
  memset(x->dirty, 0, x->bitmap_longs * sizeof(unsigned long));
  memset(x->touched, 0, x->bitmap_longs * sizeof(unsigned long));
  pthread_mutex_unlock(&x->mu);
  pthread_mutex_unlock(&x->attach_mu);
  *out = vm;
  return 0;
}

int dmem_xen_guest_detach(dmem_xen_guest *x)
{
  if (!x || !x->vm)
    return DMEM_EINVAL;
  pthread_mutex_lock(&x->attach_mu);
  int rc = dmem_vm_detach(x->vm);
  if (rc == 0) {
    dmem__xen_share_forget(x);
    pthread_mutex_lock(&x->mu);
    x->vm = NULL;
    x->engine = NULL;
    pthread_mutex_unlock(&x->mu);
  }
  pthread_mutex_unlock(&x->attach_mu);
  return rc;
}

int dmem_xen_guest_stats(dmem_xen_stats *out, const dmem_xen_guest *x)
{
  if (!out || !x)
    return DMEM_EINVAL;
  if (out->version != DMEM_XEN_STATS_VERSION)
    return DMEM_EVERSION;
  dmem_xen_guest *m = (dmem_xen_guest *)x; /* the lock, not the data */
  pthread_mutex_lock(&m->mu);
  *out = x->st;
  pthread_mutex_unlock(&m->mu);
  out->version = DMEM_XEN_STATS_VERSION;
  return 0;
}

int dmem_xen_guest_share_range(dmem_xen_guest *source, dmem_xen_guest *clone, uint64_t first,
                               uint64_t last)
{
  if (!source || !clone || first > last || last >= source->npages || last >= clone->npages)
    return DMEM_EINVAL;
  if (!source->share || !clone->share)
    return DMEM_EINVAL;
  if (source->calls->memshr_range_share(source->hv, source->domid, clone->domid, first, last) != 0)
    return dmem__xen_fail(clone, "xc_memshr_range_share", first, errno);
  return 0;
}

int dmem_xen_guest_share_grefs(dmem_xen_guest *source, uint32_t source_gref, dmem_xen_guest *client,
                               uint32_t client_gref)
{
  if (!source || !client || !source->share || !client->share)
    return DMEM_EINVAL;
  const dmem_xen_calls *c = source->calls;
  uint64_t sh, ch;
  if (c->memshr_nominate_gref(source->hv, source->domid, source_gref, &sh) != 0)
    return dmem__xen_fail(source, "xc_memshr_nominate_gref", source_gref, errno);
  if (c->memshr_nominate_gref(client->hv, client->domid, client_gref, &ch) != 0)
    return dmem__xen_fail(client, "xc_memshr_nominate_gref", client_gref, errno);
  if (c->memshr_share_grefs(source->hv, source->domid, source_gref, sh, client->domid, client_gref,
                            ch) != 0)
    return dmem__xen_fail(client, "xc_memshr_share_grefs", client_gref, errno);
  pthread_mutex_lock(&client->mu);
  client->st.shares++;
  pthread_mutex_unlock(&client->mu);
  return 0;
}
