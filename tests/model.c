/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The randomized model test (see model.h).
 *
 * The shadow is the truth: every write goes to the guest through the
 * adapter and to the shadow, every read is compared with it. The engine
 * may put a page anywhere; what it may never do is change what the guest
 * reads. Failures injected into the adapter may make an access fail (the
 * guest then retries), never make it return other content. */
#include "config.h"

#include "model.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <unistd.h>

#include "memadapter.h"

#define PAGE DMEM_PAGE_SIZE
#define NTEMPL 16
#define SAMPLE_EVERY 1024
#define RETRIES 200

typedef struct mvm {
  void *g; /* the backend's VM */
  dmem_vm *vm;
  uint8_t *shadow; /* npages * PAGE */
} mvm;

typedef struct model {
  const model_config *cfg;
  const model_backend *be;
  model_result *res;
  dmem_engine *e;
  dmem_engine_options o;
  mvm v[MODEL_MAXVM];
  uint8_t tmpl[NTEMPL][PAGE];
  uint64_t rng;  /* the guest's (and the single thread's) */
  uint64_t mrng; /* the main thread's, when concurrent */
  uint64_t op;   /* index of the operation under way */
  const char *opname;
  pthread_mutex_t mu; /* guards res when concurrent */
  char swap[80];
} model;

static uint64_t rnd(uint64_t *s)
{
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
  return rnd(s) % n;
}

static uint8_t *shadow(model *md, unsigned v, uint64_t gfn)
{
  return md->v[v].shadow + gfn * PAGE;
}

/* ---------------------------------------------------------------- reporting */

__attribute__((format(printf, 2, 3))) static void record_error(model *md, const char *fmt, ...)
{
  pthread_mutex_lock(&md->mu);
  if (md->res->errors++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(md->res->error, sizeof md->res->error, "op %llu (%s): ",
                     (unsigned long long)__atomic_load_n(&md->op, __ATOMIC_RELAXED), md->opname);
    vsnprintf(md->res->error + n, sizeof md->res->error - (size_t)n, fmt, ap);
    va_end(ap);
  }
  pthread_mutex_unlock(&md->mu);
}

/* Compares @got with the shadow; records the first mismatch in detail. */
static void compare(model *md, unsigned v, uint64_t gfn, const uint8_t *got, const char *how)
{
  const uint8_t *want = shadow(md, v, gfn);
  if (memcmp(got, want, PAGE) == 0)
    return;
  size_t off = 0;
  while (got[off] == want[off])
    off++;
  dmem_page_kind k = 0;
  dmem_page_state s = 0;
  if (md->v[v].vm) /* NULL once detached */
    dmem_vm_page(&k, &s, md->v[v].vm, gfn);
  pthread_mutex_lock(&md->mu);
  if (md->res->mismatches++ == 0)
    snprintf(md->res->mismatch, sizeof md->res->mismatch,
             "op %llu (%s, %s): vm %u gfn %llu kind %d state C%d: byte %zu is %#x, want %#x",
             (unsigned long long)__atomic_load_n(&md->op, __ATOMIC_RELAXED), md->opname, how, v,
             (unsigned long long)gfn, (int)k, (int)s, off, got[off], want[off]);
  pthread_mutex_unlock(&md->mu);
}

/* An engine or adapter error that failure injection may explain. */
static int tolerated(model *md, int rc)
{
  return md->cfg->fail_p > 0 && rc == DMEM_EIO;
}

/* Single-threaded: where the engine says the page lives agrees with the
 * adapter (evicted means absent; mapped only if the engine says MAPPED).
 * Returns 0 when it does not: the caller then keeps off the page, whose
 * frame may be gone. */
static int where_ok(model *md, unsigned v, uint64_t gfn)
{
  if (md->cfg->concurrent)
    return 1;
  dmem_page_kind k;
  dmem_page_state st;
  if (dmem_vm_page(&k, &st, md->v[v].vm, gfn) != 0)
    return 0;
  int resident = k == DMEM_PAGE_RESIDENT || k == DMEM_PAGE_MAPPED;
  void *g = md->v[v].g;
  int present = md->be->present(g, gfn), mapped = md->be->mapped(g, gfn);
  if (present == resident && (k == DMEM_PAGE_MAPPED || !mapped))
    return 1;
  record_error(md, "vm %u gfn %llu: engine kind %d, adapter %s%s", v, (unsigned long long)gfn,
               (int)k, present ? "present" : "absent", mapped ? " and mapped" : "");
  return 0;
}

