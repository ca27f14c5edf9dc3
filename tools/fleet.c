/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fleet of demo guests: their RAM (engine regions or anonymous memory),
 * setup, the run loop, the kernel's accounting and verification
 * (fleet.h). */
#include "config.h"

#include "fleet.h"
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE DMEM_PAGE_SIZE
/* Every 2^REPORT_LOG operations a guest reports (and is paced). */
#define REPORT_LOG 14
/* The guests' pace, which their windows' speeds assume (each vCPU): a
 * mostly idle guest, as most are, which also keeps the replay at the end
 * short. */
#define DESIGN_OPS_PER_S 1000000.0
/* The scanner: a slice every TICK_S, the whole of guest memory every
 * PASS_S, so that a page left alone reaches C4 (compression) after
 * C4_PASSES passes. */
#define TICK_S 0.05
#define PASS_S 1.5
#define C4_PASSES 3

double fleet_now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double fleet_thread_cpu_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double fleet_process_cpu_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- memory */

int fleet_pss_anon(uint64_t *kb, pid_t pid)
{
  char path[64];
  if (pid > 0)
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  else
    snprintf(path, sizeof path, "/proc/self/smaps_rollup");
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  char line[256];
  unsigned long long v;
  int found = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Pss_Anon: %llu kB", &v) == 1) {
      *kb = v;
      found = 1;
    }
  fclose(f);
  return found ? 0 : -1;
}

int fleet_sample(fleet_mem *m, const fleet *f)
{
  m->memfd_bytes = 0;
  for (unsigned i = 0; i < f->n; i++) {
    uint64_t b;
    struct stat st;
    if (f->vms[i].region) {
      if (dmem_kvm_region_memfd_bytes(&b, f->vms[i].region) != 0)
        return -1;
      m->memfd_bytes += b;
    } else if (f->vms[i].memfd >= 0) {
      if (fstat(f->vms[i].memfd, &st) != 0)
        return -1;
      m->memfd_bytes += (uint64_t)st.st_blocks * 512u;
    }
  }
  /* The engine's frames and blobs live in memfds of their own (not
   * anonymous memory). */
  uint64_t eb = 0;
  if (f->engine && dmem_engine_memfd_bytes(f->engine, &eb) != 0)
    return -1;
  m->memfd_bytes += eb;
  uint64_t kb;
  if (fleet_pss_anon(&kb, 0) != 0)
    return -1;
  m->anon_kb = kb > f->base_anon_kb ? kb - f->base_anon_kb : 0;
  return 0;
}

uint64_t fleet_mem_kb(const fleet_mem *m)
{
  return m->memfd_bytes / 1024 + m->anon_kb;
}

double fleet_saved_pct(const fleet_mem *before, const fleet_mem *after)
{
  double b = (double)fleet_mem_kb(before), a = (double)fleet_mem_kb(after);
  return b > 0 ? 100.0 * (b - a) / b : 0.0;
}

void fleet_kvm_stats(dmem_kvm_stats *out, const fleet *f)
{
  memset(out, 0, sizeof *out);
  out->version = DMEM_KVM_STATS_VERSION;
  for (unsigned i = 0; i < f->n; i++) {
    dmem_kvm_stats s;
    memset(&s, 0, sizeof s);
    s.version = DMEM_KVM_STATS_VERSION;
    if (!f->vms[i].region || dmem_kvm_region_stats(&s, f->vms[i].region) != 0)
      continue;
    out->faults_missing += s.faults_missing;
    out->faults_minor += s.faults_minor;
    out->faults_wp += s.faults_wp;
    out->faults_failed += s.faults_failed;
    out->cow_mapped += s.cow_mapped;
    out->cow_maps += s.cow_maps;
    out->cow_fallbacks += s.cow_fallbacks;
    out->vmas_used += s.vmas_used;
    out->vma_budget += s.vma_budget;
    for (unsigned b = 0; b < DMEM_KVM_LAT_BUCKETS; b++)
      out->lat_hist[b] += s.lat_hist[b];
    out->lat_count += s.lat_count;
    out->lat_sum_ns += s.lat_sum_ns;
    if (s.lat_max_ns > out->lat_max_ns)
      out->lat_max_ns = s.lat_max_ns;
  }
}

