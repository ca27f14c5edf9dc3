/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Replays a fuzz target's corpus without libFuzzer, so that make check runs
 * every input a fuzzer ever found interesting. With arguments, each is a file
 * or directory to replay; without, the corpus $srcdir/tests/fuzz/corpus/NAME
 * (NAME from -DFUZZ_NAME). Any crash or sanitizer report fails the test. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long replayed;

static int replay_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 1 << 16, len = 0;
  uint8_t *buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      uint8_t *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (!buf) {
    fprintf(stderr, "replay: out of memory reading %s\n", path);
    return -1;
  }
  /* Hand the target an exactly sized copy so that ASan sees any overread. */
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  replayed++;
  return 0;
}

static int replay_path(const char *path)
{
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode))
    return replay_file(path);
  DIR *d = opendir(path);
  if (!d) {
    fprintf(stderr, "replay: cannot open directory %s: %s\n", path, strerror(errno));
    return -1;
  }
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
    if (replay_path(sub) != 0)
      rc = -1;
  }
  closedir(d);
  return rc;
}

int main(int argc, char **argv)
{
  int rc = 0;
  if (argc > 1) {
    for (int i = 1; i < argc; i++)
      if (replay_path(argv[i]) != 0)
        rc = 1;
  } else {
    const char *srcdir = getenv("srcdir");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", srcdir ? srcdir : ".", FUZZ_NAME);
    if (replay_path(dir) != 0)
      rc = 1;
  }
  /* Random inputs as well, from a fixed seed: cheap extra coverage. */
  uint64_t s = 0x5eed;
  uint8_t buf[8192];
  for (int i = 0; i < 2000; i++) {
    size_t len = 0;
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    len = (size_t)(s >> 33) % sizeof buf;
    for (size_t j = 0; j < len; j++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      buf[j] = (uint8_t)(s >> 56);
    }
    LLVMFuzzerTestOneInput(buf, len);
  }
  printf("replay %s: %ld corpus inputs and 2000 random inputs, no crash\n", FUZZ_NAME, replayed);
  if (replayed == 0) {
    fprintf(stderr, "replay %s: the corpus is empty\n", FUZZ_NAME);
    rc = 1;
  }
  return rc;
}
