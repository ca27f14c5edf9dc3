/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The diffmemd protocol's messages (diffmem/daemon.h): one parser, which
 * the daemon runs on everything a client sends and the client on
 * everything the daemon sends, and one encoder. The parser is the
 * daemon's first line against a hostile VMM: it checks everything the
 * header promises before anything uses it, and never reads past the
 * packet. Fuzzed by tests/fuzz/fuzz_proto.c. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <diffmem/daemon.h>

#define PAGE DMEM_PAGE_SIZE

/* A NUL inside the field. */
static int terminated(const char *s, size_t cap)
{
  return memchr(s, 0, cap) != NULL;
}

static int aligned(uint64_t v)
{
  return v % PAGE == 0;
}

/* The payload size each type must have; 0 with *var set: a multiple of
 * one stats entry. */
static int payload_size(size_t *size, int *var, uint16_t type)
{
  *var = 0;
  switch (type) {
  case DMEM_PROTO_ATTACH:
    *size = sizeof(dmem_proto_attach);
    return 0;
  case DMEM_PROTO_DETACH:
  case DMEM_PROTO_RELEASED:
    *size = sizeof(dmem_proto_vm);
    return 0;
  case DMEM_PROTO_STATS:
    *size = 0;
    return 0;
  case DMEM_PROTO_ATTACHED:
    *size = sizeof(dmem_proto_attached);
    return 0;
  case DMEM_PROTO_ERROR:
    *size = sizeof(dmem_proto_error);
    return 0;
  case DMEM_PROTO_MAP:
    *size = sizeof(dmem_proto_map);
    return 0;
  case DMEM_PROTO_MAP_DONE:
    *size = sizeof(dmem_proto_map_done);
    return 0;
  case DMEM_PROTO_STATS_REPLY:
    *size = 0;
    *var = 1;
    return 0;
  default:
    return DMEM_ECORRUPT;
  }
}

static int check_attach(const dmem_proto_attach *a)
{
  if (!a->size || !aligned(a->size) || !aligned(a->fd_offset) || !aligned(a->uffd_addr))
    return DMEM_ECORRUPT;
  if (a->fd_offset > UINT64_MAX - a->size || a->uffd_addr > UINT64_MAX - a->size)
    return DMEM_ECORRUPT;
  if ((a->flags & ~DMEM_PROTO_ATTACH_AGENT) || a->reserved || !terminated(a->name, sizeof a->name))
    return DMEM_ECORRUPT;
  return 0;
}

static int check_map(const dmem_proto_map *m)
{
  if (!aligned(m->addr) || !aligned(m->offset) || m->reserved)
    return DMEM_ECORRUPT;
  if (m->what == DMEM_PROTO_MAP_FRAME)
    return m->offset <= UINT64_MAX - PAGE ? 0 : DMEM_ECORRUPT;
  return m->what == DMEM_PROTO_MAP_RAM && m->offset == 0 ? 0 : DMEM_ECORRUPT;
}

int dmem_proto_parse(dmem_proto_msg *out, const void *buf, size_t len)
{
  if (!out || (!buf && len))
    return DMEM_EINVAL;
  memset(out, 0, sizeof *out);
  if (len < sizeof(dmem_proto_hdr) || len > DMEM_PROTO_MAX)
    return DMEM_ECORRUPT;
  const uint8_t *b = buf;
  memcpy(&out->hdr, b, sizeof out->hdr);
  const dmem_proto_hdr *h = &out->hdr;
  if (h->magic != DMEM_PROTO_MAGIC)
    return DMEM_ECORRUPT;
  if (h->version != DMEM_PROTO_VERSION)
    return DMEM_EVERSION;
  size_t plen = len - sizeof *h, want;
  int var;
  if (h->length != plen || payload_size(&want, &var, h->type) != 0)
    return DMEM_ECORRUPT;
  const uint8_t *p = b + sizeof *h;
  if (var) {
    const size_t one = sizeof(dmem_proto_vm_stats);
    if (plen == 0 || plen % one != 0 || plen / one > DMEM_PROTO_STATS_MAX + 1)
      return DMEM_ECORRUPT;
    /* Entries are read in place: the header keeps them 8-byte aligned in
     * an aligned buffer; a copy is the caller's business otherwise. */
    if ((uintptr_t)p % _Alignof(dmem_proto_vm_stats) != 0)
      return DMEM_ECORRUPT;
    out->stats = (const dmem_proto_vm_stats *)(const void *)p;
    out->nstats = plen / one;
    for (size_t i = 0; i < out->nstats; i++) {
      const dmem_proto_vm_stats *s = &out->stats[i];
      if (!terminated(s->name, sizeof s->name) || (i == 0) != (s->vm == UINT32_MAX))
        return DMEM_ECORRUPT;
    }
    return 0;
  }
  if (plen != want)
    return DMEM_ECORRUPT;
  memcpy(&out->u, p, plen);
  switch (h->type) {
  case DMEM_PROTO_ATTACH:
    return check_attach(&out->u.attach);
  case DMEM_PROTO_DETACH:
  case DMEM_PROTO_RELEASED:
    return out->u.vm.reserved == 0 && out->u.vm.vm != UINT32_MAX ? 0 : DMEM_ECORRUPT;
  case DMEM_PROTO_ATTACHED: {
    const dmem_proto_attached *a = &out->u.attached;
    return a->vm != UINT32_MAX && a->pages && !(a->flags & ~DMEM_PROTO_ATTACHED_AGENT) &&
                   !a->reserved
               ? 0
               : DMEM_ECORRUPT;
  }
  case DMEM_PROTO_MAP:
    return check_map(&out->u.map);
  case DMEM_PROTO_MAP_DONE: {
    int32_t c = out->u.map_done.code;
    return c == 0 || (c < 0 && c > DMEM_ERRNO_LAST_) ? 0 : DMEM_ECORRUPT;
  }
  case DMEM_PROTO_ERROR: {
    const dmem_proto_error *e = &out->u.error;
    return e->code < 0 && e->reserved == 0 && terminated(e->msg, sizeof e->msg) ? 0 : DMEM_ECORRUPT;
  }
  default:
    return 0; /* STATS: no payload */
  }
}

