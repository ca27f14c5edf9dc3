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
 * The sources live in one table for the whole process, keyed by engine and
 * frame id, because a frame's pages may belong to several VMs (several
 * adapters). An engine reuses frame ids; the byte comparison of the source
 * with the frame catches a stale entry. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
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

static pthread_mutex_t sources_mu = PTHREAD_MUTEX_INITIALIZER;
static source *buckets[NBUCKET];

static size_t bucket_of(const dmem_engine *e, uint32_t fid)
{
  uint64_t k = (uint64_t)(uintptr_t)e ^ ((uint64_t)fid * 0x9e3779b97f4a7c15ull);
  return (size_t)((k ^ (k >> 29)) % NBUCKET);
}

/* Looks up (under sources_mu) the source of a frame. */
static source *find(const dmem_engine *e, uint32_t fid)
{
  for (source *s = buckets[bucket_of(e, fid)]; s; s = s->next)
    if (s->engine == e && s->fid == fid)
      return s;
  return NULL;
}

/* Makes (x, gfn, handle) the frame's source. */
static int set_source(const dmem_engine *e, uint32_t fid, dmem_xen_guest *x, uint64_t gfn,
                      uint64_t handle)
{
  pthread_mutex_lock(&sources_mu);
  source *s = find(e, fid);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) {
      pthread_mutex_unlock(&sources_mu);
      return DMEM_ENOMEM;
    }
    size_t b = bucket_of(e, fid);
    s->next = buckets[b];
    buckets[b] = s;
    s->engine = e;
    s->fid = fid;
  }
  s->owner = x;
  s->gfn = gfn;
  s->handle = handle;
  pthread_mutex_unlock(&sources_mu);
  return 0;
}

void dmem__xen_share_forget(dmem_xen_guest *x)
{
  pthread_mutex_lock(&sources_mu);
  for (size_t b = 0; b < NBUCKET; b++) {
    source **pp = &buckets[b];
    while (*pp) {
      source *s = *pp;
      if (s->owner == x) {
        *pp = s->next;
        free(s);
      } else {
        pp = &s->next;
      }
    }
  }
  pthread_mutex_unlock(&sources_mu);
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

  pthread_mutex_lock(&sources_mu);
  source *s = find(engine, fid);
  source src = s ? *s : (source){0};
  pthread_mutex_unlock(&sources_mu);
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
  rc = set_source(engine, fid, x, gfn, handle);
  if (rc)
    return refuse(x, gfn, rc, "out of memory");
  if (s)
    dmem__xen_count(x, &x->st.resourced);
  return 0;
}
