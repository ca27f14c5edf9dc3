/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The KVM layer of libdiffmem-kvm: the region as a KVM memory slot, and
 * KVM's dirty log as a second source of modified bits. It sits above the
 * Linux memory layer (mem.h) and reaches it only through that header.
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

#include "mem.h"

/* The slot as the dirty-log source of a region (mem.h: dirty_src). */
typedef struct kvm_slot {
  int vm_fd;
  uint32_t slot;
  uint64_t *bitmap; /* KVM_GET_DIRTY_LOG, (npages + 63) / 64 words */
} kvm_slot;

static size_t bitmap_bytes(const dmem_kvm_region *r)
{
  return (size_t)((r->npages + 63) / 64 * 8);
}

/* ORs KVM's dirty log into MOD; mu held. */
static int sync_dirty(dmem_kvm_region *r, void *state)
{
  kvm_slot *k = state;
  struct kvm_dirty_log d = {.slot = k->slot};
  d.dirty_bitmap = k->bitmap;
  if (dmem__sys_ioctl(DMEM__FP_KVM_IOCTL, k->vm_fd, KVM_GET_DIRTY_LOG, &d) != 0)
    return dmem__mem_fail(r, DMEM_ESYS, "KVM_GET_DIRTY_LOG of slot %u: %s", (unsigned)k->slot,
                          strerror(errno));
  for (uint64_t w = 0; w < (r->npages + 63) / 64; w++) {
    uint64_t bits = k->bitmap[w];
    while (bits) {
      uint64_t gfn = w * 64 + (uint64_t)__builtin_ctzll(bits);
      bits &= bits - 1;
      if (gfn < r->npages && !(r->pages[gfn] & PG_EVICTED))
        r->pages[gfn] |= PG_REF | PG_MOD;
    }
  }
  return 0;
}

static void release_slot(dmem_kvm_region *r, void *state)
{
  kvm_slot *k = state;
  dmem__mem_free(r, k->bitmap, bitmap_bytes(r));
  dmem__mem_free(r, k, sizeof *k);
}

/* Installs (k) or removes (NULL) the region's dirty-log source. */
static void set_source(dmem_kvm_region *r, kvm_slot *k)
{
  pthread_mutex_lock(&r->mu);
  dmem__mem_dirty_src old = r->dirty_src;
  r->dirty_src = k ? (dmem__mem_dirty_src){sync_dirty, release_slot, k} : (dmem__mem_dirty_src){0};
  pthread_mutex_unlock(&r->mu);
  if (old.release)
    old.release(r, old.state);
}

int dmem_kvm_region_set_slot(dmem_kvm_region *r, int vm_fd, uint32_t slot, uint64_t gpa,
                             int log_dirty)
{
  if (!r)
    return DMEM_EINVAL;
  if (vm_fd < 0) {
    set_source(r, NULL);
    return 0;
  }
  if (gpa % PAGE)
    return dmem__mem_fail(r, DMEM_EINVAL, "gpa %#llx is not page-aligned", (unsigned long long)gpa);
  kvm_slot *k = NULL;
  if (log_dirty) {
    k = dmem__mem_alloc(r, sizeof *k);
    uint64_t *b = dmem__mem_alloc(r, bitmap_bytes(r));
    if (!k || !b) {
      dmem__mem_free(r, k, sizeof *k);
      dmem__mem_free(r, b, bitmap_bytes(r));
      return dmem__mem_fail(r, DMEM_ENOMEM, "out of memory for the dirty bitmap");
    }
    memset(b, 0, bitmap_bytes(r));
    *k = (kvm_slot){.vm_fd = vm_fd, .slot = slot, .bitmap = b};
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
  if (dmem__sys_ioctl(DMEM__FP_KVM_IOCTL, vm_fd, KVM_SET_USER_MEMORY_REGION, &m) != 0) {
    int err = errno;
    if (k)
      release_slot(r, k);
    return dmem__mem_fail(r, DMEM_ESYS, "KVM_SET_USER_MEMORY_REGION slot %u at %#llx: %s",
                          (unsigned)slot, (unsigned long long)gpa, strerror(err));
  }
  set_source(r, k);
  return 0;
}
