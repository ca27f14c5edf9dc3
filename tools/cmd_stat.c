/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem stat: what diffmemd saves, per VM and in total (its role is
 * KSM's sysfs counters and `virsh domstats`). One STATS request over the
 * daemon's socket (diffmem/daemon.h), printed as a table or JSON; --watch
 * repeats it every second. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

#if DMEM_TOOL_KVM

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <diffmem/daemon.h>

#include "json.h"
#include "stat.h"

typedef union msgbuf {
  uint64_t align;
  uint8_t b[DMEM_PROTO_MAX];
} msgbuf;

static int connect_to(const char *path)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) {
    fprintf(stderr, "diffmem stat: socket path too long: %s\n", path);
    return -1;
  }
  memcpy(a.sun_path, path, strlen(path) + 1);
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
    fprintf(stderr, "diffmem stat: no diffmemd at %s: %s\n", path, strerror(errno));
    if (s >= 0)
      close(s);
    return -1;
  }
  return s;
}

/* One request and its reply; 0 with *m parsed from buf. */
static int ask(int s, uint32_t seq, msgbuf *buf, dmem_proto_msg *m)
{
  size_t n = dmem_proto_encode(buf->b, sizeof buf->b, DMEM_PROTO_STATS, seq, NULL, 0);
  if (dmem_proto_send(s, buf->b, n, NULL, 0, 0) != 0) {
    fprintf(stderr, "diffmem stat: sending to the daemon: %s\n", strerror(errno));
    return -1;
  }
  long k = dmem_proto_recv(s, buf->b, sizeof buf->b, NULL, 0, NULL, 10000);
  if (k <= 0) {
    fprintf(stderr, "diffmem stat: %s\n",
            k == 0 ? "the daemon closed the connection" : strerror(errno));
    return -1;
  }
  int rc = dmem_proto_parse(m, buf->b, (size_t)k);
  if (rc || m->hdr.seq != seq || m->hdr.type != DMEM_PROTO_STATS_REPLY) {
    fprintf(stderr, "diffmem stat: unexpected answer from the daemon (%s)\n",
            rc ? dmem_err_name(rc) : "type or sequence");
    return -1;
  }
  return 0;
}

int stat_query(const char *path, dmem_proto_vm_stats *out, size_t max, size_t *n, pid_t *pid)
{
  int s = connect_to(path);
  if (s < 0)
    return -1;
  if (pid) {
    struct ucred cr;
    socklen_t len = sizeof cr;
    *pid = getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 ? cr.pid : -1;
  }
  msgbuf *buf = malloc(sizeof *buf);
  dmem_proto_msg m;
  int rc = buf && ask(s, 1, buf, &m) == 0 ? 0 : -1;
  if (rc == 0) {
    *n = m.nstats < max ? m.nstats : max;
    memcpy(out, m.stats, *n * sizeof *out);
  }
  free(buf);
  close(s);
  return rc;
}

/* Starts diffmemd (next to this program, else from PATH) on sock with the
 * extra arguments (NULL-terminated) and --quiet, and waits until it
 * listens. Returns its pid, or -1. */
pid_t stat_daemon_start(const char *sock, char *const extra[])
{
  char self[PATH_MAX], prog[PATH_MAX + 32];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  prog[0] = 0;
  if (n > 0) {
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) {
      *slash = 0;
      snprintf(prog, sizeof prog, "%s/diffmemd", self);
      if (access(prog, X_OK) != 0) /* a libtool build: the real one is in .libs */
        snprintf(prog, sizeof prog, "%s/../diffmemd", self);
      if (access(prog, X_OK) != 0)
        snprintf(prog, sizeof prog, "%s/../sbin/diffmemd", self);
      if (access(prog, X_OK) != 0)
        prog[0] = 0;
    }
  }
  char *argv[32] = {"diffmemd", "--socket", (char *)sock, "--quiet"};
  size_t k = 4;
  for (size_t i = 0; extra && extra[i] && k < 31; i++)
    argv[k++] = extra[i];
  argv[k] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    if (prog[0])
      execv(prog, argv);
    execvp("diffmemd", argv);
    fprintf(stderr, "diffmem: cannot run diffmemd: %s\n", strerror(errno));
    _exit(127);
  }
  for (int i = 0; pid > 0 && i < 200; i++) {
    struct stat st;
    if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
      return pid;
    if (waitpid(pid, NULL, WNOHANG) == pid)
      return -1;
    usleep(25000);
  }
  return -1;
}

