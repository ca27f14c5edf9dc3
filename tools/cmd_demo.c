/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem demo: several KVM guests on one engine, running, reclaimed while
 * they run, measured by the kernel's accounting and checked page by page
 * at the end. The guests and their program are in demo_guest.[ch].
 *
 * The run: make every guest's region and fill it (content, data, control
 * pages), make one engine and attach every region to it, start one vCPU
 * thread per guest (paced to a steady rate of operations), measure host
 * memory ("before"), then scan from this thread at a steady rate for
 * --seconds, stop the vCPUs at a report, measure again ("after", guests
 * still attached), and verify every page against its source and the
 * replayed writes. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/diffmem.h>

#include "cmd.h"

#if DMEM_TOOL_KVM
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <diffmem/kvm.h>

#include "demo_guest.h"
#include "json.h"

#define PAGE DMEM_PAGE_SIZE
#define MAX_GUESTS 64
/* Guest operations a second (each vCPU): a mostly idle guest, as most are,
 * which also keeps the replay at the end short. */
#define OPS_PER_S 1000000.0
#define REPORT_LOG 14
/* The scanner: a slice every TICK_S, the whole of guest memory every
 * PASS_S, so that a page left alone reaches C4 (compression) after
 * C4_PASSES passes. */
#define TICK_S 0.05
#define PASS_S 1.5
#define C4_PASSES 3

typedef struct demo_opts {
  int json, progress;
  double seconds;
  unsigned guests, guest_mib;
  int nimages;
  char **images;
} demo_opts;

typedef struct demo_vm {
  const char *image; /* NULL: generated content */
  uint64_t zero_pages;
  dg_layout layout;
  dg_program prog;
  dmem_kvm_region *region;
  dg_guest *guest;
  dmem_vm *vm;
  /* verification */
  uint64_t checked, mismatches;
  int sum_bad, unreplayed, verify_failed;
} demo_vm;

typedef struct mem_sample {
  uint64_t memfd_bytes, anon_kb;
} mem_sample;

