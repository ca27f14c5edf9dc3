/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The reports of diffmem analyze: a text table like the paper's Table 1,
 * JSON, and an SVG stacked-bar chart. All three read one analyze_result
 * and take every figure from analyze_percent_of(), so they agree. */
#ifndef DMEM_TOOLS_REPORT_H
#define DMEM_TOOLS_REPORT_H

#include <stdio.h>

#include "analyze.h"

/* Rows for the table and the chart: every input when there are at most
 * max_rows, else the max_rows - 1 largest (in input order) and one row that
 * adds up the others; then the set's row. Counts add up, so the merged
 * row's figures are exact. Returns a malloc'd array of *n rows, or NULL. */
analyze_row *report_rows(const analyze_result *r, size_t max_rows, size_t *n);

void report_table(FILE *f, const analyze_result *r, size_t max_rows);
void report_json(FILE *f, const analyze_result *r);
void report_svg(FILE *f, const analyze_result *r, size_t max_rows);

/* How a percentage is printed in the table and the chart. */
#define REPORT_PCT_FMT "%.1f"

#endif
