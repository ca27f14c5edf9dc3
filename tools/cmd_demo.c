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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <diffmem/kvm.h>

#include "fleet.h"
#include "stat.h"
#include "json.h"

#define PAGE DMEM_PAGE_SIZE

typedef struct demo_opts {
  int json, progress, read_heavy, no_cow, secure, processes;
  const char *connect; /* --processes: an existing diffmemd's socket */
  double seconds;
  unsigned guests, guest_mib;
  int nimages;
  char **images;
} demo_opts;

typedef struct demo_figures {
  fleet_mem before, after;
  dmem_stats es;
  dmem_kvm_stats ks; /* merged over the regions */
  fleet_totals t;
  uint64_t vmas_max;             /* the most VMAs mapping added, over every sample */
  int vmas_over_budget;          /* a sample saw more than the budget */
  double p50_us, p99_us, max_us; /* fault service time */
  /* the guests' shape */
  unsigned n;
  uint64_t pages, content, data;
} demo_figures;

/* ---------------------------------------------------------------- the run */

typedef struct progress_ctx {
  const fleet *f;
  demo_figures *fig;
  int show;
} progress_ctx;

/* Every half second: the VMAs against their budget, and the progress line
 * when asked for. */
static void progress_line(void *ud, double t)
{
  progress_ctx *p = ud;
  dmem_kvm_stats ks;
  fleet_kvm_stats(&ks, p->f);
  if (ks.vmas_used > p->fig->vmas_max)
    p->fig->vmas_max = ks.vmas_used;
  if (ks.vmas_used > ks.vma_budget)
    p->fig->vmas_over_budget = 1;
  if (!p->show)
    return;
  const fleet_mem *before = &p->fig->before;
  fleet_mem m;
  dmem_stats s = DMEM_STATS_INIT;
  if (fleet_sample(&m, p->f) != 0 || dmem_engine_stats(&s, p->f->engine) != 0)
    return;
  char line[256];
  snprintf(line, sizeof line,
           "%5.1f s  saved %.1f%% (%.1f of %.1f MiB)  zero %llu shared %llu patched %llu "
           "compressed %llu swapped %llu  faults %llu",
           t, fleet_saved_pct(before, &m), (double)fleet_mem_kb(&m) / 1024,
           (double)fleet_mem_kb(before) / 1024, (unsigned long long)s.zero,
           (unsigned long long)s.shared, (unsigned long long)s.patched,
           (unsigned long long)s.compressed, (unsigned long long)s.swapped,
           (unsigned long long)s.faults);
  /* One line, never wrapped, or \r would not go back to its start. */
  struct winsize ws;
  if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && ws.ws_col <= sizeof line)
    line[ws.ws_col - 1] = 0;
  fprintf(stderr, "\r%s\033[K", line);
}

