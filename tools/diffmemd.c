/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmemd: one engine for every VMM process on a host (diffmem/daemon.h,
 * diffmemd(8)).
 *
 * One thread runs the event loop: it accepts VMMs on a SOCK_SEQPACKET Unix
 * socket, reads one message at a time, and answers it; signals arrive as
 * a signalfd. The engine scans on its own thread (dmem_engine_start), and
 * each VM's faults are served on its region's fault thread, so a slow
 * request (a detach that puts back many pages) delays other requests but
 * never another VM's faults.
 *
 * A VMM's guest RAM becomes a dmem_kvm_region over the passed memfd (the
 * daemon maps it) and the passed userfaultfd (at the VMM's address). The
 * sharing domain is the daemon's choice (--domain-by), never the VMM's.
 * A connection that sends anything malformed, or passes a limit, is
 * closed; its VMs are detached as when the VMM exits: every evicted page
 * is written back (into the VMM's memory through its userfaultfd, or into
 * the memfd when the VMM is gone) and the VM's storage is released.
 *
 * Every VM has a journal (dmem_vm_set_journal) in a memfd, and a keeper
 * process holds it with everything else needed to put the VM's pages back
 * should this process die at any instant (see "the keeper" below).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/userfaultfd.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <diffmem/daemon.h>
#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "daemon_conf.h"

#define PAGE DMEM_PAGE_SIZE

enum domain_by { BY_UID, BY_VM, BY_ONE };

typedef struct dopts {
  const char *socket;
  unsigned mode;
  const char *group;
  enum domain_by domain_by;
  unsigned scan_ms;
  unsigned long scan_pages;
  unsigned c4_passes;
  int reads_hold; /* pages only read stay hot (no idle_reads) */
  int secure;
  int no_cow; /* no agent: shared pages are copied on a read */
  unsigned max_vms, max_conns;
  unsigned agent_timeout_ms; /* 0: the region's default */
  uint64_t store_limit_mb;
  const char *swap_dir;
  int quiet;
} dopts;

typedef struct dvm {
  dmem_kvm_region *r;
  dmem_vm *vm;
  int memfd, uffd, journal_fd;
  void *journal;
  size_t journal_size;
  uint64_t key; /* the keeper's name for it */
  uint64_t size, fd_offset, uffd_addr;
  uint32_t id, domain;
  int conn_fd;
  int agent_fd, agent_peer; /* our end of the socket to its agent, and the VMM's; -1: none */
  int in_limbo;             /* D.limbo: conn_fd is then a duplicate of its own */
  char name[DMEM_PROTO_NAME_MAX];
} dvm;

typedef struct conn {
  int fd;
  pid_t pid;
  uid_t uid;
  dvm **vms;
  unsigned nvms;
} conn;

typedef union msgbuf {
  uint64_t align;
  uint8_t b[DMEM_PROTO_MAX];
} msgbuf;

static struct {
  dopts o;
  dmem_engine *e;
  int lfd, sigfd;
  conn **conns;
  unsigned nconns;
  /* VMs whose detach failed while their connection went away (an agent
   * that does not answer keeps pages mapped in its VMM): still in the
   * engine, which keeps their frames, and detached again at each turn of
   * the loop until it succeeds. */
  dvm **limbo;
  unsigned nlimbo;
  msgbuf in, out;
  int bound;  /* the socket file is ours to remove */
  int keeper; /* socket to the keeper, or -1 */
  pid_t keeper_pid;
  uint64_t next_key;
  char self[PATH_MAX]; /* this program, to run the keeper */
} D;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
  if (D.o.quiet)
    return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "diffmemd: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* ---------------------------------------------------------------- messages */

static void reply_fds(conn *c, dmem_proto_type type, uint32_t seq, const void *payload, size_t plen,
                      const int *fds, int nfds)
{
  size_t n = dmem_proto_encode(D.out.b, sizeof D.out.b, type, seq, payload, plen);
  if (n)
    (void)dmem_proto_send(c->fd, D.out.b, n, fds, nfds, 1);
}

static void reply(conn *c, dmem_proto_type type, uint32_t seq, const void *payload, size_t plen)
{
  reply_fds(c, type, seq, payload, plen, NULL, 0);
}

static void reply_error(conn *c, uint32_t seq, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_error(conn *c, uint32_t seq, int code, const char *fmt, ...)
{
  dmem_proto_error e;
  memset(&e, 0, sizeof e);
  e.code = code < 0 ? code : DMEM_EIO;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e.msg, sizeof e.msg, fmt, ap);
  va_end(ap);
  say("pid %d: refused: %s", (int)c->pid, e.msg);
  reply(c, DMEM_PROTO_ERROR, seq, &e, sizeof e);
}

static void close_fds(int *fds, int n)
{
  for (int i = 0; i < n && i < 2; i++)
    close(fds[i]);
}

/* ---------------------------------------------------------------- the keeper
 *
 * A second process, this program run as `diffmemd --keeper` (fork, then
 * exec: the daemon has threads), holds a duplicate of everything a VM's
 * pages depend on: the store's memfds, each VM's journal, userfaultfd,
 * memfd and connection. It does nothing else. When the daemon dies
 * without saying goodbye (SIGKILL, a crash), the keeper rebuilds every
 * page the journals say is evicted, puts it back into its VMM's memory
 * through the userfaultfd (or into the memfd when the VMM is gone too),
 * lifts every write protection, unregisters the range, tells the VMM
 * (RELEASED) and exits. Holding the connection also keeps the VMM from
 * seeing the daemon gone before its pages are back. Its messages: */
enum { K_STORE = 1, K_ADD, K_ID, K_DEL, K_BYE, K_AGENT };
typedef struct kmsg {
  uint32_t type;
  uint32_t vm; /* K_ID */
  uint64_t key;
  uint64_t size, fd_offset, uffd_addr; /* K_ADD */
} kmsg;
/* K_STORE carries the blobs (and swap) fds; K_ADD uffd, memfd, journal
 * and connection fds; K_ID the frames memfd of the VM's sharing domain
 * (sent before any page of the VM can leave: the scanner is stopped
 * across the attach); K_AGENT (after K_ADD, keyed) the daemon's end
 * of the socket to the VM's agent: held, so that the agent sees the
 * socket close (and copies back the pages it mapped) only once the keeper
 * is done too. */

typedef struct kvm {
  uint64_t key;
  uint32_t vm; /* UINT32_MAX until K_ID */
  int uffd, memfd, journal, conn;
  uint64_t size, fd_offset, uffd_addr;
  int agent, frames;
} kvm;

static void kvm_close(kvm *k)
{
  if (k->agent >= 0)
    close(k->agent);
  if (k->frames >= 0)
    close(k->frames);
  close(k->uffd);
  close(k->memfd);
  close(k->journal);
  close(k->conn);
}

/* Puts back every page k's journal says is evicted. Returns pages lost. */
static uint64_t keeper_recover(kvm *k, const dmem_journal_store *st, dmem_codec *codec,
                               uint64_t *back)
{
  struct stat sb;
  uint64_t lost = 0, npages = k->size / PAGE;
  *back = 0;
  if (fstat(k->journal, &sb) != 0 || sb.st_size <= 0)
    return npages;
  size_t jsize = (size_t)sb.st_size;
  const uint8_t *j = mmap(NULL, jsize, PROT_READ, MAP_SHARED, k->journal, 0);
  if (j == MAP_FAILED)
    return npages;
  static uint8_t buf[PAGE] __attribute__((aligned(PAGE)));
  for (uint64_t g = 0; g < npages; g++) {
    int rc = dmem_journal_page(buf, j, jsize, g, st, codec);
    if (rc == DMEM_EVERSION)
      break; /* no header yet: the VM was never attached, nothing evicted */
    if (rc == 0)
      continue;
    if (rc < 0) {
      lost++;
      continue;
    }
    struct uffdio_copy c = {
        .dst = k->uffd_addr + g * PAGE, .src = (uint64_t)(uintptr_t)buf, .len = PAGE, .mode = 0};
    int r;
    while ((r = ioctl(k->uffd, UFFDIO_COPY, &c)) != 0 && errno == EAGAIN)
      c.copy = 0;
    if (r == 0) {
      (*back)++;
    } else if (errno == EEXIST) {
      /* in guest memory after all (the daemon died right after a fill) */
    } else if (errno == ESRCH || errno == ENOENT) {
      /* ESRCH: the VMM is gone too, the memfd is all. ENOENT: nothing of
       * ours is mapped there, because the VMM's agent had just mapped the
       * frame over the page (its content then is right, privately; the
       * agent copies it back onto the memfd once we are done) or the VMM
       * unmapped its RAM: either way the memfd gets the page. */
      if (pwrite(k->memfd, buf, PAGE, (off_t)(k->fd_offset + g * PAGE)) == (ssize_t)PAGE)
        (*back)++;
      else
        lost++;
    } else {
      lost++;
    }
  }
  munmap((void *)j, jsize);
  /* Lift every protection the daemon left (waking whoever waits on one),
   * then leave the range to the VMM alone: unregistered here, or, with an
   * agent, by the agent once it has read the socket to its end. A page the
   * daemon asked it to map may still be a hole until then (its journal
   * entry says "in guest memory" from the request on), and its waiters
   * must wait for the agent rather than read the hole as zeros. */
  struct uffdio_writeprotect wp = {.range = {k->uffd_addr, k->size}, .mode = 0};
  (void)ioctl(k->uffd, UFFDIO_WRITEPROTECT, &wp);
  struct uffdio_range rg = {k->uffd_addr, k->size};
  if (k->agent < 0)
    (void)ioctl(k->uffd, UFFDIO_UNREGISTER, &rg);
  /* And wake them all: the lift wakes nobody once it meets a page not
   * registered for WP (ENOENT), and UNREGISTER misses a thread that
   * faulted as it ran (adapters/kvm/uffd.h). A thread whose page is still
   * registered only faults again, and waits for the agent. */
  (void)ioctl(k->uffd, UFFDIO_WAKE, &rg);
  return lost;
}

static int keeper_main(int sock)
{
  (void)prctl(PR_SET_NAME, "diffmemd-keeper");
  dmem_journal_store st = {-1, -1, -1};
  kvm *vms = NULL;
  size_t n = 0;
  int bye = 0;
  for (;;) {
    kmsg m;
    int fds[4] = {-1, -1, -1, -1}, nfds = 0;
    long got = dmem_proto_recv(sock, &m, sizeof m, fds, 4, &nfds, -1);
    if (got != (long)sizeof m) {
      for (int i = 0; got > 0 && i < nfds; i++)
        close(fds[i]);
      break; /* the daemon is gone */
    }
    if (m.type == K_BYE) {
      bye = 1;
      break;
    } else if (m.type == K_STORE && nfds >= 1) {
      st.blobs_fd = fds[0];
      st.swap_fd = nfds > 1 ? fds[1] : -1;
    } else if (m.type == K_ADD && nfds == 4) {
      kvm *nv = realloc(vms, (n + 1) * sizeof *nv);
      if (!nv) {
        for (int i = 0; i < 4; i++)
          close(fds[i]);
        continue;
      }
      vms = nv;
      vms[n++] = (kvm){m.key,  UINT32_MAX,  fds[0],      fds[1], fds[2], fds[3],
                       m.size, m.fd_offset, m.uffd_addr, -1,     -1};
    } else if (m.type == K_AGENT && nfds == 1) {
      size_t i = 0;
      while (i < n && vms[i].key != m.key)
        i++;
      if (i < n && vms[i].agent < 0)
        vms[i].agent = fds[0];
      else
        close(fds[0]);
    } else if (m.type == K_ID || m.type == K_DEL) {
      for (size_t i = 0; i < n; i++)
        if (vms[i].key == m.key) {
          if (m.type == K_ID) {
            vms[i].vm = m.vm;
            if (nfds == 1 && vms[i].frames < 0)
              vms[i].frames = fds[0], nfds = 0;
          } else {
            kvm_close(&vms[i]);
            vms[i] = vms[--n];
          }
          break;
        }
      for (int i = 0; i < nfds && i < 4; i++)
        close(fds[i]); /* nobody's */
    } else {
      for (int i = 0; i < nfds && i < 4; i++)
        close(fds[i]);
    }
  }
  if (!bye && n) {
    fprintf(stderr, "diffmemd-keeper: the daemon died; putting back the pages of %zu VM%s\n", n,
            n == 1 ? "" : "s");
    dmem_codec *codec = NULL;
    (void)dmem_codec_create(&codec, NULL);
    for (size_t i = 0; i < n; i++) {
      dmem_journal_store vst = st;
      vst.frames_fd = vms[i].frames;
      uint64_t back, lost = keeper_recover(&vms[i], &vst, codec, &back);
      fprintf(stderr, "diffmemd-keeper: vm %u: %llu pages put back, %llu lost\n", vms[i].vm,
              (unsigned long long)back, (unsigned long long)lost);
      if (lost == 0 && vms[i].vm != UINT32_MAX) {
        uint8_t pkt[sizeof(dmem_proto_hdr) + sizeof(dmem_proto_vm)];
        dmem_proto_vm r = {vms[i].vm, 0};
        size_t len = dmem_proto_encode(pkt, sizeof pkt, DMEM_PROTO_RELEASED, 0, &r, sizeof r);
        (void)dmem_proto_send(vms[i].conn, pkt, len, NULL, 0, 1);
      }
    }
    dmem_codec_destroy(codec);
  }
  for (size_t i = 0; i < n; i++)
    kvm_close(&vms[i]);
  free(vms);
  return 0;
}

/* Starts a keeper and hands it the store; 0, or -1 (no keeper). */
static int keeper_start(void)
{
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  if (pid == 0) { /* only async-signal-safe calls until exec */
    if (dup2(sv[1], 3) < 0)
      _exit(127);
    char *argv[] = {"diffmemd", "--keeper", NULL};
    execv(D.self, argv);
    _exit(127);
  }
  close(sv[1]);
  D.keeper = sv[0];
  D.keeper_pid = pid;
  int b, sw;
  if (dmem_engine_store_fds(D.e, &b, &sw) != 0)
    return -1;
  int fds[2] = {b, sw};
  kmsg m = {.type = K_STORE};
  return dmem_proto_send(D.keeper, &m, sizeof m, fds, sw >= 0 ? 2 : 1, 0);
}

/* The VM's id, and the frames memfd of its domain. */
static int keeper_send_id(const dvm *v)
{
  kmsg id = {.type = K_ID, .vm = v->id, .key = v->key};
  int f = dmem_vm_frames_fd(v->vm);
  return dmem_proto_send(D.keeper, &id, sizeof id, &f, f >= 0 ? 1 : 0, 0);
}

static int keeper_send_vm(const dvm *v)
{
  kmsg m = {.type = K_ADD,
            .key = v->key,
            .size = v->size,
            .fd_offset = v->fd_offset,
            .uffd_addr = v->uffd_addr};
  int fds[4] = {v->uffd, v->memfd, v->journal_fd, v->conn_fd};
  if (D.keeper < 0 || dmem_proto_send(D.keeper, &m, sizeof m, fds, 4, 0) != 0)
    return -1;
  kmsg ag = {.type = K_AGENT, .key = v->key};
  if (v->agent_fd >= 0 && dmem_proto_send(D.keeper, &ag, sizeof ag, &v->agent_fd, 1, 0) != 0)
    return -1;
  return v->vm ? keeper_send_id(v) : 0;
}

/* The keeper died (killed on its own): a new one gets the store and every
 * VM, the daemon's VMs are safe again. */
static int keeper_respawn(void)
{
  if (D.keeper >= 0)
    close(D.keeper);
  D.keeper = -1;
  (void)waitpid(D.keeper_pid, NULL, WNOHANG);
  if (keeper_start() != 0)
    return -1;
  for (unsigned i = 0; i < D.nconns; i++)
    for (unsigned j = 0; j < D.conns[i]->nvms; j++)
      if (keeper_send_vm(D.conns[i]->vms[j]) != 0)
        return -1;
  for (unsigned i = 0; i < D.nlimbo; i++)
    if (keeper_send_vm(D.limbo[i]) != 0)
      return -1;
  say("the keeper was gone: a new one (pid %d) holds every VM's pages", (int)D.keeper_pid);
  return 0;
}

static int keeper_add(const dvm *v)
{
  if (keeper_send_vm(v) == 0)
    return 0;
  return keeper_respawn() == 0 ? keeper_send_vm(v) : -1;
}

static void keeper_say(uint32_t type, uint64_t key, uint32_t vm)
{
  kmsg m = {.type = type, .vm = vm, .key = key};
  if (D.keeper >= 0)
    (void)dmem_proto_send(D.keeper, &m, sizeof m, NULL, 0, 0);
}

static void keeper_stop(void)
{
  if (D.keeper < 0)
    return;
  keeper_say(K_BYE, 0, 0);
  close(D.keeper);
  D.keeper = -1;
  (void)waitpid(D.keeper_pid, NULL, 0);
}

/* ---------------------------------------------------------------- VMs */

static uint32_t domain_for(const conn *c)
{
  static uint32_t next_own = 0x80000000u;
  switch (D.o.domain_by) {
  case BY_ONE:
    return 1;
  case BY_VM:
    return next_own++ | 0x80000000u; /* never a user's below */
  default:
    return (uint32_t)c->uid % 0x7fffffffu + 1; /* 1 .. 2^31 - 1 */
  }
}

static void close_agent(dvm *v)
{
  if (v->agent_fd >= 0)
    close(v->agent_fd);
  if (v->agent_peer >= 0)
    close(v->agent_peer);
  v->agent_fd = v->agent_peer = -1;
}

/* Detaches and frees a VM; 0, or the detach's error (the VM then stays).
 * @p force: its connection is gone; a VM that cannot be detached goes to
 * the limbo (still attached, its frames kept) rather than be freed under
 * the engine. @p last: the daemon stops; the engine is stopped and the VM
 * is freed whatever happens (its mapped pages live on in its VMM, whose
 * agent copies them back when the socket closes). */
static int vm_drop(dvm *v, int force, int last)
{
  int rc = dmem_kvm_region_detach(v->r);
  if (rc && !force && !last)
    return rc;
  if (rc && !last) {
    dvm **nl = realloc(D.limbo, (D.nlimbo + 1) * sizeof *nl);
    /* The keeper holds the connection too; a new keeper needs it. */
    int cfd = v->in_limbo ? v->conn_fd : fcntl(v->conn_fd, F_DUPFD_CLOEXEC, 0);
    if (nl)
      D.limbo = nl;
    if (nl && cfd >= 0) {
      D.limbo[D.nlimbo++] = v;
      if (!v->in_limbo)
        say("vm %u (%s): detach: %s; kept attached, tried again every second", v->id, v->name,
            dmem_kvm_region_errmsg(v->r));
      v->in_limbo = 1;
      v->conn_fd = cfd;
      return rc;
    }
    if (cfd >= 0 && !v->in_limbo)
      close(cfd);
  }
  if (rc)
    say("vm %u (%s): detach: %s: pages still evicted are lost", v->id, v->name,
        dmem_kvm_region_errmsg(v->r));
  dmem_kvm_stats st = {.version = DMEM_KVM_STATS_VERSION};
  if (dmem_kvm_region_stats(&st, v->r) == 0)
    say("vm %u (%s): faults served: %llu missing (%llu first touches), %llu write-protect, "
        "%llu minor; %llu pages evicted; %llu requests to its agent unanswered in time "
        "(%llu answered late)",
        v->id, v->name, (unsigned long long)st.faults_missing, (unsigned long long)st.zero_fills,
        (unsigned long long)st.faults_wp, (unsigned long long)st.faults_minor,
        (unsigned long long)st.evictions, (unsigned long long)st.agent_timeouts,
        (unsigned long long)st.agent_late);
  dmem_kvm_region_destroy(v->r);
  keeper_say(K_DEL, v->key, 0); /* every page is back: nothing to keep */
  close_agent(v);
  close(v->memfd);
  close(v->uffd);
  close(v->journal_fd);
  if (v->in_limbo)
    close(v->conn_fd);
  munmap(v->journal, v->journal_size);
  free(v);
  return rc;
}

/* A socket to the VM's agent, when the client runs one and the engine maps
 * shared pages (not in secure mode) and the VMM's userfaultfd has WP. */
static void make_agent(dvm *v, const dmem_proto_attach *a)
{
  v->agent_fd = v->agent_peer = -1;
  if (!(a->flags & DMEM_PROTO_ATTACH_AGENT) || D.o.secure || D.o.no_cow ||
      !(a->uffd_features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM))
    return;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return; /* shared pages are copied then */
  v->agent_fd = sv[0];
  v->agent_peer = sv[1];
}

/* A read-only descriptor of the frames memfd for the VM's agent, or -1. */
static int frames_for_agent(const dvm *v)
{
  int fd = dmem_vm_frames_fd(v->vm);
  if (fd < 0)
    return -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  return open(path, O_RDONLY | O_CLOEXEC);
}

/* A journal for v in a memfd of its own (the keeper gets a copy). */
static int make_journal(dvm *v)
{
  v->journal_size = (dmem_journal_size(v->size / PAGE) + PAGE - 1) / PAGE * PAGE;
  v->journal_fd = memfd_create("dmem-journal", MFD_CLOEXEC);
  if (v->journal_fd < 0)
    return -1;
  v->journal = MAP_FAILED;
  if (ftruncate(v->journal_fd, (off_t)v->journal_size) == 0)
    v->journal = mmap(NULL, v->journal_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->journal_fd, 0);
  if (v->journal == MAP_FAILED) {
    close(v->journal_fd);
    return -1;
  }
  return 0;
}

static void do_attach(conn *c, const dmem_proto_msg *m, int fds[2], int nfds)
{
  uint32_t seq = m->hdr.seq;
  if (nfds != 2) {
    close_fds(fds, nfds);
    reply_error(c, seq, DMEM_EINVAL, "ATTACH needs two descriptors (memfd, userfaultfd), got %d",
                nfds);
    return;
  }
  if (c->nvms >= D.o.max_vms) {
    close_fds(fds, 2);
    reply_error(c, seq, DMEM_EPERM, "this connection has %u VMs, the limit", c->nvms);
    return;
  }
  int seals = fcntl(fds[0], F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
    close_fds(fds, 2);
    reply_error(c, seq, DMEM_EINVAL, "the RAM is not a memfd sealed with F_SEAL_SHRINK");
    return;
  }
  const dmem_proto_attach *a = &m->u.attach;
  dvm *v = calloc(1, sizeof *v);
  dvm **nv = realloc(c->vms, (c->nvms + 1) * sizeof *nv);
  if (!v || !nv) {
    free(v);
    if (nv)
      c->vms = nv;
    close_fds(fds, 2);
    reply_error(c, seq, DMEM_ENOMEM, "out of memory");
    return;
  }
  c->vms = nv;
  v->memfd = fds[0];
  v->uffd = fds[1];
  v->conn_fd = c->fd;
  v->size = m->u.attach.size;
  v->fd_offset = m->u.attach.fd_offset;
  v->uffd_addr = m->u.attach.uffd_addr;
  v->key = ++D.next_key;
  v->domain = domain_for(c);
  make_agent(v, a);
  /* The keeper holds the journal and the rest before the first page can
   * leave: without it, no VM is taken. */
  if (make_journal(v) != 0) {
    close_fds(fds, 2);
    close_agent(v);
    free(v);
    reply_error(c, seq, DMEM_ENOMEM, "cannot make the VM's journal: %s", strerror(errno));
    return;
  }
  if (keeper_add(v) != 0) {
    close_fds(fds, 2);
    close_agent(v);
    close(v->journal_fd);
    munmap(v->journal, v->journal_size);
    free(v);
    reply_error(c, seq, DMEM_EIO, "the keeper is gone: no VM is taken without it");
    return;
  }
  snprintf(v->name, sizeof v->name, "%s", a->name);
  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = a->size;
  ro.fd = v->memfd;
  ro.fd_offset = a->fd_offset;
  ro.uffd = v->uffd;
  ro.uffd_features = a->uffd_features;
  ro.uffd_addr = a->uffd_addr;
  ro.sharing_domain = v->domain;
  ro.journal = v->journal;
  ro.journal_size = v->journal_size;
  ro.idle_reads = !D.o.reads_hold;
  ro.agent_fd = v->agent_fd;
  ro.agent_timeout_ms = D.o.agent_timeout_ms;
  char err[DMEM_ERRBUF_SIZE];
  char label[DMEM_PROTO_NAME_MAX + 32];
  snprintf(label, sizeof label, "%d:%s", (int)c->pid, v->name);
  int rc = dmem_kvm_region_create(&v->r, &ro, err, sizeof err);
  /* No page of the VM may leave before the keeper holds the frames memfd
   * of its sharing domain, which exists from the attach on: the scanner
   * waits meanwhile. */
  dmem_engine_stop(D.e);
  if (rc == 0 && (rc = dmem_kvm_region_attach(&v->vm, D.e, v->r, label)) != 0) {
    snprintf(err, sizeof err, "%s", dmem_kvm_region_errmsg(v->r));
    dmem_kvm_region_destroy(v->r);
  }
  if (rc == 0) {
    v->id = dmem_vm_id(v->vm);
    c->vms[c->nvms++] = v;
    if (keeper_send_id(v) != 0 && keeper_respawn() != 0) {
      c->nvms--;
      (void)vm_drop(v, 0, 1);
      v = NULL;
      rc = DMEM_EIO;
    }
  }
  if (dmem_engine_start(D.e, D.o.scan_ms, D.o.scan_pages) != 0)
    say("cannot restart the engine's scanner: %s", dmem_engine_errmsg(D.e));
  if (rc && !v) {
    reply_error(c, seq, rc, "the keeper is gone: no VM is taken without it");
    return;
  }
  if (rc) {
    keeper_say(K_DEL, v->key, 0);
    close_fds(fds, 2);
    close_agent(v);
    close(v->journal_fd);
    munmap(v->journal, v->journal_size);
    free(v);
    reply_error(c, seq, rc, "%s", err);
    return;
  }
  dmem_proto_attached r = {v->id, v->domain, a->size / PAGE, 0, 0};
  int afds[2] = {v->agent_peer, v->agent_peer >= 0 ? frames_for_agent(v) : -1};
  if (afds[1] >= 0)
    r.flags = DMEM_PROTO_ATTACHED_AGENT;
  say("pid %d uid %u: vm %u \"%s\", %llu pages, sharing domain %u%s", (int)c->pid, (unsigned)c->uid,
      v->id, v->name, (unsigned long long)(a->size / PAGE), v->domain,
      r.flags ? ", with an agent" : "");
  reply_fds(c, DMEM_PROTO_ATTACHED, seq, &r, sizeof r, afds, r.flags ? 2 : 0);
  /* The VMM has its end now (or never will: the region's first call then
   * finds the socket closed, and copies from then on). */
  if (afds[1] >= 0)
    close(afds[1]);
  close(v->agent_peer);
  v->agent_peer = -1;
}

static void do_detach(conn *c, const dmem_proto_msg *m)
{
  for (unsigned i = 0; i < c->nvms; i++) {
    dvm *v = c->vms[i];
    if (v->id != m->u.vm.vm)
      continue;
    int rc = vm_drop(v, 0, 0);
    if (rc) {
      reply_error(c, m->hdr.seq, rc, "detach of vm %u: %s", v->id, dmem_kvm_region_errmsg(v->r));
      return;
    }
    c->vms[i] = c->vms[--c->nvms];
    say("pid %d: vm %u detached", (int)c->pid, m->u.vm.vm);
    dmem_proto_vm r = {m->u.vm.vm, 0};
    reply(c, DMEM_PROTO_RELEASED, m->hdr.seq, &r, sizeof r);
    return;
  }
  reply_error(c, m->hdr.seq, DMEM_ENOENT, "no vm %u on this connection", m->u.vm.vm);
}

static void fill_vm_stats(dmem_proto_vm_stats *s, const conn *c, const dvm *v)
{
  memset(s, 0, sizeof *s);
  s->vm = v->id;
  s->domain = v->domain;
  s->pid = (uint32_t)c->pid;
  s->uid = (uint32_t)c->uid;
  memcpy(s->name, v->name, sizeof s->name);
  dmem_stats st = DMEM_STATS_INIT;
  if (dmem_vm_stats(&st, v->vm) == 0) {
    s->pages = st.pages, s->resident = st.resident, s->mapped = st.mapped, s->zero = st.zero;
    s->shared = st.shared, s->patched = st.patched, s->compressed = st.compressed;
    s->swapped = st.swapped, s->bytes_saved = st.bytes_saved;
    s->entitlement_bytes = st.entitlement_bytes;
    s->merges = st.merges, s->faults = st.faults, s->errors = st.errors;
  }
  dmem_kvm_stats ks;
  memset(&ks, 0, sizeof ks);
  ks.version = DMEM_KVM_STATS_VERSION;
  if (dmem_kvm_region_stats(&ks, v->r) == 0 && ks.lat_count) {
    s->fault_p50_ns = (uint64_t)(dmem_kvm_stats_percentile_us(&ks, 0.5) * 1000);
    s->fault_p99_ns = (uint64_t)(dmem_kvm_stats_percentile_us(&ks, 0.99) * 1000);
  }
}

static void do_stats(conn *c, uint32_t seq)
{
  static dmem_proto_vm_stats all[DMEM_PROTO_STATS_MAX + 1];
  size_t n = 1;
  memset(&all[0], 0, sizeof all[0]);
  all[0].vm = UINT32_MAX;
  snprintf(all[0].name, sizeof all[0].name, "engine");
  dmem_stats st = DMEM_STATS_INIT;
  if (dmem_engine_stats(&st, D.e) == 0) {
    all[0].pages = st.pages, all[0].resident = st.resident, all[0].mapped = st.mapped;
    all[0].zero = st.zero, all[0].shared = st.shared, all[0].patched = st.patched;
    all[0].compressed = st.compressed, all[0].swapped = st.swapped;
    all[0].bytes_saved = st.bytes_saved, all[0].entitlement_bytes = st.entitlement_bytes;
    all[0].merges = st.merges, all[0].faults = st.faults, all[0].errors = st.errors;
    all[0].store_bytes = st.store_bytes;
  }
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    all[0].cpu_ns = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
                    (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
  for (unsigned i = 0; i < D.nconns; i++)
    for (unsigned j = 0; j < D.conns[i]->nvms && n < DMEM_PROTO_STATS_MAX + 1; j++)
      fill_vm_stats(&all[n++], D.conns[i], D.conns[i]->vms[j]);
  reply(c, DMEM_PROTO_STATS_REPLY, seq, all, n * sizeof all[0]);
}

/* ---------------------------------------------------------------- connections */

static void conn_drop(unsigned i, const char *why)
{
  conn *c = D.conns[i];
  unsigned n = c->nvms;
  for (unsigned j = 0; j < c->nvms; j++)
    (void)vm_drop(c->vms[j], 1, 0);
  if (n || why)
    say("pid %d: %s; %u VM%s detached", (int)c->pid, why ? why : "gone", n, n == 1 ? "" : "s");
  free(c->vms);
  close(c->fd);
  free(c);
  D.conns[i] = D.conns[--D.nconns];
}

/* Serves one packet of connection i; 0, or -1 when it was dropped. */
static int conn_serve(unsigned i)
{
  conn *c = D.conns[i];
  int fds[2] = {-1, -1}, nfds = 0;
  long n = dmem_proto_recv(c->fd, D.in.b, sizeof D.in.b, fds, 2, &nfds, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ETIMEDOUT))
    return 0;
  if (n <= 0) {
    /* EMSGSIZE: too long, or too many descriptors (all closed). */
    conn_drop(i, n < 0 && errno == EMSGSIZE ? "malformed message" : NULL);
    return -1;
  }
  dmem_proto_msg m;
  int rc = dmem_proto_parse(&m, D.in.b, (size_t)n);
  if (rc == DMEM_EVERSION) {
    reply_error(c, m.hdr.seq, rc, "this daemon speaks protocol version %u", DMEM_PROTO_VERSION);
  }
  int request = rc == 0 && (m.hdr.type == DMEM_PROTO_ATTACH || m.hdr.type == DMEM_PROTO_DETACH ||
                            m.hdr.type == DMEM_PROTO_STATS);
  if (!request || (m.hdr.type != DMEM_PROTO_ATTACH && nfds)) {
    close_fds(fds, nfds);
    conn_drop(i, rc == DMEM_EVERSION ? "another protocol version" : "malformed message");
    return -1;
  }
  switch (m.hdr.type) {
  case DMEM_PROTO_ATTACH:
    do_attach(c, &m, fds, nfds);
    break;
  case DMEM_PROTO_DETACH:
    do_detach(c, &m);
    break;
  default:
    do_stats(c, m.hdr.seq);
    break;
  }
  return 0;
}

static void accept_one(void)
{
  int fd = accept4(D.lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0)
    return;
  struct ucred cr;
  socklen_t len = sizeof cr;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
    close(fd);
    return;
  }
  conn *c = calloc(1, sizeof *c);
  conn **nc = D.nconns < D.o.max_conns ? realloc(D.conns, (D.nconns + 1) * sizeof *nc) : NULL;
  if (!c || !nc) {
    if (nc)
      D.conns = nc;
    free(c);
    say("pid %d: connection refused (%u connections, the limit)", (int)cr.pid, D.nconns);
    close(fd);
    return;
  }
  D.conns = nc;
  c->fd = fd;
  c->pid = cr.pid;
  c->uid = cr.uid;
  D.conns[D.nconns++] = c;
}

