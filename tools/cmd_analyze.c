/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem analyze: what sharing, patching and compression would save on
 * the given memory (raw images, ELF cores, live processes, libvirt
 * domains; by default the private writable memory of this machine's
 * processes). The study itself is tools/analyze.c; this file reads the
 * inputs and writes the reports. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <diffmem/codec.h>

#include "analyze.h"
#include "cmd.h"
#include "memsrc.h"
#include "progress.h"
#include "report.h"

static const char usage[] =
    "usage: diffmem analyze [OPTIONS] [INPUT...]\n"
    "       diffmem analyze [OPTIONS] --connect URI [--domain NAME...]\n"
    "\n"
    "Reports what the Difference Engine would save on the given memory, as in\n"
    "Table 1 of the paper: % saved by sharing identical pages, then with patching\n"
    "similar pages, then with compression as well; with zero pages counted and\n"
    "without; sharing split into duplicates within one input and across inputs.\n"
    "It uses the engine's own page index, similarity detector, delta encoder and\n"
    "codecs, with the engine's defaults.\n"
    "\n"
    "Inputs:\n"
    "  FILE            an ELF core (QEMU dump-guest-memory, virsh dump --memory-only,\n"
    "                  gcore), or else a raw image read as 4 KiB pages\n"
    "  pid:N, pid:self the resident pages of a process's readable mappings\n"
    "  (none)          the resident private writable memory of every process on\n"
    "                  this machine, one input per process, and every memfd a\n"
    "                  process maps shared (a VMM's guest RAM, such as QEMU's\n"
    "                  memory-backend-memfd with share=on), one input each\n"
    "\n"
    "Options:\n"
    "  --connect URI   libvirt connection (e.g. qemu:///system): the domains named\n"
    "                  by --domain, or without it every running domain there\n"
    "  --domain NAME   a running libvirt domain: its guest-physical memory, read\n"
    "                  with virDomainMemoryPeek\n"
    "  --writable      pid inputs: writable mappings only\n"
    "  --raw           read files as raw images even when they are ELF\n"
    "  --json          JSON on stdout instead of the table\n"
    "  --svg FILE      also write a stacked-bar chart of the savings to FILE\n"
    "  --rows N        at most N inputs in the table and chart (default 20); the\n"
    "                  rest are added up in one row (JSON lists every input)\n"
    "  --codec NAME    compression codec (default: best of wkdm and lzo, or of wkdm\n"
    "                  and lz4 in a build without lzo, as the engine)\n"
    "  --detector KIND similarity detector: hash (default, (2,1)), content, or none\n"
    "  --seed N        hash and detector key (default fixed, so runs repeat)\n"
    "  --no-progress   no progress bar (there is none when stderr is not a terminal)\n"
    "\n"
    "Definitions: pages saved by sharing = pages - distinct contents (a zero page\n"
    "is a content like any other). A page is patched when its patch against a\n"
    "reference (a shared content or an unpatched unique page) is under half a\n"
    "page. Compression covers the pages neither shared nor patched, and counts a\n"
    "page when its output is under half a page.\n";

typedef struct an_opts {
  analyze_options study;
  int json, force_raw, progress, writable;
  size_t rows;
  const char *svg, *uri;
  const char **domains;
  size_t ndomains;
} an_opts;

enum { BATCH = 1024 }; /* pages per read: 4 MiB, one libvirt peek */

#if DMEM_HAVE_LIBVIRT
#define DMEM_HAVE_LIBVIRT_INPUT 1
#else
#define DMEM_HAVE_LIBVIRT_INPUT 0
#endif

/* Feeds one source into the study. Returns 0, or -1 after the source's
 * error is in src->err. */
static int feed(analyze *a, memsrc *src, progress *pr, uint8_t *buf)
{
  int rc = analyze_begin_input(a, src->name, src->kind);
  if (rc) {
    snprintf(src->err, sizeof src->err, "%s: %s", src->name, dmem_strerror(rc));
    return -1;
  }
  long n;
  while ((n = memsrc_read(src, buf, BATCH)) > 0) {
    for (long i = 0; i < n; i++) {
      rc = analyze_add_page(a, buf + (size_t)i * DMEM_PAGE_SIZE);
      if (rc) {
        snprintf(src->err, sizeof src->err, "%s: %s", src->name, dmem_strerror(rc));
        return -1;
      }
    }
    progress_show(pr, src->name, src->done, src->expected, 1);
  }
  analyze_note_unreadable(a, src->skipped);
  if (src->pid > 0) {
    long k = memsrc_ksm_merging_pages(src->pid);
    if (k > 0)
      analyze_note_ksm(a, (uint64_t)k);
  }
  return n < 0 ? -1 : 0;
}

