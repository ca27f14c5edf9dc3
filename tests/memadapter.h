/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* An in-memory adapter for the engine's tests: dmem_adapter_ops over plain
 * arrays, with the guest's side (reads and writes that fault through the
 * engine), failure injection per operation, call counters, and checks of
 * the adapter contract (adapter.h) that the engine must keep.
 *
 * Each page has a private 4096-byte buffer, a present flag, a mapped frame
 * (set by share(): the guest then sees the frame; a guest write copies it
 * into the private buffer, copy-on-write, and drops the mapping), a
 * write-protect flag and referenced/modified bits. While a page is mapped,
 * its private buffer holds a snapshot of the frame, so that a frame the
 * engine changes or frees under a mapping shows up as a contract violation.
 *
 * Threads. In thread-safe mode one mutex guards the page table and a guest
 * write to a protected page waits on a condition variable until the engine
 * evicts, shares, installs or unprotects the page. The guest helpers never
 * hold the mutex while they call dmem_vm_fault(): the engine calls the
 * operations with its own lock held, so the lock order is engine, adapter.
 * Without thread-safe mode, everything must run on one thread.
 */
#ifndef DMEM_TEST_MEMADAPTER_H
#define DMEM_TEST_MEMADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/diffmem.h>

/* The operations, for counters and failure injection. */
typedef enum mem_op {
  MEM_OP_READ,
  MEM_OP_BITS,
  MEM_OP_PROTECT,
  MEM_OP_UNPROTECT,
  MEM_OP_EVICT,
  MEM_OP_SHARE,
  MEM_OP_INSTALL,
  MEM_OP_COUNT
} mem_op;

typedef struct mem_options {
  uint64_t npages;
  int share;      /* offer share() */
  int protect;    /* offer protect() and unprotect() */
  int threadsafe; /* mutex and condvar; see above */
  uint64_t seed;  /* of the PRNG behind mem_fail_prob() */
  uint32_t sharing_domain; /* at attach (dmem_vm_options) */
} mem_options;

typedef struct mem_adapter mem_adapter;

/* NULL when out of memory. */
mem_adapter *mem_create(const mem_options *opts);
/* Call after the VM is detached (or its engine destroyed). NULL is fine. */
void mem_destroy(mem_adapter *m);
const dmem_adapter_ops *mem_ops(const mem_adapter *m);
uint64_t mem_npages(const mem_adapter *m);

/* The VM whose faults the guest helpers raise. */
void mem_set_vm(mem_adapter *m, dmem_vm *vm);
/* dmem_vm_attach() over this adapter, then mem_set_vm(). */
int mem_attach(dmem_vm **out, dmem_engine *engine, mem_adapter *m, const char *name);

/* Host side, no faults, no bits. mem_load makes the page present private
 * memory holding @content (setup before attach). mem_peek copies what the
 * guest would see, or returns DMEM_ENOENT for a page that is not present. */
void mem_load(mem_adapter *m, uint64_t gfn, const void *content);
int mem_peek(mem_adapter *m, uint64_t gfn, void *buf);
int mem_present(mem_adapter *m, uint64_t gfn);
int mem_mapped(mem_adapter *m, uint64_t gfn);
int mem_protected(mem_adapter *m, uint64_t gfn);
/* ORs DMEM_BIT_* into the page's bits (as a guest access would). */
void mem_set_bits(mem_adapter *m, uint64_t gfn, unsigned bits);

/* Guest side: a page that is not present is faulted in through
 * dmem_vm_fault() first; its error comes back unchanged. A read sets
 * DMEM_BIT_REFERENCED, a write both bits. mem_write with @bits 0 is a
 * write by the VMM's device emulation (faults, but sets no bits). */
int mem_guest_read(mem_adapter *m, uint64_t gfn, void *buf);
int mem_guest_write(mem_adapter *m, uint64_t gfn, size_t offset, const void *data, size_t len);
int mem_write(mem_adapter *m, uint64_t gfn, size_t offset, const void *data, size_t len,
              unsigned bits);

/* Failure injection: the next @n calls of @op fail with @err; or each call
 * fails with probability @p. A failing call changes nothing. */
void mem_fail_next(mem_adapter *m, mem_op op, unsigned n, int err);
void mem_fail_prob(mem_adapter *m, mem_op op, double p, int err);
void mem_fail_clear(mem_adapter *m);

/* Calls of @op so far, and how many of them were failed on purpose. */
uint64_t mem_calls(mem_adapter *m, mem_op op);
uint64_t mem_failed(mem_adapter *m, mem_op op);

/* Contract violations seen (engine bugs), and the first one's details. */
uint64_t mem_violations(mem_adapter *m);
const char *mem_violation_msg(mem_adapter *m);

#endif
