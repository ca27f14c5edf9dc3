/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fixture of the engine's tests: see engine_fixture.h. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_fixture.h"

/* ---------------------------------------------------------------- page content */

void pg_random(uint8_t *b, uint64_t seed)
{
  uint64_t s = seed * 7919 + 1;
  for (unsigned i = 0; i < PAGE; i += 8) {
    uint64_t v = test_rand(&s);
    memcpy(b + i, &v, 8);
  }
}

/* Unique but compressible: words from a small vocabulary (no zero blocks,
 * so that two such pages are not similar). */
void pg_text(uint8_t *b, uint64_t seed)
{
  static const char *const words[] = {"page ",  "frame ", "guest ", "share ",
                                      "patch ", "clock ", "zero ",  "swap "};
  uint64_t s = seed * 104729 + 3;
  size_t n = 0;
  while (n < PAGE) {
    const char *w = words[test_rand(&s) % 8];
    size_t l = strlen(w) < PAGE - n ? strlen(w) : PAGE - n;
    memcpy(b + n, w, l);
    n += l;
  }
  memcpy(b, &seed, sizeof seed);
}

/* @ref with @nwords 8-byte words changed at spread-out offsets. */
void pg_similar(uint8_t *b, const uint8_t *ref, uint64_t seed, unsigned nwords)
{
  uint64_t s = seed;
  memcpy(b, ref, PAGE);
  for (unsigned i = 0; i < nwords; i++) {
    uint64_t v = test_rand(&s);
    memcpy(b + (i * 1031 * 8 + 24) % PAGE / 8 * 8, &v, 8);
  }
}

/* ---------------------------------------------------------------- fixture */

void fx_init(fx *f, unsigned nvm, uint64_t npages, unsigned flags)
{
  memset(f, 0, sizeof *f);
  f->o = (dmem_engine_options)DMEM_ENGINE_OPTIONS_INIT;
  f->o.seed = 0x5eed;
  f->o.c4_passes = 3;
  f->o.slice_pages = (unsigned)npages;
  f->o.map_shared = (flags & FX_MAP) != 0;
  f->nvm = nvm;
  f->npages = npages;
  if (flags & FX_SWAP) {
    snprintf(f->swap, sizeof f->swap, "/tmp/dmem-test-swap.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->swap));
    f->o.swap_dir = f->swap;
    f->o.store_limit_bytes = 1;
  }
  for (unsigned v = 0; v < nvm; v++) {
    /* The fixture's VMs are one tenant's (one sharing domain) unless the
     * test says otherwise. */
    mem_options mo = {npages,
                      (flags & FX_SHARE) != 0,
                      (flags & FX_PROTECT) != 0,
                      (flags & FX_TS) != 0,
                      77 + v,
                      (flags & FX_OWN) ? DMEM_DOMAIN_OWN : 1};
    f->m[v] = mem_create(&mo);
    f->want[v] = calloc(npages, PAGE);
    ck_assert(f->m[v] && f->want[v]);
  }
}

void fx_start(fx *f)
{
  ck_assert_int_eq(dmem_engine_create(&f->e, &f->o), 0);
  for (unsigned v = 0; v < f->nvm; v++)
    ck_assert_int_eq(mem_attach(&f->vm[v], f->e, f->m[v], v ? "vm1" : "vm0"), 0);
}

uint8_t *fx_want(fx *f, unsigned v, uint64_t gfn)
{
  return f->want[v] + gfn * PAGE;
}

/* Sets a page's content before the engine runs. */
void fx_set(fx *f, unsigned v, uint64_t gfn, const uint8_t *content)
{
  memcpy(fx_want(f, v, gfn), content, PAGE);
  mem_load(f->m[v], gfn, content);
}

void fx_write(fx *f, unsigned v, uint64_t gfn, size_t off, const void *d, size_t len)
{
  ck_assert_int_eq(mem_guest_write(f->m[v], gfn, off, d, len), 0);
  memcpy(fx_want(f, v, gfn) + off, d, len);
}

void fx_touch(fx *f, unsigned v, uint64_t gfn)
{
  uint8_t buf[PAGE];
  ck_assert_int_eq(mem_guest_read(f->m[v], gfn, buf), 0);
  ck_assert_mem_eq(buf, fx_want(f, v, gfn), PAGE);
}

dmem_page_kind fx_kind(fx *f, unsigned v, uint64_t gfn)
{
  dmem_page_kind k;
  dmem_page_state s;
  ck_assert_int_eq(dmem_vm_page(&k, &s, f->vm[v], gfn), 0);
  return k;
}

dmem_page_state fx_state(fx *f, unsigned v, uint64_t gfn)
{
  dmem_page_kind k;
  dmem_page_state s;
  ck_assert_int_eq(dmem_vm_page(&k, &s, f->vm[v], gfn), 0);
  return s;
}

dmem_stats fx_es(fx *f)
{
  dmem_stats s = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_engine_stats(&s, f->e), 0);
  return s;
}

