/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The init of the Linux guests that tests/qemu_preload.sh and
 * tests/qemu_libvirt.sh boot (built static, alone in an initramfs): it
 * writes a 2 MiB file into its rootfs; fills 96 MiB with pages the engine
 * can share or patch (a third: 16 contents, half of them exact copies, half
 * one word off), zero pages (a third) and unique ones, all compressible;
 * reads every page back three times, 4 s apart (dmem_sleep=N on the
 * kernel command line: N s), against values it computes
 * afresh, writing new content into some pages between rounds; reads the
 * file back and says its FNV-1a 64 ("diffmem-guest: file fnv HEX", which
 * the tests compute on the host); says "diffmem-guest: ok0" (or BAD and a
 * count) on its console, and powers off. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <unistd.h>
enum { PS = 4096, PAGES = 96 << 8 }; /* 96 MiB */
static uint64_t word(uint64_t page, uint64_t w, uint64_t gen)
{
  if (page % 3 == 1)
    return 0;
  if (page % 3 == 0 && page / 3 % 2 && w == page / 3 % (PS / 8) && gen == 0)
    return page * 0x51ed270b27ull; /* one word off its base: a page to patch */
  uint64_t key = page % 3 == 0 ? 1 + page / 6 % 16 : 1000 + page;
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
/* The file's bytes, and their FNV-1a 64 (the test computes both too). */
enum { FILE_BYTES = 2 << 20 };
static uint8_t file_byte(uint64_t i)
{
  return (uint8_t)((i * 2654435761u) >> 13 ^ i >> 12);
}
static uint64_t fnv(const uint8_t *b, size_t n)
{
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}
int main(void)
{
  static uint64_t gen[PAGES];
  static uint8_t fbuf[FILE_BYTES];
  /* A file in the rootfs (guest page cache), written now and read back
   * after the rounds below, while the daemon had it to evict. */
  for (size_t i = 0; i < FILE_BYTES; i++)
    fbuf[i] = file_byte(i);
  FILE *f = fopen("/data.bin", "w+");
  if (!f || fwrite(fbuf, 1, FILE_BYTES, f) != FILE_BYTES || fflush(f) != 0) {
    printf("diffmem-guest: BAD cannot write a file\n");
    goto out;
  }
  memset(fbuf, 0, sizeof fbuf);
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
  /* dmem_sleep=N on the kernel command line (init's environment): the
   * seconds between rounds, 4 unless a test needs longer. */
  const char *nap = getenv("dmem_sleep");
  unsigned secs = nap && atoi(nap) > 0 ? (unsigned)atoi(nap) : 4;
  for (int round = 1; round <= 3; round++) {
    sleep(secs); /* the daemon evicts meanwhile */
    bad += check(m, gen);
    for (uint64_t p = (uint64_t)round; p < PAGES; p += 97) { /* new content here and there */
      gen[p] = (uint64_t)round;
      for (uint64_t w = 0; w < PS / 8; w++)
        m[p * (PS / 8) + w] = word(p, w, gen[p]);
    }
  }
  bad += check(m, gen);
  rewind(f);
  if (fread(fbuf, 1, FILE_BYTES, f) != FILE_BYTES) {
    printf("diffmem-guest: BAD cannot read the file back\n");
    goto out;
  }
  printf("diffmem-guest: file fnv %016llx\n", (unsigned long long)fnv(fbuf, FILE_BYTES));
  printf(bad ? "diffmem-guest: BAD %u pages\n" : "diffmem-guest: ok%u\n", bad);
out:
  fflush(stdout);
  sync();
  reboot(RB_POWER_OFF);
  return 0;
}