void fleet_pages(const fleet *f, uint64_t *pages, uint64_t *content, uint64_t *data)
{
  *pages = *content = *data = 0;
  for (unsigned i = 0; i < f->n; i++) {
    *pages += f->vms[i].layout.npages;
    *content += f->vms[i].layout.content_pages;
    *data += f->vms[i].layout.data_pages;
  }
}

double fleet_engine_cpu_s(const fleet *f, const fleet_totals *t)
{
  double vcpus = 0;
  for (unsigned i = 0; i < f->n; i++)
    vcpus += dg_guest_cpu_s(f->vms[i].guest);
  double others = fleet_process_cpu_s() - fleet_thread_cpu_s() - vcpus;
  return t->scan_cpu_s + (others > 0 ? others : 0);
}

/* ---------------------------------------------------------------- setup */

static unsigned log2_floor(uint64_t v)
{
  unsigned l = 0;
  while (v >> (l + 1))
    l++;
  return l;
}

/* The program of guest i (the figures `diffmem help demo` gives). */
static void make_program(dg_program *p, const dg_layout *l, unsigned i, int read_heavy)
{
  memset(p, 0, sizeof *p);
  p->seed = 0x12345u + 7919u * i;
  p->report_log = REPORT_LOG;
  /* About 200 cold reads a second anywhere in the content, 12% data
   * operations, the rest hot reads. */
  p->cold_thresh = (uint32_t)(65536.0 * 200.0 / DESIGN_OPS_PER_S + 0.5);
  if (p->cold_thresh == 0)
    p->cold_thresh = 1;
  p->data_thresh = p->cold_thresh + (uint32_t)(65536 * 0.12);
  /* Windows: the hot one is 1/16 of the content up to 512 pages and moves
   * its own length in 16 s; the data one is 1/8 of the data up to 256
   * pages and moves its length in 10 s. Both move at each report. */
  uint64_t hot = l->content_pages / 16, dat = l->data_pages / 8;
  hot = hot < 1 ? 1 : hot > 512 ? 512 : hot;
  /* Read-heavy: a window of a quarter of the content, up to 16 MiB, as a
   * running system reads its kernel and libraries, moving its own length
   * in 16 s too (so it crosses more pages a second). */
  if (read_heavy) {
    hot = l->content_pages / 4;
    hot = hot < 1 ? 1 : hot > 4096 ? 4096 : hot;
  }
  dat = dat < 1 ? 1 : dat > 256 ? 256 : dat;
  unsigned hl = log2_floor(hot), dl = log2_floor(dat);
  double reports_per_s = DESIGN_OPS_PER_S / (double)(1u << REPORT_LOG);
  p->hot_win_log = hl + 10;
  p->hot_shift = REPORT_LOG;
  p->hot_step = (uint32_t)((double)(1u << p->hot_win_log) / 16.0 / reports_per_s) + 1;
  p->data_win_log = dl + 10;
  p->data_shift = REPORT_LOG;
  p->data_step = (uint32_t)((double)(1u << p->data_win_log) / 10.0 / reports_per_s) + 1;
}

static int image_pages(uint64_t *out, const char *who, const char *path)
{
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    fprintf(stderr, "%s: %s: not a readable regular file\n", who, path);
    return -1;
  }
  uint64_t whole = (uint64_t)st.st_size / PAGE, tail = (uint64_t)st.st_size % PAGE;
  if (tail)
    fprintf(stderr,
            "%s: %s: ignoring %llu trailing bytes at offset %llu (not a whole "
            "page)\n",
            who, path, (unsigned long long)tail, (unsigned long long)(whole * PAGE));
  if (whole == 0) {
    fprintf(stderr, "%s: %s: not a single whole 4 KiB page\n", who, path);
    return -1;
  }
  *out = whole;
  return 0;
}

/* Fills the content part of guest i into dst (its RAM, or a buffer when
 * verifying). */
static int fill_content(uint8_t *dst, const fleet *f, unsigned i)
{
  const fleet_vm *v = &f->vms[i];
  char err[512];
  int rc = v->image ? dg_read_image(dst, v->layout.content_pages, v->image, err, sizeof err)
                    : dg_fill_files(dst, v->layout.content_pages, v->zero_pages, f->files,
                                    f->o.first + i, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "%s: guest %u: %s\n", f->o.who, i, err);
  return rc;
}

