/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The clock and the reclaim pipeline (Difference Engine, section 4).
 *
 * A scan visits a slice of a VM: it reads the slice's referenced/modified
 * bits, moves each page through the NRU states C1..C4 with the policy's
 * classify hook, and offers each resident page to the techniques the policy
 * allows for its new state, in the paper's order: share (zero pages and
 * identical pages), patch (against a similar reference frame), compress,
 * swap. The first that saves memory wins.
 *
 * Races with the guest. Before reading a page it will reclaim, the engine
 * write-protects it (adapter protect) and reads its bits once more: a write
 * that landed after the slice's bits were read shows up there and the page
 * is left alone as C1. Protection holds until the page is evicted, shared
 * or unprotected, so the content read is the content stored.
 *
 * References are frames, never live pages. A unique page chosen as a
 * reference (or found identical to another live page) is first copied into
 * a frame and shared onto it, so the guest keeps writing freely (a write
 * breaks the sharing, not the frame) and patches against it stay valid.
 */
#include "config.h"

#include <sched.h>
#include <string.h>

#include "core.h"

enum { NOT_DONE = 0, DONE = 1 };

static uint32_t live_id(const dmem_vm *vm, uint64_t gfn)
{
  return vm->base + (uint32_t)gfn;
}

static void count_error(dmem_engine *e, dmem_vm *vm, int rc, const char *what, uint64_t gfn)
{
  (void)dmem__page_error(e, vm, rc, what, gfn);
}

/* A store that could not take a page (no memory for a slab, a swap file
 * that cannot be written): the page stays resident, and the failure is
 * counted and described like any other, with the system's reason (sys_err,
 * the errno the store's call left). */
static void store_error(dmem_engine *e, dmem_vm *vm, int rc, const char *what, uint64_t gfn,
                        int sys_err)
{
  count_error(e, vm, rc, what, gfn);
  size_t n = strlen(e->errmsg);
  if (sys_err && n < sizeof e->errmsg)
    snprintf(e->errmsg + n, sizeof e->errmsg - n, " (%s)", strerror(sys_err));
}

static void unprotect(dmem_vm *vm, uint64_t gfn)
{
  if (vm->ops->unprotect)
    vm->ops->unprotect(gfn, vm->ud);
}

static void merged(dmem_engine *e, dmem_vm *vm)
{
  vm->merges++;
  e->merges++;
}

/* Protects a page and reads it; fails (page unprotected) when the guest
 * modified it since its bits were last read, unless ignore_modified. */
static int lock_page(dmem_engine *e, dmem_vm *vm, uint64_t gfn, void *buf, int ignore_modified)
{
  const dmem_adapter_ops *ops = vm->ops;
  int rc = ops->protect ? dmem__op(ops->protect(gfn, vm->ud)) : 0;
  if (rc) {
    count_error(e, vm, rc, "protect", gfn);
    return rc;
  }
  uint8_t bits = 0;
  rc = dmem__op(ops->bits(&bits, gfn, 1, vm->ud));
  if (rc) {
    count_error(e, vm, rc, "reading the bits", gfn);
    unprotect(vm, gfn);
    return rc;
  }
  dmem__page *p = &vm->pages[gfn];
  if ((bits & DMEM_BIT_MODIFIED) && !ignore_modified) {
    unprotect(vm, gfn);
    p->flags &= (uint8_t)~PAGE_F_TRIED; /* new content */
    if (p->kind == DMEM_PAGE_MAPPED) {
      (void)dmem__unmap(e, vm, gfn); /* counted if it fails */
    } else {
      dmem__set_state(vm, p, DMEM_C1);
      p->idle = 0;
    }
    return DMEM_EBUSY;
  }
  /* Reading cleared the bit; keep it for the page's next visit. */
  if (bits & DMEM_BIT_REFERENCED)
    p->flags |= PAGE_F_REF;
  if (buf) {
    rc = dmem__op(ops->read(buf, gfn, vm->ud));
    if (rc) {
      count_error(e, vm, rc, "read", gfn);
      unprotect(vm, gfn);
    }
  }
  return rc;
}

/* The adapter's evict, journaled: the journal names the content's new
 * home before the page leaves guest memory, and takes it back if the
 * evict fails. */