typedef struct demo_figures {
  mem_sample before, after;
  dmem_stats es;
  dmem_kvm_stats ks; /* merged over the regions */
  double secs, scan_cpu_s, other_cpu_s, vcpu_cpu_s;
  uint64_t scans, ops, checked, mismatches, sum_bad, unreplayed;
} demo_figures;

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double thread_cpu_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double process_cpu_s(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* ---------------------------------------------------------------- memory */

static void read_smaps(mem_sample *m)
{
  m->anon_kb = 0;
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  if (!f)
    return;
  char line[256];
  unsigned long long v;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Anonymous: %llu kB", &v) == 1)
      m->anon_kb = v;
  fclose(f);
}

/* Host memory that holds the guests: the memfds' blocks (guest RAM still
 * private) plus the process's anonymous memory (the engine's frames,
 * patches and blobs live in anonymous slabs, beside its metadata and this
 * program's own heap). Rss alone would miss memfd pages that are not
 * mapped at the moment, and the engine unmaps them often. */
static int sample_memory(mem_sample *m, const demo_vm *vms, unsigned n)
{
  m->memfd_bytes = 0;
  for (unsigned i = 0; i < n; i++) {
    uint64_t b;
    if (dmem_kvm_region_memfd_bytes(&b, vms[i].region) != 0)
      return -1;
    m->memfd_bytes += b;
  }
  read_smaps(m);
  return 0;
}

static uint64_t host_kb(const mem_sample *m)
{
  return m->memfd_bytes / 1024 + m->anon_kb;
}

static double saved_pct(const mem_sample *before, const mem_sample *after)
{
  double b = (double)host_kb(before), a = (double)host_kb(after);
  return b > 0 ? 100.0 * (b - a) / b : 0.0;
}

static void merge_kvm_stats(dmem_kvm_stats *out, const demo_vm *vms, unsigned n)
{
  memset(out, 0, sizeof *out);
  out->version = DMEM_KVM_STATS_VERSION;
  for (unsigned i = 0; i < n; i++) {
    dmem_kvm_stats s;
    memset(&s, 0, sizeof s);
    s.version = DMEM_KVM_STATS_VERSION;
    if (dmem_kvm_region_stats(&s, vms[i].region) != 0)
      continue;
    out->faults_missing += s.faults_missing;
    out->faults_minor += s.faults_minor;
    out->faults_wp += s.faults_wp;
    out->faults_failed += s.faults_failed;
    for (unsigned b = 0; b < DMEM_KVM_LAT_BUCKETS; b++)
      out->lat_hist[b] += s.lat_hist[b];
    out->lat_count += s.lat_count;
    out->lat_sum_ns += s.lat_sum_ns;
    if (s.lat_max_ns > out->lat_max_ns)
      out->lat_max_ns = s.lat_max_ns;
  }
}

/* ---------------------------------------------------------------- setup */

static unsigned log2_floor(uint64_t v)
{
  unsigned l = 0;
  while (v >> (l + 1))
    l++;
  return l;
}

/* The program of guest i, from the figures the help text gives. */
static void make_program(dg_program *p, const dg_layout *l, unsigned i)
{
  memset(p, 0, sizeof *p);
  p->seed = 0x12345u + 7919u * i;
  p->report_log = REPORT_LOG;
  /* About 200 cold reads a second anywhere in the content, 12% data
   * operations, the rest hot reads. */
  p->cold_thresh = (uint32_t)(65536.0 * 200.0 / OPS_PER_S + 0.5);
  if (p->cold_thresh == 0)
    p->cold_thresh = 1;
  p->data_thresh = p->cold_thresh + (uint32_t)(65536 * 0.12);
  /* Windows: the hot one is 1/16 of the content up to 512 pages and moves
   * its own length in 16 s; the data one is 1/8 of the data up to 256
   * pages and moves its length in 10 s. Both move at each report. */
  uint64_t hot = l->content_pages / 16, dat = l->data_pages / 8;
  hot = hot < 1 ? 1 : hot > 512 ? 512 : hot;
  dat = dat < 1 ? 1 : dat > 256 ? 256 : dat;
  unsigned hl = log2_floor(hot), dl = log2_floor(dat);
  double reports_per_s = OPS_PER_S / (double)(1u << REPORT_LOG);
  p->hot_win_log = hl + 10;
  p->hot_shift = REPORT_LOG;
  p->hot_step = (uint32_t)((double)(1u << p->hot_win_log) / 16.0 / reports_per_s) + 1;
  p->data_win_log = dl + 10;
  p->data_shift = REPORT_LOG;
  p->data_step = (uint32_t)((double)(1u << p->data_win_log) / 10.0 / reports_per_s) + 1;
}

static int image_pages(uint64_t *out, const char *path)
{
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    fprintf(stderr, "diffmem demo: %s: not a readable regular file\n", path);
    return -1;
  }
  uint64_t whole = (uint64_t)st.st_size / PAGE, tail = (uint64_t)st.st_size % PAGE;
  if (tail)
    fprintf(stderr,
            "diffmem demo: %s: ignoring %llu trailing bytes at offset %llu (not a whole "
            "page)\n",
            path, (unsigned long long)tail, (unsigned long long)(whole * PAGE));
  if (whole == 0) {
    fprintf(stderr, "diffmem demo: %s: not a single whole 4 KiB page\n", path);
    return -1;
  }
  *out = whole;
  return 0;
}

/* Fills the content part of guest i into dst (its mapping, or a buffer
 * when verifying). */
static int fill_content(uint8_t *dst, const demo_vm *v, unsigned i, const dg_files *files)
{
  char err[512];
  int rc = v->image ? dg_read_image(dst, v->layout.content_pages, v->image, err, sizeof err)
                    : dg_fill_files(dst, v->layout.content_pages, v->zero_pages, files, i, err,
                                    sizeof err);
  if (rc != 0)
    fprintf(stderr, "diffmem demo: guest %u: %s\n", i, err);
  return rc;
}

static void fill_data(uint8_t *dst, const demo_vm *v, unsigned i)
{
  if (v->image)
    memset(dst, 0, (size_t)v->layout.data_pages * PAGE); /* allocates the blocks too */
  else
    dg_fill_heap(dst, v->layout.data_pages, i);
}

