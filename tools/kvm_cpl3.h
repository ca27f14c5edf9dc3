/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Our small KVM guests (the demo's and the KVM tests') run 64-bit code at
 * CPL 3: on the PVM hosts we run on, supervisor-mode guest code is
 * emulated instruction by instruction, user mode runs natively. This puts
 * a vCPU in that mode; the guest's page tables, code and (optionally) its
 * GDT and TSS are the caller's. Shared by tools/demo_guest.c and
 * tests/kvm_guest.c. */
#ifndef DMEM_TOOLS_KVM_CPL3_H
#define DMEM_TOOLS_KVM_CPL3_H

#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

typedef struct kvm_cpl3 {
  uint64_t cr3;            /* guest-physical address of the PML4 */
  uint64_t rip, rsi;       /* entry point and its argument */
  uint16_t code_sel;       /* flat 64-bit code, RPL 3 */
  uint16_t data_sel;       /* flat data, RPL 3 */
  /* A GDT and TSS of the guest's own (0: keep KVM's defaults). The TSS's
   * I/O bitmap decides which ports OUT may use at CPL 3. */
  uint64_t gdt_base, idt_base, tss_base;
  uint16_t gdt_limit, tss_limit, tss_sel;
} kvm_cpl3;

/* KVM_GET_SUPPORTED_CPUID of /dev/kvm's fd @kvm, or NULL. free() it. */
struct kvm_cpuid2 *kvm_cpl3_cpuid(int kvm);

/* Long mode, paging, flat segments at CPL 3, IOPL 3 (OUT at CPL 3), and
 * the registers of @c. @cpuid may be NULL. @return 0, or -1 with the
 * failed ioctl named in @err. */
int kvm_cpl3_setup(int vcpu, const struct kvm_cpuid2 *cpuid, const kvm_cpl3 *c, char *err,
                   size_t len);

#endif
