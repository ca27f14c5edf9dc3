/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The core's objects (engine, VM, sharing domain, page) and the calls its
 * files make of each other. The files, from the top: engine.c (objects,
 * API, faults, the scans it drives) -> scan.c (clock and reclaim) ->
 * page.c (a page's state and its content's home) -> journal.c and
 * store.c; stats.c and policy.c beside them. */
#ifndef DMEM_CORE_H
#define DMEM_CORE_H

#include <pthread.h>
#include <stdint.h>

#include <diffmem/diffmem.h>

#include "internal.h"
#include "store.h"

/* One guest page: 8 bytes. loc names the frame, blob or swap slot. */
typedef struct dmem__page {
  uint32_t loc;
  uint8_t kind;  /* dmem_page_kind */
  uint8_t state; /* dmem_page_state */
  uint8_t idle;  /* scans in a row that found it unreferenced (saturates) */
  uint8_t flags; /* PAGE_F_* */
} dmem__page;

#define PAGE_F_DIRTY 0x1u /* the VMM wrote it (dmem_vm_dirty) */
#define PAGE_F_REF 0x2u   /* referenced, seen outside a scan visit */
/* Its content, unchanged since, compressed to too much (NOCOMP), or made
 * a patch too long against every candidate tried (NOPATCH): not tried
 * again until the page is written. */
#define PAGE_F_NOCOMP 0x4u
#define PAGE_F_NOPATCH 0x8u
#define PAGE_F_TRIED (PAGE_F_NOCOMP | PAGE_F_NOPATCH)

/* A sharing domain: the VMs that may share pages, and the indexes that
 * find candidates among them. Frames belong to one domain (frame.dom is
 * its slot in engine.doms); nothing found through a domain's indexes is
 * of another domain. */
typedef struct dmem__domain {
  uint32_t id;   /* the callers' value; DMEM_DOMAIN_OWN: this VM's alone */
  uint32_t slot; /* in engine.doms */
  uint32_t nvms;
  uint64_t seed; /* key of its index and detectors */
  /* Stable indexes over frames, and unstable ones over live guest pages
   * (like KSM's unstable tree: entries may be stale and are always checked
   * against current content; both are rebuilt after every full pass). */
  dmem_index *frames_idx, *live_idx;
  dmem_simdet *frames_sim, *live_sim;
  /* Its frames' memfd (dmem_vm_frames_fd()), holding no other domain's
   * frame, or -1 (anonymous memory); and a slab of it that had room. */
  int frames_fd;
  uint32_t slab_hint;
} dmem__domain;

struct dmem_vm {
  dmem_engine *e;
  dmem__domain *dom;
  uint32_t id;
  uint32_t base; /* live-page ids are base + gfn */
  uint64_t npages;
  const dmem_adapter_ops *ops;
  void *ud;
  char name[32];
  dmem__page *pages;
  uint64_t cursor; /* next gfn the scanner visits */
  uint64_t kinds[7], states[5];
  uint64_t merges, faults, hints, errors, scanned;
  uint64_t retries_skipped; /* dmem_stats.retries_skipped */
  uint64_t shared_faults[2]; /* on SHARED pages: [0] writes, [1] reads */
  uint64_t *journal;         /* its entries (dmem_vm_set_journal), or NULL */
};

