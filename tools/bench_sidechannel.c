/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* `diffmem bench sidechannel`: the timing attack on deduplication
 * (Suzaki et al. 2011; "Dedup Est Machina", S&P 2016), against the engine.
 *
 * A victim VM holds secret pages S_i. An attacker VM on the same engine
 * holds, for each i, a guess G_i beside an unrelated page U_i: the guess is
 * S_i itself (exact) or S_i with one byte changed (near miss). Both leave
 * their pages idle while the engine scans them (the victim's frames and
 * index entries are in place before the attacker's pages are visited),
 * then the attacker times one access to each G_i and U_i, in random order,
 * through a KVM region: from a host thread (where=thread) or from a real
 * vCPU with rdtsc (where=vcpu). If the engine treats a page differently
 * because the victim holds the same or a similar one, the two latency
 * distributions differ.
 *
 * Modes: default (one sharing domain, default options), domains (victim
 * and attacker in domains of their own) and secure (one domain, secure
 * mode). For each, the two-sample Kolmogorov-Smirnov statistic of G and U
 * with its 5% critical value, and the held-out accuracy of the best
 * threshold classifier: trained on even-numbered pairs, tested on the
 * odd-numbered ones (0.5 is a coin).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

#if DMEM_TOOL_KVM

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "demo_guest.h"
#include "json.h"

#define PAGE DMEM_PAGE_SIZE

enum sc_mode { SC_DEFAULT, SC_DOMAINS, SC_SECURE, SC_NMODES };
enum sc_where { SC_THREAD, SC_VCPU };
static const char *const mode_names[] = {"default", "domains", "secure"};
static const char *const where_names[] = {"thread", "vcpu"};

typedef struct sc_opts {
  unsigned pairs;
  uint64_t seed;
  int json, vcpu, thread;
} sc_opts;

typedef struct sc_run {
  enum sc_mode mode;
  enum sc_where where;
  int write, near;
  uint64_t *g, *u; /* latencies, ns, by pair */
  double ks, ks_crit, accuracy;
  char error[DMEM_ERRBUF_SIZE];
} sc_run;

/* ---------------------------------------------------------------- statistics */

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Square root by Newton's method (x > 0): no libm for one figure. */
static double root(double x)
{
  double r = x > 1 ? x : 1;
  for (int i = 0; i < 60; i++)
    r = 0.5 * (r + x / r);
  return r;
}

/* Two-sample Kolmogorov-Smirnov statistic: the largest gap between the
 * empirical distribution functions. Sorts a and b. */
static double ks_stat(uint64_t *a, size_t n, uint64_t *b, size_t m)
{
  qsort(a, n, sizeof *a, cmp_u64);
  qsort(b, m, sizeof *b, cmp_u64);
  size_t i = 0, j = 0;
  double d = 0;
  while (i < n && j < m) {
    uint64_t x = a[i] < b[j] ? a[i] : b[j];
    while (i < n && a[i] == x)
      i++;
    while (j < m && b[j] == x)
      j++;
    double gap = (double)i / (double)n - (double)j / (double)m;
    if (gap < 0)
      gap = -gap;
    if (gap > d)
      d = gap;
  }
  return d;
}

/* Accuracy of "class g when latency > t" (or < t, sign -1) on pairs whose
 * index has parity `part`. */
static double accuracy_at(const uint64_t *g, const uint64_t *u, size_t n, int part, uint64_t t,
                          int sign)
{
  size_t right = 0, all = 0;
  for (size_t i = (size_t)part; i < n; i += 2) {
    int gi = sign > 0 ? g[i] > t : g[i] < t;
    int ui = sign > 0 ? u[i] > t : u[i] < t;
    right += (size_t)gi + (size_t)!ui;
    all += 2;
  }
  return all ? (double)right / (double)all : 0.5;
}

/* The best threshold and direction on the even pairs, scored on the odd
 * ones. */
static double held_out_accuracy(const uint64_t *g, const uint64_t *u, size_t n)
{
  double best = -1;
  uint64_t bt = 0;
  int bs = 1;
  for (size_t i = 0; i < n; i += 2)
    for (int w = 0; w < 2; w++) {
      uint64_t t = w ? u[i] : g[i];
      for (int sign = -1; sign <= 1; sign += 2) {
        double a = accuracy_at(g, u, n, 0, t, sign);
        if (a > best)
          best = a, bt = t, bs = sign;
      }
    }
  return accuracy_at(g, u, n, 1, bt, bs);
}

static uint64_t quantile(const uint64_t *sorted, size_t n, double q)
{
  size_t i = (size_t)(q * (double)(n - 1) + 0.5);
  return sorted[i < n ? i : n - 1];
}

/* ---------------------------------------------------------------- content */

static uint64_t splitmix(uint64_t *s)
{
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void random_page(uint8_t *p, uint64_t *s)
{
  for (size_t i = 0; i < PAGE; i += 8) {
    uint64_t v = splitmix(s);
    memcpy(p + i, &v, 8);
  }
}

static uint64_t now_ns(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ---------------------------------------------------------------- one run */

typedef struct sc_env {
  dmem_engine *e;
  dmem_kvm_region *victim, *attacker;
  dmem_vm *vv, *va;
  uint8_t *shadow; /* the attacker's pages as it wrote them */
  uint64_t first;  /* the attacker's first probed page (after the probe's own) */
} sc_env;

/* "what: detail" (or what alone) into r->error; returns -1. */
static int fail(sc_run *r, const char *what, const char *detail)
{
  size_t n = strlen(what), cap = sizeof r->error;
  snprintf(r->error, cap, "%s", what);
  if (detail && n + 2 < cap)
    snprintf(r->error + n, cap - n, ": %.*s", (int)(cap - n - 3), detail);
  return -1;
}

static int region(dmem_kvm_region **out, uint64_t pages, uint32_t domain, sc_run *r)
{
  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  o.size = pages * PAGE;
  o.sharing_domain = domain;
  char err[DMEM_ERRBUF_SIZE];
  if (dmem_kvm_region_create(out, &o, err, sizeof err) != 0)
    return fail(r, "KVM region", err);
  return 0;
}

static void env_free(sc_env *v)
{
  dmem_kvm_region_destroy(v->attacker);
  dmem_kvm_region_destroy(v->victim);
  dmem_engine_destroy(v->e);
  free(v->shadow);
}

/* Builds the two VMs, fills them, and lets the engine scan until every
 * page has been idle long enough for any technique. */
static int env_make(sc_env *v, const sc_run *cr, sc_run *r, unsigned pairs, uint64_t seed,
                    uint64_t first)
{
  memset(v, 0, sizeof *v);
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.seed = seed | 1;
  eo.secure = cr->mode == SC_SECURE;
  if (dmem_engine_create(&v->e, &eo) != 0)
    return fail(r, "cannot create the engine", NULL);
  uint32_t da = cr->mode == SC_DOMAINS ? 2 : 1;
  v->first = first;
  if (region(&v->victim, pairs, 1, r) != 0 || region(&v->attacker, first + 2 * pairs, da, r) != 0)
    return -1;
  v->shadow = malloc((size_t)2 * pairs * PAGE);
  if (!v->shadow)
    return fail(r, "out of memory", NULL);
  uint8_t *vm = dmem_kvm_region_addr(v->victim), *am = dmem_kvm_region_addr(v->attacker);
  uint64_t s = seed;
  for (unsigned i = 0; i < pairs; i++) {
    uint8_t *secret = vm + (size_t)i * PAGE, *g = v->shadow + (size_t)2 * i * PAGE;
    random_page(secret, &s);
    memcpy(g, secret, PAGE);
    if (cr->near)
      g[splitmix(&s) % PAGE] ^= (uint8_t)(1 + splitmix(&s) % 255);
    random_page(g + PAGE, &s);
  }
  memcpy(am + first * PAGE, v->shadow, (size_t)2 * pairs * PAGE);
  if (dmem_kvm_region_attach(&v->vv, v->e, v->victim, "victim") != 0 ||
      dmem_kvm_region_attach(&v->va, v->e, v->attacker, "attacker") != 0)
    return fail(r, "attach", dmem_engine_errmsg(v->e));
  /* Enough passes for C4 (the default c4_passes) and then some. */
  for (unsigned p = 0; p < eo.c4_passes + 4; p++)
    if (dmem_engine_scan(NULL, v->e, (size_t)3 * pairs + first) != 0)
      return fail(r, "scan failed", NULL);
  return 0;
}

/* The attacker's access order: pair by pair in random order, guess or
 * unrelated page first at random. idx[2k], idx[2k+1] are attacker pages
 * (relative to first); which[] says guess (1) or not. */
static void access_order(uint64_t *idx, unsigned pairs, uint64_t seed)
{
  uint64_t s = seed ^ 0x5ca1ab1e;
  unsigned *perm = malloc(pairs * sizeof *perm);
  if (!perm) {
    for (unsigned i = 0; i < 2 * pairs; i++)
      idx[i] = i;
    return;
  }
  for (unsigned i = 0; i < pairs; i++)
    perm[i] = i;
  for (unsigned i = pairs; i > 1; i--) {
    unsigned j = (unsigned)(splitmix(&s) % i), t = perm[i - 1];
    perm[i - 1] = perm[j];
    perm[j] = t;
  }
  for (unsigned k = 0; k < pairs; k++) {
    int swap = (int)(splitmix(&s) & 1);
    idx[2 * k] = 2ull * perm[k] + (uint64_t)swap;
    idx[2 * k + 1] = 2ull * perm[k] + (uint64_t)!swap;
  }
  free(perm);
}

/* Byte offset probed in attacker page k: spread over the page. */
static size_t probe_off(uint64_t k)
{
  return (size_t)((k * 2654435761u) % PAGE);
}

static void record(sc_run *r, uint64_t k, uint64_t ns)
{
  if (k % 2 == 0)
    r->g[k / 2] = ns;
  else
    r->u[k / 2] = ns;
}

static int probe_thread(sc_env *v, sc_run *r, const uint64_t *idx, unsigned pairs)
{
  volatile uint8_t *am = (volatile uint8_t *)dmem_kvm_region_addr(v->attacker) + v->first * PAGE;
  for (unsigned a = 0; a < 2 * pairs; a++) {
    uint64_t k = idx[a];
    size_t off = probe_off(k);
    volatile uint8_t *p = am + k * PAGE + off;
    uint8_t same = v->shadow[k * PAGE + off];
    uint64_t t0 = now_ns();
    if (r->write)
      *p = same; /* the byte it holds: the content stays */
    else
      (void)*p;
    record(r, k, now_ns() - t0);
  }
  return 0;
}

static int probe_vcpu(sc_env *v, sc_run *r, const uint64_t *idx, unsigned pairs)
{
  dg_ram ram = {v->attacker, NULL, 0};
  dg_probe *pr;
  if (dg_probe_create(&pr, &ram, 0, r->error, sizeof r->error) != 0)
    return -1;
  double tpn = dg_tsc_per_ns();
  uint64_t gpa[DG_PROBE_MAX], cyc[DG_PROBE_MAX];
  int rc = 0;
  for (unsigned a = 0; rc == 0 && a < 2 * pairs; a += DG_PROBE_MAX) {
    size_t n = 2 * pairs - a < DG_PROBE_MAX ? 2 * pairs - a : DG_PROBE_MAX;
    for (size_t i = 0; i < n; i++)
      gpa[i] = (v->first + idx[a + i]) * PAGE + probe_off(idx[a + i]);
    rc = dg_probe_run(pr, gpa, n, r->write, cyc, r->error, sizeof r->error);
    for (size_t i = 0; rc == 0 && i < n; i++)
      record(r, idx[a + i], (uint64_t)((double)cyc[i] / tpn + 0.5));
  }
  dg_probe_destroy(pr);
  return rc;
}

static int run_one(sc_run *r, unsigned pairs, uint64_t seed)
{
  sc_env v;
  memset(&v, 0, sizeof v);
  uint64_t first = r->where == SC_VCPU ? DG_PROBE_PAGES : 0;
  uint64_t *idx = malloc((size_t)2 * pairs * sizeof *idx);
  r->g = calloc(pairs, sizeof *r->g);
  r->u = calloc(pairs, sizeof *r->u);
  int rc = -1;
  if (!idx || !r->g || !r->u) {
    fail(r, "out of memory", NULL);
  } else if (env_make(&v, r, r, pairs, seed, first) == 0) {
    access_order(idx, pairs, seed);
    rc = r->where == SC_VCPU ? probe_vcpu(&v, r, idx, pairs) : probe_thread(&v, r, idx, pairs);
  }
  if (rc == 0)
    r->accuracy = held_out_accuracy(r->g, r->u, pairs);
  env_free(&v);
  free(idx);
  if (rc == 0) {
    /* KS sorts: keep the by-pair order for the classifier above. */
    r->ks = ks_stat(r->g, pairs, r->u, pairs);
    r->ks_crit = 1.358 * root(2.0 / pairs);
  }
  return rc;
}

/* ---------------------------------------------------------------- output */

static void print_dist(const char *name, const uint64_t *sorted, unsigned n)
{
  printf("  %-5s p10 %7.2f  p50 %7.2f  p90 %7.2f µs\n", name, quantile(sorted, n, 0.1) / 1e3,
         quantile(sorted, n, 0.5) / 1e3, quantile(sorted, n, 0.9) / 1e3);
}

static void print_run(const sc_run *r, unsigned pairs)
{
  printf("%-7s %-6s %-5s %-5s  accuracy %.3f  KS %.3f (5%% critical %.3f)%s\n", mode_names[r->mode],
         where_names[r->where], r->write ? "write" : "read", r->near ? "near" : "exact",
         r->accuracy, r->ks, r->ks_crit, r->ks > r->ks_crit ? "  differs" : "");
  print_dist(r->near ? "near" : "exact", r->g, pairs);
  print_dist("other", r->u, pairs);
}

static void json_dist(const char *key, const uint64_t *sorted, unsigned n)
{
  printf("\"%s\": {\"p10_us\": %.3f, \"p50_us\": %.3f, \"p90_us\": %.3f}", key,
         quantile(sorted, n, 0.1) / 1e3, quantile(sorted, n, 0.5) / 1e3,
         quantile(sorted, n, 0.9) / 1e3);
}

static void json_run(const sc_run *r, unsigned pairs, int comma)
{
  printf("    {\"mode\": \"%s\", \"where\": \"%s\", \"op\": \"%s\", \"guess\": \"%s\", "
         "\"pairs\": %u, \"accuracy\": %.4f, \"ks\": %.4f, \"ks_critical\": %.4f, ",
         mode_names[r->mode], where_names[r->where], r->write ? "write" : "read",
         r->near ? "near" : "exact", pairs, r->accuracy, r->ks, r->ks_crit);
  printf("\"latency\": {");
  json_dist("guess", r->g, pairs);
  printf(", ");
  json_dist("other", r->u, pairs);
  printf("}}%s\n", comma ? "," : "");
}

static int parse(sc_opts *o, int argc, char **argv)
{
  enum { O_JSON = 256, O_PAIRS, O_SEED, O_WHERE };
  static const struct option opts[] = {{"json", no_argument, NULL, O_JSON},
                                       {"pairs", required_argument, NULL, O_PAIRS},
                                       {"seed", required_argument, NULL, O_SEED},
                                       {"where", required_argument, NULL, O_WHERE},
                                       {NULL, 0, NULL, 0}};
  optind = 0;
  for (int c; (c = cmd_getopt(&dmem_cmd_bench, argc, argv, opts)) != -1;) {
    if (c == '?')
      return EXIT_USAGE;
    if (c == O_JSON) {
      o->json = 1;
    } else if (c == O_PAIRS || c == O_SEED) {
      const char *name = c == O_PAIRS ? "--pairs" : "--seed";
      char *end;
      errno = 0;
      unsigned long long v = strtoull(optarg, &end, 10);
      if (*end || errno || optarg[0] == '-' || !optarg[0])
        return cmd_usage_error(&dmem_cmd_bench, "%s takes a number", name);
      if (c == O_PAIRS) {
        if (v < 16 || v > 100000)
          return cmd_usage_error(&dmem_cmd_bench, "--pairs takes a number from 16 to 100000");
        o->pairs = (unsigned)v;
      } else {
        o->seed = v;
      }
    } else if (c == O_WHERE) {
      const char *w = optarg;
      o->thread = strcmp(w, "thread") == 0 || strcmp(w, "both") == 0;
      o->vcpu = strcmp(w, "vcpu") == 0 || strcmp(w, "both") == 0;
      if (!o->thread && !o->vcpu)
        return cmd_usage_error(&dmem_cmd_bench, "--where takes thread, vcpu or both");
    }
  }
  if (optind < argc)
    return cmd_usage_error(&dmem_cmd_bench, "sidechannel takes no operand ('%s')", argv[optind]);
  return 0;
}

int bench_sidechannel_run(int argc, char **argv)
{
  sc_opts o = {.pairs = 1000, .seed = 1, .json = 0, .vcpu = 1, .thread = 1};
  int rc = parse(&o, argc, argv);
  if (rc)
    return rc;
  dmem_kvm_caps caps = DMEM_KVM_CAPS_INIT;
  if (dmem_kvm_probe(&caps) != 0 || !caps.uffd) {
    fprintf(stderr, "diffmem bench sidechannel: needs userfaultfd (run as root on Linux)\n");
    return 1;
  }
  if (o.vcpu && access("/dev/kvm", R_OK | W_OK) != 0) {
    fprintf(stderr, "diffmem bench sidechannel: no /dev/kvm: vCPU runs left out\n");
    o.vcpu = 0;
  }
  enum { MAXRUNS = SC_NMODES * 2 * 2 * 2 };
  sc_run runs[MAXRUNS];
  unsigned n = 0;
  int bad = 0;
  for (int where = 0; where < 2; where++) {
    if ((where == SC_THREAD && !o.thread) || (where == SC_VCPU && !o.vcpu))
      continue;
    for (int mode = 0; mode < SC_NMODES; mode++)
      for (int op = 0; op < 2; op++)
        for (int near = 0; near < 2; near++) {
          sc_run *r = &runs[n];
          memset(r, 0, sizeof *r);
          r->mode = (enum sc_mode)mode;
          r->where = (enum sc_where)where;
          r->write = op;
          r->near = near;
          if (run_one(r, o.pairs, o.seed + n * 7919) != 0) {
            fprintf(stderr, "diffmem bench sidechannel: %s %s %s: %s\n", mode_names[mode],
                    where_names[where], op ? "write" : "read", r->error);
            free(r->g);
            free(r->u);
            bad = 1;
            continue;
          }
          if (!o.json)
            print_run(r, o.pairs);
          n++;
        }
  }
  if (o.json) {
    printf("{\n  \"schema\": %d,\n  \"pairs\": %u,\n  \"runs\": [\n", DMEM_JSON_SCHEMA, o.pairs);
    for (unsigned i = 0; i < n; i++)
      json_run(&runs[i], o.pairs, i + 1 < n);
    printf("  ]\n}\n");
  }
  for (unsigned i = 0; i < n; i++) {
    free(runs[i].g);
    free(runs[i].u);
  }
  return bad || fflush(stdout) != 0 || ferror(stdout) ? 1 : 0;
}

#else

int bench_sidechannel_run(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  fprintf(stderr, "diffmem bench sidechannel: this build has no KVM adapter\n");
  return 1;
}

#endif
