/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The KVM tests' guest: its VM, vCPUs, programs and replay (kvm_guest.h). */
#include "config.h"

#include "kvm_guest.h"
#include "kvm_cpl3.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE KT_PAGE

/* ---------------------------------------------------------------- guest */

/* The guest's loop, 64-bit code run at CPL 3; rsi points at its parameter
 * block (u32 words): 0 data base, 1 data entry mask, 2 template base,
 * 3 template dword mask, 4 ops, 5 LCG seed, 6 report mask, 7 window shift,
 * 8 window mask, 9 window step, 10 scratch. Both kinds of access pick
 * i = ((x >> 8) & window mask) + (ops >> window shift) * window step, as
 * an entry of the data area or a dword of the template area. At the end
 * ebp = ops done, edi = mismatches, edx = template sum. Assembled from
 * AT&T source with GNU as (--64); each line is one instruction. */
// clang-format off
static const uint8_t guest_code[] = {
  /* start: */
  0x8b, 0x5e, 0x14,                         /* 00: mov 0x14(%rsi),%ebx   x = seed */
  0x31, 0xed,                               /* 03: xor %ebp,%ebp         ops = 0 */
  0x31, 0xd2,                               /* 05: xor %edx,%edx         sum = 0 */
  0x31, 0xff,                               /* 07: xor %edi,%edi         bad = 0 */
  /* loop: */
  0x69, 0xdb, 0x0d, 0x66, 0x19, 0x00,       /* 09: imul $1664525,%ebx,%ebx */
  0x81, 0xc3, 0x5f, 0xf3, 0x6e, 0x3c,       /* 0f: add $1013904223,%ebx */
  0x89, 0xd8,                               /* 15: mov %ebx,%eax */
  0xc1, 0xe8, 0x08,                         /* 17: shr $8,%eax */
  0x23, 0x46, 0x20,                         /* 1a: and 0x20(%rsi),%eax   & window mask */
  0x8b, 0x4e, 0x1c,                         /* 1d: mov 0x1c(%rsi),%ecx */
  0x89, 0x6e, 0x28,                         /* 20: mov %ebp,0x28(%rsi) */
  0xd3, 0x6e, 0x28,                         /* 23: shrl %cl,0x28(%rsi)   ops >> shift */
  0x8b, 0x4e, 0x28,                         /* 26: mov 0x28(%rsi),%ecx */
  0x0f, 0xaf, 0x4e, 0x24,                   /* 29: imul 0x24(%rsi),%ecx  * step */
  0x01, 0xc8,                               /* 2d: add %ecx,%eax         i */
  0x89, 0xd9,                               /* 2f: mov %ebx,%ecx */
  0xc1, 0xe9, 0x1e,                         /* 31: shr $30,%ecx          kind = x >> 30 */
  0x75, 0x0d,                               /* 34: jne data_op */
  0x23, 0x46, 0x0c,                         /* 36: and 0xc(%rsi),%eax    template dword */
  0xc1, 0xe0, 0x02,                         /* 39: shl $2,%eax */
  0x03, 0x46, 0x08,                         /* 3c: add 0x8(%rsi),%eax */
  0x03, 0x10,                               /* 3f: add (%rax),%edx       sum += it */
  0xeb, 0x29,                               /* 41: jmp next */
  /* data_op: */
  0x89, 0xcc,                               /* 43: mov %ecx,%esp         keep kind */
  0x23, 0x46, 0x04,                         /* 45: and 0x4(%rsi),%eax    w = entry */
  0x8d, 0x0c, 0xc5, 0x00, 0x00, 0x00, 0x00, /* 48: lea 0(,%rax,8),%ecx */
  0x03, 0x0e,                               /* 4f: add (%rsi),%ecx       its address */
  0x3b, 0x01,                               /* 51: cmp (%rcx),%eax       tag == w? */
  0x74, 0x0d,                               /* 53: je ok */
  0x83, 0x39, 0x00,                         /* 55: cmpl $0,(%rcx)        or {0, 0}? */
  0x75, 0x06,                               /* 58: jne bad */
  0x83, 0x79, 0x04, 0x00,                   /* 5a: cmpl $0,0x4(%rcx) */
  0x74, 0x02,                               /* 5e: je ok */
  /* bad: */
  0xff, 0xc7,                               /* 60: inc %edi */
  /* ok: */
  0x83, 0xfc, 0x01,                         /* 62: cmp $1,%esp           kind 1: read only */
  0x74, 0x05,                               /* 65: je next */
  0x89, 0x01,                               /* 67: mov %eax,(%rcx)       tag = w */
  0xff, 0x41, 0x04,                         /* 69: incl 0x4(%rcx)        count++ */
  /* next: */
  0xff, 0xc5,                               /* 6c: inc %ebp */
  0x89, 0xe8,                               /* 6e: mov %ebp,%eax */
  0x23, 0x46, 0x18,                         /* 70: and 0x18(%rsi),%eax */
  0x75, 0x04,                               /* 73: jne check */
  0x89, 0xe8,                               /* 75: mov %ebp,%eax */
  0xe7, 0x10,                               /* 77: out %eax,$0x10        progress */
  /* check: */
  0x3b, 0x6e, 0x10,                         /* 79: cmp 0x10(%rsi),%ebp */
  0x75, 0x8b,                               /* 7c: jne loop */
  0xe7, 0x11,                               /* 7e: out %eax,$0x11        done */
  0xf4,                                     /* 80: hlt (not reached) */
  0xeb, 0xf6,                               /* 81: jmp check */
};
// clang-format on