static int evict_page(dmem_engine *e, dmem_vm *vm, uint64_t gfn, dmem_page_kind kind, uint32_t loc)
{
  dmem__journal(e, vm, gfn, kind, loc);
  int rc = dmem__op(vm->ops->evict(gfn, vm->ud));
  if (rc)
    dmem__journal(e, vm, gfn, DMEM_PAGE_RESIDENT, DMEM__NO_ID);
  return rc;
}

/* Shares page gfn onto frame fid: mapped copy-on-write when the page is
 * read-hot (C2) and the adapter can, else evicted. */
static int share_onto(dmem_engine *e, dmem_vm *vm, uint64_t gfn, uint32_t fid)
{
  dmem__page *p = &vm->pages[gfn];
  int map = e->opts.map_shared && vm->ops->share && p->state == DMEM_C2;
  int rc = map ? dmem__op(vm->ops->share(gfn, fid, dmem__frame_data(&e->store, fid), vm->ud))
               : evict_page(e, vm, gfn, DMEM_PAGE_SHARED, fid);
  if (map && (rc == DMEM_ENOTSUP || rc == DMEM_ENOSPC)) {
    map = 0; /* the adapter maps on a read fault only, or has no room left */
    rc = evict_page(e, vm, gfn, DMEM_PAGE_SHARED, fid);
  }
  if (rc) {
    count_error(e, vm, rc, map ? "share" : "evict", gfn);
    return rc;
  }
  dmem__frame *f = dmem__frame_meta(&e->store, fid);
  f->refs++;
  f->sharers++;
  p->loc = fid;
  dmem__set_kind(vm, p, map ? DMEM_PAGE_MAPPED : DMEM_PAGE_SHARED);
  merged(e, vm);
  return 0;
}

/* A new frame of domain d holding content, entered in its stable indexes. */
static int new_frame(uint32_t *fid, dmem_engine *e, dmem__domain *d, const void *content,
                     uint64_t hash, dmem_vm *vm, uint64_t gfn)
{
  errno = 0;
  int rc = dmem__frame_new(fid, &e->store, content, hash, d->frames_fd, &d->slab_hint);
  if (rc) {
    store_error(e, vm, rc, "storing a frame of", gfn, errno);
    return rc;
  }
  dmem__frame_meta(&e->store, *fid)->dom = d->slot;
  /* An index entry that cannot be added only costs a later match. */
  (void)dmem_index_insert(d->frames_idx, hash, *fid);
  if (d->frames_sim)
    (void)dmem_simdet_insert(d->frames_sim, *fid, content);
  return 0;
}

/* Turns live page (qvm, qgfn), expected to hold `expect`, into a frame that
 * it then shares. On success *fid names the frame. */
static int freeze_live(uint32_t *fid, dmem_engine *e, dmem_vm *qvm, uint64_t qgfn,
                       const void *expect, uint64_t hash)
{
  if (qvm->pages[qgfn].kind != DMEM_PAGE_RESIDENT)
    return DMEM_ENOENT;
  if (lock_page(e, qvm, qgfn, e->other, 0) != 0)
    return DMEM_EBUSY;
  if (memcmp(e->other, expect, DMEM_PAGE_SIZE) != 0) {
    unprotect(qvm, qgfn);
    return DMEM_EBUSY;
  }
  dmem__domain *d = qvm->dom;
  int rc = new_frame(fid, e, d, e->other, hash, qvm, qgfn);
  if (rc == 0) {
    rc = share_onto(e, qvm, qgfn, *fid);
    if (rc) {
      dmem_index_remove(d->frames_idx, hash, *fid);
      if (d->frames_sim)
        dmem_simdet_remove(d->frames_sim, *fid, e->other);
      dmem__frame_release_if_unused(&e->store, *fid);
    }
  }
  if (rc)
    unprotect(qvm, qgfn);
  return rc;
}

/* Evicts the page whose content now lives at loc as kind. On failure the
 * page stays resident and the caller frees what it stored. */
