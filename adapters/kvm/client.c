/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The VMM's side of diffmemd (diffmem/daemon.h): a userfaultfd over the
 * VMM's mapping of its RAM, handed with the memfd to the daemon, and a
 * socket kept open for the life of the VM. The daemon serves every fault,
 * and should it die, its keeper puts every page back. The client keeps its
 * own copy of the userfaultfd all the same, so that the registration never
 * ends while a page may be away: were it dropped, a punched page would read
 * as zeros, silently; kept, a touch of it waits until someone puts the page
 * back.
 *
 * The agent. Mapping a shared page copy-on-write is an mmap over the
 * VMM's page, which only the VMM's own process can make; the client runs
 * one thread, the agent, that makes it when the daemon asks
 * (DMEM_PROTO_MAP on a socket of its own), and keeps a bit per page it
 * mapped. Its rule: it alone moves a page from a frame back onto the
 * memfd, and always copies the page's content (the frame, or the VMM's
 * private copy after a write) into the memfd first. When the daemon asks
 * it, the daemon has write-protected the page, so no write lands between
 * the copy and the mapping. When the socket closes (the daemon and its
 * keeper have let the VM go, or the client detaches), the agent moves
 * every page it still has mapped back itself: it write-protects the page
 * through its own userfaultfd first, for the same reason. Until then such
 * a page is a private mapping holding the right content, so the VMM never
 * reads a wrong byte whatever the daemon does or fails to do; only the
 * memfd lags behind it. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <diffmem/daemon.h>

#include "uffd.h"

#define PAGE DMEM_PAGE_SIZE

struct dmem_kvm_client {
  int sock, uffd;
  uint32_t vm, domain, seq;
  unsigned timeout_ms;
  int released; /* the daemon let the VM go unasked (it stopped) */
  uint64_t features;

  /* The agent (when the daemon uses one): its socket, the frames memfd
   * (read-only), a copy of the RAM's memfd, the RAM, and a bit per page
   * it mapped onto a frame (the agent thread's alone). */
  int agent_sock, frames_fd, ram_fd;
  uint8_t *ram;
  uint64_t size, fd_offset;
  uint64_t *mapped;
  int have_agent;
  pthread_t agent;
};

/* A message buffer, aligned for the stats entries. */
typedef union msgbuf {
  uint64_t align;
  uint8_t b[DMEM_PROTO_MAX];
} msgbuf;

static int fail(char *err, size_t len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t len, int rc, const char *fmt, ...)
{
  if (err && len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
  }
  return rc;
}

/* Waits for the reply to request seq; an unasked RELEASED on the way is
 * noted. 0 with *msg set, or an error. The reply's descriptors (up to 2)
 * go into fds (their count into *nfds) when fds is given, and are closed
 * otherwise, as are those of any other message. */
static int await_reply(dmem_kvm_client *c, uint32_t seq, dmem_proto_msg *msg, msgbuf *buf, int *fds,
                       int *nfds, char *err, size_t errlen)
{
  if (nfds)
    *nfds = 0;
  for (;;) {
    int got[2], ngot = 0;
    long n = dmem_proto_recv(c->sock, buf->b, sizeof buf->b, got, 2, &ngot, (int)c->timeout_ms);
    if (n > 0 && fds && ngot) {
      /* kept only if this is the reply */
      dmem_proto_msg peek;
      if (dmem_proto_parse(&peek, buf->b, (size_t)n) == 0 && peek.hdr.seq == seq) {
        memcpy(fds, got, (size_t)ngot * sizeof *got);
        *nfds = ngot;
        ngot = 0;
      }
    }
    for (int i = 0; i < ngot; i++)
      close(got[i]);
    if (n == 0)
      return fail(err, errlen, DMEM_EIO, "the daemon closed the connection");
    if (n < 0)
      return fail(err, errlen, DMEM_EIO, "no answer from the daemon: %s", strerror(errno));
    int rc = dmem_proto_parse(msg, buf->b, (size_t)n);
    if (rc == DMEM_EVERSION)
      return fail(err, errlen, rc, "the daemon speaks protocol version %u, not %u",
                  (unsigned)msg->hdr.version, DMEM_PROTO_VERSION);
    if (rc)
      return fail(err, errlen, DMEM_EIO, "a malformed message from the daemon");
    if (msg->hdr.seq == 0 && msg->hdr.type == DMEM_PROTO_RELEASED) {
      c->released = 1;
      continue;
    }
    if (msg->hdr.seq != seq)
      continue; /* an answer to nothing pending: ignored */
    if (msg->hdr.type == DMEM_PROTO_ERROR) {
      rc = msg->u.error.code;
      if (rc >= 0 || rc <= DMEM_ERRNO_LAST_)
        rc = DMEM_EIO;
      return fail(err, errlen, rc, "the daemon refused: %s", msg->u.error.msg);
    }
    return 0;
  }
}

