/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Minimal JSON output helpers for the diffmem tool. */
#ifndef DMEM_TOOLS_JSON_H
#define DMEM_TOOLS_JSON_H

#include <stdio.h>

/* Writes s as a JSON string literal, quotes included. */
void json_str(FILE *f, const char *s);

#endif
