/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/kvm.h
 * @brief libdiffmem-kvm: the KVM and userfaultfd binding (Linux only).
 *
 * Link with `pkg-config --cflags --libs libdiffmem-kvm`.
 *
 * A VMM hands the engine its guest RAM as a *region*: a memfd (shared
 * memory) mapped MAP_SHARED into the VMM, the same mapping that backs a
 * KVM memory slot. The adapter registers the mapping with userfaultfd and
 * serves the guest's faults on a thread of its own:
 *
 *  - evict: the page's memfd block is freed (fallocate PUNCH_HOLE); the
 *    next touch, by a vCPU or by any thread of the VMM, is a MISSING fault
 *    that the adapter's thread serves: dmem_vm_fault() rebuilds the page
 *    and UFFDIO_COPY puts it back;
 *  - referenced bits: reading a range's bits zaps its page-table entries
 *    (MADV_DONTNEED keeps the memfd pages); the next touch is a MINOR
 *    fault, recorded and resolved with UFFDIO_CONTINUE;
 *  - modified bits: reading a range's bits also write-protects it
 *    (UFFDIO_WRITEPROTECT); the next write is a WP fault, recorded, and the
 *    protection lifted;
 *  - protect: the engine write-protects a page while it reads and reclaims
 *    it; a write to it waits in the kernel until the engine is done;
 *  - share: copy-on-write, on a read. The engine shares identical pages
 *    by evicting them; a guest's *read* of such a page maps the engine's
 *    frame over it (MAP_PRIVATE | MAP_FIXED of the frames memfd,
 *    dmem_vm_frames_fd()) when the engine's map_shared option is on,
 *    so the page's later reads need no fault and no copy; a *write* fault
 *    gets a private copy as before. So the mapped pages are exactly the
 *    read-hot shared ones. The mapping is registered again in WP mode
 *    only (a MAP_FIXED mapping replaces the registration): a write to a
 *    mapped page stops as a WP fault, is recorded as modified, and then
 *    copies the frame privately; the engine, seeing the modified bit, puts
 *    the page back into the memfd (install()), writing the content before
 *    it maps the memfd again. A mapped page is never zapped or punched,
 *    and reports referenced at every bits() (its reads raise no fault), so
 *    it stays mapped until written. Each run of mapped pages is a VMA
 *    (runs that map consecutive frames merge), counted against
 *    vma_budget; past it, reads copy (cow_fallbacks). Mapping needs the
 *    region's own userfaultfd with both MINOR and WP tracking; otherwise,
 *    and with map_shared off, shared pages are rebuilt from their frame on
 *    every first touch. A first touch of an evicted shared page is a
 *    MISSING fault served by the engine, slower than the MINOR fault of a
 *    page nobody else holds: a guest that times its own accesses can tell
 *    that another guest on the engine holds the same content, so share
 *    only among VMs of one tenant.
 *
 * With KVM, dmem_kvm_region_set_slot() makes the region a memory slot;
 * KVM follows every change through its MMU notifiers, so a vCPU's touch of
 * an evicted page is served like any other. A vCPU's access that faults
 * this way is slower (a few tens of microseconds: see dmem_kvm_stats).
 *
 * For a VMM that allocates guest RAM in its own way, two paths:
 * dmem_kvm_region_create() with fd = -1 makes the memfd and the mapping,
 * which the VMM then uses as guest RAM (dmem_kvm_region_addr()); or the
 * VMM that already keeps RAM in a memfd passes its fd and its existing
 * MAP_SHARED mapping (options fd, fd_offset, addr). Anonymous memory,
 * hugetlbfs and MAP_PRIVATE mappings are not supported: userfaultfd's
 * MINOR and WP modes and hole punching need shared memory (shmem).
 *
 * Two layers. Everything above except memory slots is plain Linux memory
 * (memfd and userfaultfd) and works without KVM; dmem_kvm_region_set_slot()
 * is the KVM layer on top. The userfaultfd may also be the caller's
 * (options uffd, uffd_features, uffd_addr): one it opened and registered
 * itself, or one it received over a Unix socket (SCM_RIGHTS) from the
 * process whose mapping it registered, together with the memfd. Its
 * ioctls act on the address space that registered the range, so this
 * process serves another process's faults, installs its pages and
 * write-protects them, while it reads and punches pages through its own
 * mapping of the memfd. Referenced tracking (MINOR faults) needs the
 * page-table entries of the registered mapping dropped, which only that
 * process can do: with a range in another process, tracking is WP only,
 * and every resident page reports referenced.
 *
 * Device emulation. The VMM's own writes to guest RAM go through the same
 * mapping, so they fault like a vCPU's and the WP tracking sees them; still
 * tell the engine: call dmem_vm_dirty() for pages a device wrote, and
 * dmem_vm_io_hint() for pages just filled from a disk image (XLH: the
 * engine indexes and shares them at once instead of waiting for its
 * scanner). Call both after the write, from any thread; neither may be
 * called from the fault thread.
 *
 * Limits to know: other processes that map the same memfd (a vhost-user
 * backend) do not raise faults on this region's userfaultfd, so they read
 * evicted pages as zeros: keep such regions out of the engine, or give the
 * backend its own registration. The VMM must not read or write the memfd
 * through another, unregistered mapping or with pread/pwrite while the
 * region is attached, for the same reason. Transparent huge pages should
 * be off for the mapping (the adapter sets MADV_NOHUGEPAGE on mappings it
 * makes).
 *
 * Threads. dmem_kvm_probe() and the accessors (_addr, _size, _npages,
 * _fd, _vm, _track, _stats, _memfd_bytes, _errmsg) may be called from any
 * thread at any time while the region exists. _create, _attach, _detach,
 * _set_slot and _destroy must not run concurrently with each other on the
 * same region. The guest (vCPUs and VMM threads touching the mapping) runs
 * freely throughout: faults block only until the adapter's thread serves
 * them, which may take the engine's lock. So never touch a region's memory
 * from code that runs under that lock (policy and allocator hooks) or on
 * the fault thread (the fault_error callback). Detach (or destroy) every
 * region before destroying its engine.
 */