static void print_text(const demo_figures *f, const demo_opts *o)
{
  uint64_t pages = f->pages, content = f->content, data = f->data;
  unsigned n = f->n;
  const dmem_stats *s = &f->es;
  const fleet_totals *t = &f->t;
  if (o->processes)
    printf("diffmem demo: %u KVM guest%s, each in its own process, on diffmemd (one sharing "
           "domain) for %.1f s\n",
           n, n == 1 ? "" : "s", t->secs);
  else
    printf("diffmem demo: %u KVM guest%s on one engine (one sharing domain) for %.1f s\n", n,
           n == 1 ? "" : "s", t->secs);
  printf("  guests          %u (%s)\n", n,
         o->nimages ? "one per image" : "built from this machine's binaries and libraries");
  printf("  guest pages     %llu (%.1f MiB): content %llu, data %llu, control %llu\n",
         (unsigned long long)pages, (double)pages * PAGE / 1048576.0, (unsigned long long)content,
         (unsigned long long)data, (unsigned long long)(pages - content - data));
  printf("  host memory     before %.1f MiB, after %.1f MiB  (memfd %.1f -> %.1f MiB, "
         "anonymous %.1f -> %.1f MiB)\n",
         (double)fleet_mem_kb(&f->before) / 1024, (double)fleet_mem_kb(&f->after) / 1024,
         (double)f->before.memfd_bytes / 1048576.0, (double)f->after.memfd_bytes / 1048576.0,
         (double)f->before.anon_kb / 1024, (double)f->after.anon_kb / 1024);
  printf("  saved           %.1f%% by the kernel's accounting (engine's own figure %.1f%%)\n",
         fleet_saved_pct(&f->before, &f->after),
         pages ? 100.0 * (double)s->bytes_saved / ((double)pages * PAGE) : 0.0);
  printf("  breakdown       zero %llu, shared %llu, patched %llu, compressed %llu, swapped %llu "
         "pages (%llu frames)\n",
         (unsigned long long)s->zero, (unsigned long long)s->shared, (unsigned long long)s->patched,
         (unsigned long long)s->compressed, (unsigned long long)s->swapped,
         (unsigned long long)s->frames);
  printf("  guest program   %s; copy-on-write mapping of shared pages %s; secure mode %s\n",
         o->read_heavy ? "read-heavy (a window of a quarter of the content)" : "mostly idle",
         o->no_cow || o->secure ? "off"
         : o->processes         ? "on (in each VMM, by its agent)"
                                : "on",
         o->secure ? "on" : "off");
  if (o->processes) {
    printf("  copy-on-write   %llu pages mapped now, in the VMMs\n",
           (unsigned long long)f->ks.cow_mapped);
  } else {
    printf("  copy-on-write   %llu pages mapped now (%llu maps, %llu copied past the budget); "
           "VMAs %llu now, %llu at most, budget %llu\n",
           (unsigned long long)f->ks.cow_mapped, (unsigned long long)f->ks.cow_maps,
           (unsigned long long)f->ks.cow_fallbacks, (unsigned long long)f->ks.vmas_used,
           (unsigned long long)f->vmas_max, (unsigned long long)f->ks.vma_budget);
    printf("  shared faults   %llu on reads, %llu on writes\n",
           (unsigned long long)s->shared_read_faults, (unsigned long long)s->shared_write_faults);
  }
  printf("  faults          %llu served; service time p50 %.0f us, p99 %.0f us, max %.0f us\n",
         (unsigned long long)s->faults, f->p50_us, f->p99_us, f->max_us);
  printf("  guest work      %.1f M operations (%.2f M/s per guest), %llu scans\n",
         (double)t->ops / 1e6, t->secs > 0 ? (double)t->ops / 1e6 / t->secs / n : 0.0,
         (unsigned long long)t->scans);
  printf("  verify          %llu mismatching pages of %llu checked%s\n",
         (unsigned long long)t->mismatches, (unsigned long long)t->checked,
         t->sum_bad ? "; some guest read wrong data (sum)" : "; every guest's reads replayed");
  if (o->processes)
    printf("  engine CPU      %.2f s, the daemon's, scanning and serving faults (%.1f%% of a "
           "core); vCPUs %.2f s\n",
           t->other_cpu_s, t->secs > 0 ? 100.0 * t->other_cpu_s / t->secs : 0.0, t->vcpu_cpu_s);
  else
    printf("  engine CPU      %.2f s scanning (%.1f%% of a core); fault threads %.2f s; "
           "vCPUs %.2f s\n",
           t->scan_cpu_s, t->secs > 0 ? 100.0 * t->scan_cpu_s / t->secs : 0.0, t->other_cpu_s,
           t->vcpu_cpu_s);
}