size_t dmem_proto_encode(void *buf, size_t cap, dmem_proto_type type, uint32_t seq,
                         const void *payload, size_t plen)
{
  size_t total = sizeof(dmem_proto_hdr) + plen;
  if (!buf || (plen && !payload) || total > cap || total > DMEM_PROTO_MAX)
    return 0;
  dmem_proto_hdr h = {DMEM_PROTO_MAGIC, DMEM_PROTO_VERSION, (uint16_t)type, (uint32_t)plen, seq};
  memcpy(buf, &h, sizeof h);
  if (plen)
    memcpy((uint8_t *)buf + sizeof h, payload, plen);
  return total;
}

/* ---------------------------------------------------------------- packets */

int dmem_proto_send(int sock, const void *buf, size_t len, const int *fds, int nfds, int nonblock)
{
  union {
    char buf[CMSG_SPACE(DMEM_PROTO_FDS_MAX * sizeof(int))];
    struct cmsghdr align;
  } c;
  if (nfds < 0 || nfds > DMEM_PROTO_FDS_MAX || (nfds && !fds)) {
    errno = EINVAL;
    return -1;
  }
  memset(&c, 0, sizeof c);
  struct iovec iov = {(void *)buf, len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds) {
    m.msg_control = c.buf;
    m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(h), fds, (size_t)nfds * sizeof(int));
  }
  for (;;) {
    ssize_t k = sendmsg(sock, &m, MSG_NOSIGNAL | (nonblock ? MSG_DONTWAIT : 0));
    if (k == (ssize_t)len)
      return 0;
    if (k < 0 && errno == EINTR)
      continue;
    if (k >= 0)
      errno = EMSGSIZE; /* a packet socket sends all or nothing */
    return -1;
  }
}

long dmem_proto_recv(int sock, void *buf, size_t cap, int *fds, int maxfds, int *nfds,
                     int timeout_ms)
{
  if (nfds)
    *nfds = 0;
  if (maxfds < 0 || maxfds > DMEM_PROTO_FDS_MAX || (maxfds && (!fds || !nfds))) {
    errno = EINVAL;
    return -1;
  }
  if (timeout_ms >= 0) {
    struct pollfd p = {.fd = sock, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
      ;
    if (r == 0)
      errno = ETIMEDOUT;
    if (r <= 0)
      return -1;
  }
  /* Room for more descriptors than allowed, so that extras are seen (and
   * closed) rather than silently cut off. */
  union {
    char buf[CMSG_SPACE(2 * DMEM_PROTO_FDS_MAX * sizeof(int))];
    struct cmsghdr align;
  } c;
  struct iovec iov = {buf, cap};
  struct msghdr m = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof c.buf};
  /* A peer that closed with our request unread leaves ECONNRESET, which
   * the kernel reports before the packets still queued for us (its last
   * words, a RELEASED say); once reported, the error is gone, so read once
   * more for them. */
  ssize_t n;
  int reset = 0;
  for (;;) {
    n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | (timeout_ms >= 0 || reset ? MSG_DONTWAIT : 0));
    if (n >= 0)
      break;
    if (errno == EINTR)
      continue;
    if (errno == ECONNRESET && !reset) {
      reset = 1;
      continue;
    }
    if (reset && (errno == EAGAIN || errno == EWOULDBLOCK))
      errno = ECONNRESET;
    break;
  }
  int got = 0, bad = n > 0 && (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); n >= 0 && h; h = CMSG_NXTHDR(&m, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
      continue;
    size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
      if (got < maxfds)
        fds[got++] = fd;
      else
        close(fd), bad = 1;
    }
  }
  if (bad) {
    for (int i = 0; i < got; i++)
      close(fds[i]);
    errno = EMSGSIZE;
    return -1;
  }
  if (nfds)
    *nfds = got;
  return (long)n;
}
