/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/common.h
 * @brief What every libdiffmem header shares: the export macro, the one
 * error convention, the allocator hook and the page size.
 *
 * Errors. Every call that can fail returns an int: 0 on success, or one of
 * the negative DMEM_E* codes below. The codes come from one X-macro table,
 * DMEM_ERRNO_MAP, which also gives dmem_strerror() its messages. Objects
 * that can fail in more detail keep a message of their own (for example
 * dmem_engine_errmsg()); there is no global or thread-local error state.
 *
 * Allocation. Every object takes a dmem_allocator in its options struct;
 * NULL there means the C library's aligned_alloc() and free(). The library
 * never calls exit() or abort(): a failed allocation comes back as
 * DMEM_ENOMEM and leaves the object as it was.
 *
 * Threads. Functions in this header are safe to call from any thread.
 */
#ifndef DIFFMEM_COMMON_H
#define DIFFMEM_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks the symbols the shared library exports; everything else is hidden. */
#if defined(_WIN32)
#define DMEM_API
#elif defined(__GNUC__) && __GNUC__ >= 4
#define DMEM_API __attribute__((visibility("default")))
#else
#define DMEM_API
#endif

/** Size of a guest page as libdiffmem handles it, in bytes. */
#define DMEM_PAGE_SIZE 4096u

/** Bytes that hold any message libdiffmem writes into an errbuf parameter
 *  or returns from an _errmsg() call, terminating NUL included: longer
 *  messages are cut there. */
#define DMEM_ERRBUF_SIZE 256u

/**
 * The error table: XX(NAME, value, message); the code is DMEM_E and NAME
 * joined (DMEM_EINVAL for INVAL).
 * Values are fixed forever once released: add new rows at the end.
 */
#define DMEM_ERRNO_MAP(XX)                                                                         \
  XX(INVAL, -1, "invalid argument")                                                                \
  XX(NOMEM, -2, "out of memory")                                                                   \
  XX(IO, -3, "input/output error")                                                                 \
  XX(CORRUPT, -4, "corrupt or malformed data")                                                     \
  XX(NOTSUP, -5, "operation not supported here")                                                   \
  XX(TOOBIG, -6, "output would not save enough to be worth keeping")                               \
  XX(NOENT, -7, "no such entry")                                                                   \
  XX(BUSY, -8, "resource busy")                                                                    \
  XX(SYS, -9, "system call failed")                                                                \
  XX(VERSION, -10, "unsupported version of an options or stats struct")                            \
  XX(EXIST, -11, "entry already exists")                                                           \
  XX(RANGE, -12, "value out of range")                                                             \
  XX(TRUNC, -13, "input truncated")                                                                \
  XX(NOSPC, -14, "no room left (a budget or a file is full)")                                      \
  XX(PERM, -15, "refused: no permission, or a limit reached")

/** Error codes; every one is negative, and 0 (DMEM_OK) is success. */
typedef enum dmem_errno {
  DMEM_OK = 0,
#define DMEM_ERRNO_ENUM_(name, value, msg) DMEM_E##name = (value),
  DMEM_ERRNO_MAP(DMEM_ERRNO_ENUM_)
#undef DMEM_ERRNO_ENUM_
      DMEM_ERRNO_LAST_ = -16
} dmem_errno;

/**
 * A human-readable message for an error code.
 * @param err 0 or a DMEM_E* code.
 * @return a static string; "unknown error" for a code the table lacks.
 *         Never NULL.
 */
DMEM_API const char *dmem_strerror(int err);

/**
 * The symbolic name of an error code, such as "DMEM_ECORRUPT".
 * @return a static string; "DMEM_E?" for a code the table lacks.
 */
DMEM_API const char *dmem_err_name(int err);

/**
 * Allocator hook, kept by every object made with it.
 *
 * alloc returns @p size bytes aligned to @p align (a power of two, at least
 * sizeof(void *)), or NULL. free takes what alloc returned, with the same
 * size, or NULL (then it does nothing). @p ud is passed back unchanged.
 * Both may be called from any thread that uses the object. Give both, or
 * pass no hook (NULL) for the C library's: a hook with either one NULL is
 * refused with DMEM_EINVAL, never silently replaced.
 */
typedef struct dmem_allocator {
  void *(*alloc)(size_t size, size_t align, void *ud);
  void (*free)(void *ptr, size_t size, void *ud);
  void *ud;
} dmem_allocator;

/**
 * The library's run-time version.
 * @return "MAJOR.MINOR.PATCH" of the loaded library; compare with
 *         DMEM_VERSION_STRING from diffmem/version.h.
 */
DMEM_API const char *dmem_version(void);

/** The run-time version as DMEM_VERSION_NUMBER would compute it. */
DMEM_API unsigned dmem_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_COMMON_H */
