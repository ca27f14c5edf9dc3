/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Minimal JSON output helpers for the diffmem tool. */
#ifndef DMEM_TOOLS_JSON_H
#define DMEM_TOOLS_JSON_H

#include <stdio.h>

/* The version of the JSON that diffmem writes: the "schema" key of every
 * object it prints. It goes up when a key is removed or changes meaning;
 * keys may be added without it (diffmem(1), JSON OUTPUT). */
#define DMEM_JSON_SCHEMA 1

/* Writes s as a JSON string literal, quotes included, always valid UTF-8:
 * a byte that is not part of a well-formed UTF-8 sequence is written as
 * the character of its value (\u0080 to \u00ff), control characters as
 * escapes. */
void json_str(FILE *f, const char *s);

#endif