static int setup_guest(demo_vm *v, unsigned i, const demo_opts *o, const dg_files *files)
{
  uint64_t content, data;
  if (v->image) {
    if (image_pages(&content, v->image) != 0)
      return -1;
    data = content / 16;
    data = data < 256 ? 256 : data > 16384 ? 16384 : data;
  } else {
    uint64_t pages = (uint64_t)o->guest_mib * (1u << 20) / PAGE;
    data = pages / 4;
    content = pages - data - DG_CTL_PAGES;
    v->zero_pages = content / 6;
  }
  if (dg_layout_make(&v->layout, content, data) != 0) {
    fprintf(stderr, "diffmem demo: guest %u: too large (at most %llu MiB)\n", i,
            (unsigned long long)(DG_MAX_PAGES * PAGE >> 20));
    return -1;
  }
  make_program(&v->prog, &v->layout, i);
  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = v->layout.npages * PAGE;
  ro.name = "diffmem-demo";
  int rc = dmem_kvm_region_create(&v->region, &ro);
  if (rc != 0) {
    fprintf(stderr, "diffmem demo: guest %u: cannot make its RAM: %s\n", i, dmem_strerror(rc));
    return -1;
  }
  uint8_t *mem = dmem_kvm_region_addr(v->region);
  if (fill_content(mem, v, i, files) != 0)
    return -1;
  fill_data(mem + v->layout.data_gfn * PAGE, v, i);
  char err[256];
  if (dg_guest_create(&v->guest, v->region, &v->layout, &v->prog, err, sizeof err) != 0) {
    fprintf(stderr, "diffmem demo: guest %u: %s\n", i, err);
    return -1;
  }
  return 0;
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
static void verify_guest(demo_vm *v, unsigned i, const dg_files *files)
{
  const dg_layout *l = &v->layout;
  const dg_result *res = dg_guest_result(v->guest);
  const uint8_t *mem = dmem_kvm_region_addr(v->region);
  uint8_t *content = malloc((size_t)l->content_pages * PAGE);
  uint8_t *data = malloc((size_t)l->data_pages * PAGE);
  v->verify_failed = 1;
  if (!content || !data) {
    fprintf(stderr, "diffmem demo: out of memory for verification\n");
    goto out;
  }
  if (fill_content(content, v, i, files) != 0)
    goto out;
  v->mismatches += diff_pages(content, mem + l->content_gfn * PAGE, l->content_pages);
  v->mismatches += dg_check_control(mem, l, &v->prog);
  v->checked += l->content_pages + DG_CTL_PAGES;
  v->verify_failed = 0;
  if (!res->stopped) {
    v->unreplayed = 1;
    fprintf(stderr,
            "diffmem demo: guest %u did not stop at a report (%s): its %llu data pages "
            "cannot be checked\n",
            i, res->error[0] ? res->error : "no error recorded", (unsigned long long)l->data_pages);
    goto out;
  }
  fill_data(data, v, i);
  uint32_t sum = dg_replay(data, content, l, &v->prog, res->ops);
  v->mismatches += diff_pages(data, mem + l->data_gfn * PAGE, l->data_pages);
  v->checked += l->data_pages;
  if (sum != res->sum) {
    v->sum_bad = 1;
    fprintf(stderr, "diffmem demo: guest %u read wrong data: its sum %#x, replayed %#x\n", i,
            res->sum, sum);
  }
out:
  free(content);
  free(data);
}

typedef struct verify_work {
  demo_vm *vms;
  unsigned n, next; /* next: atomic */
  const dg_files *files;
} verify_work;

static void *verify_thread(void *arg)
{
  verify_work *w = arg;
  unsigned i;
  while ((i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED)) < w->n)
    verify_guest(&w->vms[i], i, w->files);
  return NULL;
}

/* Verifies the guests on up to 4 threads at once: each page that comes
 * back is a fault that the guest's own fault thread serves, so guests
 * verify in parallel. Returns 0, or -1 when some guest could not be
 * verified at all. */
static int verify_all(demo_figures *fig, demo_vm *vms, unsigned n, const dg_files *files)
{
  verify_work w = {vms, n, 0, files};
  pthread_t t[4];
  unsigned nt = 0;
  for (; nt < (n < 4 ? n : 4) - 1; nt++)
    if (pthread_create(&t[nt], NULL, verify_thread, &w) != 0)
      break;
  verify_thread(&w);
  for (unsigned k = 0; k < nt; k++)
    pthread_join(t[k], NULL);
  int rc = 0;
  for (unsigned i = 0; i < n; i++) {
    fig->checked += vms[i].checked;
    fig->mismatches += vms[i].mismatches;
    fig->sum_bad += (uint64_t)vms[i].sum_bad;
    fig->unreplayed += (uint64_t)vms[i].unreplayed;
    if (vms[i].verify_failed)
      rc = -1;
  }
  return rc;
}

