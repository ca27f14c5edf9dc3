/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/codec.h
 * @brief Page codecs and indexes, usable on their own: the keyed page hash
 * and identical-page index, page compressors (WKdm, LZO1X-1, LZ4, zstd and
 * a best-of mode), the delta encoder that writes a page as a patch against
 * a reference page, and the similarity detectors that find a reference.
 *
 * These are the algorithms of the Difference Engine (Gupta et al., OSDI
 * 2008, section 3). The engine uses them; so can a study tool or a
 * researcher's own policy.
 *
 * Blobs. A compressed page is a self-describing blob: its first byte names
 * the codec that made it, so dmem_codec_decompress() needs nothing else. A
 * patch is a byte string that only has meaning with the same reference
 * page. Neither format carries a checksum: the caller that stores blobs
 * keeps one (the engine does). Every decoder here checks every length and
 * offset against its input and its 4 KiB output, and returns DMEM_ECORRUPT
 * (or DMEM_ETRUNC) for any malformed input without reading or writing out
 * of bounds; on error the output page's content is unspecified.
 *
 * Threads. Each object (dmem_codec, dmem_index, dmem_simdet) may be used by
 * one thread at a time; distinct objects are independent. The functions
 * that take no object (dmem_delta_*, dmem_codec_name, ...) are safe from any
 * thread.
 */
#ifndef DIFFMEM_CODEC_H
#define DIFFMEM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Page compression
 * ====================================================================== */

/** Page codecs. The value is the first byte of every blob; fixed forever. */
typedef enum dmem_codec_id {
  DMEM_CODEC_NONE = 0, /**< not a codec; never in a blob */
  DMEM_CODEC_WKDM = 1, /**< WKdm (Wilson and Kaplan), our implementation */
  DMEM_CODEC_LZO = 2,  /**< LZO1X-1 (liblzo2, GPL-2.0-or-later), if built with it */
  DMEM_CODEC_LZ4 = 3,  /**< LZ4 (liblz4), if built with it */
  DMEM_CODEC_ZSTD = 4, /**< zstd (libzstd), if built with it */
  /** Best of: runs the candidate codecs and keeps the smallest output. The
   *  blob names the codec that won, never DMEM_CODEC_BEST. */
  DMEM_CODEC_BEST = 15
} dmem_codec_id;

/** Largest blob dmem_codec_compress() ever writes, header byte included. */
#define DMEM_COMPRESS_BOUND (DMEM_PAGE_SIZE + DMEM_PAGE_SIZE / 16 + 64 + 3 + 1)

/** A compression context: work memory of every codec, kept between calls. */
typedef struct dmem_codec dmem_codec;

/** Options of dmem_codec_create(). Start from DMEM_CODEC_OPTIONS_INIT. */
typedef struct dmem_codec_options {
  unsigned version;                /**< DMEM_CODEC_OPTIONS_VERSION */
  const dmem_allocator *allocator; /**< NULL: the C library's */
  /** zstd compression level (1 = fastest). */
  int zstd_level;
  /** Which codecs DMEM_CODEC_BEST tries, as a bit mask of (1u << id);
   *  0 means every codec built in. Codecs this build lacks are skipped; a
   *  bit of no codec is refused (DMEM_EINVAL), and so is a mask of built-out
   *  codecs only (DMEM_ENOTSUP). */
  unsigned best_mask;
} dmem_codec_options;

#define DMEM_CODEC_OPTIONS_VERSION 1
#define DMEM_CODEC_OPTIONS_INIT                                                                    \
  {                                                                                                \
    DMEM_CODEC_OPTIONS_VERSION, NULL, 1, 0                                                         \
  }

/**
 * Makes a compression context.
 * @param out receives the context; untouched on failure.
 * @param opts NULL for the defaults.
 * @retval 0 success.
 * @retval DMEM_EVERSION opts->version is not one this library knows.
 * @retval DMEM_EINVAL out is NULL, an option is out of range, best_mask
 *         has a bit of no codec, or the allocator lacks alloc or free.
 * @retval DMEM_ENOTSUP best_mask names only codecs this build lacks.
 * @retval DMEM_ENOMEM an allocation failed.
 */
DMEM_API int dmem_codec_create(dmem_codec **out, const dmem_codec_options *opts);

/** Frees a context. NULL does nothing. */
DMEM_API void dmem_codec_destroy(dmem_codec *codec);

/**
 * The codecs the engine's DMEM_CODEC_BEST tries when its options leave
 * codec_best_mask 0, as a mask of (1u << id): the paper's pair, WKdm and
 * LZO1X-1; in a build without liblzo2, WKdm and LZ4 (WKdm alone when LZ4
 * is missing too).
 */
DMEM_API unsigned dmem_codec_default_mask(void);

/** Is this codec built into the library? @return 1 or 0. */
DMEM_API int dmem_codec_available(dmem_codec_id id);

/** The codec's short name ("wkdm", "lzo", "lz4", "zstd", "best"), or NULL. */
DMEM_API const char *dmem_codec_name(dmem_codec_id id);

/**
 * Looks a codec up by its short name.
 * @retval 0 found; *out is set.
 * @retval DMEM_ENOENT no codec has that name.
 * @retval DMEM_ENOTSUP the codec exists but is not built in.
 */
DMEM_API int dmem_codec_from_name(dmem_codec_id *out, const char *name);

