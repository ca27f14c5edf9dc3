/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The in-memory test adapter (see memadapter.h).
 *
 * Invariants kept per page: a page that is not present has no mapping, no
 * protection and no bits, and its private buffer holds poison; a mapped
 * page's private buffer holds a snapshot of the frame taken at share().
 * Every operation checks what the engine promised (adapter.h) and records a
 * violation instead of crashing, so that a test can report it. */
#include "config.h"

#include "memadapter.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE DMEM_PAGE_SIZE
#define POISON 0x6b
/* A guest write that waits this long on a protected page is a violation. */
#define PROTECT_WAIT_S 20
/* Faults in a row that leave a page absent before the guest gives up. */
#define MAX_FAULT_TRIES 1000

typedef struct mem_page {
  const uint8_t *frame; /* mapped frame, or NULL */
  uint32_t frame_id;
  uint8_t present, prot, bits;
} mem_page;

typedef struct mem_fail {
  unsigned next;
  int next_err;
  double p;
  int p_err;
} mem_fail;

struct mem_adapter {
  mem_options opts;
  dmem_adapter_ops ops;
  dmem_vm *vm;
  mem_page *pages;
  uint8_t *mem; /* npages * PAGE */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t rng;
  mem_fail fail[MEM_OP_COUNT];
  uint64_t calls[MEM_OP_COUNT], failed[MEM_OP_COUNT];
  uint64_t violations;
  char msg[256];
};

static void lock(mem_adapter *m)
{
  if (m->opts.threadsafe)
    pthread_mutex_lock(&m->mu);
}

static void unlock(mem_adapter *m)
{
  if (m->opts.threadsafe)
    pthread_mutex_unlock(&m->mu);
}

static void wake(mem_adapter *m)
{
  if (m->opts.threadsafe)
    pthread_cond_broadcast(&m->cv);
}

static uint8_t *priv(mem_adapter *m, uint64_t gfn) { return m->mem + gfn * PAGE; }

/* Called with the mutex held. */
__attribute__((format(printf, 2, 3))) static void violation(mem_adapter *m, const char *fmt, ...)
{
  if (m->violations++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->msg, sizeof m->msg, fmt, ap);
    va_end(ap);
  }
}

/* What the guest sees of a present page; checks a mapped frame against its
 * snapshot. Mutex held. */
static const uint8_t *visible(mem_adapter *m, uint64_t gfn)
{
  mem_page *p = &m->pages[gfn];
  if (!p->frame)
    return priv(m, gfn);
  if (memcmp(p->frame, priv(m, gfn), PAGE) != 0)
    violation(m, "frame %u mapped at gfn %llu changed under its mapping", (unsigned)p->frame_id,
              (unsigned long long)gfn);
  return p->frame;
}

