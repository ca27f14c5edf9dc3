/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/diffmem.h
 * @brief libdiffmem: saves host memory for virtual machines.
 *
 * libdiffmem finds the memory that virtual machines hold in common and keeps
 * one copy of it. It follows the Difference Engine (Gupta et al., OSDI
 * 2008): identical pages are shared copy-on-write, similar pages are kept
 * as a patch against a reference page, pages left untouched for a while are
 * compressed, and the coldest go to a swap file. Pages that a VM has just
 * read from disk can be indexed at once (XLH), and savings are accounted
 * per VM (Satori).
 *
 * Include this header for everything; the parts are:
 *  - diffmem/common.h  errors, allocator hook, version
 *  - diffmem/version.h compile-time version macros
 *  - diffmem/adapter.h what an adapter implements
 *  - diffmem/policy.h  clock states and custom policies
 *  - diffmem/codec.h   page compressors, usable on their own
 *  - diffmem/delta.h   the delta encoder (a page as a patch)
 *  - diffmem/index.h   the keyed page hash and identical-page index
 *  - diffmem/simdet.h  the similarity detectors
 *
 * Build against it with `pkg-config --cflags --libs libdiffmem`.
 *
 * How it runs. Make an engine, attach each VM with its adapter, then call
 * dmem_engine_scan() now and then (or start the engine's own thread with
 * dmem_engine_start()). Each scan visits a slice of every VM's pages, reads
 * their referenced/modified bits, moves them through the clock states
 * C1..C4 (policy.h) and reclaims what the policy allows: zero and identical
 * pages are shared, similar pages patched against a reference frame, cold
 * pages compressed, and under memory pressure the coldest swapped out.
 * When the guest touches a reclaimed page, the adapter calls
 * dmem_vm_fault(), which rebuilds the page and installs it.
 *
 * Where every reclaimed page lives: exactly one of a shared frame (zero
 * pages need none), a patch against a frame, a compressed blob, or a swap
 * slot. Frames are the engine's own immutable copies, refcounted by the
 * pages that share them and the patches that reference them; a live guest
 * page is never a reference. The store keeps a checksum of every page it
 * holds: a page whose storage is corrupt is reported (DMEM_ECORRUPT), never
 * returned as data.
 *
 * Threads. An engine has one lock. Every call on an engine or its VMs may
 * be made from any thread and takes that lock (faults on one thread while a
 * scan runs on another is the normal case); each call holds it only for the
 * page it works on, so a fault waits at most for one page's reclaim. The
 * exceptions: dmem_engine_destroy() and dmem_vm_detach() must not race with
 * other calls on the same engine or VM, and adapter operations run with the
 * lock held (see adapter.h).
 *
 * Lifetimes. A dmem_vm is freed by a dmem_vm_detach() that returns 0 (one
 * that fails leaves it attached and usable), and every VM of an engine by
 * dmem_engine_destroy(), which frees the engine too; a handle is dead from
 * then on, and any call with it (a second detach, a fault after detach,
 * statistics or a second destroy after destroy) reads freed memory: the
 * library cannot tell a dead handle from a live one. What it can tell, it
 * handles: NULL for a handle is DMEM_EINVAL; in the KVM adapter, a region
 * that is not attached detaches with 0 and nothing done, and its fault
 * thread stops before its VM goes, so no fault reaches a dead VM.
 */
#ifndef DIFFMEM_DIFFMEM_H
#define DIFFMEM_DIFFMEM_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/adapter.h>
#include <diffmem/codec.h>
#include <diffmem/common.h>
#include <diffmem/delta.h>
#include <diffmem/index.h>
#include <diffmem/policy.h>
#include <diffmem/simdet.h>
#include <diffmem/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/** An engine: the store, the indexes, the clock and the VMs it serves. */
typedef struct dmem_engine dmem_engine;
/** One attached VM. */
typedef struct dmem_vm dmem_vm;