struct dmem_engine {
  dmem__alloc alloc;
  pthread_mutex_t lock;
  pthread_mutex_t scan_lock; /* one scan at a time; taken before lock */
  dmem_engine_options opts;
  dmem_policy policy; /* hooks resolved: never NULL */
  dmem_policy_env env;
  uint64_t seed;
  dmem_codec *codec;
  dmem__domain **doms; /* by slot; NULL where free */
  uint32_t ndoms, capdoms;
  uint64_t domain_serial; /* domains made, for their keys */
  dmem__store store;
  dmem_vm **vms;
  uint32_t nvms, capvms, next_vm_id, next_base;
  uint32_t rr;          /* VM whose slice comes next */
  uint64_t since_flush; /* visits since the unstable indexes were rebuilt */
  uint64_t merges, faults, hints, errors, scanned;
  uint64_t retries_skipped; /* dmem_stats.retries_skipped */
  uint64_t shared_faults[2]; /* as the VMs' */
  uint32_t *dead;            /* secure mode: unused frames a scan frees */
  size_t ndead, capdead;
  /* the background thread */
  pthread_t thread;
  pthread_cond_t cond;
  int running, stopping;
  int scanning;      /* scans in progress (they drop the lock between pages) */
  int fault_waiters; /* faults waiting for the lock (atomic): a scan lets them in */
  unsigned tick_ms;
  size_t per_tick;
  char errmsg[DMEM__ERRMSG_MAX];
  /* scratch, used with the lock held */
  uint8_t buf[DMEM_PAGE_SIZE] __attribute__((aligned(64)));
  uint8_t other[DMEM_PAGE_SIZE] __attribute__((aligned(64)));
  uint8_t fetched[DMEM_PAGE_SIZE] __attribute__((aligned(64)));
  uint8_t patch[DMEM_DELTA_MAX] __attribute__((aligned(64)));
  uint8_t best[DMEM_DELTA_MAX] __attribute__((aligned(64)));
  uint8_t blob[DMEM_COMPRESS_BOUND] __attribute__((aligned(64)));
  uint8_t unmap_buf[DMEM_PAGE_SIZE] __attribute__((aligned(64)));
  uint8_t slice_bits[4096];
};

/* page.c: a page's state, its content's home, and frames' references.
 * All with the lock held. */
void dmem__set_kind(dmem_vm *vm, dmem__page *p, dmem_page_kind kind);
void dmem__set_state(dmem_vm *vm, dmem__page *p, dmem_page_state state);
/* The page's content, from wherever the engine keeps it (not RESIDENT):
 * 0, or DMEM_ECORRUPT when its checksum or format is wrong. */
int dmem__rebuild(void *out, dmem_engine *e, const dmem__page *p);
/* Frees whatever holds the page's content (it must be elsewhere by now). */
void dmem__release(dmem_engine *e, dmem__page *p);
/* The page is private guest memory again: journaled, storage freed, C1. */
void dmem__made_private(dmem_engine *e, dmem_vm *vm, dmem__page *p);
/* Installs the page's content as private memory and frees its storage. */
int dmem__restore_page(dmem_engine *e, dmem_vm *vm, uint64_t gfn);
/* Counts a failed operation on a page and keeps its message; returns rc. */
int dmem__page_error(dmem_engine *e, dmem_vm *vm, int rc, const char *what, uint64_t gfn);

/* What an adapter operation returned, as the engine passes it on: 0 or a
 * DMEM_E* code; anything else (a positive value, a code the table lacks)
 * is DMEM_EIO, so that no caller ever sees a result the API does not
 * name. (A negated errno that happens to be a DMEM_E* value cannot be told
 * apart: diffmem/adapter.h asks for DMEM_E* codes.) */
static inline int dmem__op(int rc)
{
  return rc == 0 || (rc < 0 && rc > DMEM_ERRNO_LAST_) ? rc : DMEM_EIO;
}
/* A MAPPED page becomes private memory with the content the guest sees. */
int dmem__unmap(dmem_engine *e, dmem_vm *vm, uint64_t gfn);
/* The VM whose live-page ids hold id, or NULL. */
dmem_vm *dmem__vm_of_live_id(dmem_engine *e, uint32_t id);
/* The domain of frame id. */
dmem__domain *dmem__frame_domain(dmem_engine *e, uint32_t id);
/* Frees the unused frames secure mode keeps for a scan: all of them, or
 * those of domain `only`. Lock held. */
void dmem__free_dead(dmem_engine *e, const dmem__domain *only);

/* journal.c: records that page gfn's content is now at (kind, loc), or in
 * guest memory (RESIDENT, MAPPED). Write it before a page leaves guest
 * memory and after it is back; free storage only after. Lock held. */
void dmem__journal(dmem_engine *e, dmem_vm *vm, uint64_t gfn, dmem_page_kind kind, uint32_t loc);
/* Writes the header and every entry, and keeps the journal from now on
 * (size checked by the caller). Lock held. */
void dmem__journal_start(dmem_engine *e, dmem_vm *vm, void *journal);

/* scan.c */
int dmem__scan_slice(dmem_engine *e, dmem_vm *vm, uint64_t first, size_t n);
void dmem__hint_page(dmem_engine *e, dmem_vm *vm, uint64_t gfn);

/* policy.c */
void dmem__policy_resolve(dmem_policy *out, const dmem_policy *given);

#endif
