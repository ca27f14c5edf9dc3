/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine: its objects (engine, VMs, sharing domains), the fault path,
 * and the scans that drive scan.c, from the caller or the background
 * thread. The clock and the reclaim pipeline are in scan.c; a page's state
 * and its content's home (rebuild, restore, release) in page.c, below
 * both; the statistics in stats.c.
 *
 * Invariants:
 *  - every guest page is in exactly one place: resident (private or a
 *    mapped frame), or evicted as zero, shared frame, patch, compressed
 *    blob or swap slot; dmem__page.kind says which and .loc names it;
 *  - a frame's refs count the pages that share it plus the patches that
 *    reference it, and a frame is freed (and leaves the stable indexes)
 *    exactly when refs drops to 0;
 *  - a page is released from the store only after the adapter installed
 *    its rebuilt content, so a failed install or a corrupt blob leaves it
 *    where it was;
 *  - all of this is guarded by e->lock; adapter operations run under it.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

/* ---------------------------------------------------------------- helpers */

static const void *fetch_frame(uint32_t id, void *ud)
{
  dmem_engine *e = ud;
  return dmem__frame_data(&e->store, id);
}

/* Content of a live page for the unstable index: only private resident
 * pages count (anything else is not a live unique page any more). */
static const void *fetch_live(uint32_t id, void *ud)
{
  dmem_engine *e = ud;
  dmem_vm *vm = dmem__vm_of_live_id(e, id);
  if (!vm)
    return NULL;
  uint64_t gfn = id - vm->base;
  if (vm->pages[gfn].kind != DMEM_PAGE_RESIDENT)
    return NULL;
  if (dmem__op(vm->ops->read(e->fetched, gfn, vm->ud)) != 0)
    return NULL;
  return e->fetched;
}

static int make_indexes(dmem_engine *e, const dmem__domain *d, dmem_index **idx, dmem_simdet **sim,
                        int live)
{
  dmem_index_options io = DMEM_INDEX_OPTIONS_INIT;
  io.allocator = &e->alloc.hook;
  io.seed = d->seed;
  io.fetch = live ? fetch_live : fetch_frame;
  io.fetch_ud = e;
  int rc = dmem_index_create(idx, &io);
  if (rc || !e->opts.simdet_kind)
    return rc;
  dmem_simdet_options so = DMEM_SIMDET_OPTIONS_INIT;
  so.allocator = &e->alloc.hook;
  so.kind = e->opts.simdet_kind;
  so.k = e->opts.simdet_k;
  so.s = e->opts.simdet_s;
  so.candidates = e->opts.simdet_candidates;
  so.seed = d->seed ^ 0x5bd1e995u;
  rc = dmem_simdet_create(sim, &so);
  if (rc) {
    dmem_index_destroy(*idx);
    *idx = NULL;
  }
  return rc;
}

/* Drops each domain's unstable indexes and starts empty ones; on failure
 * keeps the old ones (their entries are checked on use, so stale is safe). */
static int rebuild_unstable(dmem_engine *e)
{
  int first = 0;
  for (uint32_t i = 0; i < e->ndoms; i++) {
    dmem__domain *d = e->doms[i];
    if (!d)
      continue;
    dmem_index *idx = NULL;
    dmem_simdet *sim = NULL;
    int rc = make_indexes(e, d, &idx, &sim, 1);
    if (rc) {
      first = first ? first : rc;
      continue;
    }
    dmem_index_destroy(d->live_idx);
    dmem_simdet_destroy(d->live_sim);
    d->live_idx = idx;
    d->live_sim = sim;
  }
  e->since_flush = 0;
  return first;
}

/* ---------------------------------------------------------------- domains */

static void domain_free(dmem_engine *e, dmem__domain *d)
{
  if (d->frames_fd >= 0)
    close(d->frames_fd); /* its slabs went with its last frame */
  dmem_index_destroy(d->frames_idx);
  dmem_index_destroy(d->live_idx);
  dmem_simdet_destroy(d->frames_sim);
  dmem_simdet_destroy(d->live_sim);
  e->doms[d->slot] = NULL;
  dmem__free(&e->alloc, d, sizeof *d);
}

