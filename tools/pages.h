/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Loading raw page files for the diffmem tool. */
#ifndef DMEM_TOOLS_PAGES_H
#define DMEM_TOOLS_PAGES_H

#include <stddef.h>
#include <stdint.h>

typedef struct page_set {
  uint8_t *data;  /* npages * DMEM_PAGE_SIZE bytes */
  size_t npages;
  size_t cap;     /* pages allocated */
} page_set;

/* Appends the whole pages of a raw file to set. A trailing partial page is
 * reported on stderr and ignored. Returns 0, or -1 after printing an error
 * that names the file (and the offset where reading failed). */
int page_set_load(page_set *set, const char *path);

void page_set_free(page_set *set);

static inline const uint8_t *page_at(const page_set *set, size_t i)
{
  return set->data + i * 4096u;
}

/* Seconds on the monotonic clock. */
double now_seconds(void);

/* Is the page all zero bytes? */
/* (The zero-page test is the libraries' own: dmem__page_is_zero() in
 * lib/internal.h.) */

#endif
