/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's side of the Linux memory layer: dmem_adapter_ops over a
 * memfd mapped MAP_SHARED and registered with userfaultfd (see mem.h for
 * the per-page state, the two address spaces, the lock order and the
 * layering). mem_region.c hands these tables to the engine; the ops call
 * down only, into mem_cow.c (mapped pages) and mem_page.c (the ioctls and
 * writes on a page), never into the fault thread's file, mem_uffd.c.
 *
 * Invariants:
 *  - the engine's reads never fault through the registered mapping: read()
 *    uses pread() on the memfd, so the engine, which holds its lock, never
 *    waits for the fault thread (which may be waiting for that lock);
 *  - every page whose block is in the memfd and is not MOD-recorded since
 *    the last bits() is ARMED (write-protected for tracking) or EPROT; a
 *    write to it therefore raises a WP or MINOR fault before it lands;
 *  - a page the engine protected stays write-protected until unprotect(),
 *    evict() or install(): mu is held across every decision to lift a
 *    protection and the ioctl that lifts it, so protect() cannot slip in
 *    between;
 *  - evict() frees the block (PUNCH_HOLE) and drops the mapping's entry, so
 *    the next touch is a MISSING fault; install() then fills the hole with
 *    UFFDIO_COPY (dmem__mem_fill()), which also wakes the threads waiting
 *    on it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mem.h"

/* ---------------------------------------------------------------- ops */

static int op_read(void *buf, uint64_t gfn, void *ud)
{
  dmem_kvm_region *r = ud;
  if (gfn >= r->npages)
    return DMEM_ERANGE;
  int fd = r->fd;
  off_t off = (off_t)(r->fd_offset + gfn * PAGE);
  /* The page's flags under mu: the fault thread changes other bits of
   * them meanwhile (MAPPED changes only under the engine's lock, which
   * the caller holds). */
  pthread_mutex_lock(&r->mu);
  int mapped = (r->pages[gfn] & PG_MAPPED) != 0;
  uint32_t frame = mapped ? r->frame_of[gfn] : 0;
  pthread_mutex_unlock(&r->mu);
  if (mapped && frame != DMEM__REMAP_PENDING) {
    /* (DMEM__MAP_UNPROTECTED happens in process only: an agent protects
     * in its own.) */
    if (r->uffd_base == (uint64_t)(uintptr_t)r->base) {
      /* Through the mapping: it may hold the guest's private copy, and it
       * is registered for WP only, so a read never waits on the fault
       * thread. */
      dmem__mem_copy_guest(buf, r, gfn);
      return 0;
    }
    /* Another process's mapping: its frame (the VMM's private copy is out
     * of reach here; mem_cow.c). */
    fd = r->frames_fd;
    off = (off_t)frame * PAGE;
  }
  /* pread, not the mapping: a hole reads as zeros without being filled,
   * and the engine never waits on a fault. */
  size_t done = 0;
  while (done < PAGE) {
    ssize_t k = pread(fd, (uint8_t *)buf + done, PAGE - done, off + (off_t)done);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return DMEM_EIO;
    done += (size_t)k;
  }
  return 0;
}

/* Pages of [first, first + n) with no memory behind them: never touched,
 * or given back (a balloon's PUNCH_HOLE). mincore() asks the memfd's page
 * cache through our mapping; a page swapped out reads as absent too, which
 * only spares it a visit. Evicted pages are holes by design and mapped ones
 * hold no block of their own: neither is reported. */
static void mark_absent(dmem_kvm_region *r, uint8_t *out, uint64_t first, size_t n)
{
  enum { CHUNK = 4096 };
  unsigned char vec[CHUNK];
  for (size_t i = 0; i < n; i += CHUNK) {
    size_t k = n - i < CHUNK ? n - i : CHUNK;
    if (mincore(r->base + (first + i) * PAGE, k * PAGE, vec) != 0)
      return; /* reported as present: the status quo */
    for (size_t j = 0; j < k; j++)
      if (!(vec[j] & 1) && !(r->pages[first + i + j] & (PG_EVICTED | PG_MAPPED)) &&
          !(out[i + j] & DMEM_BIT_MODIFIED))
        out[i + j] = DMEM_BIT_ABSENT; /* "read" is a guess without MINOR tracking */
  }
}

