/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Copy-on-write sharing in the Linux memory layer: a guest page that reads
 * a shared content maps the engine's frame (MAP_PRIVATE | MAP_FIXED of the
 * frames memfd) instead of holding a copy (mem.h: PG_MAPPED).
 *
 * When. The engine shares identical pages by evicting them, as before; a
 * guest read of such a page (a MISSING fault without the write flag) asks
 * the engine through dmem_vm_fault_read(), which calls share(), which maps
 * the frame here. So the pages that get mapped are the read-hot ones, and
 * a write fault still gets a private copy. A resident page is never mapped
 * (share() on it says DMEM_ENOTSUP and the engine evicts it).
 *
 * Why the mapping holds. A MAP_FIXED mapping replaces the registration of
 * the page, so the new mapping is registered again, in WP mode only:
 *  - reads never fault to the fault thread, so the engine may read a mapped
 *    page through the mapping under its lock;
 *  - a write stops as a WP fault: recorded as modified, then let through,
 *    and the kernel copies the frame into a private anonymous page, which
 *    is the page's content from then on (the engine reads it through the
 *    mapping and puts it back into the memfd through install());
 *  - nothing zaps a mapped page (bits() skips them: MADV_DONTNEED on a
 *    private mapping throws a private copy away) and nothing punches it.
 * Between the mmap and the registration a write would copy the frame
 * without a fault: the content is still right (it is read through the
 * mapping) and only its modified bit is lost; the engine compares a mapped
 * page with its frame before it lets the mapping go.
 * Going back (install() on a mapped page): the content is written into the
 * memfd first, then the memfd is mapped again and registered, so that a
 * touch in between finds the right block, never a hole.
 *
 * The VMA budget. Each maximal run of pages that map consecutive frames
 * is one VMA, and it splits the guest's mapping around it; the count of
 * boundaries between unlike neighbours is what mapping adds
 * (vmas_used), and it must stay within vma_budget (vm.max_map_count is a
 * per-process limit, 65530 by default). When the budget is spent, share()
 * says DMEM_ENOSPC and the engine copies instead (counted).
 */
#include "config.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mem.h"

/* Would neighbour page nb share one VMA with a page that is @p mapped,
 * with nb then mapping frame @p want? (Guest pages always join.) */
static int joins(const dmem_kvm_region *r, uint64_t nb, int mapped, uint32_t want)
{
  int m = (r->pages[nb] & PG_MAPPED) != 0;
  return m == mapped && (!m || r->frame_of[nb] == want);
}

/* Boundaries around page gfn were it @p mapped onto frame_id. */
static uint64_t boundaries(const dmem_kvm_region *r, uint64_t gfn, int mapped, uint32_t frame_id)
{
  uint64_t n = 0;
  if (gfn > 0)
    n += !joins(r, gfn - 1, mapped, frame_id - 1);
  if (gfn + 1 < r->npages)
    n += !joins(r, gfn + 1, mapped, frame_id + 1);
  return n;
}

/* vmas_used were page gfn @p mapped onto frame_id. */
static uint64_t vmas_if(const dmem_kvm_region *r, uint64_t gfn, int mapped, uint32_t frame_id)
{
  int now = (r->pages[gfn] & PG_MAPPED) != 0;
  return r->vmas_used - boundaries(r, gfn, now, r->frame_of[gfn]) +
         boundaries(r, gfn, mapped, frame_id);
}

/* Changes page gfn's mapping state and the count of VMAs with it. */
static void set_mapped(dmem_kvm_region *r, uint64_t gfn, int mapped, uint32_t frame_id)
{
  r->vmas_used = vmas_if(r, gfn, mapped, frame_id);
  if (mapped) {
    r->pages[gfn] |= PG_MAPPED;
    r->frame_of[gfn] = frame_id;
  } else {
    r->pages[gfn] &= (uint8_t)~PG_MAPPED;
  }
}

/* VMAs the process has now, and the limit. */
static uint64_t maps_in_use(void)
{
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return 0;
  uint64_t n = 0;
  int c;
  while ((c = getc(f)) != EOF)
    n += c == '\n';
  fclose(f);
  return n;
}

static uint64_t max_map_count(void)
{
  unsigned long long v = 65530;
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  if (f) {
    if (fscanf(f, "%llu", &v) != 1)
      v = 65530;
    fclose(f);
  }
  return v;
}

int dmem__mem_cow_setup(dmem_kvm_region *r, int frames_fd)
{
  r->cow = 0;
  r->vmas_used = 0;
  r->broken = 0;
  /* Mapping replaces the registration, so the region must be this
   * process's own mapping, with both tracking modes (MINOR keeps reads of
   * the guest's own pages seen; WP catches writes to mapped ones). */
  if (frames_fd < 0 || r->uffd_base != (uint64_t)(uintptr_t)r->base ||
      r->track != (DMEM_KVM_TRACK_MINOR | DMEM_KVM_TRACK_WP))
    return 0;
  if (!r->frame_of) {
    r->frame_of = dmem__mem_alloc(r, r->npages * sizeof *r->frame_of);
    if (!r->frame_of)
      return dmem__mem_fail(r, DMEM_ENOMEM, "out of memory for the frame table");
  }
  r->frames_fd = frames_fd;
  if (r->opts.vma_budget) {
    r->vma_budget = r->opts.vma_budget;
  } else {
    /* An eighth of what the process has left: several regions in one
     * process, and the rest of the VMM, share the same limit. */
    uint64_t max = max_map_count(), used = maps_in_use();
    r->vma_budget = max > used ? (max - used) / 8 : 0;
  }
  r->cow = 1;
  return 0;
}

