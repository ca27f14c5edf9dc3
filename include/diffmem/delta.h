/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/delta.h
 * @brief Delta encoding: a page as a patch against a reference page.
 *
 * A patch is a byte string that only has meaning with the same reference
 * page (the Difference Engine's patching, Gupta et al., OSDI 2008, section
 * 3.2); it carries no checksum: the caller that stores patches keeps one
 * (the engine does). The decoder checks every length and offset against
 * the patch and its 4 KiB output, and returns DMEM_ECORRUPT (or
 * DMEM_ETRUNC) for any malformed patch without reading or writing out of
 * bounds; on error the output page's content is unspecified.
 *
 * Threads: the functions take no object and are safe from any thread.
 */
#ifndef DIFFMEM_DELTA_H
#define DIFFMEM_DELTA_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

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

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_DELTA_H */
