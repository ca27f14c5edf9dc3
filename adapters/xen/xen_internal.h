/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internals of libdiffmem-xen, shared by its files. */
#ifndef DMEM_XEN_INTERNAL_H
#define DMEM_XEN_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <diffmem/xen.h>

#include "internal.h" /* the libraries' base (lib/) */

#define XEN_PAGE DMEM_PAGE_SIZE
/* Pages whose last read the adapter keeps, to check an eviction against. */
#define XEN_RECENT 16

/* The adapter's view of one guest page (guarded by dmem_xen_guest.mu). */
enum {
  XP_GUEST = 0, /* guest memory as far as paging goes */
  XP_NOMINATED, /* paging-nominated: read-only to the guest, not evicted */
  XP_EVICTED,   /* evicted; the engine holds the content */
  XP_SHARED,    /* nominated for sharing or shared in Xen's p2m */
};

typedef struct xen_recent {
  uint64_t gfn;
  int valid;
  uint8_t page[XEN_PAGE];
} xen_recent;

/* One request read off the ring and not answered yet. */
typedef struct xen_pending {
  uint64_t gfn;
  uint32_t flags;  /* the request's VM_EVENT_FLAG_* */
  uint32_t pflags; /* its mem_paging flags */
  uint32_t vcpu;
} xen_pending;

/* One vm_event ring: its page (mapped, out of the guest's physmap), its
 * event channel and our back end of it. */
typedef struct xen_ring {
  const char *name;
  uint32_t param; /* HVM_PARAM_*_RING_PFN */
  void *page;
  uint64_t gfn;
  int port;    /* local port; -1 before bind */
  int enabled; /* Xen's side enabled (disable on close) */
  int removed; /* the page left the guest's physmap (put back on close) */
  void *back;  /* vm_event_back_ring_t */
} xen_ring;

struct dmem_xen_guest {
  dmem__alloc alloc; /* the caller's hook, or the C library's */
  const dmem_xen_calls *calls;
  void *hv;
  void *own_hv; /* the default table's context, made by open */
  uint32_t domid;
  uint64_t npages;
  int share;
  int logdirty_on, memshr_on;
  dmem_xen_sources *sources; /* with share: a reference (share.c) */

  xen_ring paging;  /* page-in requests */
  xen_ring sharing; /* ENOMEM notices of copy-on-write breaks */
  void (*on_enomem)(dmem_xen_guest *x, uint64_t gfn, void *ud);
  uint32_t sharing_domain; /* dmem_vm_options, at attach */
  void *enomem_ud;

  pthread_mutex_t mu;     /* page states, dirty bits, stats, pending */
  uint8_t *pstate;        /* XP_* per page */
  unsigned long *dirty;   /* accumulated log-dirty bits */
  unsigned long *touched; /* pages the guest faulted back in: referenced */
  unsigned long *bitmap;  /* one CLEAN's worth */
  size_t bitmap_longs;
  xen_recent recent[XEN_RECENT];
  unsigned recent_next;
  uint64_t locking;     /* gfn + 1 of the page whose lock read comes next; 0: none */
  uint64_t evicting;    /* gfn + 1 of the page op_evict is paging out; 0: none */
  xen_pending *pending; /* requests to retry */
  size_t npending, cap_pending;

  pthread_mutex_t attach_mu; /* held across faults served and across detach */
  dmem_vm *vm;
  dmem_engine *engine;
  dmem_adapter_ops ops;
  dmem_xen_stats st;

  pthread_t thread;
  int running;
  volatile int stop;
  char errmsg[DMEM_ERRBUF_SIZE];
};

/* The default table and its context (calls.c). The context is made by
 * dmem__xen_default_open, which fills errbuf with libxenctrl's own message when
 * there is no hypervisor. */
extern const dmem_xen_calls dmem__xen_default_calls;
int dmem__xen_default_open(void **hv, char *errbuf, size_t errlen);
void dmem__xen_default_close(void *hv);
/* The default context's libxenctrl handle (for the probe). */
struct xc_interface_core *dmem__xen_default_xch(void *hv);
/* The guest's primitives (guest.c), which call nothing else of the
 * adapter's: the files above them (adapter.c, ring.c, share.c) call down
 * to them, never the other way. */
/* errno of a failed call -> DMEM_E*. */
int dmem__xen_err(int errnum);
/* Sets the adapter's message (under its lock). */
void dmem__xen_msg(dmem_xen_guest *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records that @call on page gfn failed with errnum; returns its DMEM_E*. */
int dmem__xen_fail(dmem_xen_guest *x, const char *call, uint64_t gfn, int errnum);
/* Reads a page through a read-only foreign mapping. */
int dmem__xen_read(dmem_xen_guest *x, uint64_t gfn, void *buf);
/* Makes a page private again in Xen's p2m (a writable foreign mapping
 * unshares it), without changing its bytes. */
int dmem__xen_unshare(dmem_xen_guest *x, uint64_t gfn);
/* A page's XP_* state, and a counter of st, under the adapter's lock. */
int dmem__xen_page_state(dmem_xen_guest *x, uint64_t gfn);
void dmem__xen_set_page_state(dmem_xen_guest *x, uint64_t gfn, int s);
void dmem__xen_count(dmem_xen_guest *x, uint64_t *field);

/* The rings (ring.c): the paging ring always, the sharing ring with
 * sharing. */
int dmem__xen_rings_init(dmem_xen_guest *x);
void dmem__xen_rings_fini(dmem_xen_guest *x);

/* Sharing sources (share.c). init takes a reference to the caller's
 * table, or makes the guest a table of its own; fini forgets the guest's
 * sources and drops the reference; forget (at detach) only forgets. */
int dmem__xen_share_init(dmem_xen_guest *x, dmem_xen_sources *given);
void dmem__xen_share_fini(dmem_xen_guest *x);
int dmem__xen_share(dmem_xen_guest *x, uint64_t gfn, dmem_engine *engine, uint32_t fid,
                    const void *frame);
void dmem__xen_share_forget(dmem_xen_guest *x);

#endif
