/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opening a userfaultfd over shared memory (uffd.c). */
#ifndef DMEM_KVM_UFFD_H
#define DMEM_KVM_UFFD_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>

/* A new userfaultfd (O_CLOEXEC | O_NONBLOCK): the system call, or, where
 * that is refused for want of privilege, /dev/userfaultfd's
 * USERFAULTFD_IOC_NEW (a QEMU that libvirt runs without capabilities).
 * The descriptor, or -1 with err set. */
int dmem__uffd_open(char *err, size_t errlen);

/* The UFFD_FEATURE_* bits the kernel offers, into *have. DMEM_ENOTSUP (err
 * says why) without userfaultfd or without MISSING faults on shmem. */
int dmem__uffd_features(uint64_t *have, char *err, size_t errlen);

/* A new userfaultfd with `features` (UFFDIO_API), [base, base + len)
 * registered in MISSING mode, plus MINOR with UFFD_FEATURE_MINOR_SHMEM and
 * WP with UFFD_FEATURE_WP_HUGETLBFS_SHMEM, and the ioctls those modes need
 * checked. 0 with *out set; DMEM_ENOTSUP or DMEM_ESYS with err set. */
int dmem__uffd_register(int *out, uint64_t features, uint64_t base, uint64_t len, char *err,
                        size_t errlen);

/* Ends the registration of [base, base + len) through userfaultfd fd,
 * then wakes every thread waiting on a page there; errors are ignored (a
 * range half registered, or a process gone, is still let go). The wake is
 * not optional. UFFDIO_UNREGISTER wakes waiters only where the range was
 * registered for MISSING or MINOR faults, so a writer waiting in a range
 * registered for WP alone (a frame the agent mapped) would sleep on. And
 * it wakes before it changes the mapping: a woken thread that faults again
 * at once, under the per-VMA lock, finds the range still registered and
 * queues itself after the wake, to sleep forever (Linux 6.18: a writer
 * waiting in a MISSING and WP range, 2 times in 23,000 unregisters). Once
 * UFFDIO_UNREGISTER returns, every such thread is queued; the UFFDIO_WAKE
 * after it reaches them all. */
void dmem__uffd_unregister(int fd, uint64_t base, uint64_t len);

#endif
