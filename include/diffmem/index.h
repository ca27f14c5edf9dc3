/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/index.h
 * @brief The keyed page hash and the identical-page index.
 *
 * The Difference Engine's identical-page index (Gupta et al., OSDI 2008,
 * section 3.1): pages are hashed with a keyed hash, and a hash match is
 * confirmed byte by byte before it is reported.
 *
 * Threads: an index may be used by one thread at a time; distinct indexes
 * are independent.
 */
#ifndef DIFFMEM_INDEX_H
#define DIFFMEM_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Identical-page index: finds a stored page with the same content. */
typedef struct dmem_index dmem_index;

/**
 * Gives the index the current content of a page it holds, by id; the index
 * compares bytes through it before it reports a match. Return NULL if the
 * id has no content any more (the entry then never matches).
 */
typedef const void *(*dmem_page_fetch_fn)(uint32_t id, void *ud);

/** Options of dmem_index_create(). Start from DMEM_INDEX_OPTIONS_INIT. */
typedef struct dmem_index_options {
  unsigned version;                /**< DMEM_INDEX_OPTIONS_VERSION */
  const dmem_allocator *allocator; /**< NULL: the C library's */
  /** Hash key. 0 asks for a random key from getrandom(2), which is what a
   *  host wants: a guest then cannot aim its pages at one bucket. Tests
   *  that need repeatable hashes set their own. */
  uint64_t seed;
  /** Pages the index should expect, to size its table (0: grow as needed). */
  size_t expected_pages;
  dmem_page_fetch_fn fetch; /**< required */
  void *fetch_ud;           /**< passed to fetch */
} dmem_index_options;

#define DMEM_INDEX_OPTIONS_VERSION 1
#define DMEM_INDEX_OPTIONS_INIT                                                                    \
  {                                                                                                \
    DMEM_INDEX_OPTIONS_VERSION, NULL, 0, 0, NULL, NULL                                             \
  }

/**
 * Makes an empty index.
 * @retval 0 success.
 * @retval DMEM_EINVAL out or opts->fetch is NULL.
 * @retval DMEM_EVERSION unknown options version.
 * @retval DMEM_ENOMEM.
 * @retval DMEM_ESYS no seed was given and getrandom(2) failed.
 */
DMEM_API int dmem_index_create(dmem_index **out, const dmem_index_options *opts);

/** Frees the index (not the pages it names). NULL does nothing. */
DMEM_API void dmem_index_destroy(dmem_index *index);

/** The index's keyed XXH3 hash of a page (DMEM_PAGE_SIZE bytes). */
DMEM_API uint64_t dmem_index_hash(const dmem_index *index, const void *page);

/** Candidates (entries of the same hash tag) a lookup fetches at most. */
#define DMEM_INDEX_MAX_FETCHES 16

/**
 * Finds a page with the same content as @p page.
 *
 * Candidates come from the hash; a candidate is reported only when its
 * bytes, read through the fetch callback, equal @p page. A candidate whose
 * fetch returns NULL (its page is gone) is removed on the way. A lookup
 * fetches at most DMEM_INDEX_MAX_FETCHES candidates and then reports
 * DMEM_ENOENT, so that pages flooding one hash (a guest that writes one
 * content into many pages, then changes them) cannot make lookups cost
 * more than that many fetches and compares.
 *
 * @param out_id receives the id of a matching page.
 * @param hash dmem_index_hash() of @p page.
 * @param index the index.
 * @param page the content looked for (DMEM_PAGE_SIZE bytes).
 * @retval 0 found.
 * @retval DMEM_ENOENT no stored page has this content.
 */
DMEM_API int dmem_index_lookup(uint32_t *out_id, dmem_index *index, const void *page,
                               uint64_t hash);

/**
 * Adds page @p id with hash @p hash. Several ids may share a hash; adding
 * an (id, hash) that is already there does nothing.
 * @retval 0 success.
 * @retval DMEM_ENOMEM the table could not grow; the index is unchanged.
 * @retval DMEM_EINVAL @p id is UINT32_MAX (reserved) or @p index is NULL.
 */
DMEM_API int dmem_index_insert(dmem_index *index, uint64_t hash, uint32_t id);

/**
 * Removes page @p id, stored under @p hash.
 * @retval 0 success.
 * @retval DMEM_ENOENT no such entry.
 */
DMEM_API int dmem_index_remove(dmem_index *index, uint64_t hash, uint32_t id);

/** Entries in the index. */
DMEM_API size_t dmem_index_count(const dmem_index *index);

/** Bytes the index allocated for its table and itself. */
DMEM_API size_t dmem_index_memory(const dmem_index *index);

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_INDEX_H */
