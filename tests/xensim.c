/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The simulated hypervisor (see xensim.h). One mutex guards everything; a
 * condition variable wakes vCPUs that wait for the pager. */
#include "config.h"

#include "xensim.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define __XEN_TOOLS__ 1
#include <xenctrl.h>
#include <xen/hvm/params.h>
#include <xen/vm_event.h>

#define PAGE 4096
#define MAXDOM 8
#define MAXMAP 64
#define MAXGREF 64
#define REMOTE_PORT 17
#define REMOTE_SHARING_PORT 18
#define WAIT_SECONDS 20

typedef struct frame {
  uint8_t data[PAGE];
  unsigned refs;   /* guest pages pointing here */
  uint64_t handle; /* sharing handle; 0: not nominated */
} frame;

typedef struct page {
  int type;
  frame *f; /* NULL for holes and paged pages */
  unsigned maps;
} page;

typedef struct dom {
  int live;
  uint32_t id;
  uint64_t npages; /* guest RAM; the ring page is gfn npages */
  int hvm, hap;
  int memshr, paging, logdirty;
  uint64_t ring_param;
  page *p;
  unsigned long *dirty;
  frame *ring_frame;
  vm_event_front_ring_t front;
  int front_ok;
  uint64_t sring_param;  /* HVM_PARAM_SHARING_RING_PFN: gfn npages + 1 */
  frame *sring_frame;
  vm_event_front_ring_t sfront;
  int sfront_ok;         /* the sharing (ENOMEM) ring is enabled */
  int ring_hole, sring_hole; /* ring pages out of the physmap */
  int crashed;
  int paused[XS_MAXVCPU];
  uint64_t grefs[MAXGREF]; /* gfn + 1; 0: invalid */
} dom;

typedef struct mapping {
  void *addr;
  dom *d;
  uint64_t gfn;
  int copy; /* a snapshot we allocated */
} mapping;

struct xensim {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  dom doms[MAXDOM];
  mapping maps[MAXMAP];
  uint64_t next_handle;
  int efd;
  int bound;
  void (*service)(void *);
  void *service_ud;
  void (*hook[XS_NCALLS])(void *);
  void *hook_ud[XS_NCALLS];
  double fail_p[XS_NCALLS];
  int fail_err[XS_NCALLS];
  uint64_t calls[XS_NCALLS];
  uint64_t rng;
  uint64_t requests, responses;
  long free_frames; /* < 0: no limit */
  uint64_t hook_gfn; /* the page of the foreign map whose hook runs */
  void (*after_evict)(void *);
  void *after_evict_ud;
};

/* The calls get no context but hv; the tests pass the sim itself. */
#define SIM(hv) ((xensim *)(hv))

static uint64_t rnd(xensim *s)
{
  uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static dom *find_dom(xensim *s, uint32_t id)
{
  for (int i = 0; i < MAXDOM; i++)
    if (s->doms[i].live && s->doms[i].id == id)
      return &s->doms[i];
  return NULL;
}

static frame *new_frame(void)
{
  frame *f = calloc(1, sizeof *f);
  if (f)
    f->refs = 1;
  return f;
}

/* A frame from Xen's heap, which may be empty (xs_set_free). */
static frame *alloc_frame(xensim *s)
{
  if (s->free_frames == 0)
    return NULL;
  frame *f = new_frame();
  if (f && s->free_frames > 0)
    s->free_frames--;
  return f;
}

static void put_frame(xensim *s, frame *f)
{
  if (f && --f->refs == 0) {
    free(f);
    if (s->free_frames >= 0)
      s->free_frames++;
  }
}

/* Entry of every call: the hook (unlocked), the failure dice, the lock. */
static int enter(xensim *s, xs_call c)
{
  if (c < XS_NCALLS) {
    void (*fn)(void *) = NULL;
    void *ud = NULL;
    pthread_mutex_lock(&s->mu);
    fn = s->hook[c];
    ud = s->hook_ud[c];
    s->hook[c] = NULL; /* once */
    pthread_mutex_unlock(&s->mu);
    if (fn)
      fn(ud);
  }
  pthread_mutex_lock(&s->mu);
  if (c < XS_NCALLS) {
    s->calls[c]++;
    if (s->fail_p[c] > 0 && (double)(rnd(s) >> 11) / 9007199254740992.0 < s->fail_p[c]) {
      int e = s->fail_err[c];
      pthread_mutex_unlock(&s->mu);
      errno = e;
      return -1;
    }
  }
  return 0;
}

static int leave(xensim *s, int rc, int err)
{
  pthread_mutex_unlock(&s->mu);
  if (rc < 0)
    errno = err;
  return rc;
}

static int valid_gfn(const dom *d, uint64_t gfn) { return gfn < d->npages; }

/* A write to a nominated or shared page: the writer gets its own copy (or
 * keeps the frame, when it was the last user), and the handle is gone. */
static int cow_break(xensim *s, page *pg)
{
  frame *f = pg->f;
  if (f->refs > 1) {
    frame *n = alloc_frame(s);
    if (!n)
      return -1;
    memcpy(n->data, f->data, PAGE);
    f->refs--;
    pg->f = n;
  } else {
    f->handle = 0;
  }
  pg->type = XS_RAM;
  return 0;
}

/* ---------------------------------------------------------------- the calls */

static int c_domain_info(void *hv, uint32_t domid, dmem_xen_domain *out)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  dom *d = find_dom(s, domid);
  if (!d)
    return leave(s, -1, ESRCH);
  out->hvm = d->hvm;
  out->hap = d->hap;
  out->dying = 0;
  out->npages = d->npages;
  return leave(s, 0, 0);
}