/* ---------------------------------------------------------------- content */

static void fill_random(uint8_t *b, uint64_t *s)
{
  for (unsigned i = 0; i < PAGE; i += 8) {
    uint64_t x = rnd(s);
    memcpy(b + i, &x, 8);
  }
}

/* Compressible: small numbers and repeated words. */
static void fill_text(uint8_t *b, uint64_t *s)
{
  static const char *const w[] = {"lorem ", "ipsum ", "dolor ", "sit ", "amet ", "vm ", "page "};
  size_t n = 0;
  while (n < PAGE) {
    const char *x = w[below(s, 7)];
    size_t l = strlen(x) < PAGE - n ? strlen(x) : PAGE - n;
    memcpy(b + n, x, l);
    n += l;
  }
  uint64_t id = rnd(s);
  memcpy(b + below(s, PAGE / 8) * 8, &id, 8);
}

static void edit_words(uint8_t *b, uint64_t *s, unsigned n)
{
  for (unsigned i = 0; i < n; i++) {
    uint64_t x = rnd(s);
    memcpy(b + below(s, PAGE / 8) * 8, &x, 8);
  }
}

static void make_templates(model *md)
{
  for (int t = 0; t < NTEMPL; t++) {
    if (t % 2)
      fill_random(md->tmpl[t], &md->rng);
    else
      fill_text(md->tmpl[t], &md->rng);
  }
}

/* Initial content: zero, template, template with edits, random, text. */
static void initial_page(model *md, uint8_t *b)
{
  uint64_t r = below(&md->rng, 100);
  if (r < 15) {
    memset(b, 0, PAGE);
  } else if (r < 70) {
    memcpy(b, md->tmpl[below(&md->rng, NTEMPL)], PAGE);
    if (r >= 40)
      edit_words(b, &md->rng, 1 + (unsigned)below(&md->rng, 8));
  } else if (r < 85) {
    fill_random(b, &md->rng);
  } else {
    fill_text(b, &md->rng);
  }
}

/* ---------------------------------------------------------------- engine setup */

static void engine_options(model *md)
{
  const model_config *c = md->cfg;
  md->o = (dmem_engine_options)DMEM_ENGINE_OPTIONS_INIT;
  md->o.seed = c->seed | 1;
  md->o.c4_passes = 3;
  md->o.slice_pages = 32;
  md->o.map_shared = c->share;
  if (c->swap) {
    snprintf(md->swap, sizeof md->swap, "/tmp/dmem-model-swap.XXXXXX");
    if (!mkdtemp(md->swap))
      md->swap[0] = 0; /* engine create then fails without swap: said there */
    md->o.swap_dir = md->swap[0] ? md->swap : "/nonexistent-dmem-swap-dir";
    md->o.store_limit_bytes = 64 * PAGE;
  }
}

static void set_failures(model *md, unsigned v, double p)
{
  md->be->fail_prob(md->v[v].g, p);
}

static int attach(model *md, unsigned v)
{
  int rc = md->be->attach(&md->v[v].vm, md->e, md->v[v].g);
  if (rc)
    record_error(md, "attach: %s", dmem_err_name(rc));
  return rc;
}

static int setup(model *md)
{
  make_templates(md);
  engine_options(md);
  int rc = dmem_engine_create(&md->e, &md->o);
  if (rc) {
    record_error(md, "engine create: %s", dmem_err_name(rc));
    return rc;
  }
  for (unsigned v = 0; v < md->cfg->nvms; v++) {
    md->v[v].g = md->be->create(md->cfg, v);
    md->v[v].shadow = malloc(md->cfg->npages * PAGE);
    if (!md->v[v].g || !md->v[v].shadow)
      return DMEM_ENOMEM;
    for (uint64_t g = 0; g < md->cfg->npages; g++) {
      initial_page(md, shadow(md, v, g));
      md->be->load(md->v[v].g, g, shadow(md, v, g));
    }
    if ((rc = attach(md, v)) != 0)
      return rc;
    set_failures(md, v, md->cfg->fail_p);
  }
  return 0;
}

/* ---------------------------------------------------------------- guest operations */

