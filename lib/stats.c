/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Statistics and Satori's per-VM accounting.
 *
 * What a page saves: a shared or mapped page saves its 4 KiB less its part
 * of the frame, which is split evenly among everything that references the
 * frame (sharers and patches); a patched page saves 4 KiB less its slot and
 * its part of the reference frame; a compressed page 4 KiB less its slot; a
 * zero or swapped page all of it. Summed over VMs this is guest memory less
 * the host memory that holds it. The entitlement (Satori) pools what
 * sharing saved and hands it back in proportion to the pages each VM
 * shares, plus what the VM's own pages saved by other means.
 */
#include "config.h"

#include <string.h>

#include "core.h"

typedef struct vm_sums {
  double share_saved; /* from shared and mapped pages */
  double other_saved; /* zero, patched, compressed, swapped */
  uint64_t shared_pages;
} vm_sums;

static double frame_part(const dmem_engine *e, uint32_t fid)
{
  return (double)DMEM_PAGE_SIZE / (double)dmem__frame_meta(&e->store, fid)->refs;
}

static void sum_vm(vm_sums *s, const dmem_engine *e, const dmem_vm *vm)
{
  const uint8_t *payload;
  memset(s, 0, sizeof *s);
  for (uint64_t g = 0; g < vm->npages; g++) {
    const dmem__page *p = &vm->pages[g];
    switch (p->kind) {
    case DMEM_PAGE_SHARED:
    case DMEM_PAGE_MAPPED:
      s->share_saved += DMEM_PAGE_SIZE - frame_part(e, p->loc);
      s->shared_pages++;
      break;
    case DMEM_PAGE_PATCHED: {
      uint32_t ref = dmem__blob_get(&e->store, p->loc, &payload)->ref;
      s->other_saved +=
          (double)DMEM_PAGE_SIZE - (double)dmem__blob_slot_size(p->loc) - frame_part(e, ref);
      break;
    }
    case DMEM_PAGE_COMPRESSED:
      s->other_saved += (double)DMEM_PAGE_SIZE - (double)dmem__blob_slot_size(p->loc);
      break;
    case DMEM_PAGE_ZERO:
    case DMEM_PAGE_SWAPPED:
      s->other_saved += DMEM_PAGE_SIZE;
      break;
    default:
      break;
    }
  }
}

static void fill_counts(dmem_stats *out, const dmem_vm *vm)
{
  out->pages += vm->npages;
  out->resident += vm->kinds[DMEM_PAGE_RESIDENT];
  out->mapped += vm->kinds[DMEM_PAGE_MAPPED];
  out->zero += vm->kinds[DMEM_PAGE_ZERO];
  out->shared += vm->kinds[DMEM_PAGE_SHARED];
  out->patched += vm->kinds[DMEM_PAGE_PATCHED];
  out->compressed += vm->kinds[DMEM_PAGE_COMPRESSED];
  out->swapped += vm->kinds[DMEM_PAGE_SWAPPED];
  for (int i = 1; i <= 4; i++)
    out->state[i] += vm->states[i];
}

/* Sharing savings of the VMs of domain d and their shared pages, for
 * entitlements: a VM's figures never depend on another domain's pages. */
static void pool_totals(double *share_saved, uint64_t *shared_pages, const dmem_engine *e,
                        const dmem__domain *d)
{
  *share_saved = 0;
  *shared_pages = 0;
  for (uint32_t i = 0; i < e->nvms; i++) {
    if (e->vms[i]->dom != d)
      continue;
    vm_sums s;
    sum_vm(&s, e, e->vms[i]);
    *share_saved += s.share_saved;
    *shared_pages += s.shared_pages;
  }
}

static int64_t entitlement(const vm_sums *s, double pool, uint64_t pool_pages)
{
  double share = pool_pages ? pool * (double)s->shared_pages / (double)pool_pages : 0;
  return (int64_t)(share + s->other_saved);
}

/* How much of dmem_stats the caller's version holds, or 0 for a version
 * this library does not know. */
static size_t stats_size(unsigned version)
{
  return version == 1                    ? offsetof(dmem_stats, retries_skipped)
         : version == DMEM_STATS_VERSION ? sizeof(dmem_stats)
                                         : 0;
}

