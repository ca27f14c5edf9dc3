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

#endif