static void print_json(const demo_figures *f, const demo_opts *o)
{
  uint64_t pages = f->pages;
  const dmem_stats *s = &f->es;
  const fleet_totals *t = &f->t;
  printf("{\"schema\":%d,\"guests\":%u,\"guest_pages\":%llu,\"rss_before_kb\":%llu,\"rss_after_"
         "kb\":%llu,"
         "\"saved_pct\":%.2f,\"breakdown\":{\"zero\":%llu,\"shared\":%llu,\"patched\":%llu,"
         "\"compressed\":%llu,\"swapped\":%llu},\"faults\":%llu,"
         "\"fault_us\":{\"p50\":%.1f,\"p99\":%.1f},\"verify_mismatches\":%llu,"
         "\"engine_cpu_s\":%.3f,",
         DMEM_JSON_SCHEMA, f->n, (unsigned long long)pages,
         (unsigned long long)fleet_mem_kb(&f->before), (unsigned long long)fleet_mem_kb(&f->after),
         fleet_saved_pct(&f->before, &f->after), (unsigned long long)s->zero,
         (unsigned long long)s->shared, (unsigned long long)s->patched,
         (unsigned long long)s->compressed, (unsigned long long)s->swapped,
         (unsigned long long)s->faults, f->p50_us, f->p99_us, (unsigned long long)t->mismatches,
         o->processes ? t->other_cpu_s : t->scan_cpu_s);
  printf("\"memfd_before_kb\":%llu,\"memfd_after_kb\":%llu,\"anon_before_kb\":%llu,"
         "\"anon_after_kb\":%llu,\"engine_saved_pct\":%.2f,\"seconds\":%.2f,\"scans\":%llu,"
         "\"guest_ops\":%llu,\"pages_checked\":%llu,\"sum_mismatches\":%llu,"
         "\"fault_thread_cpu_s\":%.3f,\"vcpu_cpu_s\":%.3f,\"frames\":%llu,\"errors\":%llu,"
         "\"sharing_domains\":1,",
         (unsigned long long)(f->before.memfd_bytes / 1024),
         (unsigned long long)(f->after.memfd_bytes / 1024), (unsigned long long)f->before.anon_kb,
         (unsigned long long)f->after.anon_kb,
         pages ? 100.0 * (double)s->bytes_saved / ((double)pages * PAGE) : 0.0, t->secs,
         (unsigned long long)t->scans, (unsigned long long)t->ops, (unsigned long long)t->checked,
         (unsigned long long)(t->sum_bad + t->unreplayed), t->other_cpu_s, t->vcpu_cpu_s,
         (unsigned long long)s->frames, (unsigned long long)s->errors);
  printf("\"read_heavy\":%s,\"cow\":%s,\"cow_mapped_pages\":%llu,\"cow_maps\":%llu,"
         "\"cow_fallbacks\":%llu,\"vmas_used\":%llu,\"vmas_max\":%llu,\"vma_budget\":%llu,"
         "\"shared_read_faults\":%llu,\"shared_write_faults\":%llu,\"secure\":%s,"
         "\"processes\":%s}\n",
         o->read_heavy ? "true" : "false", o->no_cow || o->secure ? "false" : "true",
         (unsigned long long)f->ks.cow_mapped, (unsigned long long)f->ks.cow_maps,
         (unsigned long long)f->ks.cow_fallbacks, (unsigned long long)f->ks.vmas_used,
         (unsigned long long)f->vmas_max, (unsigned long long)f->ks.vma_budget,
         (unsigned long long)s->shared_read_faults, (unsigned long long)s->shared_write_faults,
         o->secure ? "true" : "false", o->processes ? "true" : "false");
}

static int demo_processes(const demo_opts *o);