/* ---------------------------------------------------------------- the socket */

static int listen_on(const char *path)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) {
    fprintf(stderr, "diffmemd: socket path too long: %s\n", path);
    return -1;
  }
  memcpy(a.sun_path, path, strlen(path) + 1);
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      fprintf(stderr, "diffmemd: %s exists and is not a socket; not touching it\n", path);
      return -1;
    }
    int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof a) == 0) {
      close(probe);
      fprintf(stderr, "diffmemd: another daemon listens on %s\n", path);
      return -1;
    }
    if (probe >= 0)
      close(probe);
    unlink(path); /* a stale socket of a daemon that died */
  }
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    fprintf(stderr, "diffmemd: socket: %s\n", strerror(errno));
    return -1;
  }
  mode_t old = umask(0177); /* no one else connects before chmod */
  int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
  umask(old);
  if (rc != 0) {
    fprintf(stderr, "diffmemd: bind %s: %s\n", path, strerror(errno));
    close(fd);
    return -1;
  }
  D.bound = 1;
  gid_t gid = (gid_t)-1;
  if (D.o.group) {
    struct group *g = getgrnam(D.o.group);
    if (!g) {
      fprintf(stderr, "diffmemd: no group %s\n", D.o.group);
      close(fd);
      return -1;
    }
    gid = g->gr_gid;
  }
  if ((gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) || chmod(path, D.o.mode) != 0 ||
      listen(fd, 64) != 0) {
    fprintf(stderr, "diffmemd: %s: %s\n", path, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* ---------------------------------------------------------------- main */

/* Tries the limbo's VMs again; a detached one is freed, the others go
 * back (unless @p last). */
static void limbo_retry(int last)
{
  dvm **old = D.limbo;
  unsigned n = D.nlimbo;
  D.limbo = NULL;
  D.nlimbo = 0;
  for (unsigned i = 0; i < n; i++) {
    uint32_t id = old[i]->id;
    if (vm_drop(old[i], 1, last) == 0)
      say("vm %u: detached at last", id);
  }
  free(old);
}

static void release_all(void)
{
  while (D.nconns) {
    conn *c = D.conns[D.nconns - 1];
    for (unsigned j = 0; j < c->nvms; j++) {
      uint32_t id = c->vms[j]->id;
      if (vm_drop(c->vms[j], 0, 1) == 0) {
        dmem_proto_vm r = {id, 0};
        reply(c, DMEM_PROTO_RELEASED, 0, &r, sizeof r);
      }
    }
    c->nvms = 0;
    conn_drop(D.nconns - 1, NULL);
  }
}

static int parse_num(const char *s, unsigned long long lo, unsigned long long hi, int base,
                     unsigned long long *out)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, base);
  if (!*s || *end || errno || s[0] == '-' || v < lo || v > hi)
    return -1;
  *out = v;
  return 0;
}

