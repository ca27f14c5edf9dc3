/**
 * @file diffmem/xen.h
 * @brief libdiffmem-xen: the Xen binding through libxenctrl (Xen 4.17).
 *
 * Link with `pkg-config --cflags --libs libdiffmem-xen`.
 *
 * Threads: dmem_xen_probe() may be called from any thread.
 */
#ifndef DIFFMEM_XEN_H
#define DIFFMEM_XEN_H

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What the running hypervisor is; filled by dmem_xen_probe(). */
typedef struct dmem_xen_info {
  /** Xen's major and minor version, or -1 when no hypervisor answered. */
  int major, minor;
  /** Why the adapter cannot run here; empty when dmem_xen_probe() returned 0. */
  char reason[256];
} dmem_xen_info;

/**
 * Opens libxenctrl's interface to the hypervisor and asks its version.
 *
 * @param out filled in every case, also on failure.
 * @retval 0 a Xen hypervisor answered.
 * @retval DMEM_ENOTSUP no hypervisor could be reached; out->reason carries
 *         libxenctrl's own message, such as "cannot open /dev/xen/privcmd:
 *         No such file or directory".
 * @retval DMEM_EINVAL out is NULL.
 */
DMEM_API int dmem_xen_probe(dmem_xen_info *out);

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_XEN_H */