/* KT_PROG_TOUCH: reads a word of each of n pages and stores the TSC
 * cycles of each read. Parameters (u32): 0 first page, 1 n, 2 output. */
// clang-format off
static const uint8_t touch_code[] = {
  0x8b, 0x1e,                         /* 00: mov (%rsi),%ebx        page */
  0x8b, 0x4e, 0x04,                   /* 02: mov 0x4(%rsi),%ecx     n */
  0x8b, 0x7e, 0x08,                   /* 05: mov 0x8(%rsi),%edi     out */
  /* 1: */
  0x0f, 0xae, 0xe8,                   /* 08: lfence */
  0x0f, 0x31,                         /* 0b: rdtsc */
  0x89, 0xc5,                         /* 0d: mov %eax,%ebp */
  0x8b, 0x03,                         /* 0f: mov (%rbx),%eax        the read */
  0x0f, 0xae, 0xe8,                   /* 11: lfence */
  0x0f, 0x31,                         /* 14: rdtsc */
  0x29, 0xe8,                         /* 16: sub %ebp,%eax */
  0x89, 0x07,                         /* 18: mov %eax,(%rdi) */
  0x83, 0xc7, 0x04,                   /* 1a: add $4,%edi */
  0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, /* 1d: add $4096,%ebx */
  0xff, 0xc9,                         /* 23: dec %ecx */
  0x75, 0xe1,                         /* 25: jne 1b */
  0xe7, 0x11,                         /* 27: out %eax,$0x11         done */
  0xf4,                               /* 29: hlt (not reached) */
};
// clang-format on

enum {
  P_DATA,
  P_DMASK,
  P_TMPL,
  P_TMASK,
  P_OPS,
  P_SEED,
  P_REPMASK,
  P_WSHIFT,
  P_WMASK,
  P_WSTEP,
  P_SCRATCH,
  P_WORDS
};

#define PORT_PROGRESS 0x10
#define PORT_DONE 0x11

typedef struct kt_vcpu {
  kt_guest *g;
  unsigned idx;
  int fd;
  struct kvm_run *run;
  pthread_t thread;
  int started;
  uint64_t seen_tick;
  int waiting;  /* in pace(), at a report */
  int finished; /* its thread is about to end */
  kt_vcpu_result res;
} kt_vcpu;

