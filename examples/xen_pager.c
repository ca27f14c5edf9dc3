/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: CC0-1.0 */
/* xen_pager: how a Xen toolstack daemon uses libdiffmem's Xen adapter.
 *
 * It takes over paging for one or more HVM guests (domain ids on the
 * command line), attaches them all to one engine so that identical pages
 * of different guests are kept once, runs the engine's thread and the
 * adapters' ring threads, prints the savings every few seconds, and on
 * SIGINT or SIGTERM puts every page back and lets go.
 *
 * Build against an installed libdiffmem:
 *   cc xen_pager.c $(pkg-config --cflags --libs libdiffmem-xen) -o xen_pager
 * Run in dom0, as root, for HVM guests with HAP whose toolstack set up the
 * paging ring page (HVM_PARAM_PAGING_RING_PFN), with no other pager:
 *   ./xen_pager [-s SECONDS] [-n] DOMID...
 *   -s  run this long, then stop (default: until a signal)
 *   -n  no sharing in Xen's p2m (shared pages are paged out instead)
 * Without Xen it says so and exits with status 2, for example:
 *   xen_pager: dom1: cannot open /dev/xen/privcmd: No such file or directory (...)
 *
 * What a daemon does, and all this file does:
 *  1. dmem_xen_sources_create(): one table of sharing sources for the
 *     engine's guests, so that Xen shares pages across them;
 *     dmem_xen_guest_create() for each guest, given that table: checks HVM
 *     with HAP, maps the paging ring, enables paging and log-dirty (and
 *     sharing);
 *  2. one engine; dmem_xen_guest_attach() each guest to it;
 *  3. dmem_xen_guest_start() on each adapter (or poll dmem_xen_guest_fd() in the
 *     daemon's own event loop and call dmem_xen_guest_poll()), and
 *     dmem_engine_start();
 *  4. at the end: dmem_engine_stop(), dmem_xen_guest_detach() (every page comes
 *     back), dmem_xen_guest_destroy(), dmem_engine_destroy().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <diffmem/diffmem.h>
#include <diffmem/xen.h>

#define MAXDOM 16

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
  (void)sig;
  stop = 1;
}

static void usage(FILE *f)
{
  fprintf(f, "usage: xen_pager [-s SECONDS] [-n] DOMID...\n");
}

int main(int argc, char **argv)
{
  long seconds = -1;
  int share = 1, opt;
  while ((opt = getopt(argc, argv, "s:nh")) != -1) {
    switch (opt) {
    case 's':
      seconds = strtol(optarg, NULL, 10);
      break;
    case 'n':
      share = 0;
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 1;
    }
  }
  int ndom = argc - optind;
  if (ndom < 1 || ndom > MAXDOM) {
    usage(stderr);
    return 1;
  }
  uint32_t domid[MAXDOM];
  for (int i = 0; i < ndom; i++) {
    char *end;
    unsigned long d = strtoul(argv[optind + i], &end, 10);
    if (*end || end == argv[optind + i] || d == 0 || d > 0x7fef) {
      fprintf(stderr, "xen_pager: %s: not a guest domain id\n", argv[optind + i]);
      return 1;
    }
    domid[i] = (uint32_t)d;
  }

  dmem_xen_guest *x[MAXDOM] = {0};
  dmem_vm *vm[MAXDOM] = {0};
  int status = 0;
  /* The guests of one engine find each other's pages for Xen to share
   * through one table; each guest keeps a reference to it. */
  dmem_xen_sources *sources = NULL;
  if (share && dmem_xen_sources_create(&sources, NULL) != 0) {
    fprintf(stderr, "xen_pager: out of memory\n");
    return 1;
  }
  for (int i = 0; i < ndom; i++) {
    dmem_xen_guest_options o = DMEM_XEN_GUEST_OPTIONS_INIT;
    o.domid = domid[i];
    o.share = share;
    o.sources = sources;
    char err[256];
    int rc = dmem_xen_guest_create(&x[i], &o, err, sizeof err);
    if (rc) {
      fprintf(stderr, "xen_pager: dom%u: %s\n", (unsigned)domid[i],
              err[0] ? err : dmem_strerror(rc));
      status = rc == DMEM_ENOTSUP ? 2 : 1;
      goto out;
    }
  }
  dmem_xen_sources_destroy(sources); /* the guests hold it now */
  sources = NULL;

  dmem_engine *e = NULL;
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.map_shared = share;
  int rc = dmem_engine_create(&e, &eo);
  if (rc) {
    fprintf(stderr, "xen_pager: engine: %s\n", dmem_strerror(rc));
    status = 1;
    goto out;
  }
  for (int i = 0; i < ndom; i++) {
    char name[32];
    snprintf(name, sizeof name, "dom%u", (unsigned)domid[i]);
    rc = dmem_xen_guest_attach(&vm[i], e, x[i], name);
    if (rc == 0)
      rc = dmem_xen_guest_start(x[i]);
    if (rc) {
      fprintf(stderr, "xen_pager: %s: %s\n", name, dmem_strerror(rc));
      status = 1;
      goto detach;
    }
  }
  rc = dmem_engine_start(e, 100, 4096);
  if (rc) {
    fprintf(stderr, "xen_pager: engine thread: %s\n", dmem_strerror(rc));
    status = 1;
    goto detach;
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  time_t t0 = time(NULL);
  while (!stop && (seconds < 0 || time(NULL) - t0 < seconds)) {
    sleep(5);
    dmem_stats st = DMEM_STATS_INIT;
    dmem_engine_stats(&st, e);
    printf("pages %llu: zero %llu shared %llu mapped %llu patched %llu compressed %llu; "
           "saved %.1f MiB; faults %llu\n",
           (unsigned long long)st.pages, (unsigned long long)st.zero, (unsigned long long)st.shared,
           (unsigned long long)st.mapped, (unsigned long long)st.patched,
           (unsigned long long)st.compressed, (double)st.bytes_saved / 1048576.0,
           (unsigned long long)st.faults);
    fflush(stdout);
  }
  dmem_engine_stop(e);

detach:
  for (int i = 0; i < ndom; i++) {
    if (!vm[i])
      continue;
    /* The ring thread keeps serving while the pages come back. */
    rc = dmem_xen_guest_detach(x[i]);
    if (rc) {
      fprintf(stderr, "xen_pager: dom%u: detach: %s: %s\n", (unsigned)domid[i], dmem_strerror(rc),
              dmem_xen_guest_errmsg(x[i]));
      status = 1;
    }
  }
  dmem_engine_destroy(e);
out:
  for (int i = 0; i < ndom; i++)
    dmem_xen_guest_destroy(x[i]);
  dmem_xen_sources_destroy(sources);
  return status;
}
