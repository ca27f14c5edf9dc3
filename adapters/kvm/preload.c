/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* libdiffmem-preload.so: diffmemd for an unmodified QEMU (LD_PRELOAD).
 *
 * QEMU's memory-backend-memfd keeps guest RAM in a memfd it names
 * "memory-backend-memfd", seals (seal=on is its default) and maps shared.
 * This library interposes memfd_create() to note such memfds, and mmap()
 * to hand the first shared, writable mapping of one to diffmemd with
 * dmem_kvm_client_attach() (socket: $DIFFMEMD_SOCKET, else
 * /run/diffmemd.sock). Everything else QEMU maps passes straight through.
 *
 * Safety first: a second mapping of a memfd the daemon serves would read
 * punched pages as zeros, and an munmap() would leave the daemon serving a
 * range that is gone. So before either, the VM is detached (every page
 * back in the memfd) and left unmanaged, and the library says so once.
 * When the daemon is missing or refuses, QEMU runs as if the library were
 * not there, and says so once on stderr. DIFFMEM_PRELOAD_DEBUG=1 says what
 * it sees.
 *
 * Likewise before QEMU hands guest RAM to anything that would read the
 * memfd's holes: a vhost-user backend (the memfd leaves in a sendmsg()),
 * or postcopy migration (QEMU opens a userfaultfd of its own, through
 * syscall() or /dev/userfaultfd). Our own library's calls are told apart
 * by a thread-local flag (inside).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <diffmem/daemon.h>

#define MAXRAM 16
#define PRELOAD_EXPORT __attribute__((visibility("default")))

typedef struct ram {
  int fd;
  dev_t dev; /* the memfd's identity, for its copies (dup, SCM_RIGHTS) */
  ino_t ino;
  int mapped; /* the daemon has it (client != NULL) or gave up */
  void *addr; /* the served mapping */
  size_t len;
  dmem_kvm_client *client; /* NULL: unmanaged */
} ram;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static ram rams[MAXRAM];
static unsigned nrams;
static __thread int inside; /* our own calls pass straight through */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n > 0)
    (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static int debug(void)
{
  const char *d = getenv("DIFFMEM_PRELOAD_DEBUG");
  return d && *d == '1';
}

static void *real(const char *name)
{
  return dlsym(RTLD_NEXT, name);
}

static ram *find_fd(int fd)
{
  for (unsigned i = 0; i < nrams; i++)
    if (rams[i].fd == fd)
      return &rams[i];
  return NULL;
}

PRELOAD_EXPORT int memfd_create(const char *name, unsigned int flags)
{
  static int (*next)(const char *, unsigned int);
  if (!next)
    next = (int (*)(const char *, unsigned int))real("memfd_create");
  int fd = next ? next(name, flags) : (int)syscall(SYS_memfd_create, name, flags);
  if (fd >= 0 && !inside && name && strcmp(name, "memory-backend-memfd") == 0) {
    struct stat st;
    pthread_mutex_lock(&mu);
    if (nrams < MAXRAM && fstat(fd, &st) == 0)
      rams[nrams++] = (ram){.fd = fd, .dev = st.st_dev, .ino = st.st_ino};
    pthread_mutex_unlock(&mu);
    if (debug())
      say("libdiffmem-preload: guest RAM memfd %d\n", fd);
  }
  return fd;
}

/* Detaches r (every page back in the memfd) and leaves it unmanaged. */
static void give_up(ram *r, const char *why)
{
  if (!r->client)
    return;
  inside++;
  int rc = dmem_kvm_client_detach(r->client);
  inside--;
  r->client = NULL;
  say("libdiffmem-preload: %s; guest RAM (memfd %d) left to QEMU alone%s\n", why, r->fd,
      rc ? " (the daemon did not give every page back!)" : "");
}

static void attach(ram *r, void *addr, size_t len, off_t off)
{
  r->mapped = 1;
  r->addr = addr;
  r->len = len;
  char name[48], err[DMEM_ERRBUF_SIZE];
  snprintf(name, sizeof name, "qemu-%d", (int)getpid());
  dmem_kvm_client_options o = DMEM_KVM_CLIENT_OPTIONS_INIT;
  o.fd = r->fd;
  o.fd_offset = (uint64_t)off;
  o.addr = addr;
  o.size = len;
  o.name = name;
  inside++;
  int rc = dmem_kvm_client_attach(&r->client, &o, err, sizeof err);
  inside--;
  if (rc) {
    r->client = NULL;
    say("libdiffmem-preload: running without diffmemd: %s\n", err);
  } else if (debug()) {
    say("libdiffmem-preload: %zu MiB of guest RAM served by diffmemd (vm %u, domain %u)\n",
        len >> 20, dmem_kvm_client_vm(r->client), dmem_kvm_client_domain(r->client));
  }
}

PRELOAD_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  static void *(*next)(void *, size_t, int, int, int, off_t);
  if (!next)
    next = (void *(*)(void *, size_t, int, int, int, off_t))real("mmap");
  if (inside || fd < 0)
    return next(addr, len, prot, flags, fd, off);
  pthread_mutex_lock(&mu);
  ram *r = find_fd(fd);
  if (r && r->client) /* another view of RAM the daemon serves */
    give_up(r, "QEMU maps its guest RAM a second time");
  pthread_mutex_unlock(&mu);
  void *p = next(addr, len, prot, flags, fd, off);
  if (p == MAP_FAILED || !r || r->mapped || !(flags & MAP_SHARED) || !(prot & PROT_WRITE) ||
      len % DMEM_PAGE_SIZE)
    return p;
  pthread_mutex_lock(&mu);
  if (!r->mapped)
    attach(r, p, len, off);
  pthread_mutex_unlock(&mu);
  return p;
}

