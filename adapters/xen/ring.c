/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The vm_event rings: mem_paging's, whose requests are the guest's
 * page-ins, and mem_sharing's, whose requests say that a copy-on-write
 * break found Xen without memory. Both are set up in xenpaging's order (map
 * the ring page, enable, bind the event channel, initialise the ring, take
 * the page out of the guest's physmap); one service answers both. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* vm_event.h keeps the ring's types for tools. */
#define __XEN_TOOLS__ 1
#include <xenctrl.h>
#include <xen/hvm/params.h>
#include <xen/vm_event.h>

#include "xen_internal.h"

#define BACK(r) ((vm_event_back_ring_t *)(r)->back)

static int ring_fail(dmem_xen_guest *x, int e, const char *what)
{
  dmem__xen_msg(x, "dom%u: %s: %s", (unsigned)x->domid, what, strerror(e));
  return dmem__xen_err(e);
}

/* Enables Xen's side of a ring: the remote port in *remote. */
typedef int (*ring_enable_fn)(void *hv, uint32_t domid, uint32_t *remote);

static int ring_open(dmem_xen_guest *x, xen_ring *r, ring_enable_fn enable, const char *call)
{
  const dmem_xen_calls *c = x->calls;
  uint64_t pfn = 0;
  if (c->hvm_param_get(x->hv, x->domid, r->param, &pfn) != 0)
    return ring_fail(x, errno, "reading the ring's HVM parameter");
  if (pfn == 0) {
    dmem__xen_msg(x, "dom%u: the toolstack set no %s ring page (HVM_PARAM_%s_RING_PFN)",
                  (unsigned)x->domid, r->name,
                  r->param == HVM_PARAM_PAGING_RING_PFN ? "PAGING" : "SHARING");
    return DMEM_ENOTSUP;
  }
  r->gfn = pfn;
  r->page = c->map(x->hv, x->domid, PROT_READ | PROT_WRITE, pfn, 1);
  if (!r->page && (errno == EINVAL || errno == ENOENT) &&
      c->populate_physmap(x->hv, x->domid, pfn) == 0) {
    /* A pager that ended without putting the page back (xenpaging does
     * the same): give it memory again and map it. */
    r->page = c->map(x->hv, x->domid, PROT_READ | PROT_WRITE, pfn, 1);
  }
  if (!r->page) {
    int e = errno;
    /* A running pager took the page out of the physmap. */
    dmem__xen_msg(x,
                  "dom%u: mapping the %s ring page (gfn %#llx): %s (is another pager or "
                  "sharing helper running for this guest?)",
                  (unsigned)x->domid, r->name, (unsigned long long)pfn, strerror(e));
    return e == EINVAL || e == ENOENT ? DMEM_EBUSY : dmem__xen_err(e);
  }
  uint32_t remote = 0;
  if (enable(x->hv, x->domid, &remote) != 0) {
    int e = errno;
    if (e == EBUSY || (e == EINVAL && r->param == HVM_PARAM_SHARING_RING_PFN)) {
      dmem__xen_msg(x, "dom%u: %s: another %s is enabled for this guest", (unsigned)x->domid, call,
                    r->param == HVM_PARAM_PAGING_RING_PFN ? "pager" : "sharing ring");
      return DMEM_EBUSY;
    }
    if (e == ENODEV || e == EXDEV || e == EMLINK || e == ENOSYS) {
      dmem__xen_msg(x, "dom%u: %s: %s (%s)", (unsigned)x->domid, call, strerror(e),
                    e == EMLINK  ? "a passed-through device excludes paging"
                    : e == EXDEV ? "a populate-on-demand guest cannot be paged"
                                 : "this needs an HVM guest with HAP");
      return DMEM_ENOTSUP;
    }
    return ring_fail(x, e, call);
  }
  r->enabled = 1;
  int port = c->evtchn_bind(x->hv, x->domid, remote);
  if (port < 0)
    return ring_fail(x, errno, "binding a ring's event channel");
  r->port = port;
  vm_event_back_ring_t *back = dmem__calloc(&x->alloc, sizeof *back);
  if (!back)
    return ring_fail(x, ENOMEM, "ring");
  SHARED_RING_INIT((vm_event_sring_t *)r->page);
  BACK_RING_INIT(back, (vm_event_sring_t *)r->page, XC_PAGE_SIZE);
  r->back = back;
  /* The guest must not see (or free) the ring page. */
  if (c->decrease_reservation(x->hv, x->domid, pfn) != 0)
    return ring_fail(x, errno, "removing a ring page from the guest's physmap");
  r->removed = 1;
  return 0;
}