static void pick(model *md, uint64_t *s, unsigned *v, uint64_t *gfn)
{
  uint64_t n = md->cfg->npages;
  *v = (unsigned)below(s, md->cfg->nvms);
  /* Most accesses go to a hot eighth of the pages; the rest go cold. */
  if (below(s, 100) < 80)
    *gfn = below(s, n / 8 ? n / 8 : 1) * 8 % n;
  else
    *gfn = below(s, n);
}

static void guest_read(model *md, unsigned v, uint64_t gfn)
{
  uint8_t buf[PAGE];
  int rc;
  if (!where_ok(md, v, gfn))
    return;
  for (int i = 0; (rc = md->be->guest_read(md->v[v].g, gfn, buf)) != 0 && i < RETRIES; i++)
    if (!tolerated(md, rc))
      break;
  if (rc)
    record_error(md, "guest read of vm %u gfn %llu: %s", v, (unsigned long long)gfn,
                 dmem_err_name(rc));
  else
    compare(md, v, gfn, buf, "guest read");
}

static void write_at(model *md, unsigned v, uint64_t gfn, size_t off, const void *d, size_t len,
                     unsigned bits)
{
  int rc;
  if (!where_ok(md, v, gfn))
    return;
  for (int i = 0; (rc = md->be->write(md->v[v].g, gfn, off, d, len, bits)) != 0 && i < RETRIES; i++)
    if (!tolerated(md, rc))
      break;
  if (rc)
    record_error(md, "write of vm %u gfn %llu: %s", v, (unsigned long long)gfn, dmem_err_name(rc));
  else
    memmove(shadow(md, v, gfn) + off, d, len);
}

/* New content for a whole page: a copy of another page, a template (maybe
 * edited), or zeros. */
static void new_content(model *md, uint64_t *s, uint8_t *b, unsigned v)
{
  uint64_t r = below(s, 100);
  if (r < 35) {
    memcpy(b, shadow(md, v, below(s, md->cfg->npages)), PAGE);
  } else if (r < 75) {
    memcpy(b, md->tmpl[below(s, NTEMPL)], PAGE);
    if (r >= 55)
      edit_words(b, s, 1 + (unsigned)below(s, 4));
  } else {
    memset(b, 0, PAGE);
  }
}

static void guest_write(model *md, uint64_t *s, unsigned v, uint64_t gfn)
{
  uint64_t r = below(s, 100);
  if (r < 70) {
    uint64_t x = rnd(s);
    size_t len = 1 + below(s, 8);
    write_at(md, v, gfn, below(s, PAGE - len + 1), &x, len,
             DMEM_BIT_REFERENCED | DMEM_BIT_MODIFIED);
    return;
  }
  uint8_t b[PAGE];
  new_content(md, s, b, v);
  write_at(md, v, gfn, 0, b, PAGE, DMEM_BIT_REFERENCED | DMEM_BIT_MODIFIED);
}

/* The VMM fills 1-8 pages from "disk" and hints them. */
static void io_hint(model *md, uint64_t *s, unsigned v, uint64_t gfn)
{
  uint64_t n = 1 + below(s, 8);
  if (n > md->cfg->npages - gfn)
    n = md->cfg->npages - gfn;
  uint8_t b[PAGE];
  for (uint64_t i = 0; i < n; i++) {
    new_content(md, s, b, v);
    write_at(md, v, gfn + i, 0, b, PAGE, 0);
  }
  int rc = dmem_vm_io_hint(md->v[v].vm, gfn, (size_t)n);
  if (rc)
    record_error(md, "io_hint: %s", dmem_err_name(rc));
}

static void vm_read(model *md, unsigned v, uint64_t gfn)
{
  uint8_t buf[PAGE];
  int rc;
  if (!where_ok(md, v, gfn))
    return;
  for (int i = 0; (rc = dmem_vm_read(buf, md->v[v].vm, gfn)) != 0 && i < RETRIES; i++)
    if (!tolerated(md, rc))
      break;
  if (rc)
    record_error(md, "dmem_vm_read: %s", dmem_err_name(rc));
  else
    compare(md, v, gfn, buf, "dmem_vm_read");
}

static void fault(model *md, unsigned v, uint64_t gfn)
{
  int rc = dmem_vm_fault(md->v[v].vm, gfn);
  if (rc && !tolerated(md, rc))
    record_error(md, "fault: %s", dmem_err_name(rc));
}

/* ---------------------------------------------------------------- engine-side operations */