/* The domain a VM attached with @id joins: an existing one with that id, or
 * a new one (always new for DMEM_DOMAIN_OWN). Lock held. */
static int domain_get(dmem__domain **out, dmem_engine *e, uint32_t id)
{
  uint32_t slot = e->ndoms;
  for (uint32_t i = 0; i < e->ndoms; i++) {
    dmem__domain *d = e->doms[i];
    if (!d) {
      slot = slot < e->ndoms ? slot : i;
      continue;
    }
    if (id != DMEM_DOMAIN_OWN && d->id == id) {
      d->nvms++;
      *out = d;
      return 0;
    }
  }
  if (slot == e->capdoms) {
    uint32_t ncap = e->capdoms ? e->capdoms * 2 : 4;
    dmem__domain **nd = dmem__calloc(&e->alloc, ncap * sizeof *nd);
    if (!nd)
      return DMEM_ENOMEM;
    if (e->doms)
      memcpy(nd, e->doms, e->ndoms * sizeof *nd);
    dmem__free(&e->alloc, e->doms, e->capdoms * sizeof *e->doms);
    e->doms = nd;
    e->capdoms = ncap;
  }
  dmem__domain *d = dmem__calloc(&e->alloc, sizeof *d);
  if (!d)
    return DMEM_ENOMEM;
  d->id = id;
  d->slot = slot;
  d->nvms = 1;
  d->frames_fd = -1;
#if DMEM_HAVE_MEMFD
  /* A memfd for its frames alone, so that adapters may map them
   * copy-on-write, and hand them to the domain's VMMs; where the system
   * has none to give (ENOSYS, or EPERM from a sandbox), anonymous memory
   * (then nothing is mapped). Any other failure is one. */
  d->frames_fd = dmem__sys_memfd_create("dmem-frames", MFD_CLOEXEC);
  if (d->frames_fd < 0 && errno != ENOSYS && errno != EPERM) {
    int rc = dmem__fail(e->errmsg, DMEM_ESYS, "memfd_create for a sharing domain's frames: %s",
                        strerror(errno));
    dmem__free(&e->alloc, d, sizeof *d);
    return rc;
  }
#endif
  /* A key of its own, derived from the engine's: a guest that learns how
   * one domain's index buckets fall learns nothing of another's. */
  uint64_t z = e->seed + 0x9e3779b97f4a7c15ull * ++e->domain_serial;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  d->seed = z ^ (z >> 31);
  int rc = make_indexes(e, d, &d->frames_idx, &d->frames_sim, 0);
  if (!rc)
    rc = make_indexes(e, d, &d->live_idx, &d->live_sim, 1);
  if (rc) {
    dmem_index_destroy(d->frames_idx);
    dmem_simdet_destroy(d->frames_sim);
    if (d->frames_fd >= 0)
      close(d->frames_fd);
    dmem__free(&e->alloc, d, sizeof *d);
    return rc;
  }
  e->doms[slot] = d;
  if (slot == e->ndoms)
    e->ndoms++;
  *out = d;
  return 0;
}

/* A VM left: the domain goes with its last VM (whose pages are all back,
 * so no frame of it is left). Lock held. */
static void domain_put(dmem_engine *e, dmem__domain *d)
{
  if (--d->nvms == 0) {
    dmem__free_dead(e, d); /* secure mode's unused frames go first */
    domain_free(e, d);
  }
}

/* ---------------------------------------------------------------- engine */

/* The caller's options at its version: version 2 lacks `secure` (0). */
static int read_options(dmem_engine_options *o, const dmem_engine_options *given)
{
  static const dmem_engine_options defaults = DMEM_ENGINE_OPTIONS_INIT;
  size_t n;
  if (given->version == DMEM_ENGINE_OPTIONS_VERSION)
    n = sizeof *o;
  else if (given->version == 2)
    n = offsetof(dmem_engine_options, secure);
  else
    return DMEM_EVERSION;
  *o = defaults;
  memcpy(o, given, n);
  o->version = DMEM_ENGINE_OPTIONS_VERSION;
  return 0;
}

