/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fixture of the engine's tests (tests/test_engine_*.c): up to MAXVM
 * VMs on the in-memory adapter (memadapter.h), each with a copy of the
 * content its pages must hold, and checks that the engine's pages, its
 * statistics and the adapter agree with it. Every helper asserts (Check's
 * ck_assert), so that a test only says what it does and what it expects. */
#ifndef DMEM_TEST_ENGINE_FIXTURE_H
#define DMEM_TEST_ENGINE_FIXTURE_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include <diffmem/diffmem.h>

#include "memadapter.h"
#include "testutil.h"

#define PAGE DMEM_PAGE_SIZE
#define MAXVM 2

/* fx_init() flags: the adapter's share(), protect() and thread safety, the
 * engine's map_shared, a swap directory under pressure, and a sharing
 * domain per VM (without FX_OWN every VM is in domain 1). */
enum { FX_SHARE = 1, FX_PROTECT = 2, FX_MAP = 4, FX_SWAP = 8, FX_TS = 16, FX_OWN = 32 };
#define FX_MAPPING (FX_SHARE | FX_PROTECT | FX_MAP)

typedef struct fx {
  dmem_engine_options o;
  dmem_engine *e;
  mem_adapter *m[MAXVM];
  dmem_vm *vm[MAXVM];
  uint8_t *want[MAXVM]; /* expected content, npages * PAGE */
  unsigned nvm;
  uint64_t npages;
  char swap[64];
} fx;

/* Page content: random; unique but compressible text; @ref with @nwords
 * 8-byte words changed. */
void pg_random(uint8_t *b, uint64_t seed);
void pg_text(uint8_t *b, uint64_t seed);
void pg_similar(uint8_t *b, const uint8_t *ref, uint64_t seed, unsigned nwords);

/* fx_init() sets up the adapters and f->o (which a test may change before
 * fx_start(), which creates the engine and attaches the VMs); fx_end()
 * detaches, checks every page is back in the adapter and frees it all. */
void fx_init(fx *f, unsigned nvm, uint64_t npages, unsigned flags);
void fx_start(fx *f);
void fx_end(fx *f);

/* Content: the expected copy of a page; set before the engine runs; a
 * guest write; a guest read checked against the copy. */
uint8_t *fx_want(fx *f, unsigned v, uint64_t gfn);
void fx_set(fx *f, unsigned v, uint64_t gfn, const uint8_t *content);
void fx_write(fx *f, unsigned v, uint64_t gfn, size_t off, const void *d, size_t len);
void fx_touch(fx *f, unsigned v, uint64_t gfn);
void fx_random(fx *f, unsigned v, uint64_t first, uint64_t n, uint64_t seed);
/* 16 pages of every kind (zero, identical, similar, compressible, random). */
void fx_mixed(fx *f, unsigned v);
void touch_all(fx *f);

/* What the engine says. */
dmem_page_kind fx_kind(fx *f, unsigned v, uint64_t gfn);
dmem_page_state fx_state(fx *f, unsigned v, uint64_t gfn);
dmem_stats fx_es(fx *f);
dmem_stats fx_vs(fx *f, unsigned v);

/* Scans and checks. */
void fx_pass(fx *f);
unsigned fx_cycle(fx *f, unsigned passes);
void fx_check_stats(fx *f);
void fx_verify(fx *f);
void fx_verify_adapter(fx *f);
void fx_no_violations(fx *f);
void expect_states(fx *f, unsigned v, const char *states);
void expect_kind(fx *f, unsigned v, uint64_t first, uint64_t n, dmem_page_kind k);

#endif