#ifndef DIFFMEM_KVM_H
#define DIFFMEM_KVM_H

#include <diffmem/diffmem.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What this host offers the KVM adapter; filled by dmem_kvm_probe(). */
typedef struct dmem_kvm_caps {
  unsigned version; /**< set by the caller to DMEM_KVM_CAPS_VERSION */
  /** KVM_GET_API_VERSION of /dev/kvm, or -1 if it could not be opened. */
  int kvm_api_version;
  /** The kernel reports KVM_CAP_USER_MEMORY (guest RAM in user memory). */
  int user_memory;
  /** The kernel reports KVM_CAP_MEMORY_FAULT_INFO. */
  int memory_fault_info;
  /** The kernel reports KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (KVM_CLEAR_DIRTY_LOG). */
  int clear_dirty_log;
  /** userfaultfd(2) could be opened. */
  int uffd;
  /** The UFFD_FEATURE_* bits the kernel reported through UFFDIO_API. */
  uint64_t uffd_features;
  /** Why the adapter cannot run here; empty when dmem_kvm_probe() returned 0. */
  char reason[256];
} dmem_kvm_caps;

/** The version of dmem_kvm_caps this header describes: a later library
 *  appends fields and fills only those of the caller's version. */
#define DMEM_KVM_CAPS_VERSION 1
/** A dmem_kvm_caps ready to be filled. */
#define DMEM_KVM_CAPS_INIT                                                                         \
  {                                                                                                \
    DMEM_KVM_CAPS_VERSION, 0, 0, 0, 0, 0, 0, ""                                                    \
  }

/**
 * Probes /dev/kvm and userfaultfd for what the adapter needs: a KVM with
 * user memory, and userfaultfd with MISSING faults on shared memory.
 *
 * @param out its version set to DMEM_KVM_CAPS_VERSION (DMEM_KVM_CAPS_INIT);
 *        filled in every case, also on failure, but for DMEM_EVERSION.
 * @retval 0 the adapter can run here.
 * @retval DMEM_ENOTSUP it cannot; out->reason says why (for example
 *         "cannot open /dev/kvm: No such file or directory").
 * @retval DMEM_EVERSION out->version is not DMEM_KVM_CAPS_VERSION.
 * @retval DMEM_EINVAL out is NULL.
 */
DMEM_API int dmem_kvm_probe(dmem_kvm_caps *out);

/* ====================================================================== */

