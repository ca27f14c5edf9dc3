/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Failure injection: the one thin layer that every system call able to
 * fail under a running engine goes through (the store's slabs and swap
 * file, the memfds, the userfaultfd and KVM ioctls, getrandom, thread
 * start). Each call names its site; a test arms a site to fail at its n-th
 * call from now, or at each call with a probability, with an errno of its
 * choice, and reads back how many calls each site saw and how many it
 * failed (tests/test_failpoints.c sweeps every site).
 *
 * Nothing here is exported, and nothing arms a site but a test linked
 * against the internal libraries: in a shipped library each wrapper costs
 * one relaxed atomic load beside its system call. Each of the three
 * libraries compiles lib/failpoint.c into itself (an adapter cannot reach
 * the core's hidden symbols), so each has its own table; the test links
 * them all into one program, with one table. */
#ifndef DMEM_FAILPOINT_H
#define DMEM_FAILPOINT_H

#include <errno.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include "config.h"

#if DMEM_HAVE_MEMFD
#include <fcntl.h>
#include <linux/falloc.h>
#endif

typedef enum dmem__fp_site {
  DMEM__FP_SLAB_MMAP,        /**< store: mmap of a slab of frames or blobs */
  DMEM__FP_SLAB_GROW,        /**< store: ftruncate growing a slab's memfd */
  DMEM__FP_SWAP_WRITE,       /**< store: pwrite of a page to the swap file */
  DMEM__FP_SWAP_READ,        /**< store: pread of a page from the swap file */
  DMEM__FP_MEMFD_CREATE,     /**< memfd_create: frames, blobs, a region's RAM */
  DMEM__FP_REGION_FTRUNCATE, /**< KVM region: sizing the memfd it made */
  DMEM__FP_REGION_MMAP,      /**< KVM region: mmap of guest RAM or of a frame */
  DMEM__FP_FALLOCATE,        /**< fallocate punching a hole (region, slab) */
  DMEM__FP_PWRITE,           /**< KVM region: pwrite of a page into the memfd */
  DMEM__FP_UFFD_COPY,        /**< UFFDIO_COPY */
  DMEM__FP_UFFD_ZEROPAGE,    /**< UFFDIO_ZEROPAGE */
  DMEM__FP_UFFD_CONTINUE,    /**< UFFDIO_CONTINUE */
  DMEM__FP_UFFD_WP,          /**< UFFDIO_WRITEPROTECT */
  DMEM__FP_UFFD_REGISTER,    /**< UFFDIO_REGISTER */
  DMEM__FP_KVM_IOCTL,        /**< KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG */
  DMEM__FP_GETRANDOM,        /**< getrandom for hash keys and seeds */
  DMEM__FP_THREAD,           /**< pthread_create */
  DMEM__FP_NSITES
} dmem__fp_site;

/* Counts a call at site s (once a test has reset or armed the table), and
 * returns the errno it must fail with, or 0 to make the real call. */
int dmem__fp_check(dmem__fp_site s);

/* Does this call at site s fail? Then errno is set to its errno. */
static inline int dmem__fp_fail(dmem__fp_site s)
{
  int e = dmem__fp_check(s);
  if (e)
    errno = e;
  return e != 0;
}

/* Arms site s: fail its nth call from now (1 = the next; 0 = none), and
 * also each call with probability ppm per million (0 = none), drawn from
 * seed and the call's number, so that a run repeats. err is the errno
 * given (0: the site's usual one, as dmem__fp_errno says). */
void dmem__fp_arm(dmem__fp_site s, uint64_t nth, uint32_t ppm, uint64_t seed, int err);

/* Disarms every site and zeroes every count; counting starts. */
void dmem__fp_reset(void);

/* Disarms every site, keeping the counts. */
void dmem__fp_disarm(void);

uint64_t dmem__fp_calls(dmem__fp_site s);    /* calls seen since the reset */
uint64_t dmem__fp_failures(dmem__fp_site s); /* calls failed since the reset */
const char *dmem__fp_name(dmem__fp_site s);  /* "slab_mmap", ... */

/* ------------------------------------------------------------- wrappers */

static inline void *dmem__sys_mmap(dmem__fp_site s, void *addr, size_t len, int prot, int flags,
                                   int fd, off_t off)
{
  return dmem__fp_fail(s) ? MAP_FAILED : mmap(addr, len, prot, flags, fd, off);
}

static inline int dmem__sys_ioctl(dmem__fp_site s, int fd, unsigned long req, void *arg)
{
  return dmem__fp_fail(s) ? -1 : ioctl(fd, req, arg);
}

static inline ssize_t dmem__sys_pwrite(dmem__fp_site s, int fd, const void *buf, size_t n,
                                       off_t off)
{
  return dmem__fp_fail(s) ? -1 : pwrite(fd, buf, n, off);
}

static inline ssize_t dmem__sys_pread(dmem__fp_site s, int fd, void *buf, size_t n, off_t off)
{
  return dmem__fp_fail(s) ? -1 : pread(fd, buf, n, off);
}

static inline int dmem__sys_ftruncate(dmem__fp_site s, int fd, off_t len)
{
  return dmem__fp_fail(s) ? -1 : ftruncate(fd, len);
}

#if DMEM_HAVE_MEMFD
static inline int dmem__sys_memfd_create(const char *name, unsigned flags)
{
  return dmem__fp_fail(DMEM__FP_MEMFD_CREATE) ? -1 : memfd_create(name, flags);
}

static inline int dmem__sys_punch(int fd, off_t off, off_t len)
{
  return dmem__fp_fail(DMEM__FP_FALLOCATE)
             ? -1
             : fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
}
#endif

#endif /* DMEM_FAILPOINT_H */