static int demo(const demo_opts *o)
{
  dmem_kvm_caps caps = DMEM_KVM_CAPS_INIT;
  if (dmem_kvm_probe(&caps) != 0) {
    fprintf(stderr, "diffmem demo: KVM is not available here: %s\n", caps.reason);
    return 1;
  }
  if (o->processes)
    return demo_processes(o);
  fleet_opts fo = {.who = "diffmem demo",
                   .ram = FLEET_ENGINE,
                   .guests = o->guests,
                   .guest_mib = o->guest_mib,
                   .nimages = o->nimages,
                   .images = o->images,
                   .read_heavy = o->read_heavy,
                   .no_cow = o->no_cow,
                   .secure = o->secure};
  demo_figures fig;
  memset(&fig, 0, sizeof fig);
  fleet *f = NULL;
  int rc = 1, ok = 0;
  if (fleet_create(&f, &fo) != 0 || fleet_start(f) != 0)
    goto out;
  if (fleet_sample(&fig.before, f) != 0) {
    fprintf(stderr, "diffmem demo: cannot read the memfds' sizes or smaps\n");
    goto out;
  }
  double cpu0 = fleet_process_cpu_s(), main0 = fleet_thread_cpu_s();
  progress_ctx pc = {f, &fig, o->progress};
  int run_rc = fleet_run(&fig.t, f, o->seconds, 0.5, progress_line, &pc, NULL);
  if (o->progress)
    fprintf(stderr, "\r\033[K");
  fleet_stop(f, &fig.t);
  fig.t.other_cpu_s =
      fleet_process_cpu_s() - cpu0 - (fleet_thread_cpu_s() - main0) - fig.t.vcpu_cpu_s;
  if (fig.t.other_cpu_s < 0)
    fig.t.other_cpu_s = 0;
  fig.es.version = DMEM_STATS_VERSION;
  if (fleet_sample(&fig.after, f) != 0 || dmem_engine_stats(&fig.es, f->engine) != 0) {
    fprintf(stderr, "diffmem demo: cannot read the figures\n");
    goto out;
  }
  fleet_kvm_stats(&fig.ks, f);
  fig.p50_us = dmem_kvm_stats_percentile_us(&fig.ks, 0.5);
  fig.p99_us = dmem_kvm_stats_percentile_us(&fig.ks, 0.99);
  fig.max_us = (double)fig.ks.lat_max_ns / 1000;
  fig.n = f->n;
  fleet_pages(f, &fig.pages, &fig.content, &fig.data);
  pc.show = 0;
  progress_line(&pc, 0); /* the last sample */
  ok = run_rc == 0 && !fig.vmas_over_budget;
  if (fig.vmas_over_budget)
    fprintf(stderr, "diffmem demo: copy-on-write mapping went past its VMA budget\n");
  if (o->progress)
    fprintf(stderr, "verifying every page of %u guest%s...", f->n, f->n == 1 ? "" : "s");
  if (fleet_verify(&fig.t, f) != 0)
    ok = 0;
  if (o->progress)
    fprintf(stderr, "\r\033[K");
  if (o->json)
    print_json(&fig, o);
  else
    print_text(&fig, o);
  if (fig.es.errors || fig.ks.faults_failed)
    fprintf(stderr, "diffmem demo: note: %llu engine errors, %llu failed faults (%s)\n",
            (unsigned long long)fig.es.errors, (unsigned long long)fig.ks.faults_failed,
            dmem_engine_errmsg(f->engine));
  rc = ok && fig.t.mismatches == 0 && fig.t.sum_bad == 0 && fig.t.unreplayed == 0 ? 0 : 1;
out:
  fleet_destroy(f);
  return rc;
}

/* ---------------------------------------------------------------- --processes
 *
 * Each guest in a VMM process of its own (a child of this one), its RAM a
 * sealed memfd that the child hands to one diffmemd (started here, or
 * --connect). The children and this process talk over pipes:
 *   child -> parent: READY (guest made, not yet attached: its shape and
 *   memfd), STOPPED (run over, guest stopped: its totals), DONE (verified:
 *   its totals), or FAILED;
 *   parent -> child: 'g' (attach and run), 'v' (verify), 'q' (quit).
 * Host memory by the kernel's accounting, summed over the processes: the
 * children's memfds (read through /proc/PID/fd), the daemon's store and
 * journal memfds, and the daemon's anonymous memory above what it held
 * before the guests came. */
enum { C_READY = 1, C_STOPPED, C_DONE, C_FAILED };

typedef struct child_msg {
  int type, memfd;
  uint64_t pages, content, data, memfd_bytes;
  fleet_totals t;
} child_msg;

typedef struct child {
  pid_t pid;
  int rfd, wfd; /* from it, to it */
  child_msg last;
} child;

static int put_msg(int fd, const child_msg *m)
{
  return write(fd, m, sizeof *m) == (ssize_t)sizeof *m ? 0 : -1;
}

static int get_msg(int fd, child_msg *m)
{
  size_t done = 0;
  while (done < sizeof *m) {
    ssize_t k = read(fd, (char *)m + done, sizeof *m - done);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    done += (size_t)k;
  }
  return 0;
}

static char get_cmd(int fd)
{
  char c;
  ssize_t k;
  while ((k = read(fd, &c, 1)) < 0 && errno == EINTR)
    ;
  return k == 1 ? c : 'q';
}

