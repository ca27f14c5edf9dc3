/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Linux memory layer of libdiffmem-kvm: guest RAM in a memfd, mapped
 * MAP_SHARED, served through userfaultfd. It knows nothing of KVM: the KVM
 * layer (kvm.c: memory slots, the dirty log) sits above it and calls into
 * it, never the other way round; what it adds to the bits (KVM's dirty
 * log) reaches this layer through the dirty_src hook below.
 *
 * Files, from the top down; each calls only files below it:
 *
 *   mem_region.c  the object: create, attach, detach, destroy
 *   mem_ops.c     the engine's side: dmem_adapter_ops
 *   mem_uffd.c    the guest's side: the userfaultfd and the thread that
 *                 serves its faults
 *   mem_cow.c     frames mapped copy-on-write over read-hot shared pages
 *   mem_page.c    the primitives the others share: allocation, errors, the
 *                 clock and fault latencies; protecting, waking, filling,
 *                 writing and copying a page
 *
 * mem_ops.c and mem_uffd.c stand side by side and never call each other:
 * they meet only in the region's state, under mu, and the fault thread
 * reaches the ops only through the engine (dmem_vm_fault() calls
 * install()). A primitive that a second file needs goes down into
 * mem_page.c rather than being called across.
 *
 * Two address spaces may be involved. The region reads and writes guest
 * pages through its own mapping (base) or the memfd itself. The
 * userfaultfd's ioctls act on the address space that registered the range,
 * at uffd_base: the same mapping when the region opened the userfaultfd,
 * or a mapping in another process (a VMM that passed its userfaultfd over a
 * Unix socket). Zapping page-table entries (MADV_DONTNEED) works only on
 * this process's own mapping, so referenced tracking (MINOR faults) needs
 * uffd_base == base.
 *
 * Per-page state, one byte per guest page, guarded by region->mu:
 *
 *   EVICTED  the memfd block was punched by evict(): the content is with
 *            the engine, and only install() may fill the page again. A hole
 *            that is not EVICTED is a page never written: it reads as zeros,
 *            and a touch is filled with zeros on the spot.
 *   EPROT    the engine protected the page (protect()): its mapping is
 *            write-protected, and no fault path may make it writable until
 *            the engine calls unprotect(), evict() or install(). Writers
 *            wait in the kernel; the fault thread waits on region->cv.
 *   ARMED    write-protected for modified tracking: the next write is a WP
 *            fault that sets MOD and lifts the protection.
 *   REF, MOD the bits since the last bits() call.
 *   FAULT    a fault on the page waits for the engine's install() or
 *            share();
 *   FWRITE   ... and it is a write (install then maps the page writable).
 *   MAPPED   the page maps frame frame_of[gfn] copy-on-write: a MAP_PRIVATE
 *            mapping of the engine's frames memfd over the page, registered
 *            in WP mode only and always ARMED, so that a read never faults
 *            and a write stops as a WP fault first (recorded as MOD; the
 *            write then copies the frame privately, and the engine, seeing
 *            MOD, makes the page private again through install()). The
 *            guest memfd has no block for it. A mapped page is read through
 *            the mapping (it may hold a private copy), never zapped (that
 *            would throw such a copy away) and never punched; install()
 *            puts the memfd back under it, writing the content first so
 *            that no touch in between sees a hole.
 *
 * Lock order: the engine's lock, then region->mu. The engine calls the ops
 * with its lock held and they take mu; the fault thread never holds mu
 * while it calls into the engine. No op waits for the fault thread.
 */
#ifndef DMEM_KVM_MEM_H
#define DMEM_KVM_MEM_H

#include <pthread.h>
#include <stdint.h>

#include <diffmem/kvm.h>

#include "internal.h" /* the libraries' base (lib/) */

#define PAGE DMEM_PAGE_SIZE

/* Inside the layer only: an agent failed to answer (mem_cow.c). */
#define DMEM_ETIMEDOUT_ (DMEM_ERRNO_LAST_ - 100)

#define PG_EVICTED 0x01u
#define PG_EPROT 0x02u
#define PG_ARMED 0x04u
#define PG_REF 0x08u
#define PG_MOD 0x10u
#define PG_FAULT 0x20u
#define PG_FWRITE 0x40u
#define PG_MAPPED 0x80u

