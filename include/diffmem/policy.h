/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/policy.h
 * @brief Policies: how pages are classified, which technique each gets, and
 * which pages go to swap.
 *
 * The engine keeps, for every guest page, the paper's NRU clock state:
 *  - C1 recently modified: left alone;
 *  - C2 referenced but not modified: may be shared, may serve as a patch
 *    reference, never patched or compressed itself;
 *  - C3 not recently referenced: may be shared or patched;
 *  - C4 not referenced for an extended period: anything, including
 *    compression and swap.
 *
 * A policy is three hooks over a read-only view of a page. The default
 * policy (dmem_policy_paper()) is the Difference Engine's, written against
 * the same hooks; examples/ has a custom one.
 *
 * Threads: the engine calls the hooks with its lock held, from whatever
 * thread runs the scan. Hooks must be quick, must not block, and must not
 * call into the engine.
 */
#ifndef DIFFMEM_POLICY_H
#define DIFFMEM_POLICY_H

#include <stdint.h>

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The paper's clock states. */
typedef enum dmem_page_state {
  DMEM_C1 = 1, /**< recently modified */
  DMEM_C2 = 2, /**< referenced, not modified */
  DMEM_C3 = 3, /**< not recently referenced */
  DMEM_C4 = 4  /**< not referenced for an extended period */
} dmem_page_state;

/** Where a page's content lives. */
typedef enum dmem_page_kind {
  DMEM_PAGE_RESIDENT = 0,   /**< private guest memory */
  DMEM_PAGE_MAPPED = 1,     /**< resident: a frame mapped copy-on-write */
  DMEM_PAGE_ZERO = 2,       /**< evicted; all zero, no storage at all */
  DMEM_PAGE_SHARED = 3,     /**< evicted; rebuilt from a shared frame */
  DMEM_PAGE_PATCHED = 4,    /**< evicted; a reference frame plus a patch */
  DMEM_PAGE_COMPRESSED = 5, /**< evicted; a compressed blob */
  DMEM_PAGE_SWAPPED = 6     /**< evicted; a slot of the swap file */
} dmem_page_kind;

/** Techniques, as bits. */
#define DMEM_TECH_SHARE 0x1u    /**< share identical pages (and zero pages) */
#define DMEM_TECH_PATCH 0x2u    /**< patch against a similar reference */
#define DMEM_TECH_COMPRESS 0x4u /**< compress */
#define DMEM_TECH_SWAP 0x8u     /**< page out to the swap file */
/** May serve as a reference for other pages' patches. */
#define DMEM_TECH_REFERENCE 0x10u

/** What a hook sees of one page. */
typedef struct dmem_page_info {
  uint32_t vm_id;        /**< the VM's id (dmem_vm_id()) */
  uint64_t gfn;          /**< the page */
  dmem_page_state state; /**< state before this visit */
  dmem_page_kind kind;   /**< where its content lives now */
  unsigned idle_passes;  /**< scans in a row that found it unreferenced */
  unsigned bits;         /**< DMEM_BIT_* read on this visit (0 if evicted) */
} dmem_page_info;

/** What a hook sees of the engine. */
typedef struct dmem_policy_env {
  unsigned c4_passes; /**< idle scans after which a page is C4 (options) */
  int pressure;       /**< 1 when the store is above its memory limit */
} dmem_policy_env;

/** A policy. Hooks left NULL fall back to the paper's. */
typedef struct dmem_policy {
  unsigned version; /**< DMEM_POLICY_VERSION */
  /** The page's new state from its old state and this visit's bits. */
  dmem_page_state (*classify)(const dmem_page_info *page, const dmem_policy_env *env, void *ud);
  /** The techniques (DMEM_TECH_* bits) the engine may try on a resident
   *  page in @p state; it tries share, then patch, then compress, then swap,
   *  and stops at the first that saves memory. */
  unsigned (*techniques)(const dmem_page_info *page, dmem_page_state state,
                         const dmem_policy_env *env, void *ud);
  /** Under memory pressure: should this evicted page, patched or
   *  compressed, move to the swap file? 1 yes, 0 no. The scan asks it of
   *  no other page: a resident page reaches the swap file through
   *  techniques() (DMEM_TECH_SWAP). */
  int (*victim)(const dmem_page_info *page, const dmem_policy_env *env, void *ud);
  void *ud; /**< passed to every hook */
} dmem_policy;

#define DMEM_POLICY_VERSION 1

/**
 * The Difference Engine's policy: modified → C1; referenced → C2;
 * unreferenced → C3, and C4 after env->c4_passes idle scans. C2 pages may
 * be shared and serve as references; C3 pages may be shared or patched; C4
 * pages may get any technique, swap only under pressure. Under pressure,
 * compressed and patched C4 pages are victims too.
 * @return a static policy; never NULL.
 */
DMEM_API const dmem_policy *dmem_policy_paper(void);

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_POLICY_H */
