/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: diffmemd.conf's parser (tools/daemon_conf.c) on any bytes
 * must accept or refuse them, never read past them, and hand set() only
 * keys of [a-z0-9_-]+ and values without a newline, a '#' or surrounding
 * blanks. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/daemon_conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check(void *ud, const char *key, const char *value, char *why, size_t whylen)
{
  (void)ud;
  if (!*key || strspn(key, "abcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(key))
    abort();
  size_t n = strlen(value);
  if (strpbrk(value, "\n#") || (n && (value[0] == ' ' || value[n - 1] == ' ')))
    abort();
  if (strcmp(key, "refuse") == 0) { /* the refusal path */
    strncpy(why, "refused on purpose", whylen - 1);
    why[whylen - 1] = 0;
    return 1;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *copy = malloc(size ? size : 1); /* exactly size bytes: ASan sees any overread */
  if (!copy)
    return 0;
  memcpy(copy, data, size);
  char err[256];
  (void)dconf_parse(copy, size, check, NULL, err, sizeof err);
  free(copy);
  return 0;
}
