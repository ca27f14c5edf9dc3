/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/simdet.h
 * @brief Similarity detectors: find a reference page for a page to patch.
 *
 * Similarity detectors find a reference page for a page to patch, after
 * the Difference Engine (Gupta et al., OSDI 2008, section 3.2). Their
 * answers are hints, which the caller checks (by making a patch).
 *
 * Threads: a detector may be used by one thread at a time; distinct
 * detectors are independent.
 */
#ifndef DIFFMEM_SIMDET_H
#define DIFFMEM_SIMDET_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A similarity detector. */
typedef struct dmem_simdet dmem_simdet;

typedef enum dmem_simdet_kind {
  /** The paper's HashSimilarityDetector(k, s): k keys per page, each the
   *  hash of s 64-byte blocks at fixed pseudo-random offsets. */
  DMEM_SIMDET_HASH = 1,
  /** Shift-tolerant: k keys from 64-byte blocks chosen by content (the
   *  8-byte-aligned windows whose rolling hash is smallest), so that
   *  content moved within the page by a multiple of 8 bytes yields the same
   *  keys. s blocks make one key, as above. */
  DMEM_SIMDET_CONTENT = 2
} dmem_simdet_kind;

/** Options of dmem_simdet_create(). Start from DMEM_SIMDET_OPTIONS_INIT. */
typedef struct dmem_simdet_options {
  unsigned version;                /**< DMEM_SIMDET_OPTIONS_VERSION */
  const dmem_allocator *allocator; /**< NULL: the C library's */
  dmem_simdet_kind kind;
  unsigned k;          /**< keys per page, 1..8 */
  unsigned s;          /**< blocks per key, 1..8 */
  unsigned candidates; /**< ids kept per key bucket, 1..8 (newest kept) */
  uint64_t seed;       /**< block offsets and hash key; 0: random */
  size_t expected_pages;
} dmem_simdet_options;

#define DMEM_SIMDET_OPTIONS_VERSION 1
/** The paper's best setting: HashSimilarityDetector(2,1), one candidate. */
#define DMEM_SIMDET_OPTIONS_INIT                                                                   \
  {                                                                                                \
    DMEM_SIMDET_OPTIONS_VERSION, NULL, DMEM_SIMDET_HASH, 2, 1, 1, 0, 0                             \
  }

/**
 * Makes an empty detector.
 * @retval 0 success.
 * @retval DMEM_EINVAL k, s or candidates out of range.
 * @retval DMEM_EVERSION.
 * @retval DMEM_ENOMEM.
 * @retval DMEM_ESYS getrandom.
 */
DMEM_API int dmem_simdet_create(dmem_simdet **out, const dmem_simdet_options *opts);

/** Frees the detector. NULL does nothing. */
DMEM_API void dmem_simdet_destroy(dmem_simdet *det);

/**
 * Indexes page @p id as a possible reference. Blocks that are one repeated
 * 8-byte word (zeros, fills) are never keyed, so such pages match nothing.
 * Inserting an id again makes it the newest in its buckets.
 * @retval 0 success.
 * @retval DMEM_ENOMEM; the detector is unchanged.
 * @retval DMEM_EINVAL @p id is UINT32_MAX (reserved) or a NULL pointer.
 */
DMEM_API int dmem_simdet_insert(dmem_simdet *det, uint32_t id, const void *page);

/**
 * Forgets page @p id; @p page must be the content it was inserted with.
 * Buckets that no longer hold the id are left alone.
 */
DMEM_API void dmem_simdet_remove(dmem_simdet *det, uint32_t id, const void *page);

/**
 * Candidate references for @p page, the ids that share the most keys with
 * it first. Candidates are hints: the caller builds the patch and checks.
 *
 * @param out_ids receives up to @p max ids, without repeats.
 * @param max room in @p out_ids.
 * @param det the detector.
 * @param page the page (DMEM_PAGE_SIZE bytes).
 * @return the number of ids written.
 */
DMEM_API size_t dmem_simdet_query(uint32_t *out_ids, size_t max, const dmem_simdet *det,
                                  const void *page);

/** Bytes the detector allocated. */
DMEM_API size_t dmem_simdet_memory(const dmem_simdet *det);

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_SIMDET_H */