static void scan(model *md, uint64_t *s)
{
  size_t visited = 0, budget = 1 + below(s, 64);
  int rc = dmem_engine_scan(&visited, md->e, budget);
  if (rc || visited > budget)
    record_error(md, "scan: %s, %zu of %zu", dmem_err_name(rc), visited, budget);
}

/* The VMM writes 1-4 pages (device emulation: no bits) and says so. In the
 * concurrent model the main thread only marks pages (the guest thread is
 * the only writer), which is the conservative use of the call. */
static void dirty(model *md, uint64_t *s)
{
  unsigned v = (unsigned)below(s, md->cfg->nvms);
  uint64_t gfn = below(s, md->cfg->npages);
  size_t n = 1 + below(s, 4);
  if (n > md->cfg->npages - gfn)
    n = md->cfg->npages - gfn;
  for (size_t i = 0; !md->cfg->concurrent && i < n; i++) {
    uint64_t x = rnd(s);
    write_at(md, v, gfn + i, below(s, PAGE / 8) * 8, &x, 8, 0);
  }
  int rc = dmem_vm_dirty(md->v[v].vm, gfn, n);
  if (rc)
    record_error(md, "dirty: %s", dmem_err_name(rc));
}

/* Samples where every page lives; checks the kind counts. */
static void sample(model *md)
{
  for (unsigned v = 0; v < md->cfg->nvms; v++) {
    uint64_t kinds[7] = {0};
    for (uint64_t g = 0; g < md->cfg->npages; g++) {
      dmem_page_kind k;
      dmem_page_state st;
      if (dmem_vm_page(&k, &st, md->v[v].vm, g) != 0 || k > 6 || st < 1 || st > 4) {
        record_error(md, "dmem_vm_page of gfn %llu", (unsigned long long)g);
        return;
      }
      if (!where_ok(md, v, g))
        return;
      kinds[k]++;
      md->res->kinds_seen[k]++;
      md->res->states_seen[st]++;
    }
    dmem_stats vs = DMEM_STATS_INIT;
    dmem_vm_stats(&vs, md->v[v].vm);
    if (!md->cfg->concurrent &&
        (vs.zero != kinds[DMEM_PAGE_ZERO] || vs.patched != kinds[DMEM_PAGE_PATCHED] ||
         vs.compressed != kinds[DMEM_PAGE_COMPRESSED]))
      record_error(md, "vm %u stats disagree with dmem_vm_page", v);
  }
}

/* Detaches VM @v and compares the adapter's memory with the shadow.
 * @return 0 when it all holds. */
static int detach_check(model *md, unsigned v)
{
  mvm *x = &md->v[v];
  int rc = md->be->detach(x->g, x->vm);
  if (rc) {
    record_error(md, "detach of vm %u: %s", v, dmem_err_name(rc));
    return rc;
  }
  x->vm = NULL;
  uint8_t buf[PAGE];
  for (uint64_t g = 0; g < md->cfg->npages; g++) {
    if (md->be->mapped(x->g, g) || md->be->peek(x->g, g, buf) != 0) {
      record_error(md, "detach left vm %u gfn %llu absent or mapped", v, (unsigned long long)g);
      return DMEM_EINVAL;
    }
    compare(md, v, g, buf, "after detach");
  }
  return 0;
}

/* Detaches a VM, checks the adapter holds the shadow, attaches it again. */
static void reattach(model *md, uint64_t *s)
{
  unsigned v = (unsigned)below(s, md->cfg->nvms);
  set_failures(md, v, 0);
  if (detach_check(md, v) != 0)
    return;
  if (attach(md, v) == 0)
    set_failures(md, v, md->cfg->fail_p);
  md->res->reattaches++;
}

/* One random operation of the single-threaded model. */
static void step(model *md)
{
  uint64_t *s = &md->rng;
  uint64_t r = below(s, 1000);
  unsigned v;
  uint64_t gfn;
  pick(md, s, &v, &gfn);
  if (r < 330)
    md->opname = "guest read", guest_read(md, v, gfn);
  else if (r < 530)
    md->opname = "guest write", guest_write(md, s, v, gfn);
  else if (r < 730)
    md->opname = "scan", scan(md, s);
  else if (r < 830)
    md->opname = "dmem_vm_read", vm_read(md, v, gfn);
  else if (r < 880)
    md->opname = "fault", fault(md, v, gfn);
  else if (r < 930)
    md->opname = "io_hint", io_hint(md, s, v, below(s, md->cfg->npages));
  else if (r < 960)
    md->opname = "dirty", dirty(md, s);
  else
    md->opname = "cold read", guest_read(md, v, below(s, md->cfg->npages));
}