static int evict_to(dmem_engine *e, dmem_vm *vm, uint64_t gfn, dmem_page_kind kind, uint32_t loc)
{
  int rc = evict_page(e, vm, gfn, kind, loc);
  if (rc) {
    count_error(e, vm, rc, "evict", gfn);
    return rc;
  }
  dmem__page *p = &vm->pages[gfn];
  p->loc = loc;
  dmem__set_kind(vm, p, kind);
  merged(e, vm);
  return 0;
}

/* Shares page gfn, holding buf, onto what the domain already has of that
 * content: ZERO for an all-zero page, else a frame of the same content.
 * Without a match, secure mode makes the page a frame of its own (so that
 * a merged page and an unmerged one are stored, faulted and freed alike;
 * the live index, where a page waits for a partner, is not used); the
 * paper's engine looks for a live page of the same content to freeze into
 * a frame, and otherwise enters the page in the live index. */
static int try_share(dmem_engine *e, dmem_vm *vm, uint64_t gfn, const uint8_t *buf)
{
  if (dmem__page_is_zero(buf)) /* no storage at all; says only what the page holds */
    return evict_to(e, vm, gfn, DMEM_PAGE_ZERO, DMEM__NO_ID) == 0 ? DONE : NOT_DONE;
  dmem__domain *d = vm->dom;
  uint64_t h = dmem_index_hash(d->frames_idx, buf);
  uint32_t id;
  if (dmem_index_lookup(&id, d->frames_idx, buf, h) == 0)
    return share_onto(e, vm, gfn, id) == 0 ? DONE : NOT_DONE;
  if (e->opts.secure) {
    if (new_frame(&id, e, d, buf, h, vm, gfn) != 0)
      return NOT_DONE;
    if (share_onto(e, vm, gfn, id) != 0) {
      dmem_index_remove(d->frames_idx, h, id);
      dmem__frame_release_if_unused(&e->store, id);
      return NOT_DONE;
    }
    return DONE;
  }
  if (dmem_index_lookup(&id, d->live_idx, buf, h) == 0 && id != live_id(vm, gfn)) {
    dmem_vm *qvm = dmem__vm_of_live_id(e, id);
    uint32_t fid;
    /* (The domain's index holds only its pages; checked all the same.) */
    if (qvm && qvm->dom == d && freeze_live(&fid, e, qvm, id - qvm->base, buf, h) == 0)
      return share_onto(e, vm, gfn, fid) == 0 ? DONE : NOT_DONE;
  }
  (void)dmem_index_insert(d->live_idx, h, live_id(vm, gfn));
  return NOT_DONE;
}

/* Encodes buf against ref; keeps it in e->best when shorter than *best. */
static int better_patch(dmem_engine *e, const uint8_t *buf, const uint8_t *ref, size_t *best)
{
  size_t len;
  size_t cap = *best                             ? *best - 1
               : DMEM__BLOB_MAX < DMEM_DELTA_MAX ? DMEM__BLOB_MAX
                                                 : DMEM_DELTA_MAX;
  if (dmem_delta_encode(&len, e->patch, cap, buf, ref) != 0)
    return 0;
  memcpy(e->best, e->patch, len);
  *best = len;
  return 1;
}

/* Did technique `flag` (PAGE_F_NOCOMP, PAGE_F_NOPATCH) fail on the page's
 * content, unchanged since? Then it is not tried again, and counted. */
static int failed_before(dmem_engine *e, dmem_vm *vm, uint64_t gfn, uint8_t flag)
{
  if (!(vm->pages[gfn].flags & flag))
    return 0;
  vm->retries_skipped++;
  e->retries_skipped++;
  return 1;
}

