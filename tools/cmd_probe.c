/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem probe: what this host offers libdiffmem (KVM, userfaultfd, Xen,
 * KSM), so that a user knows which adapter will run before trying one. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <diffmem/diffmem.h>
#if DMEM_TOOL_KVM
#include <diffmem/kvm.h>
#include <linux/userfaultfd.h>
#endif
#if DMEM_TOOL_XEN
#include <diffmem/xen.h>
#endif

#include "cmd.h"
#include "json.h"
#include "memsrc.h"

static int run(int argc, char **argv)
{
  int json = 0;
  static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
  optind = 0;
  for (int c; (c = cmd_getopt(&dmem_cmd_probe, argc, argv, opts)) != -1;) {
    if (c == '?')
      return EXIT_USAGE;
    json = 1;
  }
  if (optind < argc)
    return cmd_usage_error(&dmem_cmd_probe, "probe takes no operand ('%s')", argv[optind]);
  const char *kvm_state = "not built";
  const char *xen_state = "not built";
  char kvm_detail[320] = "", xen_detail[320] = "";
#if DMEM_TOOL_KVM
  dmem_kvm_caps caps = DMEM_KVM_CAPS_INIT;
  if (dmem_kvm_probe(&caps) == 0) {
    kvm_state = "ready";
    snprintf(kvm_detail, sizeof kvm_detail,
             "api %d, uffd minor-shmem %s, wp-shmem %s, sigbus %s, memory-fault-info %s",
             caps.kvm_api_version, caps.uffd_features & UFFD_FEATURE_MINOR_SHMEM ? "yes" : "no",
             caps.uffd_features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM ? "yes" : "no",
             caps.uffd_features & UFFD_FEATURE_SIGBUS ? "yes" : "no",
             caps.memory_fault_info ? "yes" : "no");
  } else {
    kvm_state = "unavailable";
    snprintf(kvm_detail, sizeof kvm_detail, "%s", caps.reason);
  }
#endif
#if DMEM_TOOL_XEN
  dmem_xen_info xi = DMEM_XEN_INFO_INIT;
  if (dmem_xen_probe(&xi) == 0) {
    xen_state = "ready";
    snprintf(xen_detail, sizeof xen_detail, "Xen %d.%d", xi.major, xi.minor);
  } else {
    xen_state = "unavailable";
    snprintf(xen_detail, sizeof xen_detail, "%s", xi.reason);
  }
#endif
  long ksm_run = -1;
  uint64_t run_value;
  if (memsrc_read_u64(&run_value, "/sys/kernel/mm/ksm/run") == 0)
    ksm_run = (long)run_value;
  if (json) {
    printf("{\"schema\":%d,\"version\":", DMEM_JSON_SCHEMA);
    json_str(stdout, dmem_version());
    printf(",\"kvm\":{\"state\":\"%s\",\"detail\":", kvm_state);
    json_str(stdout, kvm_detail);
    printf("},\"xen\":{\"state\":\"%s\",\"detail\":", xen_state);
    json_str(stdout, xen_detail);
    printf("},\"ksm_run\":%ld}\n", ksm_run);
  } else {
    printf("libdiffmem %s\n", dmem_version());
    printf("  KVM adapter : %s%s%s\n", kvm_state, kvm_detail[0] ? ": " : "", kvm_detail);
    printf("  Xen adapter : %s%s%s\n", xen_state, xen_detail[0] ? ": " : "", xen_detail);
    if (ksm_run < 0)
      printf("  Linux KSM   : not present\n");
    else
      printf("  Linux KSM   : present (run=%ld)\n", ksm_run);
  }
  /* Whether either adapter can serve a guest here: what a script asks. */
  return strcmp(kvm_state, "ready") == 0 || strcmp(xen_state, "ready") == 0 ? 0 : 1;
}

const dmem_cmd dmem_cmd_probe = {
    .name = "probe",
    .summary = "show which adapters can run on this host",
    .usage = "usage: diffmem probe [--json]\n"
             "\n"
             "Reports whether the KVM adapter (/dev/kvm and userfaultfd) and the Xen\n"
             "adapter (a running Xen hypervisor) can run here, and whether Linux KSM\n"
             "is present for comparisons. Exit status 1 when neither adapter can.\n",
    .run = run,
};