/* The domain of a sharing or paging call (locked): NULL with *err ESRCH,
 * or ENODEV when it is not HVM with HAP. */
static dom *hap_dom(xensim *s, uint32_t domid, int *err)
{
  dom *d = find_dom(s, domid);
  *err = !d ? ESRCH : !d->hvm || !d->hap ? ENODEV : 0;
  return *err ? NULL : d;
}

/* Xen's side of a vm_event ring on its page. */
static void ring_front(vm_event_front_ring_t *front, frame *f)
{
  SHARED_RING_INIT((vm_event_sring_t *)f->data);
  FRONT_RING_INIT(front, (vm_event_sring_t *)f->data, PAGE);
}

/* Common checks of the sharing calls. */
static int memshr_check(const dom *d)
{
  if (!d)
    return ESRCH;
  if (!d->hvm || !d->hap)
    return ENODEV;
  if (!d->memshr)
    return EINVAL;
  return 0;
}

static int c_memshr_control(void *hv, uint32_t domid, int enable)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  int e;
  dom *d = hap_dom(s, domid, &e);
  if (!d)
    return leave(s, -1, e);
  d->memshr = enable != 0;
  return leave(s, 0, 0);
}

/* xc_memshr_ring_enable: "ENOSYS if no guest gfn has been specified to
 * host the ring", EINVAL if enabled already. */
static int c_memshr_ring_enable(void *hv, uint32_t domid, uint32_t *port)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  int e;
  dom *d = hap_dom(s, domid, &e);
  if (!d)
    return leave(s, -1, e);
  if (d->sfront_ok)
    return leave(s, -1, EINVAL);
  if (d->sring_param != d->npages + 1)
    return leave(s, -1, ENOSYS);
  if (d->sring_hole)
    return leave(s, -1, EINVAL);
  ring_front(&d->sfront, d->sring_frame);
  d->sfront_ok = 1;
  *port = REMOTE_SHARING_PORT;
  return leave(s, 0, 0);
}

static int c_memshr_ring_disable(void *hv, uint32_t domid)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  dom *d = find_dom(s, domid);
  if (!d)
    return leave(s, -1, ESRCH);
  if (!d->sfront_ok)
    return leave(s, -1, EINVAL);
  d->sfront_ok = 0;
  return leave(s, 0, 0);
}

/* Nominates (locked). */
static int nominate(xensim *s, dom *d, uint64_t gfn, uint64_t *handle)
{
  page *pg = &d->p[gfn];
  if (pg->type == XS_SHARED) {
    *handle = pg->f->handle;
    return 0;
  }
  if (pg->type != XS_RAM)
    return EINVAL;
  if (pg->maps)
    return E2BIG;
  pg->f->handle = ++s->next_handle;
  pg->type = XS_SHARED;
  *handle = pg->f->handle;
  return 0;
}

static int c_nominate_gfn(void *hv, uint32_t domid, uint64_t gfn, uint64_t *handle)
{
  xensim *s = SIM(hv);
  if (enter(s, XS_NOMINATE_GFN))
    return -1;
  dom *d = find_dom(s, domid);
  int e = memshr_check(d);
  if (!e && !valid_gfn(d, gfn))
    e = EINVAL;
  if (!e)
    e = nominate(s, d, gfn, handle);
  return leave(s, e ? -1 : 0, e);
}

static int gref_gfn(const dom *d, uint32_t gref, uint64_t *gfn)
{
  if (gref >= MAXGREF || !d->grefs[gref])
    return EINVAL;
  *gfn = d->grefs[gref] - 1;
  return 0;
}

static int c_nominate_gref(void *hv, uint32_t domid, uint32_t gref, uint64_t *handle)
{
  xensim *s = SIM(hv);
  if (enter(s, XS_NOMINATE_GFN))
    return -1;
  dom *d = find_dom(s, domid);
  uint64_t gfn = 0;
  int e = memshr_check(d);
  if (!e)
    e = gref_gfn(d, gref, &gfn);
  if (!e)
    e = nominate(s, d, gfn, handle);
  return leave(s, e ? -1 : 0, e);
}

/* Shares (locked): documented errors as errno 10 and 9. */
static int share(xensim *s, dom *sd, uint64_t sgfn, uint64_t sh, dom *cd, uint64_t cgfn, uint64_t ch)
{
  page *sp = &sd->p[sgfn], *cp = &cd->p[cgfn];
  if (sp->type != XS_SHARED || sp->f->handle != sh || sh == 0)
    return -XENMEM_SHARING_OP_S_HANDLE_INVALID;
  if (cp->type != XS_SHARED || cp->f->handle != ch || ch == 0)
    return -XENMEM_SHARING_OP_C_HANDLE_INVALID;
  if (sp->f == cp->f)
    return 0;
  if (cp->maps)
    return E2BIG;
  put_frame(s, cp->f);
  cp->f = sp->f;
  sp->f->refs++;
  return 0;
}

