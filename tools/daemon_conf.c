/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmemd.conf's parser (daemon_conf.h). Fuzzed: tests/fuzz/fuzz_conf.c. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "daemon_conf.h"

static int is_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r';
}

static int is_key(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int dconf_parse(const char *text, size_t len,
                int (*set)(void *ud, const char *key, const char *value, char *why, size_t whylen),
                void *ud, char *err, size_t errlen)
{
  char line[DCONF_LINE_MAX + 1], why[256];
  size_t pos = 0;
  for (unsigned no = 1; pos < len; no++) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
    if (n > DCONF_LINE_MAX) {
      snprintf(err, errlen, "line %u: longer than %d bytes", no, DCONF_LINE_MAX);
      return -1;
    }
    if (memchr(text + pos, 0, n)) {
      snprintf(err, errlen, "line %u: a NUL byte", no);
      return -1;
    }
    memcpy(line, text + pos, n);
    line[n] = 0;
    pos += n + (nl ? 1 : 0);
    char *hash = strchr(line, '#');
    if (hash)
      *hash = 0;
    char *p = line;
    while (is_space(*p))
      p++;
    if (!*p)
      continue;
    char *key = p;
    while (is_key(*p))
      p++;
    char *kend = p;
    while (is_space(*p))
      p++;
    if (kend == key || *p != '=') {
      snprintf(err, errlen, "line %u: not \"key = value\"", no);
      return -1;
    }
    *kend = 0;
    p++;
    while (is_space(*p))
      p++;
    char *end = p + strlen(p);
    while (end > p && is_space(end[-1]))
      *--end = 0;
    why[0] = 0;
    if (set(ud, key, p, why, sizeof why) != 0) {
      snprintf(err, errlen, "line %u: %s: %s", no, key, why[0] ? why : "refused");
      return -1;
    }
  }
  return 0;
}