static double mib(int64_t b)
{
  return (double)b / 1048576.0;
}

static void print_table(const dmem_proto_msg *m)
{
  const dmem_proto_vm_stats *t = &m->stats[0];
  printf("diffmemd: %zu VM%s, %llu pages (%.1f MiB), saved %.1f MiB (%.1f%%); store %.1f MiB; "
         "CPU %.2f s\n",
         m->nstats - 1, m->nstats == 2 ? "" : "s", (unsigned long long)t->pages,
         mib((int64_t)(t->pages * 4096)), mib(t->bytes_saved),
         t->pages ? 100.0 * (double)t->bytes_saved / ((double)t->pages * 4096) : 0.0,
         mib((int64_t)t->store_bytes), (double)t->cpu_ns / 1e9);
  printf("%6s %6s %7s %-16s %9s %9s %7s %7s %7s %7s %7s %7s %9s %8s %8s\n", "vm", "domain", "pid",
         "name", "pages", "saved MiB", "zero", "shared", "mapped", "patched", "compr", "swapped",
         "faults", "p50 us", "p99 us");
  for (size_t i = 0; i < m->nstats; i++) {
    const dmem_proto_vm_stats *s = &m->stats[i];
    char vm[16], dom[16], pid[16];
    snprintf(vm, sizeof vm, i ? "%u" : "all", s->vm);
    snprintf(dom, sizeof dom, i ? "%u" : "-", s->domain);
    snprintf(pid, sizeof pid, i ? "%u" : "-", s->pid);
    printf("%6s %6s %7s %-16.16s %9llu %9.1f %7llu %7llu %7llu %7llu %7llu %7llu %9llu %8.0f "
           "%8.0f\n",
           vm, dom, pid, s->name, (unsigned long long)s->pages, mib(s->bytes_saved),
           (unsigned long long)s->zero, (unsigned long long)s->shared,
           (unsigned long long)s->mapped, (unsigned long long)s->patched,
           (unsigned long long)s->compressed, (unsigned long long)s->swapped,
           (unsigned long long)s->faults, (double)s->fault_p50_ns / 1e3,
           (double)s->fault_p99_ns / 1e3);
  }
}

static void json_entry(const dmem_proto_vm_stats *s, int total)
{
  printf("{");
  if (!total)
    printf("\"vm\":%u,\"domain\":%u,\"pid\":%u,\"uid\":%u,\"name\":", s->vm, s->domain, s->pid,
           s->uid);
  if (!total)
    json_str(stdout, s->name);
  printf("%s\"pages\":%llu,\"resident\":%llu,\"mapped\":%llu,\"zero\":%llu,\"shared\":%llu,"
         "\"patched\":%llu,\"compressed\":%llu,\"swapped\":%llu,\"bytes_saved\":%lld,"
         "\"entitlement_bytes\":%lld,\"merges\":%llu,\"faults\":%llu,\"errors\":%llu,"
         "\"fault_p50_us\":%.1f,\"fault_p99_us\":%.1f",
         total ? "" : ",", (unsigned long long)s->pages, (unsigned long long)s->resident,
         (unsigned long long)s->mapped, (unsigned long long)s->zero, (unsigned long long)s->shared,
         (unsigned long long)s->patched, (unsigned long long)s->compressed,
         (unsigned long long)s->swapped, (long long)s->bytes_saved, (long long)s->entitlement_bytes,
         (unsigned long long)s->merges, (unsigned long long)s->faults,
         (unsigned long long)s->errors, (double)s->fault_p50_ns / 1e3,
         (double)s->fault_p99_ns / 1e3);
  if (total)
    printf(",\"store_bytes\":%llu,\"cpu_s\":%.3f", (unsigned long long)s->store_bytes,
           (double)s->cpu_ns / 1e9);
  printf("}");
}