static int op_bits(uint8_t *out, uint64_t first, size_t n, void *ud)
{
  dmem_kvm_region *r = ud;
  if (first > r->npages || n > r->npages - first)
    return DMEM_ERANGE;
  if (n == 0)
    return 0;
  pthread_mutex_lock(&r->mu);
  dmem__mem_cow_poll(r, 0); /* an agent's late answer: its page is the memfd's again */
  int rc = r->dirty_src.sync ? r->dirty_src.sync(r, r->dirty_src.state) : 0;
  if (rc)
    goto out;
  /* Pages to write-protect again: those a write (or a writable fill) has
   * lifted since. An ARMED page is still protected, and an evicted one is
   * protected when it is filled: protecting them again would only hold
   * the VMM's address space longer (its mmap calls wait meanwhile). */
  uint64_t run = UINT64_MAX;
  for (size_t i = 0; i < n && rc == 0; i++) {
    uint8_t *p = &r->pages[first + i], *y = &r->young[first + i];
    int hold = 0;
    if (*y) {
      /* Freshly filled (mem_uffd.c): writable, so reported as modified;
       * armed on its last young visit, which reports it modified too. */
      if (*p & (PG_EVICTED | PG_MAPPED))
        *y = 0;
      else {
        *p |= PG_MOD;
        hold = --*y > 0;
      }
    }
    int need = !hold && !(*p & (PG_ARMED | PG_EVICTED));
    if (need && run == UINT64_MAX)
      run = first + i;
    if (!need && run != UINT64_MAX) {
      rc = dmem__mem_wp(r, run, first + i - run, 1, 0);
      run = UINT64_MAX;
    }
  }
  if (rc == 0 && run != UINT64_MAX)
    rc = dmem__mem_wp(r, run, first + n - run, 1, 0);
  if (rc)
    goto out;
  for (size_t i = 0; i < n; i++) {
    uint8_t *p = &r->pages[first + i];
    uint8_t b = 0;
    if (!(*p & PG_EVICTED)) {
      /* A mapped page's reads raise no fault: count it as read. Without
       * MINOR tracking, every page counts as read, unless the caller
       * wants reads unseen to leave pages idle (idle_reads). */
      if ((!(r->track & DMEM_KVM_TRACK_MINOR) && !r->opts.idle_reads) || (*p & PG_MAPPED))
        *p |= PG_REF;
      if (!(r->track & DMEM_KVM_TRACK_WP) && (*p & PG_REF))
        *p |= PG_MOD;
      b = (uint8_t)(((*p & PG_REF) ? DMEM_BIT_REFERENCED : 0) |
                    ((*p & PG_MOD) ? DMEM_BIT_MODIFIED | DMEM_BIT_REFERENCED : 0));
      int armed = (r->track & DMEM_KVM_TRACK_WP) && !r->young[first + i];
      *p = (uint8_t)((*p & ~(PG_REF | PG_MOD)) | (armed ? PG_ARMED : 0));
    }
    out[i] = b;
  }
  mark_absent(r, out, first, n);
  /* Re-armed above: write-protected (the next write is a WP fault); now
   * drop the page-table entries (the next touch is a MINOR fault). Zapping
   * keeps the write protection as a marker, and evicted pages are holes
   * either way. */
  if (r->track & DMEM_KVM_TRACK_MINOR)
    rc = dmem__mem_zap(r, first, n); /* mapped pages stay: see mem_cow.c */
  r->st.bits_calls++;
out:
  pthread_mutex_unlock(&r->mu);
  return rc;
}

static int op_protect(uint64_t gfn, void *ud)
{
  dmem_kvm_region *r = ud;
  if (gfn >= r->npages)
    return DMEM_ERANGE;
  pthread_mutex_lock(&r->mu);
  /* A late RAM may have put a mapped page back, unregistered until the
   * answer is taken: take it first. */
  if (r->pages[gfn] & PG_MAPPED)
    dmem__mem_cow_poll(r, r->detaching);
  /* A page whose registration failed is registered first: no protection
   * holds without it. */
  int rc = dmem__mem_cow_repair(r, gfn);
  if (rc == 0)
    rc = dmem__mem_wp(r, gfn, 1, 1, 0);
  if (rc == 0)
    r->pages[gfn] |= PG_EPROT;
  pthread_mutex_unlock(&r->mu);
  return rc;
}