/** Options of dmem_engine_create(). Start from DMEM_ENGINE_OPTIONS_INIT. */
typedef struct dmem_engine_options {
  unsigned version;                /**< DMEM_ENGINE_OPTIONS_VERSION */
  const dmem_allocator *allocator; /**< NULL: the C library's */
  /** Key of the page hash and the detectors; 0: random (getrandom). */
  uint64_t seed;
  /** NULL: dmem_policy_paper(). The struct must outlive the engine. */
  const dmem_policy *policy;
  /** Idle scans after which an unreferenced page is C4 (paper: "an
   *  extended period"). At least 2. */
  unsigned c4_passes;
  /** Pages of each VM a scan visits per slice (fairness: every VM gets a
   *  slice in turn). At least 1. */
  unsigned slice_pages;
  /** Compression codec; DMEM_CODEC_BEST keeps the smaller of the codecs
   *  in best_mask. */
  dmem_codec_id codec;
  /** For DMEM_CODEC_BEST: (1u << id) bits; 0 = dmem_codec_default_mask()
   *  (zstd where built with libzstd, else the paper's pair, WKdm and
   *  LZO). */
  unsigned codec_best_mask;
  /** Similarity detector (codec.h); kind 0 disables patching. */
  dmem_simdet_kind simdet_kind;
  unsigned simdet_k, simdet_s, simdet_candidates;
  /** Map shared pages copy-on-write when the adapter offers share() and
   *  the page is C2 (read-hot). 0: always evict shared pages. */
  int map_shared;
  /** Directory for the swap file; NULL: no swap tier. The engine makes an
   *  unnamed file there (O_TMPFILE, mode 0600; where the filesystem lacks
   *  O_TMPFILE, a new file made with O_EXCL and unlinked at once), so guest
   *  pages never have a name on disk, nothing is left behind after a crash,
   *  and no existing file, symlink or device is ever opened, truncated or
   *  removed. The directory must exist and be writable; a name that is not
   *  a directory is refused (DMEM_EINVAL). */
  const char *swap_dir;
  /** Largest swap file, in bytes (0: 1 GiB). */
  uint64_t swap_max_bytes;
  /** Memory pressure: when frames and blobs take more than this many
   *  bytes, C4 pages become swap victims. 0: never under pressure. */
  uint64_t store_limit_bytes;
  /** Secure mode (version 3): within a sharing domain, a guest cannot tell
   *  by timing whether another VM of the domain holds a page it holds, or
   *  one like it (README, "Security"). 1 turns on, for every VM:
   *   - only idle pages (C3 and colder) are candidates; hotter pages are
   *     left alone whatever the policy allows;
   *   - every candidate is treated alike: an all-zero page is evicted as
   *     ZERO (its own content says so), and any other becomes a frame,
   *     the frame of an identical page when the domain has one, a new
   *     frame of its own when not; either way it is evicted and rebuilt
   *     by the same copy and checksum, and its frame, once unused, is
   *     freed by a later scan, never in the fault that left it;
   *   - no patching (whether a similar page exists is what a patch
   *     reveals) and no copy-on-write mapping (map_shared is ignored):
   *     no frame is ever mapped into a guest;
   *   - I/O hints mark the page clean and read-hot but merge nothing
   *     ahead of the scan.
   *  It saves only what sharing identical idle pages saves (the demo's
   *  figures are in the README). 0 (the default): the paper's engine. */
  int secure;
} dmem_engine_options;

#define DMEM_ENGINE_OPTIONS_VERSION 3
#define DMEM_ENGINE_OPTIONS_INIT                                                                   \
  {                                                                                                \
    DMEM_ENGINE_OPTIONS_VERSION, NULL, 0, NULL, 4, 256, DMEM_CODEC_BEST, 0, DMEM_SIMDET_HASH, 2,   \
        1, 1, 1, NULL, 0, 0, 0                                                                     \
  }