struct kt_guest {
  kt_guest_config cfg;
  dmem_kvm_region *region;
  uint8_t *mem;
  int kvm, vm;
  size_t run_size;
  kt_vcpu vcpu[KT_MAX_VCPUS];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  uint64_t ticks;
  int running, stop;
};

static uint64_t data_page(unsigned vcpu)
{
  return KT_TMPL_PAGE + KT_TMPL_PAGES + (uint64_t)vcpu * KT_DATA_PAGES;
}

static void template_page(uint8_t *p, uint64_t i)
{
  static const enum kt_kind kinds[8] = {KT_ZERO, KT_DUP,  KT_DUP,    KT_SIMILAR,
                                        KT_TEXT, KT_TEXT, KT_RANDOM, KT_SIMILAR};
  kt_fill(p, kinds[i % 8], 7000 + i);
}

static void params(uint32_t *w, const kt_guest_config *c, unsigned vcpu)
{
  memset(w, 0, P_WORDS * 4);
  w[P_DATA] = (uint32_t)(data_page(vcpu) * PAGE);
  w[P_DMASK] = KT_DATA_PAGES * (PAGE / 8) - 1;
  w[P_TMPL] = KT_TMPL_PAGE * PAGE;
  w[P_TMASK] = KT_TMPL_PAGES * (PAGE / 4) - 1;
  w[P_OPS] = (uint32_t)c->ops;
  w[P_SEED] = c->seed + vcpu;
  w[P_REPMASK] = (1u << c->report_log) - 1;
  w[P_WSHIFT] = c->win_log;
  w[P_WMASK] = c->win_entries - 1;
  w[P_WSTEP] = c->win_step;
}

/* Code, parameters, page tables and templates, written through the map. */
static void write_image(kt_guest *g)
{
  uint8_t *m = g->mem;
  if (g->cfg.program == KT_PROG_TOUCH) {
    memcpy(m + KT_CODE_PAGE * PAGE, touch_code, sizeof touch_code);
    uint32_t *w = (uint32_t *)(m + KT_PARAM_PAGE * PAGE);
    w[0] = (uint32_t)(data_page(0) * PAGE);
    w[1] = KT_DATA_PAGES;
    w[2] = (uint32_t)(data_page(1) * PAGE);
    for (uint64_t i = 0; i < KT_DATA_PAGES; i++)
      kt_fill(m + (data_page(0) + i) * PAGE, KT_TEXT, i);
  } else {
    memcpy(m + KT_CODE_PAGE * PAGE, guest_code, sizeof guest_code);
    for (unsigned i = 0; i < g->cfg.nvcpus; i++)
      params((uint32_t *)(m + (KT_PARAM_PAGE + i) * PAGE), &g->cfg, i);
  }
  uint64_t *pml4 = (uint64_t *)(m + KT_PT_PAGE * PAGE);
  uint64_t *pdpt = (uint64_t *)(m + (KT_PT_PAGE + 1) * PAGE);
  uint64_t *pd = (uint64_t *)(m + (KT_PT_PAGE + 2) * PAGE);
  pml4[0] = (KT_PT_PAGE + 1) * PAGE | 7; /* present, writable, user */
  pdpt[0] = (KT_PT_PAGE + 2) * PAGE | 7;
  for (uint64_t i = 0; i < 512; i++)
    pd[i] = i << 21 | 0x87; /* 2 MiB pages */
  for (uint64_t i = 0; i < KT_TMPL_PAGES; i++)
    template_page(m + (KT_TMPL_PAGE + i) * PAGE, i);
}