static int op_unprotect(uint64_t gfn, void *ud)
{
  dmem_kvm_region *r = ud;
  if (gfn >= r->npages)
    return DMEM_ERANGE;
  pthread_mutex_lock(&r->mu);
  uint8_t *p = &r->pages[gfn];
  int rc = 0;
  /* An ARMED page stays write-protected for tracking: its waiting writers
   * are released by the fault thread, which records the write. So does a
   * page whose agent has yet to answer a RAM (mem_cow.c): the fault thread
   * holds its writers until the answer. */
  if (!(*p & PG_ARMED) && !dmem__mem_cow_in_flight(r, gfn))
    rc = dmem__mem_wp(r, gfn, 1, 0, 1);
  if (rc == 0) {
    *p &= (uint8_t)~PG_EPROT;
    pthread_cond_broadcast(&r->cv);
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

static int op_evict(uint64_t gfn, void *ud)
{
  dmem_kvm_region *r = ud;
  if (gfn >= r->npages)
    return DMEM_ERANGE;
  pthread_mutex_lock(&r->mu);
  int rc = 0;
  if (r->pages[gfn] & PG_MAPPED) {
    /* Holds no memfd block: the engine makes it private (install) first. */
    rc = DMEM_ENOTSUP;
  } else if (r->broken) {
    rc = dmem__mem_fail(r, DMEM_ENOTSUP, "a page lost its registration: nothing is evicted");
  } else if (r->held) {
    rc = DMEM_EBUSY; /* a detach failed: the VMM may let the range go */
  } else if (dmem__sys_punch(r->fd, (off_t)(r->fd_offset + gfn * PAGE), PAGE) != 0) {
    rc = dmem__mem_fail(r, DMEM_ESYS, "PUNCH_HOLE of gfn %llu: %s", (unsigned long long)gfn,
                        strerror(errno));
  } else {
    /* The punch already unmapped the block; this drops any entry left. */
    (void)madvise(r->base + gfn * PAGE, PAGE, MADV_DONTNEED);
    r->pages[gfn] = (uint8_t)(PG_EVICTED | (r->pages[gfn] & (PG_FAULT | PG_FWRITE)));
    r->young[gfn] = 0;
    r->st.evictions++;
    pthread_cond_broadcast(&r->cv);
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

static int op_install(uint64_t gfn, const void *content, void *ud)
{
  dmem_kvm_region *r = ud;
  if (gfn >= r->npages)
    return DMEM_ERANGE;
  pthread_mutex_lock(&r->mu);
  uint8_t *p = &r->pages[gfn];
  int fault = (*p & PG_FAULT) != 0, write = (*p & PG_FWRITE) != 0;
  int rc;
  if (*p & PG_MAPPED) {
    rc = dmem__mem_cow_unmap(r, gfn, content, write);
  } else if (*p & PG_EVICTED) {
    rc = dmem__mem_fill(r, gfn, content, write, 1);
    if (rc > 0)
      rc = 0;
  } else {
    /* Resident: replace the content in place (no fault to serve), and
     * lift the engine's protection unless tracking keeps the page armed. */
    rc = dmem__mem_pwrite(r, gfn, content);
    if (rc == 0 && !(*p & PG_ARMED))
      rc = dmem__mem_wp(r, gfn, 1, 0, 1);
  }
  if (rc == 0) {
    *p &= (uint8_t) ~(PG_EPROT | PG_FAULT | PG_FWRITE);
    if (fault)
      *p |= (uint8_t)(PG_REF | (write ? PG_MOD : 0));
    pthread_cond_broadcast(&r->cv);
  }
  pthread_mutex_unlock(&r->mu);
  return rc;
}

static int op_share(uint64_t gfn, uint32_t frame_id, const void *frame, void *ud)
{
  (void)frame; /* mapped from the frames memfd, at frame_id's offset */
  dmem_kvm_region *r = ud;
  if (gfn >= r->npages)
    return DMEM_ERANGE;
  pthread_mutex_lock(&r->mu);
  int rc = dmem__mem_cow_map(r, gfn, frame_id);
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

const dmem_adapter_ops dmem__mem_ops_wp = {
    .version = DMEM_ADAPTER_OPS_VERSION,
    .read = op_read,
    .bits = op_bits,
    .protect = op_protect,
    .unprotect = op_unprotect,
    .evict = op_evict,
    .share = op_share, /* on a read fault only, where the region can: mem_cow.c */
    .install = op_install,
};

/* Without WP mode there is no protection to offer: the guest must then be
 * paused while the engine scans (adapter.h). */
const dmem_adapter_ops dmem__mem_ops_nowp = {
    .version = DMEM_ADAPTER_OPS_VERSION,
    .read = op_read,
    .bits = op_bits,
    .protect = NULL,
    .unprotect = NULL,
    .evict = op_evict,
    .share = NULL,
    .install = op_install,
};
