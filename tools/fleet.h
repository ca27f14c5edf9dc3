/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fleet: the guests of `diffmem demo` (demo_guest.h) with their RAM, run
 * together, measured by the kernel's accounting and verified page by page.
 * `diffmem demo` runs one fleet on the engine; `diffmem bench ksm` runs the
 * same fleet three times, on the engine, under KSM and on plain memory, so
 * that the three see the same content and the same guest program.
 *
 * Where the guests' RAM lives:
 *   FLEET_ENGINE     a dmem_kvm_region each (a memfd, mapped shared), all
 *                    attached to one engine (one sharing domain);
 *   FLEET_MERGEABLE  anonymous memory marked MADV_MERGEABLE, for KSM;
 *   FLEET_PLAIN      anonymous memory that nothing reclaims (the baseline).
 *
 * Host memory, by the kernel's accounting: the memfds' allocated blocks
 * (the guests', and the engine's frames and blobs) plus this process's
 * proportional anonymous memory (Pss_Anon in /proc/self/smaps_rollup)
 * above what it held before the fleet was made, so a page that KSM merged
 * counts once however many guests map it, and the engine's metadata
 * counts as the anonymous memory it is.
 *
 * Threads: one vCPU thread per guest (demo_guest.c), the adapter's fault
 * threads (FLEET_ENGINE), and the caller's, which runs fleet_run() and
 * everything else here. */
#ifndef DMEM_TOOLS_FLEET_H
#define DMEM_TOOLS_FLEET_H

#include <stdint.h>
#include <sys/types.h>

#include <diffmem/daemon.h>
#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "demo_guest.h"

#define FLEET_MAX_GUESTS 64

/* FLEET_DAEMON: each guest's RAM is a sealed memfd mapped shared, served
 * by diffmemd through dmem_kvm_client once fleet_attach_daemon() is called
 * (diffmem demo --processes runs one such guest per process). */
typedef enum fleet_ram { FLEET_ENGINE, FLEET_MERGEABLE, FLEET_PLAIN, FLEET_DAEMON } fleet_ram;

typedef struct fleet_opts {
  const char *who; /* prefix of messages, "diffmem demo" */
  fleet_ram ram;
  unsigned guests, guest_mib; /* generated guests, when no images */
  int nimages;
  char **images;      /* one guest per raw image */
  int read_heavy;     /* the guests read a wide, moving window of their content */
  int no_cow;         /* FLEET_ENGINE: shared pages are copied on a read, never mapped */
  int secure;         /* FLEET_ENGINE: the engine's secure mode (dmem_engine_options) */
  unsigned first;     /* the number of the first guest: its content, data and program */
  const char *socket; /* FLEET_DAEMON: diffmemd's */
} fleet_opts;

typedef struct fleet_vm {
  const char *image; /* NULL: generated content */
  uint64_t zero_pages;
  dg_layout layout;
  dg_program prog;
  dmem_kvm_region *region; /* FLEET_ENGINE */
  uint8_t *anon;           /* the others (FLEET_DAEMON: the memfd's mapping) */
  int memfd;               /* FLEET_DAEMON */
  dmem_kvm_client *client; /* FLEET_DAEMON, once attached */
  dg_guest *guest;
  dmem_vm *vm;
  /* verification */
  uint64_t checked, mismatches;
  int sum_bad, unreplayed, verify_failed;
} fleet_vm;

typedef struct fleet {
  fleet_opts o;
  fleet_vm *vms;
  unsigned n;
  dg_files *files;
  dmem_engine *engine;   /* FLEET_ENGINE */
  uint64_t base_anon_kb; /* Pss_Anon before the fleet was made */
} fleet;

typedef struct fleet_mem {
  uint64_t memfd_bytes; /* the regions' memfds, the engine's frames and blobs (FLEET_ENGINE) */
  uint64_t anon_kb;     /* Pss_Anon of this process, above base_anon_kb */
} fleet_mem;