/** Guest RAM in a memfd, served through userfaultfd. */
typedef struct dmem_kvm_region dmem_kvm_region;

/** Referenced bits from MINOR faults (UFFD_FEATURE_MINOR_SHMEM). */
#define DMEM_KVM_TRACK_MINOR 0x1u
/** Modified bits and protect() from WP faults (UFFD_FEATURE_WP_HUGETLBFS_SHMEM). */
#define DMEM_KVM_TRACK_WP 0x2u

/** Options of dmem_kvm_region_create(). Start from DMEM_KVM_REGION_OPTIONS_INIT. */
typedef struct dmem_kvm_region_options {
  unsigned version;                /**< DMEM_KVM_REGION_OPTIONS_VERSION */
  const dmem_allocator *allocator; /**< NULL: the C library's */
  /** Bytes of guest RAM: a multiple of DMEM_PAGE_SIZE, not 0. */
  uint64_t size;
  /** -1: make a memfd of @c size bytes (closed on destroy). Otherwise the
   *  caller's memfd, at least @c fd_offset + @c size bytes long, which the
   *  region uses but never closes. */
  int fd;
  /** Where guest page 0 starts in @c fd; a multiple of DMEM_PAGE_SIZE. */
  uint64_t fd_offset;
  /** NULL: map the memfd (unmapped on destroy). Otherwise the caller's
   *  MAP_SHARED, read-write mapping of @c fd at @c fd_offset, @c size
   *  bytes, page aligned, not registered with another userfaultfd; the
   *  region never unmaps it. */
  void *addr;
  /** Name of a memfd the region makes (/proc/PID/fd shows it); NULL: "dmem-guest". */
  const char *name;
  /** DMEM_KVM_TRACK_* bits wanted; 0: all the kernel offers. Without MINOR,
   *  every resident page reports referenced; without WP, every referenced
   *  page reports modified and the engine gets no protect() (so the guest
   *  must be paused while the engine scans: adapter.h). */
  unsigned track;
  /** -1: attach opens a userfaultfd and registers the region's mapping.
   *  Otherwise the caller's userfaultfd: UFFDIO_API done (with at least
   *  UFFD_FEATURE_MISSING_SHMEM, and MINOR_SHMEM and WP_HUGETLBFS_SHMEM for
   *  tracking), the region's @c size bytes registered at @c uffd_addr with
   *  MISSING mode (and MINOR and WP modes as @c track asks), in this
   *  process or in the one it came from. The region reads its faults while
   *  attached, unregisters the range on detach, and never closes it. */
  int uffd;
  /** With @c uffd: the UFFD_FEATURE_* bits its UFFDIO_API accepted (the
   *  kernel cannot be asked again). 0 without @c uffd. */
  uint64_t uffd_features;
  /** With @c uffd: where the registered range starts in the address space
   *  that registered it; 0 means the region's own mapping (@c addr, or the
   *  one it makes). Page-aligned. 0 without @c uffd. */
  uint64_t uffd_addr;
  /** Most VMAs that copy-on-write mapping of shared pages may add to the
   *  process (each run of mapped pages is one, and splits the guest's
   *  mapping); 0: an eighth of what vm.max_map_count leaves the process at
   *  attach. When it is spent, shared pages are copied on a read instead
   *  (dmem_kvm_stats.cow_fallbacks). */
  uint64_t vma_budget;
  /** The VM's sharing domain when attached (dmem_vm_options): VMs of one
   *  tenant share a non-zero value; DMEM_DOMAIN_OWN (0) shares with no
   *  other VM. */
  uint32_t sharing_domain;
  /** Called on the fault thread when a fault cannot be served (the
   *  engine's error: DMEM_ECORRUPT, DMEM_EIO, ...). The faulting thread is
   *  woken and faults again, so the call repeats until the VMM stops the
   *  guest. NULL: the error is only counted. Must not call into the region
   *  or the engine. */
  void (*fault_error)(dmem_kvm_region *region, uint64_t gfn, int err, void *ud);
  void *ud; /**< passed to fault_error */
  /** Version 3: the VM's journal (dmem_vm_options), kept from the instant
   *  of attach; NULL: none. */
  void *journal;
  size_t journal_size;
  /** Version 3: without MINOR tracking (a userfaultfd from another
   *  process) the adapter cannot see reads. 0: every resident page reports
   *  referenced, so pages stay hot and only sharing applies to them. 1: a
   *  page reports referenced only when it was written or faulted back
   *  since the last look, so pages that are only read go idle and may be
   *  patched or compressed (their next read faults them back), as KSM
   *  ignores reads too. */
  int idle_reads;
  /** Version 4: with a userfaultfd from another process, a connected
   *  SOCK_SEQPACKET socket to an agent in that process (the client of
   *  diffmem/daemon.h runs one), which maps pages there when asked
   *  (DMEM_PROTO_MAP). With it, shared pages are mapped copy-on-write in
   *  that process as in this one (below), within @c vma_budget; each
   *  mapping is one round trip to the agent, made with the engine's lock
   *  held, for at most @c agent_timeout_ms. The region does not close it.
   *  -1: none. */
  int agent_fd;
  /** Version 5: how long a request to the agent that needs its answer
   *  (putting a mapped page back into the memfd) may hold the engine, in
   *  milliseconds; 0 means 1000. An agent that does not answer in time
   *  costs its own guest only: the page stays mapped (its frame kept), no
   *  shared page is mapped in that VMM, and nothing more is asked of the
   *  agent until its late answer arrives, which then completes the
   *  request. A detach waits for each answer 30 s at least: the agent of a
   *  detaching VMM is there, and a mapped page the engine could not take
   *  back would make the detach fail. An agent that hangs up is never
   *  asked again. At most 600000. */
  unsigned agent_timeout_ms;
} dmem_kvm_region_options;

