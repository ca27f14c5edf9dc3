/**
 * @file diffmem/kvm.h
 * @brief libdiffmem-kvm: the KVM and userfaultfd binding (Linux only).
 *
 * Link with `pkg-config --cflags --libs libdiffmem-kvm`.
 *
 * Threads: dmem_kvm_probe() may be called from any thread.
 */
#ifndef DIFFMEM_KVM_H
#define DIFFMEM_KVM_H

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What this host offers the KVM adapter; filled by dmem_kvm_probe(). */
typedef struct dmem_kvm_caps {
  /** KVM_GET_API_VERSION of /dev/kvm, or -1 if it could not be opened. */
  int kvm_api_version;
  /** The kernel reports KVM_CAP_USER_MEMORY (guest RAM in user memory). */
  int user_memory;
  /** The kernel reports KVM_CAP_MEMORY_FAULT_INFO. */
  int memory_fault_info;
  /** The kernel reports KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (KVM_CLEAR_DIRTY_LOG). */
  int clear_dirty_log;
  /** userfaultfd(2) could be opened. */
  int uffd;
  /** The UFFD_FEATURE_* bits the kernel reported through UFFDIO_API. */
  uint64_t uffd_features;
  /** Why the adapter cannot run here; empty when dmem_kvm_probe() returned 0. */
  char reason[256];
} dmem_kvm_caps;

/**
 * Probes /dev/kvm and userfaultfd for what the adapter needs: a KVM with
 * user memory, and userfaultfd with MISSING faults on shared memory.
 *
 * @param out filled in every case, also on failure.
 * @retval 0 the adapter can run here.
 * @retval DMEM_ENOTSUP it cannot; out->reason says why (for example
 *         "cannot open /dev/kvm: No such file or directory").
 * @retval DMEM_EINVAL out is NULL.
 */
DMEM_API int dmem_kvm_probe(dmem_kvm_caps *out);

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_KVM_H */