static int setup_vcpu(kt_guest *g, unsigned i, struct kvm_cpuid2 *cpuid, char *err, size_t len)
{
  kt_vcpu *v = &g->vcpu[i];
  v->g = g;
  v->idx = i;
  v->fd = ioctl(g->vm, KVM_CREATE_VCPU, (unsigned long)i);
  if (v->fd < 0) {
    snprintf(err, len, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
    return -1;
  }
  v->run = mmap(NULL, g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
  if (v->run == MAP_FAILED) {
    v->run = NULL;
    snprintf(err, len, "mmap of kvm_run: %s", strerror(errno));
    return -1;
  }
  /* 64-bit flat segments at CPL 3; page 0 stays zero, which is the I/O
   * bitmap OUT consults without a TSS of our own. */
  kvm_cpl3 c = {.cr3 = KT_PT_PAGE * PAGE,
                .rip = KT_CODE_PAGE * PAGE,
                .rsi = (KT_PARAM_PAGE + i) * PAGE,
                .code_sel = 0x1b,
                .data_sel = 0x23};
  if (kvm_cpl3_setup(v->fd, cpuid, &c, err, len) != 0)
    return -1;
  return 0;
}

int kt_guest_create(kt_guest **out, dmem_kvm_region *r, const kt_guest_config *cfg, char *err,
                    size_t errlen)
{
  int touch = cfg->program == KT_PROG_TOUCH;
  if (cfg->nvcpus < 1 || cfg->nvcpus > (touch ? 1 : KT_MAX_VCPUS) ||
      (!touch && (cfg->ops == 0 || cfg->ops >= 1ull << 32)) ||
      dmem_kvm_region_npages(r) < KT_GUEST_PAGES) {
    snprintf(err, errlen, "bad guest configuration");
    return -1;
  }
  kt_guest *g = calloc(1, sizeof *g);
  if (!g) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  g->cfg = *cfg;
  g->region = r;
  g->mem = dmem_kvm_region_addr(r);
  g->vm = -1;
  for (unsigned i = 0; i < KT_MAX_VCPUS; i++)
    g->vcpu[i].fd = -1;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  write_image(g);
  int rc = 77;
  g->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (g->kvm < 0) {
    snprintf(err, errlen, "cannot open /dev/kvm: %s", strerror(errno));
    goto fail;
  }
  g->vm = ioctl(g->kvm, KVM_CREATE_VM, 0);
  if (g->vm < 0) {
    snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
    goto fail;
  }
  int sz = ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (sz <= 0) {
    snprintf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
    goto fail;
  }
  g->run_size = (size_t)sz;
  rc = -1;
  if (dmem_kvm_region_set_slot(r, g->vm, 0, 0, cfg->log_dirty) != 0) {
    snprintf(err, errlen, "set_slot: %s", dmem_kvm_region_errmsg(r));
    goto fail;
  }
  struct kvm_cpuid2 *cpuid = kvm_cpl3_cpuid(g->kvm);
  for (unsigned i = 0; i < cfg->nvcpus; i++) {
    if (setup_vcpu(g, i, cpuid, err, errlen) != 0) {
      free(cpuid);
      goto fail;
    }
  }
  free(cpuid);
  *out = g;
  return 0;
fail:
  kt_guest_destroy(g);
  return rc;
}

void kt_guest_destroy(kt_guest *g)
{
  if (!g)
    return;
  kt_guest_join(g);
  for (unsigned i = 0; i < KT_MAX_VCPUS; i++) {
    if (g->vcpu[i].run)
      munmap(g->vcpu[i].run, g->run_size);
    if (g->vcpu[i].fd >= 0)
      close(g->vcpu[i].fd);
  }
  if (g->region)
    dmem_kvm_region_set_slot(g->region, -1, 0, 0, 0);
  if (g->vm >= 0)
    close(g->vm);
  if (g->kvm >= 0)
    close(g->kvm);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g);
}

static void verr(kt_vcpu *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verr(kt_vcpu *v, const char *fmt, ...)
{
  if (v->res.error[0])
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->res.error, sizeof v->res.error, fmt, ap);
  va_end(ap);
}

/* Paces the vCPU: waits (bounded) for the next scan after the last one it
 * saw, so that guest progress and reclaim interleave. */
static void pace(kt_vcpu *v)
{
  kt_guest *g = v->g;
  pthread_mutex_lock(&g->mu);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 2;
  v->waiting = 1;
  pthread_cond_broadcast(&g->cv);
  while (g->ticks <= v->seen_tick && !g->stop)
    if (pthread_cond_timedwait(&g->cv, &g->mu, &until) != 0)
      break;
  v->waiting = 0;
  v->seen_tick = g->ticks;
  pthread_mutex_unlock(&g->mu);
}

static int handle_io(kt_vcpu *v)
{
  struct kvm_run *run = v->run;
  uint32_t val = 0;
  if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 || run->io.count != 1) {
    verr(v, "unexpected I/O exit: port %#x dir %u size %u", run->io.port, run->io.direction,
         run->io.size);
    return -1;
  }
  memcpy(&val, (uint8_t *)run + run->io.data_offset, 4);
  if (run->io.port == PORT_PROGRESS) {
    uint64_t want = (v->res.reports + 1) << v->g->cfg.report_log;
    if (val != (uint32_t)want) {
      verr(v, "progress report %u, expected %llu", val, (unsigned long long)want);
      return -1;
    }
    v->res.reports++;
    pace(v);
    return 0;
  }
  if (run->io.port == PORT_DONE)
    return 1;
  verr(v, "OUT to unexpected port %#x", run->io.port);
  return -1;
}

