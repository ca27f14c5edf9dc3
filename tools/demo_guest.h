/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The guests of `diffmem demo`: their content, their program and their
 * VM (demo_guest.c).
 *
 * A guest is one KVM VM with one vCPU over one dmem_kvm_region (slot 0 at
 * guest physical address 0). Its RAM has three parts, in this order:
 *
 *   content  the pages the guest only reads: an IMAGE file, or pages built
 *            from the machine's own binaries and libraries plus zero pages;
 *   data     pages the guest reads and writes (a heap);
 *   control  DG_CTL_PAGES pages: code, parameters, page tables.
 *
 * The vCPU runs in 64-bit mode at CPL 3 (on PVM hosts supervisor code is
 * emulated instruction by instruction, user code runs natively), with the
 * RAM identity-mapped by 2 MiB pages and IOPL 3 so that OUT works. Its
 * program is a loop driven by a 32-bit LCG (x = x * 1664525 + 1013904223,
 * two steps per operation: x1 picks the kind, x2 the place). With
 * h = x1 >> 16, an operation is
 *   h <  cold_thresh  a cold read: a dword anywhere in the content;
 *   h <  data_thresh  a data operation in the data window: a read, or
 *                     when x2's top bit is set a read-modify-write that
 *                     adds x1 >> 24 to the dword;
 *   otherwise         a hot read: a dword in the hot window of content.
 * Each window is 2^win_log dwords long and its start moves by step dwords
 * every 2^shift operations (modulo its area), so that pages go cold behind
 * it and are reclaimed, and come back when the window wraps round. Reads
 * are folded into a sum (sum = rotl(sum, 5) + value). Every 2^report_log
 * operations the vCPU reports with OUT to port 0x10; the host paces it
 * there and stops it there, reading the operation count and the sum from
 * its registers, so that the host can replay the LCG and know the exact
 * final content of every data page and the sum the guest must have seen.
 */
#ifndef DMEM_TOOLS_DEMO_GUEST_H
#define DMEM_TOOLS_DEMO_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#define DG_PAGE DMEM_PAGE_SIZE
/* Control pages: code, parameters, PML4, PDPT and 4 page directories
 * (2 MiB pages cover 4 GiB: the program's addresses are 32-bit). */
#define DG_CTL_PAGES 8
/* Largest guest, in pages. */
#define DG_MAX_PAGES ((uint64_t)1 << 20)

typedef struct dg_layout {
  uint64_t content_gfn, content_pages;
  uint64_t data_gfn, data_pages;
  uint64_t ctl_gfn;
  uint64_t npages; /* all three parts */
} dg_layout;

/* Content at gfn 0, data after it, control last. Returns 0, or -1 when
 * either part is empty or the guest exceeds DG_MAX_PAGES. */
int dg_layout_make(dg_layout *l, uint64_t content_pages, uint64_t data_pages);

typedef struct dg_program {
  uint32_t seed;
  unsigned report_log;               /* report every 2^report_log ops */
  uint32_t cold_thresh, data_thresh; /* out of 65536, see above */
  unsigned hot_win_log, hot_shift;   /* hot window in content */
  uint32_t hot_step;
  unsigned data_win_log, data_shift; /* data window (win_log <= 22) */
  uint32_t data_step;
} dg_program;

/* ---------------------------------------------------------------- content */

/* The machine's binaries and libraries (/usr/bin, the multiarch and plain
 * /usr/lib shared objects), listed once and shared by the guests. */
typedef struct dg_files dg_files;

/* Lists the files; NULL when none was found or out of memory. */
dg_files *dg_files_scan(void);
void dg_files_free(dg_files *f);

/* Fills n pages at dst with guest @guest's content: whole files in a
 * selection and an order of its own (two guests share about two thirds of
 * their files, not their layout), then zero_pages zero pages at the end.
 * Deterministic while the files do not change. Returns 0, or -1 when
 * reading failed (err says which file). */
int dg_fill_files(uint8_t *dst, uint64_t n, uint64_t zero_pages, const dg_files *f, unsigned guest,
                  char *err, size_t errlen);

/* Fills n heap-like pages: objects with pointers into a heap whose base
 * differs per guest, counters and names; a quarter of the pages hold
 * tables that are the same in every guest. Deterministic. */
void dg_fill_heap(uint8_t *dst, uint64_t n, unsigned guest);

/* Reads the whole pages of a raw image into dst (n pages). Returns 0 or -1
 * with err naming the file and offset. */
int dg_read_image(uint8_t *dst, uint64_t n, const char *path, char *err, size_t errlen);

/* ---------------------------------------------------------------- the VM */

typedef struct dg_guest dg_guest;

typedef struct dg_result {
  uint64_t ops;     /* operations done when it stopped at a report */
  uint32_t sum;     /* its sum of reads then */
  int stopped;      /* it stopped cleanly at a report */
  uint64_t reports; /* progress reports, each checked */
  uint64_t exits;   /* KVM_RUN returns */
  uint64_t cpu_ns;  /* CPU time of its thread (guest and KVM included) */
  uint64_t run_ns;  /* wall time inside KVM_RUN: running, or stalled on a
                       fault; the pacing sleeps between reports are not in it */
  char error[160];  /* the first error of its run loop, or "" */
} dg_result;

