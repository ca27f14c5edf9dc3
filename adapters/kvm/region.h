/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The KVM adapter's internals, shared by region.c (the object), ops.c (the
 * engine's side: dmem_adapter_ops), uffd.c (the guest's side: the fault
 * thread) and kvm.c (memory slots and dirty logging).
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
 *   FAULT    a fault on the page waits for the engine's install();
 *   FWRITE   ... and it is a write (install then maps the page writable).
 *
 * Lock order: the engine's lock, then region->mu. The engine calls the ops
 * with its lock held and they take mu; the fault thread never holds mu
 * while it calls into the engine. No op waits for the fault thread.
 */
#ifndef DMEM_KVM_REGION_H
#define DMEM_KVM_REGION_H

#include <pthread.h>
#include <stdint.h>

#include <diffmem/kvm.h>

#define PAGE DMEM_PAGE_SIZE

#define PG_EVICTED 0x01u
#define PG_EPROT 0x02u
#define PG_ARMED 0x04u
#define PG_REF 0x08u
#define PG_MOD 0x10u
#define PG_FAULT 0x20u
#define PG_FWRITE 0x40u

#define ERRMSG_MAX 256

struct dmem_kvm_region {
  dmem_allocator alloc; /* a copy of the hook, or the C library's */
  dmem_kvm_region_options opts;
  uint8_t *base; /* guest page 0 */
  uint64_t size, npages;
  int fd, own_fd, own_map;
  uint64_t fd_offset;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* EPROT lifted; in_engine dropped to 0 */
  uint8_t *pages;    /* PG_* per page */

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

  /* KVM slot (kvm.c) */
  int vm_fd;
  uint32_t slot;
  uint64_t gpa;
  int log_dirty;
  uint64_t *dirty; /* KVM_GET_DIRTY_LOG bitmap, (npages + 63) / 64 words */

  dmem_kvm_stats st; /* counters, mu held */
  char errmsg[ERRMSG_MAX];
  uint8_t zeros[PAGE] __attribute__((aligned(64)));
};

/* region.c */
void *dmem__kvm_alloc(dmem_kvm_region *r, size_t size);
void dmem__kvm_free(dmem_kvm_region *r, void *p, size_t size);
int dmem__kvm_fail(dmem_kvm_region *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t dmem__kvm_now_ns(void);
void dmem__kvm_lat_record(dmem_kvm_region *r, uint64_t ns);

/* ops.c: the tables the engine calls (with and without WP mode), and what
 * the fault thread shares */
extern const dmem_adapter_ops dmem__kvm_ops_wp, dmem__kvm_ops_nowp;
int dmem__kvm_wp(dmem_kvm_region *r, uint64_t gfn, uint64_t n, int on, int wake);
int dmem__kvm_is_zero(const void *page);
/* Puts content into an EVICTED page or a never-written hole, writable when
 * @write, else ARMED, and wakes the threads waiting on it. Where a block
 * exists already, @overwrite writes the content into it; otherwise the
 * block is kept. Returns 0 when filled, 1 when a block was there, or an
 * error; mu held. */
int dmem__kvm_fill(dmem_kvm_region *r, uint64_t gfn, const void *content, int write, int overwrite);
int dmem__kvm_wake(dmem_kvm_region *r, uint64_t gfn);

/* uffd.c */
int dmem__kvm_uffd_open(dmem_kvm_region *r);
void dmem__kvm_uffd_unregister(dmem_kvm_region *r);
void dmem__kvm_uffd_close(dmem_kvm_region *r);
int dmem__kvm_thread_start(dmem_kvm_region *r);
void dmem__kvm_thread_stop(dmem_kvm_region *r);

/* kvm.c: ORs KVM's dirty log into MOD; mu held. */
int dmem__kvm_sync_dirty(dmem_kvm_region *r);

#endif