/**
 * Makes an engine with no VMs.
 * @retval 0 success.
 * @retval DMEM_EINVAL, DMEM_EVERSION bad options (also
 *         a swap_dir that does not exist or is not a directory).
 * @retval DMEM_ENOMEM.
 * @retval DMEM_EIO the swap file could not be made in
 *         swap_dir (not writable, a full or read-only filesystem).
 * @retval DMEM_ESYS getrandom failed, or memfd_create for the patches and
 *         compressed pages (where the system offers no memfd at all,
 *         ENOSYS or EPERM, they go to anonymous memory instead).
 */
DMEM_API int dmem_engine_create(dmem_engine **out, const dmem_engine_options *opts);

/**
 * Stops the engine's thread, detaches every VM (restoring their pages) and
 * frees everything, the swap file's blocks included (it has no name to
 * remove). NULL does nothing.
 */
DMEM_API void dmem_engine_destroy(dmem_engine *engine);

/**
 * The memfd that holds the frames (the one copy of each shared content) of
 * @p vm's sharing domain: frame @c id of a page of this VM (share()'s
 * @c frame_id) is at offset id * DMEM_PAGE_SIZE. Each domain has a memfd
 * of its own, which holds no frame of another domain, so a read-only
 * descriptor of it may be handed to the VM's own VMM process (diffmemd
 * does, so that the VMM maps shared pages copy-on-write). An adapter maps
 * it MAP_PRIVATE over guest pages in share(); it must never write it. The
 * engine does not change a frame's bytes while a page is shared onto it,
 * and owns the descriptor: it stays open while the domain has a VM. Its
 * blocks are part of the engine's memory (dmem_engine_memfd_bytes()).
 * @return the fd, or -1 (NULL, or frames in anonymous memory: a system
 *         without memfd_create).
 */
DMEM_API int dmem_vm_frames_fd(const dmem_vm *vm);

/**
 * The memory the engine keeps in memfds (the frames of every sharing
 * domain, patches and compressed pages), by the kernel's accounting
 * (allocated blocks): count it beside the process's anonymous memory.
 * @retval 0 with *bytes set.
 * @retval DMEM_EINVAL NULL.
 * @retval DMEM_ESYS.
 */
DMEM_API int dmem_engine_memfd_bytes(dmem_engine *engine, uint64_t *bytes);

/** The detail of the engine's last error, or "" (valid until the next call
 *  on this engine). */
DMEM_API const char *dmem_engine_errmsg(const dmem_engine *engine);

/** Options of dmem_vm_attach(). Start from DMEM_VM_OPTIONS_INIT. */
typedef struct dmem_vm_options {
  unsigned version;            /**< DMEM_VM_OPTIONS_VERSION */
  const dmem_adapter_ops *ops; /**< required; must outlive the VM */
  void *ud;                    /**< passed to every operation */
  uint64_t npages;             /**< guest pages, gfn 0 .. npages-1 */
  const char *name;            /**< for messages; copied */
  /** Sharing domain. VMs attached with the same non-zero value share pages
   *  with each other, and with no VM outside it: frames, index entries,
   *  similarity candidates and patch references never cross domains, each
   *  domain's index and detector have keys of their own, and the VM's
   *  statistics (dmem_vm_stats()) depend on no page of another domain.
   *  DMEM_DOMAIN_OWN (0, the default): a domain of the VM's own, so it
   *  shares only within itself. Sharing is a timing side channel between
   *  the VMs of a domain unless the engine runs in secure mode
   *  (dmem_engine_options.secure): the host puts the VMs of one tenant in
   *  one domain, and never lets a guest choose. */
  uint32_t sharing_domain;
  /** Version 3: a journal kept from the first instant, as
   *  dmem_vm_set_journal() would (NULL: none). */
  void *journal;
  size_t journal_size;
} dmem_vm_options;

/** dmem_vm_options.sharing_domain: the VM shares with no other VM. */
#define DMEM_DOMAIN_OWN 0u

#define DMEM_VM_OPTIONS_VERSION 3
#define DMEM_VM_OPTIONS_INIT                                                                       \
  {                                                                                                \
    DMEM_VM_OPTIONS_VERSION, NULL, NULL, 0, NULL, DMEM_DOMAIN_OWN, NULL, 0                         \
  }