dmem_stats fx_vs(fx *f, unsigned v)
{
  dmem_stats s = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&s, f->vm[v]), 0);
  return s;
}

static uint64_t kinds_sum(const dmem_stats *s)
{
  return s->resident + s->mapped + s->zero + s->shared + s->patched + s->compressed + s->swapped;
}

/* Where the engine says a page lives agrees with the adapter: evicted
 * pages are absent, and only a page the engine calls MAPPED may be mapped
 * (the reverse need not hold: a guest write breaks the mapping first). */
static void fx_check_where(fx *f, unsigned v, uint64_t g, dmem_page_kind k)
{
  int resident = k == DMEM_PAGE_RESIDENT || k == DMEM_PAGE_MAPPED;
  ck_assert_msg(mem_present(f->m[v], g) == resident, "vm%u gfn %llu: kind %d but %s", v,
                (unsigned long long)g, (int)k, resident ? "absent" : "present");
  ck_assert_msg(k == DMEM_PAGE_MAPPED || !mem_mapped(f->m[v], g),
                "vm%u gfn %llu: kind %d but the adapter still maps frame", v, (unsigned long long)g,
                (int)k);
}

/* The statistics agree with themselves, with dmem_vm_page(), with the
 * adapter and across VMs. */
void fx_check_stats(fx *f)
{
  dmem_stats es = fx_es(f), sum;
  memset(&sum, 0, sizeof sum);
  for (unsigned v = 0; v < f->nvm; v++) {
    dmem_stats vs = fx_vs(f, v);
    uint64_t kinds[7] = {0}, states[5] = {0};
    for (uint64_t g = 0; g < f->npages; g++) {
      dmem_page_kind k;
      dmem_page_state s;
      ck_assert_int_eq(dmem_vm_page(&k, &s, f->vm[v], g), 0);
      ck_assert(k <= DMEM_PAGE_SWAPPED && s >= DMEM_C1 && s <= DMEM_C4);
      fx_check_where(f, v, g, k);
      kinds[k]++, states[s]++;
    }
    uint64_t got[7] = {vs.resident, vs.mapped,     vs.zero,   vs.shared,
                       vs.patched,  vs.compressed, vs.swapped};
    for (int k = 0; k < 7; k++)
      ck_assert_msg(got[k] == kinds[k], "vm%u kind %d: stats %llu, pages %llu", v, k,
                    (unsigned long long)got[k], (unsigned long long)kinds[k]);
    for (int s = 1; s <= 4; s++)
      ck_assert_uint_eq(vs.state[s], states[s]);
    ck_assert_uint_eq(vs.pages, f->npages);
    sum.pages += vs.pages, sum.resident += vs.resident, sum.zero += vs.zero;
    sum.entitlement_bytes += vs.entitlement_bytes;
  }
  ck_assert_uint_eq(es.pages, sum.pages);
  ck_assert_uint_eq(es.resident, sum.resident);
  ck_assert_uint_eq(es.zero, sum.zero);
  ck_assert_uint_eq(kinds_sum(&es), es.pages);
  ck_assert_int_eq(es.entitlement_bytes, sum.entitlement_bytes);
  ck_assert_int_eq(es.bytes_saved,
                   (int64_t)((es.pages - es.resident) * PAGE) - (int64_t)es.store_bytes);
  for (unsigned v = 0; v < f->nvm; v++) {
    for (uint64_t g = 0; g < f->npages; g++)
      ck_assert_msg(!mem_protected(f->m[v], g), "vm%u gfn %llu left protected", v,
                    (unsigned long long)g);
    ck_assert_msg(mem_violations(f->m[v]) == 0, "adapter contract: %s", mem_violation_msg(f->m[v]));
  }
}

/* One full pass over every VM. */
void fx_pass(fx *f)
{
  size_t visited = 0;
  size_t budget = f->nvm * f->npages;
  ck_assert_int_eq(dmem_engine_scan(&visited, f->e, budget), 0);
  ck_assert_uint_eq(visited, budget);
  fx_check_stats(f);
}

/* Every page reads back as expected through the engine. */
void fx_verify(fx *f)
{
  uint8_t buf[PAGE];
  for (unsigned v = 0; v < f->nvm; v++)
    for (uint64_t g = 0; g < f->npages; g++) {
      ck_assert_int_eq(dmem_vm_read(buf, f->vm[v], g), 0);
      ck_assert_msg(memcmp(buf, fx_want(f, v, g), PAGE) == 0, "vm%u gfn %llu differs (kind %d)", v,
                    (unsigned long long)g, (int)fx_kind(f, v, g));
    }
}

