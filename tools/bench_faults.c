/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* `diffmem bench faults`: what a fault on an evicted page costs the thread
 * that touches it, with the engine in this process (a KVM region, as a VMM
 * that links the library) and with the engine in diffmemd (the same RAM
 * handed over with dmem_kvm_client_attach), in one run: both map shared
 * pages copy-on-write on a read (across processes, through the client's
 * agent), and both touch while a scanner runs at the same pace. Each round fills
 * --pages pages with 8 contents (so the engine shares them), waits until
 * the engine has evicted nearly all, then reads one byte of every page in
 * a random order, timing each read; rounds alternate the two sides. The
 * figures are the touch-to-return latency's quantiles, and the ratio of
 * the daemon's median to the in-process one. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

#if DMEM_TOOL_KVM

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <diffmem/daemon.h>
#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "fleet.h"
#include "stat.h"
#include "json.h"

#define PAGE DMEM_PAGE_SIZE

/* The scanner's pace on both sides: diffmemd's defaults, unless told. */
static unsigned long long scan_ms = 100, scan_pages = 4096;

static uint64_t now_ns(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t mix(uint64_t *s)
{
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void fill(uint8_t *mem, uint64_t pages)
{
  for (uint64_t i = 0; i < pages; i++) {
    uint64_t s = 1 + i % 8;
    for (size_t o = 0; o < PAGE; o += 8) {
      uint64_t v = mix(&s);
      memcpy(mem + i * PAGE + o, &v, 8);
    }
  }
}

/* Reads one byte of every page in a random order; ns[] gets each read's
 * latency. Returns the pages that held the wrong byte. */
static uint64_t touch_all(const uint8_t *mem, uint64_t pages, uint64_t *ns, uint64_t seed)
{
  uint64_t *order = malloc(pages * sizeof *order), bad = 0;
  if (!order)
    return pages;
  for (uint64_t i = 0; i < pages; i++)
    order[i] = i;
  for (uint64_t i = pages; i > 1; i--) {
    uint64_t j = mix(&seed) % i, t = order[i - 1];
    order[i - 1] = order[j];
    order[j] = t;
  }
  for (uint64_t k = 0; k < pages; k++) {
    uint64_t i = order[k];
    uint64_t s = 1 + i % 8, want = mix(&s);
    volatile const uint8_t *p = mem + i * PAGE;
    uint64_t t0 = now_ns();
    uint8_t got = p[0];
    ns[k] = now_ns() - t0;
    bad += got != (uint8_t)want;
  }
  free(order);
  return bad;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double q_us(const uint64_t *sorted, size_t n, double q)
{
  size_t i = (size_t)(q * (double)(n - 1) + 0.5);
  return (double)sorted[i] / 1e3;
}

/* In this process: a region, an engine, scans until nearly all is
 * evicted, then the touches. Returns 0, or -1 with err set. */
static int round_local(uint64_t pages, uint64_t *ns, uint64_t *evicted, uint64_t *bad,
                       uint64_t seed, char *err, size_t errlen)
{
  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = pages * PAGE;
  ro.sharing_domain = 1;
  dmem_kvm_region *r = NULL;
  dmem_engine *e = NULL;
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT; /* a read maps, as across processes */
  dmem_vm *vm;
  int rc = dmem_kvm_region_create(&r, &ro, err, errlen);
  if (rc == 0 && (rc = dmem_engine_create(&e, &eo)) != 0)
    snprintf(err, errlen, "engine: %s", dmem_err_name(rc));
  uint8_t *mem = rc == 0 ? dmem_kvm_region_addr(r) : NULL;
  if (rc == 0) {
    fill(mem, pages);
    if ((rc = dmem_kvm_region_attach(&vm, e, r, "bench")) != 0)
      snprintf(err, errlen, "attach: %s", dmem_kvm_region_errmsg(r));
  }
  dmem_stats st = DMEM_STATS_INIT;
  for (int pass = 0; rc == 0 && pass < 20; pass++) {
    (void)dmem_engine_scan(NULL, e, (size_t)pages);
    (void)dmem_vm_stats(&st, vm);
    if (st.shared * 100 >= pages * 95)
      break;
  }
  *evicted = st.shared;
  /* The touches meet a scanner at the daemon's pace, as they do there. */
  if (rc == 0 && (rc = dmem_engine_start(e, (unsigned)scan_ms, (size_t)scan_pages)) != 0)
    snprintf(err, errlen, "engine start: %s", dmem_err_name(rc));
  if (rc == 0)
    *bad = touch_all(mem, pages, ns, seed);
  dmem_engine_stop(e);
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
  return rc ? -1 : 0;
}

/* Across processes: the same RAM in a sealed memfd, handed to diffmemd,
 * which scans on its own; waits until it evicted nearly all. */
static int round_daemon(const char *sock, uint64_t pages, uint64_t *ns, uint64_t *evicted,
                        uint64_t *bad, uint64_t seed, char *err, size_t errlen)
{
  size_t bytes = (size_t)(pages * PAGE);
  int fd;
  void *ram;
  if (fleet_sealed_ram(&fd, &ram, bytes, "bench-faults") != 0) {
    snprintf(err, errlen, "sealed memfd: %s", strerror(errno));
    return -1;
  }
  uint8_t *mem = ram;
  fill(mem, pages);
  dmem_kvm_client_options co = DMEM_KVM_CLIENT_OPTIONS_INIT;
  co.socket = sock;
  co.fd = fd;
  co.addr = mem;
  co.size = bytes;
  co.name = "bench";
  dmem_kvm_client *c;
  int rc = dmem_kvm_client_attach(&c, &co, err, errlen) == 0 ? 0 : -1;
  *evicted = 0;
  for (int i = 0; rc == 0 && i < 400; i++) {
    static dmem_proto_vm_stats st[DMEM_PROTO_STATS_MAX + 1];
    size_t n;
    if (stat_query(sock, st, DMEM_PROTO_STATS_MAX + 1, &n, NULL) != 0) {
      rc = -1;
      break;
    }
    for (size_t k = 1; k < n; k++)
      if (st[k].vm == dmem_kvm_client_vm(c))
        *evicted = st[k].shared;
    if (*evicted * 100 >= pages * 95)
      break;
    usleep(25000);
  }
  if (rc == 0)
    *bad = touch_all(mem, pages, ns, seed);
  if (rc == 0 && dmem_kvm_client_detach(c) != 0) {
    snprintf(err, errlen, "detach failed");
    rc = -1;
  }
  munmap(mem, bytes);
  close(fd);
  return rc;
}

int bench_faults_run(int argc, char **argv)
{
  unsigned long long pages = 4096, rounds = 3;
  int json = 0;
  const char *connect_to = NULL;
  enum { O_JSON = 256, O_CONNECT, O_SCAN_MS, O_SCAN_PAGES, O_PAGES, O_ROUNDS };
  static const struct option opts[] = {{"json", no_argument, NULL, O_JSON},
                                       {"connect", required_argument, NULL, O_CONNECT},
                                       {"scan-ms", required_argument, NULL, O_SCAN_MS},
                                       {"scan-pages", required_argument, NULL, O_SCAN_PAGES},
                                       {"pages", required_argument, NULL, O_PAGES},
                                       {"rounds", required_argument, NULL, O_ROUNDS},
                                       {NULL, 0, NULL, 0}};
  /* The bounds of the numbers, by option. */
  static const struct {
    const char *name;
    unsigned long long lo, hi;
  } num[] = {{"--scan-ms", 1, 60000},
             {"--scan-pages", 1, 1u << 24},
             {"--pages", 64, 1u << 20},
             {"--rounds", 1, 100}};
  optind = 0;
  for (int c; (c = cmd_getopt(&dmem_cmd_bench, argc, argv, opts)) != -1;) {
    if (c == '?')
      return EXIT_USAGE;
    if (c == O_JSON) {
      json = 1;
    } else if (c == O_CONNECT) {
      connect_to = optarg;
    } else {
      int k = c - O_SCAN_MS;
      char *end;
      errno = 0;
      unsigned long long v = strtoull(optarg, &end, 10);
      if (*end || errno || optarg[0] == '-' || !optarg[0] || v < num[k].lo || v > num[k].hi)
        return cmd_usage_error(&dmem_cmd_bench, "%s takes a number from %llu to %llu", num[k].name,
                               num[k].lo, num[k].hi);
      *(c == O_SCAN_MS      ? &scan_ms
        : c == O_SCAN_PAGES ? &scan_pages
        : c == O_PAGES      ? &pages
                            : &rounds) = v;
    }
  }
  if (optind < argc)
    return cmd_usage_error(&dmem_cmd_bench, "faults takes no operand ('%s')", argv[optind]);
  dmem_kvm_caps caps = DMEM_KVM_CAPS_INIT;
  if (dmem_kvm_probe(&caps) != 0 || !caps.uffd) {
    fprintf(stderr, "diffmem bench faults: needs userfaultfd (root on Linux)\n");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  char dir[] = "/tmp/diffmem-bench.XXXXXX", sock[64];
  pid_t dpid = -1;
  if (!connect_to) {
    if (!mkdtemp(dir)) {
      fprintf(stderr, "diffmem bench faults: mkdtemp: %s\n", strerror(errno));
      return 1;
    }
    snprintf(sock, sizeof sock, "%s/sock", dir);
    char ms[24], pg[24];
    snprintf(ms, sizeof ms, "%llu", scan_ms);
    snprintf(pg, sizeof pg, "%llu", scan_pages);
    char *args[] = {"--domain-by", "one", "--scan-ms", ms, "--scan-pages", pg, NULL};
    if ((dpid = stat_daemon_start(sock, args)) < 0) {
      fprintf(stderr, "diffmem bench faults: diffmemd did not start\n");
      rmdir(dir);
      return 1;
    }
    connect_to = sock;
  }
  size_t n = (size_t)(pages * rounds);
  uint64_t *loc = calloc(n, sizeof *loc), *dmn = calloc(n, sizeof *dmn);
  uint64_t ev_l = 0, ev_d = 0, bad = 0;
  int rc = loc && dmn ? 0 : 1;
  char err[DMEM_ERRBUF_SIZE] = "out of memory";
  for (unsigned long long r = 0; rc == 0 && r < rounds; r++) {
    uint64_t e1 = 0, e2 = 0, b1 = 0, b2 = 0;
    if (round_local(pages, loc + r * pages, &e1, &b1, 7 + r, err, sizeof err) != 0 ||
        round_daemon(connect_to, pages, dmn + r * pages, &e2, &b2, 7 + r, err, sizeof err) != 0)
      rc = 1;
    ev_l += e1, ev_d += e2, bad += b1 + b2;
  }
  if (dpid > 0) {
    kill(dpid, SIGTERM);
    (void)waitpid(dpid, NULL, 0);
    rmdir(dir);
  }
  if (rc) {
    fprintf(stderr, "diffmem bench faults: %s\n", err);
    free(loc);
    free(dmn);
    return 1;
  }
  qsort(loc, n, sizeof *loc, cmp_u64);
  qsort(dmn, n, sizeof *dmn, cmp_u64);
  double ratio = q_us(dmn, n, 0.5) / q_us(loc, n, 0.5);
  double r90 = q_us(dmn, n, 0.9) / q_us(loc, n, 0.9), r99 = q_us(dmn, n, 0.99) / q_us(loc, n, 0.99);
  if (json) {
    printf("{\"schema\":%d,\"pages\":%llu,\"rounds\":%llu,\"scan_ms\":%llu,\"scan_pages\":%llu,"
           "\"in_process\":{\"p50_us\":%.2f,\"p90_us\":%.2f,"
           "\"p99_us\":%.2f,\"evicted_pct\":%.1f},\"daemon\":{\"p50_us\":%.2f,\"p90_us\":%.2f,"
           "\"p99_us\":%.2f,\"evicted_pct\":%.1f},\"ratio_p50\":%.3f,\"ratio_p90\":%.3f,"
           "\"ratio_p99\":%.3f,\"mismatches\":%llu}\n",
           DMEM_JSON_SCHEMA, pages, rounds, scan_ms, scan_pages, q_us(loc, n, 0.5),
           q_us(loc, n, 0.9), q_us(loc, n, 0.99), 100.0 * (double)ev_l / (double)n,
           q_us(dmn, n, 0.5), q_us(dmn, n, 0.9), q_us(dmn, n, 0.99),
           100.0 * (double)ev_d / (double)n, ratio, r90, r99, (unsigned long long)bad);
  } else {
    printf("diffmem bench faults: %llu pages x %llu rounds, a read of each evicted page\n", pages,
           rounds);
    printf("  in process   p50 %7.2f  p90 %7.2f  p99 %7.2f us  (%.1f%% evicted)\n",
           q_us(loc, n, 0.5), q_us(loc, n, 0.9), q_us(loc, n, 0.99),
           100.0 * (double)ev_l / (double)n);
    printf("  diffmemd     p50 %7.2f  p90 %7.2f  p99 %7.2f us  (%.1f%% evicted)\n",
           q_us(dmn, n, 0.5), q_us(dmn, n, 0.9), q_us(dmn, n, 0.99),
           100.0 * (double)ev_d / (double)n);
    printf("  ratio        %.2fx at p50, %.2fx at p90, %.2fx at p99; %llu pages read wrong\n",
           ratio, r90, r99, (unsigned long long)bad);
  }
  free(loc);
  free(dmn);
  return bad || fflush(stdout) != 0 ? 1 : 0;
}

#else

int bench_faults_run(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  fprintf(stderr, "diffmem bench faults: this build has no KVM adapter\n");
  return 1;
}

#endif
