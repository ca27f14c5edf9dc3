/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* A simulated Xen hypervisor for the Xen adapter's tests: a dmem_xen_calls
 * table over in-memory domains that keeps the rules xenctrl.h and Xen's
 * mem_sharing and mem_paging code document:
 *
 *  - sharing and paging work only for HVM guests with HAP (ENODEV);
 *    sharing calls need xc_memshr_control first (EINVAL); paging calls
 *    need xc_mem_paging_enable first (ENODEV), and one pager (EBUSY);
 *  - xc_memshr_nominate_gfn returns a handle (the same one while it stays
 *    valid); a page mapped by someone else cannot be nominated (E2BIG);
 *    a write to a nominated or shared page gives the writer a private copy
 *    and invalidates its handle; xc_memshr_share_gfns fails with errno 10
 *    (source handle) or 9 (client handle) on a stale handle, and otherwise
 *    points the client at the source's frame (copy-on-write);
 *  - paging: nominate (RAM, not mapped, else EBUSY) -> paging-out, read-only
 *    to the guest; evict (only paging-out, not mapped, else EBUSY) -> paged,
 *    memory freed; a guest touch of a paged page, or a write to a paging-out
 *    one, turns it paging-in, pauses the vCPU and puts a request on the
 *    vm_event ring (MEM_PAGING_EVICT_FAIL for the paging-out case); prep
 *    (paging-in or paged, else ENOENT; EINVAL without memory) and load
 *    (allocates and fills an evicted page) make it RAM; the pager's
 *    response on the ring, seen when it notifies the event channel or
 *    calls xc_mem_paging_resume, unpauses the vCPU;
 *  - log-dirty: writes set bits that CLEAN hands over and clears;
 *  - a copy-on-write break without free memory pauses the vCPU and puts a
 *    request on the sharing ring (xc_memshr_ring_enable), or crashes the
 *    guest when there is no such ring.
 *
 * Guests run as calls of xs_access() (one per vCPU, or -1 for a foreign
 * access by the VMM). A vCPU that waits for the pager either calls the
 * service hook (single-threaded tests: the hook runs dmem_xen_guest_poll) or
 * sleeps until the response arrives (threaded tests). */
#ifndef DMEM_TEST_XENSIM_H
#define DMEM_TEST_XENSIM_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/xen.h>

typedef struct xensim xensim;

/* Page types, as xs_type() reports them. */
enum { XS_HOLE, XS_RAM, XS_SHARED, XS_PAGING_OUT, XS_PAGED, XS_PAGING_IN };

/* The calls a test can hook or fail. */
typedef enum xs_call {
  XS_NOMINATE_GFN,
  XS_SHARE_GFNS,
  XS_PAGING_NOMINATE,
  XS_PAGING_EVICT,
  XS_PAGING_PREP,
  XS_PAGING_LOAD,
  XS_MAP,
  XS_LOGDIRTY,
  XS_NCALLS
} xs_call;

xensim *xs_create(uint64_t seed);
void xs_destroy(xensim *s);
const dmem_xen_calls *xs_calls(void);

/* A domain with @npages zero pages and a ring page after them (named by
 * HVM_PARAM_PAGING_RING_PFN). @return 0 or -1. */
int xs_domain(xensim *s, uint32_t domid, uint64_t npages, int hvm, int hap);
/* Sets HVM_PARAM_PAGING_RING_PFN (0: none). */
void xs_set_ring_param(xensim *s, uint32_t domid, uint64_t gfn);
/* Host side, no rules: a RAM page holding @content. */
void xs_load(xensim *s, uint32_t domid, uint64_t gfn, const void *content);
/* What the guest would read, without faults; -1 for a page without memory. */
int xs_peek(xensim *s, uint32_t domid, uint64_t gfn, void *buf);
int xs_type(xensim *s, uint32_t domid, uint64_t gfn);
/* Guest pages sharing this page's frame (1 when private). */
unsigned xs_sharers(xensim *s, uint32_t domid, uint64_t gfn);
/* Grant reference @gref of the domain names page @gfn. */
void xs_grant(xensim *s, uint32_t domid, uint32_t gref, uint64_t gfn);
/* The guest gives a paged or paging-out page back (balloon): a
 * MEM_PAGING_DROP_PAGE notice goes on the ring. */
int xs_drop(xensim *s, uint32_t domid, uint64_t gfn);

/* A guest access by @vcpu (-1: the VMM's foreign access). Waits for the
 * pager when the page is not there. @return 0, or -1 when the wait timed
 * out (the pager never answered). */
int xs_access(xensim *s, uint32_t domid, int vcpu, uint64_t gfn, int write, size_t off, void *data,
              size_t len);
/* A touch that raises the page-in request and returns at once (the vCPU
 * stays paused): 1 when a request was raised, 0 when the page was there. */
int xs_touch_nowait(xensim *s, uint32_t domid, int vcpu, uint64_t gfn, int write);
/* Is the vCPU paused, waiting for the pager? */
int xs_paused(xensim *s, uint32_t domid, int vcpu);

/* Xen's free memory, in frames, for copy-on-write breaks and page-ins
 * (-1: no limit, the default). A guest write to a shared page that finds
 * none pauses the vCPU and puts an ENOMEM request on the sharing ring, or,
 * without that ring, crashes the guest (xs_crashed). */
void xs_set_free(xensim *s, long frames);
int xs_crashed(xensim *s, uint32_t domid);
/* HVM_PARAM_SHARING_RING_PFN (0: none; by default the page after the
 * paging ring's). */
void xs_set_sharing_ring_param(xensim *s, uint32_t domid, uint64_t gfn);

/* Single-threaded waiting: the hook serves the ring. */
void xs_set_service(xensim *s, void (*fn)(void *), void *ud);
/* Runs @fn before each call of @which (once per call; NULL removes). */
void xs_set_hook(xensim *s, xs_call which, void (*fn)(void *), void *ud);
/* In an XS_MAP hook: the page about to be mapped; in an after-evict
 * hook: the page just paged out. */
uint64_t xs_hook_gfn(xensim *s);
/* Runs @fn once, right after the next successful XS_PAGING_EVICT: the page
 * is paged out, and the pager has not yet seen the call return. */
void xs_set_after_evict(xensim *s, void (*fn)(void *), void *ud);
/* Each call of @which fails with probability @p and errno @err, changing
 * nothing. */
void xs_fail(xensim *s, xs_call which, double p, int err);
/* Calls of @which made, and requests put on rings / responses consumed. */
uint64_t xs_count(xensim *s, xs_call which);
uint64_t xs_requests(xensim *s);
uint64_t xs_responses(xensim *s);
/* The number of vCPUs (0..XS_MAXVCPU-1) a domain has. */
#define XS_MAXVCPU 4

#endif