static void fill_data(uint8_t *dst, const fleet *f, const fleet_vm *v, unsigned i)
{
  if (v->image)
    memset(dst, 0, (size_t)v->layout.data_pages * PAGE); /* allocates the blocks too */
  else
    dg_fill_heap(dst, v->layout.data_pages, f->o.first + i);
}

static uint8_t *ram_of(const fleet_vm *v)
{
  return v->region ? dmem_kvm_region_addr(v->region) : v->anon;
}

int fleet_sealed_ram(int *fd, void **addr, size_t bytes, const char *name)
{
  int f = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  void *m = MAP_FAILED;
  if (f >= 0 && ftruncate(f, (off_t)bytes) == 0 &&
      fcntl(f, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0)
    m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
  if (m == MAP_FAILED) {
    int e = errno;
    if (f >= 0)
      close(f);
    errno = e;
    return -1;
  }
  *fd = f;
  *addr = m;
  return 0;
}

/* The RAM of guest v: a region, or anonymous memory (mergeable for KSM,
 * without transparent huge pages in both cases so that the three kinds of
 * RAM hold the same 4 KiB pages). */
static int make_ram(fleet_vm *v, const fleet *f, unsigned i)
{
  size_t bytes = (size_t)(v->layout.npages * PAGE);
  if (f->o.ram == FLEET_ENGINE) {
    dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
    ro.size = bytes;
    ro.name = "diffmem-demo";
    ro.sharing_domain = 1; /* the fleet's guests are one tenant's */
    char err[DMEM_ERRBUF_SIZE];
    int rc = dmem_kvm_region_create(&v->region, &ro, err, sizeof err);
    if (rc == 0)
      return 0;
    fprintf(stderr, "%s: guest %u: cannot make its RAM: %s (%s)\n", f->o.who, i, dmem_strerror(rc),
            err);
    return -1;
  }
  if (f->o.ram == FLEET_DAEMON) {
    void *m;
    if (fleet_sealed_ram(&v->memfd, &m, bytes, "diffmem-demo") != 0) {
      fprintf(stderr, "%s: guest %u: cannot make its memfd: %s\n", f->o.who, i, strerror(errno));
      return -1;
    }
    v->anon = m;
    return 0;
  }
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "%s: guest %u: cannot map its RAM (%zu bytes): %s\n", f->o.who, i, bytes,
            strerror(errno));
    return -1;
  }
  v->anon = p;
  madvise(p, bytes, MADV_NOHUGEPAGE);
  if (f->o.ram == FLEET_MERGEABLE && madvise(p, bytes, MADV_MERGEABLE) != 0) {
    fprintf(stderr, "%s: guest %u: madvise(MADV_MERGEABLE): %s\n", f->o.who, i, strerror(errno));
    return -1;
  }
  return 0;
}

/* Guest i's layout and program, from its image or the options. */
static int plan_guest(fleet *f, unsigned i)
{
  fleet_vm *v = &f->vms[i];
  uint64_t content, data;
  if (v->image) {
    if (image_pages(&content, f->o.who, v->image) != 0)
      return -1;
    data = content / 16;
    data = data < 256 ? 256 : data > 16384 ? 16384 : data;
  } else {
    uint64_t pages = (uint64_t)f->o.guest_mib * (1u << 20) / PAGE;
    data = pages / 4;
    content = pages - data - DG_CTL_PAGES;
    v->zero_pages = content / 6;
  }
  if (dg_layout_make(&v->layout, content, data) != 0) {
    fprintf(stderr, "%s: guest %u: too large (at most %llu MiB)\n", f->o.who, i,
            (unsigned long long)(DG_MAX_PAGES * PAGE >> 20));
    return -1;
  }
  make_program(&v->prog, &v->layout, f->o.first + i, f->o.read_heavy);
  return 0;
}

static int setup_guest(fleet *f, unsigned i)
{
  fleet_vm *v = &f->vms[i];
  if (make_ram(v, f, i) != 0)
    return -1;
  uint8_t *mem = ram_of(v);
  if (fill_content(mem, f, i) != 0)
    return -1;
  fill_data(mem + v->layout.data_gfn * PAGE, f, v, i);
  char err[256];
  dg_ram ram = {v->region, v->anon, v->layout.npages};
  if (dg_guest_create(&v->guest, &ram, &v->layout, &v->prog, err, sizeof err) != 0) {
    fprintf(stderr, "%s: guest %u: %s\n", f->o.who, i, err);
    return -1;
  }
  return 0;
}