/* ---------------------------------------------------------------- the run */

static void progress_line(double t, const mem_sample *before, const demo_vm *vms, unsigned n,
                          dmem_engine *e)
{
  mem_sample m;
  dmem_stats s;
  if (sample_memory(&m, vms, n) != 0 || dmem_engine_stats(&s, e) != 0)
    return;
  char line[256];
  snprintf(line, sizeof line,
           "%5.1f s  saved %.1f%% (%.1f of %.1f MiB)  zero %llu shared %llu patched %llu "
           "compressed %llu swapped %llu  faults %llu",
           t, saved_pct(before, &m), (double)host_kb(&m) / 1024, (double)host_kb(before) / 1024,
           (unsigned long long)s.zero, (unsigned long long)s.shared, (unsigned long long)s.patched,
           (unsigned long long)s.compressed, (unsigned long long)s.swapped,
           (unsigned long long)s.faults);
  /* One line, never wrapped, or \r would not go back to its start. */
  struct winsize ws;
  if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && ws.ws_col <= sizeof line)
    line[ws.ws_col - 1] = 0;
  fprintf(stderr, "\r%s\033[K", line);
}

/* Scans at a steady rate for o->seconds, timing this thread's CPU around
 * each scan. Returns 0, or -1 when a scan or a guest failed. */
static int run_engine(demo_figures *fig, dmem_engine *e, demo_vm *vms, unsigned n,
                      const demo_opts *o)
{
  uint64_t total = 0;
  for (unsigned i = 0; i < n; i++)
    total += vms[i].layout.npages;
  size_t budget = (size_t)((double)total * TICK_S / PASS_S) + 1;
  double t0 = now_s(), next = t0, shown = t0;
  int rc = 0;
  while (now_s() - t0 < o->seconds) {
    double c0 = thread_cpu_s();
    int err = dmem_engine_scan(NULL, e, budget);
    fig->scan_cpu_s += thread_cpu_s() - c0;
    fig->scans++;
    if (err != 0) {
      fprintf(stderr, "\ndiffmem demo: scan failed: %s (%s)\n", dmem_strerror(err),
              dmem_engine_errmsg(e));
      rc = -1;
      break;
    }
    for (unsigned i = 0; i < n && rc == 0; i++) {
      if (!dg_guest_running(vms[i].guest)) {
        fprintf(stderr, "\ndiffmem demo: guest %u stopped: %s\n", i,
                dg_guest_result(vms[i].guest)->error);
        rc = -1;
      }
    }
    if (rc != 0)
      break;
    double now = now_s();
    if (o->progress && now - shown >= 0.5) {
      progress_line(now - t0, &fig->before, vms, n, e);
      shown = now;
    }
    next += TICK_S;
    if (next > now) {
      struct timespec ts = {0, (long)((next - now) * 1e9)};
      nanosleep(&ts, NULL);
    } else {
      next = now;
    }
  }
  if (o->progress)
    fprintf(stderr, "\r\033[K");
  fig->secs = now_s() - t0;
  return rc;
}