#define DMEM_KVM_REGION_OPTIONS_VERSION 5
#define DMEM_KVM_REGION_OPTIONS_INIT                                                               \
  {                                                                                                \
    DMEM_KVM_REGION_OPTIONS_VERSION, NULL, 0, -1, 0, NULL, NULL, 0, -1, 0, 0, 0, DMEM_DOMAIN_OWN,  \
        NULL, NULL, NULL, 0, 0, -1, 0                                                              \
  }

/**
 * Makes a region: a memfd and a mapping of it, either made here or given.
 * A fresh memfd reads as zeros and holds no memory until written.
 *
 * @param out receives the region.
 * @param errbuf on failure, why, in words (for example "fd 5 holds 8192
 *        bytes, short of 16384"); may be NULL.
 * @param errlen its size (DMEM_ERRBUF_SIZE is always enough).
 * @param opts what to make or adopt (DMEM_KVM_REGION_OPTIONS_INIT).
 * @retval 0 success.
 * @retval DMEM_EINVAL bad options: size 0 or not page-aligned, an fd that
 *         is not shared memory or too short, an unaligned offset or
 *         address, a uffd that is not a userfaultfd.
 * @retval DMEM_EVERSION unknown options version.
 * @retval DMEM_ENOMEM.
 * @retval DMEM_ESYS memfd_create, ftruncate or mmap failed.
 */
DMEM_API int dmem_kvm_region_create(dmem_kvm_region **out, const dmem_kvm_region_options *opts,
                                    char *errbuf, size_t errlen);

/**
 * Detaches the region if attached (see dmem_kvm_region_detach(); if that
 * fails, the pages still held by the engine are lost and the VM must not
 * be used again: destroy its engine), then unmaps and closes what the
 * region made. NULL does nothing.
 */
DMEM_API void dmem_kvm_region_destroy(dmem_kvm_region *region);

/**
 * Attaches the region to an engine as a VM: registers the mapping with a
 * new userfaultfd (MISSING, and MINOR and WP modes as the kernel offers
 * and the options ask) or adopts the caller's, starts the thread that
 * serves its faults, then dmem_vm_attach(). The guest may already run.
 *
 * @param out receives the VM (owned by the region: do not detach it with
 *        dmem_vm_detach()).
 * @param name for the engine's messages; may be NULL.
 * @param engine the engine.
 * @param region the region (detached).
 * @retval 0 success.
 * @retval DMEM_EBUSY the region is attached already.
 * @retval DMEM_ENOTSUP userfaultfd is missing or lacks MISSING faults on
 *         shared memory (dmem_kvm_probe() says why).
 * @retval DMEM_ESYS registration or the thread failed (errmsg says which).
 * @return or dmem_vm_attach()'s error.
 */