static int attach_engine(fleet *f)
{
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.seed = 0x5eed5eedull;
  eo.c4_passes = C4_PASSES;
  eo.map_shared = !f->o.no_cow;
  eo.secure = f->o.secure;
  int err = dmem_engine_create(&f->engine, &eo);
  if (err != 0) {
    fprintf(stderr, "%s: cannot make the engine: %s\n", f->o.who, dmem_strerror(err));
    return -1;
  }
  for (unsigned i = 0; i < f->n; i++) {
    char name[32];
    snprintf(name, sizeof name, "guest%u", i);
    err = dmem_kvm_region_attach(&f->vms[i].vm, f->engine, f->vms[i].region, name);
    if (err != 0) {
      fprintf(stderr, "%s: cannot attach guest %u: %s (%s)\n", f->o.who, i, dmem_strerror(err),
              dmem_kvm_region_errmsg(f->vms[i].region));
      return -1;
    }
  }
  return 0;
}

int fleet_count_guests(unsigned *guests, int nimages, const char *who)
{
  if (nimages > FLEET_MAX_GUESTS) {
    fprintf(stderr, "%s: at most %d images\n", who, FLEET_MAX_GUESTS);
    return EXIT_USAGE;
  }
  if (nimages && *guests && *guests != (unsigned)nimages) {
    fprintf(stderr, "%s: --guests %u with %d image%s: each image is one guest\n", who, *guests,
            nimages, nimages == 1 ? "" : "s");
    return EXIT_USAGE;
  }
  if (!*guests)
    *guests = 4;
  return 0;
}

/* MemAvailable in /proc/meminfo, in bytes; 0 when unknown. */
static uint64_t mem_available(void)
{
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f)
    return 0;
  char line[128];
  unsigned long long kb = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
      break;
  fclose(f);
  return (uint64_t)kb * 1024;
}

/* The guests' RAM must fit in what the machine has free: refuse before
 * mapping anything rather than fail (or push the host into swap) halfway. */
static int check_memory(const fleet *f)
{
  uint64_t need = 0;
  for (unsigned i = 0; i < f->n; i++)
    need += f->vms[i].layout.npages * PAGE;
  uint64_t avail = mem_available();
  if (!avail || need <= avail / 10 * 9)
    return 0;
  fprintf(stderr,
          "%s: the guests need %llu MiB of RAM, and this machine has %llu MiB available; "
          "use fewer or smaller guests\n",
          f->o.who, (unsigned long long)(need >> 20), (unsigned long long)(avail >> 20));
  return -1;
}

int fleet_create(fleet **out, const fleet_opts *o)
{
  fleet *f = calloc(1, sizeof *f);
  if (!f) {
    fprintf(stderr, "%s: out of memory\n", o->who);
    return -1;
  }
  f->o = *o;
  f->n = o->nimages ? (unsigned)o->nimages : o->guests;
  /* What this process held before: an earlier fleet's freed heap stays in
   * malloc's arenas unless given back, and is no guest's memory. */
  malloc_trim(0);
  if (fleet_pss_anon(&f->base_anon_kb, 0) != 0)
    f->base_anon_kb = 0;
  f->vms = calloc(f->n, sizeof *f->vms);
  if (!f->vms) {
    fprintf(stderr, "%s: out of memory\n", o->who);
    goto fail;
  }
  if (!o->nimages && !(f->files = dg_files_scan())) {
    fprintf(stderr,
            "%s: found no binaries or libraries to build guests from; "
            "give IMAGE files instead\n",
            o->who);
    goto fail;
  }
  for (unsigned i = 0; i < f->n; i++)
    f->vms[i].memfd = -1;
  for (unsigned i = 0; i < f->n; i++) {
    f->vms[i].image = o->nimages ? o->images[i] : NULL;
    if (plan_guest(f, i) != 0)
      goto fail;
  }
  if (check_memory(f) != 0)
    goto fail;
  for (unsigned i = 0; i < f->n; i++)
    if (setup_guest(f, i) != 0)
      goto fail;
  if (o->ram == FLEET_ENGINE && attach_engine(f) != 0)
    goto fail;
  *out = f;
  return 0;
fail:
  fleet_destroy(f);
  return -1;
}