static void print_text(const demo_figures *f, const demo_vm *vms, unsigned n, const demo_opts *o)
{
  uint64_t pages = 0, content = 0, data = 0;
  for (unsigned i = 0; i < n; i++) {
    pages += vms[i].layout.npages;
    content += vms[i].layout.content_pages;
    data += vms[i].layout.data_pages;
  }
  const dmem_stats *s = &f->es;
  printf("diffmem demo: %u KVM guest%s on one engine for %.1f s\n", n, n == 1 ? "" : "s", f->secs);
  printf("  guests          %u (%s)\n", n,
         o->nimages ? "one per image" : "built from this machine's binaries and libraries");
  printf("  guest pages     %llu (%.1f MiB): content %llu, data %llu, control %llu\n",
         (unsigned long long)pages, (double)pages * PAGE / 1048576.0, (unsigned long long)content,
         (unsigned long long)data, (unsigned long long)(pages - content - data));
  printf("  host memory     before %.1f MiB, after %.1f MiB  (memfd %.1f -> %.1f MiB, "
         "anonymous %.1f -> %.1f MiB)\n",
         (double)host_kb(&f->before) / 1024, (double)host_kb(&f->after) / 1024,
         (double)f->before.memfd_bytes / 1048576.0, (double)f->after.memfd_bytes / 1048576.0,
         (double)f->before.anon_kb / 1024, (double)f->after.anon_kb / 1024);
  printf("  saved           %.1f%% by the kernel's accounting (engine's own figure %.1f%%)\n",
         saved_pct(&f->before, &f->after),
         pages ? 100.0 * (double)s->bytes_saved / ((double)pages * PAGE) : 0.0);
  printf("  breakdown       zero %llu, shared %llu, patched %llu, compressed %llu, swapped %llu "
         "pages (%llu frames)\n",
         (unsigned long long)s->zero, (unsigned long long)s->shared, (unsigned long long)s->patched,
         (unsigned long long)s->compressed, (unsigned long long)s->swapped,
         (unsigned long long)s->frames);
  printf("  faults          %llu served; service time p50 %.0f us, p99 %.0f us, max %.0f us\n",
         (unsigned long long)s->faults, dmem_kvm_stats_percentile_us(&f->ks, 0.5),
         dmem_kvm_stats_percentile_us(&f->ks, 0.99), (double)f->ks.lat_max_ns / 1000);
  printf("  guest work      %.1f M operations (%.2f M/s per guest), %llu scans\n",
         (double)f->ops / 1e6, f->secs > 0 ? (double)f->ops / 1e6 / f->secs / n : 0.0,
         (unsigned long long)f->scans);
  printf("  verify          %llu mismatching pages of %llu checked%s\n",
         (unsigned long long)f->mismatches, (unsigned long long)f->checked,
         f->sum_bad ? "; some guest read wrong data (sum)" : "; every guest's reads replayed");
  printf("  engine CPU      %.2f s scanning (%.1f%% of a core); fault threads %.2f s; "
         "vCPUs %.2f s\n",
         f->scan_cpu_s, f->secs > 0 ? 100.0 * f->scan_cpu_s / f->secs : 0.0, f->other_cpu_s,
         f->vcpu_cpu_s);
}

static void print_json(const demo_figures *f, const demo_vm *vms, unsigned n)
{
  uint64_t pages = 0;
  for (unsigned i = 0; i < n; i++)
    pages += vms[i].layout.npages;
  const dmem_stats *s = &f->es;
  printf("{\"guests\":%u,\"guest_pages\":%llu,\"rss_before_kb\":%llu,\"rss_after_kb\":%llu,"
         "\"saved_pct\":%.2f,\"breakdown\":{\"zero\":%llu,\"shared\":%llu,\"patched\":%llu,"
         "\"compressed\":%llu,\"swapped\":%llu},\"faults\":%llu,"
         "\"fault_us\":{\"p50\":%.1f,\"p99\":%.1f},\"verify_mismatches\":%llu,"
         "\"engine_cpu_s\":%.3f,",
         n, (unsigned long long)pages, (unsigned long long)host_kb(&f->before),
         (unsigned long long)host_kb(&f->after), saved_pct(&f->before, &f->after),
         (unsigned long long)s->zero, (unsigned long long)s->shared, (unsigned long long)s->patched,
         (unsigned long long)s->compressed, (unsigned long long)s->swapped,
         (unsigned long long)s->faults, dmem_kvm_stats_percentile_us(&f->ks, 0.5),
         dmem_kvm_stats_percentile_us(&f->ks, 0.99), (unsigned long long)f->mismatches,
         f->scan_cpu_s);
  printf("\"memfd_before_kb\":%llu,\"memfd_after_kb\":%llu,\"anon_before_kb\":%llu,"
         "\"anon_after_kb\":%llu,\"engine_saved_pct\":%.2f,\"seconds\":%.2f,\"scans\":%llu,"
         "\"guest_ops\":%llu,\"pages_checked\":%llu,\"sum_mismatches\":%llu,"
         "\"fault_thread_cpu_s\":%.3f,\"vcpu_cpu_s\":%.3f,\"frames\":%llu,\"errors\":%llu}\n",
         (unsigned long long)(f->before.memfd_bytes / 1024),
         (unsigned long long)(f->after.memfd_bytes / 1024), (unsigned long long)f->before.anon_kb,
         (unsigned long long)f->after.anon_kb,
         pages ? 100.0 * (double)s->bytes_saved / ((double)pages * PAGE) : 0.0, f->secs,
         (unsigned long long)f->scans, (unsigned long long)f->ops, (unsigned long long)f->checked,
         (unsigned long long)(f->sum_bad + f->unreplayed), f->other_cpu_s, f->vcpu_cpu_s,
         (unsigned long long)s->frames, (unsigned long long)s->errors);
}