static void finish(kt_vcpu *v)
{
  struct kvm_regs r;
  if (ioctl(v->fd, KVM_GET_REGS, &r) != 0) {
    verr(v, "KVM_GET_REGS: %s", strerror(errno));
    return;
  }
  v->res.done = 1;
  v->res.ops = (uint32_t)r.rbp;
  v->res.mismatch = (uint32_t)r.rdi;
  v->res.sum = (uint32_t)r.rdx;
}

static void *vcpu_thread(void *arg)
{
  kt_vcpu *v = arg;
  for (;;) {
    if (__atomic_load_n(&v->g->stop, __ATOMIC_ACQUIRE)) {
      verr(v, "stopped before the end");
      break;
    }
    int rc = ioctl(v->fd, KVM_RUN, 0);
    v->res.exits++;
    if (rc < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (rc < 0) {
      verr(v, "KVM_RUN: %s", strerror(errno));
      break;
    }
    int how = 0;
    switch (v->run->exit_reason) {
    case KVM_EXIT_IO:
      how = handle_io(v);
      break;
    case KVM_EXIT_HLT:
      how = 1;
      break;
    case KVM_EXIT_SHUTDOWN:
      verr(v, "KVM_EXIT_SHUTDOWN: the guest took an exception (triple fault)");
      how = -1;
      break;
    case KVM_EXIT_MMIO:
      verr(v, "KVM_EXIT_MMIO at %#llx (guest RAM not reachable?)",
           (unsigned long long)v->run->mmio.phys_addr);
      how = -1;
      break;
    case KVM_EXIT_INTERNAL_ERROR:
      verr(v, "KVM_EXIT_INTERNAL_ERROR, suberror %u", v->run->internal.suberror);
      how = -1;
      break;
    case KVM_EXIT_FAIL_ENTRY:
      verr(v, "KVM_EXIT_FAIL_ENTRY, reason %#llx",
           (unsigned long long)v->run->fail_entry.hardware_entry_failure_reason);
      how = -1;
      break;
    default:
      verr(v, "unexpected exit reason %u", v->run->exit_reason);
      how = -1;
      break;
    }
    if (how > 0)
      finish(v);
    if (how != 0)
      break;
  }
  pthread_mutex_lock(&v->g->mu);
  v->finished = 1;
  v->g->running--;
  pthread_cond_broadcast(&v->g->cv);
  pthread_mutex_unlock(&v->g->mu);
  return NULL;
}

static void on_sigusr1(int sig)
{
  (void)sig;
}

int kt_guest_start(kt_guest *g)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigusr1;
  sigaction(SIGUSR1, &sa, NULL);
  for (unsigned i = 0; i < g->cfg.nvcpus; i++) {
    pthread_mutex_lock(&g->mu);
    g->running++;
    pthread_mutex_unlock(&g->mu);
    if (pthread_create(&g->vcpu[i].thread, NULL, vcpu_thread, &g->vcpu[i]) != 0) {
      pthread_mutex_lock(&g->mu);
      g->running--;
      pthread_mutex_unlock(&g->mu);
      return -1;
    }
    g->vcpu[i].started = 1;
  }
  return 0;
}

