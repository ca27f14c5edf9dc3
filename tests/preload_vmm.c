/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* A stand-in for QEMU under libdiffmem-preload.so (tests/daemon.sh): it
 * makes guest RAM as QEMU's memory-backend-memfd does (a sealed memfd of
 * that name, mapped shared), fills it, waits until diffmemd has evicted
 * most of it, and then does what QEMU does before handing RAM elsewhere:
 *
 *   preload_vmm sendmsg       passes the memfd over a socket (vhost-user)
 *   preload_vmm userfaultfd   opens a userfaultfd of its own (postcopy)
 *
 * The preload client must take the guest back first: the memfd itself,
 * read as another process would (pread), then holds every page's content.
 * Prints "ok: ..." and exits 0, or says what differs and exits 1. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { PS = 4096, PAGES = 2048 };

/* Page p's word w: a third zero pages, a third 8 shared contents, a third
 * unique; all compressible. */
static uint64_t word(uint64_t p, uint64_t w)
{
  if (p % 3 == 1)
    return 0;
  uint64_t key = p % 3 == 0 ? 1 + p / 3 % 8 : 100 + p;
  uint64_t z = key * 0x9e3779b97f4a7c15ull ^ w * 0xbf58476d1ce4e5b9ull;
  return (z ^ z >> 29) & 0x0f0f0f0f0f0f0f0full;
}

static uint64_t allocated(int fd)
{
  struct stat st;
  return fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

static int pass_fd(int fd)
{
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0)
    return -1;
  char byte = 'm';
  struct iovec iov = {&byte, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                       .msg_controllen = sizeof u.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  int copy = dup(fd); /* a copy, as QEMU's is to the backend */
  memcpy(CMSG_DATA(c), &copy, sizeof copy);
  ssize_t n = sendmsg(sv[0], &msg, 0);
  close(copy);
  close(sv[0]);
  close(sv[1]);
  return n == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
  if (argc != 2 || (strcmp(argv[1], "sendmsg") != 0 && strcmp(argv[1], "userfaultfd") != 0)) {
    fprintf(stderr, "usage: preload_vmm sendmsg|userfaultfd\n");
    return 2;
  }
  int fd = memfd_create("memory-backend-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 || ftruncate(fd, (off_t)PAGES * PS) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    perror("preload_vmm: memfd");
    return 1;
  }
  uint64_t *m = mmap(NULL, (size_t)PAGES * PS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    perror("preload_vmm: mmap");
    return 1;
  }
  for (uint64_t p = 0; p < PAGES; p++)
    for (uint64_t w = 0; w < PS / 8; w++)
      m[p * (PS / 8) + w] = word(p, w);
  /* The daemon may evict while the pages are still being written: half of
   * the memfd's size is the mark, not half of what it holds now. */
  uint64_t full = (uint64_t)PAGES * PS, low = allocated(fd);
  for (int i = 0; i < 200 && low > full / 2; i++) { /* up to 10 s */
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    low = allocated(fd);
  }
  if (low > full / 2) {
    fprintf(stderr, "preload_vmm: the daemon evicted too little: %llu of %llu bytes left\n",
            (unsigned long long)low, (unsigned long long)full);
    return 1;
  }
  if (strcmp(argv[1], "sendmsg") == 0) {
    if (pass_fd(fd) != 0) {
      perror("preload_vmm: sendmsg");
      return 1;
    }
  } else {
    long u = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (u >= 0)
      close((int)u);
  }
  /* What the other side reads: the memfd itself. */
  unsigned bad = 0;
  uint64_t page[PS / 8];
  for (uint64_t p = 0; p < PAGES; p++) {
    if (pread(fd, page, PS, (off_t)(p * PS)) != PS) {
      perror("preload_vmm: pread");
      return 1;
    }
    for (uint64_t w = 0; w < PS / 8; w++)
      if (page[w] != word(p, w)) {
        bad++;
        break;
      }
  }
  /* And the guest still reads and writes its own RAM. */
  for (uint64_t p = 0; p < PAGES; p++) {
    bad += m[p * (PS / 8) + 5] != word(p, 5);
    m[p * (PS / 8) + 5] = word(p, 5);
  }
  if (bad) {
    fprintf(stderr, "preload_vmm: %u pages differ after %s\n", bad, argv[1]);
    return 1;
  }
  printf("ok: %s: %u pages intact in the memfd (the daemon had left %llu of %llu KiB)\n", argv[1],
         (unsigned)PAGES, (unsigned long long)low >> 10, (unsigned long long)full >> 10);
  return 0;
}
