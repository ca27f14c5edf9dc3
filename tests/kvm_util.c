/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers of the KVM adapter's tests that are not the guest: page
 * content, timing, and the bare userfaultfd yardstick (kvm_guest.h). */
#include "config.h"

#include "kvm_guest.h"

#include <check.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE KT_PAGE

/* ---------------------------------------------------------------- content */

uint64_t kt_rand(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void text_page(uint8_t *p, uint64_t seed)
{
  static const char *const words[] = {"memory ", "guest ", "frame ", "page ",
                                      "clock ",  "share ", "patch ", "evict "};
  uint64_t s = seed * 104729 + 7;
  size_t n = 0;
  while (n < PAGE) {
    const char *w = words[kt_rand(&s) % 8];
    size_t l = strlen(w);
    if (l > PAGE - n)
      l = PAGE - n;
    memcpy(p + n, w, l);
    n += l;
  }
  memcpy(p, &seed, sizeof seed); /* unique */
}

void kt_fill(uint8_t *p, enum kt_kind kind, uint64_t seed)
{
  uint64_t s = seed;
  switch (kind) {
  case KT_ZERO:
    memset(p, 0, PAGE);
    break;
  case KT_DUP:
    text_page(p, 1000 + seed % 4);
    break;
  case KT_SIMILAR:
    text_page(p, 999);
    for (unsigned i = 0; i < 6; i++) {
      uint64_t v = kt_rand(&s);
      memcpy(p + (i * 613 + seed * 8) % (PAGE / 8) * 8, &v, 8);
    }
    break;
  case KT_TEXT:
    text_page(p, seed);
    break;
  case KT_RANDOM:
    for (size_t i = 0; i < PAGE; i += 8) {
      uint64_t v = kt_rand(&s);
      memcpy(p + i, &v, 8);
    }
    break;
  }
}

uint64_t kt_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

double kt_quantile_us(uint64_t *ns, size_t n, double q)
{
  if (n == 0)
    return 0;
  qsort(ns, n, sizeof *ns, cmp_u64);
  size_t i = (size_t)(q * (double)(n - 1) + 0.5);
  return (double)ns[i] / 1000.0;
}

int kt_engine(dmem_engine **out, unsigned c4_passes, unsigned slice_pages)
{
  dmem_engine_options o = DMEM_ENGINE_OPTIONS_INIT;
  o.seed = 0x5eed5eedull;
  o.c4_passes = c4_passes;
  o.slice_pages = slice_pages;
  return dmem_engine_create(out, &o);
}

int kt_run_suite(Suite *s)
{
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

dmem_kvm_stats kt_region_stats(const dmem_kvm_region *r)
{
  dmem_kvm_stats s;
  memset(&s, 0, sizeof s);
  s.version = DMEM_KVM_STATS_VERSION;
  ck_assert_int_eq(dmem_kvm_region_stats(&s, r), 0);
  return s;
}

void kt_skip_unless_supported(const char *what)
{
  dmem_kvm_caps caps = DMEM_KVM_CAPS_INIT;
  if (dmem_kvm_probe(&caps) != 0) {
    printf("SKIP: %s: %s\n", what, caps.reason);
    fflush(stdout);
    exit(77);
  }
}

/* ---------------------------------------------------------------- bare uffd */

struct kt_bare {
  int uffd, stop;
  pthread_t thread;
};

static uint8_t bare_src[PAGE] __attribute__((aligned(PAGE)));

static void *bare_thread(void *arg)
{
  kt_bare *b = arg;
  struct pollfd pfd = {.fd = b->uffd, .events = POLLIN};
  while (!__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE)) {
    if (poll(&pfd, 1, 50) <= 0)
      continue;
    struct uffd_msg m;
    if (read(b->uffd, &m, sizeof m) != (ssize_t)sizeof m || m.event != UFFD_EVENT_PAGEFAULT)
      continue;
    struct uffdio_copy c = {.dst = m.arg.pagefault.address & ~(uint64_t)(PAGE - 1),
                            .src = (uint64_t)(uintptr_t)bare_src,
                            .len = PAGE,
                            .mode = 0};
    (void)ioctl(b->uffd, UFFDIO_COPY, &c);
  }
  return NULL;
}

kt_bare *kt_bare_start(void *addr, size_t size)
{
  memset(bare_src, 0x5a, sizeof bare_src);
  kt_bare *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM};
  struct uffdio_register reg = {.range = {.start = (uint64_t)(uintptr_t)addr, .len = size},
                                .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (b->uffd < 0 || ioctl(b->uffd, UFFDIO_API, &api) != 0 ||
      ioctl(b->uffd, UFFDIO_REGISTER, &reg) != 0 ||
      pthread_create(&b->thread, NULL, bare_thread, b) != 0) {
    if (b->uffd >= 0)
      close(b->uffd);
    free(b);
    return NULL;
  }
  return b;
}

void kt_bare_stop(kt_bare *b)
{
  if (!b)
    return;
  __atomic_store_n(&b->stop, 1, __ATOMIC_RELEASE);
  pthread_join(b->thread, NULL);
  close(b->uffd); /* unregisters */
  free(b);
}

int kt_bare_uffd_latency(uint64_t *ns, size_t n)
{
  int rc = -1;
  size_t size = n * PAGE;
  int mfd = memfd_create("kt-bare", MFD_CLOEXEC);
  uint8_t *map = MAP_FAILED;
  if (mfd < 0 || ftruncate(mfd, (off_t)size) != 0)
    goto out;
  map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (map == MAP_FAILED)
    goto out;
  kt_bare *b = kt_bare_start(map, size);
  if (!b)
    goto out;
  for (size_t i = 0; i < n; i++) {
    uint64_t t0 = kt_now_ns();
    (void)*(volatile uint8_t *)(map + i * PAGE);
    ns[i] = kt_now_ns() - t0;
  }
  kt_bare_stop(b);
  rc = 0;
out:
  if (map != MAP_FAILED)
    munmap(map, size);
  if (mfd >= 0)
    close(mfd);
  return rc;
}