DMEM_API int dmem_kvm_region_attach(dmem_vm **out, dmem_engine *engine, dmem_kvm_region *region,
                                    const char *name);

/**
 * Puts every page the engine holds back into the memfd (dmem_vm_detach()),
 * then unregisters the mapping and stops the fault thread. The guest may
 * keep running.
 * @retval 0 success (also when the region was not attached).
 * @return dmem_vm_detach()'s error: the region stays attached, and the call
 *         may be retried.
 */
DMEM_API int dmem_kvm_region_detach(dmem_kvm_region *region);

/**
 * Makes the region KVM memory slot @p slot at guest physical address @p gpa
 * of the VM @p vm_fd (KVM_SET_USER_MEMORY_REGION), with dirty logging when
 * @p log_dirty. With dirty logging on, the modified bits also take KVM's
 * dirty log (KVM_GET_DIRTY_LOG), which catches a vCPU write through a
 * mapping that was already writable. @p vm_fd -1 forgets the slot (it does
 * not delete it from KVM: the VMM does that). The region does not own
 * @p vm_fd, which must stay open while it is set.
 *
 * A trap with dirty logging: KVM_GET_DIRTY_LOG takes KVM's slot lock, and
 * the engine calls it (through the bits operation) with its own lock held.
 * A memory-slot change on the same KVM VM (this call, or any
 * KVM_SET_USER_MEMORY_REGION) holds that slot lock while it waits for
 * every vCPU inside a fault, and the fault thread serving a vCPU's fault
 * on an evicted page waits for the engine's lock: a cycle. Change memory
 * slots of a VM with a dirty-logged region only while no scan runs
 * (dmem_engine_stop(), or between your own dmem_engine_scan() calls).
 * Without dirty logging the adapter makes no KVM call while the engine
 * holds its lock.
 * @retval 0 success.
 * @retval DMEM_EINVAL gpa not page-aligned.
 * @retval DMEM_ESYS the ioctl failed (errmsg says why).
 */
DMEM_API int dmem_kvm_region_set_slot(dmem_kvm_region *region, int vm_fd, uint32_t slot,
                                      uint64_t gpa, int log_dirty);

/** Start of guest page 0 in this process. */
DMEM_API void *dmem_kvm_region_addr(const dmem_kvm_region *region);
/** Bytes of guest RAM. */
DMEM_API uint64_t dmem_kvm_region_size(const dmem_kvm_region *region);
/** Guest pages (size / DMEM_PAGE_SIZE). */
DMEM_API uint64_t dmem_kvm_region_npages(const dmem_kvm_region *region);
/** The memfd (owned by the region unless the caller gave it). */
DMEM_API int dmem_kvm_region_fd(const dmem_kvm_region *region);
/** The attached VM, or NULL. */
DMEM_API dmem_vm *dmem_kvm_region_vm(const dmem_kvm_region *region);
/** DMEM_KVM_TRACK_* bits in use while attached (0 when not). */
DMEM_API unsigned dmem_kvm_region_track(const dmem_kvm_region *region);
/** Detail of the region's last error, or "". */
DMEM_API const char *dmem_kvm_region_errmsg(const dmem_kvm_region *region);

/** dmem_kvm_region_page(): the content is with the engine (a hole). */
#define DMEM_KVM_PAGE_EVICTED 0x1u
/** dmem_kvm_region_page(): the page maps a frame copy-on-write. */
#define DMEM_KVM_PAGE_MAPPED 0x2u

/**
 * The region's view of one page, for diagnostics and tests: a mask of
 * DMEM_KVM_PAGE_* (0: the page is in the memfd, or was never written).
 * @retval 0 success.
 * @retval DMEM_EINVAL out or region is NULL.
 * @retval DMEM_ERANGE gfn is out of range.
 */
DMEM_API int dmem_kvm_region_page(unsigned *out, const dmem_kvm_region *region, uint64_t gfn);

/**
 * The kernel's own accounting of the region: bytes of memory the memfd
 * holds (fstat st_blocks * 512 over the whole file, so a caller's memfd
 * that is larger than the region counts whole).
 * @retval 0 success.
 * @retval DMEM_ESYS fstat failed.
 */
DMEM_API int dmem_kvm_region_memfd_bytes(uint64_t *out, const dmem_kvm_region *region);

