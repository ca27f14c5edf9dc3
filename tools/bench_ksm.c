/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem bench ksm: libdiffmem and Linux KSM side by side on the same
 * guests, in one run.
 *
 * The same fleet (fleet.h: the guests of `diffmem demo`, the same content
 * and program) runs three times for --seconds each:
 *   none     RAM in plain anonymous memory: the guests' speed without either;
 *   ksm      RAM in anonymous memory marked MADV_MERGEABLE, with KSM running
 *            at the rate asked for (pages_to_scan, sleep_millisecs);
 *   diffmem  RAM in memfd regions attached to one engine, scanned at the
 *            demo's rate from this thread.
 * Every quarter second it samples host memory by the kernel's accounting
 * (fleet.h: memfd blocks plus this process's Pss_Anon, so a KSM page counts
 * once) and the CPU that reclaiming cost: ksmd's utime + stime from
 * /proc/PID/stat, or the engine's scanning and fault threads. From the
 * samples: savings, time to 50% and 90% of the final savings, CPU per GiB
 * saved at t90, and the CPU rate once savings settled.
 *
 * KSM's settings are the host's: the three it changes (run, pages_to_scan,
 * sleep_millisecs) are read first and written back when the KSM run ends,
 * on every error path and on SIGINT or SIGTERM; the fleet's pages are
 * unmerged (MADV_UNMERGEABLE) before they are unmapped. Without root or
 * without KSM nothing is changed and the command fails. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

#if DMEM_TOOL_KVM
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <diffmem/kvm.h>

#include "fleet.h"
#include "json.h"
#include "memsrc.h"

#define KSM_DIR "/sys/kernel/mm/ksm"
#define SAMPLE_S 0.25
#define GIB (1024.0 * 1024.0 * 1024.0)

typedef struct ksm_opts {
  int json, progress;
  unsigned seconds, guests, guest_mib;
  unsigned long pages_to_scan, sleep_ms;
  int nimages;
  char **images;
} ksm_opts;

/* ---------------------------------------------------------------- KSM */

/* The settings this benchmark changes, as they were. */
typedef struct ksm_saved {
  unsigned long run, pages_to_scan, sleep_ms;
  int changed; /* written since saved: restore them */
} ksm_saved;

static int ksm_read(unsigned long *out, const char *name)
{
  char path[128];
  uint64_t v;
  snprintf(path, sizeof path, KSM_DIR "/%s", name);
  if (memsrc_read_u64(&v, path) != 0)
    return -1;
  *out = (unsigned long)v;
  return 0;
}

static int ksm_write(const char *name, unsigned long v)
{
  char path[128];
  snprintf(path, sizeof path, KSM_DIR "/%s", name);
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  int ok = fprintf(f, "%lu\n", v) > 0;
  if (fclose(f) != 0)
    ok = 0;
  return ok ? 0 : -1;
}

/* Can this process run KSM at a rate of its own? Says why not. */
static int ksm_check(ksm_saved *s)
{
  if (access(KSM_DIR "/run", F_OK) != 0) {
    fprintf(stderr,
            "diffmem bench ksm: KSM is not available here: no %s/run (a kernel "
            "without CONFIG_KSM)\n",
            KSM_DIR);
    return -1;
  }
  if (geteuid() != 0 || access(KSM_DIR "/run", W_OK) != 0) {
    fprintf(stderr,
            "diffmem bench ksm: needs root, to set KSM's rate in %s (nothing was "
            "changed)\n",
            KSM_DIR);
    return -1;
  }
  if (ksm_read(&s->run, "run") || ksm_read(&s->pages_to_scan, "pages_to_scan") ||
      ksm_read(&s->sleep_ms, "sleep_millisecs")) {
    fprintf(stderr, "diffmem bench ksm: cannot read KSM's settings in %s: %s\n", KSM_DIR,
            strerror(errno));
    return -1;
  }
  s->changed = 0;
  return 0;
}

static int ksm_start(ksm_saved *s, const ksm_opts *o)
{
  s->changed = 1;
  if (ksm_write("pages_to_scan", o->pages_to_scan) || ksm_write("sleep_millisecs", o->sleep_ms) ||
      ksm_write("run", 1)) {
    fprintf(stderr, "diffmem bench ksm: cannot set KSM's rate: %s\n", strerror(errno));
    return -1;
  }
  return 0;
}