static int parse_pid(pid_t *out, const char *spec)
{
  const char *s = spec + 4;
  if (strcmp(s, "self") == 0) {
    *out = getpid();
    return 0;
  }
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v <= 0 || v > 0x7fffffff)
    return -1;
  *out = (pid_t)v;
  return 0;
}

static int open_input(memsrc **out, const char *spec, const an_opts *o)
{
  char err[768];
  int rc;
  if (strncmp(spec, "pid:", 4) == 0) {
    pid_t pid;
    if (parse_pid(&pid, spec) != 0) {
      fprintf(stderr, "diffmem analyze: %s: not a process id (pid:N or pid:self)\n", spec);
      return -1;
    }
    memsrc_pid_options po = {o->writable, 0, 0, 0};
    rc = memsrc_open_pid(out, pid, spec, &po, err, sizeof err);
  } else {
    rc = memsrc_open_file(out, spec, o->force_raw, err, sizeof err);
  }
  if (rc)
    fprintf(stderr, "diffmem analyze: %s\n", err);
  return rc;
}

/* The default input: every process's resident private writable pages. A
 * process that exits or cannot be read is left out and counted. */
static int feed_processes(analyze *a, progress *pr, uint8_t *buf)
{
  pid_t *pids;
  size_t n, left_out = 0;
  if (memsrc_list_processes(&pids, &n) != 0) {
    fprintf(stderr, "diffmem analyze: cannot list the processes in /proc: %s\n", strerror(errno));
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    char name[256], comm[64], err[768];
    memsrc_process_comm(comm, sizeof comm, pids[i]);
    snprintf(name, sizeof name, "pid:%d (%s)", (int)pids[i], comm);
    memsrc_pid_options po = {1, 1, 0, 0};
    memsrc *src;
    if (memsrc_open_pid(&src, pids[i], name, &po, err, sizeof err) != 0) {
      left_out++;
      continue;
    }
    progress_show(pr, name, i, n, 0);
    if (feed(a, src, pr, buf) != 0)
      left_out++; /* it exited while being read: what was read stays */
    memsrc_close(src);
  }
  /* Guest RAM mapped shared (a memfd), which no process's private memory
   * holds: one input each, however many processes map it. */
  memsrc_memfd *mf;
  size_t nmf, mf_left_out = 0;
  int listed = memsrc_list_memfds(&mf, &nmf, pids, n);
  free(pids);
  if (listed != 0) {
    fprintf(stderr, "diffmem analyze: cannot list the shared memfds: out of memory\n");
    return -1;
  }
  for (size_t i = 0; i < nmf; i++) {
    char name[256], comm[64], err[768];
    memsrc_process_comm(comm, sizeof comm, mf[i].pid);
    snprintf(name, sizeof name, "memfd:%s (pid %d, %s)", mf[i].name, (int)mf[i].pid, comm);
    memsrc *src;
    if (memsrc_open_memfd(&src, &mf[i], name, err, sizeof err) != 0) {
      progress_clear(pr);
      fprintf(stderr, "diffmem analyze: %s\n", err);
      mf_left_out++;
      continue;
    }
    progress_show(pr, name, i, nmf, 0);
    if (feed(a, src, pr, buf) != 0) {
      progress_clear(pr);
      fprintf(stderr, "diffmem analyze: %s\n", src->err);
      mf_left_out++;
    }
    memsrc_close(src);
  }
  free(mf);
  progress_clear(pr);
  if (left_out)
    fprintf(stderr,
            "diffmem analyze: %zu of %zu processes exited or could not be read, in part "
            "or whole\n",
            left_out, n);
  if (mf_left_out)
    fprintf(stderr, "diffmem analyze: %zu of %zu shared memfds could not be read\n", mf_left_out,
            nmf);
  if (n == left_out) {
    fprintf(stderr, "diffmem analyze: no process could be read (run as root to read other "
                    "users' processes)\n");
    return -1;
  }
  return 0;
}

static void on_finish(uint64_t done, uint64_t total, void *ud)
{
  progress_show(ud, "patching and compressing", done, total, 0);
}