void fleet_destroy(fleet *f)
{
  if (!f)
    return;
  for (unsigned i = 0; f->vms && i < f->n; i++)
    dg_guest_destroy(f->vms[i].guest);
  for (unsigned i = 0; f->vms && i < f->n; i++) {
    fleet_vm *v = &f->vms[i];
    dmem_kvm_region_destroy(v->region); /* detaches: every page back */
    if (v->client && dmem_kvm_client_detach(v->client) != 0)
      fprintf(stderr, "%s: guest %u: the daemon did not give every page back\n", f->o.who, i);
    if (v->anon) {
      size_t bytes = (size_t)(v->layout.npages * PAGE);
      if (f->o.ram == FLEET_MERGEABLE)
        madvise(v->anon, bytes, MADV_UNMERGEABLE); /* KSM's pages go now, not at exit */
      munmap(v->anon, bytes);
    }
    if (v->memfd >= 0)
      close(v->memfd);
  }
  dmem_engine_destroy(f->engine);
  dg_files_free(f->files);
  free(f->vms);
  free(f);
}

int fleet_attach_daemon(fleet *f)
{
  for (unsigned i = 0; i < f->n; i++) {
    fleet_vm *v = &f->vms[i];
    dmem_kvm_client_options co = DMEM_KVM_CLIENT_OPTIONS_INIT;
    char name[32], err[DMEM_ERRBUF_SIZE];
    snprintf(name, sizeof name, "guest%u", f->o.first + i);
    co.socket = f->o.socket;
    co.fd = v->memfd;
    co.addr = v->anon;
    co.size = v->layout.npages * PAGE;
    co.name = name;
    int rc = dmem_kvm_client_attach(&v->client, &co, err, sizeof err);
    if (rc != 0) {
      fprintf(stderr, "%s: guest %u: diffmemd: %s\n", f->o.who, f->o.first + i, err);
      return -1;
    }
  }
  return 0;
}

