/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The guest's side of the Linux memory layer: the userfaultfd (opened and
 * registered here, or the caller's) and the thread that serves the
 * region's faults (mem.h has the per-page state, the address spaces and
 * the layering). mem_region.c opens, starts and stops them; the thread
 * calls down only, into mem_cow.c (writes held for an agent's answer) and
 * mem_page.c (fills, wakes, write protection), never into the engine's
 * ops in mem_ops.c: it reaches the engine through dmem_vm_fault().
 *
 * Three kinds of fault arrive, for a vCPU (through KVM's get_user_pages)
 * and for a VMM thread alike:
 *  - MISSING: the memfd has no block for the page. An EVICTED page is
 *    rebuilt by the engine (dmem_vm_fault() calls install(), whose
 *    UFFDIO_COPY wakes the faulting thread); any other hole is a page never
 *    written, filled with zeros here.
 *  - MINOR: the block is there but bits() dropped the page-table entry:
 *    record "referenced" (and "modified" for a write), UFFDIO_CONTINUE.
 *  - WP: a write to a write-protected page: record "modified", lift the
 *    protection (which wakes the writer).
 *
 * Invariants:
 *  - no fault path makes a page writable while the engine protects it
 *    (EPROT): it waits on region->cv, with mu, until the engine lets go;
 *    read faults do not wait (they map the page write-protected);
 *  - the thread holds mu only for its own state and ioctls, never while
 *    it calls into the engine (the engine calls the ops with its lock held,
 *    and they take mu);
 *  - once detaching is set, the thread no longer calls into the engine:
 *    the pages it holds come back through detach's installs, whose
 *    UFFDIO_COPY wakes their waiters.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"
#include "uffd.h"

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

/* Fault messages read at once. */
#define MSG_BATCH 64
/* How long a wait on the engine's protection sleeps between checks for a
 * stop request, in milliseconds. */
#define WAIT_SLICE_MS 100
/* After a fault the engine could not serve, before the thread faults
 * again (a failing page would otherwise spin). */
#define FAIL_BACKOFF_US 1000

/* ------------------------------------------------------------- register */

/* The tracking modes that the features allow and the options want.
 * Referenced tracking zaps entries in this process's mapping, so it needs
 * the registered range to be that mapping. */
static unsigned track_modes(const dmem_kvm_region *r, uint64_t features)
{
  unsigned want = r->opts.track ? r->opts.track : DMEM_KVM_TRACK_MINOR | DMEM_KVM_TRACK_WP;
  unsigned track = 0;
  if ((want & DMEM_KVM_TRACK_MINOR) && (features & UFFD_FEATURE_MINOR_SHMEM) &&
      r->uffd_base == (uint64_t)(uintptr_t)r->base)
    track |= DMEM_KVM_TRACK_MINOR;
  if ((want & DMEM_KVM_TRACK_WP) && (features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM))
    track |= DMEM_KVM_TRACK_WP;
  return track;
}

static int open_stop_fd(dmem_kvm_region *r)
{
  r->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->stop_fd < 0)
    return dmem__mem_fail(r, DMEM_ESYS, "eventfd: %s", strerror(errno));
  return 0;
}

/* The caller's userfaultfd: its UFFDIO_API and UFFDIO_REGISTER were done
 * where the range lives; the options say with which features. */
static int adopt_uffd(dmem_kvm_region *r)
{
  uint64_t have = r->opts.uffd_features;
  if (!(have & UFFD_FEATURE_MISSING_SHMEM))
    return dmem__mem_fail(r, DMEM_ENOTSUP,
                          "the given userfaultfd lacks UFFD_FEATURE_MISSING_SHMEM (features %#llx)",
                          (unsigned long long)have);
  int rc = open_stop_fd(r);
  if (rc)
    return rc;
  r->uffd = r->opts.uffd;
  r->own_uffd = 0;
  r->track = track_modes(r, have);
  return 0;
}

int dmem__mem_uffd_open(dmem_kvm_region *r)
{
  if (r->opts.uffd >= 0)
    return adopt_uffd(r);
  char err[DMEM_ERRBUF_SIZE];
  uint64_t have;
  int rc = dmem__uffd_features(&have, err, sizeof err);
  if (rc)
    return dmem__mem_fail(r, rc, "%s", err);
  unsigned track = track_modes(r, have);
  uint64_t features = UFFD_FEATURE_MISSING_SHMEM;
  if (track & DMEM_KVM_TRACK_MINOR)
    features |= UFFD_FEATURE_MINOR_SHMEM;
  if (track & DMEM_KVM_TRACK_WP)
    features |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  int fd;
  rc = dmem__uffd_register(&fd, features, r->uffd_base, r->size, err, sizeof err);
  if (rc)
    return dmem__mem_fail(r, rc, "%s", err);
  rc = open_stop_fd(r);
  if (rc) {
    close(fd);
    return rc;
  }
  r->uffd = fd;
  r->own_uffd = 1;
  r->track = track;
  return 0;
}

void dmem__mem_uffd_unregister(dmem_kvm_region *r)
{
  if (r->uffd < 0)
    return;
  /* Wakes every thread still waiting on the range (uffd.h says why that
   * takes two calls); they fault again without userfaultfd and see the
   * memfd as it is. Through a caller's userfaultfd too: while attached the
   * registration is the region's. */
  dmem__uffd_unregister(r->uffd, r->uffd_base, r->size);
}

void dmem__mem_uffd_close(dmem_kvm_region *r)
{
  if (r->uffd >= 0 && r->own_uffd)
    close(r->uffd); /* also unregisters, if that was not done */
  if (r->stop_fd >= 0)
    close(r->stop_fd);
  r->uffd = r->stop_fd = -1;
  r->track = 0;
}

/* ---------------------------------------------------------------- faults */

/* Waits, mu held, until the engine no longer protects the page. */
static void wait_unprotected(dmem_kvm_region *r, uint64_t gfn)
{
  if (!(r->pages[gfn] & PG_EPROT))
    return;
  r->st.faults_waited++;
  while ((r->pages[gfn] & PG_EPROT) && !r->stopping) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += WAIT_SLICE_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&r->cv, &r->mu, &until);
  }
}