static int write_reports(const analyze_result *r, const an_opts *o)
{
  if (o->json)
    report_json(stdout, r);
  else
    report_table(stdout, r, o->rows);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "diffmem analyze: writing the report failed: %s\n", strerror(errno));
    return 1;
  }
  if (!o->svg)
    return 0;
  /* Into a new file beside it (O_EXCL, mode 0600 before the umask), renamed
   * over the name at the end: a symlink planted at that name is replaced,
   * never followed, and no existing file is truncated halfway. */
  char tmp[4096];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.XXXXXX", o->svg) >= sizeof tmp) {
    fprintf(stderr, "diffmem analyze: %s: name too long\n", o->svg);
    return 1;
  }
  int fd = mkstemp(tmp);
  mode_t mask = umask(0); /* a report, readable as any file the user makes */
  umask(mask);
  if (fd >= 0)
    (void)fchmod(fd, 0666 & ~mask);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) {
    fprintf(stderr, "diffmem analyze: cannot create %s: %s\n", tmp, strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(tmp);
    }
    return 1;
  }
  report_svg(f, r, o->rows);
  int bad = ferror(f) | (fclose(f) != 0);
  if (bad || rename(tmp, o->svg) != 0) {
    fprintf(stderr, "diffmem analyze: writing %s failed: %s\n", o->svg, strerror(errno));
    unlink(tmp);
    return 1;
  }
  return 0;
}

static int run_study(char **inputs, size_t ninputs, const an_opts *o)
{
  size_t nsrc = ninputs + o->ndomains;
  memsrc **srcs = calloc(nsrc + 1, sizeof *srcs);
  uint8_t *buf = malloc((size_t)BATCH * DMEM_PAGE_SIZE);
  analyze *a = NULL;
  analyze_result r;
  memset(&r, 0, sizeof r);
  int status = 1, rc;
  progress pr;
  progress_init(&pr, o->progress);
  if (!srcs || !buf) {
    fprintf(stderr, "diffmem analyze: out of memory\n");
    goto out;
  }
  /* Open every input first, so that a bad one fails before a long run. */
  for (size_t i = 0; i < ninputs; i++)
    if (open_input(&srcs[i], inputs[i], o) != 0)
      goto out;
  for (size_t i = 0; i < o->ndomains; i++) {
    char err[768];
    if (memsrc_open_libvirt(&srcs[ninputs + i], o->uri, o->domains[i], err, sizeof err) != 0) {
      fprintf(stderr, "diffmem analyze: %s\n", err);
      goto out;
    }
  }
  rc = analyze_create(&a, &o->study);
  if (rc) {
    fprintf(stderr, "diffmem analyze: %s\n", dmem_strerror(rc));
    goto out;
  }
  if (nsrc == 0 && feed_processes(a, &pr, buf) != 0)
    goto out;
  for (size_t i = 0; i < nsrc; i++) {
    if (feed(a, srcs[i], &pr, buf) != 0) {
      progress_clear(&pr);
      fprintf(stderr, "diffmem analyze: %s\n", srcs[i]->err);
      goto out;
    }
  }
  rc = analyze_finish(&r, a, on_finish, &pr);
  progress_clear(&pr);
  memsrc_ksm_state(&r.ksm.present, &r.ksm.run, &r.ksm.pages_shared, &r.ksm.pages_sharing,
                   &r.ksm.merging_pages);
  if (rc) {
    fprintf(stderr, "diffmem analyze: %s\n", dmem_strerror(rc));
    goto out;
  }
  /* An empty input (an empty file, a core without a loadable segment or
   * whose segments are all empty) adds nothing: say so; with nothing at
   * all to show, fail rather than print a table of zeros. */
  for (size_t i = 0; i < r.ninputs; i++)
    if (r.inputs[i].all.pages == 0)
      fprintf(stderr, "diffmem analyze: %s: no pages to read (empty, or no loadable segment)\n",
              r.inputs[i].name);
  if (r.total.all.pages == 0) {
    fprintf(stderr, "diffmem analyze: no pages in any input: nothing to analyze\n");
    goto out;
  }
  status = write_reports(&r, o);
out:
  progress_clear(&pr);
  for (size_t i = 0; srcs && i < nsrc; i++)
    memsrc_close(srcs[i]);
  free(srcs);
  free(buf);
  analyze_destroy(a);
  analyze_result_free(&r);
  return status;
}

static int parse_detector(an_opts *o, const char *v)
{
  if (strcmp(v, "none") == 0)
    o->study.simdet_kind = 0;
  else if (strcmp(v, "hash") == 0)
    o->study.simdet_kind = DMEM_SIMDET_HASH;
  else if (strcmp(v, "content") == 0)
    o->study.simdet_kind = DMEM_SIMDET_CONTENT;
  else
    return -1;
  return 0;
}

