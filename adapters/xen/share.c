/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sharing in Xen's p2m. Xen shares a guest page with another guest page,
 * not with memory of ours, so each engine frame has a "source": a guest
 * page (of any VM on the same engine) that Xen nominated with the frame's
 * content. share() nominates the new page, checks its bytes and the
 * source's against the frame, and asks Xen to share the two. Xen checks
 * both handles: a page written since its nomination makes the call fail,
 * so a guest write is never merged away.
 *
 * The sources live in a table (dmem_xen_sources) keyed by engine and frame
 * id. A frame's pages may belong to several VMs, so the guests of one
 * engine must find each other's sources; but the library keeps no
 * process-wide state, and an adapter cannot reach into the engine (it
 * lives in libdiffmem, behind its own ABI) to hang a table there. So the
 * caller, who is the one that knows which guests go on one engine, makes
 * the table and hands it to each guest's options, as it hands each the
 * same engine at attach. Each guest holds a reference, so the caller may
 * drop its own at once and the guests go in any order. A guest given no
 * table makes one of its own: its sources are then its own pages only,
 * which is correct (every share is still checked) but saves no memory
 * across guests in Xen's p2m. The engine stays in the key, so a table
 * handed to guests of two engines mixes nothing up. An engine reuses
 * frame ids; the byte comparison of the source with the frame catches a
 * stale entry. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "xen_internal.h"

#define NBUCKET 4096

typedef struct source {
  struct source *next;
  const dmem_engine *engine;
  uint32_t fid;
  dmem_xen_guest *owner;
  uint64_t gfn, handle;
} source;

struct dmem_xen_sources {
  dmem__alloc alloc;  /* the creator's hook, or the C library's */
  pthread_mutex_t mu; /* refs and the buckets */
  unsigned refs;      /* the creator's, and one per guest given the table */
  source *buckets[NBUCKET];
};

int dmem_xen_sources_create(dmem_xen_sources **out, const dmem_allocator *allocator)
{
  if (!out)
    return DMEM_EINVAL;
  *out = NULL;
  if (!dmem__alloc_valid(allocator))
    return DMEM_EINVAL;
  dmem__alloc a;
  dmem__alloc_init(&a, allocator);
  dmem_xen_sources *t = dmem__calloc(&a, sizeof *t);
  if (!t)
    return DMEM_ENOMEM;
  t->alloc = a;
  pthread_mutex_init(&t->mu, NULL);
  t->refs = 1;
  *out = t;
  return 0;
}

void dmem_xen_sources_destroy(dmem_xen_sources *t)
{
  if (!t)
    return;
  pthread_mutex_lock(&t->mu);
  unsigned left = --t->refs;
  pthread_mutex_unlock(&t->mu);
  if (left)
    return;
  /* Every guest forgot its sources before it let go. */
  dmem__alloc a = t->alloc;
  pthread_mutex_destroy(&t->mu);
  dmem__free(&a, t, sizeof *t);
}

int dmem__xen_share_init(dmem_xen_guest *x, dmem_xen_sources *given)
{
  if (!given)
    return dmem_xen_sources_create(&x->sources, &x->alloc.hook); /* its own, the guest's memory */
  pthread_mutex_lock(&given->mu);
  given->refs++;
  pthread_mutex_unlock(&given->mu);
  x->sources = given;
  return 0;
}

static size_t bucket_of(const dmem_engine *e, uint32_t fid)
{
  uint64_t k = (uint64_t)(uintptr_t)e ^ ((uint64_t)fid * 0x9e3779b97f4a7c15ull);
  return (size_t)((k ^ (k >> 29)) % NBUCKET);
}

/* Looks up (under t->mu) the source of a frame. */
static source *find(dmem_xen_sources *t, const dmem_engine *e, uint32_t fid)
{
  for (source *s = t->buckets[bucket_of(e, fid)]; s; s = s->next)
    if (s->engine == e && s->fid == fid)
      return s;
  return NULL;
}

/* Makes (x, gfn, handle) the frame's source. */
static int set_source(dmem_xen_sources *t, const dmem_engine *e, uint32_t fid, dmem_xen_guest *x,
                      uint64_t gfn, uint64_t handle)
{
  pthread_mutex_lock(&t->mu);
  source *s = find(t, e, fid);
  if (!s) {
    s = dmem__calloc(&t->alloc, sizeof *s);
    if (!s) {
      pthread_mutex_unlock(&t->mu);
      return DMEM_ENOMEM;
    }
    size_t b = bucket_of(e, fid);
    s->next = t->buckets[b];
    t->buckets[b] = s;
    s->engine = e;
    s->fid = fid;
  }
  s->owner = x;
  s->gfn = gfn;
  s->handle = handle;
  pthread_mutex_unlock(&t->mu);
  return 0;
}