/**
 * Compresses one page into a blob.
 *
 * @param out_len receives the blob's length in bytes.
 * @param out where the blob goes.
 * @param out_cap room at @p out. With less than DMEM_COMPRESS_BOUND the
 *        call fails with DMEM_ETOOBIG when the blob would not fit: pass
 *        DMEM_PAGE_SIZE / 2 to keep only blobs that save half a page.
 * @param codec the context.
 * @param id the codec, or DMEM_CODEC_BEST.
 * @param page DMEM_PAGE_SIZE bytes, any alignment.
 * @retval 0 success.
 * @retval DMEM_ETOOBIG the blob would be larger than @p out_cap.
 * @retval DMEM_ENOTSUP the codec is not built in.
 * @retval DMEM_EINVAL a NULL pointer or an unknown id.
 */
DMEM_API int dmem_codec_compress(size_t *out_len, void *out, size_t out_cap, dmem_codec *codec,
                                 dmem_codec_id id, const void *page);

/**
 * Rebuilds a page from a blob made by dmem_codec_compress().
 *
 * @param page receives DMEM_PAGE_SIZE bytes.
 * @param codec the context.
 * @param blob the blob; @p blob_len its exact length.
 * @param blob_len the blob's exact length.
 * @retval 0 success: the page is exactly the one compressed.
 * @retval DMEM_ECORRUPT or DMEM_ETRUNC the blob is malformed; nothing was
 *         read or written out of bounds.
 * @retval DMEM_ENOTSUP the blob names a codec that is not built in.
 * @retval DMEM_EINVAL a NULL pointer.
 */
DMEM_API int dmem_codec_decompress(void *page, dmem_codec *codec, const void *blob,
                                   size_t blob_len);

/**
 * The codec that made a blob, read from its first byte.
 * @return the id, or DMEM_CODEC_NONE for an empty blob or an unknown byte.
 */
DMEM_API dmem_codec_id dmem_codec_of_blob(const void *blob, size_t blob_len);

/* ======================================================================
 * Delta encoding: a page as a patch against a reference page
 * ====================================================================== */

/** Patches longer than this are refused: they do not save half a page. */
#define DMEM_DELTA_MAX (DMEM_PAGE_SIZE / 2)

/**
 * Writes @p page as a patch against @p ref.
 *
 * The patch carries the 64-bit words that differ from the reference's at
 * the same offset, coded against the differences seen earlier in the page
 * (pointers relocated by one slide, runs of cleared words: a byte or two
 * each). A page that differs in most of its words, or that this word form
 * cannot fit, is looked up in the reference: when its content sits there
 * at another offset (it moved within the page), the words are taken
 * against the reference moved by that shift. The patch names its form in
 * its first byte.
 *
 * Which form is used does not depend on @p out_cap: the cap decides only
 * whether the patch is taken. A page is refused when no form fits in
 * DMEM_DELTA_MAX bytes.
 *
 * @param out_len receives the patch length.
 * @param out where the patch goes.
 * @param out_cap room at @p out; the patch is refused when it would be
 *        longer than the smaller of @p out_cap and DMEM_DELTA_MAX.
 * @param page, ref DMEM_PAGE_SIZE bytes each.
 * @retval 0 success.
 * @retval DMEM_ETOOBIG the patch would be too long; @p out holds nothing
 *         useful.
 * @retval DMEM_EINVAL a NULL pointer.
 */
DMEM_API int dmem_delta_encode(size_t *out_len, void *out, size_t out_cap, const void *page,
                               const void *ref);

/**
 * Flag for dmem_delta_encode_flags(): on a page the word forms refuse, also
 * try an LZ-style form, which copies content that moved by several shifts,
 * byte fills, and differences that repeat at any distance — when a cheap
 * test of the page suggests it may fit. It costs several times the word
 * forms on each page it is tried on, most of which it refuses as well: on
 * captured memory it patched 0.7% more of the content detector's pairs
 * (0.5% more bytes saved) for a third to a half more encode time, so
 * dmem_delta_encode() does not use it.
 */
#define DMEM_DELTA_LZ 0x1u

/**
 * dmem_delta_encode() with options: @p flags is 0 (the same as
 * dmem_delta_encode()) or DMEM_DELTA_LZ. Returns DMEM_EINVAL for any other
 * flag bit, and otherwise as dmem_delta_encode(); the form still does not
 * depend on @p out_cap.
 */
DMEM_API int dmem_delta_encode_flags(size_t *out_len, void *out, size_t out_cap, const void *page,
                                     const void *ref, unsigned flags);

/**
 * Rebuilds a page from a reference and a patch.
 * @param page receives DMEM_PAGE_SIZE bytes; must not overlap @p ref.
 * @param ref the reference page the patch was made against (DMEM_PAGE_SIZE bytes).
 * @param patch the patch, from dmem_delta_encode().
 * @param patch_len its exact length.
 * @retval 0 success.
 * @retval DMEM_ECORRUPT or DMEM_ETRUNC the patch is malformed (or made
 *         for a page of another size); nothing was read or written out of
 *         bounds.
 * @retval DMEM_EINVAL a NULL pointer.
 */
DMEM_API int dmem_delta_decode(void *page, const void *ref, const void *patch, size_t patch_len);

/* ======================================================================
 * Keyed page hash and the identical-page index
 * ====================================================================== */

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

/* ======================================================================
 * Similarity detectors: find a reference page for a page to patch
 * ====================================================================== */

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

#endif /* DIFFMEM_CODEC_H */