/* Guest RAM: a region of the KVM adapter (its mapping and size are used),
 * or, with region NULL, plain memory the caller mapped at addr (npages
 * pages, for example anonymous memory that KSM may merge). */
typedef struct dg_ram {
  dmem_kvm_region *region;
  void *addr;
  uint64_t npages;
} dg_ram;

/* Writes the control pages through the RAM's mapping and makes the VM and
 * its vCPU, with the RAM as memory slot 0 at guest physical 0. Returns 0,
 * or -1 with err set. */
int dg_guest_create(dg_guest **out, const dg_ram *ram, const dg_layout *l, const dg_program *p,
                    char *err, size_t errlen);
/* Stops the vCPU if it still runs, closes everything. NULL does nothing. */
void dg_guest_destroy(dg_guest *g);

/* Starts the vCPU's thread; the guest runs about ops_per_s operations a
 * second (paced at its reports), or flat out when 0. */
int dg_guest_start(dg_guest *g, double ops_per_s);
/* Asks the vCPU to stop at its next report. */
void dg_guest_stop(dg_guest *g);
/* Waits for the vCPU's thread; after timeout_ms it is forced out of the
 * guest (immediate_exit and a signal), and the result is not replayable.
 * Returns 0 when it stopped cleanly at a report, -1 otherwise. */
int dg_guest_join(dg_guest *g, unsigned timeout_ms);
/* 1 while the vCPU's thread runs (0 once it stopped or failed). */
int dg_guest_running(const dg_guest *g);
/* Operations reported so far (while it runs). */
uint64_t dg_guest_ops(const dg_guest *g);
/* CPU time of the vCPU's thread so far, in seconds (0 before it starts). */
double dg_guest_cpu_s(const dg_guest *g);
const dg_result *dg_guest_result(const dg_guest *g);

/* ---------------------------------------------------------------- probe */

/* A probe guest: one vCPU at CPL 3 that times single accesses, for side
 * channel measurements. The host gives a batch of guest physical
 * addresses; for each the guest executes
 *   lfence; rdtsc; lfence; ACCESS; lfence; rdtsc
 * and stores the TSC delta, then reports with OUT and the host's call
 * returns. ACCESS is a 1-byte read, or `lock orb $0` on the byte: one
 * access that needs the page writable (a write fault on an absent or
 * read-only page, copy-on-write included) and does not change it. The
 * delta includes the fences and rdtsc themselves (tens of cycles, see
 * an access to a hot line) and any host fault the access takes, served
 * while the vCPU waits. The TSC ticks at dg_tsc_per_ns(). */
typedef struct dg_probe dg_probe;

/* Control pages of a probe: the common DG_CTL_PAGES, its address list and
 * its results. */
#define DG_PROBE_PAGES (DG_CTL_PAGES + 2)
/* Most addresses in one batch: a page of them. */
#define DG_PROBE_MAX 512

/* Writes DG_PROBE_PAGES control pages at guest page ctl_gfn through the
 * RAM's mapping (they must lie in the RAM and below 4 GiB), and makes the
 * VM and its vCPU with the RAM as memory slot 0 at guest physical 0.
 * Returns 0, or -1 with err set. */
int dg_probe_create(dg_probe **out, const dg_ram *ram, uint64_t ctl_gfn, char *err, size_t errlen);
/* Runs one batch on the calling thread: n <= DG_PROBE_MAX addresses in
 * the RAM, below 4 GiB (the page tables map 4 GiB) and outside the
 * probe's control pages; write 0 reads, 1 writes. cycles[i] receives
 * the TSC delta of access i. The access list and the results go through
 * the control pages, so they are hot in the cache and TLB before the
 * first access. Returns 0, or -1 with err set: a bad address (nothing
 * run), KVM_RUN failing, or an unexpected exit such as a triple fault,
 * after which the probe refuses further batches. */
int dg_probe_run(dg_probe *p, const uint64_t *gpa, size_t n, int write, uint64_t *cycles, char *err,
                 size_t errlen);
/* Closes the VM (the RAM stays the caller's). NULL does nothing. */
void dg_probe_destroy(dg_probe *p);

/* TSC ticks per nanosecond, measured on the host once (rdtsc against
 * CLOCK_MONOTONIC over about 20 ms, on the first call); for converting
 * the probe's cycles to time. */
double dg_tsc_per_ns(void);

/* ---------------------------------------------------------------- replay */

/* Pages of the control part that differ from what dg_guest_create wrote;
 * mem is guest page 0. */
uint64_t dg_check_control(const uint8_t *mem, const dg_layout *l, const dg_program *p);

/* Replays ops operations: data (data_pages pages, holding the data part's
 * initial content) becomes its final content; content is the content
 * part. Returns the sum the guest must have computed. */
uint32_t dg_replay(uint8_t *data, const uint8_t *content, const dg_layout *l, const dg_program *p,
                   uint64_t ops);

#endif