/* A VMM process: guest i on diffmemd at sock. Never returns. */
static void child_main(const demo_opts *o, unsigned i, const char *sock, int rfd, int wfd)
{
  fleet_opts fo = {.who = "diffmem demo",
                   .ram = FLEET_DAEMON,
                   .guests = 1,
                   .guest_mib = o->guest_mib,
                   .nimages = o->nimages ? 1 : 0,
                   .images = o->nimages ? o->images + i : NULL,
                   .read_heavy = o->read_heavy,
                   .first = i,
                   .socket = sock};
  child_msg m;
  memset(&m, 0, sizeof m);
  fleet *f = NULL;
  int rc = 1;
  fleet_mem mem;
  if (fleet_create(&f, &fo) != 0 || fleet_sample(&mem, f) != 0)
    goto fail;
  m.type = C_READY;
  m.memfd = f->vms[0].memfd;
  m.memfd_bytes = mem.memfd_bytes;
  fleet_pages(f, &m.pages, &m.content, &m.data);
  if (put_msg(wfd, &m) != 0 || get_cmd(rfd) != 'g')
    goto out;
  if (fleet_attach_daemon(f) != 0 || fleet_start(f) != 0)
    goto fail;
  memset(&m.t, 0, sizeof m.t);
  if (fleet_run(&m.t, f, o->seconds, 1, NULL, NULL, NULL) != 0)
    goto fail;
  fleet_stop(f, &m.t);
  m.type = C_STOPPED;
  if (put_msg(wfd, &m) != 0 || get_cmd(rfd) != 'v')
    goto out;
  rc = fleet_verify(&m.t, f) == 0 ? 0 : 1;
  m.type = C_DONE;
  (void)put_msg(wfd, &m);
  goto out;
fail:
  m.type = C_FAILED;
  (void)put_msg(wfd, &m);
out:
  fleet_destroy(f); /* detaches: every page back */
  _exit(rc);
}

/* Blocks of the file behind /proc/pid/fd/fd, in bytes; 0 if gone. */
static uint64_t proc_fd_bytes(pid_t pid, int fd)
{
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
  return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512u : 0;
}

/* The daemon's memfds (store and journals), by the kernel's accounting. */
static uint64_t daemon_memfd_bytes(pid_t pid)
{
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(dir);
  uint64_t total = 0;
  if (!d)
    return 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char link[320], target[256];
    snprintf(link, sizeof link, "%s/%s", dir, de->d_name);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
      continue;
    target[n] = 0;
    if (strncmp(target, "/memfd:dmem-", 12) == 0)
      total += proc_fd_bytes(pid, atoi(de->d_name));
  }
  closedir(d);
  return total;
}