static const char *socket_path(const dmem_kvm_client_options *o)
{
  if (o->socket)
    return o->socket;
  const char *env = getenv("DIFFMEMD_SOCKET");
  return env && *env ? env : DMEM_DAEMON_SOCKET;
}

static int check_ram(const dmem_kvm_client_options *o, char *err, size_t errlen)
{
  if (!o->addr || !o->size || o->size % PAGE || o->fd_offset % PAGE || (uintptr_t)o->addr % PAGE ||
      o->fd < 0)
    return fail(err, errlen, DMEM_EINVAL,
                "the RAM needs a memfd, a page-aligned mapping and offset, and a size that is "
                "a non-zero multiple of the page size");
  struct stat st;
  if (fstat(o->fd, &st) != 0)
    return fail(err, errlen, DMEM_EINVAL, "fd %d: %s", o->fd, strerror(errno));
  if ((uint64_t)st.st_size < o->fd_offset || (uint64_t)st.st_size - o->fd_offset < o->size)
    return fail(err, errlen, DMEM_EINVAL, "fd %d holds %llu bytes, short of %llu", o->fd,
                (unsigned long long)st.st_size, (unsigned long long)(o->fd_offset + o->size));
  int seals = fcntl(o->fd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK))
    return fail(err, errlen, DMEM_EINVAL,
                "fd %d is not a memfd sealed against shrinking (F_SEAL_SHRINK): the daemon "
                "maps it, and would fault on a shrunk file",
                o->fd);
  return 0;
}

static int connect_to(const char *path, char *err, size_t errlen)
{
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path)
    return fail(err, errlen, DMEM_EINVAL, "socket path too long: %s", path);
  memcpy(a.sun_path, path, strlen(path) + 1);
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0)
    return fail(err, errlen, DMEM_ESYS, "socket: %s", strerror(errno));
  int rc;
  while ((rc = connect(s, (struct sockaddr *)&a, sizeof a)) != 0 && errno == EINTR)
    ;
  if (rc != 0) {
    int e = errno;
    close(s);
    return fail(err, errlen, e == EACCES || e == EPERM ? DMEM_EPERM : DMEM_EIO,
                "no diffmemd at %s: %s", path, strerror(e));
  }
  return s;
}

/* ---------------------------------------------------------------- agent */

static void agent_stop(dmem_kvm_client *c);

static int bit(const uint64_t *b, uint64_t i)
{
  return (b[i / 64] >> (i % 64)) & 1;
}

static int copy_out(const dmem_kvm_client *c, uint64_t gfn)
{
  const uint8_t *src = c->ram + gfn * PAGE;
  off_t off = (off_t)(c->fd_offset + gfn * PAGE);
  size_t done = 0;
  while (done < PAGE) {
    ssize_t k = pwrite(c->ram_fd, src + done, PAGE - done, off + (off_t)done);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    done += (size_t)k;
  }
  return 0;
}

/* The page's content into the memfd, then the memfd under it: 0 or -1
 * (the page is then still mapped onto its frame, content intact). */
static int back_to_ram(dmem_kvm_client *c, uint64_t gfn)
{
  if (copy_out(c, gfn) != 0)
    return -1;
  if (mmap(c->ram + gfn * PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, c->ram_fd,
           (off_t)(c->fd_offset + gfn * PAGE)) == MAP_FAILED)
    return -1;
  c->mapped[gfn / 64] &= ~(1ull << (gfn % 64));
  return 0;
}

/* The frame at offset, written into the memfd at page gfn: what the page
 * would have shown mapped. */
static void fill_from_frame(dmem_kvm_client *c, uint64_t gfn, uint64_t offset)
{
  static __thread uint8_t page[PAGE];
  if (pread(c->frames_fd, page, PAGE, (off_t)offset) == (ssize_t)PAGE)
    (void)!pwrite(c->ram_fd, page, PAGE, (off_t)(c->fd_offset + gfn * PAGE));
}

/* DMEM_PROTO_MAP_FRAME: no answer; the threads waiting on the page are
 * woken whatever happens. */