/* Puts the settings back; says so when it cannot. */
static int ksm_restore(ksm_saved *s)
{
  if (!s->changed)
    return 0;
  s->changed = 0;
  if (ksm_write("pages_to_scan", s->pages_to_scan) || ksm_write("sleep_millisecs", s->sleep_ms) ||
      ksm_write("run", s->run)) {
    fprintf(stderr,
            "diffmem bench ksm: could not restore KSM's settings (run %lu, pages_to_scan %lu, "
            "sleep_millisecs %lu): %s\n",
            s->run, s->pages_to_scan, s->sleep_ms, strerror(errno));
    return -1;
  }
  return 0;
}

/* ksmd's pid, or -1. */
static long ksmd_pid(void)
{
  DIR *d = opendir("/proc");
  if (!d)
    return -1;
  long pid = -1;
  struct dirent *e;
  while (pid < 0 && (e = readdir(d))) {
    char *end;
    long p = strtol(e->d_name, &end, 10);
    if (*end || p <= 0)
      continue;
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", p);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    if (fgets(comm, sizeof comm, f) && strcmp(comm, "ksmd\n") == 0)
      pid = p;
    fclose(f);
  }
  closedir(d);
  return pid;
}

/* utime + stime of a process, in seconds; -1 when unreadable. */
static double proc_cpu_s(long pid)
{
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* comm may hold spaces */
  unsigned long long ut, st;
  if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---------------------------------------------------------------- a side */

typedef struct sample {
  double t, saved_kb, cpu_s;
} sample;

typedef struct side {
  const char *name;
  fleet_ram ram;
  /* measured */
  double before_kb, secs;
  sample *s;
  size_t ns, cap;
  double ops, run_s; /* guest operations, vCPU time inside KVM_RUN */
  uint64_t mismatches, checked;
  int verified;
  /* KSM's own counters at the end of the run (host-wide), and the full
   * scans it made during the run */
  unsigned long pages_shared, pages_sharing, full_scans, full_scans0;
  /* derived */
  double saved_kb, t50, t90, cpu_s, cpu_per_gib, steady_pct, ops_per_s;
  int have_t90, have_steady;
} side;

typedef struct sampler {
  side *sd;
  fleet *f;
  fleet_totals *t;
  long ksmd;
  double cpu0;
  const ksm_opts *o;
} sampler;

static double side_cpu_s(const sampler *p)
{
  if (p->sd->ram == FLEET_MERGEABLE)
    return p->ksmd > 0 ? proc_cpu_s(p->ksmd) : 0;
  if (p->sd->ram == FLEET_ENGINE)
    return fleet_engine_cpu_s(p->f, p->t);
  return 0;
}

static void take_sample(void *ud, double t)
{
  sampler *p = ud;
  side *sd = p->sd;
  fleet_mem m;
  if (fleet_sample(&m, p->f) != 0)
    return;
  if (sd->ns == sd->cap) {
    size_t cap = sd->cap ? 2 * sd->cap : 256;
    sample *s = realloc(sd->s, cap * sizeof *s);
    if (!s)
      return;
    sd->s = s;
    sd->cap = cap;
  }
  sample *s = &sd->s[sd->ns++];
  s->t = t;
  s->saved_kb = sd->before_kb - (double)fleet_mem_kb(&m);
  s->cpu_s = side_cpu_s(p) - p->cpu0;
  if (p->o->progress)
    fprintf(stderr, "\r%-8s %5.1f s  saved %7.1f MiB  CPU %6.2f s\033[K", sd->name, t,
            s->saved_kb / 1024, s->cpu_s);
}

static volatile int interrupted;

static void on_interrupt(int sig)
{
  (void)sig;
  interrupted = 1;
}

/* Runs one side. Returns 0, 1 when interrupted, -1 on failure (said). */
static int run_side(side *sd, const ksm_opts *o, ksm_saved *ks)
{
  fleet_opts fo = {.who = "diffmem bench ksm",
                   .ram = sd->ram,
                   .guests = o->guests,
                   .guest_mib = o->guest_mib,
                   .nimages = o->nimages,
                   .images = o->images};
  fleet *f = NULL;
  fleet_totals t;
  memset(&t, 0, sizeof t);
  int rc = -1;
  if (fleet_create(&f, &fo) != 0 || fleet_start(f) != 0)
    goto out;
  fleet_mem before;
  if (fleet_sample(&before, f) != 0) {
    fprintf(stderr, "diffmem bench ksm: cannot read the memfds' sizes or smaps\n");
    goto out;
  }
  sd->before_kb = (double)fleet_mem_kb(&before);
  sampler p = {sd, f, &t, -1, 0, o};
  if (sd->ram == FLEET_MERGEABLE) {
    if ((p.ksmd = ksmd_pid()) < 0)
      fprintf(stderr, "diffmem bench ksm: note: no ksmd thread found; KSM's CPU reads 0\n");
    if (ksm_read(&sd->full_scans0, "full_scans") != 0 || ksm_start(ks, o) != 0)
      goto out;
  }
  p.cpu0 = side_cpu_s(&p);
  take_sample(&p, 0);
  int run_rc = fleet_run(&t, f, o->seconds, SAMPLE_S, take_sample, &p, &interrupted);
  take_sample(&p, t.secs);
  if (o->progress)
    fprintf(stderr, "\r\033[K");
  if (sd->ram == FLEET_MERGEABLE) {
    ksm_read(&sd->pages_shared, "pages_shared");
    ksm_read(&sd->pages_sharing, "pages_sharing");
    ksm_read(&sd->full_scans, "full_scans");
    sd->full_scans -= sd->full_scans < sd->full_scans0 ? sd->full_scans : sd->full_scans0;
    if (ksm_restore(ks) != 0)
      run_rc = -1;
  }
  fleet_stop(f, &t);
  sd->secs = t.secs;
  sd->ops = (double)t.ops;
  sd->run_s = t.vcpu_run_s;
  if (run_rc != 0) {
    rc = run_rc;
    goto out;
  }
  if (fleet_verify(&t, f) == 0)
    sd->verified = 1;
  sd->mismatches = t.mismatches + t.sum_bad + t.unreplayed;
  sd->checked = t.checked;
  rc = sd->verified && sd->mismatches == 0 ? 0 : -1;
  if (rc != 0)
    fprintf(stderr, "diffmem bench ksm: %s: %llu mismatching pages or sums\n", sd->name,
            (unsigned long long)sd->mismatches);
out:
  fleet_destroy(f); /* unmerges and unmaps, or detaches */
  return rc;
}

/* ---------------------------------------------------------------- figures */

static double cpu_at(const side *sd, double t)
{
  double c = 0;
  for (size_t i = 0; i < sd->ns && sd->s[i].t <= t; i++)
    c = sd->s[i].cpu_s;
  return c;
}

static void derive(side *sd)
{
  if (sd->ns == 0)
    return;
  const sample *last = &sd->s[sd->ns - 1];
  sd->saved_kb = last->saved_kb;
  sd->cpu_s = last->cpu_s;
  sd->ops_per_s = sd->run_s > 0 ? sd->ops / sd->run_s : 0;
  if (sd->saved_kb <= 0)
    return;
  int have50 = 0;
  for (size_t i = 0; i < sd->ns; i++) {
    if (!have50 && sd->s[i].saved_kb >= 0.5 * sd->saved_kb) {
      sd->t50 = sd->s[i].t;
      have50 = 1;
    }
    if (sd->s[i].saved_kb >= 0.9 * sd->saved_kb) {
      sd->t90 = sd->s[i].t;
      sd->have_t90 = 1;
      double gib = sd->s[i].saved_kb * 1024.0 / GIB;
      sd->cpu_per_gib = sd->s[i].cpu_s / gib;
      break;
    }
  }
  /* Settled: from t90, or from half the run if t90 came earlier, to the
   * end; at least 5 s of it, or no figure. */
  double from = sd->t90 > sd->secs / 2 ? sd->t90 : sd->secs / 2, span = last->t - from;
  if (sd->have_t90 && span >= 5) {
    sd->steady_pct = 100.0 * (last->cpu_s - cpu_at(sd, from)) / span;
    sd->have_steady = 1;
  }
}

static void json_num(const char *key, double v, int have, int comma)
{
  if (have)
    printf("\"%s\":%.3f%s", key, v, comma ? "," : "");
  else
    printf("\"%s\":null%s", key, comma ? "," : "");
}

static void json_side(const side *sd, double none_ops)
{
  printf("\"%s\":{", sd->name);
  json_num("saved_pct", sd->before_kb > 0 ? 100.0 * sd->saved_kb / sd->before_kb : 0, 1, 1);
  json_num("saved_mib", sd->saved_kb / 1024, 1, 1);
  json_num("before_mib", sd->before_kb / 1024, 1, 1);
  json_num("cpu_s", sd->cpu_s, 1, 1);
  json_num("t50_s", sd->t50, sd->have_t90, 1);
  json_num("t90_s", sd->t90, sd->have_t90, 1);
  json_num("cpu_per_gib", sd->cpu_per_gib, sd->have_t90, 1);
  json_num("steady_cpu_pct", sd->steady_pct, sd->have_steady, 1);
  json_num("guest_ops_per_s", sd->ops_per_s, 1, 1);
  json_num("slowdown_pct", none_ops > 0 ? 100.0 * (1 - sd->ops_per_s / none_ops) : 0, none_ops > 0,
           1);
  if (sd->ram == FLEET_MERGEABLE)
    printf("\"pages_shared\":%lu,\"pages_sharing\":%lu,\"full_scans\":%lu,", sd->pages_shared,
           sd->pages_sharing, sd->full_scans);
  printf("\"seconds\":%.2f,\"verify_mismatches\":%llu,\"pages_checked\":%llu}", sd->secs,
         (unsigned long long)sd->mismatches, (unsigned long long)sd->checked);
}

static void fmt(char *buf, size_t n, int decimals, double v, int have)
{
  if (have)
    snprintf(buf, n, "%.*f", decimals, v);
  else
    snprintf(buf, n, "-");
}

static void print_table(const side *k, const side *d, const side *none, const ksm_opts *o)
{
  printf("diffmem bench ksm: %u guest%s, %u s a side, KSM at pages_to_scan %lu, "
         "sleep_millisecs %lu; libdiffmem with all guests on one engine (one sharing "
         "domain)\n\n",
         o->nimages ? (unsigned)o->nimages : o->guests,
         (o->nimages ? o->nimages : (int)o->guests) == 1 ? "" : "s", o->seconds, o->pages_to_scan,
         o->sleep_ms);
  printf("  %-26s %14s %14s\n", "", "ksm", "diffmem");
  const side *sides[2] = {k, d};
  char a[2][32];
#define ROW(label, decimals, expr, have)                                                           \
  do {                                                                                             \
    for (int i = 0; i < 2; i++) {                                                                  \
      const side *sd = sides[i];                                                                   \
      fmt(a[i], sizeof a[i], decimals, (expr), (have));                                            \
    }                                                                                              \
    printf("  %-26s %14s %14s\n", label, a[0], a[1]);                                              \
  } while (0)
  ROW("host memory before (MiB)", 1, sd->before_kb / 1024, 1);
  ROW("saved (MiB)", 1, sd->saved_kb / 1024, 1);
  ROW("saved (%)", 1, sd->before_kb > 0 ? 100.0 * sd->saved_kb / sd->before_kb : 0, 1);
  ROW("t50 (s)", 2, sd->t50, sd->have_t90);
  ROW("t90 (s)", 2, sd->t90, sd->have_t90);
  ROW("CPU (s)", 2, sd->cpu_s, 1);
  ROW("CPU per GiB saved at t90", 2, sd->cpu_per_gib, sd->have_t90);
  ROW("steady CPU (% of a core)", 2, sd->steady_pct, sd->have_steady);
  ROW("guest ops/s (M, running)", 2, sd->ops_per_s / 1e6, 1);
  ROW("slowdown vs none (%)", 1,
      none->ops_per_s > 0 ? 100.0 * (1 - sd->ops_per_s / none->ops_per_s) : 0, none->ops_per_s > 0);
  ROW("verify mismatches", 0, (double)sd->mismatches, 1);
#undef ROW
  printf("  %-26s %14.2f\n", "none: guest ops/s (M)", none->ops_per_s / 1e6);
  if (k->saved_kb > 0)
    printf("\n  diffmem saves %.2fx what KSM saves", d->saved_kb / k->saved_kb);
  if (k->have_t90 && d->have_t90 && k->cpu_per_gib > 0)
    printf(", at %.2fx its CPU per GiB saved", d->cpu_per_gib / k->cpu_per_gib);
  printf("\n");
}

static void print_json(const side *k, const side *d, const side *none, const ksm_opts *o)
{
  printf("{\"schema\":%d,\"guests\":%u,\"seconds\":%u,\"ksm_pages_to_scan\":%lu,"
         "\"ksm_sleep_ms\":%lu,\"sharing_domains\":1,",
         DMEM_JSON_SCHEMA, o->nimages ? (unsigned)o->nimages : o->guests, o->seconds,
         o->pages_to_scan, o->sleep_ms);
  json_side(k, none->ops_per_s);
  printf(",");
  json_side(d, none->ops_per_s);
  printf(",\"none\":{");
  json_num("guest_ops_per_s", none->ops_per_s, 1, 1);
  printf("\"verify_mismatches\":%llu},\"ratio\":{", (unsigned long long)none->mismatches);
  json_num("saved", k->saved_kb > 0 ? d->saved_kb / k->saved_kb : 0, k->saved_kb > 0, 1);
  json_num("cpu_per_gib", k->cpu_per_gib > 0 ? d->cpu_per_gib / k->cpu_per_gib : 0,
           k->have_t90 && d->have_t90 && k->cpu_per_gib > 0, 0);
  printf("}}\n");
}

static int bench(const ksm_opts *o)
{
  ksm_saved ks;
  if (ksm_check(&ks) != 0)
    return 1;
  dmem_kvm_caps caps = DMEM_KVM_CAPS_INIT;
  if (dmem_kvm_probe(&caps) != 0) {
    fprintf(stderr, "diffmem bench ksm: KVM is not available here: %s\n", caps.reason);
    return 1;
  }
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_interrupt;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  side none = {.name = "none", .ram = FLEET_PLAIN};
  side k = {.name = "ksm", .ram = FLEET_MERGEABLE};
  side d = {.name = "diffmem", .ram = FLEET_ENGINE};
  side *order[3] = {&none, &k, &d};
  int rc = 0;
  for (int i = 0; i < 3 && rc == 0; i++)
    rc = run_side(order[i], o, &ks);
  if (ksm_restore(&ks) != 0 && rc == 0)
    rc = -1;
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (rc == 1 || interrupted) {
    fprintf(stderr, "diffmem bench ksm: interrupted; KSM's settings are as they were\n");
    rc = 1;
  } else if (rc == 0) {
    for (int i = 0; i < 3; i++)
      derive(order[i]);
    if (o->json)
      print_json(&k, &d, &none, o);
    else
      print_table(&k, &d, &none, o);
  } else {
    rc = 1;
  }
  for (int i = 0; i < 3; i++)
    free(order[i]->s);
  return rc;
}

static int parse_ulong(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (!*s || *end || errno || s[0] == '-' || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

int bench_ksm_run(int argc, char **argv)
{
  ksm_opts o = {.json = 0,
                .progress = isatty(2),
                .seconds = 60,
                .guests = 0,
                .guest_mib = 48,
                .pages_to_scan = 100,
                .sleep_ms = 20};
  o.images = calloc((size_t)argc, sizeof *o.images);
  if (!o.images)
    return 1;
  int rc = EXIT_USAGE;
  static const struct {
    const char *name;
    unsigned long lo, hi;
  } valued[] = {{"--seconds", 1, 86400},
                {"--guests", 1, FLEET_MAX_GUESTS},
                {"--guest-mib", 4, 2048},
                {"--ksm-pages-to-scan", 1, 1u << 20},
                {"--ksm-sleep-ms", 0, 60000}};
  /* Options 0 to 4 take the numbers of valued[]. */
  static const struct option opts[] = {{"seconds", required_argument, NULL, 0},
                                       {"guests", required_argument, NULL, 1},
                                       {"guest-mib", required_argument, NULL, 2},
                                       {"ksm-pages-to-scan", required_argument, NULL, 3},
                                       {"ksm-sleep-ms", required_argument, NULL, 4},
                                       {"json", no_argument, NULL, 256},
                                       {"no-progress", no_argument, NULL, 257},
                                       {NULL, 0, NULL, 0}};
  optind = 0;
  for (int c; (c = cmd_getopt(&dmem_cmd_bench, argc, argv, opts)) != -1;) {
    if (c == '?')
      goto out;
    if (c == 256) {
      o.json = 1;
    } else if (c == 257) {
      o.progress = 0;
    } else {
      unsigned long v;
      if (parse_ulong(optarg, valued[c].lo, valued[c].hi, &v) != 0) {
        cmd_usage_error(&dmem_cmd_bench, "%s takes a number from %lu to %lu", valued[c].name,
                        valued[c].lo, valued[c].hi);
        goto out;
      }
      if (c == 0)
        o.seconds = (unsigned)v;
      else if (c == 1)
        o.guests = (unsigned)v;
      else if (c == 2)
        o.guest_mib = (unsigned)v;
      else if (c == 3)
        o.pages_to_scan = v;
      else
        o.sleep_ms = v;
    }
  }
  for (int i = optind; i < argc; i++)
    o.images[o.nimages++] = argv[i];
  if (fleet_count_guests(&o.guests, o.nimages, "diffmem bench ksm") == 0)
    rc = bench(&o);
out:
  free(o.images);
  return rc;
}

#else /* !DMEM_TOOL_KVM */

int bench_ksm_run(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  fprintf(stderr, "diffmem bench ksm: this diffmem was built without the KVM adapter "
                  "(configure --enable-kvm)\n");
  return 1;
}

#endif
