/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers of the KVM adapter's tests (test_kvm_region, test_kvm_guest):
 * page content, latency figures and a bare userfaultfd server to compare
 * the adapter's faults with (kvm_util.c), and a tiny KVM guest of our own
 * (kvm_guest.c).
 *
 * The guest. One VM, its RAM a dmem_kvm_region in slot 0 at guest physical
 * address 0, with 1 or 2 vCPUs in 64-bit mode at CPL 3 (identity-mapped
 * with 2 MiB pages, IOPL 3 so that OUT works; no IDT: any exception is a
 * triple fault, KVM_EXIT_SHUTDOWN, which the run loop reports). CPL 3
 * because on this project's PVM hosts supervisor-mode guest code is
 * emulated instruction by instruction (about 1 µs each) while user-mode
 * code runs natively.
 *
 * Each vCPU runs a loop of guest memory operations driven by a 32-bit LCG
 * (x = x * 1664525 + 1013904223): a quarter are reads of a shared,
 * read-only template area (summed), a quarter reads of its own data area
 * and half read-modify-writes of it. A data entry is 8 bytes, {tag, count}:
 * a write sets tag = the entry's index and increments count; every access
 * checks that the entry is {0, 0} or has the right tag, and counts
 * mismatches. Accesses stay in a window that moves through both areas as
 * the loop runs, so that pages go cold, get reclaimed by the engine (zero,
 * shared, patched, compressed) and are faulted back when it comes round.
 * Every 2^k operations the vCPU reports progress with OUT to port 0x10
 * (and the host may pace it there); at the end it reports OUT 0x11 with
 * its results in registers (HLT would fault at CPL 3). The host replays
 * the same LCG to compute the exact final content of every data page.
 */
#ifndef DMEM_TEST_KVM_GUEST_H
#define DMEM_TEST_KVM_GUEST_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#define KT_PAGE DMEM_PAGE_SIZE

/* ---------------------------------------------------------------- content */

enum kt_kind {
  KT_ZERO,    /* all zero */
  KT_DUP,     /* one of 4 text templates, shared by many pages */
  KT_SIMILAR, /* a reference page with a few words changed */
  KT_TEXT,    /* unique, compressible (words from a small vocabulary) */
  KT_RANDOM   /* unique, incompressible */
};

/* Fills a page of the kind; seed makes unique kinds unique. */
void kt_fill(uint8_t *page, enum kt_kind kind, uint64_t seed);

/* splitmix64 */
uint64_t kt_rand(uint64_t *state);

uint64_t kt_now_ns(void);

/* The q quantile of n samples in ns (sorts them), in µs. */
double kt_quantile_us(uint64_t *ns, size_t n, double q);

/* An engine as the tests want it: fixed seed, c4_passes, slice. */
int kt_engine(dmem_engine **out, unsigned c4_passes, unsigned slice_pages);
/* Runs the suite (Check's runner, CK_NORMAL) and frees it; returns the
 * process's exit status. The KVM tests' main()s call it after
 * kt_skip_unless_supported(): tests/runner.c has no way to skip. */
int kt_run_suite(Suite *s);
/* The region's counters (dmem_kvm_region_stats), asserted to be read. */
dmem_kvm_stats kt_region_stats(const dmem_kvm_region *r);

/* Skips the test program (exit 77) with a message when the adapter cannot
 * run here; returns otherwise. */
void kt_skip_unless_supported(const char *what);

/* A bare userfaultfd server, the yardstick for the adapter's faults: a
 * thread that sleeps in poll() and answers every MISSING fault on
 * [addr, addr + size) (shared memory) with UFFDIO_COPY of a page of 0x5a.
 * NULL when userfaultfd failed. */
typedef struct kt_bare kt_bare;
kt_bare *kt_bare_start(void *addr, size_t size);
void kt_bare_stop(kt_bare *b);

/* A bare round trip from a host thread: n touches (reads) of holes in a
 * fresh memfd served by kt_bare; the time of each goes to ns[]. Returns 0,
 * or -1 when userfaultfd failed. */
int kt_bare_uffd_latency(uint64_t *ns, size_t n);

/* ---------------------------------------------------------------- guest */

#define KT_MAX_VCPUS 2