static void map_frame(dmem_kvm_client *c, uint64_t gfn, uint64_t offset)
{
  uint64_t uaddr = (uint64_t)(uintptr_t)(c->ram + gfn * PAGE);
  struct stat st;
  if (bit(c->mapped, gfn)) {
    /* mapped already: nothing to do */
  } else if (fstat(c->frames_fd, &st) != 0 || (uint64_t)st.st_size < offset + PAGE) {
    /* past the frames' end (a touch would SIGBUS): not a frame */
  } else if (mmap(c->ram + gfn * PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
                  c->frames_fd, (off_t)offset) == MAP_FAILED) {
    /* No room for another mapping (vm.max_map_count): the page gets the
     * frame's content in the memfd instead, where the waiters find it. */
    fill_from_frame(c, gfn, offset);
  } else {
    c->mapped[gfn / 64] |= 1ull << (gfn % 64);
    /* Filled now, so that the guest's reads need no fault; then a write
     * must stop as a WP fault (the mmap ended the registration here). */
    (void)madvise(c->ram + gfn * PAGE, PAGE, MADV_POPULATE_READ);
    struct uffdio_register reg = {.range = {uaddr, PAGE}, .mode = UFFDIO_REGISTER_MODE_WP};
    struct uffdio_writeprotect wp = {.range = {uaddr, PAGE}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(c->uffd, UFFDIO_REGISTER, &reg) == 0)
      (void)ioctl(c->uffd, UFFDIO_WRITEPROTECT, &wp);
    /* (Refused, the page would take writes unseen: its content stays
     * right, and RAM copies it back all the same.) */
  }
  struct uffdio_range rg = {uaddr, PAGE};
  (void)ioctl(c->uffd, UFFDIO_WAKE, &rg);
}

/* DMEM_PROTO_MAP_RAM: the answer. */
static dmem_proto_map_done map_ram(dmem_kvm_client *c, uint64_t gfn)
{
  dmem_proto_map_done d = {0, 0};
  /* A page not mapped here has its content in the memfd already. */
  if (bit(c->mapped, gfn) && back_to_ram(c, gfn) != 0) {
    d.error = (uint32_t)errno;
    d.code = DMEM_ESYS;
  }
  return d;
}

/* Serves one request; 1 when it is answered (into *d). */
static int agent_do(dmem_kvm_client *c, const dmem_proto_map *m, dmem_proto_map_done *d)
{
  uint64_t base = (uint64_t)(uintptr_t)c->ram;
  int answer = m->what == DMEM_PROTO_MAP_RAM;
  if (m->addr < base || m->addr - base >= c->size) {
    d->code = DMEM_EINVAL; /* not our RAM */
    d->error = 0;
    return answer;
  }
  uint64_t gfn = (m->addr - base) / PAGE;
  if (!answer) {
    map_frame(c, gfn, m->offset);
    return 0;
  }
  *d = map_ram(c, gfn);
  return 1;
}

/* The agent stops: every page still on a frame goes back to the memfd,
 * write-protected meanwhile where the kernel can (nobody lifts that
 * protection but the wake at the end, which makes waiting writers fault
 * again on the memfd). @p released: the socket reached its end, so the
 * daemon (and its keeper) let the VM go and every request it made has been
 * served: the registration ends here too (a keeper leaves it to the agent,
 * for the pages it had yet to map). */
