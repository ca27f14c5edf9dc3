/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The bottom of the Linux memory layer: the primitives that the files above
 * share (mem.h has the layering). It calls nothing else in the layer, so
 * that mem_cow.c, mem_ops.c, mem_uffd.c and mem_region.c can all call it
 * without calling one another in a circle.
 *
 * Two kinds: the region's bookkeeping (allocation through the caller's
 * hook, the error message and its count, the clock, the fault latency
 * histogram), and what is done to a guest page or a run of them (write
 * protection, a wake, a write into the memfd, a fill through userfaultfd,
 * a copy out through the region's own mapping). They change the region's
 * state only as far as their own call changed the page (a fill's page
 * flags and install count; vmm_gone, when the address space behind the
 * userfaultfd has gone); which page to protect, fill or wake, and when, is
 * for the callers to decide. Those that touch the region's state are
 * called with mu held.
 */
#include "config.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"

#ifndef UFFDIO_COPY_MODE_WP
#define UFFDIO_COPY_MODE_WP ((__u64)1 << 1)
#endif

/* Times an ioctl that may see EAGAIN (the mm changing under it) is tried. */
#define EAGAIN_TRIES 1000

/* ---------------------------------------------------------------- helpers */

void *dmem__mem_alloc(dmem_kvm_region *r, size_t size)
{
  return dmem__malloc_aligned(&r->alloc, size ? size : 1, 64);
}

void dmem__mem_free(dmem_kvm_region *r, void *p, size_t size)
{
  dmem__free(&r->alloc, p, size ? size : 1);
}

int dmem__mem_fail(dmem_kvm_region *r, int err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
  va_end(ap);
  __atomic_add_fetch(&r->nerrors, 1, __ATOMIC_RELAXED);
  return err;
}

uint64_t dmem__mem_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Latency buckets: exact below 4 µs, then 4 per octave. */
static unsigned lat_bucket(uint64_t us)
{
  if (us < 4)
    return (unsigned)us;
  unsigned e = 63u - (unsigned)__builtin_clzll(us); /* >= 2 */
  unsigned b = 4 + (e - 2) * 4 + (unsigned)((us >> (e - 2)) & 3);
  return b < DMEM_KVM_LAT_BUCKETS ? b : DMEM_KVM_LAT_BUCKETS - 1;
}

uint64_t dmem_kvm_lat_bucket_us(unsigned b)
{
  if (b < 4)
    return b;
  unsigned e = (b - 4) / 4 + 2, sub = (b - 4) % 4;
  return (uint64_t)(4 + sub) << (e - 2);
}

void dmem__mem_lat_record(dmem_kvm_region *r, uint64_t ns)
{
  r->st.lat_hist[lat_bucket(ns / 1000)]++;
  r->st.lat_count++;
  r->st.lat_sum_ns += ns;
  if (ns > r->st.lat_max_ns)
    r->st.lat_max_ns = ns;
}

double dmem_kvm_stats_percentile_us(const dmem_kvm_stats *s, double q)
{
  if (!s || s->lat_count == 0)
    return 0;
  if (q < 0)
    q = 0;
  if (q > 1)
    q = 1;
  uint64_t want = (uint64_t)(q * (double)s->lat_count + 0.999999);
  if (want == 0)
    want = 1;
  uint64_t seen = 0;
  for (unsigned b = 0; b < DMEM_KVM_LAT_BUCKETS; b++) {
    seen += s->lat_hist[b];
    if (seen >= want)
      return (double)dmem_kvm_lat_bucket_us(b + 1);
  }
  return (double)dmem_kvm_lat_bucket_us(DMEM_KVM_LAT_BUCKETS);
}

/* ---------------------------------------------------------------- pages */

/* (Un)write-protects pages gfn .. gfn+n-1. Lifting also wakes writers
 * unless !wake. */
int dmem__mem_wp(dmem_kvm_region *r, uint64_t gfn, uint64_t n, int on, int wake)
{
  if (!(r->track & DMEM_KVM_TRACK_WP))
    return 0;
  struct uffdio_writeprotect wp = {.range = {.start = dmem__mem_uaddr(r, gfn), .len = n * PAGE},
                                   .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP
                                              : (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE)};
  for (int i = 0; i < EAGAIN_TRIES; i++) {
    if (dmem__sys_ioctl(DMEM__FP_UFFD_WP, r->uffd, UFFDIO_WRITEPROTECT, &wp) == 0)
      return 0;
    if (errno == ESRCH) {
      r->vmm_gone = 1; /* no address space left to protect anything in */
      return 0;
    }
    if (errno != EAGAIN)
      break;
  }
  return dmem__mem_fail(r, DMEM_ESYS, "UFFDIO_WRITEPROTECT of %llu pages at gfn %llu: %s",
                        (unsigned long long)n, (unsigned long long)gfn, strerror(errno));
}

int dmem__mem_wake(dmem_kvm_region *r, uint64_t gfn)
{
  struct uffdio_range rg = {.start = dmem__mem_uaddr(r, gfn), .len = PAGE};
  return ioctl(r->uffd, UFFDIO_WAKE, &rg) == 0 ? 0 : DMEM_ESYS;
}

int dmem__mem_pwrite(dmem_kvm_region *r, uint64_t gfn, const void *content)
{
  off_t off = (off_t)(r->fd_offset + gfn * PAGE);
  size_t done = 0;
  while (done < PAGE) {
    ssize_t k = dmem__sys_pwrite(DMEM__FP_PWRITE, r->fd, (const uint8_t *)content + done,
                                 PAGE - done, off + (off_t)done);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return dmem__mem_fail(r, DMEM_ESYS, "pwrite of gfn %llu: %s", (unsigned long long)gfn,
                            k < 0 ? strerror(errno) : "short write");
    done += (size_t)k;
  }
  return 0;
}

/* Fills a hole through userfaultfd: writable for a write fault, else
 * write-protected (ARMED) so that the next write is seen. Returns 0, or
 * 1 when the memfd already had a block there (EEXIST), 2 when the address
 * space behind the userfaultfd is gone (ESRCH: the VMM that registered it
 * exited), or an error. */
static int uffd_fill(dmem_kvm_region *r, uint64_t gfn, const void *content, int writable)
{
  int wp = !writable && (r->track & DMEM_KVM_TRACK_WP);
  for (int i = 0; i < EAGAIN_TRIES; i++) {
    int rc;
    if (!wp && dmem__page_is_zero(content)) {
      struct uffdio_zeropage z = {.range = {.start = dmem__mem_uaddr(r, gfn), .len = PAGE},
                                  .mode = 0};
      rc = dmem__sys_ioctl(DMEM__FP_UFFD_ZEROPAGE, r->uffd, UFFDIO_ZEROPAGE, &z);
    } else {
      struct uffdio_copy c = {.dst = dmem__mem_uaddr(r, gfn),
                              .src = (uint64_t)(uintptr_t)content,
                              .len = PAGE,
                              .mode = wp ? UFFDIO_COPY_MODE_WP : 0};
      rc = dmem__sys_ioctl(DMEM__FP_UFFD_COPY, r->uffd, UFFDIO_COPY, &c);
    }
    if (rc == 0) {
      /* ARMED says what the fill left: a writable page is not protected
       * (a hole armed by bits() would otherwise keep a stale ARMED, and
       * bits() would never protect it again). */
      r->pages[gfn] = (uint8_t)((r->pages[gfn] & ~(PG_EVICTED | PG_ARMED)) | (wp ? PG_ARMED : 0));
      r->st.installs++;
      return 0;
    }
    if (errno == EEXIST)
      return 1;
    if (errno == ESRCH) {
      r->vmm_gone = 1;
      return 2;
    }
    if (errno != EAGAIN)
      break;
  }
  return dmem__mem_fail(r, DMEM_ESYS, "UFFDIO_COPY of gfn %llu: %s", (unsigned long long)gfn,
                        strerror(errno));
}

int dmem__mem_fill(dmem_kvm_region *r, uint64_t gfn, const void *content, int write, int overwrite)
{
  int rc = uffd_fill(r, gfn, content, write);
  if (rc == 2) {
    /* No process maps the range through this userfaultfd any more (a
     * daemon's VMM died): the memfd is all that is left of the page, and
     * any other holder of it reads the content from there. */
    rc = dmem__mem_pwrite(r, gfn, content);
    if (rc == 0)
      r->pages[gfn] &= (uint8_t) ~(PG_EVICTED | PG_ARMED);
  } else if (rc == 1 && !overwrite) {
    dmem__mem_wake(r, gfn);
  } else if (rc == 1) {
    /* A block appeared under the hole (the VMM wrote the memfd another
     * way): write the content into it, and wake whoever waits. */
    rc = dmem__mem_pwrite(r, gfn, content);
    if (rc == 0) {
      r->pages[gfn] &= (uint8_t)~PG_EVICTED;
      dmem__mem_wake(r, gfn);
      rc = 1;
    }
  }
  return rc;
}

void dmem__mem_copy_guest(void *buf, const dmem_kvm_region *r, uint64_t gfn)
{
  memcpy(buf, r->base + gfn * PAGE, PAGE);
}