static void ring_close(dmem_xen_guest *x, xen_ring *r, int (*disable)(void *hv, uint32_t domid))
{
  const dmem_xen_calls *c = x->calls;
  if (r->enabled)
    (void)disable(x->hv, x->domid);
  r->enabled = 0;
  if (r->port >= 0)
    (void)c->evtchn_unbind(x->hv, (uint32_t)r->port);
  r->port = -1;
  if (r->page)
    (void)c->unmap(x->hv, r->page, 1);
  r->page = NULL;
  /* As xenpaging does: the page goes back, so that a later pager can map
   * it again. */
  if (r->removed)
    (void)c->populate_physmap(x->hv, x->domid, r->gfn);
  r->removed = 0;
  dmem__free(&x->alloc, r->back, sizeof(vm_event_back_ring_t));
  r->back = NULL;
}

int dmem__xen_rings_init(dmem_xen_guest *x)
{
  x->paging = (xen_ring){"paging", HVM_PARAM_PAGING_RING_PFN, NULL, 0, -1, 0, 0, NULL};
  x->sharing = (xen_ring){"sharing", HVM_PARAM_SHARING_RING_PFN, NULL, 0, -1, 0, 0, NULL};
  int rc = ring_open(x, &x->paging, x->calls->paging_enable, "xc_mem_paging_enable");
  if (rc == 0 && x->share)
    rc = ring_open(x, &x->sharing, x->calls->memshr_ring_enable, "xc_memshr_ring_enable");
  return rc;
}

void dmem__xen_rings_fini(dmem_xen_guest *x)
{
  if (!x->calls)
    return; /* closed before the table was chosen */
  ring_close(x, &x->sharing, x->calls->memshr_ring_disable);
  ring_close(x, &x->paging, x->calls->paging_disable);
}

int dmem_xen_guest_fd(const dmem_xen_guest *x)
{
  return x ? x->calls->evtchn_fd(x->hv) : -1;
}

/* ---------------------------------------------------------- ring indexes
 * Xen's io/ring.h reads and writes the indexes of the shared ring with
 * plain accesses between barriers (xen_rmb, xen_wmb). Here the back end's
 * two do the same with atomics of the barriers' orders: the requests'
 * producer index read with acquire (then the slots it covers are Xen's
 * whole requests), the responses' written with release (after the slots
 * it covers). The compiler can neither tear nor move them, and
 * ThreadSanitizer, which does not model bare fences, sees the hand-over
 * (tests/xensim.c, the simulated hypervisor, does the same on its side). */

/* Requests on the ring not yet taken (RING_HAS_UNCONSUMED_REQUESTS). */
static unsigned ring_requests(const vm_event_back_ring_t *b)
{
  RING_IDX prod = __atomic_load_n(&b->sring->req_prod, __ATOMIC_ACQUIRE);
  unsigned req = prod - b->req_cons;
  unsigned room = RING_SIZE(b) - (b->req_cons - b->rsp_prod_pvt);
  return req < room ? req : room;
}

/* Publishes the responses put so far (RING_PUSH_RESPONSES; the event
 * channel is notified whatever rsp_event says). */
