/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* A page's state and where its content lives: the counts of kinds and
 * clock states, rebuilding a stored page, putting it back into guest
 * memory (restore, unmap) and releasing its storage, frames' reference
 * counts and their freeing (deferred in secure mode). The scan (scan.c)
 * and the engine's API and fault path (engine.c) sit above it; it calls
 * only the store, the journal and the adapter's operations.
 *
 * Invariants (engine.c's, kept here):
 *  - a page's storage is released only after the adapter installed its
 *    rebuilt content, so a failed install or a corrupt blob leaves it where
 *    it was;
 *  - a frame is freed (and leaves its domain's indexes) exactly when its
 *    refs drop to 0; in secure mode on the next scan;
 *  - the journal names a page's new home before the page leaves guest
 *    memory and says it is back before its storage goes.
 * All under the engine's lock.
 */
#include "config.h"

#include <string.h>

#include "core.h"

/* ----------------------------------------------------------------- counts */

void dmem__set_kind(dmem_vm *vm, dmem__page *p, dmem_page_kind kind)
{
  vm->kinds[p->kind]--;
  p->kind = (uint8_t)kind;
  vm->kinds[kind]++;
}

void dmem__set_state(dmem_vm *vm, dmem__page *p, dmem_page_state state)
{
  vm->states[p->state]--;
  p->state = (uint8_t)state;
  vm->states[state]++;
}

dmem_vm *dmem__vm_of_live_id(dmem_engine *e, uint32_t id)
{
  for (uint32_t i = 0; i < e->nvms; i++) {
    dmem_vm *vm = e->vms[i];
    if (id >= vm->base && (uint64_t)(id - vm->base) < vm->npages)
      return vm;
  }
  return NULL;
}

dmem__domain *dmem__frame_domain(dmem_engine *e, uint32_t id)
{
  return e->doms[dmem__frame_meta(&e->store, id)->dom];
}

int dmem__page_error(dmem_engine *e, dmem_vm *vm, int rc, const char *what, uint64_t gfn)
{
  vm->errors++;
  e->errors++;
  return dmem__fail(e->errmsg, rc, "%s: %s page %llu failed: %s", vm->name, what,
                    (unsigned long long)gfn, dmem_strerror(rc));
}

/* ------------------------------------------------------------ back home */

/* The page's content is private guest memory again: free its storage. */
void dmem__made_private(dmem_engine *e, dmem_vm *vm, dmem__page *p)
{
  /* Back in guest memory: say so before the storage goes. */
  dmem__journal(e, vm, (uint64_t)(p - vm->pages), DMEM_PAGE_RESIDENT, DMEM__NO_ID);
  dmem__release(e, p);
  dmem__set_kind(vm, p, DMEM_PAGE_RESIDENT);
  dmem__set_state(vm, p, DMEM_C1);
  p->idle = 0;
  p->flags &= (uint8_t)~PAGE_F_TRIED; /* judged afresh */
}

int dmem__unmap(dmem_engine *e, dmem_vm *vm, uint64_t gfn)
{
  const dmem_adapter_ops *ops = vm->ops;
  dmem__page *p = &vm->pages[gfn];
  /* What the guest sees is the truth, frame or its own copy: a modified bit
   * or a VMM write does not prove the mapping is gone, so copy the page
   * into private memory before the frame may go. */
  int rc = ops->protect ? dmem__op(ops->protect(gfn, vm->ud)) : 0;
  if (rc == 0) {
    rc = dmem__op(ops->read(e->unmap_buf, gfn, vm->ud));
    if (rc == 0)
      rc = dmem__op(ops->install(gfn, e->unmap_buf, vm->ud));
    if (rc && ops->unprotect)
      ops->unprotect(gfn, vm->ud);
  }
  if (rc) {
    /* Still mapped, but written: try again on its next visit. */
    p->flags |= PAGE_F_DIRTY;
    return dmem__page_error(e, vm, rc, "unmapping", gfn);
  }
  dmem__made_private(e, vm, p);
  return 0;
}

/* Installs the page's content as private memory and frees its storage. */
int dmem__restore_page(dmem_engine *e, dmem_vm *vm, uint64_t gfn)
{
  dmem__page *p = &vm->pages[gfn];
  if (p->kind == DMEM_PAGE_RESIDENT)
    return 0;
  if (p->kind == DMEM_PAGE_MAPPED)
    return dmem__unmap(e, vm, gfn);
  int rc = dmem__rebuild(e->buf, e, p);
  if (rc == 0)
    rc = dmem__op(vm->ops->install(gfn, e->buf, vm->ud));
  if (rc)
    return dmem__page_error(e, vm, rc, "restoring", gfn);
  dmem__made_private(e, vm, p);
  return 0;
}

/* ------------------------------------------------------- rebuild, release */

int dmem__rebuild(void *out, dmem_engine *e, const dmem__page *p)
{
  const uint8_t *payload;
  const dmem__blob_hdr *h;
  int rc;
  switch (p->kind) {
  case DMEM_PAGE_ZERO:
    memset(out, 0, DMEM_PAGE_SIZE);
    return 0;
  case DMEM_PAGE_SHARED:
  case DMEM_PAGE_MAPPED:
    memcpy(out, dmem__frame_data(&e->store, p->loc), DMEM_PAGE_SIZE);
    return dmem__checksum(out) == dmem__frame_meta(&e->store, p->loc)->csum ? 0 : DMEM_ECORRUPT;
  case DMEM_PAGE_PATCHED:
    h = dmem__blob_get(&e->store, p->loc, &payload);
    rc = dmem_delta_decode(out, dmem__frame_data(&e->store, h->ref), payload, h->len);
    break;
  case DMEM_PAGE_COMPRESSED:
    h = dmem__blob_get(&e->store, p->loc, &payload);
    rc = dmem_codec_decompress(out, e->codec, payload, h->len);
    break;
  case DMEM_PAGE_SWAPPED:
    return dmem__swap_get(out, &e->store, p->loc);
  default:
    return DMEM_EINVAL;
  }
  if (rc)
    return DMEM_ECORRUPT;
  return dmem__checksum(out) == h->csum ? 0 : DMEM_ECORRUPT;
}

/* Frees an unused frame: out of its domain's indexes, back to the store. */
static void frame_free(dmem_engine *e, uint32_t id)
{
  dmem__frame *f = dmem__frame_meta(&e->store, id);
  dmem__domain *d = dmem__frame_domain(e, id);
  dmem_index_remove(d->frames_idx, f->hash, id);
  if (d->frames_sim)
    dmem_simdet_remove(d->frames_sim, id, dmem__frame_data(&e->store, id));
  dmem__frame_release_if_unused(&e->store, id);
}

/* Secure mode: an unused frame waits for the next scan (dmem__free_dead()),
 * so that a fault costs the same whether its frame had other sharers or
 * not. A frame found again by the index before then is simply used. */
static void defer_free(dmem_engine *e, uint32_t id)
{
  dmem__frame *f = dmem__frame_meta(&e->store, id);
  if (f->dead)
    return; /* queued already */
  if (e->ndead == e->capdead) {
    size_t cap = e->capdead ? e->capdead * 2 : 256;
    uint32_t *d = dmem__malloc(&e->alloc, cap * sizeof *d);
    if (!d) {
      frame_free(e, id); /* no room to wait: free it now */
      return;
    }
    if (e->ndead)
      memcpy(d, e->dead, e->ndead * sizeof *d);
    dmem__free(&e->alloc, e->dead, e->capdead * sizeof *d);
    e->dead = d;
    e->capdead = cap;
  }
  f->dead = 1;
  e->dead[e->ndead++] = id;
}

void dmem__free_dead(dmem_engine *e, const dmem__domain *only)
{
  size_t keep = 0;
  for (size_t i = 0; i < e->ndead; i++) {
    uint32_t id = e->dead[i];
    dmem__frame *f = dmem__frame_meta(&e->store, id);
    if (only && e->doms[f->dom] != only) {
      e->dead[keep++] = id;
      continue;
    }
    f->dead = 0;
    if (f->refs == 0)
      frame_free(e, id);
  }
  e->ndead = keep;
}

static void frame_unref(dmem_engine *e, uint32_t id, int sharer)
{
  dmem__frame *f = dmem__frame_meta(&e->store, id);
  f->refs--;
  if (sharer)
    f->sharers--;
  if (f->refs == 0) {
    if (e->opts.secure)
      defer_free(e, id);
    else
      frame_free(e, id);
  }
}

/* Frees whatever holds the page's content (it must be elsewhere by now). */
void dmem__release(dmem_engine *e, dmem__page *p)
{
  const uint8_t *payload;
  switch (p->kind) {
  case DMEM_PAGE_SHARED:
  case DMEM_PAGE_MAPPED:
    frame_unref(e, p->loc, 1);
    break;
  case DMEM_PAGE_PATCHED: {
    uint32_t ref = dmem__blob_get(&e->store, p->loc, &payload)->ref;
    dmem__blob_free(&e->store, p->loc);
    frame_unref(e, ref, 0);
    break;
  }
  case DMEM_PAGE_COMPRESSED:
    dmem__blob_free(&e->store, p->loc);
    break;
  case DMEM_PAGE_SWAPPED:
    dmem__swap_free(&e->store, p->loc);
    break;
  default:
    break;
  }
  p->loc = DMEM__NO_ID;
}
