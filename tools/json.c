/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
#include "config.h"

#include <stddef.h>

#include "json.h"

/* The length of the well-formed UTF-8 sequence at p (1 to 4), or 0 when p
 * starts none: a stray continuation byte, an overlong form, a surrogate,
 * a value past U+10FFFF, or a sequence cut short. */
static size_t utf8_len(const unsigned char *p)
{
  unsigned c = p[0];
  size_t n;
  unsigned min;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, min = 0x10000;
  else
    return 0;
  unsigned v = c & (0x7fu >> n);
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
      return 0;
    v = v << 6 | (p[i] & 0x3fu);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
    return 0;
  return n;
}

void json_str(FILE *f, const char *s)
{
  fputc('"', f);
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    switch (*p) {
    case '"':
      fputs("\\\"", f);
      break;
    case '\\':
      fputs("\\\\", f);
      break;
    case '\n':
      fputs("\\n", f);
      break;
    case '\r':
      fputs("\\r", f);
      break;
    case '\t':
      fputs("\\t", f);
      break;
    default: {
      size_t n = utf8_len(p);
      if (*p < 0x20 || n == 0) {
        /* A control character, or a byte that is not UTF-8 (a file name
         * in another encoding): the character of its value, U+0000 to
         * U+00FF, so that the output stays valid UTF-8. */
        fprintf(f, "\\u%04x", *p);
      } else {
        fwrite(p, 1, n, f);
        p += n;
        continue;
      }
    }
    }
    p++;
  }
  fputc('"', f);
}
