/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The allocator hook behind every object, and error-message formatting. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void *libc_alloc(size_t size, size_t align, void *ud)
{
  (void)ud;
  void *p = NULL;
  if (align < sizeof(void *))
    align = sizeof(void *);
  if (posix_memalign(&p, align, size ? size : 1) != 0)
    return NULL;
  return p;
}

static void libc_free(void *p, size_t size, void *ud)
{
  (void)size;
  (void)ud;
  free(p);
}

void dmem__alloc_init(dmem__alloc *a, const dmem_allocator *hook)
{
  if (hook && hook->alloc && hook->free) {
    a->hook = *hook;
  } else {
    a->hook.alloc = libc_alloc;
    a->hook.free = libc_free;
    a->hook.ud = NULL;
  }
}

void *dmem__malloc_aligned(const dmem__alloc *a, size_t size, size_t align)
{
  return a->hook.alloc(size, align, a->hook.ud);
}

void *dmem__malloc(const dmem__alloc *a, size_t size)
{
  return dmem__malloc_aligned(a, size, 16);
}

void *dmem__calloc(const dmem__alloc *a, size_t size)
{
  void *p = dmem__malloc(a, size);
  if (p)
    memset(p, 0, size);
  return p;
}

void dmem__free(const dmem__alloc *a, void *p, size_t size)
{
  if (p)
    a->hook.free(p, size, a->hook.ud);
}

int dmem__fail(char *buf, int err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, DMEM__ERRMSG_MAX, fmt, ap);
  va_end(ap);
  return err;
}