static int c_share_gfns(void *hv, uint32_t sdom, uint64_t sgfn, uint64_t sh, uint32_t cdom,
                        uint64_t cgfn, uint64_t ch)
{
  xensim *s = SIM(hv);
  if (enter(s, XS_SHARE_GFNS))
    return -1;
  dom *sd = find_dom(s, sdom), *cd = find_dom(s, cdom);
  int e = memshr_check(sd);
  if (!e)
    e = memshr_check(cd);
  if (!e && (!valid_gfn(sd, sgfn) || !valid_gfn(cd, cgfn)))
    e = EINVAL;
  if (!e)
    e = share(s, sd, sgfn, sh, cd, cgfn, ch);
  return leave(s, e ? -1 : 0, e);
}

static int c_share_grefs(void *hv, uint32_t sdom, uint32_t sgref, uint64_t sh, uint32_t cdom,
                         uint32_t cgref, uint64_t ch)
{
  xensim *s = SIM(hv);
  if (enter(s, XS_SHARE_GFNS))
    return -1;
  dom *sd = find_dom(s, sdom), *cd = find_dom(s, cdom);
  uint64_t sgfn = 0, cgfn = 0;
  int e = memshr_check(sd);
  if (!e)
    e = memshr_check(cd);
  if (!e)
    e = gref_gfn(sd, sgref, &sgfn);
  if (!e)
    e = gref_gfn(cd, cgref, &cgfn);
  if (!e)
    e = share(s, sd, sgfn, sh, cd, cgfn, ch);
  return leave(s, e ? -1 : 0, e);
}

static int c_range_share(void *hv, uint32_t sdom, uint32_t cdom, uint64_t first, uint64_t last)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  dom *sd = find_dom(s, sdom), *cd = find_dom(s, cdom);
  int e = memshr_check(sd);
  if (!e)
    e = memshr_check(cd);
  if (!e && (sd->npages != cd->npages || first > last || last >= sd->npages))
    e = EINVAL;
  /* Like nominating both pages of each gfn and sharing them; pages that
   * cannot be nominated are skipped. Xen does not look at the bytes. */
  for (uint64_t g = first; !e && g <= last; g++) {
    uint64_t sh, ch;
    if (nominate(s, sd, g, &sh) == 0 && nominate(s, cd, g, &ch) == 0)
      (void)share(s, sd, g, sh, cd, g, ch);
  }
  return leave(s, e ? -1 : 0, e);
}

static int c_hvm_param_get(void *hv, uint32_t domid, uint32_t param, uint64_t *value)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  dom *d = find_dom(s, domid);
  if (!d)
    return leave(s, -1, ESRCH);
  if (param == HVM_PARAM_PAGING_RING_PFN)
    *value = d->ring_param;
  else if (param == HVM_PARAM_SHARING_RING_PFN)
    *value = d->sring_param;
  else
    return leave(s, -1, EINVAL);
  return leave(s, 0, 0);
}

static int c_paging_enable(void *hv, uint32_t domid, uint32_t *port)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  int e;
  dom *d = hap_dom(s, domid, &e);
  if (!d)
    return leave(s, -1, e);
  if (d->paging)
    return leave(s, -1, EBUSY);
  if (!d->ring_param || d->ring_param != d->npages || d->ring_hole)
    return leave(s, -1, EINVAL);
  ring_front(&d->front, d->ring_frame);
  d->front_ok = 1;
  d->paging = 1;
  *port = REMOTE_PORT;
  return leave(s, 0, 0);
}

static int c_paging_disable(void *hv, uint32_t domid)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  dom *d = find_dom(s, domid);
  if (!d)
    return leave(s, -1, ESRCH);
  if (!d->paging)
    return leave(s, -1, EINVAL);
  /* vCPUs paused for a page-in stay paused: Xen's vm_event_disable wakes
   * only those blocked on a full ring. */
  d->paging = 0;
  d->front_ok = 0;
  return leave(s, 0, 0);
}

/* Common checks of the paging calls. */
static int paging_check(const dom *d, uint64_t gfn)
{
  if (!d)
    return ESRCH;
  if (!d->paging)
    return ENODEV;
  if (!valid_gfn(d, gfn))
    return EINVAL;
  return 0;
}

static int c_paging_nominate(void *hv, uint32_t domid, uint64_t gfn)
{
  xensim *s = SIM(hv);
  if (enter(s, XS_PAGING_NOMINATE))
    return -1;
  dom *d = find_dom(s, domid);
  int e = paging_check(d, gfn);
  if (!e) {
    page *pg = &d->p[gfn];
    if (pg->type != XS_RAM || pg->maps || pg->f->refs != 1)
      e = EBUSY;
    else
      pg->type = XS_PAGING_OUT;
  }
  return leave(s, e ? -1 : 0, e);
}

static int c_paging_evict(void *hv, uint32_t domid, uint64_t gfn)
{
  xensim *s = SIM(hv);
  if (enter(s, XS_PAGING_EVICT))
    return -1;
  dom *d = find_dom(s, domid);
  int e = paging_check(d, gfn);
  if (!e) {
    page *pg = &d->p[gfn];
    if (pg->type != XS_PAGING_OUT || pg->maps) {
      e = EBUSY;
    } else {
      put_frame(s, pg->f);
      pg->f = NULL;
      pg->type = XS_PAGED;
    }
  }
  void (*after)(void *) = e ? NULL : s->after_evict;
  void *ud = s->after_evict_ud;
  if (after) {
    s->after_evict = NULL; /* once */
    __atomic_store_n(&s->hook_gfn, gfn, __ATOMIC_RELAXED);
  }
  leave(s, e ? -1 : 0, e);
  if (after)
    after(ud);
  if (e)
    errno = e;
  return e ? -1 : 0;
}

