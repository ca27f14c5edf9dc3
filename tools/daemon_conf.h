/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmemd.conf(5): lines of "key = value", '#' comments, blank lines.
 * The parser knows no key: it hands each pair to set(), which decides. */
#ifndef DMEM_TOOLS_DAEMON_CONF_H
#define DMEM_TOOLS_DAEMON_CONF_H

#include <stddef.h>

/* The longest line, key and value taken. */
#define DCONF_LINE_MAX 1024

/* Parses text (len bytes; NUL bytes are an error). For each "key = value"
 * calls set(ud, key, value, why, whylen), which returns 0 or writes why it
 * refuses and returns non-zero. Keys are [a-z0-9-]+; values are what
 * follows '=', trimmed, up to the end of the line or a '#'. Returns 0, or
 * -1 with err holding "line N: why". */
int dconf_parse(const char *text, size_t len,
                int (*set)(void *ud, const char *key, const char *value, char *why, size_t whylen),
                void *ud, char *err, size_t errlen);

#endif
