/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internals shared across the files of the core. Nothing here is exported:
 * the build hides every symbol that DMEM_API does not mark. */
#ifndef DMEM_INTERNAL_H
#define DMEM_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <diffmem/common.h>

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
typedef struct dmem__alloc {
  dmem_allocator hook;
} dmem__alloc;

void dmem__alloc_init(dmem__alloc *a, const dmem_allocator *hook);
/* A hook the caller may give: none, or both functions. */
static inline int dmem__alloc_valid(const dmem_allocator *hook)
{
  return !hook || (hook->alloc && hook->free);
}
void *dmem__malloc(const dmem__alloc *a, size_t size);
void *dmem__malloc_aligned(const dmem__alloc *a, size_t size, size_t align);
void *dmem__calloc(const dmem__alloc *a, size_t size);
void dmem__free(const dmem__alloc *a, void *p, size_t size);

/* Formats a detail message into buf (DMEM__ERRMSG_MAX bytes) and returns
 * err, so that a failure path reads `return dmem__fail(buf, DMEM_EIO, ...)`. */
int dmem__fail(char *buf, int err, const char *fmt, ...) DMEM__PRINTF(3, 4);

#endif /* DMEM_INTERNAL_H */