static int try_patch(dmem_engine *e, dmem_vm *vm, uint64_t gfn, const uint8_t *buf)
{
  uint32_t cand[8];
  size_t best = 0, tried = 0;
  uint32_t fid = DMEM__NO_ID, lid = DMEM__NO_ID;
  unsigned want = e->opts.simdet_candidates;
  dmem__domain *d = vm->dom;
  if (failed_before(e, vm, gfn, PAGE_F_NOPATCH))
    return NOT_DONE;
  size_t n = dmem_simdet_query(cand, want, d->frames_sim, buf);
  tried += n;
  for (size_t i = 0; i < n; i++)
    if (better_patch(e, buf, dmem__frame_data(&e->store, cand[i]), &best))
      fid = cand[i];
  n = dmem_simdet_query(cand, want, d->live_sim, buf);
  for (size_t i = 0; i < n; i++) {
    dmem_vm *qvm = dmem__vm_of_live_id(e, cand[i]);
    if (!qvm || qvm->dom != d || cand[i] == live_id(vm, gfn))
      continue;
    uint64_t q = cand[i] - qvm->base;
    const dmem__page *qp = &qvm->pages[q];
    if (qp->kind != DMEM_PAGE_RESIDENT || qp->state == DMEM_C1)
      continue;
    if (qvm->ops->read(e->other, q, qvm->ud) != 0)
      continue;
    tried++;
    if (better_patch(e, buf, e->other, &best)) {
      lid = cand[i];
      fid = DMEM__NO_ID;
      memcpy(e->fetched, e->other, DMEM_PAGE_SIZE);
    }
  }
  if (!best) {
    /* Too long against every candidate: not again on this content. (No
     * candidate at all is no failure: one may come.) */
    if (tried)
      vm->pages[gfn].flags |= PAGE_F_NOPATCH;
    return NOT_DONE;
  }
  if (lid != DMEM__NO_ID) {
    dmem_vm *qvm = dmem__vm_of_live_id(e, lid);
    uint64_t h = dmem_index_hash(d->frames_idx, e->fetched);
    if (freeze_live(&fid, e, qvm, lid - qvm->base, e->fetched, h) != 0)
      return NOT_DONE;
  }
  dmem__blob_hdr hdr = {
      .len = (uint16_t)best, .kind = DMEM_PAGE_PATCHED, .csum = dmem__checksum(buf), .ref = fid};
  uint32_t blob;
  errno = 0;
  int rc = dmem__blob_put(&blob, &e->store, &hdr, e->best);
  if (rc) {
    store_error(e, vm, rc, "storing the patch of", gfn, errno);
    return NOT_DONE;
  }
  dmem__frame_meta(&e->store, fid)->refs++;
  if (evict_to(e, vm, gfn, DMEM_PAGE_PATCHED, blob) != 0) {
    /* Undo through release(), which frees the blob and its frame ref. */
    dmem__page undo = {.loc = blob, .kind = DMEM_PAGE_PATCHED};
    dmem__release(e, &undo);
    return NOT_DONE;
  }
  return DONE;
}

static int try_compress(dmem_engine *e, dmem_vm *vm, uint64_t gfn, const uint8_t *buf)
{
  size_t len;
  /* Keep nothing that does not save half a page, slot header included. */
  size_t cap = DMEM_PAGE_SIZE / 2 - sizeof(dmem__blob_hdr);
  if (failed_before(e, vm, gfn, PAGE_F_NOCOMP))
    return NOT_DONE;
  int rc = dmem_codec_compress(&len, e->blob, cap, e->codec, e->opts.codec, buf);
  if (rc == DMEM_ETOOBIG)
    vm->pages[gfn].flags |= PAGE_F_NOCOMP; /* the same content compresses the same */
  if (rc)
    return NOT_DONE;
  dmem__blob_hdr hdr = {.len = (uint16_t)len,
                        .kind = DMEM_PAGE_COMPRESSED,
                        .csum = dmem__checksum(buf),
                        .ref = DMEM__NO_ID};
  uint32_t blob;
  errno = 0;
  rc = dmem__blob_put(&blob, &e->store, &hdr, e->blob);
  if (rc) {
    store_error(e, vm, rc, "storing the compressed", gfn, errno);
    return NOT_DONE;
  }
  if (evict_to(e, vm, gfn, DMEM_PAGE_COMPRESSED, blob) != 0) {
    dmem__blob_free(&e->store, blob);
    return NOT_DONE;
  }
  return DONE;
}

/* Writes page gfn's content to a swap slot. No swap file, or a full
 * budget, is no failure; a write that failed is counted. */
static int swap_out(uint32_t *slot, dmem_engine *e, dmem_vm *vm, uint64_t gfn, const void *page)
{
  int rc = dmem__swap_put(slot, &e->store, page);
  if (rc && rc != DMEM_ENOSPC && rc != DMEM_ENOTSUP)
    store_error(e, vm, rc, "swapping", gfn, errno);
  return rc;
}