/* frame_of[] of a MAPPED page whose registration failed (mem_cow.c):
 * DMEM__REMAP_PENDING, its memfd block is mapped back and holds its
 * content, guest writes since included (the next unmap only registers
 * it); DMEM__MAP_UNPROTECTED, it maps a frame that could not be
 * write-protected, so a guest write may have given it a private copy (the
 * next unmap protects it and takes what the mapping shows). */
#define DMEM__REMAP_PENDING UINT32_MAX
#define DMEM__MAP_UNPROTECTED (UINT32_MAX - 1)

/* A second source of modified bits, installed by the layer above (kvm.c:
 * KVM's dirty log). bits() calls sync with mu held; it ORs what it knows
 * into the pages' MOD bits. destroy calls release. */
typedef struct dmem__mem_dirty_src {
  int (*sync)(dmem_kvm_region *r, void *state);
  void (*release)(dmem_kvm_region *r, void *state);
  void *state;
} dmem__mem_dirty_src;

struct dmem_kvm_region {
  dmem__alloc alloc; /* the caller's hook, or the C library's */
  dmem_kvm_region_options opts;
  uint8_t *base; /* guest page 0 */
  uint64_t size, npages;
  int fd, own_fd, own_map;
  uint64_t fd_offset;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* EPROT lifted; in_engine dropped to 0 */
  uint8_t *pages;    /* PG_* per page */
  /* Visits of bits() a freshly filled page stays writable for, reported
   * as modified meanwhile (YOUNG in mem_uffd.c): 0 for most pages. */
  uint8_t *young;

  /* The userfaultfd's view: the registered range starts at uffd_base in
   * the address space that registered it (base when it is this process's
   * own mapping). own_uffd: opened and registered by attach, closed by
   * detach; otherwise the caller's (opts.uffd, opts.uffd_features). */
  uint64_t uffd_base;
  int own_uffd;

  /* attachment: set by attach, cleared by detach (mu held to change) */
  dmem_vm *vm;
  dmem_engine *engine;
  int uffd, stop_fd;
  unsigned track; /* DMEM_KVM_TRACK_* in use */
  int have_thread;
  pthread_t thread;
  int detaching;      /* the fault thread no longer calls into the engine */
  int stopping;       /* the fault thread leaves its waits */
  unsigned in_engine; /* fault-thread calls into the engine under way */
  int continue_wp;    /* the kernel takes UFFDIO_CONTINUE_MODE_WP */

  dmem__mem_dirty_src dirty_src; /* mu held to change */

  /* Copy-on-write mapping of frames (mem_cow.c), set up by attach when the
   * engine has a frames memfd and the region tracks with MINOR and WP in
   * its own mapping. vmas_used counts the mapping boundaries that mapped
   * pages add (each one VMA), against vma_budget. broken: mapped pages
   * whose registration failed (frame_of DMEM__REMAP_PENDING or
   * DMEM__MAP_UNPROTECTED); while there are any, nothing is evicted (a
   * touch of a hole in an unregistered page would read zeros). */
  int cow, frames_fd, broken;
  uint32_t *frame_of; /* per page, while MAPPED */
  uint64_t vmas_used, vma_budget;
  /* With a userfaultfd from another process, the mmap calls of mapping
   * happen there, through its agent (opts.agent_fd; mem_cow.c). A RAM the
   * agent did not answer within agent_timeout_ms is agent_pending (its
   * seq, for page agent_pending_gfn): nothing more is asked until its
   * answer comes, and the page stays MAPPED meanwhile. agent_dead: the
   * agent hung up or broke the protocol; nothing is asked of it again.
   * Either way a MAPPED page is the agent's (the VMM's private page may be
   * its truth): its block is never written or punched, and the engine
   * keeps its frame. */
  int agent_fd, agent_dead, agent_hung_up;
  uint32_t agent_seq, agent_pending, agent_timeout_ms;
  uint64_t agent_pending_gfn;
  /* A write fault on agent_pending_gfn is held (neither let through nor
   * woken) until the answer comes: the agent relies on the protection
   * between its copy of the page and its remap. The fault thread then
   * watches the agent's socket too, and the answer wakes the writer. */
  int agent_held;
  /* The address space behind the userfaultfd is gone (ESRCH: the VMM
   * exited); the memfd is all that is left of the guest. */
  int vmm_gone;
  /* A detach failed (a page the engine could not take back): nothing
   * leaves guest memory any more, as the VMM may now let the range go. */
  int held;

  dmem_kvm_stats st; /* counters, mu held */
  char errmsg[DMEM_ERRBUF_SIZE];
  uint64_t nerrors; /* atomic: dmem__mem_fail() calls (stats: errors) */
  uint8_t zeros[PAGE] __attribute__((aligned(64)));
};