static int demo_processes(const demo_opts *o)
{
  signal(SIGPIPE, SIG_IGN); /* a child gone is seen at its pipe, not by a signal */
  unsigned n = o->nimages ? (unsigned)o->nimages : o->guests;
  char dir[] = "/tmp/diffmem-demo.XXXXXX", sockbuf[64];
  const char *sock = o->connect;
  pid_t dpid = -1;
  if (!sock) {
    if (!mkdtemp(dir)) {
      fprintf(stderr, "diffmem demo: mkdtemp: %s\n", strerror(errno));
      return 1;
    }
    snprintf(sockbuf, sizeof sockbuf, "%s/sock", dir);
    sock = sockbuf;
  }
  child *c = calloc(n, sizeof *c);
  demo_figures fig;
  memset(&fig, 0, sizeof fig);
  int rc = 1, ok = 1;
  unsigned started = 0;
  if (!c)
    goto out;
  for (; started < n; started++) {
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0) {
      fprintf(stderr, "diffmem demo: pipe: %s\n", strerror(errno));
      goto out;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
      close(down[1]);
      close(up[0]);
      child_main(o, started, sock, down[0], up[1]);
    }
    close(down[0]);
    close(up[1]);
    c[started] = (child){pid, up[0], down[1], {0}};
    if (pid < 0) {
      fprintf(stderr, "diffmem demo: fork: %s\n", strerror(errno));
      goto out;
    }
  }
  uint64_t before = 0;
  for (unsigned i = 0; i < n; i++) {
    if (get_msg(c[i].rfd, &c[i].last) != 0 || c[i].last.type != C_READY)
      goto out; /* it said why */
    fig.pages += c[i].last.pages, fig.content += c[i].last.content;
    fig.data += c[i].last.data, before += c[i].last.memfd_bytes;
  }
  fig.n = n;
  char rate[32];
  /* All guest memory every 1.5 s, as the single-process demo scans. */
  snprintf(rate, sizeof rate, "%llu", (unsigned long long)(fig.pages / 15 + 1));
  char *args[] = {"--domain-by",
                  "one",
                  "--scan-ms",
                  "100",
                  "--scan-pages",
                  rate,
                  "--c4-passes",
                  "3",
                  o->secure ? "--secure" : NULL,
                  NULL,
                  NULL};
  if (o->no_cow)
    args[o->secure ? 9 : 8] = "--no-cow";
  if (!o->connect && (dpid = stat_daemon_start(sock, args)) < 0) {
    fprintf(stderr, "diffmem demo: diffmemd did not start (is it built or installed?)\n");
    goto out;
  }
  dmem_proto_vm_stats st[DMEM_PROTO_STATS_MAX + 1];
  size_t nst;
  pid_t server;
  if (stat_query(sock, st, 1, &nst, &server) != 0 || server <= 0)
    goto out;
  uint64_t base_anon = 0, cpu0 = st[0].cpu_ns;
  (void)fleet_pss_anon(&base_anon, server);
  uint64_t base_memfd = daemon_memfd_bytes(server);
  fig.before.memfd_bytes = before;
  for (unsigned i = 0; i < n; i++)
    if (write(c[i].wfd, "g", 1) != 1)
      goto out;
  if (o->progress)
    fprintf(stderr, "%u guest processes on diffmemd for %.0f s...", n, o->seconds);
  for (unsigned i = 0; i < n; i++) {
    if (get_msg(c[i].rfd, &c[i].last) != 0 || c[i].last.type != C_STOPPED)
      goto out;
    fig.t.secs = c[i].last.t.secs > fig.t.secs ? c[i].last.t.secs : fig.t.secs;
    fig.t.ops += c[i].last.t.ops;
    fig.t.vcpu_cpu_s += c[i].last.t.vcpu_cpu_s;
    fig.t.vcpu_run_s += c[i].last.t.vcpu_run_s;
  }
  /* After: every guest stopped, none verified yet. */
  for (unsigned i = 0; i < n; i++)
    fig.after.memfd_bytes += proc_fd_bytes(c[i].pid, c[i].last.memfd);
  uint64_t dm = daemon_memfd_bytes(server);
  fig.after.memfd_bytes += dm > base_memfd ? dm - base_memfd : 0;
  uint64_t anon = 0;
  (void)fleet_pss_anon(&anon, server);
  fig.after.anon_kb = anon > base_anon ? anon - base_anon : 0;
  if (stat_query(sock, st, DMEM_PROTO_STATS_MAX + 1, &nst, NULL) != 0)
    goto out;
  dmem_stats *es = &fig.es;
  es->zero = st[0].zero, es->shared = st[0].shared, es->patched = st[0].patched;
  es->compressed = st[0].compressed, es->swapped = st[0].swapped, es->faults = st[0].faults;
  es->bytes_saved = st[0].bytes_saved, es->errors = st[0].errors;
  fig.ks.cow_mapped = st[0].mapped; /* in the VMMs, by their agents */
  fig.t.other_cpu_s = (double)(st[0].cpu_ns - cpu0) / 1e9;
  /* Fault service time: the median of the VMs' medians, the worst p99. */
  double p50s[DMEM_PROTO_STATS_MAX];
  size_t np = 0;
  for (size_t k = 1; k < nst; k++) {
    p50s[np++] = (double)st[k].fault_p50_ns / 1e3;
    if ((double)st[k].fault_p99_ns / 1e3 > fig.p99_us)
      fig.p99_us = (double)st[k].fault_p99_ns / 1e3;
  }
  for (size_t a = 1; a < np; a++) /* a few entries: insertion sort */
    for (size_t b = a; b > 0 && p50s[b - 1] > p50s[b]; b--) {
      double t = p50s[b];
      p50s[b] = p50s[b - 1];
      p50s[b - 1] = t;
    }
  fig.p50_us = np ? p50s[np / 2] : 0;
  fig.max_us = fig.p99_us;
  if (o->progress)
    fprintf(stderr, "\r\033[Kverifying every page of %u guest%s...", n, n == 1 ? "" : "s");
  for (unsigned i = 0; i < n; i++)
    if (write(c[i].wfd, "v", 1) != 1)
      goto out;
  for (unsigned i = 0; i < n; i++) {
    if (get_msg(c[i].rfd, &c[i].last) != 0 || c[i].last.type != C_DONE) {
      ok = 0;
      continue;
    }
    fig.t.checked += c[i].last.t.checked;
    fig.t.mismatches += c[i].last.t.mismatches;
    fig.t.sum_bad += c[i].last.t.sum_bad;
    fig.t.unreplayed += c[i].last.t.unreplayed;
  }
  if (o->progress)
    fprintf(stderr, "\r\033[K");
  if (o->json)
    print_json(&fig, o);
  else
    print_text(&fig, o);
  rc = ok && fig.t.mismatches == 0 && fig.t.sum_bad == 0 && fig.t.unreplayed == 0 ? 0 : 1;
  fflush(stdout);