static int try_swap(dmem_engine *e, dmem_vm *vm, uint64_t gfn, const uint8_t *buf)
{
  uint32_t slot;
  if (swap_out(&slot, e, vm, gfn, buf) != 0)
    return NOT_DONE; /* the page stays */
  if (evict_to(e, vm, gfn, DMEM_PAGE_SWAPPED, slot) != 0) {
    dmem__swap_free(&e->store, slot);
    return NOT_DONE;
  }
  return DONE;
}

/* Offers a resident page to the techniques in T. */
static void reclaim(dmem_engine *e, dmem_vm *vm, uint64_t gfn, unsigned T, int hint)
{
  dmem__page *p = &vm->pages[gfn];
  if (p->kind == DMEM_PAGE_MAPPED) {
    /* Shared already. Once it cools, drop the mapping: the frame stays and
     * the page is rebuilt from it on touch (one VMA less). */
    if (p->state < DMEM_C3 || lock_page(e, vm, gfn, e->buf, 0) != 0)
      return;
    /* A write the bits did not show (the VMM's own, say) gave the page
     * content of its own: keep that, not the frame. */
    if (memcmp(e->buf, dmem__frame_data(&e->store, p->loc), DMEM_PAGE_SIZE) != 0) {
      unprotect(vm, gfn);
      (void)dmem__unmap(e, vm, gfn);
      return;
    }
    int rc = evict_page(e, vm, gfn, DMEM_PAGE_SHARED, p->loc);
    if (rc == DMEM_ENOTSUP) {
      /* The adapter evicts private pages only (KVM: a mapped page has no
       * block of its own): make it private now, evict it on a later pass. */
      (void)dmem__unmap(e, vm, gfn);
      return;
    }
    if (rc) {
      count_error(e, vm, rc, "evict", gfn);
      unprotect(vm, gfn);
      return;
    }
    dmem__set_kind(vm, p, DMEM_PAGE_SHARED);
    return;
  }
  uint8_t *buf = e->buf;
  if (lock_page(e, vm, gfn, buf, hint) != 0)
    return;
  if ((T & DMEM_TECH_SHARE) && try_share(e, vm, gfn, buf) == DONE)
    return;
  if ((T & DMEM_TECH_PATCH) && vm->dom->frames_sim && try_patch(e, vm, gfn, buf) == DONE)
    return;
  if ((T & DMEM_TECH_COMPRESS) && try_compress(e, vm, gfn, buf) == DONE)
    return;
  if ((T & DMEM_TECH_SWAP) && try_swap(e, vm, gfn, buf) == DONE)
    return;
  if ((T & DMEM_TECH_REFERENCE) && vm->dom->live_sim)
    (void)dmem_simdet_insert(vm->dom->live_sim, live_id(vm, gfn), buf);
  unprotect(vm, gfn);
}

/* Under pressure, moves an evicted patched or compressed page to swap. */
static void swap_evicted(dmem_engine *e, dmem_vm *vm, dmem__page *p)
{
  uint32_t slot;
  uint64_t gfn = (uint64_t)(p - vm->pages);
  int rc = dmem__rebuild(e->buf, e, p);
  if (rc) {
    count_error(e, vm, rc, "rebuilding, to swap,", gfn);
    return;
  }
  if (swap_out(&slot, e, vm, gfn, e->buf) != 0)
    return;
  dmem__journal(e, vm, gfn, DMEM_PAGE_SWAPPED, slot);
  dmem__release(e, p);
  p->loc = slot;
  dmem__set_kind(vm, p, DMEM_PAGE_SWAPPED);
  merged(e, vm);
}