void kt_guest_tick(kt_guest *g)
{
  pthread_mutex_lock(&g->mu);
  g->ticks++;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

int kt_guest_wait_reports(kt_guest *g, unsigned timeout_ms)
{
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  until.tv_sec += timeout_ms / 1000 + until.tv_nsec / 1000000000L;
  until.tv_nsec %= 1000000000L;
  pthread_mutex_lock(&g->mu);
  int rc = 0;
  for (;;) {
    unsigned busy = 0;
    for (unsigned i = 0; i < g->cfg.nvcpus; i++)
      busy += g->vcpu[i].started && !g->vcpu[i].finished &&
              !(g->vcpu[i].waiting && g->vcpu[i].seen_tick == g->ticks);
    if (busy == 0)
      break;
    if (pthread_cond_timedwait(&g->cv, &g->mu, &until) != 0) {
      rc = -1;
      break;
    }
  }
  pthread_mutex_unlock(&g->mu);
  return rc;
}

int kt_guest_running(kt_guest *g)
{
  pthread_mutex_lock(&g->mu);
  int n = g->running;
  pthread_mutex_unlock(&g->mu);
  return n > 0;
}

void kt_guest_join(kt_guest *g)
{
  if (kt_guest_running(g)) {
    __atomic_store_n(&g->stop, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&g->mu);
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (unsigned i = 0; i < g->cfg.nvcpus; i++) {
      if (g->vcpu[i].started && g->vcpu[i].run) {
        g->vcpu[i].run->immediate_exit = 1;
        pthread_kill(g->vcpu[i].thread, SIGUSR1);
      }
    }
  }
  for (unsigned i = 0; i < g->cfg.nvcpus; i++) {
    if (g->vcpu[i].started) {
      pthread_join(g->vcpu[i].thread, NULL);
      g->vcpu[i].started = 0;
    }
  }
}

const kt_vcpu_result *kt_guest_result(kt_guest *g, unsigned vcpu)
{
  return &g->vcpu[vcpu].res;
}

/* ---------------------------------------------------------------- touch */

static uint64_t rdtsc(void)
{
  uint32_t lo, hi;
  __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi));
  return (uint64_t)hi << 32 | lo;
}

/* TSC ticks per ns, measured against CLOCK_MONOTONIC over 50 ms. */
static double tsc_per_ns(void)
{
  uint64_t t0 = kt_now_ns(), c0 = rdtsc();
  struct timespec ts = {0, 50000000};
  nanosleep(&ts, NULL);
  uint64_t t1 = kt_now_ns(), c1 = rdtsc();
  return (double)(c1 - c0) / (double)(t1 - t0);
}

int kt_guest_punch_data(kt_guest *g)
{
  int fd = dmem_kvm_region_fd(g->region);
  return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(data_page(0) * PAGE),
                   (off_t)(2 * KT_DATA_PAGES * PAGE));
}

size_t kt_guest_touch_ns(kt_guest *g, uint64_t *ns, size_t n)
{
  if (n > KT_DATA_PAGES)
    n = KT_DATA_PAGES;
  double rate = tsc_per_ns();
  const uint8_t *out = g->mem + data_page(1) * PAGE;
  for (size_t i = 0; i < n; i++) {
    uint32_t c;
    memcpy(&c, out + i * 4, 4);
    ns[i] = (uint64_t)((double)c / rate);
  }
  return n;
}

/* ---------------------------------------------------------------- replay */

/* Replays vCPU i's loop: its data area's final entries (2 words each) and
 * its template sum. */
