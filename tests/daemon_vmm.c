/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* A VMM for diffmemd's tests (tests/daemon.sh): guest RAM in a sealed
 * memfd, handed to the daemon with dmem_kvm_client_attach(), then touched
 * by the process's own threads against a shadow copy for a while, and
 * every page checked at the end, before and after detach, through the
 * mapping and in the memfd.
 *
 *   daemon_vmm SOCKET PAGES SECONDS SEED [--survive]
 *
 * A third of the pages hold one of 8 contents that every VMM of the test
 * shares (so the daemon merges across processes), a third are zero, the
 * rest are unique and compressible. The toucher reads a page and checks it
 * against the shadow, or writes a word of it, at random, 2000 times a
 * second, mostly in a small window that moves (so most pages go idle and
 * get reclaimed). It prints "attached VM DOMAIN" once attached and
 * "verified N" at the end. --survive: the daemon is expected to stop
 * meanwhile (SIGTERM), and detach must still succeed: every page is back.
 * Exit status: 0 when every check passed, 1 when a page differed or
 * detach failed, 2 for a setup error, 77 when no userfaultfd. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <diffmem/daemon.h>
#include <diffmem/diffmem.h>

#define PAGE DMEM_PAGE_SIZE

static uint64_t rnd(uint64_t *s)
{
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void fill(uint8_t *p, uint64_t i, uint64_t seed)
{
  if (i % 3 == 1) {
    memset(p, 0, PAGE);
    return;
  }
  uint64_t key = i % 3 == 0 ? 1000 + (i / 3) % 8 : seed * 1000003 + i;
  uint64_t s = key;
  for (size_t o = 0; o < PAGE; o += 8) {
    uint64_t v = rnd(&s) & 0x0f0f0f0f0f0f0f0full; /* compressible */
    memcpy(p + o, &v, 8);
  }
}

static double now_s(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Pages that differ from the shadow; each one is named on stderr (which
 * page, and how many of its bytes differ), for the test's log. */
static uint64_t check_all(const uint8_t *ram, const uint8_t *shadow, uint64_t n, const char *when)
{
  uint64_t bad = 0;
  for (uint64_t i = 0; i < n; i++) {
    if (memcmp(ram + i * PAGE, shadow + i * PAGE, PAGE) == 0)
      continue;
    unsigned bytes = 0;
    for (unsigned b = 0; b < PAGE; b++)
      bytes += ram[i * PAGE + b] != shadow[i * PAGE + b];
    fprintf(stderr, "daemon_vmm: %s: page %llu differs in %u bytes\n", when, (unsigned long long)i,
            bytes);
    bad++;
  }
  return bad;
}

int main(int argc, char **argv)
{
  if (argc < 5) {
    fprintf(stderr, "usage: daemon_vmm SOCKET PAGES SECONDS SEED [--survive]\n");
    return 2;
  }
  const char *sock = argv[1];
  uint64_t n = strtoull(argv[2], NULL, 10), seed = strtoull(argv[4], NULL, 10);
  double secs = atof(argv[3]);
  int survive = argc > 5 && strcmp(argv[5], "--survive") == 0;
  size_t bytes = (size_t)n * PAGE;
  int fd = memfd_create("daemon-vmm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0 || ftruncate(fd, (off_t)bytes) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    perror("daemon_vmm: memfd");
    return 2;
  }
  uint8_t *ram = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  uint8_t *shadow = malloc(bytes);
  if (ram == MAP_FAILED || !shadow) {
    perror("daemon_vmm: memory");
    return 2;
  }
  for (uint64_t i = 0; i < n; i++) {
    fill(shadow + i * PAGE, i, seed);
    memcpy(ram + i * PAGE, shadow + i * PAGE, PAGE);
  }
  dmem_kvm_client_options o = DMEM_KVM_CLIENT_OPTIONS_INIT;
  o.socket = sock;
  o.fd = fd;
  o.addr = ram;
  o.size = bytes;
  o.name = "daemon-vmm";
  char err[DMEM_ERRBUF_SIZE];
  dmem_kvm_client *c;
  int rc = dmem_kvm_client_attach(&c, &o, err, sizeof err);
  if (rc) {
    fprintf(stderr, "daemon_vmm: attach: %s: %s\n", dmem_err_name(rc), err);
    return rc == DMEM_ENOTSUP ? 77 : 2;
  }
  printf("attached %u %u\n", dmem_kvm_client_vm(c), dmem_kvm_client_domain(c));
  fflush(stdout);

  uint64_t s = seed * 77 + 1, bad = 0, ops = 0;
  double t0 = now_s();
  while (now_s() - t0 < secs) {
    /* A window of n/16 pages that moves through RAM once per run. */
    uint64_t win = n / 16 ? n / 16 : 1;
    uint64_t base = (uint64_t)((now_s() - t0) / secs * (double)n);
    uint64_t i = rnd(&s) % 10 == 0 ? rnd(&s) % n : (base + rnd(&s) % win) % n;
    if (rnd(&s) % 4 == 0) {
      uint64_t v = rnd(&s), off = rnd(&s) % (PAGE / 8) * 8;
      memcpy(ram + i * PAGE + off, &v, 8);
      memcpy(shadow + i * PAGE + off, &v, 8);
    } else {
      bad += memcmp(ram + i * PAGE, shadow + i * PAGE, PAGE) != 0;
    }
    if (++ops % 20 == 0)
      usleep(10000);
  }
  bad += check_all(ram, shadow, n, "attached");
  rc = dmem_kvm_client_detach(c);
  if (rc)
    fprintf(stderr, "daemon_vmm: detach: %s%s\n", dmem_err_name(rc),
            survive ? " (after the daemon stopped)" : "");
  uint64_t after = check_all(ram, shadow, n, "after detach");
  /* The memfd itself holds every page again: none left on a frame the
   * agent mapped, none left punched. */
  uint64_t in_fd = 0;
  static uint8_t page[PAGE];
  for (uint64_t i = 0; i < n; i++)
    in_fd += pread(fd, page, PAGE, (off_t)(i * PAGE)) != PAGE ||
             memcmp(page, shadow + i * PAGE, PAGE) != 0;
  printf("verified %llu pages: %llu differed while attached, %llu after detach, %llu in the "
         "memfd; %llu ops\n",
         (unsigned long long)n, (unsigned long long)bad, (unsigned long long)after,
         (unsigned long long)in_fd, (unsigned long long)ops);
  free(shadow);
  munmap(ram, bytes);
  close(fd);
  return bad || after || in_fd || rc ? 1 : 0;
}
