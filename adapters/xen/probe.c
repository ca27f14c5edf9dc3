/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Is there a Xen hypervisor to talk to? The default call table's open
 * keeps libxenctrl's first error as the reason instead of printing it on
 * the caller's stderr. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xenctrl.h>

#include "xen_internal.h"

int dmem_xen_probe(dmem_xen_info *out)
{
  if (!out)
    return DMEM_EINVAL;
  if (out->version != DMEM_XEN_INFO_VERSION)
    return DMEM_EVERSION;
  memset(out, 0, sizeof *out);
  out->version = DMEM_XEN_INFO_VERSION;
  out->major = out->minor = -1;
  void *hv;
  int rc = dmem__xen_default_open(&hv, out->reason, sizeof out->reason);
  if (rc)
    return rc == DMEM_ENOMEM ? rc : DMEM_ENOTSUP;
  int v = xc_version(dmem__xen_default_xch(hv), XENVER_version, NULL);
  int e = errno;
  dmem__xen_default_close(hv);
  if (v < 0) {
    snprintf(out->reason, sizeof out->reason, "xc_version failed: %s", strerror(e));
    return DMEM_ENOTSUP;
  }
  out->major = v >> 16;
  out->minor = v & 0xffff;
  out->reason[0] = '\0';
  return 0;
}
