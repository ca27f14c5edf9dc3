/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The init of the Linux guests that tests/qemu_preload.sh and
 * tests/qemu_libvirt.sh boot (built static, alone in an initramfs): it
 * fills 96 MiB with pages the engine can share (a third: 16 contents),
 * zero pages (a third) and unique ones, all compressible; reads every page
 * back three times, 4 s apart, against values it computes afresh, writing
 * new content into some pages between rounds; says "diffmem-guest: ok0"
 * (or BAD and a count) on its console, and powers off. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <unistd.h>
enum { PS = 4096, PAGES = 96 << 8 }; /* 96 MiB */
static uint64_t word(uint64_t page, uint64_t w, uint64_t gen)
{
  if (page % 3 == 1)
    return 0;
  uint64_t key = page % 3 == 0 ? 1 + page / 3 % 16 : 1000 + page;
  uint64_t z = key * 0x9e3779b97f4a7c15ull ^ w * 0xbf58476d1ce4e5b9ull ^ gen;
  return (z ^ z >> 29) & 0x0f0f0f0f0f0f0f0full; /* compressible */
}
static unsigned check(const uint64_t *m, const uint64_t *gen)
{
  unsigned bad = 0;
  for (uint64_t p = 0; p < PAGES; p++)
    for (uint64_t w = 0; w < PS / 8; w++)
      if (m[p * (PS / 8) + w] != word(p, w, gen[p])) {
        bad++;
        break;
      }
  return bad;
}
int main(void)
{
  static uint64_t gen[PAGES];
  uint64_t *m = mmap(NULL, (size_t)PAGES * PS, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) {
    printf("diffmem-guest: BAD no memory\n");
    goto out;
  }
  for (uint64_t p = 0; p < PAGES; p++)
    for (uint64_t w = 0; w < PS / 8; w++)
      m[p * (PS / 8) + w] = word(p, w, 0);
  printf("diffmem-guest: filled\n");
  fflush(stdout);
  unsigned bad = 0;
  for (int round = 1; round <= 3; round++) {
    sleep(4); /* the daemon evicts meanwhile */
    bad += check(m, gen);
    for (uint64_t p = (uint64_t)round; p < PAGES; p += 97) { /* new content here and there */
      gen[p] = (uint64_t)round;
      for (uint64_t w = 0; w < PS / 8; w++)
        m[p * (PS / 8) + w] = word(p, w, gen[p]);
    }
  }
  bad += check(m, gen);
  printf(bad ? "diffmem-guest: BAD %u pages\n" : "diffmem-guest: ok%u\n", bad);
out:
  fflush(stdout);
  sync();
  reboot(RB_POWER_OFF);
  return 0;
}
