/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* A vCPU in 64-bit user mode (see kvm_cpl3.h). */
#include "config.h"

#include "kvm_cpl3.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

struct kvm_cpuid2 *kvm_cpl3_cpuid(int kvm)
{
  for (unsigned n = 64; n <= 1024; n *= 2) {
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + n * sizeof(struct kvm_cpuid_entry2));
    if (!c)
      return NULL;
    c->nent = n;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0)
      return c;
    free(c);
    if (errno != E2BIG)
      return NULL;
  }
  return NULL;
}

int kvm_cpl3_setup(int vcpu, const struct kvm_cpuid2 *cpuid, const kvm_cpl3 *c, char *err,
                   size_t len)
{
  if (cpuid && ioctl(vcpu, KVM_SET_CPUID2, cpuid) != 0) {
    snprintf(err, len, "KVM_SET_CPUID2: %s", strerror(errno));
    return -1;
  }
  struct kvm_sregs s;
  if (ioctl(vcpu, KVM_GET_SREGS, &s) != 0) {
    snprintf(err, len, "KVM_GET_SREGS: %s", strerror(errno));
    return -1;
  }
  struct kvm_segment cs = {.base = 0,
                           .limit = 0xffffffff,
                           .selector = c->code_sel,
                           .type = 11,
                           .present = 1,
                           .dpl = 3,
                           .db = 0,
                           .s = 1,
                           .l = 1,
                           .g = 1};
  struct kvm_segment ds = cs;
  ds.selector = c->data_sel;
  ds.type = 3;
  ds.l = 0;
  ds.db = 1;
  s.cs = cs;
  s.ds = s.es = s.fs = s.gs = s.ss = ds;
  if (c->tss_base) {
    struct kvm_segment tr = {.base = c->tss_base,
                             .limit = c->tss_limit,
                             .selector = c->tss_sel,
                             .type = 11,
                             .present = 1};
    s.tr = tr;
    s.gdt.base = c->gdt_base;
    s.gdt.limit = c->gdt_limit;
    s.idt.base = c->idt_base;
    s.idt.limit = 0;
  }
  s.cr3 = c->cr3;
  s.cr4 |= 0x20;        /* PAE */
  s.efer |= 0x500;      /* LME | LMA */
  s.cr0 |= 0x80000001u; /* PG | PE */
  if (ioctl(vcpu, KVM_SET_SREGS, &s) != 0) {
    snprintf(err, len, "KVM_SET_SREGS (long mode, CPL 3): %s", strerror(errno));
    return -1;
  }
  struct kvm_regs r;
  memset(&r, 0, sizeof r);
  r.rflags = 0x3002; /* IOPL 3: OUT at CPL 3 */
  r.rip = c->rip;
  r.rsi = c->rsi;
  if (ioctl(vcpu, KVM_SET_REGS, &r) != 0) {
    snprintf(err, len, "KVM_SET_REGS: %s", strerror(errno));
    return -1;
  }
  return 0;
}
