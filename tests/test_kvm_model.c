/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The engine's randomized model (tests/model.c) through the KVM adapter:
 * each VM is a dmem_kvm_region, guest reads and writes go through its
 * mapping (evicted pages fault to the adapter's thread, reads of shared
 * pages map their frame copy-on-write where the configuration shares), and
 * at the end every page must equal its shadow. The adapter has no failure
 * injection yet: the "faulty" configuration runs without failures here.
 * DMEM_KVM_MODEL_OPS sets the operations (default 1,000,000 over the
 * configurations). Skips (77) without KVM or userfaultfd. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "kvm_guest.h"
#include "model.h"

#define PAGE DMEM_PAGE_SIZE

static void *kb_create(const model_config *c, unsigned v)
{
  (void)v;
  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  o.size = c->npages * PAGE;
  o.sharing_domain = 1; /* the model's VMs share, as one tenant's */
  dmem_kvm_region *r = NULL;
  return dmem_kvm_region_create(&r, &o, NULL, 0) == 0 ? r : NULL;
}

static void kb_destroy(void *g)
{
  dmem_kvm_region_destroy(g);
}

static void kb_load(void *g, uint64_t gfn, const void *c)
{
  memcpy((uint8_t *)dmem_kvm_region_addr(g) + gfn * PAGE, c, PAGE);
}

static int kb_attach(dmem_vm **out, dmem_engine *e, void *g)
{
  return dmem_kvm_region_attach(out, e, g, "model");
}

static int kb_detach(void *g, dmem_vm *vm)
{
  (void)vm; /* the region's own */
  return dmem_kvm_region_detach(g);
}

/* The guest's touches: through the mapping, faults and all. */
static int kb_guest_read(void *g, uint64_t gfn, void *buf)
{
  memcpy(buf, (uint8_t *)dmem_kvm_region_addr(g) + gfn * PAGE, PAGE);
  return 0;
}

static int kb_write(void *g, uint64_t gfn, size_t off, const void *d, size_t len, unsigned bits)
{
  (void)bits; /* every write to the mapping is seen the same way */
  memcpy((uint8_t *)dmem_kvm_region_addr(g) + gfn * PAGE + off, d, len);
  return 0;
}

static unsigned page_flags(void *g, uint64_t gfn)
{
  unsigned f = 0;
  ck_assert_int_eq(dmem_kvm_region_page(&f, g, gfn), 0);
  return f;
}

/* Without faults: a mapped page reads through its mapping (no fault: it is
 * registered for WP only), any other from the memfd. */
static int kb_peek(void *g, uint64_t gfn, void *buf)
{
  unsigned f = page_flags(g, gfn);
  if (f & DMEM_KVM_PAGE_EVICTED)
    return DMEM_ENOENT;
  if (f & DMEM_KVM_PAGE_MAPPED)
    return kb_guest_read(g, gfn, buf);
  ssize_t n = pread(dmem_kvm_region_fd(g), buf, PAGE, (off_t)(gfn * PAGE));
  return n == PAGE ? 0 : DMEM_EIO;
}

static int kb_present(void *g, uint64_t gfn)
{
  return !(page_flags(g, gfn) & DMEM_KVM_PAGE_EVICTED);
}
static int kb_mapped(void *g, uint64_t gfn)
{
  return (page_flags(g, gfn) & DMEM_KVM_PAGE_MAPPED) != 0;
}

static void kb_fail(void *g, double p)
{
  (void)g;
  (void)p; /* no failure injection in the KVM adapter yet */
}

static uint64_t kb_violations(void *g, const char **msg)
{
  dmem_kvm_stats s = kt_region_stats(g);
  *msg = s.faults_failed ? "faults the adapter could not serve" : "";
  return s.faults_failed;
}

static const model_backend kvm_backend = {
    "kvm",    kb_create, kb_destroy, kb_load,   kb_attach, kb_detach,     kb_guest_read,
    kb_write, kb_peek,   kb_present, kb_mapped, kb_fail,   kb_violations, NULL,
};

#define MAXCFG 8

static size_t kvm_configs(model_config *c)
{
  return model_configs_env(c, MAXCFG, "DMEM_KVM_MODEL_OPS", &kvm_backend);
}

START_TEST(model_through_kvm)
{
  model_config c[MAXCFG];
  size_t n = kvm_configs(c);
  ck_assert_uint_lt((size_t)_i, n);
  if (c[_i].fail_p > 0)
    c[_i].fail_p = 0; /* nothing to inject failures with */
  model_run_checked(&c[_i]);
}
END_TEST

int main(void)
{
  kt_skip_unless_supported("test_kvm_model");
  Suite *s = suite_create("kvm_model");
  TCase *tc = tcase_create("model");
  tcase_set_timeout(tc, 600);
  model_config c[MAXCFG];
  tcase_add_loop_test(tc, model_through_kvm, 0, (int)kvm_configs(c));
  suite_add_tcase(s, tc);
  return kt_run_suite(s);
}