/* Xen's prepare(): the page-in path's end, with or without a buffer. */
static int prepare(xensim *s, dom *d, uint64_t gfn, const void *buffer)
{
  page *pg = &d->p[gfn];
  if (pg->type != XS_PAGING_IN && pg->type != XS_PAGED)
    return ENOENT;
  if (!pg->f) {
    if (!buffer)
      return EINVAL;
    frame *f = alloc_frame(s);
    if (!f)
      return ENOMEM;
    memcpy(f->data, buffer, PAGE);
    pg->f = f;
  }
  pg->type = XS_RAM;
  return 0;
}

static int c_paging_prep(void *hv, uint32_t domid, uint64_t gfn)
{
  xensim *s = SIM(hv);
  if (enter(s, XS_PAGING_PREP))
    return -1;
  dom *d = find_dom(s, domid);
  int e = paging_check(d, gfn);
  if (!e)
    e = prepare(s, d, gfn, NULL);
  if (!e)
    pthread_cond_broadcast(&s->cv);
  return leave(s, e ? -1 : 0, e);
}

static int c_paging_load(void *hv, uint32_t domid, uint64_t gfn, void *buffer)
{
  xensim *s = SIM(hv);
  if (enter(s, XS_PAGING_LOAD))
    return -1;
  dom *d = find_dom(s, domid);
  int e = paging_check(d, gfn);
  if (!e && !buffer)
    e = EINVAL;
  if (!e)
    e = prepare(s, d, gfn, buffer);
  if (!e)
    pthread_cond_broadcast(&s->cv);
  return leave(s, e ? -1 : 0, e);
}

/* The front end's side of the ring indexes, as adapters/xen/ring.c does
 * the back end's: the responses' producer index read with acquire, the
 * requests' written with release (io/ring.h's barriers, as atomics that
 * ThreadSanitizer follows). */
static unsigned ring_responses(const vm_event_front_ring_t *f)
{
  return __atomic_load_n(&f->sring->rsp_prod, __ATOMIC_ACQUIRE) - f->rsp_cons;
}

static void ring_push_requests(vm_event_front_ring_t *f)
{
  __atomic_store_n(&f->sring->req_prod, f->req_prod_pvt, __ATOMIC_RELEASE);
}

/* Consumes the pager's responses (locked): Xen's p2m_mem_paging_resume. */
static void take_responses(xensim *s, dom *d)
{
  if (!d->front_ok)
    return;
  while (ring_responses(&d->front)) {
    vm_event_response_t rsp;
    memcpy(&rsp, RING_GET_RESPONSE(&d->front, d->front.rsp_cons), sizeof rsp);
    d->front.rsp_cons++;
    s->responses++;
    uint64_t gfn = rsp.u.mem_paging.gfn;
    if (!(rsp.u.mem_paging.flags & MEM_PAGING_DROP_PAGE) && valid_gfn(d, gfn)) {
      page *pg = &d->p[gfn];
      if (pg->f && pg->type == XS_PAGING_IN)
        pg->type = XS_RAM;
    }
    if ((rsp.flags & VM_EVENT_FLAG_VCPU_PAUSED) && rsp.vcpu_id < XS_MAXVCPU)
      d->paused[rsp.vcpu_id] = 0;
  }
  pthread_cond_broadcast(&s->cv);
}

/* The sharing ring's responses unpause the vCPUs that waited for memory. */
static void take_sharing_responses(xensim *s, dom *d)
{
  if (!d->sfront_ok)
    return;
  while (ring_responses(&d->sfront)) {
    vm_event_response_t rsp;
    memcpy(&rsp, RING_GET_RESPONSE(&d->sfront, d->sfront.rsp_cons), sizeof rsp);
    d->sfront.rsp_cons++;
    s->responses++;
    if ((rsp.flags & VM_EVENT_FLAG_VCPU_PAUSED) && rsp.vcpu_id < XS_MAXVCPU)
      d->paused[rsp.vcpu_id] = 0;
  }
  pthread_cond_broadcast(&s->cv);
}

static int c_paging_resume(void *hv, uint32_t domid)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  dom *d = find_dom(s, domid);
  if (!d)
    return leave(s, -1, ESRCH);
  take_responses(s, d);
  return leave(s, 0, 0);
}

static int c_decrease_reservation(void *hv, uint32_t domid, uint64_t gfn)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  dom *d = find_dom(s, domid);
  if (!d)
    return leave(s, -1, ESRCH);
  /* Only the ring pages leave the physmap in these tests; their HVM
   * parameters still name them. */
  if (gfn == d->npages)
    d->ring_hole = 1;
  else if (gfn == d->npages + 1)
    d->sring_hole = 1;
  else
    return leave(s, -1, EINVAL);
  return leave(s, 0, 0);
}

static int c_populate_physmap(void *hv, uint32_t domid, uint64_t gfn)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  dom *d = find_dom(s, domid);
  if (!d)
    return leave(s, -1, ESRCH);
  if (gfn == d->npages && d->ring_hole) {
    d->ring_hole = 0;
    memset(d->ring_frame->data, 0, PAGE);
  } else if (gfn == d->npages + 1 && d->sring_hole) {
    d->sring_hole = 0;
    memset(d->sring_frame->data, 0, PAGE);
  } else {
    return leave(s, -1, EEXIST);
  }
  return leave(s, 0, 0);
}