static void usage(FILE *f)
{
  fprintf(f, "usage: diffmemd [--config FILE] [--socket PATH] [--socket-mode OCTAL]\n"
             "                [--socket-group NAME]\n"
             "                [--domain-by uid|vm|one] [--scan-ms N] [--scan-pages N]\n"
             "                [--c4-passes N] [--reads-hold-pages] [--no-cow]\n"
             "                [--secure] [--store-limit-mb N] [--swap-dir DIR]\n"
             "                [--max-vms N] [--max-connections N] [--agent-timeout-ms N]\n"
             "                [--quiet]\n"
             "One libdiffmem engine for every VMM on the host; VMMs connect with\n"
             "dmem_kvm_client_attach() (diffmem/daemon.h). Runs in the foreground\n"
             "until SIGTERM or SIGINT, then puts every page back and exits. An\n"
             "option's value may also follow an '=' (--scan-ms=50). See diffmemd(8).\n");
}

/* Strings from the config file live as long as the daemon. */
static char conf_strings[3][PATH_MAX];

/* One option, from the command line (name without "--") or the config
 * file. Flags take "yes" or "no" (a command-line flag passes "yes").
 * Returns 0, or -1 with why set. */
static int set_option(const char *name, const char *v, int from_file, char *why, size_t whylen)
{
  unsigned long long n;
  int *flag = !strcmp(name, "secure")             ? &D.o.secure
              : !strcmp(name, "quiet")            ? &D.o.quiet
              : !strcmp(name, "reads-hold-pages") ? &D.o.reads_hold
              : !strcmp(name, "no-cow")           ? &D.o.no_cow
                                                  : NULL;
  if (flag) {
    if (strcmp(v, "yes") && strcmp(v, "no")) {
      snprintf(why, whylen, "takes yes or no");
      return -1;
    }
    *flag = v[0] == 'y';
    return 0;
  }
  int str = !strcmp(name, "socket")         ? 0
            : !strcmp(name, "socket-group") ? 1
            : !strcmp(name, "swap-dir")     ? 2
                                            : -1;
  if (str >= 0) {
    if (!*v || strlen(v) >= PATH_MAX) {
      snprintf(why, whylen, "needs a path or name");
      return -1;
    }
    if (from_file)
      v = strcpy(conf_strings[str], v);
    *(str == 0 ? &D.o.socket : str == 1 ? &D.o.group : &D.o.swap_dir) = v;
    return 0;
  }
  if (!strcmp(name, "socket-mode") && parse_num(v, 0, 0777, 8, &n) == 0)
    D.o.mode = (unsigned)n;
  else if (!strcmp(name, "domain-by") &&
           (!strcmp(v, "uid") || !strcmp(v, "vm") || !strcmp(v, "one")))
    D.o.domain_by = v[0] == 'u' ? BY_UID : v[0] == 'v' ? BY_VM : BY_ONE;
  else if (!strcmp(name, "scan-ms") && parse_num(v, 1, 60000, 10, &n) == 0)
    D.o.scan_ms = (unsigned)n;
  else if (!strcmp(name, "c4-passes") && parse_num(v, 2, 200, 10, &n) == 0)
    D.o.c4_passes = (unsigned)n;
  else if (!strcmp(name, "scan-pages") && parse_num(v, 1, 1u << 30, 10, &n) == 0)
    D.o.scan_pages = (unsigned long)n;
  else if (!strcmp(name, "store-limit-mb") && parse_num(v, 0, 1u << 30, 10, &n) == 0)
    D.o.store_limit_mb = n;
  else if (!strcmp(name, "max-vms") && parse_num(v, 1, 4096, 10, &n) == 0)
    D.o.max_vms = (unsigned)n;
  else if (!strcmp(name, "max-connections") && parse_num(v, 1, 65536, 10, &n) == 0)
    D.o.max_conns = (unsigned)n;
  else if (!strcmp(name, "agent-timeout-ms") && parse_num(v, 1, 600000, 10, &n) == 0)
    D.o.agent_timeout_ms = (unsigned)n;
  else {
    snprintf(why, whylen, "unknown, or a bad value \"%s\" (diffmemd.conf(5))", v);
    return -1;
  }
  return 0;
}