static int check_options(const dmem_engine_options *o)
{
  if (o->c4_passes < 2 || o->c4_passes > 200 || o->slice_pages < 1)
    return DMEM_EINVAL;
  if (o->codec != DMEM_CODEC_BEST && !dmem_codec_available(o->codec))
    return DMEM_EINVAL;
  if (o->simdet_kind && o->simdet_kind != DMEM_SIMDET_HASH && o->simdet_kind != DMEM_SIMDET_CONTENT)
    return DMEM_EINVAL;
  if (o->policy && o->policy->version != DMEM_POLICY_VERSION)
    return DMEM_EVERSION;
  if (!dmem__alloc_valid(o->allocator))
    return DMEM_EINVAL;
  return 0;
}

int dmem_engine_create(dmem_engine **out, const dmem_engine_options *opts)
{
  static const dmem_engine_options defaults = DMEM_ENGINE_OPTIONS_INIT;
  if (!out)
    return DMEM_EINVAL;
  if (!opts)
    opts = &defaults;
  dmem_engine_options o;
  int rc = read_options(&o, opts);
  if (!rc)
    rc = check_options(&o);
  if (rc)
    return rc;
  opts = &o;
  dmem__alloc a;
  dmem__alloc_init(&a, opts->allocator);
  dmem_engine *e = dmem__malloc_aligned(&a, sizeof *e, 64);
  if (!e)
    return DMEM_ENOMEM;
  memset(e, 0, offsetof(dmem_engine, buf));
  e->alloc = a;
  e->opts = *opts;
  e->opts.swap_dir = NULL; /* not kept: the swap file has no name */
  e->opts.secure = opts->secure != 0;
  if (e->opts.secure)
    e->opts.map_shared = 0; /* no frame is mapped into a guest */
  dmem__policy_resolve(&e->policy, opts->policy);
  e->env.c4_passes = opts->c4_passes;
  e->seed = opts->seed;
  if (!e->seed && dmem__random_key(&e->seed) != 0) {
    dmem__free(&a, e, sizeof *e);
    return DMEM_ESYS;
  }
  rc = dmem__store_init(&e->store, &e->alloc, opts->swap_dir, opts->swap_max_bytes);
  if (rc) {
    dmem__free(&a, e, sizeof *e);
    return rc;
  }
  dmem_codec_options co = DMEM_CODEC_OPTIONS_INIT;
  co.allocator = &e->alloc.hook;
  co.best_mask = opts->codec_best_mask ? opts->codec_best_mask : dmem_codec_default_mask();
  rc = dmem_codec_create(&e->codec, &co);
  if (!rc && pthread_mutex_init(&e->lock, NULL) != 0)
    rc = DMEM_ESYS;
  if (!rc && pthread_mutex_init(&e->scan_lock, NULL) != 0) {
    pthread_mutex_destroy(&e->lock);
    rc = DMEM_ESYS;
  }
  if (!rc && pthread_cond_init(&e->cond, NULL) != 0) {
    pthread_mutex_destroy(&e->scan_lock);
    pthread_mutex_destroy(&e->lock);
    rc = DMEM_ESYS;
  }
  if (rc) {
    dmem_codec_destroy(e->codec);
    dmem__store_fini(&e->store);
    dmem__free(&a, e, sizeof *e);
    return rc;
  }
  *out = e;
  return 0;
}