/**
 * Attaches a VM. Its pages start resident, in state C1. Options of version
 * 2 (no journal) are still taken.
 * @retval 0 success.
 * @retval DMEM_EINVAL missing ops or zero pages, or a
 *         journal too small or misaligned.
 * @retval DMEM_ERANGE the engine's page id space (2^31 pages) is full.
 * @retval DMEM_ENOMEM.
 * @retval DMEM_ESYS the memfd of a new sharing domain's frames could not
 *         be made (errmsg says why; where the system offers no memfd at
 *         all, ENOSYS or EPERM, frames go to anonymous memory instead).
 */
DMEM_API int dmem_vm_attach(dmem_vm **out, dmem_engine *engine, const dmem_vm_options *opts);

/**
 * Installs every page of the VM that is not resident private memory (so
 * the guest keeps all its content), then forgets the VM.
 * @retval 0 success. @return otherwise the first error of an install or
 *         rebuild; the VM stays attached, with the pages that could not be
 *         restored kept where they were, and the call may be retried.
 */
DMEM_API int dmem_vm_detach(dmem_vm *vm);

/** The VM's id, unique within its engine; UINT32_MAX for NULL. */
DMEM_API uint32_t dmem_vm_id(const dmem_vm *vm);

/**
 * Scans: visits up to @p budget pages, a slice of each VM in turn, and
 * reclaims what the policy allows.
 * @param visited receives the pages visited (may be NULL).
 * @param engine the engine.
 * @param budget the most pages to visit.
 * @retval 0 success (adapter errors on single pages are counted in the
 *         statistics, not returned).
 */
DMEM_API int dmem_engine_scan(size_t *visited, dmem_engine *engine, size_t budget);

/**
 * Starts a background thread that scans @p pages_per_tick pages every
 * @p tick_ms milliseconds.
 * @retval 0 success.
 * @retval DMEM_EBUSY already running.
 * @retval DMEM_ESYS the thread could not be made.
 */
DMEM_API int dmem_engine_start(dmem_engine *engine, unsigned tick_ms, size_t pages_per_tick);

/** Stops the background thread and waits for it. Does nothing if none. */
DMEM_API void dmem_engine_stop(dmem_engine *engine);

/**
 * The adapter's entry for a touch of a non-resident page: rebuilds the
 * page and installs it through the adapter; the page becomes resident
 * private memory in state C1. A fault on a resident page does nothing.
 * @retval 0 the page is resident.
 * @retval DMEM_ECORRUPT its storage failed its checksum: the page is not
 *         installed and stays where it was.
 * @retval DMEM_EIO the swap file could not be read.
 * @retval DMEM_ERANGE gfn is out of range.
 * @return or the adapter's error from install.
 */
DMEM_API int dmem_vm_fault(dmem_vm *vm, uint64_t gfn);

/**
 * A guest's read of a non-resident page: as dmem_vm_fault(), except that
 * a page shared onto a frame is mapped copy-on-write over the guest page
 * (the adapter's share()) instead of copied, when the engine's map_shared
 * option is on. Guest reads then see the frame with no fault and no copy;
 * a write gives the guest a private copy, which the engine learns from the
 * modified bit. When the adapter cannot map the frame (share() returns
 * DMEM_ENOTSUP, or DMEM_ENOSPC for a budget of mappings spent), the page
 * is copied as by dmem_vm_fault(), and the fault still succeeds.
 * @return as dmem_vm_fault().
 */
DMEM_API int dmem_vm_fault_read(dmem_vm *vm, uint64_t gfn);

/**
 * I/O hint (XLH, Satori): pages @p gfn .. @p gfn + @p n - 1 were just filled
 * from disk by the VMM's device emulation. The engine indexes them now,
 * shares each one at once with an identical page it already knows, and
 * remembers the rest as candidates, instead of waiting for the scanner.
 * @retval 0 success.
 * @retval DMEM_ERANGE the range is out of the VM.
 */
DMEM_API int dmem_vm_io_hint(dmem_vm *vm, uint64_t gfn, size_t n);