/* mem_page.c: the primitives under the rest of the layer. */
void *dmem__mem_alloc(dmem_kvm_region *r, size_t size);
void dmem__mem_free(dmem_kvm_region *r, void *p, size_t size);
int dmem__mem_fail(dmem_kvm_region *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t dmem__mem_now_ns(void);
void dmem__mem_lat_record(dmem_kvm_region *r, uint64_t ns);
int dmem__mem_wp(dmem_kvm_region *r, uint64_t gfn, uint64_t n, int on, int wake);
/* Puts content into an EVICTED page or a never-written hole, writable when
 * @write, else ARMED, and wakes the threads waiting on it. Where a block
 * exists already, @overwrite writes the content into it; otherwise the
 * block is kept. Returns 0 when filled, 1 when a block was there, or an
 * error; mu held. */
int dmem__mem_fill(dmem_kvm_region *r, uint64_t gfn, const void *content, int write, int overwrite);
int dmem__mem_wake(dmem_kvm_region *r, uint64_t gfn);
/* Writes content into the memfd's block of page gfn (made if it is a hole). */
int dmem__mem_pwrite(dmem_kvm_region *r, uint64_t gfn, const void *content);

/* Copies guest page gfn through the region's own mapping. The guest's
 * threads write that memory; write protection (userfaultfd) orders them
 * with this read, which ThreadSanitizer cannot see (tests/tsan.supp names
 * this function). Not inlined, so that the name is on the stack. */
__attribute__((noinline)) void dmem__mem_copy_guest(void *buf, const dmem_kvm_region *r,
                                                    uint64_t gfn);
/* The userfaultfd address of guest page gfn. */
static inline uint64_t dmem__mem_uaddr(const dmem_kvm_region *r, uint64_t gfn)
{
  return r->uffd_base + gfn * PAGE;
}

/* mem_cow.c: copy-on-write mapping of the engine's frames; mu held. */
int dmem__mem_cow_setup(dmem_kvm_region *r, int frames_fd);
void dmem__mem_cow_teardown(dmem_kvm_region *r);
/* Takes an agent's late answer, if one is pending and has come (@p wait:
 * waiting for it as a detach does). mu held. */
void dmem__mem_cow_poll(dmem_kvm_region *r, int wait);
/* Is a RAM for page gfn in flight (asked, not yet answered)? Its page must
 * stay write-protected until the answer. mu held. */
int dmem__mem_cow_in_flight(const dmem_kvm_region *r, uint64_t gfn);
/* A write fault on page gfn: 1 when it is held until its RAM's answer, or
 * that answer has just put the page back and woken the writer (the fault
 * thread does nothing more); 0 to serve it as usual. mu held. */
int dmem__mem_cow_hold_write(dmem_kvm_region *r, uint64_t gfn);
/* Maps frame_id over evicted page gfn (through an agent: asks it to). */
int dmem__mem_cow_map(dmem_kvm_region *r, uint64_t gfn, uint32_t frame_id);
/* Puts the guest memfd back under a MAPPED page, holding content (written
 * into the memfd first); writable when @write, else ARMED. */
int dmem__mem_cow_unmap(dmem_kvm_region *r, uint64_t gfn, const void *content, int write);
/* A page whose registration failed: DMEM__REMAP_PENDING, registers it
 * again, and it is a resident page of the memfd (written, maybe, unseen);
 * DMEM__MAP_UNPROTECTED, registers it for WP (its unmap does the rest).
 * 0 for any other page; mu held. */
int dmem__mem_cow_repair(dmem_kvm_region *r, uint64_t gfn);
/* madvise(MADV_DONTNEED) over pages first .. first+n-1, skipping MAPPED ones. */
int dmem__mem_zap(dmem_kvm_region *r, uint64_t first, uint64_t n);

/* mem_uffd.c */
int dmem__mem_uffd_open(dmem_kvm_region *r);
void dmem__mem_uffd_unregister(dmem_kvm_region *r);
void dmem__mem_uffd_close(dmem_kvm_region *r);
int dmem__mem_thread_start(dmem_kvm_region *r);
void dmem__mem_thread_stop(dmem_kvm_region *r);

/* mem_ops.c: the tables the engine calls (with and without WP mode). */
extern const dmem_adapter_ops dmem__mem_ops_wp, dmem__mem_ops_nowp;

#endif