static void *c_map(void *hv, uint32_t domid, int prot, uint64_t gfn, size_t n)
{
  xensim *s = SIM(hv);
  __atomic_store_n(&s->hook_gfn, gfn, __ATOMIC_RELAXED);
  if (enter(s, XS_MAP))
    return NULL;
  dom *d = find_dom(s, domid);
  int e = 0;
  void *addr = NULL;
  int copy = 0;
  if (!d) {
    e = ESRCH;
  } else if (n != 1) {
    e = EINVAL;
  } else if (gfn == d->npages) {
    if (d->ring_hole)
      e = EINVAL;
    else
      addr = d->ring_frame->data; /* the rings: live shared mappings */
  } else if (gfn == d->npages + 1) {
    if (d->sring_hole)
      e = EINVAL;
    else
      addr = d->sring_frame->data;
  } else if (!valid_gfn(d, gfn)) {
    e = EINVAL;
  } else {
    page *pg = &d->p[gfn];
    if (!pg->f || pg->type == XS_PAGING_IN || pg->type == XS_PAGED) {
      e = ENOENT;
    } else if (prot & PROT_WRITE) {
      if (pg->type == XS_PAGING_OUT)
        e = EINVAL; /* not modelled: the adapter never does it */
      else if (pg->type == XS_SHARED && cow_break(s, pg) != 0)
        e = ENOMEM;
      else
        addr = pg->f->data; /* used only to unshare: no bytes change */
    } else {
      /* Read-only: a snapshot stands in for the live mapping, so that the
       * adapter's copy never races a guest write. */
      addr = malloc(PAGE);
      if (addr)
        memcpy(addr, pg->f->data, PAGE), copy = 1;
      else
        e = ENOMEM;
    }
  }
  int slot = -1;
  for (int i = 0; addr && i < MAXMAP; i++)
    if (!s->maps[i].addr) {
      slot = i;
      break;
    }
  if (addr && slot < 0) {
    if (copy)
      free(addr);
    addr = NULL;
    e = ENOMEM;
  }
  if (addr) {
    s->maps[slot] = (mapping){addr, d, gfn, copy};
    if (valid_gfn(d, gfn))
      d->p[gfn].maps++;
  }
  leave(s, addr ? 0 : -1, e);
  return addr;
}

static int c_unmap(void *hv, void *addr, size_t n)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  (void)n;
  for (int i = 0; i < MAXMAP; i++) {
    mapping *m = &s->maps[i];
    if (m->addr != addr)
      continue;
    if (valid_gfn(m->d, m->gfn))
      m->d->p[m->gfn].maps--;
    if (m->copy)
      free(m->addr);
    memset(m, 0, sizeof *m);
    return leave(s, 0, 0);
  }
  return leave(s, -1, EINVAL);
}

static int c_logdirty(void *hv, uint32_t domid, unsigned op, unsigned long *bitmap,
                      uint64_t npages)
{
  xensim *s = SIM(hv);
  if (enter(s, op == DMEM_XEN_LOGDIRTY_CLEAN ? XS_LOGDIRTY : XS_NCALLS))
    return -1;
  dom *d = find_dom(s, domid);
  if (!d)
    return leave(s, -1, ESRCH);
  size_t longs = (size_t)((d->npages + 63) / 64);
  switch (op) {
  case DMEM_XEN_LOGDIRTY_ENABLE:
    d->logdirty = 1;
    memset(d->dirty, 0, longs * sizeof(unsigned long));
    return leave(s, 0, 0);
  case DMEM_XEN_LOGDIRTY_OFF:
    d->logdirty = 0;
    return leave(s, 0, 0);
  case DMEM_XEN_LOGDIRTY_CLEAN:
  case DMEM_XEN_LOGDIRTY_PEEK:
    if (!d->logdirty || npages > d->npages)
      return leave(s, -1, EINVAL);
    memcpy(bitmap, d->dirty, (size_t)((npages + 63) / 64) * sizeof(unsigned long));
    if (op == DMEM_XEN_LOGDIRTY_CLEAN)
      memset(d->dirty, 0, longs * sizeof(unsigned long));
    return leave(s, 0, 0);
  default:
    return leave(s, -1, EINVAL);
  }
}

static int c_evtchn_bind(void *hv, uint32_t domid, uint32_t remote)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  dom *d = find_dom(s, domid);
  if (!d)
    return leave(s, -1, ESRCH);
  int local;
  if (remote == REMOTE_PORT && d->paging)
    local = 100 + (int)(d - s->doms);
  else if (remote == REMOTE_SHARING_PORT && d->sfront_ok)
    local = 200 + (int)(d - s->doms);
  else
    return leave(s, -1, EINVAL);
  s->bound++;
  leave(s, 0, 0);
  return local;
}

static int c_evtchn_unbind(void *hv, uint32_t port)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  (void)port;
  s->bound--;
  return leave(s, 0, 0);
}

/* The pager notified: Xen resumes from the ring of that port's domain. */
static int c_evtchn_notify(void *hv, uint32_t port)
{
  xensim *s = SIM(hv);
  enter(s, XS_NCALLS);
  if (port >= 200 && port < 200 + MAXDOM && s->doms[port - 200].live) {
    take_sharing_responses(s, &s->doms[port - 200]);
    return leave(s, 0, 0);
  }
  if (port < 100 || port >= 100 + MAXDOM || !s->doms[port - 100].live)
    return leave(s, -1, EINVAL);
  take_responses(s, &s->doms[port - 100]);
  return leave(s, 0, 0);
}