/* After detach or destroy: the adapter holds every page, privately. */
void fx_verify_adapter(fx *f)
{
  uint8_t buf[PAGE];
  for (unsigned v = 0; v < f->nvm; v++)
    for (uint64_t g = 0; g < f->npages; g++) {
      ck_assert_msg(mem_present(f->m[v], g) && !mem_mapped(f->m[v], g),
                    "vm%u gfn %llu not restored", v, (unsigned long long)g);
      ck_assert_int_eq(mem_peek(f->m[v], g, buf), 0);
      ck_assert_msg(memcmp(buf, fx_want(f, v, g), PAGE) == 0, "vm%u gfn %llu restored wrong", v,
                    (unsigned long long)g);
    }
}

void fx_no_violations(fx *f)
{
  for (unsigned v = 0; v < f->nvm; v++)
    ck_assert_msg(mem_violations(f->m[v]) == 0, "adapter contract: %s", mem_violation_msg(f->m[v]));
}

/* Detaches every VM (checking the adapters), destroys the engine. */
void fx_end(fx *f)
{
  for (unsigned v = 0; v < f->nvm; v++)
    if (f->vm[v]) {
      ck_assert_int_eq(dmem_vm_detach(f->vm[v]), 0);
      f->vm[v] = NULL;
      mem_set_vm(f->m[v], NULL);
    }
  fx_verify_adapter(f);
  dmem_stats es = fx_es(f);
  ck_assert_uint_eq(es.pages, 0);
  ck_assert_uint_eq(es.frames, 0);
  ck_assert_uint_eq(es.store_bytes, 0);
  dmem_engine_destroy(f->e);
  fx_no_violations(f);
  if (f->swap[0])
    ck_assert_msg(rmdir(f->swap) == 0, "swap directory %s: %s (a file left behind?)", f->swap,
                  strerror(errno));
  for (unsigned v = 0; v < f->nvm; v++) {
    mem_destroy(f->m[v]);
    free(f->want[v]);
  }
}

/* Fills pages with distinct random content from @first on. */
void fx_random(fx *f, unsigned v, uint64_t first, uint64_t n, uint64_t seed)
{
  uint8_t b[PAGE];
  for (uint64_t g = first; g < first + n; g++) {
    pg_random(b, seed * 1000 + g * 10 + v);
    fx_set(f, v, g, b);
  }
}

void expect_states(fx *f, unsigned v, const char *states)
{
  for (uint64_t g = 0; states[g]; g++)
    ck_assert_msg(fx_state(f, v, g) == (dmem_page_state)(states[g] - '0'),
                  "vm%u gfn %llu: state C%d, want C%c", v, (unsigned long long)g,
                  (int)fx_state(f, v, g), states[g]);
}

void expect_kind(fx *f, unsigned v, uint64_t first, uint64_t n, dmem_page_kind k)
{
  for (uint64_t g = first; g < first + n; g++)
    ck_assert_msg(fx_kind(f, v, g) == k, "vm%u gfn %llu: kind %d, want %d", v,
                  (unsigned long long)g, (int)fx_kind(f, v, g), (int)k);
}

void touch_all(fx *f)
{
  for (unsigned v = 0; v < f->nvm; v++)
    for (uint64_t g = 0; g < f->npages; g++)
      fx_touch(f, v, g);
}

/* ---------------------------------------------------------------- mixed pages */

/* 16 pages: zero 0-1, identical 2-3, reference 4 and similar 5,
 * compressible 6-7, random 8-15. */
void fx_mixed(fx *f, unsigned v)
{
  uint8_t b[PAGE], r[PAGE];
  fx_random(f, v, 8, 8, 14 + v);
  pg_random(b, 1006);
  fx_set(f, v, 2, b), fx_set(f, v, 3, b);
  pg_random(r, 1007 + v);
  fx_set(f, v, 4, r);
  pg_similar(b, r, 6, 2);
  fx_set(f, v, 5, b);
  pg_text(b, 40 + v);
  fx_set(f, v, 6, b);
  pg_text(b, 50 + v);
  fx_set(f, v, 7, b);
}

/* Passes with gfn 4 kept referenced; returns the kinds seen, as bits. */
unsigned fx_cycle(fx *f, unsigned passes)
{
  unsigned seen = 0;
  for (unsigned i = 0; i < passes; i++) {
    for (unsigned v = 0; v < f->nvm; v++)
      fx_touch(f, v, 4);
    fx_pass(f);
    for (unsigned v = 0; v < f->nvm; v++)
      for (uint64_t g = 0; g < f->npages; g++)
        seen |= 1u << fx_kind(f, v, g);
  }
  return seen;
}
