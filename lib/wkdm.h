/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* WKdm (wkdm.c), the one page codec that has no library of its own. Public
 * callers go through dmem_codec_compress()/_decompress(), which add the
 * one-byte codec header (codec.c's table holds its entry); these work on
 * the bare stream, for its own tests. */
#ifndef DMEM_WKDM_H
#define DMEM_WKDM_H

#include <stddef.h>
#include <stdint.h>

/* Compresses one DMEM_PAGE_SIZE page (any alignment) with WKdm into out.
 * Returns the number of bytes written (> 0), or DMEM_ETOOBIG when the
 * stream would exceed cap (out then holds nothing useful). Never writes
 * past out + cap. */
int dmem__wkdm_compress(uint8_t *out, size_t cap, const void *page);

/* Rebuilds a page from a WKdm stream of exactly len bytes. Returns 0, or
 * DMEM_ECORRUPT / DMEM_ETRUNC for a malformed stream; never reads past
 * in + len nor writes past page + DMEM_PAGE_SIZE. */
int dmem__wkdm_decompress(void *page, const uint8_t *in, size_t len);

/* Largest WKdm stream for one page. */
#define DMEM__WKDM_BOUND (DMEM_PAGE_SIZE + DMEM_PAGE_SIZE / 16 + 64)

#endif