static int c_evtchn_fd(void *hv) { return SIM(hv)->efd; }

/* Which port is pending: any domain with unconsumed requests. */
static int c_evtchn_pending(void *hv)
{
  xensim *s = SIM(hv);
  uint64_t v;
  if (read(s->efd, &v, sizeof v) != (ssize_t)sizeof v) {
    errno = EAGAIN;
    return -1;
  }
  pthread_mutex_lock(&s->mu);
  int port = -1;
  for (int i = 0; i < MAXDOM; i++)
    if (s->doms[i].live && s->doms[i].front_ok)
      port = 100 + i;
  pthread_mutex_unlock(&s->mu);
  if (port < 0)
    errno = EAGAIN;
  return port;
}

static int c_evtchn_unmask(void *hv, uint32_t port)
{
  (void)hv, (void)port;
  return 0;
}

static const dmem_xen_calls sim_calls = {
  .version = DMEM_XEN_CALLS_VERSION,
  .domain_info = c_domain_info,
  .memshr_control = c_memshr_control,
  .memshr_nominate_gfn = c_nominate_gfn,
  .memshr_nominate_gref = c_nominate_gref,
  .memshr_share_gfns = c_share_gfns,
  .memshr_share_grefs = c_share_grefs,
  .memshr_ring_enable = c_memshr_ring_enable,
  .memshr_ring_disable = c_memshr_ring_disable,
  .memshr_range_share = c_range_share,
  .hvm_param_get = c_hvm_param_get,
  .paging_enable = c_paging_enable,
  .paging_disable = c_paging_disable,
  .paging_nominate = c_paging_nominate,
  .paging_evict = c_paging_evict,
  .paging_prep = c_paging_prep,
  .paging_load = c_paging_load,
  .paging_resume = c_paging_resume,
  .decrease_reservation = c_decrease_reservation,
  .populate_physmap = c_populate_physmap,
  .map = c_map,
  .unmap = c_unmap,
  .logdirty = c_logdirty,
  .evtchn_bind = c_evtchn_bind,
  .evtchn_unbind = c_evtchn_unbind,
  .evtchn_notify = c_evtchn_notify,
  .evtchn_fd = c_evtchn_fd,
  .evtchn_pending = c_evtchn_pending,
  .evtchn_unmask = c_evtchn_unmask,
};

const dmem_xen_calls *xs_calls(void) { return &sim_calls; }

/* ---------------------------------------------------------------- the host's side */

xensim *xs_create(uint64_t seed)
{
  xensim *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->efd < 0) {
    free(s);
    return NULL;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->rng = seed;
  s->free_frames = -1;
  return s;
}

void xs_destroy(xensim *s)
{
  if (!s)
    return;
  for (int i = 0; i < MAXDOM; i++) {
    dom *d = &s->doms[i];
    if (!d->live)
      continue;
    for (uint64_t g = 0; g < d->npages; g++)
      put_frame(s, d->p[g].f);
    free(d->p);
    free(d->dirty);
    free(d->ring_frame);
    free(d->sring_frame);
  }
  for (int i = 0; i < MAXMAP; i++)
    if (s->maps[i].copy)
      free(s->maps[i].addr);
  close(s->efd);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

int xs_domain(xensim *s, uint32_t domid, uint64_t npages, int hvm, int hap)
{
  dom *d = NULL;
  for (int i = 0; i < MAXDOM && !d; i++)
    if (!s->doms[i].live)
      d = &s->doms[i];
  if (!d)
    return -1;
  memset(d, 0, sizeof *d);
  d->p = calloc(npages, sizeof *d->p);
  d->dirty = calloc((size_t)((npages + 63) / 64), sizeof(unsigned long));
  d->ring_frame = new_frame();
  d->sring_frame = new_frame();
  if (!d->p || !d->dirty || !d->ring_frame || !d->sring_frame)
    return -1;
  for (uint64_t g = 0; g < npages; g++) {
    d->p[g].f = new_frame();
    if (!d->p[g].f)
      return -1;
    d->p[g].type = XS_RAM;
  }
  d->live = 1;
  d->id = domid;
  d->npages = npages;
  d->hvm = hvm;
  d->hap = hap;
  d->ring_param = npages;
  d->sring_param = npages + 1;
  return 0;
}

void xs_set_ring_param(xensim *s, uint32_t domid, uint64_t gfn)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  if (d)
    d->ring_param = gfn;
  pthread_mutex_unlock(&s->mu);
}

void xs_set_sharing_ring_param(xensim *s, uint32_t domid, uint64_t gfn)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  if (d)
    d->sring_param = gfn;
  pthread_mutex_unlock(&s->mu);
}

void xs_load(xensim *s, uint32_t domid, uint64_t gfn, const void *content)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  if (d && valid_gfn(d, gfn)) {
    page *pg = &d->p[gfn];
    if (!pg->f || pg->f->refs > 1) {
      if (pg->f)
        pg->f->refs--;
      pg->f = new_frame();
    }
    if (pg->f) {
      memcpy(pg->f->data, content, PAGE);
      pg->f->handle = 0;
      pg->type = XS_RAM;
    }
  }
  pthread_mutex_unlock(&s->mu);
}