static int demo(const demo_opts *o)
{
  dmem_kvm_caps caps;
  if (dmem_kvm_probe(&caps) != 0) {
    fprintf(stderr, "diffmem demo: KVM is not available here: %s\n", caps.reason);
    return 1;
  }
  unsigned n = o->nimages ? (unsigned)o->nimages : o->guests;
  demo_vm *vms = calloc(n, sizeof *vms);
  demo_figures fig;
  memset(&fig, 0, sizeof fig);
  dg_files *files = NULL;
  dmem_engine *e = NULL;
  int rc = 1, ok = 0;
  if (!vms)
    goto out;
  if (!o->nimages && !(files = dg_files_scan())) {
    fprintf(stderr, "diffmem demo: found no binaries or libraries to build guests from; "
                    "give IMAGE files instead\n");
    goto out;
  }
  for (unsigned i = 0; i < n; i++) {
    vms[i].image = o->nimages ? o->images[i] : NULL;
    if (setup_guest(&vms[i], i, o, files) != 0)
      goto out;
  }
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.seed = 0x5eed5eedull;
  eo.c4_passes = C4_PASSES;
  int err = dmem_engine_create(&e, &eo);
  if (err != 0) {
    fprintf(stderr, "diffmem demo: cannot make the engine: %s\n", dmem_strerror(err));
    goto out;
  }
  for (unsigned i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "guest%u", i);
    err = dmem_kvm_region_attach(&vms[i].vm, vms[i].region, e, name);
    if (err != 0) {
      fprintf(stderr, "diffmem demo: cannot attach guest %u: %s (%s)\n", i, dmem_strerror(err),
              dmem_kvm_region_errmsg(vms[i].region));
      goto out;
    }
  }
  for (unsigned i = 0; i < n; i++) {
    if (dg_guest_start(vms[i].guest, OPS_PER_S) != 0) {
      fprintf(stderr, "diffmem demo: cannot start guest %u's vCPU thread\n", i);
      goto out;
    }
  }
  if (sample_memory(&fig.before, vms, n) != 0) {
    fprintf(stderr, "diffmem demo: cannot read the memfds' sizes\n");
    goto out;
  }
  double cpu0 = process_cpu_s(), main0 = thread_cpu_s();
  int run_rc = run_engine(&fig, e, vms, n, o);
  for (unsigned i = 0; i < n; i++)
    dg_guest_stop(vms[i].guest); /* all at once; each stops at its next report */
  for (unsigned i = 0; i < n; i++) {
    dg_guest_join(vms[i].guest, 10000);
    const dg_result *res = dg_guest_result(vms[i].guest);
    fig.ops += res->ops ? res->ops : dg_guest_ops(vms[i].guest);
    fig.vcpu_cpu_s += (double)res->cpu_ns * 1e-9;
  }
  fig.other_cpu_s = process_cpu_s() - cpu0 - (thread_cpu_s() - main0) - fig.vcpu_cpu_s;
  if (fig.other_cpu_s < 0)
    fig.other_cpu_s = 0;
  if (sample_memory(&fig.after, vms, n) != 0 || dmem_engine_stats(&fig.es, e) != 0) {
    fprintf(stderr, "diffmem demo: cannot read the figures\n");
    goto out;
  }
  merge_kvm_stats(&fig.ks, vms, n);
  ok = run_rc == 0;
  if (o->progress)
    fprintf(stderr, "verifying every page of %u guest%s...", n, n == 1 ? "" : "s");
  if (verify_all(&fig, vms, n, files) != 0)
    ok = 0;
  if (o->progress)
    fprintf(stderr, "\r\033[K");
  if (o->json)
    print_json(&fig, vms, n);
  else
    print_text(&fig, vms, n, o);
  if (fig.es.errors || fig.ks.faults_failed)
    fprintf(stderr, "diffmem demo: note: %llu engine errors, %llu failed faults (%s)\n",
            (unsigned long long)fig.es.errors, (unsigned long long)fig.ks.faults_failed,
            dmem_engine_errmsg(e));
  rc = ok && fig.mismatches == 0 && fig.sum_bad == 0 && fig.unreplayed == 0 ? 0 : 1;
