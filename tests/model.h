/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The randomized model test of the engine, shared by tests/test_model.c
 * (the Check suite run by make check) and tests/stress_model.c (a longer
 * run from the command line).
 *
 * One or more VMs on the in-memory adapter start with content drawn from
 * a small pool of templates (so that zero, identical and similar pages
 * abound), and a shadow copy of every page. Random operations follow:
 * guest reads (compared with the shadow) and writes (small edits, copies
 * of other pages, zeroing), scans with small budgets, I/O hints after VMM
 * writes, dmem_vm_dirty, explicit faults, dmem_vm_read (compared), and now
 * and then a detach and reattach. Guest accesses set the bits that drive
 * the clock, with a hot set taking most of them, so that every technique
 * occurs. At the end every page is read and compared again, the VMs are
 * detached and the adapter's memory compared with the shadow.
 *
 * In the concurrent configuration a guest thread does the reads, writes,
 * hints and faults (it alone writes, so the shadow stays exact) while the
 * main thread scans and samples, and the engine's own thread runs for a
 * while. */
#ifndef DMEM_TEST_MODEL_H
#define DMEM_TEST_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include <diffmem/diffmem.h>

#define MODEL_MAXVM 4

/* Where the VMs' memory lives: the in-memory adapter (memadapter.h) by
 * default, or another adapter with its hypervisor (the Xen adapter over
 * the simulated hypervisor, say). Every call takes the VM's handle, made by
 * @c create. */
typedef struct model_config model_config;
typedef struct model_backend {
  const char *name;
  /* VM number @v of @cfg->npages pages; NULL on failure. */
  void *(*create)(const model_config *cfg, unsigned v);
  void (*destroy)(void *g);
  /* Setup before attach: the page holds @content. */
  void (*load)(void *g, uint64_t gfn, const void *content);
  int (*attach)(dmem_vm **out, dmem_engine *e, void *g);
  /* dmem_vm_detach() and forgetting the VM. */
  int (*detach)(void *g, dmem_vm *vm);
  /* The guest's side (faults served through the engine), as memadapter.h's
   * mem_guest_read and mem_write. */
  int (*guest_read)(void *g, uint64_t gfn, void *buf);
  int (*write)(void *g, uint64_t gfn, size_t off, const void *d, size_t len, unsigned bits);
  /* Host's view without faults: DMEM_ENOENT for an absent page. */
  int (*peek)(void *g, uint64_t gfn, void *buf);
  int (*present)(void *g, uint64_t gfn);
  int (*mapped)(void *g, uint64_t gfn);
  /* Adapter operations fail with probability @p (DMEM_EIO or the like). */
  void (*fail_prob)(void *g, double p);
  /* Contract violations seen, and the first one's words. */
  uint64_t (*violations)(void *g, const char **msg);
  /* The concurrent run starts (1) and ends (0); may be NULL. */
  void (*concurrent)(void *g, int on);
} model_backend;

/* The in-memory adapter's backend (the default). */
extern const model_backend model_mem_backend;

struct model_config {
  const char *name;
  unsigned nvms;    /* 1 .. MODEL_MAXVM */
  uint64_t npages;  /* per VM */
  uint64_t ops;     /* operations (the guest thread's, when concurrent) */
  uint64_t seed;
  int share;        /* adapter offers share(); engine maps shared C2 pages */
  int protect;      /* adapter offers protect()/unprotect() */
  int swap;         /* swap file under /tmp and a small store limit */
  int concurrent;   /* guest thread against a scanning main thread */
  int bg_thread;    /* with concurrent: dmem_engine_start() for a while */
  int reattach;     /* detach and reattach a VM now and then */
  double fail_p;    /* adapter failure probability per operation; 0: none */
  const model_backend *backend; /* NULL: model_mem_backend */
};

typedef struct model_result {
  uint64_t ops;             /* operations done */
  uint64_t mismatches;      /* reads that differed from the shadow */
  char mismatch[512];       /* the first one, in words */
  uint64_t errors;          /* unexpected return codes */
  char error[256];          /* the first one */
  uint64_t violations;      /* of the adapter contract, per memadapter */
  char violation[256];      /* the first one */
  uint64_t kinds_seen[7];   /* samples of dmem_vm_page() per kind */
  uint64_t states_seen[5];  /* and per clock state */
  uint64_t reattaches;
  dmem_stats stats;         /* engine totals before the final detach */
  double seconds;
} model_result;

/* Runs one configuration. @return 0 when there was no mismatch, no
 * unexpected error and no contract violation. */
int model_run(model_result *out, const model_config *cfg);

/* The standard configurations, with @total_ops shared among them and
 * seeds from @seed. @return how many were written (at most @max). */
size_t model_configs(model_config *out, size_t max, uint64_t total_ops, uint64_t seed);

/* model_configs() with the total operations from environment variable
 * @ops_var (default 1,000,000) and the seed from DMEM_MODEL_SEED (default 1),
 * each run through @backend (NULL: the in-memory adapter). */
size_t model_configs_env(model_config *out, size_t max, const char *ops_var,
                         const model_backend *backend);

/* Runs one configuration inside a Check test, prints its line, and asserts
 * what every run must show: no mismatch, error or contract violation, all
 * operations done, merges and faults, and each technique seen (all of them
 * except in the short concurrent run). */
void model_run_checked(const model_config *cfg);

/* One line per configuration: ops, time, merges, kinds seen, failures. */
void model_print(FILE *f, const model_config *cfg, const model_result *res);

#endif
