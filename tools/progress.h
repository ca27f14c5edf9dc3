/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* A one-line progress bar on stderr, redrawn at most ten times a second.
 * It draws nothing when off, and it is off unless stderr is a terminal. */
#ifndef DMEM_TOOLS_PROGRESS_H
#define DMEM_TOOLS_PROGRESS_H

#include <stdint.h>

typedef struct progress {
  int on;
  double last; /* when the bar was last drawn */
  int drawn;   /* a bar is on the line */
} progress;

/* want: the user did not ask for --no-progress. */
void progress_init(progress *p, int want);

/* Shows done of total units (bytes when in_bytes, else pages) for what. */
void progress_show(progress *p, const char *what, uint64_t done, uint64_t total, int in_bytes);

/* Erases the bar, so that the next line starts clean. */
void progress_clear(progress *p);

#endif