static void ring_push_responses(vm_event_back_ring_t *b)
{
  __atomic_store_n(&b->sring->rsp_prod, b->rsp_prod_pvt, __ATOMIC_RELEASE);
}

/* Puts the response to a request on ring r. Every request gets one, also
 * when no vCPU waits (a foreign mapping's request, a drop notice): the
 * response frees the slot. */
static void put_response(xen_ring *r, uint32_t reason, const xen_pending *p, int *pushed)
{
  vm_event_back_ring_t *back = BACK(r);
  vm_event_response_t rsp;
  memset(&rsp, 0, sizeof rsp);
  rsp.version = VM_EVENT_INTERFACE_VERSION;
  rsp.reason = reason;
  rsp.vcpu_id = p->vcpu;
  rsp.flags = p->flags & VM_EVENT_FLAG_VCPU_PAUSED;
  if (reason == VM_EVENT_REASON_MEM_SHARING) {
    rsp.u.mem_sharing.gfn = p->gfn;
  } else {
    rsp.u.mem_paging.gfn = p->gfn;
    rsp.u.mem_paging.flags = p->pflags & MEM_PAGING_DROP_PAGE;
  }
  *RING_GET_RESPONSE(back, back->rsp_prod_pvt) = rsp;
  back->rsp_prod_pvt++;
  *pushed = 1;
}

static void respond(dmem_xen_guest *x, const xen_pending *p, int *pushed)
{
  put_response(&x->paging, VM_EVENT_REASON_MEM_PAGING, p, pushed);
}

/* serve(): the request waits for a later poll, and nothing failed. */
#define XEN_LATER 1

/* Answers one request. @return 0 when answered; XEN_LATER or DMEM_EIO when
 * it must wait for a later poll (DMEM_EIO: something failed). */
static int serve(dmem_xen_guest *x, const xen_pending *p, int *pushed)
{
  const dmem_xen_calls *c = x->calls;
  if (p->gfn >= x->npages) {
    dmem__xen_msg(x, "dom%u: ring request for gfn %#llx beyond %llu pages", (unsigned)x->domid,
                  (unsigned long long)p->gfn, (unsigned long long)x->npages);
    respond(x, p, pushed); /* let the vCPU go; Xen handles the access */
    return 0;
  }
  if (p->pflags & MEM_PAGING_DROP_PAGE) {
    /* The guest gave the page back; nothing is to be loaded. */
    pthread_mutex_lock(&x->mu);
    x->pstate[p->gfn] = XP_GUEST;
    x->st.dropped++;
    pthread_mutex_unlock(&x->mu);
    respond(x, p, pushed);
    return 0;
  }
  if (p->pflags & MEM_PAGING_EVICT_FAIL) {
    /* Nominated, touched before eviction: the page still has its memory.
     * (Under the lock, so that op_evict's nomination is recorded first.) */
    pthread_mutex_lock(&x->mu);
    int r = c->paging_prep(x->hv, x->domid, p->gfn), e = errno;
    if (r == 0 || e == ENOENT) {
      x->pstate[p->gfn] = XP_GUEST;
      x->st.evict_fail++;
    }
    pthread_mutex_unlock(&x->mu);
    if (r != 0 && e != ENOENT) {
      dmem__xen_msg(x, "dom%u gfn %#llx: xc_mem_paging_prep: %s", (unsigned)x->domid,
                    (unsigned long long)p->gfn, strerror(e));
      return DMEM_EIO;
    }
    respond(x, p, pushed);
    return 0;
  }
  /* attach_mu keeps the VM from being detached (and freed) while the
   * engine serves the fault; detach takes it too, never an operation. */
  pthread_mutex_lock(&x->attach_mu);
  pthread_mutex_lock(&x->mu);
  dmem_vm *vm = x->vm;
  int evicted = x->pstate[p->gfn] == XP_EVICTED;
  int evicting = x->evicting == p->gfn + 1;
  pthread_mutex_unlock(&x->mu);
  if (evicting) { /* paged out this instant, not yet recorded */
    pthread_mutex_unlock(&x->attach_mu);
    return XEN_LATER;
  }
  if (evicted) {
    /* The engine rebuilds the page and loads it through op_install. */
    int rc = vm ? dmem_vm_fault(vm, p->gfn) : DMEM_EINVAL;
    pthread_mutex_unlock(&x->attach_mu);
    if (rc) {
      dmem__xen_msg(x, "dom%u gfn %#llx: page-in: %s", (unsigned)x->domid,
                    (unsigned long long)p->gfn, vm ? dmem_err_name(rc) : "no VM attached");
      return DMEM_EIO;
    }
    /* The guest touched it: referenced, as log-dirty cannot tell. */
    pthread_mutex_lock(&x->mu);
    x->st.faults++;
    x->touched[p->gfn / (8 * sizeof(unsigned long))] |= 1ul
                                                        << (p->gfn % (8 * sizeof(unsigned long)));
    pthread_mutex_unlock(&x->mu);
  } else {
    pthread_mutex_unlock(&x->attach_mu);
  }
  /* Not evicted (any more): an earlier request for the same page brought
   * it back, and Xen lets the vCPU retry. */
  respond(x, p, pushed);
  return 0;
}