static void agent_restore(dmem_kvm_client *c, int released)
{
  uint64_t npages = c->size / PAGE;
  for (uint64_t g = 0; g < npages; g++) {
    if (!bit(c->mapped, g))
      continue;
    uint64_t addr = (uint64_t)(uintptr_t)(c->ram + g * PAGE);
    if (c->features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) {
      struct uffdio_register reg = {.range = {addr, PAGE}, .mode = UFFDIO_REGISTER_MODE_WP};
      struct uffdio_writeprotect wp = {.range = {addr, PAGE}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
      if (ioctl(c->uffd, UFFDIO_REGISTER, &reg) == 0)
        (void)ioctl(c->uffd, UFFDIO_WRITEPROTECT, &wp);
    }
    (void)back_to_ram(c, g); /* else it stays a private page: still right */
    struct uffdio_range rg = {addr, PAGE};
    (void)ioctl(c->uffd, UFFDIO_WAKE, &rg);
  }
  if (released)
    dmem__uffd_unregister(c->uffd, (uint64_t)(uintptr_t)c->ram, c->size);
}

static void *agent_main(void *arg)
{
  dmem_kvm_client *c = arg;
  union {
    uint64_t align;
    uint8_t b[sizeof(dmem_proto_hdr) + sizeof(dmem_proto_map)];
  } in, out;
  int released = 0;
  for (;;) {
    long n = dmem_proto_recv(c->agent_sock, in.b, sizeof in.b, NULL, 0, NULL, -1);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    dmem_proto_msg m;
    released = n == 0;
    if (n <= 0 || dmem_proto_parse(&m, in.b, (size_t)n) != 0 || m.hdr.type != DMEM_PROTO_MAP)
      break; /* closed, or not the daemon talking */
    dmem_proto_map_done d;
    if (!agent_do(c, &m.u.map, &d))
      continue;
    size_t k = dmem_proto_encode(out.b, sizeof out.b, DMEM_PROTO_MAP_DONE, m.hdr.seq, &d, sizeof d);
    if (dmem_proto_send(c->agent_sock, out.b, k, NULL, 0, 0) != 0)
      break;
  }
  agent_restore(c, released);
  return NULL;
}

/* Runs the agent over sock and the frames memfd (both taken); without it
 * (no memory, no thread) both are closed, and the daemon, finding the
 * socket closed, copies shared pages instead. */
static void agent_start(dmem_kvm_client *c, const dmem_kvm_client_options *o, int sock, int frames)
{
  c->agent_sock = sock;
  c->frames_fd = frames;
  c->ram = o->addr;
  c->size = o->size;
  c->fd_offset = o->fd_offset;
  c->ram_fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 0);
  c->mapped = calloc((o->size / PAGE + 63) / 64, sizeof *c->mapped);
  sigset_t all, old;
  sigfillset(&all);
  /* The VMM's signals stay with its own threads. */
  pthread_sigmask(SIG_SETMASK, &all, &old);
  if (c->ram_fd >= 0 && c->mapped && pthread_create(&c->agent, NULL, agent_main, c) == 0)
    c->have_agent = 1;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (c->have_agent) {
    (void)pthread_setname_np(c->agent, "dmem-agent");
    return;
  }
  agent_stop(c);
}

static void agent_stop(dmem_kvm_client *c)
{
  if (c->have_agent) {
    /* Its socket reads end of file now: it puts back what it mapped. */
    shutdown(c->agent_sock, SHUT_RDWR);
    pthread_join(c->agent, NULL);
    c->have_agent = 0;
  }
  if (c->agent_sock >= 0)
    close(c->agent_sock);
  if (c->frames_fd >= 0)
    close(c->frames_fd);
  if (c->ram_fd >= 0)
    close(c->ram_fd);
  free(c->mapped);
  c->mapped = NULL;
  c->agent_sock = c->frames_fd = c->ram_fd = -1;
}