out:
  for (unsigned i = 0; vms && i < n; i++)
    dg_guest_destroy(vms[i].guest);
  for (unsigned i = 0; vms && i < n; i++)
    dmem_kvm_region_destroy(vms[i].region); /* detaches: every page back */
  dmem_engine_destroy(e);
  dg_files_free(files);
  free(vms);
  return rc;
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
  char *end;
  unsigned long v = strtoul(s, &end, 10);
  if (!*s || *end || v < lo || v > hi)
    return -1;
  *out = (unsigned)v;
  return 0;
}

static int run(int argc, char **argv)
{
  demo_opts o = {.json = 0,
                 .progress = isatty(2),
                 .seconds = 20,
                 .guests = 0,
                 .guest_mib = 48,
                 .nimages = 0,
                 .images = NULL};
  o.images = calloc((size_t)argc, sizeof *o.images);
  if (!o.images)
    return 1;
  int rc = EXIT_USAGE;
  unsigned v;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int valued =
        strcmp(a, "--seconds") == 0 || strcmp(a, "--guests") == 0 || strcmp(a, "--guest-mib") == 0;
    if (valued && i + 1 >= argc) {
      cmd_usage_error(&dmem_cmd_demo, "%s needs a number", a);
      goto out;
    }
    if (strcmp(a, "--json") == 0) {
      o.json = 1;
    } else if (strcmp(a, "--no-progress") == 0) {
      o.progress = 0;
    } else if (strcmp(a, "--seconds") == 0 && i + 1 < argc) {
      if (parse_uint(argv[++i], 1, 86400, &v) != 0) {
        cmd_usage_error(&dmem_cmd_demo, "--seconds takes a number from 1 to 86400");
        goto out;
      }
      o.seconds = v;
    } else if (strcmp(a, "--guests") == 0 && i + 1 < argc) {
      if (parse_uint(argv[++i], 1, MAX_GUESTS, &o.guests) != 0) {
        cmd_usage_error(&dmem_cmd_demo, "--guests takes a number from 1 to %d", MAX_GUESTS);
        goto out;
      }
    } else if (strcmp(a, "--guest-mib") == 0 && i + 1 < argc) {
      if (parse_uint(argv[++i], 4, 2048, &o.guest_mib) != 0) {
        cmd_usage_error(&dmem_cmd_demo, "--guest-mib takes a number from 4 to 2048");
        goto out;
      }
    } else if (a[0] == '-' && a[1]) {
      cmd_usage_error(&dmem_cmd_demo, "unknown option '%s'", a);
      goto out;
    } else {
      o.images[o.nimages++] = argv[i];
    }
  }
  if (o.nimages > MAX_GUESTS) {
    cmd_usage_error(&dmem_cmd_demo, "at most %d images", MAX_GUESTS);
    goto out;
  }
  if (o.nimages && o.guests && o.guests != (unsigned)o.nimages) {
    cmd_usage_error(&dmem_cmd_demo, "--guests %u with %d image%s: each image is one guest",
                    o.guests, o.nimages, o.nimages == 1 ? "" : "s");
    goto out;
  }
  if (!o.guests)
    o.guests = 4;
  rc = demo(&o);
out:
  free(o.images);
  return rc;
}

#else /* !DMEM_TOOL_KVM */

static int run(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  fprintf(stderr, "diffmem demo: this diffmem was built without the KVM adapter "
                  "(configure --enable-kvm)\n");
  return 1;
}

#endif