/* ---------------------------------------------------------------- the concurrent model */

typedef struct guest_arg {
  model *md;
  volatile int done;
} guest_arg;

/* The guest thread: the only writer of guest memory and of the shadow. */
static void *guest_main(void *p)
{
  guest_arg *a = p;
  model *md = a->md;
  uint64_t *s = &md->rng;
  for (uint64_t i = 0; i < md->cfg->ops; i++) {
    __atomic_store_n(&md->op, i, __ATOMIC_RELAXED);
    uint64_t r = below(s, 1000);
    unsigned v;
    uint64_t gfn;
    pick(md, s, &v, &gfn);
    if (r < 450)
      guest_read(md, v, gfn);
    else if (r < 800)
      guest_write(md, s, v, gfn);
    else if (r < 900)
      vm_read(md, v, gfn);
    else if (r < 950)
      fault(md, v, gfn);
    else
      io_hint(md, s, v, below(s, md->cfg->npages));
  }
  __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

static void concurrent(model *md, int on)
{
  for (unsigned v = 0; md->be->concurrent && v < md->cfg->nvms; v++)
    md->be->concurrent(md->v[v].g, on);
}

/* The main thread scans and samples until the guest is done; in the middle
 * third of the run the engine's own thread scans too. */
static void run_concurrent(model *md)
{
  guest_arg a = {md, 0};
  pthread_t t;
  md->opname = "concurrent";
  concurrent(md, 1);
  if (pthread_create(&t, NULL, guest_main, &a) != 0) {
    record_error(md, "pthread_create");
    concurrent(md, 0);
    return;
  }
  int bg = 0;
  for (uint64_t i = 0; !__atomic_load_n(&a.done, __ATOMIC_ACQUIRE); i++) {
    uint64_t done = __atomic_load_n(&md->op, __ATOMIC_RELAXED);
    if (md->cfg->bg_thread && !bg && done > md->cfg->ops / 3) {
      int rc = dmem_engine_start(md->e, 1, 64);
      if (rc)
        record_error(md, "engine start: %s", dmem_err_name(rc));
      bg = 1;
    } else if (bg == 1 && done > md->cfg->ops * 2 / 3) {
      dmem_engine_stop(md->e);
      bg = 2;
    }
    scan(md, &md->mrng);
    if (i % 16 == 0)
      dirty(md, &md->mrng);
    if (i % 1024 == 0)
      sample(md);
  }
  pthread_join(t, NULL);
  if (bg == 1)
    dmem_engine_stop(md->e);
  concurrent(md, 0);
}

/* ---------------------------------------------------------------- the run */

static void run_single(model *md)
{
  for (uint64_t i = 0; i < md->cfg->ops; i++) {
    __atomic_store_n(&md->op, i, __ATOMIC_RELAXED);
    step(md);
    if (i % SAMPLE_EVERY == 0)
      md->opname = "sample", sample(md);
    if (md->cfg->reattach && i % 100000 == 99999)
      md->opname = "reattach", reattach(md, &md->rng);
  }
}

/* Every page through the engine, then through the guest, then detached. */
static void final_check(model *md)
{
  md->opname = "final";
  __atomic_store_n(&md->op, md->cfg->ops, __ATOMIC_RELAXED);
  for (unsigned v = 0; v < md->cfg->nvms; v++)
    set_failures(md, v, 0);
  sample(md);
  md->res->stats.version = DMEM_STATS_VERSION;
  ck_assert_int_eq(dmem_engine_stats(&md->res->stats, md->e), 0);
  for (unsigned v = 0; v < md->cfg->nvms; v++)
    for (uint64_t g = 0; g < md->cfg->npages; g++)
      vm_read(md, v, g);
  for (unsigned v = 0; v < md->cfg->nvms; v++)
    for (uint64_t g = 0; g < md->cfg->npages; g++)
      guest_read(md, v, g);
  for (unsigned v = 0; v < md->cfg->nvms; v++)
    (void)detach_check(md, v);
}

static void teardown(model *md)
{
  dmem_engine_destroy(md->e);
  if (md->swap[0] && rmdir(md->swap) != 0)
    record_error(md, "swap directory %s: %s (a file left behind?)", md->swap, strerror(errno));
  for (unsigned v = 0; v < md->cfg->nvms; v++) {
    void *g = md->v[v].g;
    const char *msg = "";
    uint64_t nv = g ? md->be->violations(g, &msg) : 0;
    if (nv) {
      if (md->res->violations == 0)
        snprintf(md->res->violation, sizeof md->res->violation, "vm %u: %s", v, msg);
      md->res->violations += nv;
    }
    if (g)
      md->be->destroy(g);
    free(md->v[v].shadow);
  }
}

int model_run(model_result *out, const model_config *cfg)
{
  memset(out, 0, sizeof *out);
  model *md = calloc(1, sizeof *md);
  if (!md)
    return -1;
  md->cfg = cfg;
  md->be = cfg->backend ? cfg->backend : &model_mem_backend;
  md->res = out;
  md->rng = cfg->seed;
  md->mrng = cfg->seed ^ 0x6a09e667f3bcc908ull;
  md->opname = "setup";
  pthread_mutex_init(&md->mu, NULL);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (setup(md) == 0) {
    if (cfg->concurrent)
      run_concurrent(md);
    else
      run_single(md);
    out->ops = cfg->ops;
    final_check(md);
  }
  teardown(md);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  out->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  pthread_mutex_destroy(&md->mu);
  free(md);
  return out->mismatches || out->errors || out->violations ? 1 : 0;
}

/* ---------------------------------------------------------------- the in-memory backend */

static void *mb_create(const model_config *c, unsigned v)
{
  /* The VMs are one tenant's: one sharing domain. */
  mem_options mo = {c->npages, c->share, c->protect, c->concurrent, c->seed + v, 1};
  return mem_create(&mo);
}

static void mb_destroy(void *g)
{
  mem_destroy(g);
}
static void mb_load(void *g, uint64_t gfn, const void *c)
{
  mem_load(g, gfn, c);
}

static int mb_attach(dmem_vm **out, dmem_engine *e, void *g)
{
  return mem_attach(out, e, g, "model");
}

static int mb_detach(void *g, dmem_vm *vm)
{
  int rc = dmem_vm_detach(vm);
  if (rc == 0)
    mem_set_vm(g, NULL);
  return rc;
}

static int mb_guest_read(void *g, uint64_t gfn, void *buf)
{
  return mem_guest_read(g, gfn, buf);
}

static int mb_write(void *g, uint64_t gfn, size_t off, const void *d, size_t len, unsigned bits)
{
  return mem_write(g, gfn, off, d, len, bits);
}

static int mb_peek(void *g, uint64_t gfn, void *buf)
{
  return mem_peek(g, gfn, buf);
}
static int mb_present(void *g, uint64_t gfn)
{
  return mem_present(g, gfn);
}
static int mb_mapped(void *g, uint64_t gfn)
{
  return mem_mapped(g, gfn);
}

static void mb_fail(void *g, double p)
{
  for (int op = 0; op < MEM_OP_COUNT; op++)
    if (op != MEM_OP_UNPROTECT) /* a failed unprotect would block the guest */
      mem_fail_prob(g, (mem_op)op, p, DMEM_EIO);
}

static uint64_t mb_violations(void *g, const char **msg)
{
  *msg = mem_violation_msg(g);
  return mem_violations(g);
}

const model_backend model_mem_backend = {
    "memory", mb_create, mb_destroy, mb_load,   mb_attach, mb_detach,     mb_guest_read,
    mb_write, mb_peek,   mb_present, mb_mapped, mb_fail,   mb_violations, NULL,
};

/* ---------------------------------------------------------------- configurations */

typedef struct model_shape {
  const char *name;
  unsigned nvms;
  uint64_t npages;
  int share, protect, swap, concurrent, reattach;
  double fail_p;
  unsigned percent; /* of the total operations */
} model_shape;

static const model_shape shapes[] = {
    {"plain", 2, 512, 0, 0, 0, 0, 1, 0, 30},      {"mapped", 2, 512, 1, 1, 0, 0, 1, 0, 25},
    {"swap", 1, 1024, 0, 1, 1, 0, 1, 0, 25},      {"faulty", 1, 256, 1, 1, 0, 0, 1, 0.01, 10},
    {"concurrent", 1, 256, 1, 1, 0, 1, 0, 0, 10},
};

size_t model_configs(model_config *out, size_t max, uint64_t total_ops, uint64_t seed)
{
  size_t n = sizeof shapes / sizeof shapes[0];
  if (n > max)
    n = max;
  for (size_t i = 0; i < n; i++) {
    const model_shape *s = &shapes[i];
    model_config c = {s->name,
                      s->nvms,
                      s->npages,
                      total_ops * s->percent / 100,
                      seed * 0x100000001b3ull + i + 1,
                      s->share,
                      s->protect,
                      s->swap,
                      s->concurrent,
                      s->concurrent,
                      s->reattach,
                      s->fail_p,
                      NULL};
    out[i] = c;
  }
  return n;
}

static void expect_seen(const model_config *c, const model_result *r, dmem_page_kind k,
                        const char *name)
{
  ck_assert_msg(r->kinds_seen[k] > 0, "%s: no %s page seen in the run", c->name, name);
}

void model_run_checked(const model_config *cfg)
{
  model_result r;
  int rc = model_run(&r, cfg);
  printf("%s ", cfg->backend ? cfg->backend->name : model_mem_backend.name);
  model_print(stdout, cfg, &r);
  fflush(stdout);
  ck_assert_msg(r.mismatches == 0, "%s: %llu mismatches; first: %s", cfg->name,
                (unsigned long long)r.mismatches, r.mismatch);
  ck_assert_msg(r.errors == 0, "%s: %llu errors; first: %s", cfg->name,
                (unsigned long long)r.errors, r.error);
  ck_assert_msg(r.violations == 0, "%s: adapter contract: %s", cfg->name, r.violation);
  ck_assert_int_eq(rc, 0);
  ck_assert_uint_eq(r.ops, cfg->ops);
  ck_assert_uint_gt(r.stats.merges, 0);
  ck_assert_uint_gt(r.stats.faults, 0);
  expect_seen(cfg, &r, DMEM_PAGE_ZERO, "zero");
  expect_seen(cfg, &r, DMEM_PAGE_SHARED, "shared");
  if (cfg->concurrent)
    return; /* a short run; every technique is not guaranteed */
  expect_seen(cfg, &r, DMEM_PAGE_PATCHED, "patched");
  expect_seen(cfg, &r, DMEM_PAGE_COMPRESSED, "compressed");
  if (cfg->share)
    expect_seen(cfg, &r, DMEM_PAGE_MAPPED, "mapped");
  if (cfg->swap)
    expect_seen(cfg, &r, DMEM_PAGE_SWAPPED, "swapped");
  if (cfg->reattach && cfg->ops >= 100000)
    ck_assert_uint_gt(r.reattaches, 0);
}

static uint64_t env_u64(const char *name, uint64_t def)
{
  const char *v = getenv(name);
  return v && *v ? strtoull(v, NULL, 0) : def;
}

size_t model_configs_env(model_config *out, size_t max, const char *ops_var,
                         const model_backend *backend)
{
  size_t n = model_configs(out, max, env_u64(ops_var, 1000000), env_u64("DMEM_MODEL_SEED", 1));
  for (size_t i = 0; i < n; i++)
    out[i].backend = backend;
  return n;
}

void model_print(FILE *f, const model_config *c, const model_result *r)
{
  static const char *const kn[] = {"res", "map", "zero", "shr", "pat", "cmp", "swp"};
  fprintf(f,
          "model %-10s %9llu ops %6.2f s  merges %llu faults %llu hints %llu errors %llu"
          " frames %llu  seen:",
          c->name, (unsigned long long)r->ops, r->seconds, (unsigned long long)r->stats.merges,
          (unsigned long long)r->stats.faults, (unsigned long long)r->stats.hints,
          (unsigned long long)r->stats.errors, (unsigned long long)r->stats.frames);
  for (int k = 0; k < 7; k++)
    fprintf(f, " %s=%llu", kn[k], (unsigned long long)r->kinds_seen[k]);
  fprintf(f, "\n");
  if (r->mismatches)
    fprintf(f, "  %llu mismatches; first: %s\n", (unsigned long long)r->mismatches, r->mismatch);
  if (r->errors)
    fprintf(f, "  %llu errors; first: %s\n", (unsigned long long)r->errors, r->error);
  if (r->violations)
    fprintf(f, "  %llu adapter contract violations; first: %s\n", (unsigned long long)r->violations,
            r->violation);
}