int fleet_start(fleet *f)
{
  for (unsigned i = 0; i < f->n; i++) {
    if (dg_guest_start(f->vms[i].guest, DESIGN_OPS_PER_S) != 0) {
      fprintf(stderr, "%s: cannot start guest %u's vCPU thread\n", f->o.who, i);
      return -1;
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- the run */

int fleet_run(fleet_totals *t, fleet *f, double seconds, double tick_s,
              void (*tick)(void *ud, double t), void *ud, volatile const int *stop)
{
  uint64_t total = 0;
  for (unsigned i = 0; i < f->n; i++)
    total += f->vms[i].layout.npages;
  size_t budget = (size_t)((double)total * TICK_S / PASS_S) + 1;
  double t0 = fleet_now_s(), next = t0, ticked = t0;
  int rc = 0;
  while (fleet_now_s() - t0 < seconds) {
    if (stop && *stop) {
      rc = 1;
      break;
    }
    if (f->engine) {
      double c0 = fleet_thread_cpu_s();
      int err = dmem_engine_scan(NULL, f->engine, budget);
      t->scan_cpu_s += fleet_thread_cpu_s() - c0;
      t->scans++;
      if (err != 0) {
        fprintf(stderr, "\n%s: scan failed: %s (%s)\n", f->o.who, dmem_strerror(err),
                dmem_engine_errmsg(f->engine));
        rc = -1;
        break;
      }
    }
    for (unsigned i = 0; i < f->n && rc == 0; i++) {
      if (!dg_guest_running(f->vms[i].guest)) {
        fprintf(stderr, "\n%s: guest %u stopped: %s\n", f->o.who, i,
                dg_guest_result(f->vms[i].guest)->error);
        rc = -1;
      }
    }
    if (rc != 0)
      break;
    double now = fleet_now_s();
    if (tick && now - ticked >= tick_s) {
      tick(ud, now - t0);
      ticked = now;
    }
    next += TICK_S;
    if (next > now) {
      struct timespec ts = {0, (long)((next - now) * 1e9)};
      nanosleep(&ts, NULL);
    } else {
      next = now;
    }
  }
  t->secs = fleet_now_s() - t0;
  return rc;
}

void fleet_stop(fleet *f, fleet_totals *t)
{
  for (unsigned i = 0; i < f->n; i++)
    dg_guest_stop(f->vms[i].guest); /* all at once; each stops at its next report */
  for (unsigned i = 0; i < f->n; i++) {
    dg_guest_join(f->vms[i].guest, 10000);
    const dg_result *res = dg_guest_result(f->vms[i].guest);
    t->ops += res->ops ? res->ops : dg_guest_ops(f->vms[i].guest);
    t->vcpu_cpu_s += (double)res->cpu_ns * 1e-9;
    t->vcpu_run_s += (double)res->run_ns * 1e-9;
  }
}

/* ---------------------------------------------------------------- verify */

static uint64_t diff_pages(const uint8_t *want, const uint8_t *got, uint64_t n)
{
  uint64_t bad = 0;
  for (uint64_t p = 0; p < n; p++)
    bad += memcmp(want + p * PAGE, got + p * PAGE, PAGE) != 0;
  return bad;
}

/* Every page of guest i, read through its mapping (evicted pages fault
 * back in), against the source of its content, the replay of its writes,
 * and the control pages; also the sum of every read the guest made. */
static void verify_guest(fleet *f, unsigned i)
{
  fleet_vm *v = &f->vms[i];
  const dg_layout *l = &v->layout;
  const dg_result *res = dg_guest_result(v->guest);
  const uint8_t *mem = ram_of(v);
  uint8_t *content = malloc((size_t)l->content_pages * PAGE);
  uint8_t *data = malloc((size_t)l->data_pages * PAGE);
  v->verify_failed = 1;
  if (!content || !data) {
    fprintf(stderr, "%s: out of memory for verification\n", f->o.who);
    goto out;
  }
  if (fill_content(content, f, i) != 0)
    goto out;
  v->mismatches += diff_pages(content, mem + l->content_gfn * PAGE, l->content_pages);
  v->mismatches += dg_check_control(mem, l, &v->prog);
  v->checked += l->content_pages + DG_CTL_PAGES;
  v->verify_failed = 0;
  if (!res->stopped) {
    v->unreplayed = 1;
    fprintf(stderr,
            "%s: guest %u did not stop at a report (%s): its %llu data pages "
            "cannot be checked\n",
            f->o.who, i, res->error[0] ? res->error : "no error recorded",
            (unsigned long long)l->data_pages);
    goto out;
  }
  fill_data(data, f, v, i);
  uint32_t sum = dg_replay(data, content, l, &v->prog, res->ops);
  v->mismatches += diff_pages(data, mem + l->data_gfn * PAGE, l->data_pages);
  v->checked += l->data_pages;
  if (sum != res->sum) {
    v->sum_bad = 1;
    fprintf(stderr, "%s: guest %u read wrong data: its sum %#x, replayed %#x\n", f->o.who, i,
            res->sum, sum);
  }
out:
  free(content);
  free(data);
}

typedef struct verify_work {
  fleet *f;
  unsigned next; /* atomic */
} verify_work;

static void *verify_thread(void *arg)
{
  verify_work *w = arg;
  unsigned i;
  while ((i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED)) < w->f->n)
    verify_guest(w->f, i);
  return NULL;
}

/* Verifies the guests on up to 4 threads at once: each page that comes
 * back is a fault that the guest's own fault thread serves, so guests
 * verify in parallel. */
int fleet_verify(fleet_totals *t, fleet *f)
{
  verify_work w = {f, 0};
  pthread_t th[4];
  unsigned nt = 0, n = f->n;
  for (; nt < (n < 4 ? n : 4) - 1; nt++)
    if (pthread_create(&th[nt], NULL, verify_thread, &w) != 0)
      break;
  verify_thread(&w);
  for (unsigned k = 0; k < nt; k++)
    pthread_join(th[k], NULL);
  int rc = 0;
  for (unsigned i = 0; i < n; i++) {
    t->checked += f->vms[i].checked;
    t->mismatches += f->vms[i].mismatches;
    t->sum_bad += (uint64_t)f->vms[i].sum_bad;
    t->unreplayed += (uint64_t)f->vms[i].unreplayed;
    if (f->vms[i].verify_failed)
      rc = -1;
  }
  return rc;
}
