/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: CC0-1.0 */
/* page_savings: what libdiffmem's codecs alone would save on a memory image.
 *
 * Build against an installed libdiffmem:
 *   cc page_savings.c $(pkg-config --cflags --libs libdiffmem) -o page_savings
 * Run:
 *   ./page_savings IMAGE        (IMAGE: raw 4 KiB pages, e.g. from pmemsave)
 *
 * It compresses every page with the best-of codec, keeps a page compressed
 * only when that saves at least half of it (the engine's rule), checks that
 * each kept page decompresses to the same bytes, and prints the savings.
 */
#include <stdio.h>
#include <string.h>

#include <diffmem/codec.h>
#include <diffmem/diffmem.h>

int main(int argc, char **argv)
{
  if (argc != 2) {
    fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 1;
  }
  dmem_codec *codec;
  int rc = dmem_codec_create(&codec, NULL);
  if (rc != 0) {
    fprintf(stderr, "dmem_codec_create: %s\n", dmem_strerror(rc));
    fclose(f);
    return 1;
  }
  static unsigned char page[DMEM_PAGE_SIZE], back[DMEM_PAGE_SIZE];
  static unsigned char blob[DMEM_PAGE_SIZE / 2];
  unsigned long pages = 0, kept = 0, bad = 0;
  unsigned long long stored = 0;
  while (fread(page, 1, sizeof page, f) == sizeof page) {
    size_t len;
    pages++;
    rc = dmem_codec_compress(&len, blob, sizeof blob, codec, DMEM_CODEC_BEST, page);
    if (rc == DMEM_ETOOBIG) {
      stored += DMEM_PAGE_SIZE; /* not worth it: the page stays as it is */
      continue;
    }
    if (rc != 0 || dmem_codec_decompress(back, codec, blob, len) != 0 ||
        memcmp(back, page, sizeof page) != 0) {
      bad++;
      stored += DMEM_PAGE_SIZE;
      continue;
    }
    kept++;
    stored += len;
  }
  fclose(f);
  dmem_codec_destroy(codec);
  unsigned long long total = (unsigned long long)pages * DMEM_PAGE_SIZE;
  printf("libdiffmem %s: %lu pages, %lu compressed, %llu of %llu bytes kept (%.1f%% saved)\n",
         dmem_version(), pages, kept, stored, total,
         total ? 100.0 * (double)(total - stored) / (double)total : 0.0);
  return bad ? 1 : 0;
}