void dmem__xen_share_forget(dmem_xen_guest *x)
{
  dmem_xen_sources *t = x->sources;
  if (!t)
    return;
  pthread_mutex_lock(&t->mu);
  for (size_t b = 0; b < NBUCKET; b++) {
    source **pp = &t->buckets[b];
    while (*pp) {
      source *s = *pp;
      if (s->owner == x) {
        *pp = s->next;
        dmem__free(&t->alloc, s, sizeof *s);
      } else {
        pp = &s->next;
      }
    }
  }
  pthread_mutex_unlock(&t->mu);
}

void dmem__xen_share_fini(dmem_xen_guest *x)
{
  dmem__xen_share_forget(x);
  dmem_xen_sources_destroy(x->sources);
  x->sources = NULL;
}

/* Leaves a page we nominated private again and refuses the share. */
static int refuse(dmem_xen_guest *x, uint64_t gfn, int rc, const char *why)
{
  (void)dmem__xen_unshare(x, gfn);
  dmem__xen_set_page_state(x, gfn, XP_GUEST);
  dmem__xen_count(x, &x->st.share_stale);
  dmem__xen_msg(x, "dom%u gfn %#llx: not shared: %s", (unsigned)x->domid, (unsigned long long)gfn,
                why);
  return rc;
}

int dmem__xen_share(dmem_xen_guest *x, uint64_t gfn, dmem_engine *engine, uint32_t fid,
                    const void *frame)
{
  const dmem_xen_calls *c = x->calls;
  if (dmem__xen_page_state(x, gfn) == XP_NOMINATED) /* paging-nominated pages cannot be shared */
    return DMEM_EBUSY;
  uint64_t handle;
  if (c->memshr_nominate_gfn(x->hv, x->domid, gfn, &handle) != 0) {
    int e = errno;
    dmem__xen_msg(x, "dom%u gfn %#llx: xc_memshr_nominate_gfn: %s", (unsigned)x->domid,
                  (unsigned long long)gfn, strerror(e));
    return dmem__xen_err(e);
  }
  dmem__xen_set_page_state(x, gfn, XP_SHARED);
  /* From here on a guest write invalidates the handle; the bytes show any
   * write before it. */
  uint8_t now[XEN_PAGE];
  int rc = dmem__xen_read(x, gfn, now);
  if (rc)
    return refuse(x, gfn, rc, "could not read it back");
  if (memcmp(now, frame, XEN_PAGE) != 0)
    return refuse(x, gfn, DMEM_EBUSY, "changed after it was read");

  dmem_xen_sources *t = x->sources;
  pthread_mutex_lock(&t->mu);
  source *s = find(t, engine, fid);
  source src = s ? *s : (source){0};
  pthread_mutex_unlock(&t->mu);
  int source_ok = s && !(src.owner == x && src.gfn == gfn);
  if (source_ok) {
    /* Only a page still shared as far as we know: one the engine evicted
     * since must not be read (a foreign map of a paged-out page waits for
     * a page-in that would need the engine's lock, which we hold). */
    source_ok = dmem__xen_page_state(src.owner, src.gfn) == XP_SHARED;
  }
  if (source_ok) {
    /* The source must still hold the frame's bytes: its handle guards it
     * from its nomination on, the comparison covers a reused frame id. */
    rc = dmem__xen_read(src.owner, src.gfn, now);
    source_ok = rc == 0 && memcmp(now, frame, XEN_PAGE) == 0;
  }
  if (source_ok) {
    if (c->memshr_share_gfns(x->hv, src.owner->domid, src.gfn, src.handle, x->domid, gfn, handle) ==
        0) {
      dmem__xen_count(x, &x->st.shares);
      return 0;
    }
    int e = errno;
    if (e == DMEM_XEN_ESHARE_CLIENT)
      return refuse(x, gfn, DMEM_EBUSY, "written after its nomination");
    if (e != DMEM_XEN_ESHARE_SOURCE)
      return refuse(x, gfn, dmem__xen_err(e), strerror(e));
    /* The source was written: this page takes its place. */
  }
  rc = set_source(t, engine, fid, x, gfn, handle);
  if (rc)
    return refuse(x, gfn, rc, "out of memory");
  if (s)
    dmem__xen_count(x, &x->st.resourced);
  return 0;
}
