/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: CC0-1.0 */
/* custom_policy: a researcher's own policy for libdiffmem, in one page.
 *
 * The paper's policy patches C3 pages and compresses only C4 pages. This one
 * ("eager compression") skips patching and compresses as soon as a page is
 * C3, sharing zero and identical pages as before, and never swaps. It runs
 * the engine over a small in-process "guest" whose memory is a plain array
 * (the adapter below is the least an adapter must do: read, bits, evict,
 * install), then prints what each policy saved.
 *
 * Build against an installed libdiffmem:
 *   cc custom_policy.c $(pkg-config --cflags --libs libdiffmem) -o custom_policy
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/diffmem.h>

enum { NPAGES = 2048 };

/* The guest: pages, whether each is resident, and its bits. */
typedef struct guest {
  unsigned char (*mem)[DMEM_PAGE_SIZE];
  unsigned char present[NPAGES], bits[NPAGES];
} guest;

static int g_read(void *buf, uint64_t gfn, void *ud)
{
  memcpy(buf, ((guest *)ud)->mem[gfn], DMEM_PAGE_SIZE);
  return 0;
}

static int g_bits(uint8_t *out, uint64_t first, size_t n, void *ud)
{
  guest *g = ud;
  for (size_t i = 0; i < n; i++) {
    out[i] = g->present[first + i] ? g->bits[first + i] : 0;
    g->bits[first + i] = 0;
  }
  return 0;
}

static int g_evict(uint64_t gfn, void *ud)
{
  guest *g = ud;
  g->present[gfn] = 0;
  memset(g->mem[gfn], 0xdd, DMEM_PAGE_SIZE); /* the memory is gone */
  return 0;
}

static int g_install(uint64_t gfn, const void *content, void *ud)
{
  guest *g = ud;
  memcpy(g->mem[gfn], content, DMEM_PAGE_SIZE);
  g->present[gfn] = 1;
  return 0;
}

static const dmem_adapter_ops guest_ops = {
    .version = DMEM_ADAPTER_OPS_VERSION,
    .read = g_read,
    .bits = g_bits,
    .evict = g_evict,
    .install = g_install,
};

/* The policy: only the techniques hook differs from the paper's. */
static unsigned eager_techniques(const dmem_page_info *pg, dmem_page_state state,
                                 const dmem_policy_env *env, void *ud)
{
  (void)pg, (void)env, (void)ud;
  switch (state) {
  case DMEM_C2:
    return DMEM_TECH_SHARE;
  case DMEM_C3:
  case DMEM_C4:
    return DMEM_TECH_SHARE | DMEM_TECH_COMPRESS;
  default:
    return 0;
  }
}

static const dmem_policy eager = {
    .version = DMEM_POLICY_VERSION,
    .classify = NULL, /* NULL hooks fall back to the paper's */
    .techniques = eager_techniques,
    .victim = NULL,
};

/* Fills the guest with pages like a real one: zeros, copies, text, counters. */
static void fill(guest *g)
{
  for (int i = 0; i < NPAGES; i++) {
    unsigned char *p = g->mem[i];
    g->present[i] = 1;
    if (i % 4 == 0)
      memset(p, 0, DMEM_PAGE_SIZE);
    else if (i % 4 == 1) /* the same library page in every process */
      for (unsigned j = 0; j < DMEM_PAGE_SIZE; j++)
        p[j] = (unsigned char)"shared library text "[j % 20];
    else
      for (unsigned j = 0; j < DMEM_PAGE_SIZE; j += 4) {
        unsigned v = (unsigned)i * 7 + j / 64;
        memcpy(p + j, &v, 4);
      }
  }
}

static int run(const char *label, const dmem_policy *policy, guest *g)
{
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.policy = policy;
  eo.c4_passes = 3;
  dmem_engine *e;
  int rc = dmem_engine_create(&e, &eo);
  if (rc) {
    fprintf(stderr, "dmem_engine_create: %s\n", dmem_strerror(rc));
    return 1;
  }
  fill(g);
  dmem_vm_options vo = DMEM_VM_OPTIONS_INIT;
  vo.ops = &guest_ops;
  vo.ud = g;
  vo.npages = NPAGES;
  dmem_vm *vm;
  if ((rc = dmem_vm_attach(&vm, e, &vo)) != 0) {
    fprintf(stderr, "dmem_vm_attach: %s\n", dmem_strerror(rc));
    dmem_engine_destroy(e);
    return 1;
  }
  for (int pass = 0; pass < 6; pass++) /* nobody touches the guest: it cools */
    dmem_engine_scan(NULL, e, NPAGES);
  dmem_stats st = DMEM_STATS_INIT;
  dmem_engine_stats(&st, e);
  printf("%-14s zero %5llu  shared %5llu  patched %5llu  compressed %5llu  saved %6.1f MiB\n",
         label, (unsigned long long)st.zero, (unsigned long long)st.shared,
         (unsigned long long)st.patched, (unsigned long long)st.compressed,
         (double)st.bytes_saved / 1048576.0);
  dmem_engine_destroy(e); /* detaches: every page is installed back */
  for (int i = 0; i < NPAGES; i++)
    if (!g->present[i]) {
      fprintf(stderr, "page %d was not restored\n", i);
      return 1;
    }
  return 0;
}

int main(void)
{
  guest g;
  g.mem = malloc((size_t)NPAGES * DMEM_PAGE_SIZE);
  if (!g.mem)
    return 1;
  int rc = run("paper policy", dmem_policy_paper(), &g) || run("eager policy", &eager, &g);
  free(g.mem);
  return rc;
}