static uint64_t rng_next(mem_adapter *m)
{
  uint64_t z = (m->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Counts the call and decides whether to fail it. Mutex held. */
static int enter(mem_adapter *m, mem_op op)
{
  mem_fail *f = &m->fail[op];
  m->calls[op]++;
  int err = 0;
  if (f->next > 0) {
    f->next--;
    err = f->next_err;
  } else if (f->p > 0 && (double)(rng_next(m) >> 11) * 0x1.0p-53 < f->p) {
    err = f->p_err;
  }
  if (err)
    m->failed[op]++;
  return err;
}

static int check_gfn(mem_adapter *m, uint64_t gfn, const char *op)
{
  if (gfn < m->opts.npages)
    return 0;
  violation(m, "%s of gfn %llu past the VM's %llu pages", op, (unsigned long long)gfn,
            (unsigned long long)m->opts.npages);
  return DMEM_ERANGE;
}

/* Op prologue: lock, range check, absent check, failure injection. */
static int begin(mem_adapter *m, mem_op op, uint64_t gfn, int need_present, const char *name)
{
  lock(m);
  int rc = check_gfn(m, gfn, name);
  if (rc == 0 && need_present && !m->pages[gfn].present) {
    violation(m, "%s of absent gfn %llu", name, (unsigned long long)gfn);
    rc = DMEM_EINVAL;
  }
  if (rc == 0)
    rc = enter(m, op);
  if (rc)
    unlock(m);
  return rc;
}

/* ---------------------------------------------------------------- ops */

static int op_read(void *buf, uint64_t gfn, void *ud)
{
  mem_adapter *m = ud;
  int rc = begin(m, MEM_OP_READ, gfn, 1, "read");
  if (rc)
    return rc;
  memcpy(buf, visible(m, gfn), PAGE);
  unlock(m);
  return 0;
}

static int op_bits(uint8_t *out, uint64_t first, size_t n, void *ud)
{
  mem_adapter *m = ud;
  lock(m);
  if (first > m->opts.npages || n > m->opts.npages - first) {
    violation(m, "bits of %zu pages from gfn %llu past the VM", n, (unsigned long long)first);
    unlock(m);
    return DMEM_ERANGE;
  }
  int rc = enter(m, MEM_OP_BITS);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    mem_page *p = &m->pages[first + i];
    out[i] = p->present ? p->bits : 0;
    p->bits = 0;
  }
  unlock(m);
  return rc;
}

static int op_protect(uint64_t gfn, void *ud)
{
  mem_adapter *m = ud;
  int rc = begin(m, MEM_OP_PROTECT, gfn, 1, "protect");
  if (rc)
    return rc;
  m->pages[gfn].prot = 1;
  unlock(m);
  return 0;
}

static int op_unprotect(uint64_t gfn, void *ud)
{
  mem_adapter *m = ud;
  int rc = begin(m, MEM_OP_UNPROTECT, gfn, 0, "unprotect");
  if (rc)
    return rc;
  m->pages[gfn].prot = 0;
  wake(m);
  unlock(m);
  return 0;
}

static void make_absent(mem_adapter *m, uint64_t gfn)
{
  mem_page *p = &m->pages[gfn];
  p->present = p->prot = p->bits = 0;
  p->frame = NULL;
  memset(priv(m, gfn), POISON, PAGE);
}

/* With protect() offered, the engine must hold a present page protected
 * from its read to its eviction or sharing, or a guest write in between
 * is lost. Mutex held. */
static void check_protected(mem_adapter *m, uint64_t gfn, const char *op)
{
  if (m->opts.protect && m->pages[gfn].present && !m->pages[gfn].prot)
    violation(m, "%s of gfn %llu without protecting it first", op, (unsigned long long)gfn);
}

static int op_evict(uint64_t gfn, void *ud)
{
  mem_adapter *m = ud;
  int rc = begin(m, MEM_OP_EVICT, gfn, 1, "evict");
  if (rc)
    return rc;
  check_protected(m, gfn, "evict");
  make_absent(m, gfn);
  wake(m);
  unlock(m);
  return 0;
}

static int op_share(uint64_t gfn, uint32_t frame_id, const void *frame, void *ud)
{
  mem_adapter *m = ud;
  int rc = begin(m, MEM_OP_SHARE, gfn, 0, "share");
  if (rc)
    return rc;
  mem_page *p = &m->pages[gfn];
  check_protected(m, gfn, "share");
  if (p->present && memcmp(visible(m, gfn), frame, PAGE) != 0)
    violation(m, "share of frame %u over gfn %llu changes the page's content", (unsigned)frame_id,
              (unsigned long long)gfn);
  memcpy(priv(m, gfn), frame, PAGE);
  p->frame = frame;
  p->frame_id = frame_id;
  p->present = 1;
  p->prot = 0;
  wake(m);
  unlock(m);
  return 0;
}

static int op_install(uint64_t gfn, const void *content, void *ud)
{
  mem_adapter *m = ud;
  int rc = begin(m, MEM_OP_INSTALL, gfn, 0, "install");
  if (rc)
    return rc;
  mem_page *p = &m->pages[gfn];
  if (p->present && memcmp(visible(m, gfn), content, PAGE) != 0)
    violation(m, "install over resident gfn %llu changes its content", (unsigned long long)gfn);
  memcpy(priv(m, gfn), content, PAGE);
  p->frame = NULL;
  p->present = 1;
  p->prot = 0;
  wake(m);
  unlock(m);
  return 0;
}

/* ---------------------------------------------------------------- life */

mem_adapter *mem_create(const mem_options *opts)
{
  mem_adapter *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  m->opts = *opts;
  m->rng = opts->seed;
  pthread_mutex_init(&m->mu, NULL);
  pthread_cond_init(&m->cv, NULL);
  m->pages = calloc(opts->npages ? opts->npages : 1, sizeof *m->pages);
  m->mem = calloc(opts->npages ? opts->npages : 1, PAGE);
  if (!m->pages || !m->mem) {
    mem_destroy(m);
    return NULL;
  }
  for (uint64_t i = 0; i < opts->npages; i++)
    m->pages[i].present = 1;
  dmem_adapter_ops ops = {DMEM_ADAPTER_OPS_VERSION, op_read, op_bits, NULL, NULL, op_evict,
                          NULL, op_install};
  if (opts->protect) {
    ops.protect = op_protect;
    ops.unprotect = op_unprotect;
  }
  if (opts->share)
    ops.share = op_share;
  m->ops = ops;
  return m;
}

void mem_destroy(mem_adapter *m)
{
  if (!m)
    return;
  pthread_mutex_destroy(&m->mu);
  pthread_cond_destroy(&m->cv);
  free(m->pages);
  free(m->mem);
  free(m);
}

const dmem_adapter_ops *mem_ops(const mem_adapter *m) { return &m->ops; }

uint64_t mem_npages(const mem_adapter *m) { return m->opts.npages; }

void mem_set_vm(mem_adapter *m, dmem_vm *vm)
{
  lock(m);
  m->vm = vm;
  unlock(m);
}

int mem_attach(dmem_vm **out, dmem_engine *engine, mem_adapter *m, const char *name)
{
  dmem_vm_options o = DMEM_VM_OPTIONS_INIT;
  o.ops = &m->ops;
  o.ud = m;
  o.npages = m->opts.npages;
  o.name = name;
  o.sharing_domain = m->opts.sharing_domain;
  int rc = dmem_vm_attach(out, engine, &o);
  if (rc == 0)
    mem_set_vm(m, *out);
  return rc;
}

/* ---------------------------------------------------------------- host side */

void mem_load(mem_adapter *m, uint64_t gfn, const void *content)
{
  lock(m);
  mem_page *p = &m->pages[gfn];
  memcpy(priv(m, gfn), content, PAGE);
  p->present = 1;
  p->frame = NULL;
  unlock(m);
}

int mem_peek(mem_adapter *m, uint64_t gfn, void *buf)
{
  lock(m);
  int rc = m->pages[gfn].present ? 0 : DMEM_ENOENT;
  if (rc == 0)
    memcpy(buf, visible(m, gfn), PAGE);
  unlock(m);
  return rc;
}

int mem_present(mem_adapter *m, uint64_t gfn)
{
  lock(m);
  int v = m->pages[gfn].present;
  unlock(m);
  return v;
}

int mem_mapped(mem_adapter *m, uint64_t gfn)
{
  lock(m);
  int v = m->pages[gfn].frame != NULL;
  unlock(m);
  return v;
}

int mem_protected(mem_adapter *m, uint64_t gfn)
{
  lock(m);
  int v = m->pages[gfn].prot;
  unlock(m);
  return v;
}

void mem_set_bits(mem_adapter *m, uint64_t gfn, unsigned bits)
{
  lock(m);
  if (m->pages[gfn].present)
    m->pages[gfn].bits |= (uint8_t)bits;
  unlock(m);
}

/* ---------------------------------------------------------------- guest side */

/* Waits, mutex held, until the page is no longer write-protected; returns
 * 1 when it went absent meanwhile (fault it again), 0 to go on writing. */
static int wait_unprotected(mem_adapter *m, uint64_t gfn)
{
  mem_page *p = &m->pages[gfn];
  if (!m->opts.threadsafe) {
    violation(m, "guest write to gfn %llu, left protected", (unsigned long long)gfn);
    return 0;
  }
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += PROTECT_WAIT_S;
  while (p->present && p->prot) {
    if (pthread_cond_timedwait(&m->cv, &m->mu, &until) == ETIMEDOUT) {
      violation(m, "guest write to gfn %llu waited %d s on its protection",
                (unsigned long long)gfn, PROTECT_WAIT_S);
      return 0;
    }
  }
  return !p->present;
}

/* Mutex held; the page is present. */
static void access_page(mem_adapter *m, uint64_t gfn, void *rbuf, size_t off, const void *data,
                        size_t len, unsigned bits)
{
  mem_page *p = &m->pages[gfn];
  if (rbuf) {
    memcpy(rbuf, visible(m, gfn), PAGE);
  } else {
    if (p->frame) {
      visible(m, gfn); /* the snapshot already is the private copy */
      p->frame = NULL;
    }
    memcpy(priv(m, gfn) + off, data, len);
  }
  p->bits |= (uint8_t)bits;
}

static int guest_access(mem_adapter *m, uint64_t gfn, void *rbuf, size_t off, const void *data,
                        size_t len, unsigned bits)
{
  if (gfn >= m->opts.npages || off > PAGE || len > PAGE - off)
    return DMEM_ERANGE;
  lock(m);
  for (unsigned tries = 0;; tries++) {
    mem_page *p = &m->pages[gfn];
    if (!p->present) {
      dmem_vm *vm = m->vm;
      if (!vm || tries == MAX_FAULT_TRIES) {
        if (vm)
          violation(m, "gfn %llu stays absent after %u faults", (unsigned long long)gfn, tries);
        unlock(m);
        return DMEM_ENOENT;
      }
      unlock(m);
      int rc = dmem_vm_fault(vm, gfn);
      if (rc)
        return rc;
      lock(m);
      continue;
    }
    if (!rbuf && p->prot && wait_unprotected(m, gfn))
      continue;
    access_page(m, gfn, rbuf, off, data, len, bits);
    unlock(m);
    return 0;
  }
}

int mem_guest_read(mem_adapter *m, uint64_t gfn, void *buf)
{
  return guest_access(m, gfn, buf, 0, NULL, 0, DMEM_BIT_REFERENCED);
}

int mem_guest_write(mem_adapter *m, uint64_t gfn, size_t offset, const void *data, size_t len)
{
  return guest_access(m, gfn, NULL, offset, data, len, DMEM_BIT_REFERENCED | DMEM_BIT_MODIFIED);
}

int mem_write(mem_adapter *m, uint64_t gfn, size_t offset, const void *data, size_t len,
              unsigned bits)
{
  return guest_access(m, gfn, NULL, offset, data, len, bits);
}

/* ---------------------------------------------------------------- injection, counters */

void mem_fail_next(mem_adapter *m, mem_op op, unsigned n, int err)
{
  lock(m);
  m->fail[op].next = n;
  m->fail[op].next_err = err;
  unlock(m);
}

void mem_fail_prob(mem_adapter *m, mem_op op, double p, int err)
{
  lock(m);
  m->fail[op].p = p;
  m->fail[op].p_err = err;
  unlock(m);
}

void mem_fail_clear(mem_adapter *m)
{
  lock(m);
  memset(m->fail, 0, sizeof m->fail);
  unlock(m);
}

uint64_t mem_calls(mem_adapter *m, mem_op op)
{
  lock(m);
  uint64_t v = m->calls[op];
  unlock(m);
  return v;
}

uint64_t mem_failed(mem_adapter *m, mem_op op)
{
  lock(m);
  uint64_t v = m->failed[op];
  unlock(m);
  return v;
}

uint64_t mem_violations(mem_adapter *m)
{
  lock(m);
  uint64_t v = m->violations;
  unlock(m);
  return v;
}

const char *mem_violation_msg(mem_adapter *m) { return m->violations ? m->msg : ""; }
