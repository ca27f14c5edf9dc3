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
#include <sys/ioctl.h>
#include <unistd.h>

#include <diffmem/kvm.h>

#include "fleet.h"

#define PAGE DMEM_PAGE_SIZE

typedef struct demo_opts {
  int json, progress, read_heavy, no_cow, secure;
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
  uint64_t vmas_max;    /* the most VMAs mapping added, over every sample */
  int vmas_over_budget; /* a sample saw more than the budget */
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
  dmem_stats s;
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

static void print_text(const demo_figures *f, const fleet *fl, const demo_opts *o)
{
  uint64_t pages, content, data;
  fleet_pages(fl, &pages, &content, &data);
  unsigned n = fl->n;
  const dmem_stats *s = &f->es;
  const fleet_totals *t = &f->t;
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
         o->no_cow || o->secure ? "off" : "on", o->secure ? "on" : "off");
  printf("  copy-on-write   %llu pages mapped now (%llu maps, %llu copied past the budget); "
         "VMAs %llu now, %llu at most, budget %llu\n",
         (unsigned long long)f->ks.cow_mapped, (unsigned long long)f->ks.cow_maps,
         (unsigned long long)f->ks.cow_fallbacks, (unsigned long long)f->ks.vmas_used,
         (unsigned long long)f->vmas_max, (unsigned long long)f->ks.vma_budget);
  printf("  shared faults   %llu on reads, %llu on writes\n",
         (unsigned long long)s->shared_read_faults, (unsigned long long)s->shared_write_faults);
  printf("  faults          %llu served; service time p50 %.0f us, p99 %.0f us, max %.0f us\n",
         (unsigned long long)s->faults, dmem_kvm_stats_percentile_us(&f->ks, 0.5),
         dmem_kvm_stats_percentile_us(&f->ks, 0.99), (double)f->ks.lat_max_ns / 1000);
  printf("  guest work      %.1f M operations (%.2f M/s per guest), %llu scans\n",
         (double)t->ops / 1e6, t->secs > 0 ? (double)t->ops / 1e6 / t->secs / n : 0.0,
         (unsigned long long)t->scans);
  printf("  verify          %llu mismatching pages of %llu checked%s\n",
         (unsigned long long)t->mismatches, (unsigned long long)t->checked,
         t->sum_bad ? "; some guest read wrong data (sum)" : "; every guest's reads replayed");
  printf("  engine CPU      %.2f s scanning (%.1f%% of a core); fault threads %.2f s; "
         "vCPUs %.2f s\n",
         t->scan_cpu_s, t->secs > 0 ? 100.0 * t->scan_cpu_s / t->secs : 0.0, t->other_cpu_s,
         t->vcpu_cpu_s);
}

static void print_json(const demo_figures *f, const fleet *fl, const demo_opts *o)
{
  uint64_t pages, content, data;
  fleet_pages(fl, &pages, &content, &data);
  const dmem_stats *s = &f->es;
  const fleet_totals *t = &f->t;
  printf("{\"guests\":%u,\"guest_pages\":%llu,\"rss_before_kb\":%llu,\"rss_after_kb\":%llu,"
         "\"saved_pct\":%.2f,\"breakdown\":{\"zero\":%llu,\"shared\":%llu,\"patched\":%llu,"
         "\"compressed\":%llu,\"swapped\":%llu},\"faults\":%llu,"
         "\"fault_us\":{\"p50\":%.1f,\"p99\":%.1f},\"verify_mismatches\":%llu,"
         "\"engine_cpu_s\":%.3f,",
         fl->n, (unsigned long long)pages, (unsigned long long)fleet_mem_kb(&f->before),
         (unsigned long long)fleet_mem_kb(&f->after), fleet_saved_pct(&f->before, &f->after),
         (unsigned long long)s->zero, (unsigned long long)s->shared, (unsigned long long)s->patched,
         (unsigned long long)s->compressed, (unsigned long long)s->swapped,
         (unsigned long long)s->faults, dmem_kvm_stats_percentile_us(&f->ks, 0.5),
         dmem_kvm_stats_percentile_us(&f->ks, 0.99), (unsigned long long)t->mismatches,
         t->scan_cpu_s);
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
         "\"shared_read_faults\":%llu,\"shared_write_faults\":%llu,\"secure\":%s}\n",
         o->read_heavy ? "true" : "false", o->no_cow || o->secure ? "false" : "true",
         (unsigned long long)f->ks.cow_mapped, (unsigned long long)f->ks.cow_maps,
         (unsigned long long)f->ks.cow_fallbacks, (unsigned long long)f->ks.vmas_used,
         (unsigned long long)f->vmas_max, (unsigned long long)f->ks.vma_budget,
         (unsigned long long)s->shared_read_faults, (unsigned long long)s->shared_write_faults,
         o->secure ? "true" : "false");
}

static int demo(const demo_opts *o)
{
  dmem_kvm_caps caps;
  if (dmem_kvm_probe(&caps) != 0) {
    fprintf(stderr, "diffmem demo: KVM is not available here: %s\n", caps.reason);
    return 1;
  }
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
  if (fleet_sample(&fig.after, f) != 0 || dmem_engine_stats(&fig.es, f->engine) != 0) {
    fprintf(stderr, "diffmem demo: cannot read the figures\n");
    goto out;
  }
  fleet_kvm_stats(&fig.ks, f);
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
    print_json(&fig, f, o);
  else
    print_text(&fig, f, o);
  if (fig.es.errors || fig.ks.faults_failed)
    fprintf(stderr, "diffmem demo: note: %llu engine errors, %llu failed faults (%s)\n",
            (unsigned long long)fig.es.errors, (unsigned long long)fig.ks.faults_failed,
            dmem_engine_errmsg(f->engine));
  rc = ok && fig.t.mismatches == 0 && fig.t.sum_bad == 0 && fig.t.unreplayed == 0 ? 0 : 1;
out:
  fleet_destroy(f);
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
    } else if (strcmp(a, "--read-heavy") == 0) {
      o.read_heavy = 1;
    } else if (strcmp(a, "--no-cow") == 0) {
      o.no_cow = 1;
    } else if (strcmp(a, "--secure") == 0) {
      o.secure = 1;
    } else if (strcmp(a, "--seconds") == 0 && i + 1 < argc) {
      if (parse_uint(argv[++i], 1, 86400, &v) != 0) {
        cmd_usage_error(&dmem_cmd_demo, "--seconds takes a number from 1 to 86400");
        goto out;
      }
      o.seconds = v;
    } else if (strcmp(a, "--guests") == 0 && i + 1 < argc) {
      if (parse_uint(argv[++i], 1, FLEET_MAX_GUESTS, &o.guests) != 0) {
        cmd_usage_error(&dmem_cmd_demo, "--guests takes a number from 1 to %d", FLEET_MAX_GUESTS);
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
             "                    [IMAGE...]\n"
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
             "\n"
             "The progress line on stderr (when it is a terminal; off with\n"
             "--no-progress) shows elapsed time, host memory and saved %, the\n"
             "breakdown and faults, twice a second.\n"
             "\n"
             "Exit status 0 when every page verified; 1 when KVM is not available\n"
             "here, a guest or the engine failed, or any page or sum mismatched.\n",
    .run = run,
};