int xs_peek(xensim *s, uint32_t domid, uint64_t gfn, void *buf)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  int rc = -1;
  if (d && valid_gfn(d, gfn) && d->p[gfn].f) {
    memcpy(buf, d->p[gfn].f->data, PAGE);
    rc = 0;
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int xs_type(xensim *s, uint32_t domid, uint64_t gfn)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  int t = d && valid_gfn(d, gfn) ? d->p[gfn].type : XS_HOLE;
  pthread_mutex_unlock(&s->mu);
  return t;
}

unsigned xs_sharers(xensim *s, uint32_t domid, uint64_t gfn)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  unsigned n = d && valid_gfn(d, gfn) && d->p[gfn].f ? d->p[gfn].f->refs : 0;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void xs_grant(xensim *s, uint32_t domid, uint32_t gref, uint64_t gfn)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  if (d && gref < MAXGREF)
    d->grefs[gref] = gfn + 1;
  pthread_mutex_unlock(&s->mu);
}

/* Puts a request on the ring and rings the bell (locked). 0, or -1 when
 * the ring is full. */
static int put_on(xensim *s, dom *d, vm_event_front_ring_t *front, int ok, uint32_t reason,
                  uint64_t gfn, int vcpu, uint32_t pflags)
{
  if (!ok || RING_FULL(front))
    return -1;
  vm_event_request_t req;
  memset(&req, 0, sizeof req);
  req.version = VM_EVENT_INTERFACE_VERSION;
  req.reason = reason;
  if (reason == VM_EVENT_REASON_MEM_SHARING) {
    req.u.mem_sharing.gfn = gfn;
  } else {
    req.u.mem_paging.gfn = gfn;
    req.u.mem_paging.flags = pflags;
  }
  if (vcpu >= 0) {
    req.flags = VM_EVENT_FLAG_VCPU_PAUSED;
    req.vcpu_id = (uint32_t)vcpu;
    d->paused[vcpu] = 1;
  } else {
    req.flags = VM_EVENT_FLAG_FOREIGN;
  }
  memcpy(RING_GET_REQUEST(front, front->req_prod_pvt), &req, sizeof req);
  front->req_prod_pvt++;
  ring_push_requests(front); /* and the bell is rung whatever req_event says */
  s->requests++;
  uint64_t one = 1;
  if (write(s->efd, &one, sizeof one) != (ssize_t)sizeof one) {
    /* the counter cannot overflow in these tests */
  }
  return 0;
}

static int put_request(xensim *s, dom *d, uint64_t gfn, int vcpu, uint32_t pflags)
{
  return put_on(s, d, &d->front, d->front_ok, VM_EVENT_REASON_MEM_PAGING, gfn, vcpu, pflags);
}

int xs_drop(xensim *s, uint32_t domid, uint64_t gfn)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  int rc = -1;
  if (d && valid_gfn(d, gfn)) {
    page *pg = &d->p[gfn];
    if (pg->type == XS_PAGED || pg->type == XS_PAGING_OUT) {
      uint32_t fl = MEM_PAGING_DROP_PAGE;
      if (pg->type == XS_PAGING_OUT)
        fl |= MEM_PAGING_EVICT_FAIL;
      put_frame(s, pg->f);
      pg->f = NULL;
      pg->type = XS_HOLE;
      rc = put_request(s, d, gfn, -1, fl);
    }
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* The page-in path of an access (locked): 1 when the access must wait
 * (request raised, or ring full), 0 when it can proceed. */
static int populate(xensim *s, dom *d, int vcpu, uint64_t gfn, int write, int *raised)
{
  page *pg = &d->p[gfn];
  *raised = 0;
  if (vcpu >= 0 && d->paused[vcpu])
    return 1;
  switch (pg->type) {
  case XS_RAM:
  case XS_SHARED:
    return 0;
  case XS_PAGING_OUT:
    if (!write)
      return 0; /* read-only to the guest */
    if (put_request(s, d, gfn, vcpu, MEM_PAGING_EVICT_FAIL) == 0) {
      pg->type = XS_PAGING_IN;
      *raised = 1;
    }
    return 1;
  case XS_PAGING_IN:
    if (vcpu < 0)
      return 1; /* on its way already: a foreign access just waits */
    /* fall through */
  case XS_PAGED:
    if (!d->front_ok) { /* "paging gfn yet no ring in place": domain_crash */
      d->crashed = 1;
      return 1;
    }
    if (put_request(s, d, gfn, vcpu, 0) == 0) {
      pg->type = XS_PAGING_IN;
      *raised = 1;
    }
    return 1;
  default:
    return 0;
  }
}

int xs_touch_nowait(xensim *s, uint32_t domid, int vcpu, uint64_t gfn, int write)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  int raised = 0;
  if (d && valid_gfn(d, gfn))
    (void)populate(s, d, vcpu, gfn, write, &raised);
  pthread_mutex_unlock(&s->mu);
  return raised;
}

int xs_paused(xensim *s, uint32_t domid, int vcpu)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  int p = d && vcpu >= 0 && vcpu < XS_MAXVCPU ? d->paused[vcpu] : 0;
  pthread_mutex_unlock(&s->mu);
  return p;
}

/* How long an access waits for the pager: WAIT_SECONDS, or
 * DMEM_XENSIM_WAIT (seconds) for stress runs that want hangs found fast. */
