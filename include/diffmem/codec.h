/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/codec.h
 * @brief Page compressors (WKdm, LZO1X-1, LZ4, zstd and a best-of mode),
 * usable on their own.
 *
 * These, with the delta encoder (diffmem/delta.h), the identical-page
 * index (diffmem/index.h) and the similarity detectors (diffmem/simdet.h),
 * are the algorithms of the Difference Engine (Gupta et al., OSDI 2008,
 * section 3), one header each. The engine uses them; so can a study tool
 * or a researcher's own policy. This header includes the other three, as
 * it once declared all four: code written against it builds unchanged.
 *
 * Blobs. A compressed page is a self-describing blob: its first byte names
 * the codec that made it, so dmem_codec_decompress() needs nothing else.
 * It carries no checksum: the caller that stores blobs keeps one (the
 * engine does). The decoders check every length and offset against their
 * input and their 4 KiB output, and return DMEM_ECORRUPT (or DMEM_ETRUNC)
 * for any malformed input without reading or writing out of bounds; on
 * error the output page's content is unspecified.
 *
 * Threads. A context (dmem_codec) may be used by one thread at a time;
 * distinct contexts are independent. The functions that take no context
 * (dmem_codec_name, dmem_codec_of_blob, ...) are safe from any thread.
 */
#ifndef DIFFMEM_CODEC_H
#define DIFFMEM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

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
 * codec_best_mask 0, as a mask of (1u << id): zstd (at the context's
 * zstd_level, 1 by default) where the build has libzstd, which on real
 * guest pages writes fewer bytes than zlib at level 1 and decodes about as
 * fast as LZO; otherwise the paper's pair, WKdm and LZO1X-1, or WKdm and
 * LZ4 in a build without liblzo2 (WKdm alone when LZ4 is missing too).
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

#ifdef __cplusplus
}
#endif

/* The other three modules, which this header once declared. */
#include <diffmem/delta.h>
#include <diffmem/index.h>
#include <diffmem/simdet.h>

#endif /* DIFFMEM_CODEC_H */