static int conf_set(void *ud, const char *key, const char *value, char *why, size_t whylen)
{
  (void)ud;
  return set_option(key, value, 1, why, whylen);
}

/* Reads the config file (at most 64 KiB). Returns 0, or 2 after saying why. */
static int load_config(const char *path)
{
  static char text[65536];
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "diffmemd: %s: %s\n", path, strerror(errno));
    return 2;
  }
  size_t n = fread(text, 1, sizeof text, f);
  int big = n == sizeof text && fgetc(f) != EOF, bad = ferror(f);
  fclose(f);
  if (big || bad) {
    fprintf(stderr, "diffmemd: %s: %s\n", path, big ? "larger than 64 KiB" : "read error");
    return 2;
  }
  char err[512];
  if (dconf_parse(text, n, conf_set, NULL, err, sizeof err) != 0) {
    fprintf(stderr, "diffmemd: %s: %s\n", path, err);
    return 2;
  }
  return 0;
}

static int parse_args(int argc, char **argv)
{
  const char *env = getenv("DIFFMEMD_SOCKET");
  D.o = (dopts){.socket = env && *env ? env : DMEM_DAEMON_SOCKET,
                .mode = 0660,
                .domain_by = BY_UID,
                .scan_ms = 100,
                .scan_pages = 4096,
                .max_vms = 64,
                .max_conns = 1024};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char why[256];
    if (strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "diffmemd: %s: unknown argument\n", a);
      return 2;
    }
    /* --name VALUE, or --name=VALUE */
    char buf[64];
    const char *name = a + 2, *eq = strchr(name, '=');
    if (eq) {
      size_t len = (size_t)(eq - name);
      if (len >= sizeof buf) {
        fprintf(stderr, "diffmemd: %s: unknown argument\n", a);
        return 2;
      }
      memcpy(buf, name, len);
      buf[len] = '\0';
      name = buf;
      v = eq + 1;
    }
    if (!eq && (!strcmp(name, "secure") || !strcmp(name, "quiet") ||
                !strcmp(name, "reads-hold-pages") || !strcmp(name, "no-cow"))) {
      (void)set_option(name, "yes", 0, why, sizeof why);
      continue;
    }
    if (!eq && !v) {
      fprintf(stderr, "diffmemd: %s: needs a value, or is unknown\n", a);
      return 2;
    }
    if (!eq)
      i++;
    if (!strcmp(name, "config")) {
      int rc = load_config(v);
      if (rc)
        return rc;
    } else if (set_option(name, v, 0, why, sizeof why) != 0) {
      fprintf(stderr, "diffmemd: %s: %s (diffmemd --help)\n", a, why);
      return 2;
    }
  }
  return 0;
}