/**
 * The VMM itself wrote pages @p gfn .. @p gfn + @p n - 1 (device emulation,
 * not the vCPUs): they count as modified (C1) on the next visit.
 * @retval 0 success.
 * @retval DMEM_ERANGE.
 */
DMEM_API int dmem_vm_dirty(dmem_vm *vm, uint64_t gfn, size_t n);

/**
 * Copies a guest page's content wherever it lives, without changing where
 * it lives (for verification, migration or a study).
 * @retval 0 success.
 * @retval DMEM_ECORRUPT, DMEM_EIO, DMEM_ERANGE as for
 *         dmem_vm_fault(); or the adapter's read error.
 */
DMEM_API int dmem_vm_read(void *buf, dmem_vm *vm, uint64_t gfn);

/**
 * Where a page lives and its clock state.
 * @retval 0 success.
 * @retval DMEM_ERANGE.
 */
DMEM_API int dmem_vm_page(dmem_page_kind *kind, dmem_page_state *state, dmem_vm *vm, uint64_t gfn);

/** Statistics of the engine or of one VM. All counts are pages unless
 *  named bytes. The caller sets @c version (DMEM_STATS_INIT does): a later
 *  version of the library appends fields, and fills only those of the
 *  version the caller names, so a program built against this header keeps
 *  working with it. */
typedef struct dmem_stats {
  unsigned version;     /**< set by the caller to DMEM_STATS_VERSION */
  uint64_t pages;       /**< guest pages tracked */
  uint64_t resident;    /**< private guest memory */
  uint64_t mapped;      /**< resident through a copy-on-write frame */
  uint64_t zero;        /**< evicted zero pages */
  uint64_t shared;      /**< evicted, rebuilt from a frame */
  uint64_t patched;     /**< evicted, a patch against a frame */
  uint64_t compressed;  /**< evicted, a compressed blob */
  uint64_t swapped;     /**< evicted, in the swap file */
  uint64_t state[5];    /**< pages per clock state; index 1..4 = C1..C4 */
  uint64_t frames;      /**< frames held (engine only; 0 for a VM) */
  uint64_t store_bytes; /**< memory of frames, patches and blobs (engine) */
  uint64_t swap_bytes;  /**< bytes in the swap file (engine) */
  /** Guest bytes minus the host memory that now holds them (private pages,
   *  frames, patches, blobs). For a VM: what its own pages saved, with the
   *  savings of each frame split evenly among the pages that share it. */
  int64_t bytes_saved;
  /** Satori's sharing entitlement: the VM's fair part of all sharing
   *  savings, in proportion to the pages it shares, plus what its own
   *  patched, compressed, zero and swapped pages saved. The engine's
   *  figure is the sum over VMs. */
  int64_t entitlement_bytes;
  uint64_t merges;  /**< pages shared, patched, compressed or swapped */
  uint64_t faults;  /**< faults served */
  uint64_t hints;   /**< pages indexed through I/O hints */
  uint64_t errors;  /**< adapter or store errors met */
  uint64_t scanned; /**< page visits by the scanner */
  /** The engine's own metadata: per-page records, indexes, detectors,
   *  frame and blob tables, in bytes (engine only). */
  uint64_t meta_bytes;
  /** Faults on pages shared onto a frame: reads (mapped copy-on-write or
   *  copied, dmem_vm_fault_read()) and the rest (copied). */
  uint64_t shared_read_faults, shared_write_faults;
  /** (Version 2.) Compressions and patches not tried again: one that saved
   *  too little on a page is not retried until the page is written, as
   *  the same content gives the same result. */
  uint64_t retries_skipped;
} dmem_stats;

/** The version of dmem_stats this header describes; the library also
 *  takes version 1 (up to shared_write_faults). */
#define DMEM_STATS_VERSION 2
/** A dmem_stats ready to be filled: `dmem_stats s = DMEM_STATS_INIT;`. */
#define DMEM_STATS_INIT                                                                            \
  {                                                                                                \
    DMEM_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, {0, 0, 0, 0, 0}, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  \
        0, 0, 0                                                                                    \
  }