static void visit(dmem_engine *e, dmem_vm *vm, uint64_t gfn, unsigned bits)
{
  dmem__page *p = &vm->pages[gfn];
  if ((bits & DMEM_BIT_ABSENT) && p->kind == DMEM_PAGE_RESIDENT &&
      !(p->flags & (PAGE_F_DIRTY | PAGE_F_REF))) {
    /* No memory behind it: nothing to read, nothing to free. */
    vm->scanned++;
    e->scanned++;
    return;
  }
  int resident = p->kind == DMEM_PAGE_RESIDENT || p->kind == DMEM_PAGE_MAPPED;
  if (p->flags & PAGE_F_DIRTY)
    bits |= DMEM_BIT_MODIFIED | DMEM_BIT_REFERENCED;
  if (p->flags & PAGE_F_REF)
    bits |= DMEM_BIT_REFERENCED;
  p->flags &= (uint8_t) ~(PAGE_F_DIRTY | PAGE_F_REF);
  if (bits & DMEM_BIT_MODIFIED)
    p->flags &= (uint8_t)~PAGE_F_TRIED; /* new content: worth trying again */
  if (!resident)
    bits = 0;
  if (bits)
    p->idle = 0;
  else if (p->idle < UINT8_MAX)
    p->idle++;
  dmem_page_info info = {.vm_id = vm->id,
                         .gfn = gfn,
                         .state = (dmem_page_state)p->state,
                         .kind = (dmem_page_kind)p->kind,
                         .idle_passes = p->idle,
                         .bits = bits};
  dmem_page_state st = e->policy.classify(&info, &e->env, e->policy.ud);
  if (st < DMEM_C1 || st > DMEM_C4)
    st = DMEM_C1;
  dmem__set_state(vm, p, st);
  vm->scanned++;
  e->scanned++;
  if (p->kind == DMEM_PAGE_MAPPED && (bits & DMEM_BIT_MODIFIED)) {
    (void)dmem__unmap(e, vm, gfn);
    return;
  }
  if (resident) {
    unsigned T = e->policy.techniques(&info, st, &e->env, e->policy.ud);
    if (e->opts.secure) /* idle candidates only; nothing that needs a partner */
      T = st >= DMEM_C3 ? T & ~(DMEM_TECH_PATCH | DMEM_TECH_REFERENCE) : 0;
    if (T)
      reclaim(e, vm, gfn, T, 0);
  } else if (e->env.pressure && (p->kind == DMEM_PAGE_PATCHED || p->kind == DMEM_PAGE_COMPRESSED) &&
             dmem__swap_room(&e->store) && e->policy.victim(&info, &e->env, e->policy.ud)) {
    swap_evicted(e, vm, p);
  }
}

int dmem__scan_slice(dmem_engine *e, dmem_vm *vm, uint64_t first, size_t n)
{
  int rc = dmem__op(vm->ops->bits(e->slice_bits, first, n, vm->ud));
  if (rc) {
    count_error(e, vm, rc, "reading the bits", first);
    return rc;
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t limit = e->opts.store_limit_bytes;
    e->env.pressure = limit && dmem__store_bytes(&e->store) > limit;
    visit(e, vm, first + i, e->slice_bits[i]);
    /* Let waiting faults in between pages: the lock is not fair, so step
     * aside until they have it (bounded, in case one never comes). */
    pthread_mutex_unlock(&e->lock);
    for (int spin = 0; spin < 1000 && __atomic_load_n(&e->fault_waiters, __ATOMIC_ACQUIRE); spin++)
      sched_yield();
    pthread_mutex_lock(&e->lock);
  }
  return 0;
}

void dmem__hint_page(dmem_engine *e, dmem_vm *vm, uint64_t gfn)
{
  dmem__page *p = &vm->pages[gfn];
  /* The VMM wrote it: a mapped page holds new content of its own now. */
  if (p->kind == DMEM_PAGE_MAPPED && dmem__unmap(e, vm, gfn) != 0)
    return;
  if (p->kind != DMEM_PAGE_RESIDENT)
    return;
  vm->hints++;
  e->hints++;
  /* The I/O that filled it is the write its bits show: it is read-hot page
   * cache from now on (C2), a candidate to share and to serve as reference. */
  p->flags &= (uint8_t) ~(PAGE_F_DIRTY | PAGE_F_TRIED);
  p->idle = 0;
  dmem__set_state(vm, p, DMEM_C2);
  /* Secure mode: a hint merges nothing ahead of the scan, or the guest
   * would set the pace of its own probe. */
  if (!e->opts.secure)
    reclaim(e, vm, gfn, DMEM_TECH_SHARE | DMEM_TECH_REFERENCE, 1);
}
