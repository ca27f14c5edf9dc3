/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void *t_alloc(size_t size, size_t align, void *ud)
{
  test_alloc *t = ud;
  t->allocs++;
  if (t->fail_at && t->allocs == t->fail_at)
    return NULL;
  void *p = NULL;
  if (align < sizeof(void *))
    align = sizeof(void *);
  if (posix_memalign(&p, align, size ? size : 1) != 0)
    return NULL;
  t->live_bytes += (long)size;
  return p;
}

static void t_free(void *p, size_t size, void *ud)
{
  test_alloc *t = ud;
  if (!p)
    return;
  t->frees++;
  t->live_bytes -= (long)size;
  free(p);
}

void test_alloc_init(test_alloc *t)
{
  memset(t, 0, sizeof *t);
  t->hook.alloc = t_alloc;
  t->hook.free = t_free;
  t->hook.ud = t;
}