/** Buckets of the fault latency histogram. */
#define DMEM_KVM_LAT_BUCKETS 96

/** Counters of a region since it was made; read with dmem_kvm_region_stats(). */
typedef struct dmem_kvm_stats {
  unsigned version;         /**< set by the caller to DMEM_KVM_STATS_VERSION */
  uint64_t faults_missing;  /**< MISSING faults read (evicted or never-written pages) */
  uint64_t faults_minor;    /**< MINOR faults read (referenced tracking) */
  uint64_t faults_wp;       /**< WP faults read (modified tracking, protection) */
  uint64_t faults_waited;   /**< write faults that waited for the engine's protection */
  uint64_t faults_failed;   /**< faults not served: the engine's error or a failed
                                 ioctl (the thread faults again) */
  uint64_t faults_spurious; /**< already served by the time they were read */
  uint64_t installs;        /**< pages put back with UFFDIO_COPY or _ZEROPAGE */
  uint64_t zero_fills;      /**< never-written pages filled with zeros on touch */
  uint64_t evictions;       /**< pages punched out of the memfd */
  uint64_t bits_calls;      /**< bit reads (each re-arms a range) */
  /** MISSING faults served through the engine, by service time: from the
   *  fault message's read to the page installed and the thread woken.
   *  Bucket b spans [dmem_kvm_lat_bucket_us(b), dmem_kvm_lat_bucket_us(b+1))
   *  microseconds. The time a faulting thread waits also includes the
   *  kernel's wake-ups of the fault thread and of itself. */
  uint64_t lat_hist[DMEM_KVM_LAT_BUCKETS];
  uint64_t lat_count;     /**< samples in lat_hist */
  uint64_t lat_sum_ns;    /**< their sum, for the mean */
  uint64_t lat_max_ns;    /**< the largest */
  uint64_t cow_mapped;    /**< pages mapping a frame copy-on-write now */
  uint64_t cow_maps;      /**< frames mapped on a read fault, in all */
  uint64_t cow_fallbacks; /**< read faults copied because the VMA budget was spent */
  uint64_t vmas_used;     /**< VMAs the mapped pages add now */
  uint64_t vma_budget;    /**< the most they may add (0: mapping is off) */
  /** Version 3: requests to the VMM's agent it did not answer within
   *  agent_timeout_ms (each left the page mapped, and the agent was asked
   *  nothing more until it answered). */
  uint64_t agent_timeouts;
  uint64_t agent_late; /**< Version 3: such answers that came later */
  /** Version 4: failures the region met, each described by
   *  dmem_kvm_region_errmsg() when it happened: those it returned (to the
   *  caller or the engine, which counts them too) and those it carried on
   *  from with every page safe (a page it installed but could not
   *  write-protect for tracking counts as written instead). */
  uint64_t errors;
} dmem_kvm_stats;

/** Versions 2 (the fields up to vma_budget) and 3 (up to agent_late) are
 *  still accepted. */
#define DMEM_KVM_STATS_VERSION 4

/**
 * Copies the region's counters.
 * @param out its version field must be DMEM_KVM_STATS_VERSION, 3 or 2
 *        (then only the fields of that version are written).
 * @param region the region.
 * @retval 0 success.
 * @retval DMEM_EVERSION, DMEM_EINVAL.
 */
DMEM_API int dmem_kvm_region_stats(dmem_kvm_stats *out, const dmem_kvm_region *region);

/** Lower bound of latency bucket @p b in microseconds (b in
 *  0..DMEM_KVM_LAT_BUCKETS; b = DMEM_KVM_LAT_BUCKETS gives the upper bound
 *  of the last bucket). Buckets are exact below 4 µs, then 4 per octave. */
DMEM_API uint64_t dmem_kvm_lat_bucket_us(unsigned b);

/**
 * A percentile of the histogram, in microseconds: the upper bound of the
 * bucket where the @p q quantile falls (so within 25% above the truth).
 * @param q in [0, 1], for example 0.5 or 0.99.
 * @param stats counters from dmem_kvm_region_stats().
 * @return 0 when there are no samples.
 */
DMEM_API double dmem_kvm_stats_percentile_us(const dmem_kvm_stats *stats, double q);

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_KVM_H */