static int keep_pending(dmem_xen_guest *x, const xen_pending *p)
{
  if (x->npending == x->cap_pending) {
    size_t cap = x->cap_pending ? 2 * x->cap_pending : 16;
    xen_pending *n = dmem__malloc(&x->alloc, cap * sizeof *n);
    if (!n)
      return DMEM_ENOMEM;
    if (x->npending)
      memcpy(n, x->pending, x->npending * sizeof *n);
    dmem__free(&x->alloc, x->pending, x->cap_pending * sizeof *n);
    x->pending = n;
    x->cap_pending = cap;
  }
  x->pending[x->npending++] = *p;
  dmem__xen_count(x, &x->st.retries);
  return 0;
}

/* Pushes the responses put on ring r and kicks its event channel. */
static int push(dmem_xen_guest *x, xen_ring *r)
{
  ring_push_responses(BACK(r)); /* Xen may not ask; a spare notification costs nothing */
  if (x->calls->evtchn_notify(x->hv, (uint32_t)r->port) != 0)
    return ring_fail(x, errno, "xenevtchn_notify");
  return 0;
}

/* ENOMEM notices: a guest's write to a shared page needs a page of its own
 * and Xen has none; its vCPU waits. The owner's hook makes memory (or the
 * engine scans the VM once, which may page out cold pages), then the vCPU
 * retries; if memory is still short, another notice follows. */
static int serve_sharing(dmem_xen_guest *x, int *pushed)
{
  xen_ring *r = &x->sharing;
  vm_event_back_ring_t *back = BACK(r);
  while (ring_requests(back)) {
    vm_event_request_t req;
    RING_COPY_REQUEST(back, back->req_cons, &req);
    back->req_cons++;
    xen_pending p = {req.u.mem_sharing.gfn, req.flags, 0, req.vcpu_id};
    pthread_mutex_lock(&x->mu);
    x->st.requests++;
    x->st.enomem++;
    dmem_engine *engine = x->engine;
    pthread_mutex_unlock(&x->mu);
    if (req.version == VM_EVENT_INTERFACE_VERSION && req.reason == VM_EVENT_REASON_MEM_SHARING) {
      if (x->on_enomem)
        x->on_enomem(x, p.gfn, x->enomem_ud);
      else if (engine)
        (void)dmem_engine_scan(NULL, engine, (size_t)x->npages);
    }
    put_response(r, VM_EVENT_REASON_MEM_SHARING, &p, pushed);
  }
  return 0;
}

/* Serves one request, or keeps it for the next poll: counts it in *n when
 * answered, sets *result when it failed. */
