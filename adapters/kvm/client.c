/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The VMM's side of diffmemd (diffmem/daemon.h): a userfaultfd over the
 * VMM's mapping of its RAM, handed with the memfd to the daemon, and a
 * socket kept open for the life of the VM. The client runs no thread: the
 * daemon serves every fault, and should it die, its keeper puts every page
 * back. The client keeps its own copy of the userfaultfd all the same, so
 * that the registration never ends while a page may be away: were it
 * dropped, a punched page would read as zeros, silently; kept, a touch of
 * it waits until someone puts the page back. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
 * noted. 0 with *msg set, or an error. */
static int await_reply(dmem_kvm_client *c, uint32_t seq, dmem_proto_msg *msg, msgbuf *buf,
                       char *err, size_t errlen)
{
  for (;;) {
    long n = dmem_proto_recv(c->sock, buf->b, sizeof buf->b, NULL, 0, NULL, (int)c->timeout_ms);
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
  c->sock = c->uffd = -1;
  c->timeout_ms = o->timeout_ms ? o->timeout_ms : 10000;
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
  snprintf(a.name, sizeof a.name, "%s", o->name ? o->name : "vm");
  uint32_t seq = ++c->seq;
  size_t n = dmem_proto_encode(buf->b, sizeof buf->b, DMEM_PROTO_ATTACH, seq, &a, sizeof a);
  int fds[2] = {o->fd, c->uffd};
  if (dmem_proto_send(c->sock, buf->b, n, fds, 2, 0) != 0) {
    rc = fail(err, errlen, DMEM_EIO, "sending to the daemon: %s", strerror(errno));
    goto out;
  }
  dmem_proto_msg m;
  rc = await_reply(c, seq, &m, buf, err, errlen);
  if (rc == 0 && m.hdr.type != DMEM_PROTO_ATTACHED)
    rc = fail(err, errlen, DMEM_EIO, "the daemon answered ATTACH with message type %u",
              (unsigned)m.hdr.type);
  if (rc == 0 && m.u.attached.pages != o->size / PAGE)
    rc = fail(err, errlen, DMEM_EIO, "the daemon took %llu pages of %llu",
              (unsigned long long)m.u.attached.pages, (unsigned long long)(o->size / PAGE));
  if (rc == 0) {
    c->vm = m.u.attached.vm;
    c->domain = m.u.attached.domain;
  }
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
      rc = await_reply(c, seq, &m, buf, NULL, 0);
      if (rc == 0 && m.hdr.type != DMEM_PROTO_RELEASED)
        rc = DMEM_EIO;
      if (rc && c->released)
        rc = 0; /* it stopped and let the VM go meanwhile */
    }
  }
  free(buf);
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
