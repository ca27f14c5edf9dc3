/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/xen.h
 * @brief libdiffmem-xen: the engine's adapter for Xen HVM guests, through
 *        libxenctrl (Xen 4.17).
 *
 * Link with `pkg-config --cflags --libs libdiffmem-xen`.
 *
 * What the adapter does with Xen (xenctrl.h names):
 *  - Reading guest pages: xenforeignmemory_map() of one page, read-only.
 *  - Modified bits: log-dirty (xc_shadow_control ENABLE_LOGDIRTY, then
 *    xc_logdirty_control CLEAN, which is 4.17's form of the CLEAN and PEEK
 *    operations that carry a bitmap). Log-dirty sees writes only, so a page
 *    that was written reports both bits. Reads are seen only when they fault
 *    an evicted page back in: such a page reports REFERENCED alone on the
 *    next scan, so a read-hot shared page is then mapped copy-on-write
 *    instead of evicted again. Other reads go unseen, so a read-hot page may
 *    be reclaimed once and fault back. xc_set_mem_access() could see every
 *    read, but only through a second (monitor) ring on Intel EPT, which this
 *    adapter does not use.
 *  - Eviction and fault-back (zero, shared, patched, compressed and swapped
 *    pages alike): mem_paging with the vm_event ring, in xenpaging's order.
 *    evict(): xc_mem_paging_nominate (the page turns read-only to the
 *    guest), read the page again and compare it with what the engine last
 *    read of it, then xc_mem_paging_evict. A guest write in between makes
 *    the evict fail (EBUSY) and nothing is lost. A guest touch of an evicted
 *    page pauses the vCPU and puts a request on the ring; the adapter's ring
 *    service (dmem_xen_guest_poll() or its thread) calls dmem_vm_fault(), which
 *    rebuilds the page and installs it with xc_mem_paging_load, puts the
 *    response on the ring and notifies the event channel, which unpauses the
 *    vCPU. A touch of a page that was nominated but not yet evicted is
 *    answered with xc_mem_paging_prep alone (the page is still there).
 *  - Sharing (when dmem_xen_guest_options.share is set): xc_memshr_control, then
 *    for each engine frame one guest page is its Xen "source": share()
 *    nominates the page (xc_memshr_nominate_gfn), compares its bytes with
 *    the frame, and shares it onto the source with xc_memshr_share_gfns.
 *    The guests of one engine find each other's sources through a table
 *    the caller gives them all (dmem_xen_sources, in
 *    dmem_xen_guest_options.sources); without it a guest's pages are
 *    shared in the p2m only with its own.
 *    Xen invalidates a handle when the guest writes its page, so a write
 *    after the comparison makes the share fail with
 *    XENMEM_SHARING_OP_C_HANDLE_INVALID: no guest write is ever merged
 *    away. When the source's handle is the stale one
 *    (XENMEM_SHARING_OP_S_HANDLE_INVALID), the page becomes the frame's new
 *    source. A guest write to a shared page gets a private copy from Xen.
 *  - dmem_xen_guest_share_range() (xc_memshr_range_share) for clones, and
 *    dmem_xen_guest_share_grefs() (xc_memshr_nominate_gref, xc_memshr_share_grefs)
 *    for I/O buffers a backend has granted pages for.
 *
 * With sharing, the adapter also sets up the sharing ring
 * (xc_memshr_ring_enable, HVM_PARAM_SHARING_RING_PFN): without it Xen
 * crashes a guest whose copy-on-write break finds no free memory; with it
 * the guest's vCPU waits while dmem_xen_guest_options.on_enomem makes room.
 *
 * The adapter offers no protect(): a nominated page is Xen's own guard
 * against lost writes (see above), and Xen has no call that lifts a paging
 * nomination. A page nominated for an eviction that then failed stays
 * nominated until the guest next writes it; that write costs one ring round
 * trip, as under xenpaging.
 *
 * Known limits:
 *  - A page the guest gives back (balloon) while it is paged out arrives as
 *    a MEM_PAGING_DROP_PAGE notice. The adapter stops treating it as
 *    evicted (nothing is loaded into it again, the guest's new page is
 *    left alone), but the engine still counts it where it was and keeps
 *    its stored copy until detach; dmem_vm_read() of it returns that copy.
 *  - The adapter serves gfns 0 .. npages-1 (by default up to the highest
 *    gfn Xen reports). Holes in that range (the MMIO hole below 4 GiB)
 *    fail to map, and the engine counts an error each time it tries one;
 *    open with npages to serve RAM below the hole only. Special pages (the
 *    ioreq, xenstore and console pages) are mapped by QEMU or Xen, so Xen
 *    refuses to nominate them (EBUSY) and they are never paged out.
 *  - Log-dirty stays enabled while the adapter is open, so live migration
 *    (which needs log-dirty for itself) cannot run at the same time.
 *  - dom0 must be PV: a PVH dom0 cannot map shared pages of another guest.
 *
 * Requirements: an HVM guest with hardware-assisted paging (EPT or NPT);
 * dmem_xen_guest_create() refuses others with DMEM_ENOTSUP, because Xen's sharing
 * and paging calls fail with ENODEV for them. The HVM parameter
 * HVM_PARAM_PAGING_RING_PFN must name the ring page, as the toolstack sets
 * it up for xenpaging. Run as root in dom0 (or a domain privileged for the
 * guest). No other pager may run for the guest.
 *
 * Every Xen call goes through one table, dmem_xen_calls, which defaults to
 * libxenctrl. Tests (and a researcher's simulator) pass their own table.
 *
 * Threads. Each dmem_xen_guest belongs to one VM. dmem_xen_guest_poll() must not run on
 * two threads at once, nor together with the adapter's own thread
 * (dmem_xen_guest_start()). Everything else follows diffmem.h.
 */
#ifndef DIFFMEM_XEN_H
#define DIFFMEM_XEN_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>
#include <diffmem/diffmem.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What the running hypervisor is; filled by dmem_xen_probe(). */
typedef struct dmem_xen_info {
  unsigned version; /**< set by the caller to DMEM_XEN_INFO_VERSION */
  /** Xen's major and minor version, or -1 when no hypervisor answered. */
  int major, minor;
  /** Why the adapter cannot run here; empty when dmem_xen_probe() returned 0. */
  char reason[256];
} dmem_xen_info;

/** The version of dmem_xen_info this header describes: a later library
 *  appends fields and fills only those of the caller's version. */
#define DMEM_XEN_INFO_VERSION 1
/** A dmem_xen_info ready to be filled. */
#define DMEM_XEN_INFO_INIT                                                                         \
  {                                                                                                \
    DMEM_XEN_INFO_VERSION, 0, 0, ""                                                                \
  }

/**
 * Opens libxenctrl's interface to the hypervisor and asks its version.
 *
 * @param out its version set to DMEM_XEN_INFO_VERSION (DMEM_XEN_INFO_INIT);
 *        filled in every case, also on failure, but for DMEM_EVERSION.
 * @retval 0 a Xen hypervisor answered.
 * @retval DMEM_ENOTSUP no hypervisor could be reached; out->reason carries
 *         libxenctrl's own message, such as "cannot open /dev/xen/privcmd:
 *         No such file or directory".
 * @retval DMEM_EVERSION out->version is not DMEM_XEN_INFO_VERSION.
 * @retval DMEM_EINVAL out is NULL.
 */
DMEM_API int dmem_xen_probe(dmem_xen_info *out);

/** Facts about a domain, from xc_domain_getinfo(). */
typedef struct dmem_xen_domain {
  int hvm;         /**< an HVM guest */
  int hap;         /**< with hardware-assisted paging */
  int dying;       /**< being destroyed */
  uint64_t npages; /**< guest frames 0 .. npages-1 that the adapter serves */
} dmem_xen_domain;

/* Operation codes of dmem_xen_calls.logdirty (values of xen/domctl.h). */
#define DMEM_XEN_LOGDIRTY_OFF 0    /**< XEN_DOMCTL_SHADOW_OP_OFF */
#define DMEM_XEN_LOGDIRTY_ENABLE 2 /**< XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY */
#define DMEM_XEN_LOGDIRTY_CLEAN 11 /**< XEN_DOMCTL_SHADOW_OP_CLEAN */
#define DMEM_XEN_LOGDIRTY_PEEK 12  /**< XEN_DOMCTL_SHADOW_OP_PEEK */

/* The documented errors of the share calls, as errno values (xenctrl.h:
 * "10 (or -XENMEM_SHARING_OP_S_HANDLE_INVALID)" and 9 for the client). */
#define DMEM_XEN_ESHARE_SOURCE 10 /**< -XENMEM_SHARING_OP_S_HANDLE_INVALID */
#define DMEM_XEN_ESHARE_CLIENT 9  /**< -XENMEM_SHARING_OP_C_HANDLE_INVALID */

/**
 * Every Xen call the adapter makes. Each takes the table's context @c hv
 * first and keeps libxenctrl's convention: 0 (or the documented value) on
 * success, -1 with errno set on failure, and errno values exactly as
 * xenctrl.h documents them (ESRCH, ENODEV, EINVAL, E2BIG, EBUSY, ENOENT,
 * DMEM_XEN_ESHARE_SOURCE, ...). The default table (@c calls NULL in
 * dmem_xen_guest_options) forwards to libxenctrl, libxenforeignmemory and
 * libxenevtchn.
 */
typedef struct dmem_xen_calls {
  unsigned version; /**< DMEM_XEN_CALLS_VERSION */

  /** xc_domain_getinfo() of one domain; ESRCH when it does not exist. */
  int (*domain_info)(void *hv, uint32_t domid, dmem_xen_domain *out);

  /** xc_memshr_control(). */
  int (*memshr_control)(void *hv, uint32_t domid, int enable);
  /** xc_memshr_nominate_gfn(): a handle that Xen invalidates when the page
   *  is written. */
  int (*memshr_nominate_gfn)(void *hv, uint32_t domid, uint64_t gfn, uint64_t *handle);
  /** xc_memshr_nominate_gref(). */
  int (*memshr_nominate_gref)(void *hv, uint32_t domid, uint32_t gref, uint64_t *handle);
  /** xc_memshr_share_gfns(). */
  int (*memshr_share_gfns)(void *hv, uint32_t sdom, uint64_t sgfn, uint64_t shandle, uint32_t cdom,
                           uint64_t cgfn, uint64_t chandle);
  /** xc_memshr_share_grefs(). */
  int (*memshr_share_grefs)(void *hv, uint32_t sdom, uint32_t sgref, uint64_t shandle,
                            uint32_t cdom, uint32_t cgref, uint64_t chandle);
  /** xc_memshr_ring_enable(): the ENOMEM ring; the remote port in @p port. */
  int (*memshr_ring_enable)(void *hv, uint32_t domid, uint32_t *port);
  /** xc_memshr_ring_disable(). */
  int (*memshr_ring_disable)(void *hv, uint32_t domid);
  /** xc_memshr_range_share(). */
  int (*memshr_range_share)(void *hv, uint32_t sdom, uint32_t cdom, uint64_t first, uint64_t last);

  /** xc_hvm_param_get() (the adapter asks HVM_PARAM_PAGING_RING_PFN). */
  int (*hvm_param_get)(void *hv, uint32_t domid, uint32_t param, uint64_t *value);
  /** xc_mem_paging_enable(): the remote event-channel port in @p port. */
  int (*paging_enable)(void *hv, uint32_t domid, uint32_t *port);
  /** xc_mem_paging_disable(). */
  int (*paging_disable)(void *hv, uint32_t domid);
  /** xc_mem_paging_nominate(). */
  int (*paging_nominate)(void *hv, uint32_t domid, uint64_t gfn);
  /** xc_mem_paging_evict(). */
  int (*paging_evict)(void *hv, uint32_t domid, uint64_t gfn);
  /** xc_mem_paging_prep(): a page that still has its memory becomes
   *  guest memory again; ENOENT when the page is not paging in or out. */
  int (*paging_prep)(void *hv, uint32_t domid, uint64_t gfn);
  /** xc_mem_paging_load(): gives an evicted page new memory holding
   *  @p buffer (DMEM_PAGE_SIZE bytes). */
  int (*paging_load)(void *hv, uint32_t domid, uint64_t gfn, void *buffer);
  /** xc_mem_paging_resume(): Xen consumes the ring's responses. */
  int (*paging_resume)(void *hv, uint32_t domid);
  /** xc_domain_decrease_reservation_exact() of one page (the ring page
   *  leaves the guest's physmap once it is mapped). */
  int (*decrease_reservation)(void *hv, uint32_t domid, uint64_t gfn);
  /** xc_domain_populate_physmap_exact() of one page (a ring page goes
   *  back into the guest's physmap on close, for the next pager). */
  int (*populate_physmap)(void *hv, uint32_t domid, uint64_t gfn);

  /** xenforeignmemory_map() of @p n pages from @p gfn; NULL with errno. */
  void *(*map)(void *hv, uint32_t domid, int prot, uint64_t gfn, size_t n);
  /** xenforeignmemory_unmap(). */
  int (*unmap)(void *hv, void *addr, size_t n);

  /** Log-dirty: DMEM_XEN_LOGDIRTY_ENABLE and _OFF through xc_shadow_control,
   *  _CLEAN and _PEEK through xc_logdirty_control, which fill @p bitmap
   *  (one bit per page, @p npages bits, in unsigned longs). */
  int (*logdirty)(void *hv, uint32_t domid, unsigned op, unsigned long *bitmap, uint64_t npages);

  /** xenevtchn_bind_interdomain(): the local port, or -1. */
  int (*evtchn_bind)(void *hv, uint32_t domid, uint32_t remote_port);
  /** xenevtchn_unbind(). */
  int (*evtchn_unbind)(void *hv, uint32_t local_port);
  /** xenevtchn_notify(). */
  int (*evtchn_notify)(void *hv, uint32_t local_port);
  /** xenevtchn_fd(): readable when an event is pending. */
  int (*evtchn_fd)(void *hv);
  /** xenevtchn_pending(): the pending local port, or -1 (EAGAIN) if none. */
  int (*evtchn_pending)(void *hv);
  /** xenevtchn_unmask(). */
  int (*evtchn_unmask)(void *hv, uint32_t local_port);
} dmem_xen_calls;

#define DMEM_XEN_CALLS_VERSION 1

/** One VM's adapter. */
typedef struct dmem_xen_guest dmem_xen_guest;

/**
 * The sharing sources of the guests attached to one engine. Xen shares a
 * guest page only with another guest page, so for each engine frame the
 * adapter keeps one guest page that Xen nominated with the frame's bytes
 * (its "source") and shares the frame's other pages onto it. Guests find
 * each other's sources through a table: make one per engine and give it to
 * every guest that will be attached to that engine
 * (dmem_xen_guest_options.sources). A guest given none makes a table of its
 * own, and then shares in Xen's p2m only among its own pages: the engine
 * still keeps each frame once, but the other guests' copies keep their
 * memory. The library keeps no table of its own across the process.
 *
 * Each guest given the table holds a reference to it, so the caller may
 * destroy its own as soon as the guests are made; the table is freed when
 * the last of them lets go. The table is keyed by engine as well as by
 * frame, so a table given to guests of different engines is safe, if of
 * no use. Threads: the table locks itself; guests on any threads may use
 * it at once.
 */
typedef struct dmem_xen_sources dmem_xen_sources;

/**
 * Makes an empty table of sharing sources.
 * @param out receives the table, with one reference: the caller's.
 * @param allocator the table's memory (one block of about 32 KiB, and one
 *        small block per frame shared in Xen's p2m); NULL: the C library's.
 *        It must outlive the table, that is every guest given it.
 * @retval 0 success.
 * @retval DMEM_EINVAL @p out is NULL, or the allocator lacks a function.
 * @retval DMEM_ENOMEM.
 */
DMEM_API int dmem_xen_sources_create(dmem_xen_sources **out, const dmem_allocator *allocator);

/**
 * Drops the caller's reference to @p sources; the table goes with the last
 * reference, once every guest given it has been destroyed. Guests keep
 * using it until then. NULL does nothing.
 */
DMEM_API void dmem_xen_sources_destroy(dmem_xen_sources *sources);

/** Options of dmem_xen_guest_create(). Start from DMEM_XEN_GUEST_OPTIONS_INIT. */
typedef struct dmem_xen_guest_options {
  unsigned version; /**< DMEM_XEN_GUEST_OPTIONS_VERSION */
  uint32_t domid;   /**< the guest */
  /** NULL: libxenctrl. Otherwise a table that outlives the adapter. */
  const dmem_xen_calls *calls;
  /** The context passed to @c calls (ignored when calls is NULL). */
  void *hv;
  /** Offer share(): pages shared copy-on-write in Xen's p2m. 0: shared
   *  pages are evicted and rebuilt from their frame on touch. */
  int share;
  /** Pages served; 0: the domain's own count. */
  uint64_t npages;
  /** With @c share: called (from the ring service) when a guest's write to
   *  a shared page needs a page of its own and Xen has none; the guest's
   *  vCPU waits until it returns, then retries. Make memory available here
   *  (balloon another guest down, say). NULL: the engine scans this VM once,
   *  which may page out cold pages. */
  void (*on_enomem)(dmem_xen_guest *x, uint64_t gfn, void *ud);
  void *enomem_ud; /**< passed to on_enomem */
  /** The VM's sharing domain when attached (dmem_vm_options): guests of
   *  one tenant share a non-zero value; DMEM_DOMAIN_OWN (0) shares with
   *  no other guest. */
  uint32_t sharing_domain;
  /** The adapter's own memory (its page tables and rings' state); NULL:
   *  the C library's. libxenctrl's handles allocate their own. */
  const dmem_allocator *allocator;
  /** With @c share: the table of sharing sources of the engine this guest
   *  will be attached to (dmem_xen_sources_create()), the same for every
   *  guest of that engine; the guest takes a reference. NULL: a table of
   *  the guest's own, so Xen shares its pages with no other guest's.
   *  (Version 3; a program that sets version 2 gets NULL.) */
  dmem_xen_sources *sources;
} dmem_xen_guest_options;

/** The version of dmem_xen_guest_options this header describes;
 *  dmem_xen_guest_create() also takes version 2 (without @c sources). */
#define DMEM_XEN_GUEST_OPTIONS_VERSION 3
#define DMEM_XEN_GUEST_OPTIONS_INIT                                                                \
  {                                                                                                \
    DMEM_XEN_GUEST_OPTIONS_VERSION, 0, NULL, NULL, 1, 0, NULL, NULL, DMEM_DOMAIN_OWN, NULL, NULL   \
  }

/**
 * Takes over paging for a guest: checks it is HVM with HAP, maps the
 * paging ring, enables paging, binds its event channel, enables log-dirty,
 * and enables sharing when asked.
 * @param out receives the guest.
 * @param opts the domain and the engine (DMEM_XEN_GUEST_OPTIONS_INIT).
 * @retval 0 success.
 * @retval DMEM_ENOTSUP no Xen here (the message says why, e.g. "cannot open
 *         /dev/xen/privcmd: No such file or directory"), or a guest that is
 *         not HVM with HAP.
 * @retval DMEM_ENOENT no such domain.
 * @retval DMEM_EBUSY another pager owns the guest.
 * @retval DMEM_ESYS another call failed (see the message).
 * @retval DMEM_EINVAL, DMEM_EVERSION bad options.
 * @retval DMEM_ENOMEM.
 * @param errbuf receives the message on failure (may be NULL).
 * @param errlen its size.
 */
DMEM_API int dmem_xen_guest_create(dmem_xen_guest **out, const dmem_xen_guest_options *opts,
                                   char *errbuf, size_t errlen);

/**
 * Lets go of the guest: detaches the VM if it is still attached (every
 * page is installed again; stop the engine's thread first), stops the
 * adapter's thread, answers every request left on the rings so that no
 * vCPU stays paused, disables log-dirty, sharing and the rings, puts the
 * ring pages back into the guest's physmap, and frees the adapter. If a
 * page is still evicted (a detach that failed), paging stays enabled:
 * Xen would crash a guest that touches a paged-out page with no pager,
 * while this way its vCPU waits. NULL does nothing.
 */
DMEM_API void dmem_xen_guest_destroy(dmem_xen_guest *x);

/** The detail of the adapter's last error, or "". */
DMEM_API const char *dmem_xen_guest_errmsg(const dmem_xen_guest *x);

/** The pages the adapter serves. */
DMEM_API uint64_t dmem_xen_guest_npages(const dmem_xen_guest *x);

/**
 * Attaches the guest to @p engine with this adapter's operations; the ring
 * service then sends faults to the VM. One attachment at a time.
 * @retval 0 success.
 * @retval DMEM_EBUSY already attached.
 * @return or dmem_vm_attach()'s error.
 */
DMEM_API int dmem_xen_guest_attach(dmem_vm **out, dmem_engine *engine, dmem_xen_guest *x,
                                   const char *name);

/**
 * Detaches the VM attached by dmem_xen_guest_attach() (dmem_vm_detach(), which
 * installs every page) and forgets it.
 * @return dmem_vm_detach()'s result; on failure the VM stays attached.
 */
DMEM_API int dmem_xen_guest_detach(dmem_xen_guest *x);

/** The event channel's file descriptor, for the VMM's own poll loop:
 *  call dmem_xen_guest_poll() when it is readable. */
DMEM_API int dmem_xen_guest_fd(const dmem_xen_guest *x);

/**
 * Serves the paging ring: waits up to @p timeout_ms (0: not at all, -1:
 * forever) for an event, then answers every request on the ring, and
 * retries any request a failure left unanswered.
 * @param served receives the requests answered (may be NULL).
 * @param x the guest.
 * @param timeout_ms how long to wait for an event, as above.
 * @retval 0 success (also when nothing was pending).
 * @retval DMEM_EIO a request could not be answered now (its page could not
 *         be rebuilt or loaded): its vCPU stays paused, and the request is
 *         retried on the next call. The message names the page.
 * @retval DMEM_ESYS waiting on or notifying the event channel failed.
 */
DMEM_API int dmem_xen_guest_poll(dmem_xen_guest *x, int timeout_ms, unsigned *served);

/** Starts a thread that runs dmem_xen_guest_poll() until dmem_xen_guest_stop().
 *  @retval 0.
 *  @retval DMEM_EBUSY running.
 *  @retval DMEM_ESYS. */
DMEM_API int dmem_xen_guest_start(dmem_xen_guest *x);

/** Stops and joins the thread; nothing if none runs. */
DMEM_API void dmem_xen_guest_stop(dmem_xen_guest *x);

/**
 * Shares the pages @p first .. @p last of a clone with its source domain
 * (xc_memshr_range_share): for a guest restored from the same snapshot as
 * @p source, before it runs. Xen does not compare the pages: only call it
 * when the two domains' pages in the range are known to be the same. Both
 * adapters need share enabled.
 * @retval 0.
 * @retval DMEM_EINVAL different sizes, or sharing off.
 * @retval DMEM_ENOMEM.
 * @retval DMEM_ESYS.
 */
DMEM_API int dmem_xen_guest_share_range(dmem_xen_guest *source, dmem_xen_guest *clone,
                                        uint64_t first, uint64_t last);

/**
 * Shares two granted pages that hold the same bytes (a backend that has
 * just filled both from the same disk block, say), by grant reference. Call
 * it after unmapping both grants and before telling the guests that their
 * I/O is done; Xen's handles make it fail rather than share a page a guest
 * wrote after nomination.
 * @retval 0.
 * @retval DMEM_EBUSY a handle was invalidated by a write (the pages stay as
 *         they were).
 * @retval DMEM_EINVAL a grant reference is invalid, or sharing off.
 * @retval DMEM_ESYS.
 */
DMEM_API int dmem_xen_guest_share_grefs(dmem_xen_guest *source, uint32_t source_gref,
                                        dmem_xen_guest *client, uint32_t client_gref);

/** The adapter's own counts. */
typedef struct dmem_xen_stats {
  unsigned version;       /**< set by the caller to DMEM_XEN_STATS_VERSION */
  uint64_t requests;      /**< ring requests read */
  uint64_t faults;        /**< requests served by rebuilding a page */
  uint64_t evict_fail;    /**< requests for nominated pages (prep only) */
  uint64_t dropped;       /**< MEM_PAGING_DROP_PAGE notices */
  uint64_t evicts;        /**< pages evicted */
  uint64_t evict_changed; /**< evictions refused: the page changed after it was read */
  uint64_t shares;        /**< pages shared in Xen's p2m */
  uint64_t share_stale;   /**< shares refused: the page changed (client handle) */
  uint64_t resourced;     /**< frames whose source page moved to another page */
  uint64_t retries;       /**< requests left for a later dmem_xen_guest_poll() */
  uint64_t enomem;        /**< copy-on-write breaks that found Xen without memory */
} dmem_xen_stats;

/** The version of dmem_xen_stats this header describes: a later library
 *  appends fields and fills only those of the caller's version. */
#define DMEM_XEN_STATS_VERSION 1
/** A dmem_xen_stats ready to be filled. */
#define DMEM_XEN_STATS_INIT                                                                        \
  {                                                                                                \
    DMEM_XEN_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0                                        \
  }

/** Fills @p out.
 *  @retval 0.
 *  @retval DMEM_EVERSION out->version is not DMEM_XEN_STATS_VERSION
 *          (nothing written).
 *  @retval DMEM_EINVAL a NULL
 *  argument. */
DMEM_API int dmem_xen_guest_stats(dmem_xen_stats *out, const dmem_xen_guest *x);

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_XEN_H */