/* Starts the figures in s, at the caller's version of out: 0, or
 * DMEM_EVERSION (out untouched). */
static int stats_begin(dmem_stats *s, const dmem_stats *out)
{
  if (stats_size(out->version) == 0)
    return DMEM_EVERSION;
  memset(s, 0, sizeof *s);
  s->version = out->version;
  return 0;
}

/* Hands the caller what its version holds. */
static void stats_end(dmem_stats *out, const dmem_stats *s)
{
  memcpy(out, s, stats_size(s->version));
}

int dmem_vm_stats(dmem_stats *caller, dmem_vm *vm)
{
  if (!caller || !vm)
    return DMEM_EINVAL;
  dmem_stats s_, *out = &s_;
  if (stats_begin(out, caller) != 0)
    return DMEM_EVERSION;
  dmem_engine *e = vm->e;
  pthread_mutex_lock(&e->lock);
  fill_counts(out, vm);
  vm_sums s;
  sum_vm(&s, e, vm);
  double pool;
  uint64_t pool_pages;
  pool_totals(&pool, &pool_pages, e, vm->dom);
  out->bytes_saved = (int64_t)(s.share_saved + s.other_saved);
  out->entitlement_bytes = entitlement(&s, pool, pool_pages);
  out->merges = vm->merges;
  out->faults = vm->faults;
  out->shared_read_faults = vm->shared_faults[1];
  out->shared_write_faults = vm->shared_faults[0];
  out->hints = vm->hints;
  out->errors = vm->errors;
  out->scanned = vm->scanned;
  out->retries_skipped = vm->retries_skipped;
  pthread_mutex_unlock(&e->lock);
  stats_end(caller, out);
  return 0;
}

static uint64_t meta_bytes(const dmem_engine *e)
{
  uint64_t b = sizeof *e + dmem__store_meta_bytes(&e->store);
  for (uint32_t i = 0; i < e->ndoms; i++) {
    const dmem__domain *d = e->doms[i];
    if (!d)
      continue;
    b += sizeof *d + dmem_index_memory(d->frames_idx) + dmem_index_memory(d->live_idx);
    if (d->frames_sim)
      b += dmem_simdet_memory(d->frames_sim) + dmem_simdet_memory(d->live_sim);
  }
  for (uint32_t i = 0; i < e->nvms; i++)
    b += sizeof(dmem_vm) + e->vms[i]->npages * sizeof(dmem__page);
  return b;
}

int dmem_engine_stats(dmem_stats *caller, dmem_engine *e)
{
  if (!caller || !e)
    return DMEM_EINVAL;
  dmem_stats s_, *out = &s_;
  if (stats_begin(out, caller) != 0)
    return DMEM_EVERSION;
  pthread_mutex_lock(&e->lock);
  for (uint32_t i = 0; i < e->nvms; i++) {
    vm_sums s;
    double pool;
    uint64_t pool_pages;
    pool_totals(&pool, &pool_pages, e, e->vms[i]->dom);
    fill_counts(out, e->vms[i]);
    sum_vm(&s, e, e->vms[i]);
    /* The sum of the VMs' figures, rounded as each VM's is. */
    out->entitlement_bytes += entitlement(&s, pool, pool_pages);
  }
  out->frames = e->store.nframes;
  out->store_bytes = dmem__store_bytes(&e->store);
  out->swap_bytes = e->store.swap_used * DMEM_PAGE_SIZE;
  /* Guest memory less the host memory that holds it: private pages, and
   * the store's slabs (frames, mapped or not, patches, blobs), slack
   * included. The swap file is disk, not memory. */
  out->bytes_saved =
      (int64_t)(out->pages - out->resident) * DMEM_PAGE_SIZE - (int64_t)out->store_bytes;
  out->merges = e->merges;
  out->faults = e->faults;
  out->shared_read_faults = e->shared_faults[1];
  out->shared_write_faults = e->shared_faults[0];
  out->hints = e->hints;
  out->errors = e->errors + e->store.punch_errors;
  out->scanned = e->scanned;
  out->meta_bytes = meta_bytes(e);
  out->retries_skipped = e->retries_skipped;
  pthread_mutex_unlock(&e->lock);
  stats_end(caller, out);
  return 0;
}