void dmem__mem_cow_teardown(dmem_kvm_region *r)
{
  r->cow = 0;
  if (r->frame_of)
    dmem__mem_free(r, r->frame_of, r->npages * sizeof *r->frame_of);
  r->frame_of = NULL;
}

static int do_register(dmem_kvm_region *r, uint64_t gfn, uint64_t modes)
{
  struct uffdio_register reg = {.range = {.start = dmem__mem_uaddr(r, gfn), .len = PAGE},
                                .mode = modes};
  if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) == 0)
    return 0;
  return dmem__mem_fail(r, DMEM_ESYS, "UFFDIO_REGISTER of gfn %llu: %s", (unsigned long long)gfn,
                        strerror(errno));
}

int dmem__mem_cow_map(dmem_kvm_region *r, uint64_t gfn, uint32_t frame_id)
{
  uint8_t *p = &r->pages[gfn];
  if (!r->cow || !(*p & PG_EVICTED) || (*p & PG_MAPPED))
    return DMEM_ENOTSUP; /* mapped on a read fault only */
  if (vmas_if(r, gfn, 1, frame_id) > r->vma_budget) {
    r->st.cow_fallbacks++;
    return DMEM_ENOSPC;
  }
  uint8_t *addr = r->base + gfn * PAGE;
  void *m = mmap(addr, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, r->frames_fd,
                 (off_t)frame_id * PAGE);
  if (m == MAP_FAILED) {
    /* The process's own limit (vm.max_map_count): the old mapping stays. */
    if (errno == ENOMEM) {
      r->st.cow_fallbacks++;
      return DMEM_ENOSPC;
    }
    return dmem__mem_fail(r, DMEM_ESYS, "mmap of frame %u over gfn %llu: %s", frame_id,
                          (unsigned long long)gfn, strerror(errno));
  }
  /* Filled now, while no fault can reach this thread (a read later needs
   * no fault at all). Advice: a failure only costs a fault. */
  (void)madvise(addr, PAGE, MADV_POPULATE_READ);
  *p = (uint8_t)((*p & ~(PG_EVICTED | PG_FAULT | PG_FWRITE | PG_REF | PG_MOD)) | PG_ARMED);
  set_mapped(r, gfn, 1, frame_id);
  r->st.cow_maps++;
  r->st.cow_mapped++;
  int rc = do_register(r, gfn, UFFDIO_REGISTER_MODE_WP);
  if (rc == 0)
    rc = dmem__mem_wp(r, gfn, 1, 1, 0);
  /* Whatever happened, the thread that faulted reads the frame now. */
  (void)dmem__mem_wake(r, gfn);
  return rc;
}

int dmem__mem_cow_unmap(dmem_kvm_region *r, uint64_t gfn, const void *content, int write)
{
  uint8_t *p = &r->pages[gfn];
  /* The content into the memfd first: a touch between the remap and the
   * registration finds it, never a hole. */
  int rc = dmem__mem_pwrite(r, gfn, content);
  if (rc)
    return rc;
  uint64_t off = r->fd_offset + gfn * PAGE;
  uint8_t *addr = r->base + gfn * PAGE;
  if (mmap(addr, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, r->fd, (off_t)off) ==
      MAP_FAILED)
    return dmem__mem_fail(r, DMEM_ESYS, "mmap of the memfd back over gfn %llu: %s",
                          (unsigned long long)gfn, strerror(errno));
  set_mapped(r, gfn, 0, 0);
  r->st.cow_mapped--;
  rc = do_register(
      r, gfn, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP);
  if (rc) {
    r->broken = 1; /* an unregistered page: never punch anything again */
    *p &= (uint8_t) ~(PG_EVICTED | PG_ARMED);
    return rc;
  }
  /* As any resident page: armed for tracking unless written now. */
  *p &= (uint8_t) ~(PG_EVICTED | PG_ARMED);
  if (!write) {
    rc = dmem__mem_wp(r, gfn, 1, 1, 0);
    if (rc == 0)
      *p |= PG_ARMED;
  }
  (void)dmem__mem_wake(r, gfn);
  return rc;
}

int dmem__mem_zap(dmem_kvm_region *r, uint64_t first, uint64_t n)
{
  uint64_t end = first + n, g = first;
  while (g < end) {
    while (g < end && (r->pages[g] & PG_MAPPED))
      g++;
    uint64_t run = g;
    while (g < end && !(r->pages[g] & PG_MAPPED))
      g++;
    if (g > run && madvise(r->base + run * PAGE, (g - run) * PAGE, MADV_DONTNEED) != 0)
      return dmem__mem_fail(r, DMEM_ESYS, "MADV_DONTNEED of %llu pages at gfn %llu: %s",
                            (unsigned long long)(g - run), (unsigned long long)run,
                            strerror(errno));
  }
  return 0;
}