int dmem_kvm_client_attach(dmem_kvm_client **out, const dmem_kvm_client_options *o, char *err,
                           size_t errlen)
{
  if (err && errlen)
    err[0] = 0;
  if (!out || !o)
    return fail(err, errlen, DMEM_EINVAL, "NULL argument");
  *out = NULL;
  if (o->version != DMEM_KVM_CLIENT_OPTIONS_VERSION)
    return fail(err, errlen, DMEM_EVERSION, "client options version %u, this library knows %u",
                o->version, DMEM_KVM_CLIENT_OPTIONS_VERSION);
  int rc = check_ram(o, err, errlen);
  if (rc)
    return rc;
  uint64_t have;
  char why[DMEM_ERRBUF_SIZE];
  rc = dmem__uffd_features(&have, why, sizeof why);
  if (rc)
    return fail(err, errlen, rc, "%s", why);
  /* MISSING to serve evicted pages, WP for the modified bits; MINOR
   * tracking needs the faulting process's own mapping, which the daemon
   * does not have. */
  uint64_t features = UFFD_FEATURE_MISSING_SHMEM | (have & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
  dmem_kvm_client *c = calloc(1, sizeof *c);
  msgbuf *buf = malloc(sizeof *buf);
  if (!c || !buf) {
    free(c);
    free(buf);
    return fail(err, errlen, DMEM_ENOMEM, "out of memory");
  }
  c->sock = c->uffd = c->agent_sock = c->frames_fd = c->ram_fd = -1;
  c->timeout_ms = o->timeout_ms ? o->timeout_ms : 10000;
  c->features = features;
  rc = dmem__uffd_register(&c->uffd, features, (uint64_t)(uintptr_t)o->addr, o->size, why,
                           sizeof why);
  if (rc) {
    fail(err, errlen, rc, "%s", why);
    goto out;
  }
  c->sock = connect_to(socket_path(o), err, errlen);
  if (c->sock < 0) {
    rc = c->sock;
    goto out;
  }
  dmem_proto_attach a;
  memset(&a, 0, sizeof a);
  a.size = o->size;
  a.fd_offset = o->fd_offset;
  a.uffd_addr = (uint64_t)(uintptr_t)o->addr;
  a.uffd_features = features;
  if (features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)
    a.flags = DMEM_PROTO_ATTACH_AGENT;
  snprintf(a.name, sizeof a.name, "%s", o->name ? o->name : "vm");
  uint32_t seq = ++c->seq;
  size_t n = dmem_proto_encode(buf->b, sizeof buf->b, DMEM_PROTO_ATTACH, seq, &a, sizeof a);
  int fds[2] = {o->fd, c->uffd};
  if (dmem_proto_send(c->sock, buf->b, n, fds, 2, 0) != 0) {
    rc = fail(err, errlen, DMEM_EIO, "sending to the daemon: %s", strerror(errno));
    goto out;
  }
  dmem_proto_msg m;
  int afds[2], nafds = 0;
  rc = await_reply(c, seq, &m, buf, afds, &nafds, err, errlen);
  if (rc == 0 && m.hdr.type != DMEM_PROTO_ATTACHED)
    rc = fail(err, errlen, DMEM_EIO, "the daemon answered ATTACH with message type %u",
              (unsigned)m.hdr.type);
  if (rc == 0 && m.u.attached.pages != o->size / PAGE)
    rc = fail(err, errlen, DMEM_EIO, "the daemon took %llu pages of %llu",
              (unsigned long long)m.u.attached.pages, (unsigned long long)(o->size / PAGE));
  if (rc == 0) {
    c->vm = m.u.attached.vm;
    c->domain = m.u.attached.domain;
    if ((m.u.attached.flags & DMEM_PROTO_ATTACHED_AGENT) && nafds == 2) {
      agent_start(c, o, afds[0], afds[1]);
      nafds = 0;
    }
  }
  for (int i = 0; i < nafds; i++)
    close(afds[i]);
out:
  free(buf);
  if (rc) {
    /* The daemon, if it got the descriptors, dropped them with its
     * refusal; ours go now, and with them the registration. */
    if (c->sock >= 0)
      close(c->sock);
    if (c->uffd >= 0)
      close(c->uffd);
    free(c);
    return rc;
  }
  *out = c;
  return 0;
}

/* Reads what is already there; notes a RELEASED of this VM. */
static void drain_released(dmem_kvm_client *c, msgbuf *buf)
{
  dmem_proto_msg m;
  long n;
  while (!c->released &&
         (n = dmem_proto_recv(c->sock, buf->b, sizeof buf->b, NULL, 0, NULL, 0)) > 0)
    if (dmem_proto_parse(&m, buf->b, (size_t)n) == 0 && m.hdr.type == DMEM_PROTO_RELEASED &&
        m.u.vm.vm == c->vm)
      c->released = 1;
}

int dmem_kvm_client_detach(dmem_kvm_client *c)
{
  if (!c)
    return 0;
  int rc = 0;
  msgbuf *buf = malloc(sizeof *buf);
  if (!buf)
    return DMEM_ENOMEM; /* the client stays: the call may be retried */
  /* A RELEASED the daemon sent when it stopped may be waiting. */
  dmem_proto_msg m;
  long n;
  drain_released(c, buf);
  if (!c->released) {
    dmem_proto_vm v = {c->vm, 0};
    uint32_t seq = ++c->seq;
    n = (long)dmem_proto_encode(buf->b, sizeof buf->b, DMEM_PROTO_DETACH, seq, &v, sizeof v);
    if (dmem_proto_send(c->sock, buf->b, (size_t)n, NULL, 0, 0) != 0) {
      /* Gone since the look above: it may have said RELEASED first. */
      drain_released(c, buf);
      rc = c->released ? 0 : DMEM_EIO;
    } else {
      /* Detach puts every page back: it may take a while. */
      c->timeout_ms = c->timeout_ms < 120000 ? 120000 : c->timeout_ms;
      rc = await_reply(c, seq, &m, buf, NULL, NULL, NULL, 0);
      if (rc == 0 && m.hdr.type != DMEM_PROTO_RELEASED)
        rc = DMEM_EIO;
      if (rc && c->released)
        rc = 0; /* it stopped and let the VM go meanwhile */
    }
  }
  free(buf);
  agent_stop(c);
  close(c->sock);
  close(c->uffd);
  free(c);
  return rc;
}

uint32_t dmem_kvm_client_vm(const dmem_kvm_client *c)
{
  return c ? c->vm : UINT32_MAX;
}

uint32_t dmem_kvm_client_domain(const dmem_kvm_client *c)
{
  return c ? c->domain : 0;
}
