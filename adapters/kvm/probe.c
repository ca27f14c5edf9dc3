/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* What this host's KVM and userfaultfd offer the adapter. Each step says in
 * out->reason what failed, so that a test can skip with a clear message. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <diffmem/kvm.h>

#include "uffd.h"

#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232
#endif

static int kvm_caps(dmem_kvm_caps *out)
{
  int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    snprintf(out->reason, sizeof out->reason, "cannot open /dev/kvm: %s", strerror(errno));
    return DMEM_ENOTSUP;
  }
  out->kvm_api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
  out->user_memory = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) > 0;
  out->memory_fault_info = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_FAULT_INFO) > 0;
  out->clear_dirty_log = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0;
  close(fd);
  if (out->kvm_api_version != KVM_API_VERSION) {
    snprintf(out->reason, sizeof out->reason, "/dev/kvm has API version %d, not %d",
             out->kvm_api_version, KVM_API_VERSION);
    return DMEM_ENOTSUP;
  }
  if (!out->user_memory) {
    snprintf(out->reason, sizeof out->reason, "KVM lacks KVM_CAP_USER_MEMORY");
    return DMEM_ENOTSUP;
  }
  return 0;
}

static int uffd_caps(dmem_kvm_caps *out)
{
  int fd = dmem__uffd_open(out->reason, sizeof out->reason);
  if (fd < 0)
    return DMEM_ENOTSUP;
  out->uffd = 1;
  /* Asking for features 0 returns every feature the kernel has. */
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  if (ioctl(fd, UFFDIO_API, &api) < 0) {
    snprintf(out->reason, sizeof out->reason, "UFFDIO_API failed: %s", strerror(errno));
    close(fd);
    return DMEM_ENOTSUP;
  }
  close(fd);
  out->uffd_features = api.features;
  if (!(api.features & UFFD_FEATURE_MISSING_SHMEM)) {
    snprintf(out->reason, sizeof out->reason,
             "userfaultfd lacks UFFD_FEATURE_MISSING_SHMEM (faults on memfd memory)");
    return DMEM_ENOTSUP;
  }
  return 0;
}

int dmem_kvm_probe(dmem_kvm_caps *out)
{
  if (!out)
    return DMEM_EINVAL;
  if (out->version != DMEM_KVM_CAPS_VERSION)
    return DMEM_EVERSION;
  memset(out, 0, sizeof *out);
  out->version = DMEM_KVM_CAPS_VERSION;
  out->kvm_api_version = -1;
  int rc = kvm_caps(out);
  if (rc == 0)
    rc = uffd_caps(out);
  return rc;
}