const dmem_cmd dmem_cmd_demo = {
    .name = "demo",
    .summary = "run KVM guests on one engine and show what it saves, live and verified",
    .usage = "usage: diffmem demo [--json] [--seconds N] [--guests N] [--guest-mib N]\n"
             "                    [--no-progress] [IMAGE...]\n"
             "\n"
             "Runs KVM guests (--guests, default 4) whose RAM is attached to one\n"
             "libdiffmem engine, so that pages are shared across guests, for\n"
             "--seconds (default 20) while the engine reclaims memory under them,\n"
             "then stops them and checks every page of every guest.\n"
             "\n"
             "Guests. Without IMAGE, each guest is built from real content found on\n"
             "this machine, --guest-mib MiB each (default 48): five eighths whole files\n"
             "from /usr/bin and the /usr/lib shared libraries (each guest its own\n"
             "selection, about two thirds common to any two guests, in its own\n"
             "order), an eighth zero pages, a quarter heap-like data pages (objects\n"
             "with pointers that differ per guest, counters, tables). With IMAGEs,\n"
             "each file of raw 4 KiB pages is one guest's RAM (a trailing partial page\n"
             "is ignored with a warning), followed by a zeroed data area of 1/16 of\n"
             "it (256 to 16384 pages). Each guest has 8 more pages for its code and\n"
             "page tables. Every guest page is written before the engine starts.\n"
             "\n"
             "The guest program runs at CPL 3 on one vCPU per guest, about a million\n"
             "operations a second: 88% reads of a hot window (up to 2 MiB of content,\n"
             "sliding its own length in 16 s), 12% reads and read-modify-writes of a\n"
             "data window (up to 1 MiB, sliding its length in 10 s), and about 200\n"
             "reads a second anywhere in the content (the cold majority, which the\n"
             "engine reclaims). The engine scans from this program's main thread,\n"
             "all guest memory every 1.5 s, with its default paper policy and\n"
             "pages compressed after 3 idle passes; no swap file.\n"
             "\n"
             "Figures (text, or one JSON object on stdout with --json):\n"
             "  guests, guest_pages   guests and their pages (content + data + control).\n"
             "  rss_before_kb, rss_after_kb\n"
             "                        host memory holding the guests, by the kernel's\n"
             "                        accounting: the memfds' allocated blocks (fstat)\n"
             "                        plus this process's anonymous memory (Anonymous in\n"
             "                        /proc/self/smaps_rollup: the engine's frames, patches\n"
             "                        and blobs, its metadata, this program's heap).\n"
             "                        Before: guests loaded and attached, before the\n"
             "                        first scan. After: at the end, guests stopped but\n"
             "                        attached. Also memfd_*_kb and anon_*_kb apart.\n"
             "  saved_pct             100 * (before - after) / before; engine_saved_pct\n"
             "                        is the engine's own bytes_saved over guest bytes.\n"
             "  breakdown             evicted pages by where they live (engine stats):\n"
             "                        zero, shared (a frame), patched (a patch against a\n"
             "                        frame), compressed, swapped.\n"
             "  faults, fault_us      guest touches of reclaimed pages served by the\n"
             "                        engine, and the fault threads' service time p50/p99\n"
             "                        (message read to page installed; histogram merged\n"
             "                        over the guests, upper bucket bounds).\n"
             "  verify_mismatches     pages that differ from what they must hold: every\n"
             "                        page read back through the guest mapping (reclaimed\n"
             "                        pages fault in) and compared with its source (the\n"
             "                        image or files, read again), the data pages with\n"
             "                        the host's replay of each guest's LCG for the exact\n"
             "                        operations it did, and the code and page tables.\n"
             "                        The sum of every read a guest made is replayed too\n"
             "                        (sum_mismatches).\n"
             "  engine_cpu_s          CPU time of the scanning thread inside\n"
             "                        dmem_engine_scan(). Serving faults runs on the\n"
             "                        adapter's fault threads and is not in it: it is\n"
             "                        fault_thread_cpu_s: process CPU minus the scanning\n"
             "                        thread and the vCPU threads, so it also holds the\n"
             "                        adapter's referenced/modified tracking faults and\n"
             "                        the rest of this program's work during the run.\n"
             "\n"
             "The progress line on stderr (when it is a terminal; off with\n"
             "--no-progress) shows elapsed time, host memory and saved %, the\n"
             "breakdown and faults, twice a second.\n"
             "\n"
             "Exit status 0 when every page verified; 1 when KVM is not available\n"
             "here, a guest or the engine failed, or any page or sum mismatched.\n",
    .run = run,
};