void dmem_engine_destroy(dmem_engine *e)
{
  if (!e)
    return;
  dmem_engine_stop(e);
  while (e->nvms) {
    dmem_vm *vm = e->vms[e->nvms - 1];
    if (dmem_vm_detach(vm) != 0) {
      /* Pages that could not be restored are lost with the engine; say
       * so in the message, but free everything. */
      pthread_mutex_lock(&e->lock);
      e->nvms--;
      domain_put(e, vm->dom);
      pthread_mutex_unlock(&e->lock);
      dmem__free(&e->alloc, vm->pages, vm->npages * sizeof *vm->pages);
      dmem__free(&e->alloc, vm, sizeof *vm);
    }
  }
  dmem__free(&e->alloc, e->vms, e->capvms * sizeof *e->vms);
  for (uint32_t i = 0; i < e->ndoms; i++)
    if (e->doms[i])
      domain_free(e, e->doms[i]);
  dmem__free(&e->alloc, e->doms, e->capdoms * sizeof *e->doms);
  dmem__free(&e->alloc, e->dead, e->capdead * sizeof *e->dead);
  dmem_codec_destroy(e->codec);
  dmem__store_fini(&e->store);
  pthread_cond_destroy(&e->cond);
  pthread_mutex_destroy(&e->scan_lock);
  pthread_mutex_destroy(&e->lock);
  dmem__alloc a = e->alloc;
  dmem__free(&a, e, sizeof *e);
}

const char *dmem_engine_errmsg(const dmem_engine *e)
{
  return e ? e->errmsg : "";
}

/* -------------------------------------------------------------------- VMs */

int dmem_vm_attach(dmem_vm **out, dmem_engine *e, const dmem_vm_options *given)
{
  if (!out || !e || !given)
    return DMEM_EINVAL;
  /* Version 2 lacks the journal. */
  dmem_vm_options opts = DMEM_VM_OPTIONS_INIT, *o = &opts;
  if (given->version == DMEM_VM_OPTIONS_VERSION)
    opts = *given;
  else if (given->version == 2)
    memcpy(&opts, given, offsetof(dmem_vm_options, journal));
  else
    return DMEM_EVERSION;
  if (o->journal &&
      (o->journal_size < dmem_journal_size(o->npages) || (uintptr_t)o->journal % 8 != 0))
    return DMEM_EINVAL;
  const dmem_adapter_ops *ops = o->ops;
  if (!ops || !o->npages || !ops->read || !ops->bits || !ops->evict || !ops->install ||
      (!ops->protect != !ops->unprotect))
    return DMEM_EINVAL;
  if (ops->version != DMEM_ADAPTER_OPS_VERSION)
    return DMEM_EVERSION;
  /* The VM and its page table, filled without the engine's lock: 10^8
   * pages take seconds, and faults and scans of the other VMs go on
   * meanwhile. (The allocator is called under the lock, as everywhere.) */
  pthread_mutex_lock(&e->lock);
  if (o->npages > (uint64_t)INT32_MAX - e->next_base) {
    int rc = dmem__fail(e->errmsg, DMEM_ERANGE, "%llu pages exceed the engine's id space",
                        (unsigned long long)o->npages);
    pthread_mutex_unlock(&e->lock);
    return rc;
  }
  dmem_vm *vm = dmem__calloc(&e->alloc, sizeof *vm);
  dmem__page *pages = vm ? dmem__malloc(&e->alloc, o->npages * sizeof *pages) : NULL;
  if (!pages) {
    dmem__free(&e->alloc, vm, sizeof *vm);
    pthread_mutex_unlock(&e->lock);
    return DMEM_ENOMEM;
  }
  pthread_mutex_unlock(&e->lock);
  for (uint64_t i = 0; i < o->npages; i++)
    pages[i] = (dmem__page){.loc = DMEM__NO_ID, .kind = DMEM_PAGE_RESIDENT, .state = DMEM_C1};
  vm->pages = pages;

  pthread_mutex_lock(&e->lock);
  int rc = 0;
  if (o->npages > (uint64_t)INT32_MAX - e->next_base) {
    rc = dmem__fail(e->errmsg, DMEM_ERANGE, "%llu pages exceed the engine's id space",
                    (unsigned long long)o->npages);
    goto out;
  }
  if (e->nvms == e->capvms) {
    uint32_t ncap = e->capvms ? e->capvms * 2 : 4;
    dmem_vm **nv = dmem__malloc(&e->alloc, ncap * sizeof *nv);
    if (!nv) {
      rc = DMEM_ENOMEM;
      goto out;
    }
    if (e->vms)
      memcpy(nv, e->vms, e->nvms * sizeof *nv);
    dmem__free(&e->alloc, e->vms, e->capvms * sizeof *e->vms);
    e->vms = nv;
    e->capvms = ncap;
  }
  rc = domain_get(&vm->dom, e, o->sharing_domain);
  if (rc)
    goto out;
  vm->e = e;
  vm->id = e->next_vm_id++;
  vm->base = e->next_base;
  e->next_base += (uint32_t)o->npages;
  vm->npages = o->npages;
  vm->ops = ops;
  vm->ud = o->ud;
  vm->kinds[DMEM_PAGE_RESIDENT] = o->npages;
  vm->states[DMEM_C1] = o->npages;
  if (o->name)
    snprintf(vm->name, sizeof vm->name, "%s", o->name);
  else
    snprintf(vm->name, sizeof vm->name, "vm%u", vm->id);
  if (o->journal)
    dmem__journal_start(e, vm, o->journal);
  e->vms[e->nvms++] = vm;
  *out = vm;
  vm = NULL;
out:
  if (vm) {
    dmem__free(&e->alloc, vm->pages, o->npages * sizeof *vm->pages);
    dmem__free(&e->alloc, vm, sizeof *vm);
  }
  pthread_mutex_unlock(&e->lock);
  return rc;
}

