/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the Check test programs. */
#ifndef DMEM_TESTUTIL_H
#define DMEM_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>

/* Each test program defines this; tests/runner.c runs it. */
Suite *dmem_test_suite(void);

/* An allocator that counts, and fails the Nth allocation on request, so that
 * tests can prove every failure path returns DMEM_ENOMEM and leaks nothing. */
typedef struct test_alloc {
  dmem_allocator hook;
  long allocs, frees;
  long live_bytes;
  long fail_at; /* fail the allocation with this 1-based number; 0 = never */
} test_alloc;

void test_alloc_init(test_alloc *t);

/* A tiny deterministic PRNG for test data (splitmix64). */
static inline uint64_t test_rand(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

#endif