static void print_json(const dmem_proto_msg *m)
{
  printf("{\"schema\":%d,\"total\":", DMEM_JSON_SCHEMA);
  json_entry(&m->stats[0], 1);
  printf(",\"vms\":[");
  for (size_t i = 1; i < m->nstats; i++) {
    if (i > 1)
      printf(",");
    json_entry(&m->stats[i], 0);
  }
  printf("]}\n");
}

static int run(int argc, char **argv)
{
  const char *env = getenv("DIFFMEMD_SOCKET");
  const char *path = env && *env ? env : DMEM_DAEMON_SOCKET;
  int json = 0, watch = 0;
  enum { O_JSON = 256, O_WATCH, O_SOCKET };
  static const struct option opts[] = {{"json", no_argument, NULL, O_JSON},
                                       {"watch", no_argument, NULL, O_WATCH},
                                       {"socket", required_argument, NULL, O_SOCKET},
                                       {NULL, 0, NULL, 0}};
  optind = 0;
  for (int c; (c = cmd_getopt(&dmem_cmd_stat, argc, argv, opts)) != -1;) {
    if (c == '?')
      return EXIT_USAGE;
    if (c == O_JSON)
      json = 1;
    else if (c == O_WATCH)
      watch = 1;
    else if (c == O_SOCKET)
      path = optarg;
  }
  if (optind < argc)
    return cmd_usage_error(&dmem_cmd_stat, "stat takes no operand ('%s')", argv[optind]);
  int s = connect_to(path);
  if (s < 0)
    return 1;
  msgbuf *buf = malloc(sizeof *buf);
  int rc = buf ? 0 : 1;
  for (uint32_t seq = 1; rc == 0; seq++) {
    dmem_proto_msg m;
    if (ask(s, seq, buf, &m) != 0) {
      rc = 1;
      break;
    }
    if (json)
      print_json(&m);
    else
      print_table(&m);
    if (fflush(stdout) != 0 || ferror(stdout))
      rc = 1;
    if (!watch)
      break;
    if (!json)
      printf("\n");
    sleep(1);
  }
  free(buf);
  close(s);
  return rc;
}

#else

static int run(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  fprintf(stderr, "diffmem stat: this diffmem was built without the KVM adapter, which holds "
                  "diffmemd's client\n");
  return 1;
}

#endif

const dmem_cmd dmem_cmd_stat = {
    .name = "stat",
    .summary = "show what diffmemd saves, per VM and in total",
    .usage = "usage: diffmem stat [--socket PATH] [--json] [--watch]\n"
             "\n"
             "Asks diffmemd (at PATH, else $DIFFMEMD_SOCKET, else /run/diffmemd.sock)\n"
             "for its statistics and prints, for the whole engine and for each VM:\n"
             "guest pages, bytes saved, the breakdown (zero, shared, patched,\n"
             "compressed, swapped), faults served and their service time (p50, p99),\n"
             "and the daemon's CPU time. A VM's line also has its id, sharing domain,\n"
             "the VMM's pid and the name the VMM gave. --watch repeats every second\n"
             "until interrupted. With --json, one object per report: {\"total\":\n"
             "{pages, resident, mapped, zero, shared, patched, compressed, swapped,\n"
             "bytes_saved, entitlement_bytes, merges, faults, errors, fault_p50_us,\n"
             "fault_p99_us, store_bytes, cpu_s}, \"vms\": [{vm, domain, pid, uid, name,\n"
             "and the same counters}]}. Exit status 1 when no daemon answers.\n",
    .run = run,
};
