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

int dmem__uffd_features(uint64_t *have, char *err, size_t errlen)
{
  int probe = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (probe < 0) {
    snprintf(err, errlen, "cannot open userfaultfd: %s", strerror(errno));
    return DMEM_ENOTSUP;
  }
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
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open userfaultfd: %s", strerror(errno));
    return DMEM_ENOTSUP;
  }
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