static int run(int argc, char **argv)
{
  an_opts o = {ANALYZE_OPTIONS_INIT, 0, 0, 1, 0, 20, NULL, NULL, NULL, 0};
  char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
  const char **domains = calloc((size_t)argc + 1, sizeof *domains);
  char **listed = NULL; /* --connect without --domain: the running ones */
  size_t nlisted = 0;
  size_t ninputs = 0;
  int status = EXIT_USAGE;
  if (!inputs || !domains) {
    fprintf(stderr, "diffmem analyze: out of memory\n");
    status = 1;
    goto out;
  }
  o.domains = domains;
  enum {
    O_JSON = 256,
    O_RAW,
    O_WRITABLE,
    O_NO_PROGRESS,
    O_CONNECT,
    O_DOMAIN,
    O_SVG,
    O_ROWS,
    O_CODEC,
    O_DETECTOR,
    O_SEED
  };
  static const struct option opts[] = {{"json", no_argument, NULL, O_JSON},
                                       {"raw", no_argument, NULL, O_RAW},
                                       {"writable", no_argument, NULL, O_WRITABLE},
                                       {"no-progress", no_argument, NULL, O_NO_PROGRESS},
                                       {"connect", required_argument, NULL, O_CONNECT},
                                       {"domain", required_argument, NULL, O_DOMAIN},
                                       {"svg", required_argument, NULL, O_SVG},
                                       {"rows", required_argument, NULL, O_ROWS},
                                       {"codec", required_argument, NULL, O_CODEC},
                                       {"detector", required_argument, NULL, O_DETECTOR},
                                       {"seed", required_argument, NULL, O_SEED},
                                       {NULL, 0, NULL, 0}};
  optind = 0;
  for (int c; (c = cmd_getopt(&dmem_cmd_analyze, argc, argv, opts)) != -1;) {
    const char *val = optarg;
    if (c == '?')
      goto out;
    if (c == O_JSON)
      o.json = 1;
    else if (c == O_RAW)
      o.force_raw = 1;
    else if (c == O_WRITABLE)
      o.writable = 1;
    else if (c == O_NO_PROGRESS)
      o.progress = 0;
    else if (c == O_CONNECT)
      o.uri = val;
    else if (c == O_DOMAIN)
      domains[o.ndomains++] = val;
    else if (c == O_SVG)
      o.svg = val;
    else if (c == O_ROWS) {
      char *end;
      long v = strtol(val, &end, 10);
      if (*end || v < 2 || v > 100000) {
        cmd_usage_error(&dmem_cmd_analyze, "--rows needs a number from 2 up");
        goto out;
      }
      o.rows = (size_t)v;
    } else if (c == O_CODEC) {
      int rc = dmem_codec_from_name(&o.study.codec, val);
      if (rc) {
        cmd_usage_error(&dmem_cmd_analyze, "codec '%s': %s", val, dmem_strerror(rc));
        goto out;
      }
      o.study.codec_best_mask = 0;
    } else if (c == O_DETECTOR) {
      if (parse_detector(&o, val) != 0) {
        cmd_usage_error(&dmem_cmd_analyze, "unknown detector '%s' (hash, content, none)", val);
        goto out;
      }
    } else if (c == O_SEED) {
      char *end;
      o.study.seed = strtoull(val, &end, 0);
      if (*end || !o.study.seed || val[0] == '-') { /* strtoull takes "-1" as 2^64 - 1 */
        cmd_usage_error(&dmem_cmd_analyze, "--seed needs a non-zero number");
        goto out;
      }
    }
  }
  for (int i = optind; i < argc; i++)
    inputs[ninputs++] = argv[i];
  if (o.uri && !DMEM_HAVE_LIBVIRT_INPUT) {
    fprintf(stderr,
            "diffmem analyze: --connect %s: this diffmem was built without libvirt: "
            "install libvirt-dev and run configure again\n",
            o.uri);
    status = 1;
    goto out;
  }
  if (o.uri && !o.ndomains) {
    /* Every running domain there, one input each. */
    char err[768];
    if (memsrc_libvirt_domains(&listed, &nlisted, o.uri, err, sizeof err) != 0) {
      fprintf(stderr, "diffmem analyze: --connect %s: %s\n", o.uri, err);
      status = 1;
      goto out;
    }
    if (nlisted == 0) {
      fprintf(stderr, "diffmem analyze: --connect %s: no running domain there\n", o.uri);
      status = 1;
      goto out;
    }
    o.domains = (const char **)listed;
    o.ndomains = nlisted;
  }
  status = run_study(inputs, ninputs, &o);
out:
  for (size_t i = 0; i < nlisted; i++)
    free(listed[i]);
  free(listed);
  free(inputs);
  free(domains);
  return status;
}

const dmem_cmd dmem_cmd_analyze = {"analyze", "what sharing, patching and compression would save",
                                   usage, run};
