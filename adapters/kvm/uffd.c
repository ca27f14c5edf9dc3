/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Opening a userfaultfd over shared memory: what a region does for itself
 * and what the diffmemd client does for the daemon. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd.h"

/* <linux/userfaultfd.h> before 6.1 lacks the device's ioctl. */
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

int dmem__uffd_open(char *err, size_t errlen)
{
  const int flags = O_CLOEXEC | O_NONBLOCK;
  int fd = (int)syscall(SYS_userfaultfd, flags);
  if (fd >= 0)
    return fd;
  int sys_errno = errno;
  if (sys_errno != EPERM) {
    snprintf(err, errlen, "cannot open userfaultfd: %s", strerror(sys_errno));
    return -1;
  }
  /* Without CAP_SYS_PTRACE and with vm.unprivileged_userfaultfd=0 the
   * system call refuses; /dev/userfaultfd (Linux 6.1) is governed by its
   * file mode instead, and its descriptors handle kernel faults too. */
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) {
    snprintf(err, errlen,
             "cannot open userfaultfd: %s (needs CAP_SYS_PTRACE or "
             "vm.unprivileged_userfaultfd=1), nor /dev/userfaultfd: %s",
             strerror(sys_errno), strerror(errno));
    return -1;
  }
  fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
  int e = errno;
  close(dev);
  if (fd < 0)
    snprintf(err, errlen, "cannot open userfaultfd: %s; /dev/userfaultfd: USERFAULTFD_IOC_NEW: %s",
             strerror(sys_errno), strerror(e));
  return fd;
}

int dmem__uffd_features(uint64_t *have, char *err, size_t errlen)
{
  int probe = dmem__uffd_open(err, errlen);
  if (probe < 0)
    return DMEM_ENOTSUP;
  /* UFFDIO_API with features 0 reports every feature; it may be called
   * once per descriptor, so the real one is opened afterwards. */
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  int rc = ioctl(probe, UFFDIO_API, &api), e = errno;
  close(probe);
  if (rc != 0) {
    snprintf(err, errlen, "UFFDIO_API: %s", strerror(e));
    return DMEM_ENOTSUP;
  }
  if (!(api.features & UFFD_FEATURE_MISSING_SHMEM)) {
    snprintf(err, errlen, "userfaultfd lacks MISSING faults on shared memory");
    return DMEM_ENOTSUP;
  }
  *have = api.features;
  return 0;
}

int dmem__uffd_register(int *out, uint64_t features, uint64_t base, uint64_t len, char *err,
                        size_t errlen)
{
  uint64_t modes = UFFDIO_REGISTER_MODE_MISSING;
  uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);
  if (features & UFFD_FEATURE_MINOR_SHMEM) {
    modes |= UFFDIO_REGISTER_MODE_MINOR;
    need |= 1ull << _UFFDIO_CONTINUE;
  }
  if (features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) {
    modes |= UFFDIO_REGISTER_MODE_WP;
    need |= 1ull << _UFFDIO_WRITEPROTECT;
  }
  int fd = dmem__uffd_open(err, errlen);
  if (fd < 0)
    return DMEM_ENOTSUP;
  struct uffdio_api api = {.api = UFFD_API, .features = features};
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    snprintf(err, errlen, "UFFDIO_API with features %#llx: %s", (unsigned long long)features,
             strerror(errno));
    close(fd);
    return DMEM_ENOTSUP;
  }
  struct uffdio_register reg = {.range = {.start = base, .len = len}, .mode = modes};
  if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
    snprintf(err, errlen, "UFFDIO_REGISTER of %llu bytes at %#llx: %s", (unsigned long long)len,
             (unsigned long long)base, strerror(errno));
    close(fd);
    return DMEM_ESYS;
  }
  if ((reg.ioctls & need) != need) {
    snprintf(err, errlen, "the registered range lacks ioctls %#llx",
             (unsigned long long)(need & ~reg.ioctls));
    close(fd); /* closing also unregisters */
    return DMEM_ENOTSUP;
  }
  *out = fd;
  return 0;
}

void dmem__uffd_unregister(int fd, uint64_t base, uint64_t len)
{
  struct uffdio_range rg = {.start = base, .len = len};
  (void)ioctl(fd, UFFDIO_UNREGISTER, &rg);
  (void)ioctl(fd, UFFDIO_WAKE, &rg);
}