int main(int argc, char **argv)
{
  if (argc == 2 && strcmp(argv[1], "--keeper") == 0)
    return keeper_main(3);
  D.keeper = -1;
  int rc = parse_args(argc, argv);
  if (rc)
    return rc;
  dmem_kvm_caps caps = DMEM_KVM_CAPS_INIT;
  if (dmem_kvm_probe(&caps) != 0 || !caps.uffd) {
    fprintf(stderr, "diffmemd: userfaultfd is not available here: %s\n", caps.reason);
    return 1;
  }
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  sigprocmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
  D.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.secure = D.o.secure;
  if (D.o.c4_passes)
    eo.c4_passes = D.o.c4_passes;
  eo.swap_dir = D.o.swap_dir;
  eo.store_limit_bytes = D.o.store_limit_mb << 20;
  if (D.sigfd < 0 || (rc = dmem_engine_create(&D.e, &eo)) != 0) {
    fprintf(stderr, "diffmemd: cannot make the engine: %s\n",
            D.sigfd < 0 ? strerror(errno) : dmem_err_name(rc));
    return 1;
  }
  ssize_t sl = readlink("/proc/self/exe", D.self, sizeof D.self - 1);
  if (sl <= 0 || keeper_start() != 0) {
    fprintf(stderr, "diffmemd: cannot start the keeper (%s): %s\n", sl > 0 ? D.self : "?",
            strerror(errno));
    keeper_stop();
    dmem_engine_destroy(D.e);
    return 1;
  }
  D.lfd = listen_on(D.o.socket);
  if (D.lfd < 0 || dmem_engine_start(D.e, D.o.scan_ms, D.o.scan_pages) != 0) {
    keeper_stop();
    if (D.bound && D.lfd >= 0)
      unlink(D.o.socket);
    dmem_engine_destroy(D.e);
    return 1;
  }
  say("listening on %s (mode %03o), keeper pid %d, sharing domains by %s%s; engine scans %lu "
      "pages every %u ms",
      D.o.socket, D.o.mode, (int)D.keeper_pid,
      D.o.domain_by == BY_UID  ? "user"
      : D.o.domain_by == BY_VM ? "VM (none shared)"
                               : "none (one)",
      D.o.secure ? ", secure mode" : "", D.o.scan_pages, D.o.scan_ms);
  int stop = 0;
  struct pollfd *pf = NULL;
  while (!stop) {
    struct pollfd *np = realloc(pf, (D.nconns + 3) * sizeof *pf);
    if (!np) {
      say("out of memory in the event loop; stopping");
      break;
    }
    pf = np;
    pf[0] = (struct pollfd){.fd = D.sigfd, .events = POLLIN};
    pf[1] = (struct pollfd){.fd = D.lfd, .events = POLLIN};
    unsigned n = D.nconns;
    for (unsigned i = 0; i < n; i++)
      pf[i + 2] = (struct pollfd){.fd = D.conns[i]->fd, .events = POLLIN};
    /* The keeper never writes: its socket stirs only when it is gone. */
    pf[n + 2] = (struct pollfd){.fd = D.keeper, .events = POLLIN};
    if (poll(pf, n + 3, D.nlimbo ? 1000 : -1) < 0) {
      if (errno == EINTR)
        continue;
      say("poll: %s; stopping", strerror(errno));
      break;
    }
    if (pf[0].revents) {
      struct signalfd_siginfo si;
      if (read(D.sigfd, &si, sizeof si) == (ssize_t)sizeof si && si.ssi_signo != SIGHUP) {
        say("signal %u: putting every page back", si.ssi_signo);
        stop = 1;
      }
    }
    /* Connections from the last to the first: a dropped one is replaced
     * by the last, which was served already. */
    for (unsigned i = n; !stop && i-- > 0;)
      if (pf[i + 2].revents && i < D.nconns && D.conns[i]->fd == pf[i + 2].fd)
        (void)conn_serve(i);
    if (!stop && pf[1].revents)
      accept_one();
    if (!stop && pf[n + 2].revents && keeper_respawn() != 0)
      say("the keeper is gone and none could be started: a crash now would lose pages");
    if (!stop && D.nlimbo)
      limbo_retry(0);
  }
  free(pf);
  dmem_engine_stop(D.e);
  release_all();
  limbo_retry(1);
  free(D.conns);
  keeper_stop();
  dmem_engine_destroy(D.e);
  close(D.lfd);
  if (D.bound)
    unlink(D.o.socket);
  say("stopped");
  return 0;
}