/* Guest physical layout, in pages. */
#define KT_CODE_PAGE 1
#define KT_PARAM_PAGE 2 /* one page per vCPU: 2, 3 */
#define KT_PT_PAGE 4    /* PML4, PDPT, PD: 4, 5, 6 */
#define KT_TMPL_PAGE 16
#define KT_TMPL_PAGES 256 /* the template area; a power of two */
#define KT_DATA_PAGES 512 /* per vCPU; a power of two */
#define KT_GUEST_PAGES (KT_TMPL_PAGE + KT_TMPL_PAGES + KT_MAX_VCPUS * KT_DATA_PAGES)

/* The guest's programs: the loop described above, or a probe of fault
 * latency as a vCPU sees it: one vCPU reads a word of each page of its
 * data area in turn (the host fills them with compressible text) and
 * stores the TSC cycles each read took into the second data area. */
enum kt_program { KT_PROG_LOOP = 0, KT_PROG_TOUCH = 1 };

typedef struct kt_guest_config {
  enum kt_program program;
  unsigned nvcpus;      /* 1 or 2 (KT_PROG_TOUCH: 1) */
  uint64_t ops;         /* per vCPU */
  uint32_t seed;        /* LCG seed of vCPU 0; vCPU i uses seed + i */
  unsigned report_log;  /* report (and pace) every 2^report_log ops */
  unsigned win_log;     /* the window moves every 2^win_log ops */
  uint32_t win_entries; /* its size, in data entries or template dwords
                           (a power of two) */
  uint32_t win_step;    /* what it moves by, in the same units */
  int log_dirty;        /* slot with KVM_MEM_LOG_DIRTY_PAGES */
} kt_guest_config;

typedef struct kt_guest kt_guest;

/* Results of one vCPU. */
typedef struct kt_vcpu_result {
  int done;          /* it reported the end */
  uint64_t ops;      /* operations it reported at the end */
  uint32_t mismatch; /* entries it found wrong */
  uint32_t sum;      /* its template sum */
  uint64_t reports;  /* progress reports seen, each checked */
  uint64_t exits;    /* KVM_RUN returns */
  char error[160];   /* the first error of its run loop, or "" */
} kt_vcpu_result;

/* Writes the guest's code, parameters, page tables and templates into the
 * region's memory (before attach, through the mapping), makes the VM and
 * its vCPUs over the region (slot 0 at gpa 0). The region must have at
 * least KT_GUEST_PAGES pages. On failure, err says why; the return is
 * -1, or 77 when KVM cannot run such a guest here (skip). */
int kt_guest_create(kt_guest **out, dmem_kvm_region *r, const kt_guest_config *cfg, char *err,
                    size_t errlen);
void kt_guest_destroy(kt_guest *g);

/* Starts one thread per vCPU. */
int kt_guest_start(kt_guest *g);
/* Lets paced vCPUs past their next report (call after each scan). */
void kt_guest_tick(kt_guest *g);
/* Waits until every running vCPU waits at a report (or has ended);
 * returns 0, or -1 after timeout_ms. */
int kt_guest_wait_reports(kt_guest *g, unsigned timeout_ms);
/* 1 while any vCPU thread runs. */
int kt_guest_running(kt_guest *g);
/* Stops the vCPUs if they still run (immediate_exit and a signal), joins. */
void kt_guest_join(kt_guest *g);
const kt_vcpu_result *kt_guest_result(kt_guest *g, unsigned vcpu);

/* KT_PROG_TOUCH: the time each of the n first reads took, in ns (from the
 * guest's TSC cycles and the host's TSC rate). Returns the reads copied. */
size_t kt_guest_touch_ns(kt_guest *g, uint64_t *ns, size_t n);
/* KT_PROG_TOUCH: punches the pages the guest will read (before a run that
 * kt_bare serves instead of the engine). */
int kt_guest_punch_data(kt_guest *g);

/* The guest's expected memory after a full run, by replay: returns the
 * number of pages that differ from @mem (the region's content, or a copy),
 * and describes the first in msg. Also checks the vCPUs' sums. */
uint64_t kt_guest_verify(kt_guest *g, const uint8_t *mem, char *msg, size_t msglen);

#endif