static void answer(dmem_xen_guest *x, const xen_pending *p, int *pushed, unsigned *n, int *result)
{
  int rc = serve(x, p, pushed);
  if (rc == 0) {
    (*n)++;
    return;
  }
  if (rc != XEN_LATER)
    *result = DMEM_EIO;
  if (keep_pending(x, p) != 0)
    *result = DMEM_ENOMEM;
}

int dmem_xen_guest_poll(dmem_xen_guest *x, int timeout_ms, unsigned *served)
{
  if (served)
    *served = 0;
  if (!x || !x->paging.back)
    return DMEM_EINVAL;
  const dmem_xen_calls *c = x->calls;
  if (timeout_ms != 0) {
    struct pollfd pfd = {.fd = c->evtchn_fd(x->hv), .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
      return ring_fail(x, errno, "poll on the event channel");
  }
  /* Every pending port (paging's, sharing's): the rings are read below
   * whichever it was. */
  for (int port; (port = c->evtchn_pending(x->hv)) >= 0;)
    if (c->evtchn_unmask(x->hv, (uint32_t)port) != 0)
      return ring_fail(x, errno, "xenevtchn_unmask");

  int pushed = 0, result = 0;
  unsigned n = 0;
  /* Requests a failure left unanswered go first. */
  size_t old = x->npending, old_cap = x->cap_pending;
  xen_pending *retry = NULL;
  if (old) {
    retry = x->pending;
    x->pending = NULL;
    x->npending = x->cap_pending = 0;
  }
  for (size_t i = 0; i < old; i++)
    answer(x, &retry[i], &pushed, &n, &result);
  /* Made with the caller's allocator (keep_pending), not malloc. */
  dmem__free(&x->alloc, retry, old_cap * sizeof *retry);

  vm_event_back_ring_t *back = BACK(&x->paging);
  while (ring_requests(back)) {
    vm_event_request_t req;
    RING_COPY_REQUEST(back, back->req_cons, &req);
    back->req_cons++;
    dmem__xen_count(x, &x->st.requests);
    xen_pending p = {req.u.mem_paging.gfn, req.flags, req.u.mem_paging.flags, req.vcpu_id};
    if (req.version != VM_EVENT_INTERFACE_VERSION || req.reason != VM_EVENT_REASON_MEM_PAGING) {
      dmem__xen_msg(x, "dom%u: ring request of version %#x, reason %u ignored", (unsigned)x->domid,
                    req.version, req.reason);
      respond(x, &p, &pushed);
      continue;
    }
    answer(x, &p, &pushed, &n, &result);
  }
  if (pushed && push(x, &x->paging) != 0)
    return DMEM_ESYS;
  if (x->sharing.back) {
    int spushed = 0;
    (void)serve_sharing(x, &spushed);
    if (spushed && push(x, &x->sharing) != 0)
      return DMEM_ESYS;
  }
  if (served)
    *served = n;
  return result;
}

static void *ring_main(void *arg)
{
  dmem_xen_guest *x = arg;
  while (!__atomic_load_n(&x->stop, __ATOMIC_ACQUIRE))
    (void)dmem_xen_guest_poll(x, 50, NULL);
  return NULL;
}

int dmem_xen_guest_start(dmem_xen_guest *x)
{
  if (!x || !x->paging.back)
    return DMEM_EINVAL;
  if (x->running)
    return DMEM_EBUSY;
  x->stop = 0;
  int rc = dmem__thread_start(&x->thread, ring_main, x, x->errmsg, "the ring thread");
  if (rc)
    return rc;
  x->running = 1;
  return 0;
}

void dmem_xen_guest_stop(dmem_xen_guest *x)
{
  if (!x || !x->running)
    return;
  __atomic_store_n(&x->stop, 1, __ATOMIC_RELEASE);
  pthread_join(x->thread, NULL);
  x->running = 0;
}