uint32_t dmem_vm_id(const dmem_vm *vm)
{
  return vm ? vm->id : UINT32_MAX;
}

int dmem_vm_detach(dmem_vm *vm)
{
  if (!vm)
    return DMEM_EINVAL;
  dmem_engine *e = vm->e;
  pthread_mutex_lock(&e->lock);
  while (e->scanning) /* a scan between two pages may hold this VM */
    pthread_cond_wait(&e->cond, &e->lock);
  int first = 0;
  for (uint64_t gfn = 0; gfn < vm->npages; gfn++) {
    int rc = dmem__restore_page(e, vm, gfn);
    if (rc && !first)
      first = rc;
  }
  if (first) {
    pthread_mutex_unlock(&e->lock);
    return first;
  }
  for (uint32_t i = 0; i < e->nvms; i++) {
    if (e->vms[i] == vm) {
      e->vms[i] = e->vms[--e->nvms];
      break;
    }
  }
  e->rr = 0;
  domain_put(e, vm->dom);
  /* Its live pages may sit in the unstable indexes: start them afresh. */
  rebuild_unstable(e);
  pthread_mutex_unlock(&e->lock);
  dmem__free(&e->alloc, vm->pages, vm->npages * sizeof *vm->pages);
  dmem__free(&e->alloc, vm, sizeof *vm);
  return 0;
}

/* ------------------------------------------------------------ page calls */

static int check_range(const dmem_vm *vm, uint64_t gfn, size_t n)
{
  return gfn < vm->npages && n <= vm->npages - gfn ? 0 : DMEM_ERANGE;
}

/* A read fault on a page shared onto a frame: map the frame. 0 when it is
 * mapped now; otherwise the caller copies. */
static int map_on_read(dmem_engine *e, dmem_vm *vm, uint64_t gfn)
{
  dmem__page *p = &vm->pages[gfn];
  if (p->kind != DMEM_PAGE_SHARED || !e->opts.map_shared || !vm->ops->share)
    return DMEM_ENOTSUP;
  int rc = dmem__op(vm->ops->share(gfn, p->loc, dmem__frame_data(&e->store, p->loc), vm->ud));
  if (rc) {
    if (rc != DMEM_ENOTSUP && rc != DMEM_ENOSPC)
      (void)dmem__page_error(e, vm, rc, "mapping on a read", gfn);
    return rc;
  }
  /* Still a sharer of the same frame, now resident through it. */
  dmem__journal(e, vm, gfn, DMEM_PAGE_MAPPED, p->loc);
  dmem__set_kind(vm, p, DMEM_PAGE_MAPPED);
  dmem__set_state(vm, p, DMEM_C2);
  return 0;
}