/* Fault-around for first touches: a guest takes fresh memory in runs (a
 * booting kernel clears and fills it page after page), so a MISSING fault
 * on a page that never left fills the rest of its aligned run of AROUND
 * pages too, where they are holes the engine counts resident: zeros, as a
 * touch would make them, and writable, since the guest is about to write
 * them. A write to them is then unseen, so they are recorded as modified
 * while they are young (YOUNG) and armed on their last young visit: the
 * invariant that a page not recorded as modified is write-protected
 * holds. One fault then serves up to AROUND first touches; a filled page
 * the guest never uses is an idle zero page the scanner frees again. */
#define AROUND 16

/* Fresh pages stay writable, and are reported as modified, for this many
 * visits of bits() (that is, scanner passes): a guest that is taking fresh
 * memory (booting, growing a heap) writes it again and again at first, and
 * each write to a re-armed page would be a write-protect fault. */
#define YOUNG 2

static int around_ok(const dmem_kvm_region *r, uint64_t g)
{
  return !(r->pages[g] & (PG_EVICTED | PG_MAPPED | PG_FAULT | PG_EPROT | PG_REF | PG_MOD));
}

/* Fills the holes of [g, g + n) with zeros, waking nobody (nobody waits:
 * a waiter's page has PG_FAULT or is the faulting one). Stops quietly at
 * anything but a page already there: this is only a head start. */