/* The served RAM whose memfd fd is (a copy of), or NULL. Under mu. */
static ram *served_file(int fd)
{
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0)
    return NULL;
  for (unsigned i = 0; i < nrams; i++)
    if (rams[i].client && rams[i].dev == st.st_dev && rams[i].ino == st.st_ino)
      return &rams[i];
  return NULL;
}

/* Leaves every served RAM to QEMU alone. Under mu. */
static void give_up_all(const char *why)
{
  for (unsigned i = 0; i < nrams; i++)
    give_up(&rams[i], why);
}

/* vhost-user: QEMU hands guest RAM's memfd to a backend process (a
 * virtio-fs daemon, a DPDK switch), which maps it and would read every
 * evicted page as zeros. Every page goes back first. */
PRELOAD_EXPORT ssize_t sendmsg(int sock, const struct msghdr *msg, int flags)
{
  static ssize_t (*next)(int, const struct msghdr *, int);
  if (!next)
    next = (ssize_t(*)(int, const struct msghdr *, int))real("sendmsg");
  if (!inside && msg && msg->msg_control && msg->msg_controllen) {
    pthread_mutex_lock(&mu);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
        continue;
      size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < nfd; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof fd, sizeof fd);
        ram *r = served_file(fd);
        if (r)
          give_up(r, "QEMU hands its guest RAM to another process (a vhost-user device?)");
      }
    }
    pthread_mutex_unlock(&mu);
  }
  if (!next) {
    errno = ENOSYS;
    return -1;
  }
  return next(sock, msg, flags);
}

/* Postcopy migration: QEMU registers guest RAM with a userfaultfd of its
 * own, which the kernel refuses while ours holds the range; and its
 * incoming side fills pages through it. QEMU opening one means the guest
 * goes to QEMU alone. */
static void userfaultfd_opened(void)
{
  pthread_mutex_lock(&mu);
  give_up_all("QEMU opens a userfaultfd of its own (postcopy migration?)");
  pthread_mutex_unlock(&mu);
}

PRELOAD_EXPORT long syscall(long number, ...)
{
  static long (*next)(long, ...);
  if (!next)
    next = (long (*)(long, ...))real("syscall");
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; i++)
    a[i] = va_arg(ap, long);
  va_end(ap);
  if (!inside && number == SYS_userfaultfd)
    userfaultfd_opened();
  if (!next) {
    errno = ENOSYS;
    return -1;
  }
  return next(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* The mode argument is there only with O_CREAT or O_TMPFILE (whose bits
 * include O_DIRECTORY's, hence the whole mask). */
PRELOAD_EXPORT int open(const char *path, int flags, ...)
{
  static int (*next)(const char *, int, ...);
  if (!next)
    next = (int (*)(const char *, int, ...))real("open");
  mode_t mode = 0;
  if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
    va_list ap;
    va_start(ap, flags);
    mode = (mode_t)va_arg(ap, int);
    va_end(ap);
  }
  if (!inside && strcmp(path, "/dev/userfaultfd") == 0)
    userfaultfd_opened();
  if (!next) {
    errno = ENOSYS;
    return -1;
  }
  return next(path, flags, mode);
}

/* The same call on 64-bit systems. */
PRELOAD_EXPORT int open64(const char *path, int flags, ...) __attribute__((alias("open")));

PRELOAD_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  return mmap(addr, len, prot, flags, fd, off);
}

PRELOAD_EXPORT int munmap(void *addr, size_t len)
{
  static int (*next)(void *, size_t);
  if (!next)
    next = (int (*)(void *, size_t))real("munmap");
  if (!inside) {
    pthread_mutex_lock(&mu);
    for (unsigned i = 0; i < nrams; i++) {
      ram *r = &rams[i];
      uintptr_t a = (uintptr_t)addr, b = (uintptr_t)r->addr;
      if (r->client && a < b + r->len && b < a + len)
        give_up(r, "QEMU unmaps its guest RAM");
    }
    pthread_mutex_unlock(&mu);
  }
  return next(addr, len);
}
