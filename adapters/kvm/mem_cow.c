/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Copy-on-write sharing in the Linux memory layer: a guest page that reads
 * a shared content maps the engine's frame (MAP_PRIVATE | MAP_FIXED of the
 * frames memfd) instead of holding a copy (mem.h: PG_MAPPED). mem_region.c
 * sets it up and tears it down, mem_ops.c maps and unmaps (share(),
 * install()) and mem_uffd.c holds writes here; this file calls only
 * mem_page.c's primitives (mem.h has the layering).
 *
 * When. The engine shares identical pages by evicting them, as before; a
 * guest read of such a page (a MISSING fault without the write flag) asks
 * the engine through dmem_vm_fault_read(), which calls share(), which maps
 * the frame here. So the pages that get mapped are the read-hot ones, and
 * a write fault still gets a private copy. A resident page is never mapped
 * (share() on it says DMEM_ENOTSUP and the engine evicts it).
 *
 * Why the mapping holds. A MAP_FIXED mapping replaces the registration of
 * the page, so the new mapping is registered again, in WP mode only:
 *  - reads never fault to the fault thread, so the engine may read a mapped
 *    page through the mapping under its lock;
 *  - a write stops as a WP fault: recorded as modified, then let through,
 *    and the kernel copies the frame into a private anonymous page, which
 *    is the page's content from then on (the engine reads it through the
 *    mapping and puts it back into the memfd through install());
 *  - nothing zaps a mapped page (bits() skips them: MADV_DONTNEED on a
 *    private mapping throws a private copy away) and nothing punches it.
 * Between the mmap and the registration a write would copy the frame
 * without a fault: the content is still right (it is read through the
 * mapping) and only its modified bit is lost; the engine compares a mapped
 * page with its frame before it lets the mapping go.
 * Going back (install() on a mapped page): the content is written into the
 * memfd first, then the memfd is mapped again and registered, so that a
 * touch in between finds the right block, never a hole.
 *
 * The VMA budget. Each maximal run of pages that map consecutive frames
 * is one VMA, and it splits the guest's mapping around it; the count of
 * boundaries between unlike neighbours is what mapping adds
 * (vmas_used), and it must stay within vma_budget (vm.max_map_count is a
 * per-process limit, 65530 by default). When the budget is spent, share()
 * says DMEM_ENOSPC and the engine copies instead (counted).
 *
 * Another process's address space (a daemon's region, whose userfaultfd a
 * VMM passed, opts.agent_fd): the userfaultfd's ioctls (register, protect,
 * wake) act on the VMM's memory from here, but the two mmap calls must be
 * made there, so an agent thread in the VMM makes them when asked
 * (DMEM_PROTO_MAP, diffmem/daemon.h):
 *  - FRAME maps the frame, as above, registers and protects it there, and
 *    wakes the faulting thread. It is sent and not waited for: the page is
 *    MAPPED here from the send on (the socket keeps the order of what
 *    follows), and a MISSING fault on a MAPPED page is left to the agent's
 *    wake. An agent that cannot map fills the page's block with the frame
 *    instead, and wakes all the same: the page is then in the memfd,
 *    unseen by its tracking, which is harmless, as nothing here writes or
 *    punches a MAPPED page's block;
 *  - RAM, one round trip, copies the page's current content into the memfd
 *    (this process cannot read the VMM's private copy) and maps the memfd
 *    back; the page is write-protected meanwhile, so no write lands in
 *    between.
 * A mapped page is read from the frames memfd here (the VMM's private copy
 * is out of reach): a write in the window before the registration is then
 * unseen until the page goes back to the memfd, and RAM carries it along.
 * The agent is the only one that ever moves the VMM's mapping back onto the
 * memfd, and it copies the VMM's page first; so whatever this side writes
 * into the block of a mapped page, the guest never reads it.
 *
 * An agent that does not answer a RAM within agent_timeout_ms (a VMM
 * stopped, or starved of CPU) leaves the request pending: the unmap fails,
 * so the engine keeps the page mapped and keeps its frame, which the VMM
 * may still read through its mapping (were the frame freed and reused, the
 * VMM would read another page's content, and the agent would copy that
 * back). The page stays write-protected too: the agent may be between its
 * copy of the page and its remap, where a write let through would land in
 * the private copy the remap throws away. A write fault on it is held,
 * neither let through nor woken, and the fault thread watches the agent's
 * socket until the answer wakes the writer, which then writes into the
 * memfd. Until the answer arrives nothing more is asked of the agent (no
 * second stall) and no frame is mapped in that VMM. The answer, whenever
 * it comes (read before any later request, and at each bits()), completes
 * the RAM: the page is the memfd's again, registered, and recorded as
 * modified, as the VMM may have written it in between. An agent that hangs
 * up or breaks the protocol is never asked again (agent_dead); its mapped
 * pages stay as they are, their frames kept, and the agent copies them
 * back when the daemon lets the VM go (or the VMM is gone, and the memfd
 * gets the frame's content).
 */
#include "config.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <diffmem/daemon.h>

#include "mem.h"

/* How long the engine, which holds its lock meanwhile, waits for an agent
 * when the options leave agent_timeout_ms 0. */
#define AGENT_TIMEOUT_MS 1000
/* How long a detach waits for each answer: the VMM is detaching and its
 * agent is there, only slow; a detach that gave up would leave mapped
 * pages the engine could not take back. */
#define AGENT_DETACH_TIMEOUT_MS 30000

/* How long to wait for the agent now: @p detaching, as a detach does. */
static int agent_wait_ms(const dmem_kvm_region *r, int detaching)
{
  return (int)(detaching && r->agent_timeout_ms < AGENT_DETACH_TIMEOUT_MS ? AGENT_DETACH_TIMEOUT_MS
                                                                          : r->agent_timeout_ms);
}

/* Would neighbour page nb share one VMA with a page that is @p mapped,
 * with nb then mapping frame @p want? (Guest pages always join.) */
static int joins(const dmem_kvm_region *r, uint64_t nb, int mapped, uint32_t want)
{
  int m = (r->pages[nb] & PG_MAPPED) != 0;
  return m == mapped && (!m || r->frame_of[nb] == want);
}

/* Boundaries around page gfn were it @p mapped onto frame_id. */
static uint64_t boundaries(const dmem_kvm_region *r, uint64_t gfn, int mapped, uint32_t frame_id)
{
  uint64_t n = 0;
  if (gfn > 0)
    n += !joins(r, gfn - 1, mapped, frame_id - 1);
  if (gfn + 1 < r->npages)
    n += !joins(r, gfn + 1, mapped, frame_id + 1);
  return n;
}

/* vmas_used were page gfn @p mapped onto frame_id. */
static uint64_t vmas_if(const dmem_kvm_region *r, uint64_t gfn, int mapped, uint32_t frame_id)
{
  int now = (r->pages[gfn] & PG_MAPPED) != 0;
  return r->vmas_used - boundaries(r, gfn, now, r->frame_of[gfn]) +
         boundaries(r, gfn, mapped, frame_id);
}

/* Changes page gfn's mapping state and the count of VMAs with it. */
static void set_mapped(dmem_kvm_region *r, uint64_t gfn, int mapped, uint32_t frame_id)
{
  r->vmas_used = vmas_if(r, gfn, mapped, frame_id);
  if (mapped) {
    r->pages[gfn] |= PG_MAPPED;
    r->frame_of[gfn] = frame_id;
  } else {
    r->pages[gfn] &= (uint8_t)~PG_MAPPED;
  }
}

/* VMAs the process has now, and the limit. */
static uint64_t maps_in_use(void)
{
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return 0;
  uint64_t n = 0;
  int c;
  while ((c = getc(f)) != EOF)
    n += c == '\n';
  fclose(f);
  return n;
}

static uint64_t max_map_count(void)
{
  unsigned long long v = 65530;
  FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
  if (f) {
    if (fscanf(f, "%llu", &v) != 1)
      v = 65530;
    fclose(f);
  }
  return v;
}

int dmem__mem_cow_setup(dmem_kvm_region *r, int frames_fd)
{
  r->cow = 0;
  r->vmas_used = 0;
  r->broken = 0;
  r->agent_dead = r->agent_hung_up = 0;
  r->agent_pending = 0;
  r->agent_held = 0;
  r->agent_timeout_ms = r->opts.agent_timeout_ms ? r->opts.agent_timeout_ms : AGENT_TIMEOUT_MS;
  r->agent_fd = r->opts.agent_fd;
  /* Mapping replaces the registration, so the region must be this
   * process's own mapping, with both tracking modes (MINOR keeps reads of
   * the guest's own pages seen; WP catches writes to mapped ones); or
   * another process's, with an agent there and WP. */
  int own = r->uffd_base == (uint64_t)(uintptr_t)r->base;
  if (frames_fd < 0)
    return 0;
  if (own && r->track != (DMEM_KVM_TRACK_MINOR | DMEM_KVM_TRACK_WP))
    return 0;
  if (!own && (r->agent_fd < 0 || !(r->track & DMEM_KVM_TRACK_WP)))
    return 0;
  if (!r->frame_of) {
    r->frame_of = dmem__mem_alloc(r, r->npages * sizeof *r->frame_of);
    if (!r->frame_of)
      return dmem__mem_fail(r, DMEM_ENOMEM, "out of memory for the frame table");
  }
  r->frames_fd = frames_fd;
  if (r->opts.vma_budget) {
    r->vma_budget = r->opts.vma_budget;
  } else if (!own) {
    /* The VMM's maps are not ours to count: a sixteenth of the limit. */
    r->vma_budget = max_map_count() / 16;
  } else {
    /* An eighth of what the process has left: several regions in one
     * process, and the rest of the VMM, share the same limit. */
    uint64_t max = max_map_count(), used = maps_in_use();
    r->vma_budget = max > used ? (max - used) / 8 : 0;
  }
  r->cow = 1;
  return 0;
}

void dmem__mem_cow_teardown(dmem_kvm_region *r)
{
  r->cow = 0;
  if (r->frame_of)
    dmem__mem_free(r, r->frame_of, r->npages * sizeof *r->frame_of);
  r->frame_of = NULL;
}

static int do_register(dmem_kvm_region *r, uint64_t gfn, uint64_t modes)
{
  struct uffdio_register reg = {.range = {.start = dmem__mem_uaddr(r, gfn), .len = PAGE},
                                .mode = modes};
  if (dmem__sys_ioctl(DMEM__FP_UFFD_REGISTER, r->uffd, UFFDIO_REGISTER, &reg) == 0)
    return 0;
  if (errno == ESRCH) {
    r->vmm_gone = 1; /* no address space left to register anything in */
    return 0;
  }
  return dmem__mem_fail(r, DMEM_ESYS, "UFFDIO_REGISTER of gfn %llu: %s", (unsigned long long)gfn,
                        strerror(errno));
}

/* Registers mapped page gfn for WP and write-protects it. */
static int protect_mapped(dmem_kvm_region *r, uint64_t gfn)
{
  int rc = do_register(r, gfn, UFFDIO_REGISTER_MODE_WP);
  return rc ? rc : dmem__mem_wp(r, gfn, 1, 1, 0);
}

/* ---------------------------------------------------------------- agent */

typedef union agent_buf {
  uint64_t align;
  uint8_t b[sizeof(dmem_proto_hdr) + sizeof(dmem_proto_error)];
} agent_buf;

/* Sends a request to the agent without waiting: 0, or -1 with errno
 * (EAGAIN: its socket is full). */
static int agent_send(dmem_kvm_region *r, uint64_t gfn, uint32_t what, uint64_t offset,
                      uint32_t *seq)
{
  dmem_proto_map m = {.addr = dmem__mem_uaddr(r, gfn), .offset = offset, .what = what};
  agent_buf buf;
  *seq = ++r->agent_seq;
  size_t n = dmem_proto_encode(buf.b, sizeof buf.b, DMEM_PROTO_MAP, *seq, &m, sizeof m);
  return dmem_proto_send(r->agent_fd, buf.b, n, NULL, 0, 1);
}

/* The pending RAM is over (answered, or never will be): a writer held on
 * its page faults again and finds the page as it is now. */
static void release_held(dmem_kvm_region *r)
{
  if (r->agent_held) {
    r->agent_held = 0;
    (void)dmem__mem_wake(r, r->agent_pending_gfn);
  }
}

static void agent_gone(dmem_kvm_region *r, uint64_t gfn, const char *why, int err)
{
  r->agent_dead = 1;
  r->agent_pending = 0;
  release_held(r);
  (void)dmem__mem_fail(r, DMEM_EIO, "%s about gfn %llu%s%s; it is asked nothing more", why,
                       (unsigned long long)gfn, err ? ": " : "", err ? strerror(err) : "");
}

/* Mapped page gfn holds no frame any more: its memfd block is its
 * content. */
static void unmapped(dmem_kvm_region *r, uint64_t gfn)
{
  set_mapped(r, gfn, 0, 0);
  r->st.cow_mapped--;
  r->pages[gfn] &= (uint8_t) ~(PG_EVICTED | PG_ARMED);
}

/* ... and the VMM maps the memfd there again (a RAM done): registered as
 * any other page. 0, or the registration's error: the page then stays
 * MAPPED for the engine, which keeps its frame and unmaps it again later,
 * and for the region a page whose memfd is back (DMEM__REMAP_PENDING):
 * that later unmap only registers it, so a guest write made meanwhile
 * (unseen: nothing is registered) is kept, not overwritten. Until then the
 * region is broken and evicts nothing. A detach needs no registration (it
 * is about to lift them all), nor a VMM that is gone (ESRCH): there the
 * page is simply back. */
static int remapped(dmem_kvm_region *r, uint64_t gfn)
{
  int rc = do_register(r, gfn,
                       UFFDIO_REGISTER_MODE_MISSING |
                           ((r->track & DMEM_KVM_TRACK_MINOR) ? UFFDIO_REGISTER_MODE_MINOR : 0) |
                           UFFDIO_REGISTER_MODE_WP);
  if (rc && !r->detaching) {
    if (r->frame_of[gfn] != DMEM__REMAP_PENDING) {
      set_mapped(r, gfn, 1, DMEM__REMAP_PENDING);
      r->broken++;
    }
    return rc;
  }
  /* Registered, or a detach that unregisters everything anyway. */
  if (r->frame_of[gfn] == DMEM__REMAP_PENDING)
    r->broken--;
  unmapped(r, gfn);
  return 0;
}

int dmem__mem_cow_repair(dmem_kvm_region *r, uint64_t gfn)
{
  if (!(r->pages[gfn] & PG_MAPPED))
    return 0;
  if (r->frame_of[gfn] == DMEM__MAP_UNPROTECTED) /* registered; the unmap does the rest */
    return do_register(r, gfn, UFFDIO_REGISTER_MODE_WP);
  if (r->frame_of[gfn] != DMEM__REMAP_PENDING)
    return 0;
  int rc = remapped(r, gfn);
  if (rc == 0)
    r->pages[gfn] |= PG_REF | PG_MOD;
  return rc;
}

/* A late RAM done: remapped, and recorded as modified (the VMM may have
 * written it unseen since the remap; the scanner arms it). */
static int ram_done(dmem_kvm_region *r, uint64_t gfn)
{
  int rc = remapped(r, gfn);
  r->pages[gfn] |= (uint8_t)(PG_REF | PG_MOD);
  (void)dmem__mem_wake(r, gfn);
  return rc;
}

/* Reads the answer to a pending RAM, waiting for it up to wait_ms: 0 when
 * nothing is pending any more, DMEM_ETIMEDOUT_ while it still is (or the
 * agent broke off). mu held. */
static int agent_drain(dmem_kvm_region *r, int wait_ms)
{
  if (r->agent_dead)
    return DMEM_ETIMEDOUT_;
  if (!r->agent_pending)
    return 0;
  agent_buf buf;
  dmem_proto_msg reply;
  long k = dmem_proto_recv(r->agent_fd, buf.b, sizeof buf.b, NULL, 0, NULL, wait_ms);
  if (k < 0 && errno == ETIMEDOUT)
    return DMEM_ETIMEDOUT_;
  uint64_t gfn = r->agent_pending_gfn;
  if (k <= 0) {
    r->agent_hung_up = k == 0;
    agent_gone(r, gfn, k == 0 ? "the agent hung up" : "reading the agent's late answer",
               k ? errno : 0);
    return DMEM_ETIMEDOUT_;
  }
  if (dmem_proto_parse(&reply, buf.b, (size_t)k) != 0 || reply.hdr.type != DMEM_PROTO_MAP_DONE ||
      reply.hdr.seq != r->agent_pending) {
    agent_gone(r, gfn, "a wrong late answer from the agent", 0);
    return DMEM_ETIMEDOUT_;
  }
  r->agent_pending = 0;
  r->st.agent_late++;
  /* Refused, the VMM's page is still mapped onto its frame: as it was. */
  if (reply.u.map_done.code == 0 && (r->pages[gfn] & PG_MAPPED))
    (void)ram_done(r, gfn);
  release_held(r);
  return 0;
}

void dmem__mem_cow_poll(dmem_kvm_region *r, int wait)
{
  if (r->agent_fd >= 0 && r->agent_pending)
    (void)agent_drain(r, wait ? agent_wait_ms(r, 1) : 0);
}

int dmem__mem_cow_in_flight(const dmem_kvm_region *r, uint64_t gfn)
{
  return r->agent_fd >= 0 && r->agent_pending && r->agent_pending_gfn == gfn &&
         (r->pages[gfn] & PG_MAPPED);
}

int dmem__mem_cow_hold_write(dmem_kvm_region *r, uint64_t gfn)
{
  if (!dmem__mem_cow_in_flight(r, gfn))
    return 0;
  (void)agent_drain(r, 0); /* the answer may be there already */
  if (dmem__mem_cow_in_flight(r, gfn)) {
    /* The agent has copied the page, or is about to, and will map the
     * memfd over it: a write let through now would land in the copy that
     * the remap throws away. */
    r->agent_held = 1;
    return 1;
  }
  /* Answered: back in the memfd, its writer woken (ram_done), or still on
   * its frame (refused, or the agent gone): then served as usual. */
  return !(r->pages[gfn] & PG_MAPPED);
}

/* One request to the agent and its answer: its code (0 or DMEM_E*), or
 * DMEM_ETIMEDOUT_ when there is none in time (the request stays pending,
 * and nothing else is asked until its answer comes) or the agent is gone
 * (it is then never asked again). mu held. */
static int agent_call(dmem_kvm_region *r, uint64_t gfn, uint32_t what, uint64_t offset)
{
  if (agent_drain(r, r->detaching ? agent_wait_ms(r, 1) : 0) != 0)
    return DMEM_ETIMEDOUT_;
  agent_buf buf;
  uint32_t seq;
  const char *why = NULL;
  int err = 0;
  dmem_proto_msg reply;
  int sent = agent_send(r, gfn, what, offset, &seq);
  if (sent != 0 && (errno == EAGAIN || errno == ENOBUFS)) {
    /* Its socket is full of mappings it has yet to make: a busy agent,
     * not a dead one. Wait for room as long as for an answer. */
    struct pollfd pf = {.fd = r->agent_fd, .events = POLLOUT};
    if (poll(&pf, 1, agent_wait_ms(r, r->detaching)) != 1)
      return dmem__mem_fail(r, DMEM_ETIMEDOUT_, "the agent's socket stayed full (gfn %llu)",
                            (unsigned long long)gfn);
    r->agent_seq--; /* the same request again */
    sent = agent_send(r, gfn, what, offset, &seq);
  }
  if (sent != 0) {
    why = "sending to the agent", err = errno;
    r->agent_hung_up = errno == EPIPE || errno == ECONNRESET;
  } else {
    long k = dmem_proto_recv(r->agent_fd, buf.b, sizeof buf.b, NULL, 0, NULL,
                             agent_wait_ms(r, r->detaching));
    if (k < 0 && errno == ETIMEDOUT) {
      r->agent_pending = seq;
      r->agent_pending_gfn = gfn;
      r->st.agent_timeouts++;
      return dmem__mem_fail(r, DMEM_ETIMEDOUT_,
                            "no answer from the agent within %d ms about gfn %llu; it is asked "
                            "nothing more until it answers",
                            agent_wait_ms(r, r->detaching), (unsigned long long)gfn);
    }
    if (k <= 0) {
      why = k == 0 ? "the agent hung up" : "reading the agent's answer", err = k ? errno : 0;
      r->agent_hung_up = k == 0;
    } else if (dmem_proto_parse(&reply, buf.b, (size_t)k) != 0 ||
               reply.hdr.type != DMEM_PROTO_MAP_DONE || reply.hdr.seq != seq)
      why = "a wrong answer from the agent";
  }
  if (why) {
    agent_gone(r, gfn, why, err);
    return DMEM_ETIMEDOUT_;
  }
  if (reply.u.map_done.code == DMEM_ENOSPC)
    return DMEM_ENOSPC;
  if (reply.u.map_done.code)
    return dmem__mem_fail(r, reply.u.map_done.code, "the agent could not map gfn %llu: %s",
                          (unsigned long long)gfn, strerror((int)reply.u.map_done.error));
  return 0;
}

/* Maps frame_id over page gfn, copy-on-write, where the userfaultfd's
 * address space is: 0, DMEM_ENOSPC (no room for another mapping) or an
 * error (the page is as it was). Through an agent, 0 means asked: it maps
 * the page (or fills it) and wakes its waiters itself. */
static int map_frame(dmem_kvm_region *r, uint64_t gfn, uint32_t frame_id)
{
  if (r->agent_fd >= 0) {
    uint32_t seq;
    if (agent_send(r, gfn, DMEM_PROTO_MAP_FRAME, (uint64_t)frame_id * PAGE, &seq) == 0)
      return 0;
    if (errno == EAGAIN || errno == ENOBUFS)
      return DMEM_ENOSPC; /* busy: this one is copied */
    agent_gone(r, gfn, "sending to the agent", errno);
    return DMEM_ENOTSUP;
  }
  uint8_t *addr = r->base + gfn * PAGE;
  void *m = dmem__sys_mmap(DMEM__FP_REGION_MMAP, addr, PAGE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_FIXED, r->frames_fd, (off_t)frame_id * PAGE);
  if (m == MAP_FAILED) {
    /* The process's own limit (vm.max_map_count): the old mapping stays. */
    if (errno == ENOMEM)
      return DMEM_ENOSPC;
    return dmem__mem_fail(r, DMEM_ESYS, "mmap of frame %u over gfn %llu: %s", frame_id,
                          (unsigned long long)gfn, strerror(errno));
  }
  /* Filled now, while no fault can reach this thread (a read later needs
   * no fault at all). Advice: a failure only costs a fault. */
  (void)madvise(addr, PAGE, MADV_POPULATE_READ);
  return 0;
}

/* Puts the memfd back under mapped page gfn, holding the page's content:
 * @p content here (written into the memfd first: a touch between the remap
 * and the registration finds it, never a hole), what the VMM's page holds
 * through an agent. */
static int map_ram(dmem_kvm_region *r, uint64_t gfn, const void *content)
{
  if (r->agent_fd >= 0)
    return agent_call(r, gfn, DMEM_PROTO_MAP_RAM, 0);
  int rc = dmem__mem_pwrite(r, gfn, content);
  if (rc)
    return rc;
  uint64_t off = r->fd_offset + gfn * PAGE;
  uint8_t *addr = r->base + gfn * PAGE;
  if (dmem__sys_mmap(DMEM__FP_REGION_MMAP, addr, PAGE, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_FIXED, r->fd, (off_t)off) == MAP_FAILED)
    return dmem__mem_fail(r, DMEM_ESYS, "mmap of the memfd back over gfn %llu: %s",
                          (unsigned long long)gfn, strerror(errno));
  return 0;
}

/* ---------------------------------------------------------------- map, unmap */

int dmem__mem_cow_map(dmem_kvm_region *r, uint64_t gfn, uint32_t frame_id)
{
  uint8_t *p = &r->pages[gfn];
  if (!r->cow || r->agent_dead || r->agent_pending || r->held || !(*p & PG_EVICTED) ||
      (*p & PG_MAPPED))
    return DMEM_ENOTSUP; /* mapped on a read fault only; copied without an agent */
  if (vmas_if(r, gfn, 1, frame_id) > r->vma_budget) {
    r->st.cow_fallbacks++;
    return DMEM_ENOSPC;
  }
  int rc = map_frame(r, gfn, frame_id);
  if (rc == DMEM_ENOSPC) {
    r->st.cow_fallbacks++;
    return DMEM_ENOSPC;
  }
  if (rc)
    return rc;
  *p = (uint8_t)((*p & ~(PG_EVICTED | PG_FAULT | PG_FWRITE | PG_REF | PG_MOD)) | PG_ARMED);
  set_mapped(r, gfn, 1, frame_id);
  r->st.cow_maps++;
  r->st.cow_mapped++;
  if (r->agent_fd >= 0)
    return 0; /* the agent registers, protects and wakes, in its process */
  rc = protect_mapped(r, gfn);
  if (rc) {
    /* A write would go unseen: the engine installs the page next (its
     * share failed), and that takes what the mapping shows. */
    set_mapped(r, gfn, 1, DMEM__MAP_UNPROTECTED);
    r->broken++;
  }
  /* Whatever happened, the thread that faulted reads the frame now. */
  (void)dmem__mem_wake(r, gfn);
  return rc;
}

int dmem__mem_cow_unmap(dmem_kvm_region *r, uint64_t gfn, const void *content, int write)
{
  uint8_t *p = &r->pages[gfn];
  uint8_t truth[PAGE];
  int unprotected = (*p & PG_MAPPED) && r->frame_of[gfn] == DMEM__MAP_UNPROTECTED;
  if (unprotected) {
    /* The page is what the mapping shows (the frame, or a private copy a
     * guest write made unseen), not what the engine knows: protect it,
     * then take that. */
    int rc = protect_mapped(r, gfn);
    if (rc)
      return rc;
    dmem__mem_copy_guest(truth, r, gfn);
    content = truth;
  }
  int rc = (*p & PG_MAPPED) && r->frame_of[gfn] == DMEM__REMAP_PENDING ? 0 /* back already */
           : r->vmm_gone && r->agent_fd >= 0                           ? DMEM_ETIMEDOUT_
                                                                       : map_ram(r, gfn, content);
  if (unprotected && rc == 0) {
    r->broken--;
    set_mapped(r, gfn, 1, 0); /* the memfd is back: no longer unprotected */
  }
  if (!(*p & PG_MAPPED))
    return 0; /* a late answer put it back meanwhile: the memfd holds the VMM's page */
  if (rc == DMEM_ETIMEDOUT_ && r->agent_hung_up && !r->vmm_gone) {
    /* Is the VMM there still? (ESRCH says not; dmem__mem_wp notes it.) */
    (void)dmem__mem_wp(r, gfn, 1, 1, 0);
    if (!r->vmm_gone) {
      /* An agent closes its socket only once it has copied every page it
       * mapped back into the memfd (the client's agent_restore()), and its
       * VMM lives: the memfd holds the page, and the frame may go. */
      unmapped(r, gfn);
      return 0;
    }
  }
  if (rc == DMEM_ETIMEDOUT_) {
    /* The agent's page: nothing here touches its block, and the engine
     * keeps its frame (the VMM may read it still), unless the VMM is gone,
     * and with it any private copy: then the memfd, all that is left, gets
     * what the engine knows. */
    if (!r->vmm_gone)
      return DMEM_EIO;
    rc = dmem__mem_pwrite(r, gfn, content);
    if (rc == 0)
      unmapped(r, gfn);
    return rc;
  }
  if (rc || (rc = remapped(r, gfn)) != 0)
    return rc;
  /* As any resident page: armed for tracking unless written now. The page
   * is installed whether or not that works (failing here would have the
   * engine install it again later, over what the guest writes meanwhile):
   * unarmed, it counts as written, and the next reading of the bits arms
   * it. */
  if (!write && dmem__mem_wp(r, gfn, 1, 1, 0) == 0)
    *p |= PG_ARMED;
  else if (!write)
    *p |= PG_REF | PG_MOD;
  (void)dmem__mem_wake(r, gfn);
  return 0;
}

int dmem__mem_zap(dmem_kvm_region *r, uint64_t first, uint64_t n)
{
  uint64_t end = first + n, g = first;
  while (g < end) {
    /* Mapped pages stay, and so do young ones (writable meanwhile). */
    while (g < end && ((r->pages[g] & PG_MAPPED) || r->young[g]))
      g++;
    uint64_t run = g;
    while (g < end && !(r->pages[g] & PG_MAPPED) && !r->young[g])
      g++;
    if (g > run && madvise(r->base + run * PAGE, (g - run) * PAGE, MADV_DONTNEED) != 0)
      return dmem__mem_fail(r, DMEM_ESYS, "MADV_DONTNEED of %llu pages at gfn %llu: %s",
                            (unsigned long long)(g - run), (unsigned long long)run,
                            strerror(errno));
  }
  return 0;
}
