/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "pages.h"
#include "progress.h"

void progress_init(progress *p, int want)
{
  p->on = want && isatty(STDERR_FILENO);
  p->last = 0;
  p->drawn = 0;
}

void progress_show(progress *p, const char *what, uint64_t done, uint64_t total, int in_bytes)
{
  if (!p->on)
    return;
  double now = now_seconds();
  if (p->drawn && now - p->last < 0.1 && done < total)
    return;
  p->last = now;
  enum { WIDTH = 30 };
  double f = total ? (double)done / (double)total : 0;
  if (f > 1)
    f = 1;
  char bar[WIDTH + 1];
  for (int i = 0; i < WIDTH; i++)
    bar[i] = i < (int)(f * WIDTH) ? '#' : '.';
  bar[WIDTH] = 0;
  if (in_bytes)
    fprintf(stderr, "\r\033[K[%s] %3.0f%% %.40s  %.0f/%.0f MiB", bar, f * 100, what,
            (double)done / 1048576.0, (double)total / 1048576.0);
  else
    fprintf(stderr, "\r\033[K[%s] %3.0f%% %.40s  %llu/%llu pages", bar, f * 100, what,
            (unsigned long long)done, (unsigned long long)total);
  fflush(stderr);
  p->drawn = 1;
}

void progress_clear(progress *p)
{
  if (p->on && p->drawn) {
    fputs("\r\033[K", stderr);
    fflush(stderr);
  }
  p->drawn = 0;
}