static int wait_seconds(void)
{
  const char *v = getenv("DMEM_XENSIM_WAIT");
  int n = v ? atoi(v) : 0;
  return n > 0 ? n : WAIT_SECONDS;
}

int xs_access(xensim *s, uint32_t domid, int vcpu, uint64_t gfn, int write, size_t off,
              void *data, size_t len)
{
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += wait_seconds();
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  if (!d || !valid_gfn(d, gfn) || off + len > PAGE || vcpu >= XS_MAXVCPU || d->crashed) {
    pthread_mutex_unlock(&s->mu);
    return -1;
  }
  for (unsigned tries = 0;; tries++) {
    int raised;
    int must_wait = populate(s, d, vcpu, gfn, write, &raised);
    if (d->crashed) {
      pthread_mutex_unlock(&s->mu);
      return -1;
    }
    if (!must_wait) {
      page *pg = &d->p[gfn];
      if (!pg->f) { /* a hole: reads see zeros, writes are dropped */
        if (!write)
          memset(data, 0, len);
        break;
      }
      int wait = 0;
      if (write && pg->type == XS_SHARED && cow_break(s, pg) != 0) {
        /* No memory for the private copy: with the sharing ring, the vCPU
         * waits for the pager's answer; without it, Xen crashes the guest.
         * A foreign mapping just fails. */
        if (vcpu < 0) {
          pthread_mutex_unlock(&s->mu);
          return -1;
        }
        if (!d->sfront_ok) {
          d->crashed = 1;
          pthread_mutex_unlock(&s->mu);
          return -1;
        }
        (void)put_on(s, d, &d->sfront, 1, VM_EVENT_REASON_MEM_SHARING, gfn, vcpu, 0);
        wait = 1; /* paused, or the ring was full: try again after a wait */
      }
      if (!wait) {
        if (write) {
          memcpy(pg->f->data + off, data, len);
          if (d->logdirty)
            d->dirty[gfn / 64] |= 1ul << (gfn % 64);
        } else {
          memcpy(data, pg->f->data + off, len);
        }
        break;
      }
    }
    /* Wait for the pager. */
    if (s->service) {
      if (tries > 1000) {
        pthread_mutex_unlock(&s->mu);
        return -1;
      }
      void (*fn)(void *) = s->service;
      void *ud = s->service_ud;
      pthread_mutex_unlock(&s->mu);
      fn(ud);
      pthread_mutex_lock(&s->mu);
    } else if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT) {
      /* What the access waited for, for the test's log. */
      page *pg = &d->p[gfn];
      fprintf(stderr,
              "xensim: dom%u vcpu %d gfn %llu %s: waited %d s: type %d, frame %s, paused %d, "
              "requests %llu, responses %llu, ring unconsumed %u\n",
              (unsigned)domid, vcpu, (unsigned long long)gfn, write ? "write" : "read",
              wait_seconds(), pg->type, pg->f ? "yes" : "no", vcpu >= 0 ? d->paused[vcpu] : -1,
              (unsigned long long)s->requests, (unsigned long long)s->responses,
              d->front_ok ? (unsigned)(d->front.req_prod_pvt - d->front.rsp_cons) : 0u);
      pthread_mutex_unlock(&s->mu);
      return -1;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return 0;
}

void xs_set_free(xensim *s, long frames)
{
  pthread_mutex_lock(&s->mu);
  s->free_frames = frames;
  pthread_mutex_unlock(&s->mu);
}

int xs_crashed(xensim *s, uint32_t domid)
{
  pthread_mutex_lock(&s->mu);
  dom *d = find_dom(s, domid);
  int c = d ? d->crashed : 0;
  pthread_mutex_unlock(&s->mu);
  return c;
}

void xs_set_service(xensim *s, void (*fn)(void *), void *ud)
{
  pthread_mutex_lock(&s->mu);
  s->service = fn;
  s->service_ud = ud;
  pthread_mutex_unlock(&s->mu);
}

void xs_set_hook(xensim *s, xs_call which, void (*fn)(void *), void *ud)
{
  pthread_mutex_lock(&s->mu);
  s->hook[which] = fn;
  s->hook_ud[which] = ud;
  pthread_mutex_unlock(&s->mu);
}

void xs_fail(xensim *s, xs_call which, double p, int err)
{
  pthread_mutex_lock(&s->mu);
  s->fail_p[which] = p;
  s->fail_err[which] = err;
  pthread_mutex_unlock(&s->mu);
}

uint64_t xs_count(xensim *s, xs_call which)
{
  pthread_mutex_lock(&s->mu);
  uint64_t n = s->calls[which];
  pthread_mutex_unlock(&s->mu);
  return n;
}

void xs_set_after_evict(xensim *s, void (*fn)(void *), void *ud)
{
  pthread_mutex_lock(&s->mu);
  s->after_evict = fn;
  s->after_evict_ud = ud;
  pthread_mutex_unlock(&s->mu);
}

uint64_t xs_hook_gfn(xensim *s) { return __atomic_load_n(&s->hook_gfn, __ATOMIC_RELAXED); }

uint64_t xs_requests(xensim *s)
{
  pthread_mutex_lock(&s->mu);
  uint64_t n = s->requests;
  pthread_mutex_unlock(&s->mu);
  return n;
}

uint64_t xs_responses(xensim *s)
{
  pthread_mutex_lock(&s->mu);
  uint64_t n = s->responses;
  pthread_mutex_unlock(&s->mu);
  return n;
}
