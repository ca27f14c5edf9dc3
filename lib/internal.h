/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internals shared across the files of the core. Nothing here is exported:
 * the build hides every symbol that DMEM_API does not mark. */
#ifndef DMEM_INTERNAL_H
#define DMEM_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include <diffmem/common.h>

#include "failpoint.h"

#define DMEM__ERRMSG_MAX DMEM_ERRBUF_SIZE

#if defined(__GNUC__)
#define DMEM__PRINTF(f, a) __attribute__((format(printf, f, a)))
#define DMEM__LIKELY(x) __builtin_expect(!!(x), 1)
#define DMEM__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define DMEM__PRINTF(f, a)
#define DMEM__LIKELY(x) (x)
#define DMEM__UNLIKELY(x) (x)
#endif

/* Little-endian loads and stores at any alignment: byte k of the value is
 * byte k in memory on any host, so that formats and hashes are the same
 * everywhere. */
static inline uint64_t dmem__load_le64(const uint8_t *p)
{
  uint64_t v;
  memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static inline void dmem__store_le64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  memcpy(p, &v, sizeof v);
}

static inline uint32_t dmem__load_le32(const uint8_t *p)
{
  uint32_t v;
  memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

static inline void dmem__store_le32(uint8_t *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  memcpy(p, &v, sizeof v);
}

/* The allocator an object keeps: a copy of the caller's hook, or the C
 * library's when the caller gave none. */
/* ------------------------------------------------------------------ base
 * The one internal base of the three libraries (core, KVM, Xen), header
 * only so that the adapters, which link the core's shared library and see
 * none of its hidden symbols, share it too: the allocator hook, error
 * messages, random keys, the zero-page test and thread start. */

typedef struct dmem__alloc {
  dmem_allocator hook;
} dmem__alloc;

static inline void *dmem__libc_alloc(size_t size, size_t align, void *ud)
{
  (void)ud;
  void *p = NULL;
  if (align < sizeof(void *))
    align = sizeof(void *);
  if (posix_memalign(&p, align, size ? size : 1) != 0)
    return NULL;
  return p;
}

static inline void dmem__libc_free(void *p, size_t size, void *ud)
{
  (void)size;
  (void)ud;
  free(p);
}

/* A hook the caller may give: none, or both functions. */
static inline int dmem__alloc_valid(const dmem_allocator *hook)
{
  return !hook || (hook->alloc && hook->free);
}

/* The caller's hook (checked with dmem__alloc_valid first), or libc's. */
static inline void dmem__alloc_init(dmem__alloc *a, const dmem_allocator *hook)
{
  if (hook && hook->alloc && hook->free) {
    a->hook = *hook;
  } else {
    a->hook.alloc = dmem__libc_alloc;
    a->hook.free = dmem__libc_free;
    a->hook.ud = NULL;
  }
}

static inline void *dmem__malloc_aligned(const dmem__alloc *a, size_t size, size_t align)
{
  return a->hook.alloc(size, align, a->hook.ud);
}

static inline void *dmem__malloc(const dmem__alloc *a, size_t size)
{
  return dmem__malloc_aligned(a, size, 16);
}

static inline void *dmem__calloc(const dmem__alloc *a, size_t size)
{
  void *p = dmem__malloc(a, size);
  if (p)
    memset(p, 0, size);
  return p;
}

static inline void dmem__free(const dmem__alloc *a, void *p, size_t size)
{
  if (p)
    a->hook.free(p, size, a->hook.ud);
}

/* Formats a detail message into buf (DMEM__ERRMSG_MAX bytes) and returns
 * err, so that a failure path reads "return dmem__fail(...)". */
static inline int dmem__fail(char *buf, int err, const char *fmt, ...) DMEM__PRINTF(3, 4);
static inline int dmem__fail(char *buf, int err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, DMEM__ERRMSG_MAX, fmt, ap);
  va_end(ap);
  return err;
}

/* A random 64-bit key from the kernel (getrandom, retried when a signal
 * interrupts it). Returns 0, or DMEM_ESYS. */
static inline int dmem__random_key(uint64_t *out)
{
  for (;;) {
    ssize_t n = dmem__fp_fail(DMEM__FP_GETRANDOM) ? -1 : getrandom(out, sizeof *out, 0);
    if (n == (ssize_t)sizeof *out)
      return 0;
    if (n >= 0 || errno != EINTR)
      return DMEM_ESYS;
  }
}

/* Is the DMEM_PAGE_SIZE page all zero? */
static inline int dmem__page_is_zero(const void *page)
{
  const uint8_t *b = (const uint8_t *)page;
  uint64_t acc = 0;
  for (size_t i = 0; i < DMEM_PAGE_SIZE; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8); /* any alignment, no aliasing */
    acc |= w;
  }
  return acc == 0;
}

/* Starts a thread; on failure writes "cannot start WHAT: REASON" into
 * errbuf (pthread_create returns its error, it does not set errno) and
 * returns DMEM_ESYS. */
static inline int dmem__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, char *errbuf,
                                     const char *what)
{
  int rc = dmem__fp_check(DMEM__FP_THREAD);
  if (rc == 0)
    rc = pthread_create(t, NULL, fn, arg);
  if (rc == 0)
    return 0;
  return dmem__fail(errbuf, DMEM_ESYS, "cannot start %s: %s", what, strerror(rc));
}

#endif /* DMEM_INTERNAL_H */