static uint32_t replay(const kt_guest *g, unsigned i, uint32_t *entries, const uint8_t *tmpl)
{
  const kt_guest_config *c = &g->cfg;
  uint32_t w[P_WORDS];
  params(w, c, i);
  uint32_t x = w[P_SEED], sum = 0;
  memset(entries, 0, KT_DATA_PAGES * PAGE);
  for (uint32_t op = 0; op < w[P_OPS]; op++) {
    x = x * 1664525u + 1013904223u;
    uint32_t kind = x >> 30;
    uint32_t idx = ((x >> 8) & w[P_WMASK]) + (op >> w[P_WSHIFT]) * w[P_WSTEP];
    if (kind == 0) {
      uint32_t word;
      memcpy(&word, tmpl + (size_t)(idx & w[P_TMASK]) * 4, 4);
      sum += word;
      continue;
    }
    uint32_t e = idx & w[P_DMASK];
    if (kind != 1) {
      entries[e * 2] = e;
      entries[e * 2 + 1]++;
    }
  }
  return sum;
}

static uint64_t diff_pages(const uint8_t *want, const uint8_t *got, uint64_t first, uint64_t n,
                           const char *what, char *msg, size_t len)
{
  uint64_t bad = 0;
  for (uint64_t p = 0; p < n; p++) {
    if (memcmp(want + p * PAGE, got + p * PAGE, PAGE) == 0)
      continue;
    if (bad++ == 0 && !msg[0]) {
      size_t off = 0;
      while (want[p * PAGE + off] == got[p * PAGE + off])
        off++;
      snprintf(msg, len, "%s page %llu (gfn %llu) differs at byte %zu: %#x, expected %#x", what,
               (unsigned long long)p, (unsigned long long)(first + p), off, got[p * PAGE + off],
               want[p * PAGE + off]);
    }
  }
  return bad;
}

uint64_t kt_guest_verify(kt_guest *g, const uint8_t *mem, char *msg, size_t len)
{
  msg[0] = 0;
  uint64_t bad = 0;
  uint8_t *want = malloc((size_t)KT_DATA_PAGES * PAGE);
  uint8_t *tmpl = malloc((size_t)KT_TMPL_PAGES * PAGE);
  if (!want || !tmpl) {
    free(want);
    free(tmpl);
    snprintf(msg, len, "out of memory");
    return 1;
  }
  for (uint64_t i = 0; i < KT_TMPL_PAGES; i++)
    template_page(tmpl + i * PAGE, i);
  bad += diff_pages(tmpl, mem + KT_TMPL_PAGE * PAGE, KT_TMPL_PAGE, KT_TMPL_PAGES, "template", msg,
                    len);
  if (g->cfg.program == KT_PROG_TOUCH) {
    for (uint64_t i = 0; i < KT_DATA_PAGES; i++)
      kt_fill(want + i * PAGE, KT_TEXT, i);
    bad +=
        diff_pages(want, mem + data_page(0) * PAGE, data_page(0), KT_DATA_PAGES, "data", msg, len);
    if (memcmp(mem + KT_CODE_PAGE * PAGE, touch_code, sizeof touch_code) != 0 && !bad++)
      snprintf(msg, len, "the guest's code changed");
    free(want);
    free(tmpl);
    return bad;
  }
  if (memcmp(mem + KT_CODE_PAGE * PAGE, guest_code, sizeof guest_code) != 0) {
    bad++;
    if (!msg[0])
      snprintf(msg, len, "the guest's code changed");
  }
  for (unsigned i = 0; i < g->cfg.nvcpus; i++) {
    uint32_t sum = replay(g, i, (uint32_t *)want, tmpl);
    bad +=
        diff_pages(want, mem + data_page(i) * PAGE, data_page(i), KT_DATA_PAGES, "data", msg, len);
    const kt_vcpu_result *res = &g->vcpu[i].res;
    if (res->done && res->sum != sum) {
      bad++;
      if (!msg[0])
        snprintf(msg, len, "vCPU %u summed %#x over the templates, expected %#x", i, res->sum, sum);
    }
  }
  free(want);
  free(tmpl);
  return bad;
}