static int fault(dmem_vm *vm, uint64_t gfn, int read)
{
  if (!vm)
    return DMEM_EINVAL;
  if (check_range(vm, gfn, 1))
    return DMEM_ERANGE;
  dmem_engine *e = vm->e;
  /* Say so before waiting: a scan gives the lock up between pages, and
   * mutexes are not fair, so it yields to announced faults. */
  __atomic_add_fetch(&e->fault_waiters, 1, __ATOMIC_ACQ_REL);
  pthread_mutex_lock(&e->lock);
  __atomic_sub_fetch(&e->fault_waiters, 1, __ATOMIC_ACQ_REL);
  dmem__page *p = &vm->pages[gfn];
  int rc = 0;
  if (p->kind != DMEM_PAGE_RESIDENT && p->kind != DMEM_PAGE_MAPPED) {
    if (p->kind == DMEM_PAGE_SHARED) {
      vm->shared_faults[read != 0]++;
      e->shared_faults[read != 0]++;
    }
    rc = read && map_on_read(e, vm, gfn) == 0 ? 0 : dmem__restore_page(e, vm, gfn);
    if (rc == 0) {
      vm->faults++;
      e->faults++;
    }
  }
  pthread_mutex_unlock(&e->lock);
  return rc;
}

int dmem_vm_fault(dmem_vm *vm, uint64_t gfn)
{
  return fault(vm, gfn, 0);
}

int dmem_vm_fault_read(dmem_vm *vm, uint64_t gfn)
{
  return fault(vm, gfn, 1);
}

int dmem_vm_frames_fd(const dmem_vm *vm)
{
  return vm ? vm->dom->frames_fd : -1;
}

static int add_blocks(uint64_t *bytes, int fd)
{
  struct stat st;
  if (fd < 0)
    return 0;
  if (fstat(fd, &st) != 0)
    return DMEM_ESYS;
  *bytes += (uint64_t)st.st_blocks * 512u;
  return 0;
}

int dmem_engine_memfd_bytes(dmem_engine *e, uint64_t *bytes)
{
  if (!e || !bytes)
    return DMEM_EINVAL;
  uint64_t b = 0;
  pthread_mutex_lock(&e->lock);
  int rc = add_blocks(&b, dmem__store_blobs_fd(&e->store));
  for (uint32_t i = 0; rc == 0 && i < e->ndoms; i++)
    if (e->doms[i])
      rc = add_blocks(&b, e->doms[i]->frames_fd);
  pthread_mutex_unlock(&e->lock);
  *bytes = b;
  return rc;
}

int dmem_vm_read(void *buf, dmem_vm *vm, uint64_t gfn)
{
  if (!buf || !vm)
    return DMEM_EINVAL;
  if (check_range(vm, gfn, 1))
    return DMEM_ERANGE;
  dmem_engine *e = vm->e;
  pthread_mutex_lock(&e->lock);
  const dmem__page *p = &vm->pages[gfn];
  int rc = p->kind == DMEM_PAGE_RESIDENT || p->kind == DMEM_PAGE_MAPPED
               ? dmem__op(vm->ops->read(buf, gfn, vm->ud))
               : dmem__rebuild(buf, e, p);
  pthread_mutex_unlock(&e->lock);
  return rc;
}

int dmem_vm_page(dmem_page_kind *kind, dmem_page_state *state, dmem_vm *vm, uint64_t gfn)
{
  if (!vm)
    return DMEM_EINVAL;
  if (check_range(vm, gfn, 1))
    return DMEM_ERANGE;
  pthread_mutex_lock(&vm->e->lock);
  if (kind)
    *kind = (dmem_page_kind)vm->pages[gfn].kind;
  if (state)
    *state = (dmem_page_state)vm->pages[gfn].state;
  pthread_mutex_unlock(&vm->e->lock);
  return 0;
}

int dmem_vm_dirty(dmem_vm *vm, uint64_t gfn, size_t n)
{
  if (!vm)
    return DMEM_EINVAL;
  if (check_range(vm, gfn, n))
    return DMEM_ERANGE;
  pthread_mutex_lock(&vm->e->lock);
  for (size_t i = 0; i < n; i++)
    vm->pages[gfn + i].flags |= PAGE_F_DIRTY;
  pthread_mutex_unlock(&vm->e->lock);
  return 0;
}