out:
  for (unsigned i = 0; c && i < started; i++) {
    if (c[i].pid <= 0)
      continue;
    (void)write(c[i].wfd, "q", 1);
    close(c[i].wfd);
    close(c[i].rfd);
    int status;
    if (waitpid(c[i].pid, &status, 0) == c[i].pid && (!WIFEXITED(status) || WEXITSTATUS(status)))
      rc = 1;
  }
  free(c);
  if (dpid > 0) {
    kill(dpid, SIGTERM);
    int status;
    if (waitpid(dpid, &status, 0) != dpid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "diffmem demo: diffmemd did not stop cleanly\n");
      rc = 1;
    }
  }
  if (!o->connect)
    rmdir(dir);
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
  enum {
    O_JSON = 256,
    O_NO_PROGRESS,
    O_READ_HEAVY,
    O_NO_COW,
    O_SECURE,
    O_PROCESSES,
    O_CONNECT,
    O_SECONDS,
    O_GUESTS,
    O_GUEST_MIB
  };
  static const struct option opts[] = {{"json", no_argument, NULL, O_JSON},
                                       {"no-progress", no_argument, NULL, O_NO_PROGRESS},
                                       {"read-heavy", no_argument, NULL, O_READ_HEAVY},
                                       {"no-cow", no_argument, NULL, O_NO_COW},
                                       {"secure", no_argument, NULL, O_SECURE},
                                       {"processes", no_argument, NULL, O_PROCESSES},
                                       {"connect", required_argument, NULL, O_CONNECT},
                                       {"seconds", required_argument, NULL, O_SECONDS},
                                       {"guests", required_argument, NULL, O_GUESTS},
                                       {"guest-mib", required_argument, NULL, O_GUEST_MIB},
                                       {NULL, 0, NULL, 0}};
  optind = 0;
  for (int c; (c = cmd_getopt(&dmem_cmd_demo, argc, argv, opts)) != -1;) {
    if (c == '?') {
      goto out;
    } else if (c == O_JSON) {
      o.json = 1;
    } else if (c == O_NO_PROGRESS) {
      o.progress = 0;
    } else if (c == O_READ_HEAVY) {
      o.read_heavy = 1;
    } else if (c == O_NO_COW) {
      o.no_cow = 1;
    } else if (c == O_SECURE) {
      o.secure = 1;
    } else if (c == O_PROCESSES) {
      o.processes = 1;
    } else if (c == O_CONNECT) {
      o.connect = optarg;
      o.processes = 1;
    } else if (c == O_SECONDS) {
      if (parse_uint(optarg, 1, 86400, &v) != 0) {
        cmd_usage_error(&dmem_cmd_demo, "--seconds takes a number from 1 to 86400");
        goto out;
      }
      o.seconds = v;
    } else if (c == O_GUESTS) {
      if (parse_uint(optarg, 1, FLEET_MAX_GUESTS, &o.guests) != 0) {
        cmd_usage_error(&dmem_cmd_demo, "--guests takes a number from 1 to %d", FLEET_MAX_GUESTS);
        goto out;
      }
    } else if (c == O_GUEST_MIB) {
      if (parse_uint(optarg, 4, 2048, &o.guest_mib) != 0) {
        cmd_usage_error(&dmem_cmd_demo, "--guest-mib takes a number from 4 to 2048");
        goto out;
      }
    }
  }
  for (int i = optind; i < argc; i++)
    o.images[o.nimages++] = argv[i];
  if (fleet_count_guests(&o.guests, o.nimages, "diffmem demo") == 0)
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
             "                    [--read-heavy] [--no-cow] [--secure] [--no-progress]\n"
             "                    [--processes | --connect SOCKET] [IMAGE...]\n"
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
             "--read-heavy widens the hot window to a quarter of the content (up to\n"
             "16 MiB), as a running system reads its kernel and libraries, so that\n"
             "many evicted shared pages are read again. A read of an evicted shared\n"
             "page maps the engine's frame copy-on-write (later reads need no fault);\n"
             "--no-cow copies it instead, to compare.\n"
             "\n"
             "--secure runs the engine in secure mode (README, \"Security\"): only idle\n"
             "pages are candidates, each is evicted onto a frame whether or not\n"
             "another guest holds the same page, and nothing is patched or mapped.\n"
             "\n"
             "--processes runs each guest in a VMM process of its own, its RAM a\n"
             "sealed memfd handed to one diffmemd (diffmemd(8)) that the demo starts on\n"
             "a temporary socket at the same scan rate; --connect SOCKET uses a running\n"
             "one instead. The figures are the same, by the kernel's accounting summed\n"
             "over the processes: the guests' memfds, the daemon's store and journal\n"
             "memfds, and the daemon's anonymous memory above what it held before the\n"
             "guests came; engine_cpu_s is the daemon's CPU. Shared pages are mapped\n"
             "copy-on-write in each VMM by the client's agent (--no-cow: copied);\n"
             "cow_mapped_pages is the daemon's count, and the other VMA figures are 0.\n"
             "\n"
             "Figures (text, or one JSON object on stdout with --json):\n"
             "  guests, guest_pages   guests and their pages (content + data + control).\n"
             "  rss_before_kb, rss_after_kb\n"
             "                        host memory holding the guests, by the kernel's\n"
             "                        accounting: the allocated blocks (fstat) of the\n"
             "                        guests' memfds and of the engine's frames and\n"
             "                        blobs (patches, compressed pages) memfds plus this\n"
             "                        process's anonymous memory (Pss_Anon in\n"
             "                        /proc/self/smaps_rollup, above what it held before\n"
             "                        the guests were made: the engine's metadata, this\n"
             "                        program's heap).\n"
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
             "  cow_mapped_pages      pages mapping a frame copy-on-write at the end;\n"
             "                        cow_maps, all mappings made; cow_fallbacks, reads\n"
             "                        copied because the VMA budget was spent.\n"
             "  vmas_used, vmas_max, vma_budget\n"
             "                        VMAs the mappings add at the end and at most over\n"
             "                        every half-second sample, and their budget (summed\n"
             "                        over the guests; the run fails if a sample passes it).\n"
             "  shared_read_faults, shared_write_faults\n"
             "                        faults on evicted shared pages, by reads and writes.\n"
             "  secure                whether the engine ran in secure mode (--secure);\n"
             "                        cow is false then.\n"
             "  processes             whether the guests ran in processes of their own.\n"
             "\n"
             "The progress line on stderr (when it is a terminal; off with\n"
             "--no-progress) shows elapsed time, host memory and saved %, the\n"
             "breakdown and faults, twice a second.\n"
             "\n"
             "Exit status 0 when every page verified; 1 when KVM is not available\n"
             "here, a guest or the engine failed, or any page or sum mismatched.\n",
    .run = run,
};
