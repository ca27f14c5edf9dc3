/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Journals, on the in-memory adapter: every page the adapter does not hold
 * can be rebuilt from its VM's journal and the store's descriptors alone,
 * as another process would after the engine's died. The fixture is
 * tests/engine_fixture.h. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "engine_fixture.h"

/* ---------------------------------------------------------------- journals */

/* Journals: at every instant, each page the adapter does not hold can be
 * rebuilt from its VM's journal and the store's descriptors alone, as a
 * process would after the engine's died. Checked inside every evict and
 * install (the instants a page leaves or comes back), and after every
 * pass and fault, over two VMs with every technique and the swap file. */
static struct {
  mem_adapter *m[MAXVM];
  uint8_t *journal[MAXVM];
  size_t size;
  dmem_journal_store st;
  dmem_codec *codec;
  const dmem_adapter_ops *real;
  uint64_t checks;
} J;

static unsigned j_vm(void *ud)
{
  for (unsigned v = 0; v < MAXVM; v++)
    if (J.m[v] == ud)
      return v;
  ck_abort_msg("unknown adapter");
  return 0;
}

static int j_evict(uint64_t gfn, void *ud)
{
  unsigned v = j_vm(ud);
  uint8_t now[PAGE], got[PAGE];
  ck_assert_int_eq(mem_peek(ud, gfn, now), 0);
  /* About to leave guest memory: the journal must already rebuild it. */
  int rc = dmem_journal_page(got, J.journal[v], J.size, gfn, &J.st, J.codec);
  ck_assert_msg(rc == 1, "vm%u gfn %llu evicted with journal answer %d", v, (unsigned long long)gfn,
                rc);
  ck_assert_mem_eq(got, now, PAGE);
  J.checks++;
  return J.real->evict(gfn, ud);
}

static int j_install(uint64_t gfn, const void *content, void *ud)
{
  unsigned v = j_vm(ud);
  uint8_t got[PAGE];
  int present = mem_present(ud, gfn);
  int rc = dmem_journal_page(got, J.journal[v], J.size, gfn, &J.st, J.codec);
  /* Still away: the journal still finds it, and it is what comes back. */
  if (!present) {
    ck_assert_int_eq(rc, 1);
    ck_assert_mem_eq(got, content, PAGE);
    J.checks++;
  }
  return J.real->install(gfn, content, ud);
}

static void j_check_all(fx *f)
{
  uint8_t got[PAGE];
  for (unsigned v = 0; v < f->nvm; v++)
    for (uint64_t g = 0; g < f->npages; g++) {
      int rc = dmem_journal_page(got, J.journal[v], J.size, g, &J.st, J.codec);
      if (mem_present(f->m[v], g)) {
        ck_assert_msg(rc == 0, "vm%u gfn %llu present, journal says %d", v, (unsigned long long)g,
                      rc);
      } else {
        ck_assert_msg(rc == 1, "vm%u gfn %llu away, journal says %d", v, (unsigned long long)g, rc);
        ck_assert_mem_eq(got, fx_want(f, v, g), PAGE);
      }
    }
}

START_TEST(journal_rebuilds_every_page)
{
  fx f;
  fx_init(&f, 2, 16, FX_SHARE | FX_PROTECT | FX_SWAP);
  for (unsigned v = 0; v < 2; v++)
    fx_mixed(&f, v);
  ck_assert_int_eq(dmem_engine_create(&f.e, &f.o), 0);
  ck_assert_int_eq(dmem_engine_store_fds(f.e, &J.st.blobs_fd, &J.st.swap_fd), 0);
  ck_assert_int_ge(J.st.swap_fd, 0);
  ck_assert_int_eq(dmem_codec_create(&J.codec, NULL), 0);
  static dmem_adapter_ops ops;
  J.real = mem_ops(f.m[0]);
  ops = *J.real;
  ops.evict = j_evict;
  ops.install = j_install;
  ops.share = NULL; /* a journal's pages are evicted, never mapped */
  J.size = dmem_journal_size(f.npages);
  J.checks = 0;
  for (unsigned v = 0; v < 2; v++) {
    J.m[v] = f.m[v];
    J.journal[v] = aligned_alloc(64, (J.size + 63) / 64 * 64);
    ck_assert_ptr_nonnull(J.journal[v]);
    dmem_vm_options o = DMEM_VM_OPTIONS_INIT;
    o.ops = &ops;
    o.ud = f.m[v];
    o.npages = f.npages;
    o.sharing_domain = 1;
    ck_assert_int_eq(dmem_vm_attach(&f.vm[v], f.e, &o), 0);
    mem_set_vm(f.m[v], f.vm[v]);
    ck_assert_int_eq(dmem_vm_set_journal(f.vm[v], J.journal[v], J.size - 8), DMEM_EINVAL);
    ck_assert_int_eq(dmem_vm_set_journal(f.vm[v], J.journal[v], J.size), 0);
  }
  /* One domain: one frames memfd. */
  J.st.frames_fd = dmem_vm_frames_fd(f.vm[0]);
  ck_assert_int_ge(J.st.frames_fd, 0);
  ck_assert_int_eq(dmem_vm_frames_fd(f.vm[1]), J.st.frames_fd);
  unsigned seen = 0;
  for (unsigned i = 0; i < f.o.c4_passes + 4; i++) {
    fx_pass(&f);
    j_check_all(&f);
    for (unsigned v = 0; v < 2; v++)
      for (uint64_t g = 0; g < f.npages; g++)
        seen |= 1u << fx_kind(&f, v, g);
    /* Fault some back, write one, and check again. */
    fx_touch(&f, 0, i % f.npages);
    fx_write(&f, 1, (i * 5) % f.npages, 8, "journal", 7);
    j_check_all(&f);
  }
  ck_assert_msg(seen & (1u << DMEM_PAGE_SHARED), "no shared page");
  ck_assert_msg(seen & (1u << DMEM_PAGE_ZERO), "no zero page");
  ck_assert_msg(seen & ((1u << DMEM_PAGE_COMPRESSED) | (1u << DMEM_PAGE_SWAPPED)),
                "no compressed or swapped page");
  ck_assert_uint_gt(J.checks, 20);
  /* Another layout, or a page beyond it, is refused. */
  uint8_t got[PAGE];
  ck_assert_int_eq(dmem_journal_page(got, J.journal[0], J.size, f.npages, &J.st, J.codec),
                   DMEM_ERANGE);
  J.journal[0][4] ^= 0xff; /* the version */
  ck_assert_int_eq(dmem_journal_page(got, J.journal[0], J.size, 0, &J.st, J.codec), DMEM_EVERSION);
  J.journal[0][4] ^= 0xff;
  fx_verify(&f);
  fx_end(&f);
  /* Detached: every entry says "in guest memory". */
  for (unsigned v = 0; v < 2; v++) {
    for (uint64_t g = 0; g < 16; g++)
      ck_assert_int_eq(dmem_journal_page(got, J.journal[v], J.size, g, &J.st, J.codec), 0);
    free(J.journal[v]);
  }
  dmem_codec_destroy(J.codec);
}
END_TEST

Suite *dmem_test_suite(void)
{
  Suite *s = suite_create("engine_journal");
  TCase *tc = tcase_create("engine_journal");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, journal_rebuilds_every_page);
  suite_add_tcase(s, tc);
  return s;
}