/** Fills @p out with the engine's totals.
 *  @retval 0.
 *  @retval DMEM_EVERSION out->version is not DMEM_STATS_VERSION (nothing
 *          written).
 *  @retval DMEM_EINVAL out or engine is NULL. */
DMEM_API int dmem_engine_stats(dmem_stats *out, dmem_engine *engine);

/** Fills @p out with one VM's figures; errors as dmem_engine_stats(). */
DMEM_API int dmem_vm_stats(dmem_stats *out, dmem_vm *vm);

/**
 * @name Journals: every page survives the engine's process
 * A journal is a table in memory the caller gives, typically a MAP_SHARED
 * mapping of a memfd that another process holds too, which the engine
 * keeps current for one VM: for each page, whether it is in guest memory
 * and, if not, where its content lives in the engine's store. With the
 * store's descriptors (dmem_engine_store_fds()), that other process can
 * rebuild every evicted page with dmem_journal_page() should the engine's
 * process die at any instant: an entry says where the content is before
 * the page leaves guest memory, says "in guest memory" again only once it
 * is back, and the storage an entry names is freed only after the entry
 * moved on. Each entry is one aligned 64-bit store. diffmemd and its
 * clients use this (diffmem/daemon.h).
 * @{
 */

/** The journal layout this library writes and reads. */
#define DMEM_JOURNAL_VERSION 1

/** Bytes a journal of @p npages pages needs (a header, then 8 bytes a
 *  page). */
DMEM_API size_t dmem_journal_size(uint64_t npages);

/**
 * Starts keeping @p journal (@p size bytes, 8-byte aligned, at least
 * dmem_journal_size() of the VM's pages) for @p vm: writes its header and
 * every page's entry now, then each change as it happens, until the VM is
 * detached (when every entry says "in guest memory"). NULL stops. The
 * memory must stay valid while the engine keeps it.
 * @retval 0.
 * @retval DMEM_EINVAL too small or misaligned.
 */
DMEM_API int dmem_vm_set_journal(dmem_vm *vm, void *journal, size_t size);

/** The store's descriptors the VMs share: blobs (patches and compressed
 *  pages) and the swap file (-1 without one); each VM's frames are in the
 *  memfd of its sharing domain (dmem_vm_frames_fd()). The engine owns
 *  them; a process that rebuilds pages from a journal needs them open (dup
 *  or send them).
 *  @retval 0.
 *  @retval DMEM_ENOTSUP the store is not in
 *  memfds here. */
DMEM_API int dmem_engine_store_fds(const dmem_engine *engine, int *blobs_fd, int *swap_fd);

/** Where dmem_journal_page() reads one VM's content from. */
typedef struct dmem_journal_store {
  int frames_fd;         /**< the VM's dmem_vm_frames_fd() */
  int blobs_fd, swap_fd; /**< as dmem_engine_store_fds() gave them */
} dmem_journal_store;

/**
 * Rebuilds page @p gfn from a journal (read only with pread on the store's
 * descriptors; safe on a journal whose engine is gone).
 * @param codec decodes compressed pages (dmem_codec_create()).
 * @param out receives the page (DMEM_PAGE_SIZE bytes).
 * @param journal the journal (dmem_vm_set_journal()), as another process maps it.
 * @param size its size in bytes.
 * @param gfn the page.
 * @param store the descriptors its pages live in.
 * @retval 1 the page was evicted: @p out holds its content, checked
 *         against its checksum.
 * @retval 0 the journal says the page is in guest memory (@p out untouched).
 * @retval DMEM_EVERSION another journal layout.
 * @retval DMEM_ERANGE gfn beyond the journal.
 * @retval DMEM_ECORRUPT a malformed entry, a short read or a checksum
 *         mismatch.
 * @retval DMEM_EINVAL.
 */
DMEM_API int dmem_journal_page(void *out, const void *journal, size_t size, uint64_t gfn,
                               const dmem_journal_store *store, dmem_codec *codec);
/** @} */

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_DIFFMEM_H */
