/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The region as a KVM memory slot, and KVM's dirty log as a second source
 * of modified bits.
 *
 * KVM maps guest memory from the region's mapping through its MMU
 * notifiers, so everything the adapter does to the mapping (punching a
 * block, zapping entries, write-protecting) reaches the vCPUs: their next
 * access faults on the host side, in KVM's get_user_pages, and the fault
 * thread serves it like any other (verified on this project's hosts with
 * vCPUs under KVM_RUN).
 *
 * The dirty log adds nothing the WP tracking misses while WP mode is on
 * (every write to an armed page faults first), but it is cheap, works
 * without WP mode, and catches writes that a VMM made writable through
 * other means. KVM_GET_DIRTY_LOG reads and clears the whole slot at once,
 * so each call ORs the whole bitmap into the per-page MOD bits.
 */
#include "config.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "region.h"

int dmem_kvm_region_set_slot(dmem_kvm_region *r, int vm_fd, uint32_t slot, uint64_t gpa,
                             int log_dirty)
{
  if (!r)
    return DMEM_EINVAL;
  if (vm_fd < 0) {
    pthread_mutex_lock(&r->mu);
    r->vm_fd = -1;
    r->log_dirty = 0;
    pthread_mutex_unlock(&r->mu);
    return 0;
  }
  if (gpa % PAGE)
    return DMEM_EINVAL;
  size_t words = (size_t)((r->npages + 63) / 64);
  if (log_dirty && !r->dirty) {
    uint64_t *d = dmem__kvm_alloc(r, words * 8);
    if (!d)
      return DMEM_ENOMEM;
    memset(d, 0, words * 8);
    pthread_mutex_lock(&r->mu);
    r->dirty = d;
    pthread_mutex_unlock(&r->mu);
  }
  struct kvm_userspace_memory_region m = {
      .slot = slot,
      .flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
      .guest_phys_addr = gpa,
      .memory_size = r->size,
      .userspace_addr = (uint64_t)(uintptr_t)r->base,
  };
  /* Not under mu: KVM waits here for vCPUs inside a fault to leave it,
   * and the fault thread may need mu to serve them. */
  if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &m) != 0)
    return dmem__kvm_fail(r, DMEM_ESYS, "KVM_SET_USER_MEMORY_REGION slot %u at %#llx: %s",
                          (unsigned)slot, (unsigned long long)gpa, strerror(errno));
  pthread_mutex_lock(&r->mu);
  r->vm_fd = vm_fd;
  r->slot = slot;
  r->gpa = gpa;
  r->log_dirty = log_dirty != 0;
  pthread_mutex_unlock(&r->mu);
  return 0;
}

int dmem__kvm_sync_dirty(dmem_kvm_region *r)
{
  if (!r->log_dirty || r->vm_fd < 0 || !r->dirty)
    return 0;
  struct kvm_dirty_log d = {.slot = r->slot};
  d.dirty_bitmap = r->dirty;
  if (ioctl(r->vm_fd, KVM_GET_DIRTY_LOG, &d) != 0)
    return dmem__kvm_fail(r, DMEM_ESYS, "KVM_GET_DIRTY_LOG of slot %u: %s", (unsigned)r->slot,
                          strerror(errno));
  for (uint64_t w = 0; w < (r->npages + 63) / 64; w++) {
    uint64_t bits = r->dirty[w];
    while (bits) {
      uint64_t gfn = w * 64 + (uint64_t)__builtin_ctzll(bits);
      bits &= bits - 1;
      if (gfn < r->npages && !(r->pages[gfn] & PG_EVICTED))
        r->pages[gfn] |= PG_REF | PG_MOD;
    }
  }
  return 0;
}