static void fill_run(dmem_kvm_region *r, uint64_t g, uint64_t n)
{
  for (int tries = 0; n > 0 && tries < 64; tries++) {
    struct uffdio_zeropage z = {.range = {.start = dmem__mem_uaddr(r, g), .len = n * PAGE},
                                .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE};
    int rc = dmem__sys_ioctl(DMEM__FP_UFFD_ZEROPAGE, r->uffd, UFFDIO_ZEROPAGE, &z);
    uint64_t k = rc == 0 ? n : z.zeropage > 0 ? (uint64_t)z.zeropage / PAGE : 0;
    for (uint64_t i = 0; i < k; i++) {
      r->pages[g + i] = (uint8_t)((r->pages[g + i] & ~PG_ARMED) | PG_MOD);
      r->young[g + i] = YOUNG;
    }
    if (rc == 0)
      return;
    if (errno != EEXIST && errno != EAGAIN) {
      /* Only a head start, but a failure all the same (unless the address
       * space is gone): said and counted. */
      if (errno != ESRCH)
        (void)dmem__mem_fail(r, DMEM_ESYS, "UFFDIO_ZEROPAGE of %llu pages at gfn %llu: %s",
                             (unsigned long long)n, (unsigned long long)g, strerror(errno));
      return;
    }
    /* A page already there (or the mm changing): step over it. */
    k += errno == EEXIST;
    g += k;
    n -= k < n ? k : n;
  }
}

static void fill_around(dmem_kvm_region *r, uint64_t gfn)
{
  uint64_t a = gfn & ~(uint64_t)(AROUND - 1), b = a + AROUND;
  if (b > r->npages)
    b = r->npages;
  for (uint64_t g = a; g < b;) {
    if (g == gfn || !around_ok(r, g)) {
      g++;
      continue;
    }
    uint64_t e = g + 1;
    while (e < b && e != gfn && around_ok(r, e))
      e++;
    fill_run(r, g, e - g);
    g = e;
  }
}

/* A hole the engine does not hold: a page never written, or a fault that
 * someone else served already. mu held; for a write, the page is not
 * protected by the engine. */
static void fill_zero(dmem_kvm_region *r, uint64_t gfn, int write)
{
  /* Writable unless the engine holds the page protected. */
  int writable = write || !(r->pages[gfn] & PG_EPROT);
  int rc = dmem__mem_fill(r, gfn, r->zeros, writable, 0);
  if (rc == 0) {
    r->st.zero_fills++;
    r->pages[gfn] |= (uint8_t)(PG_REF | (writable ? PG_MOD : 0));
    if (writable)
      r->young[gfn] = YOUNG;
    if (!r->vmm_gone)
      fill_around(r, gfn);
  } else if (rc == 1) {
    r->st.faults_spurious++;
  } else {
    r->st.faults_failed++;
    dmem__mem_wake(r, gfn);
  }
}

static void serve_missing(dmem_kvm_region *r, uint64_t gfn, int write, uint64_t t0)
{
  uint8_t *p = &r->pages[gfn];
  int failed = 0;
  pthread_mutex_lock(&r->mu);
  r->st.faults_missing++;
  while (!r->stopping) {
    if (*p & PG_MAPPED) {
      /* A touch before the agent mapped it (mem_cow.c): the agent's wake
       * sends the thread to the frame. Nothing else fills this hole. */
      r->st.faults_spurious++;
      break;
    }
    if (!(*p & PG_EVICTED)) {
      if (write && (*p & PG_EPROT)) {
        wait_unprotected(r, gfn); /* then look again: it may be evicted now */
        continue;
      }
      fill_zero(r, gfn, write);
      break;
    }
    dmem_vm *vm = r->vm;
    if (r->detaching || !vm)
      break; /* detach's install will fill it and wake the thread */
    *p |= (uint8_t)(PG_FAULT | (write ? PG_FWRITE : 0));
    r->in_engine++;
    pthread_mutex_unlock(&r->mu);

    /* A read may map the frame of a shared page (mem_cow.c). */
    int rc = write ? dmem_vm_fault(vm, gfn) : dmem_vm_fault_read(vm, gfn);

    pthread_mutex_lock(&r->mu);
    if (--r->in_engine == 0)
      pthread_cond_broadcast(&r->cv);
    if (!(*p & PG_FAULT)) {
      /* install() served it, and its UFFDIO_COPY woke the thread */
      dmem__mem_lat_record(r, dmem__mem_now_ns() - t0);
      break;
    }
    *p &= (uint8_t) ~(PG_FAULT | PG_FWRITE);
    if (rc == 0 && !(*p & PG_EVICTED))
      continue; /* resident for the engine: installed meanwhile, or never written */
    r->st.faults_failed++;
    failed = rc ? rc : DMEM_EINVAL;
    break;
  }
  pthread_mutex_unlock(&r->mu);
  if (failed) {
    if (r->opts.fault_error)
      r->opts.fault_error(r, gfn, failed, r->opts.ud);
    usleep(FAIL_BACKOFF_US);
    dmem__mem_wake(r, gfn);
  }
}