int dmem_vm_io_hint(dmem_vm *vm, uint64_t gfn, size_t n)
{
  if (!vm)
    return DMEM_EINVAL;
  if (check_range(vm, gfn, n))
    return DMEM_ERANGE;
  dmem_engine *e = vm->e;
  for (size_t i = 0; i < n; i++) {
    pthread_mutex_lock(&e->lock);
    dmem__hint_page(e, vm, gfn + i);
    pthread_mutex_unlock(&e->lock);
  }
  return 0;
}

/* ------------------------------------------------------------------ scan */

int dmem_engine_scan(size_t *visited, dmem_engine *e, size_t budget)
{
  if (!e)
    return DMEM_EINVAL;
  size_t done = 0;
  /* Scans take turns: a slice's bits and cursor span the moments when the
   * engine lock is dropped between pages. */
  pthread_mutex_lock(&e->scan_lock);
  pthread_mutex_lock(&e->lock);
  e->scanning++;
  dmem__free_dead(e, NULL);
  while (done < budget && e->nvms) {
    dmem_vm *vm = e->vms[e->rr % e->nvms];
    e->rr = (e->rr + 1) % e->nvms;
    size_t n = e->opts.slice_pages;
    if (n > budget - done)
      n = budget - done;
    if (n > sizeof e->slice_bits)
      n = sizeof e->slice_bits;
    if (n > vm->npages - vm->cursor)
      n = (size_t)(vm->npages - vm->cursor);
    uint64_t first = vm->cursor;
    vm->cursor = (vm->cursor + n) % vm->npages;
    dmem__scan_slice(e, vm, first, n); /* drops and retakes the lock per page */
    done += n;
    e->since_flush += n;
    uint64_t total = 0;
    for (uint32_t i = 0; i < e->nvms; i++)
      total += e->vms[i]->npages;
    if (e->since_flush >= total)
      rebuild_unstable(e);
  }
  if (--e->scanning == 0)
    pthread_cond_broadcast(&e->cond);
  pthread_mutex_unlock(&e->lock);
  pthread_mutex_unlock(&e->scan_lock);
  if (visited)
    *visited = done;
  return 0;
}

static void *scan_thread(void *arg)
{
  dmem_engine *e = arg;
  pthread_mutex_lock(&e->lock);
  while (!e->stopping) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(e->tick_ms % 1000) * 1000000L;
    ts.tv_sec += e->tick_ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&e->cond, &e->lock, &ts);
    if (e->stopping)
      break;
    size_t per = e->per_tick;
    pthread_mutex_unlock(&e->lock);
    dmem_engine_scan(NULL, e, per);
    pthread_mutex_lock(&e->lock);
  }
  pthread_mutex_unlock(&e->lock);
  return NULL;
}

int dmem_engine_start(dmem_engine *e, unsigned tick_ms, size_t pages_per_tick)
{
  if (!e || !tick_ms || !pages_per_tick)
    return DMEM_EINVAL;
  pthread_mutex_lock(&e->lock);
  int rc = 0;
  if (e->running) {
    rc = DMEM_EBUSY;
  } else {
    e->tick_ms = tick_ms;
    e->per_tick = pages_per_tick;
    e->stopping = 0;
    rc = dmem__thread_start(&e->thread, scan_thread, e, e->errmsg, "the scan thread");
    if (rc == 0)
      e->running = 1;
  }
  pthread_mutex_unlock(&e->lock);
  return rc;
}

void dmem_engine_stop(dmem_engine *e)
{
  if (!e)
    return;
  pthread_mutex_lock(&e->lock);
  if (!e->running) {
    pthread_mutex_unlock(&e->lock);
    return;
  }
  e->stopping = 1;
  pthread_cond_broadcast(&e->cond);
  pthread_mutex_unlock(&e->lock);
  pthread_join(e->thread, NULL);
  pthread_mutex_lock(&e->lock);
  e->running = 0;
  pthread_mutex_unlock(&e->lock);
}
