/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/adapter.h
 * @brief What an adapter implements: the engine's view of one VM's memory.
 *
 * An adapter binds the engine to a hypervisor (libdiffmem-kvm, -xen) or to
 * plain memory (tests, non-VM users). It names guest pages by guest frame
 * number (gfn, 0 .. npages-1) and offers a small table of operations. The
 * engine never touches guest memory except through these.
 *
 * Residency. A page is resident when the guest can touch it without the
 * adapter calling dmem_vm_fault(): either private guest memory, or a frame
 * mapped copy-on-write by @c share. After @c evict the page is not
 * resident, and the adapter must route the guest's next touch of it (read
 * or write) to dmem_vm_fault(), which calls @c install with the content.
 *
 * Threads and locks. The engine calls every operation with its own lock
 * held, from the thread that called into the engine (a scan, a hint, a
 * fault, detach). An operation must not call back into the engine and must
 * not wait for a fault on another thread to be served, or the two deadlock.
 * The adapter's fault thread calls dmem_vm_fault() without holding locks
 * that its operations take.
 *
 * Errors. An operation returns 0 or a negative DMEM_E* code. A failed
 * operation leaves the page as it was; the engine then leaves it resident
 * (it retries on a later pass) and counts the error. Any other result (a
 * positive value, a code outside the table) is taken as DMEM_EIO. Do not
 * return a negated errno: -EIO is -5, which is DMEM_ENOTSUP.
 */
#ifndef DIFFMEM_ADAPTER_H
#define DIFFMEM_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The guest touched the page since the bits were last cleared. */
#define DMEM_BIT_REFERENCED 0x1u
/** The guest wrote the page since the bits were last cleared. */
#define DMEM_BIT_MODIFIED 0x2u
/** The page holds no memory (never touched since the VM began, or given
 *  back by the guest's balloon): it reads as zeros and freeing it would
 *  save nothing, so the engine neither reads nor evicts it on this visit.
 *  Optional: an adapter that cannot tell never reports it. */
#define DMEM_BIT_ABSENT 0x4u

/** The operations of one VM's memory. Fields marked optional may be NULL. */
typedef struct dmem_adapter_ops {
  unsigned version; /**< DMEM_ADAPTER_OPS_VERSION */

  /** Copies the content of resident page @p gfn into @p buf (DMEM_PAGE_SIZE
   *  bytes). Required. */
  int (*read)(void *buf, uint64_t gfn, void *ud);

  /** Reads and clears the referenced and modified bits of the resident
   *  pages @p first .. @p first + @p n - 1 into @p out (one byte each,
   *  DMEM_BIT_* flags). Non-resident pages in the range report 0. An adapter
   *  that cannot tell referenced from modified reports both. A resident
   *  page without memory behind it may report DMEM_BIT_ABSENT. Required. */
  int (*bits)(uint8_t *out, uint64_t first, size_t n, void *ud);

  /** Write-protects resident page @p gfn: a guest write to it must wait
   *  until the engine calls @c evict, @c share, @c install or @c unprotect
   *  on it. This keeps a write from being lost between the engine's read of
   *  a page and its eviction. Optional: without it the adapter promises
   *  that the guest does not write while the engine runs (a paused guest). */
  int (*protect)(uint64_t gfn, void *ud);

  /** Lifts @c protect. Optional, but required when @c protect is given. */
  int (*unprotect)(uint64_t gfn, void *ud);

  /** Makes page @p gfn not resident and frees its memory; lifts any
   *  protection. Required. */
  int (*evict)(uint64_t gfn, void *ud);

  /** Maps frame @p frame_id, whose content is at @p frame (and at offset
   *  frame_id * DMEM_PAGE_SIZE of the VM's dmem_vm_frames_fd()), copy-on-write
   *  over page @p gfn: guest reads see the frame, a guest write gives the
   *  guest a private copy (and sets the modified bit), and the page's own
   *  memory is freed. The frame stays valid and unchanged until the engine
   *  evicts or installs the page. Lifts any protection. The engine calls
   *  it on a resident page that equals the frame (a scan, when map_shared
   *  is on and the page is read-hot) and on an evicted one
   *  (dmem_vm_fault_read()). Return DMEM_ENOTSUP for a page the adapter
   *  will not map in that state, DMEM_ENOSPC when its budget of mappings
   *  is spent: the engine then evicts or copies instead, and counts no
   *  error. Optional: without it, shared pages are evicted and rebuilt
   *  from their frame on touch. */
  int (*share)(uint64_t gfn, uint32_t frame_id, const void *frame, void *ud);

  /** Makes page @p gfn resident private memory holding @p content
   *  (DMEM_PAGE_SIZE bytes): on a fault, on detach, and to replace a
   *  copy-on-write mapping. Required. */
  int (*install)(uint64_t gfn, const void *content, void *ud);
} dmem_adapter_ops;

#define DMEM_ADAPTER_OPS_VERSION 1

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_ADAPTER_H */