static int do_continue(dmem_kvm_region *r, uint64_t gfn, uint64_t mode)
{
  struct uffdio_continue c = {.range = {.start = dmem__mem_uaddr(r, gfn), .len = PAGE},
                              .mode = mode};
  int rc;
  do
    rc = dmem__sys_ioctl(DMEM__FP_UFFD_CONTINUE, r->uffd, UFFDIO_CONTINUE, &c);
  while (rc != 0 && errno == EAGAIN);
  return rc;
}

/* Maps the page write-protected. Kernels without UFFDIO_CONTINUE_MODE_WP
 * (added in Linux 6.4) refuse the mode: from then on, map it without
 * waking anyone, protect it, and wake. A thread that touches the page
 * between the two, without having faulted, writes unseen: a lost
 * "modified" bit at worst, because serve_minor() then waits until the
 * engine no longer protects the page. The first refusal fails with EAGAIN
 * (the thread faults again, and that time serve_minor() waits). */
static int continue_wp(dmem_kvm_region *r, uint64_t gfn)
{
  if (r->continue_wp) {
    int rc = do_continue(r, gfn, UFFDIO_CONTINUE_MODE_WP);
    if (rc == 0 || errno != EINVAL)
      return rc;
    r->continue_wp = 0;
    errno = EAGAIN;
    return -1;
  }
  int rc = do_continue(r, gfn, UFFDIO_CONTINUE_MODE_DONTWAKE);
  if (rc == 0) {
    (void)dmem__mem_wp(r, gfn, 1, 1, 0);
    dmem__mem_wake(r, gfn);
  }
  return rc;
}

static void serve_minor(dmem_kvm_region *r, uint64_t gfn, int write)
{
  pthread_mutex_lock(&r->mu);
  r->st.faults_minor++;
  /* A write, or any touch where the page could not be mapped protected,
   * waits for the engine to let go of the page. */
  if (write || !r->continue_wp)
    wait_unprotected(r, gfn);
  uint8_t *p = &r->pages[gfn];
  if (*p & PG_EVICTED) {
    /* evicted since: the thread faults again, as MISSING */
    dmem__mem_wake(r, gfn);
    pthread_mutex_unlock(&r->mu);
    return;
  }
  /* A read keeps the page write-protected while it is armed for tracking
   * or protected by the engine; a write makes it writable. */
  int keep_wp = !write && (*p & (PG_ARMED | PG_EPROT)) && (r->track & DMEM_KVM_TRACK_WP);
  int rc = keep_wp ? continue_wp(r, gfn) : do_continue(r, gfn, 0);
  if (rc == 0) {
    *p |= PG_REF;
    if (write)
      *p = (uint8_t)((*p | PG_MOD) & ~PG_ARMED);
  } else {
    /* EEXIST: mapped meanwhile; EAGAIN: see continue_wp(); else a failed
     * ioctl. The thread retries its access and faults again if it must. */
    if (errno == EEXIST)
      r->st.faults_spurious++;
    else if (errno != EAGAIN)
      r->st.faults_failed++;
    dmem__mem_wake(r, gfn);
  }
  pthread_mutex_unlock(&r->mu);
}

