/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* A region: guest RAM in a memfd, mapped MAP_SHARED, and its attachment to
 * an engine (userfaultfd, fault thread, dmem_vm). The top of the Linux
 * memory layer: it calls the files below it and none of them calls it. The
 * ops the engine calls are in mem_ops.c, the fault thread in mem_uffd.c,
 * the copy-on-write mapping in mem_cow.c, and the primitives they share
 * (errors, allocation, latency, a page's ioctls) in mem_page.c; mem.h has
 * the per-page state, the address spaces, the lock order and the
 * layering. KVM slots (kvm.c) are a layer above.
 *
 * Life of a region: create (memfd and mapping, made or given) → attach
 * (open and register a userfaultfd or adopt the caller's, arm tracking
 * over the whole range, start the thread, attach the VM) → detach (the
 * engine installs every page it holds; then unregister, which wakes any
 * thread still waiting, and stop the thread) → destroy. Attach and detach
 * may repeat.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include "mem.h"

/* ---------------------------------------------------------------- create */

/* Says what is wrong with the options in errbuf. */
static int check_options(const dmem_kvm_region_options *o, char *errbuf, size_t errlen)
{
  const char *why = NULL;
  if (o->version != DMEM_KVM_REGION_OPTIONS_VERSION && o->version != 2 && o->version != 3) {
    snprintf(errbuf, errlen, "options version %u, this library knows %u", o->version,
             DMEM_KVM_REGION_OPTIONS_VERSION);
    return DMEM_EVERSION;
  }
  if (o->size == 0 || o->size % PAGE)
    why = "size is 0 or not a multiple of the page size";
  else if (o->fd_offset % PAGE)
    why = "fd_offset is not a multiple of the page size";
  else if (o->addr && o->fd < 0)
    why = "addr is given without the fd it maps";
  else if ((uintptr_t)o->addr % PAGE)
    why = "addr is not page-aligned";
  else if (o->fd < 0 && o->fd_offset)
    why = "fd_offset is given without an fd";
  else if (o->allocator && (!o->allocator->alloc || !o->allocator->free))
    why = "the allocator lacks alloc or free";
  else if (o->track & ~(DMEM_KVM_TRACK_MINOR | DMEM_KVM_TRACK_WP))
    why = "track has unknown bits";
  else if (o->uffd < 0 && (o->uffd_features || o->uffd_addr))
    why = "uffd_features or uffd_addr is given without a uffd";
  else if (o->uffd_addr % PAGE)
    why = "uffd_addr is not page-aligned";
  else if (o->version >= 4 && o->agent_fd >= 0 && o->uffd < 0)
    why = "agent_fd is given without the userfaultfd of the process it serves";
  else if (o->version >= 5 && o->agent_timeout_ms > 600000)
    why = "agent_timeout_ms is above 600000 (ten minutes)";
  if (!why)
    return 0;
  snprintf(errbuf, errlen, "%s", why);
  return DMEM_EINVAL;
}

static int is_userfaultfd(int fd)
{
  char path[64], link[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, link, sizeof link - 1);
  if (n <= 0)
    return 0;
  link[n] = 0;
  return strcmp(link, "anon_inode:[userfaultfd]") == 0;
}

/* The memfd and its mapping, made or checked. */
static int setup_memory(dmem_kvm_region *r, const dmem_kvm_region_options *o)
{
  if (o->fd < 0) {
    r->fd = dmem__sys_memfd_create(o->name ? o->name : "dmem-guest", MFD_CLOEXEC);
    if (r->fd < 0)
      return dmem__mem_fail(r, DMEM_ESYS, "memfd_create: %s", strerror(errno));
    r->own_fd = 1;
    if (dmem__sys_ftruncate(DMEM__FP_REGION_FTRUNCATE, r->fd, (off_t)o->size) != 0)
      return dmem__mem_fail(r, DMEM_ESYS, "ftruncate of the memfd to %llu bytes: %s",
                            (unsigned long long)o->size, strerror(errno));
  } else {
    r->fd = o->fd;
    struct statfs sfs;
    struct stat st;
    if (fstatfs(r->fd, &sfs) != 0 || fstat(r->fd, &st) != 0)
      return dmem__mem_fail(r, DMEM_EINVAL, "fd %d: %s", r->fd, strerror(errno));
    if (sfs.f_type != TMPFS_MAGIC || !S_ISREG(st.st_mode))
      return dmem__mem_fail(r, DMEM_EINVAL, "fd %d is not a memfd or shared-memory file", r->fd);
    if ((uint64_t)st.st_size < o->fd_offset + o->size)
      return dmem__mem_fail(r, DMEM_EINVAL, "fd %d holds %lld bytes, short of %llu", r->fd,
                            (long long)st.st_size, (unsigned long long)(o->fd_offset + o->size));
  }
  if (o->uffd >= 0 && !is_userfaultfd(o->uffd))
    return dmem__mem_fail(r, DMEM_EINVAL, "uffd %d is not a userfaultfd", o->uffd);
  if (o->addr) {
    r->base = o->addr;
    return 0;
  }
  void *m = dmem__sys_mmap(DMEM__FP_REGION_MMAP, NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED,
                           r->fd, (off_t)o->fd_offset);
  if (m == MAP_FAILED)
    return dmem__mem_fail(r, DMEM_ESYS, "mmap of %llu bytes: %s", (unsigned long long)o->size,
                          strerror(errno));
  r->base = m;
  r->own_map = 1;
  /* Page-sized blocks: a huge page would make hole punching and faults
   * work on 2 MiB at once. Advice only. */
  (void)madvise(m, o->size, MADV_NOHUGEPAGE);
  return 0;
}

static void release(dmem_kvm_region *r)
{
  if (r->dirty_src.release)
    r->dirty_src.release(r, r->dirty_src.state);
  if (r->own_map)
    munmap(r->base, r->size);
  if (r->own_fd && r->fd >= 0)
    close(r->fd);
  dmem__mem_free(r, r->pages, r->npages);
  dmem__mem_free(r, r->young, r->npages);
  dmem__alloc a = r->alloc;
  dmem__free(&a, r, sizeof *r);
}

int dmem_kvm_region_create(dmem_kvm_region **out, const dmem_kvm_region_options *opts, char *errbuf,
                           size_t errlen)
{
  char scratch[1];
  if (!errbuf || errlen == 0) {
    errbuf = scratch;
    errlen = sizeof scratch;
  }
  errbuf[0] = 0;
  if (!out || !opts) {
    snprintf(errbuf, errlen, "%s is NULL", !out ? "out" : "opts");
    return DMEM_EINVAL;
  }
  int rc = check_options(opts, errbuf, errlen);
  if (rc)
    return rc;
  dmem__alloc a;
  dmem__alloc_init(&a, opts->allocator);
  dmem_kvm_region *r = dmem__malloc_aligned(&a, sizeof *r, 64);
  if (!r) {
    snprintf(errbuf, errlen, "out of memory for the region");
    return DMEM_ENOMEM;
  }
  memset(r, 0, sizeof *r);
  r->alloc = a;
  if (opts->version < DMEM_KVM_REGION_OPTIONS_VERSION) {
    /* Version 2 ends before the journal, version 3 before agent_fd,
     * version 4 before agent_timeout_ms. */
    static const dmem_kvm_region_options defaults = DMEM_KVM_REGION_OPTIONS_INIT;
    r->opts = defaults;
    memcpy(&r->opts, opts,
           opts->version == 2   ? offsetof(dmem_kvm_region_options, journal)
           : opts->version == 3 ? offsetof(dmem_kvm_region_options, agent_fd)
                                : offsetof(dmem_kvm_region_options, agent_timeout_ms));
    r->opts.version = DMEM_KVM_REGION_OPTIONS_VERSION;
  } else {
    r->opts = *opts;
  }
  r->opts.name = NULL; /* not kept */
  r->opts.allocator = NULL;
  r->size = opts->size;
  r->npages = opts->size / PAGE;
  r->fd_offset = opts->fd_offset;
  r->fd = r->uffd = r->stop_fd = r->agent_fd = -1;
  r->pages = dmem__mem_alloc(r, r->npages);
  r->young = dmem__mem_alloc(r, r->npages);
  if (!r->pages || !r->young) {
    release(r);
    snprintf(errbuf, errlen, "out of memory for %llu pages' state",
             (unsigned long long)opts->size / PAGE);
    return DMEM_ENOMEM;
  }
  memset(r->pages, 0, r->npages);
  memset(r->young, 0, r->npages);
  rc = setup_memory(r, opts);
  if (rc == 0 && (rc = pthread_mutex_init(&r->mu, NULL)) != 0)
    rc = dmem__mem_fail(r, DMEM_ESYS, "pthread_mutex_init: %s", strerror(rc));
  if (rc == 0 && (rc = pthread_cond_init(&r->cv, NULL)) != 0) {
    pthread_mutex_destroy(&r->mu);
    rc = dmem__mem_fail(r, DMEM_ESYS, "pthread_cond_init: %s", strerror(rc));
  }
  if (rc) {
    snprintf(errbuf, errlen, "%s", r->errmsg);
    release(r);
    return rc;
  }
  r->uffd_base = opts->uffd_addr ? opts->uffd_addr : (uint64_t)(uintptr_t)r->base;
  *out = r;
  return 0;
}

/* Undoes attach's registration and thread, whatever was reached. */
static void teardown(dmem_kvm_region *r)
{
  dmem__mem_uffd_unregister(r);
  dmem__mem_thread_stop(r);
  dmem__mem_uffd_close(r);
  pthread_mutex_lock(&r->mu);
  r->vm = NULL;
  r->engine = NULL;
  r->detaching = 0;
  memset(r->pages, 0, r->npages);
  memset(r->young, 0, r->npages);
  dmem__mem_cow_teardown(r);
  pthread_mutex_unlock(&r->mu);
}

void dmem_kvm_region_destroy(dmem_kvm_region *r)
{
  if (!r)
    return;
  if (r->vm && dmem_kvm_region_detach(r) == 0) {
    /* detached cleanly */
  } else if (r->vm || r->uffd >= 0 || r->have_thread) {
    teardown(r);
  }
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  release(r);
}

/* ---------------------------------------------------------------- attach */

int dmem_kvm_region_attach(dmem_vm **out, dmem_engine *e, dmem_kvm_region *r, const char *name)
{
  if (!out || !r || !e)
    return DMEM_EINVAL;
  if (r->vm || r->uffd >= 0)
    return dmem__mem_fail(r, DMEM_EBUSY, "the region is attached already");
  int rc = dmem__mem_uffd_open(r);
  if (rc)
    return rc;
  /* Arm tracking over the whole range, so that the first scan's bits are
   * true: every write from now on is seen, and with MINOR every touch. */
  pthread_mutex_lock(&r->mu);
  memset(r->pages, (r->track & DMEM_KVM_TRACK_WP) ? PG_ARMED : 0, r->npages);
  r->detaching = 0;
  r->continue_wp = 1; /* until the kernel says otherwise */
  r->vmm_gone = 0;
  r->held = 0;
  rc = dmem__mem_wp(r, 0, r->npages, 1, 0);
  if (rc == 0 && (r->track & DMEM_KVM_TRACK_MINOR) && madvise(r->base, r->size, MADV_DONTNEED))
    rc = dmem__mem_fail(r, DMEM_ESYS, "MADV_DONTNEED of the region: %s", strerror(errno));
  pthread_mutex_unlock(&r->mu);
  if (rc == 0)
    rc = dmem__mem_thread_start(r);
  dmem_vm *vm = NULL;
  if (rc == 0) {
    dmem_vm_options vo = DMEM_VM_OPTIONS_INIT;
    vo.ops = (r->track & DMEM_KVM_TRACK_WP) ? &dmem__mem_ops_wp : &dmem__mem_ops_nowp;
    vo.ud = r;
    vo.npages = r->npages;
    vo.name = name;
    vo.sharing_domain = r->opts.sharing_domain;
    vo.journal = r->opts.journal;
    vo.journal_size = r->opts.journal_size;
    rc = dmem_vm_attach(&vm, e, &vo);
    if (rc)
      dmem__mem_fail(r, rc, "dmem_vm_attach: %s", dmem_engine_errmsg(e));
  }
  if (rc) {
    teardown(r);
    return rc;
  }
  pthread_mutex_lock(&r->mu);
  r->vm = vm;
  r->engine = e;
  /* Mapping needs the frames of the VM's sharing domain, known from now
   * on; until then (and without it: no memory for its table), share()
   * says no and shared pages are copied. */
  (void)dmem__mem_cow_setup(r, dmem_vm_frames_fd(vm));
  pthread_mutex_unlock(&r->mu);
  *out = vm;
  return 0;
}

int dmem_kvm_region_detach(dmem_kvm_region *r)
{
  if (!r)
    return DMEM_EINVAL;
  if (!r->vm) {
    if (r->uffd >= 0 || r->have_thread)
      teardown(r);
    return 0;
  }
  /* From here the fault thread leaves the engine alone (dmem_vm_detach()
   * must not race with faults on the VM); wait for a call under way. An
   * agent's late answer is taken first: its page is then no longer
   * mapped. */
  pthread_mutex_lock(&r->mu);
  dmem__mem_cow_poll(r, 1);
  r->detaching = 1;
  while (r->in_engine)
    pthread_cond_wait(&r->cv, &r->mu);
  pthread_mutex_unlock(&r->mu);
  int rc = dmem_vm_detach(r->vm);
  if (rc) {
    dmem__mem_fail(r, rc, "dmem_vm_detach: %s", dmem_engine_errmsg(r->engine));
    pthread_mutex_lock(&r->mu);
    r->detaching = 0;
    r->held = 1; /* nothing leaves guest memory any more */
    pthread_mutex_unlock(&r->mu);
    /* Threads whose faults were left to detach fault again now. */
    struct uffdio_range rg = {.start = r->uffd_base, .len = r->size};
    (void)ioctl(r->uffd, UFFDIO_WAKE, &rg);
    return rc;
  }
  teardown(r);
  return 0;
}

/* -------------------------------------------------------------- accessors */

void *dmem_kvm_region_addr(const dmem_kvm_region *r)
{
  return r ? r->base : NULL;
}

uint64_t dmem_kvm_region_size(const dmem_kvm_region *r)
{
  return r ? r->size : 0;
}

uint64_t dmem_kvm_region_npages(const dmem_kvm_region *r)
{
  return r ? r->npages : 0;
}

int dmem_kvm_region_fd(const dmem_kvm_region *r)
{
  return r ? r->fd : -1;
}

dmem_vm *dmem_kvm_region_vm(const dmem_kvm_region *r)
{
  return r ? r->vm : NULL;
}

unsigned dmem_kvm_region_track(const dmem_kvm_region *r)
{
  return r ? r->track : 0;
}

const char *dmem_kvm_region_errmsg(const dmem_kvm_region *r)
{
  return r ? r->errmsg : "";
}

int dmem_kvm_region_page(unsigned *out, const dmem_kvm_region *r, uint64_t gfn)
{
  if (!out || !r)
    return DMEM_EINVAL;
  if (gfn >= r->npages)
    return DMEM_ERANGE;
  dmem_kvm_region *m = (dmem_kvm_region *)r; /* the lock, not the data */
  pthread_mutex_lock(&m->mu);
  uint8_t p = r->pages[gfn];
  pthread_mutex_unlock(&m->mu);
  *out = ((p & PG_EVICTED) ? DMEM_KVM_PAGE_EVICTED : 0u) |
         ((p & PG_MAPPED) ? DMEM_KVM_PAGE_MAPPED : 0u);
  return 0;
}

int dmem_kvm_region_memfd_bytes(uint64_t *out, const dmem_kvm_region *r)
{
  if (!out || !r)
    return DMEM_EINVAL;
  struct stat st;
  if (fstat(r->fd, &st) != 0)
    return DMEM_ESYS;
  *out = (uint64_t)st.st_blocks * 512u;
  return 0;
}

int dmem_kvm_region_stats(dmem_kvm_stats *out, const dmem_kvm_region *r)
{
  if (!out || !r)
    return DMEM_EINVAL;
  unsigned v = out->version;
  if (v != DMEM_KVM_STATS_VERSION && v != 3 && v != 2)
    return DMEM_EVERSION;
  dmem_kvm_region *m = (dmem_kvm_region *)r; /* the lock, not the data */
  dmem_kvm_stats st;
  pthread_mutex_lock(&m->mu);
  st = r->st;
  st.vmas_used = r->vmas_used;
  st.vma_budget = r->cow ? r->vma_budget : 0;
  pthread_mutex_unlock(&m->mu);
  st.errors = __atomic_load_n(&r->nerrors, __ATOMIC_RELAXED);
  st.version = v;
  memcpy(out, &st,
         v == 2   ? offsetof(dmem_kvm_stats, agent_timeouts)
         : v == 3 ? offsetof(dmem_kvm_stats, errors)
                  : sizeof st);
  return 0;
}