/* What a run did, filled by fleet_run(), fleet_stop() and fleet_verify(). */
typedef struct fleet_totals {
  double secs;         /* the run's length */
  double scan_cpu_s;   /* the scanning thread inside dmem_engine_scan() */
  double other_cpu_s;  /* process CPU less the scanning thread and the vCPUs */
  double vcpu_cpu_s;   /* the vCPU threads */
  double vcpu_run_s;   /* their wall time inside KVM_RUN */
  uint64_t scans, ops; /* scans made; guest operations done */
  uint64_t checked, mismatches, sum_bad, unreplayed;
} fleet_totals;

/* The guests' count from --guests and IMAGEs, as demo and bench ksm take
 * them: at most FLEET_MAX_GUESTS images, --guests equal to their number if
 * both are given, 4 when neither is. Returns 0, or EXIT_USAGE after saying
 * why as @p who. */
int fleet_count_guests(unsigned *guests, int nimages, const char *who);

/* Makes every guest's RAM, fills it (content, data, control pages) and
 * makes its VM; with FLEET_ENGINE also the engine, with every region
 * attached. Returns 0, or -1 after saying why on stderr. */
int fleet_create(fleet **out, const fleet_opts *o);
/* Stops the guests, detaches every region (every page back), frees all. */
void fleet_destroy(fleet *f);

/* RAM as diffmemd takes it: a memfd of bytes named name, sealed against
 * shrinking and growing (the daemon maps it), mapped shared. Returns 0
 * with *fd and *addr set, or -1 with errno set and nothing left open. */
int fleet_sealed_ram(int *fd, void **addr, size_t bytes, const char *name);

/* FLEET_DAEMON: hands every guest's RAM to diffmemd at o.socket. Returns 0
 * or -1 (said). */
int fleet_attach_daemon(fleet *f);

/* Starts every vCPU, paced at the million operations a second that the
 * guests' program is made for. Returns 0 or -1 (said). */
int fleet_start(fleet *f);

/* Pss_Anon of process pid (0: this one), in KiB. Returns 0, or -1. */
int fleet_pss_anon(uint64_t *kb, pid_t pid);

/* Host memory now. Returns 0, or -1 when a memfd or smaps could not be read. */
int fleet_sample(fleet_mem *m, const fleet *f);
uint64_t fleet_mem_kb(const fleet_mem *m);
/* 100 * (before - after) / before. */
double fleet_saved_pct(const fleet_mem *before, const fleet_mem *after);

/* CPU seconds that serving the engine cost so far: the scanning thread's
 * (scan_cpu_s, kept by fleet_run) plus every thread of this process that
 * is neither a vCPU nor the caller's (the adapter's fault threads). */
double fleet_engine_cpu_s(const fleet *f, const fleet_totals *t);

/* Runs for @p seconds: with FLEET_ENGINE, scans from the calling thread at
 * the demo's rate (all guest memory every 1.5 s); every @p tick_s calls
 * @p tick with the time since the start. Stops early, returning -1 after
 * saying why, when a scan or a guest fails, and returns 1 when *stop
 * became non-zero (a signal). Returns 0 otherwise. */
int fleet_run(fleet_totals *t, fleet *f, double seconds, double tick_s,
              void (*tick)(void *ud, double t), void *ud, volatile const int *stop);

/* Stops every vCPU at its next report and joins it; adds up operations,
 * vCPU CPU and run time into t. */
void fleet_stop(fleet *f, fleet_totals *t);

/* Reads every page of every guest back through its mapping (reclaimed
 * pages fault in) and compares it with its source, the replay of the
 * guest's writes and its code; adds up into t. Returns 0, or -1 when some
 * guest could not be verified at all. */
int fleet_verify(fleet_totals *t, fleet *f);

/* The regions' counters merged (FLEET_ENGINE; zeros otherwise). */
void fleet_kvm_stats(dmem_kvm_stats *out, const fleet *f);

/* Pages of all guests, and of their content and data parts. */
void fleet_pages(const fleet *f, uint64_t *pages, uint64_t *content, uint64_t *data);

double fleet_now_s(void);
double fleet_thread_cpu_s(void);
double fleet_process_cpu_s(void);

#endif