static void serve_wp(dmem_kvm_region *r, uint64_t gfn)
{
  pthread_mutex_lock(&r->mu);
  r->st.faults_wp++;
  wait_unprotected(r, gfn);
  if (dmem__mem_cow_hold_write(r, gfn)) {
    pthread_mutex_unlock(&r->mu);
    return;
  }
  uint8_t *p = &r->pages[gfn];
  /* A mapped page's write then copies the frame privately: the engine,
   * seeing MOD, puts the page back into the memfd. */
  if (!(*p & PG_EVICTED))
    *p = (uint8_t)((*p | PG_REF | PG_MOD) & ~PG_ARMED);
  /* Lifting the protection wakes the writer; on an evicted page it only
   * clears the marker, and the writer faults again as MISSING. */
  if (dmem__mem_wp(r, gfn, 1, 0, 1) != 0) {
    r->st.faults_failed++;
    dmem__mem_wake(r, gfn);
  }
  pthread_mutex_unlock(&r->mu);
}

static void serve(dmem_kvm_region *r, const struct uffd_msg *m, uint64_t t0)
{
  if (m->event != UFFD_EVENT_PAGEFAULT)
    return;
  uint64_t addr = m->arg.pagefault.address;
  uint64_t start = r->uffd_base;
  if (addr < start || addr - start >= r->size)
    return;
  uint64_t gfn = (addr - start) / PAGE;
  uint64_t fl = m->arg.pagefault.flags;
  if (fl & UFFD_PAGEFAULT_FLAG_WP)
    serve_wp(r, gfn);
  else if (fl & UFFD_PAGEFAULT_FLAG_MINOR)
    serve_minor(r, gfn, (fl & UFFD_PAGEFAULT_FLAG_WRITE) != 0);
  else
    serve_missing(r, gfn, (fl & UFFD_PAGEFAULT_FLAG_WRITE) != 0, t0);
}

static void *fault_thread(void *arg)
{
  dmem_kvm_region *r = arg;
  struct uffd_msg msgs[MSG_BATCH];
  struct pollfd pfd[3] = {{.fd = r->uffd, .events = POLLIN},
                          {.fd = r->stop_fd, .events = POLLIN},
                          {.fd = -1, .events = POLLIN}};
  for (;;) {
    /* A writer held for an agent's late answer (mem_cow.c): watch for the
     * answer too, and look again now and then (the engine may take it). */
    pthread_mutex_lock(&r->mu);
    int watch = r->agent_held;
    pfd[2].fd = r->agent_fd; /* set at attach, after the thread starts */
    pthread_mutex_unlock(&r->mu);
    int k = poll(pfd, watch ? 3 : 2, watch ? WAIT_SLICE_MS : -1);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 || pfd[1].revents || (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)))
      break;
    if (watch) {
      pthread_mutex_lock(&r->mu);
      dmem__mem_cow_poll(r, 0);
      pthread_mutex_unlock(&r->mu);
    }
    if (!(pfd[0].revents & POLLIN))
      continue;
    ssize_t n = read(r->uffd, msgs, sizeof msgs);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n <= 0)
      break;
    uint64_t t0 = dmem__mem_now_ns();
    for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++)
      serve(r, &msgs[i], t0);
  }
  return NULL;
}

int dmem__mem_thread_start(dmem_kvm_region *r)
{
  r->stopping = 0;
  int rc = dmem__thread_start(&r->thread, fault_thread, r, r->errmsg, "the fault thread");
  if (rc != 0)
    return rc;
  (void)pthread_setname_np(r->thread, "dmem-uffd");
  r->have_thread = 1;
  return 0;
}

void dmem__mem_thread_stop(dmem_kvm_region *r)
{
  if (!r->have_thread)
    return;
  pthread_mutex_lock(&r->mu);
  r->stopping = 1;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  uint64_t one = 1;
  while (write(r->stop_fd, &one, sizeof one) < 0 && errno == EINTR)
    ;
  pthread_join(r->thread, NULL);
  r->have_thread = 0;
}
