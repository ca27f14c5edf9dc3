/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Table, JSON and SVG reports of diffmem analyze, from one result. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <diffmem/common.h>

#include "json.h"
#include "report.h"

static void add_row(analyze_row *sum, const analyze_row *r)
{
  analyze_counts *v[2] = {&sum->all, &sum->nonzero};
  const analyze_counts *w[2] = {&r->all, &r->nonzero};
  for (int i = 0; i < 2; i++) {
    v[i]->pages += w[i]->pages;
    v[i]->zero_pages += w[i]->zero_pages;
    v[i]->distinct_pages += w[i]->distinct_pages;
    v[i]->saved_within += w[i]->saved_within;
    v[i]->saved_across += w[i]->saved_across;
    v[i]->patched_pages += w[i]->patched_pages;
    v[i]->compressed_pages += w[i]->compressed_pages;
    v[i]->bytes_patching += w[i]->bytes_patching;
    v[i]->bytes_compression += w[i]->bytes_compression;
  }
  sum->unreadable_pages += r->unreadable_pages;
  sum->ksm_pages += r->ksm_pages;
}

static const analyze_result *sort_by; /* qsort has no user data */

/* Larger inputs first; among equals, the earlier input first. */
static int cmp_pages_desc(const void *x, const void *y)
{
  size_t i = *(const size_t *)x, j = *(const size_t *)y;
  uint64_t a = sort_by->inputs[i].all.pages, b = sort_by->inputs[j].all.pages;
  return a != b ? (a < b ? 1 : -1) : (i > j) - (i < j);
}

analyze_row *report_rows(const analyze_result *r, size_t max_rows, size_t *n)
{
  if (max_rows < 2)
    max_rows = 2;
  size_t keep = r->ninputs <= max_rows ? r->ninputs : max_rows - 1;
  analyze_row *rows = calloc(keep + 2, sizeof *rows);
  size_t *order = calloc(r->ninputs + 1, sizeof *order);
  unsigned char *kept = calloc(r->ninputs + 1, 1);
  if (!rows || !order || !kept) {
    free(rows);
    free(order);
    free(kept);
    return NULL;
  }
  for (size_t i = 0; i < r->ninputs; i++)
    order[i] = i;
  sort_by = r;
  qsort(order, r->ninputs, sizeof *order, cmp_pages_desc);
  for (size_t i = 0; i < keep; i++)
    kept[order[i]] = 1;
  analyze_row other;
  memset(&other, 0, sizeof other);
  size_t k = 0, nother = 0;
  for (size_t i = 0; i < r->ninputs; i++) {
    if (kept[i])
      rows[k++] = r->inputs[i];
    else {
      add_row(&other, &r->inputs[i]);
      nother++;
    }
  }
  if (nother) {
    snprintf(other.name, sizeof other.name, "%zu other input%s", nother, nother == 1 ? "" : "s");
    snprintf(other.kind, sizeof other.kind, "other");
    rows[k++] = other;
  }
  rows[k++] = r->total;
  free(order);
  free(kept);
  *n = k;
  return rows;
}

static double mib(uint64_t bytes)
{
  return (double)bytes / 1048576.0;
}

/* Bytes of the inputs' memory mapped shared (memfd inputs): KSM never
 * merges it. */
static uint64_t memfd_bytes(const analyze_result *r)
{
  uint64_t b = 0;
  for (size_t i = 0; i < r->ninputs; i++)
    if (strcmp(r->inputs[i].kind, "memfd") == 0)
      b += r->inputs[i].all.pages * DMEM_PAGE_SIZE;
  return b;
}

/* What all three techniques save in all inputs, in bytes. */
static uint64_t saved_bytes(const analyze_counts *t)
{
  return analyze_saved_sharing(t) * DMEM_PAGE_SIZE + t->bytes_patching + t->bytes_compression;
}

/* What KSM saves now, host-wide, in bytes: its pages_sharing, but no more
 * than the pages the live processes have merged (its counts lag). */
static uint64_t ksm_bytes(const analyze_result *r)
{
  if (!r->ksm.present)
    return 0;
  uint64_t p = r->ksm.pages_sharing;
  return (p < r->ksm.merging_pages ? p : r->ksm.merging_pages) * DMEM_PAGE_SIZE;
}

/* The paragraph on Linux KSM under the table. */
static void report_ksm_table(FILE *f, const analyze_result *r)
{
  uint64_t ours = saved_bytes(&r->total.all), ksm = ksm_bytes(r), shared = memfd_bytes(r);
  if (!r->ksm.present) {
    fprintf(f, "Linux KSM: not in this kernel.\n");
    return;
  }
  fprintf(f,
          "Linux KSM (run=%ld) saves %.1f MiB host-wide now (pages_sharing %llu; the processes' "
          "ksm_merging_pages add up to %llu)",
          r->ksm.run, mib(ksm), (unsigned long long)r->ksm.pages_sharing,
          (unsigned long long)r->ksm.merging_pages);
  if (r->total.ksm_pages)
    fprintf(f, "; of these inputs' pages it merges %.1f MiB (ksm_merging_pages)",
            mib(r->total.ksm_pages * DMEM_PAGE_SIZE));
  fprintf(f, ".\n");
  if (shared)
    fprintf(f,
            "%.1f MiB of the inputs is guest RAM mapped shared (memfd), which KSM cannot merge.\n",
            mib(shared));
  fprintf(f, "libdiffmem would save %.1f MiB: %.1f MiB more than KSM saves now.\n", mib(ours),
          mib(ours > ksm ? ours - ksm : 0));
}

static void table_view(FILE *f, const analyze_row *rows, size_t n, int nonzero)
{
  fprintf(f, "%s\n",
          nonzero ? "Zero pages left out:" : "Zero pages counted like any other content:");
  fprintf(f, "  %-28s %10s %10s %9s %9s %9s %10s %13s\n", "input", "pages", "zero pages", "sharing",
          "(within", "across)", "+patching", "+compression");
  for (size_t i = 0; i < n; i++) {
    const analyze_counts *c = nonzero ? &rows[i].nonzero : &rows[i].all;
    analyze_percent p = analyze_percent_of(c);
    if (i == n - 1)
      fprintf(f, "  %.28s\n", "----------------------------------------");
    fprintf(f, "  %-28.28s %10llu %10llu %8.1f%% %8.1f%% %8.1f%% %9.1f%% %12.1f%%\n", rows[i].name,
            (unsigned long long)c->pages, (unsigned long long)c->zero_pages, p.sharing, p.within,
            p.across, p.sharing_patching, p.total);
  }
}

void report_table(FILE *f, const analyze_result *r, size_t max_rows)
{
  size_t n = 0;
  analyze_row *rows = report_rows(r, max_rows, &n);
  if (!rows) {
    fprintf(f, "diffmem analyze: out of memory\n");
    return;
  }
  const analyze_counts *t = &r->total.all;
  fprintf(f,
          "diffmem analyze: %zu input%s, %llu pages (%.1f MiB), %llu distinct; codec %s, "
          "detector %s\n\n",
          r->ninputs, r->ninputs == 1 ? "" : "s", (unsigned long long)t->pages,
          mib(t->pages * DMEM_PAGE_SIZE), (unsigned long long)t->distinct_pages, r->codec,
          r->detector);
  fprintf(f, "Memory saved, as a share of each input's pages; each column adds to the one on "
             "its left.\n");
  table_view(f, rows, n, 0);
  fputc('\n', f);
  table_view(f, rows, n, 1);
  uint64_t share = analyze_saved_sharing(t) * DMEM_PAGE_SIZE;
  fprintf(f,
          "\nSaved in all inputs: sharing %.1f MiB (%llu pages), patching %.1f MiB (%llu "
          "pages), compression %.1f MiB (%llu pages); %.1f of %.1f MiB.\n",
          mib(share), (unsigned long long)analyze_saved_sharing(t), mib(t->bytes_patching),
          (unsigned long long)t->patched_pages, mib(t->bytes_compression),
          (unsigned long long)t->compressed_pages, mib(saved_bytes(t)),
          mib(t->pages * DMEM_PAGE_SIZE));
  if (r->total.unreadable_pages)
    fprintf(f, "%llu resident pages could not be read and are left out.\n",
            (unsigned long long)r->total.unreadable_pages);
  report_ksm_table(f, r);
  free(rows);
}

static void json_percent(FILE *f, const char *key, const analyze_counts *c)
{
  analyze_percent p = analyze_percent_of(c);
  fprintf(f,
          "\"%s\": {\"sharing\": %.4f, \"sharing_patching\": %.4f, \"total\": %.4f, "
          "\"sharing_within\": %.4f, \"sharing_across\": %.4f}",
          key, p.sharing, p.sharing_patching, p.total, p.within, p.across);
}

static void json_row(FILE *f, const analyze_row *row, const char *indent)
{
  const analyze_counts *c = &row->all, *z = &row->nonzero;
  fprintf(f, "%s\"total_pages\": %llu, \"zero_pages\": %llu, \"distinct_pages\": %llu,\n", indent,
          (unsigned long long)c->pages, (unsigned long long)c->zero_pages,
          (unsigned long long)c->distinct_pages);
  fprintf(f,
          "%s\"pages_saved_sharing\": %llu, \"pages_saved_sharing_within\": %llu, "
          "\"pages_saved_sharing_across\": %llu,\n",
          indent, (unsigned long long)analyze_saved_sharing(c), (unsigned long long)c->saved_within,
          (unsigned long long)c->saved_across);
  fprintf(f,
          "%s\"patched_pages\": %llu, \"compressed_pages\": %llu, \"unreadable_pages\": %llu, "
          "\"ksm_pages\": %llu,\n",
          indent, (unsigned long long)c->patched_pages, (unsigned long long)c->compressed_pages,
          (unsigned long long)row->unreadable_pages, (unsigned long long)row->ksm_pages);
  fprintf(f, "%s\"bytes_saved\": {\"sharing\": %llu, \"patching\": %llu, \"compression\": %llu},\n",
          indent, (unsigned long long)(analyze_saved_sharing(c) * DMEM_PAGE_SIZE),
          (unsigned long long)c->bytes_patching, (unsigned long long)c->bytes_compression);
  fprintf(f, "%s", indent);
  json_percent(f, "percent_saved", c);
  fprintf(f, ",\n%s", indent);
  json_percent(f, "percent_saved_nonzero", z);
  fprintf(f,
          ",\n%s\"nonzero\": {\"total_pages\": %llu, \"distinct_pages\": %llu, "
          "\"pages_saved_sharing\": %llu, \"patched_pages\": %llu, \"compressed_pages\": %llu, "
          "\"bytes_saved\": {\"sharing\": %llu, \"patching\": %llu, \"compression\": %llu}}",
          indent, (unsigned long long)z->pages, (unsigned long long)z->distinct_pages,
          (unsigned long long)analyze_saved_sharing(z), (unsigned long long)z->patched_pages,
          (unsigned long long)z->compressed_pages,
          (unsigned long long)(analyze_saved_sharing(z) * DMEM_PAGE_SIZE),
          (unsigned long long)z->bytes_patching, (unsigned long long)z->bytes_compression);
}

void report_json(FILE *f, const analyze_result *r)
{
  fprintf(f, "{\n  \"schema\": %d, \"page_size\": %d, \"codec\": ", DMEM_JSON_SCHEMA,
          DMEM_PAGE_SIZE);
  json_str(f, r->codec);
  fprintf(f, ", \"detector\": ");
  json_str(f, r->detector);
  fprintf(f, ",\n");
  json_row(f, &r->total, "  ");
  uint64_t ours = saved_bytes(&r->total.all), ksm = ksm_bytes(r);
  fprintf(f,
          ",\n  \"ksm\": {\"present\": %s, \"run\": %ld, \"pages_shared\": %llu, "
          "\"pages_sharing\": %llu, \"merging_pages\": %llu, \"bytes_saved\": %llu},\n",
          r->ksm.present ? "true" : "false", r->ksm.run, (unsigned long long)r->ksm.pages_shared,
          (unsigned long long)r->ksm.pages_sharing, (unsigned long long)r->ksm.merging_pages,
          (unsigned long long)ksm);
  fprintf(f,
          "  \"memfd_bytes\": %llu, \"bytes_saved_total\": %llu, \"bytes_saved_beyond_ksm\": "
          "%llu",
          (unsigned long long)memfd_bytes(r), (unsigned long long)ours,
          (unsigned long long)(ours > ksm ? ours - ksm : 0));
  fprintf(f, ",\n  \"inputs\": [");
  for (size_t i = 0; i < r->ninputs; i++) {
    fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
    json_str(f, r->inputs[i].name);
    fprintf(f, ", \"kind\": ");
    json_str(f, r->inputs[i].kind);
    fprintf(f, ",\n");
    json_row(f, &r->inputs[i], "     ");
    fprintf(f, "}");
  }
  fprintf(f, "%s]\n}\n", r->ninputs ? "\n  " : "");
}

static void xml_str(FILE *f, const char *s)
{
  for (; *s; s++) {
    switch (*s) {
    case '<':
      fputs("&lt;", f);
      break;
    case '>':
      fputs("&gt;", f);
      break;
    case '&':
      fputs("&amp;", f);
      break;
    case '"':
      fputs("&quot;", f);
      break;
    default:
      if ((unsigned char)*s >= 0x20)
        fputc(*s, f);
    }
  }
}

enum { BAR_W = 36, STEP = 56, LEFT = 64, PANEL_H = 240, TOP = 56, BELOW = 120 };

static const char *const part_name[] = {"sharing-within", "sharing-across", "patching",
                                        "compression"};
static const char *const part_color[] = {"#1f4e9a", "#5b8fd6", "#3a9d5d", "#e39b2d"};

static void svg_bar(FILE *f, const analyze_row *row, int nonzero, int x, int y0)
{
  const analyze_counts *c = nonzero ? &row->nonzero : &row->all;
  analyze_percent p = analyze_percent_of(c);
  double part[4] = {p.within, p.across, p.sharing_patching - p.sharing,
                    p.total - p.sharing_patching};
  uint64_t pages[4] = {c->saved_within, c->saved_across, c->patched_pages, c->compressed_pages};
  fprintf(f, "<g data-row=\"");
  xml_str(f, row->name);
  fprintf(f,
          "\" data-view=\"%s\" data-pages=\"%llu\" data-sharing=\"" REPORT_PCT_FMT
          "\" data-sharing-patching=\"" REPORT_PCT_FMT "\" data-total=\"" REPORT_PCT_FMT "\">\n",
          nonzero ? "nonzero" : "all", (unsigned long long)c->pages, p.sharing, p.sharing_patching,
          p.total);
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#e6e6e6\"/>\n", x,
          y0 - PANEL_H, BAR_W, PANEL_H);
  double y = y0;
  for (int i = 0; i < 4; i++) {
    double h = part[i] / 100.0 * PANEL_H;
    if (h < 0)
      h = 0;
    y -= h;
    fprintf(f,
            "<rect x=\"%d\" y=\"%.2f\" width=\"%d\" height=\"%.2f\" fill=\"%s\" "
            "data-part=\"%s\" data-pages=\"%llu\" data-percent=\"" REPORT_PCT_FMT "\"><title>",
            x, y, BAR_W, h, part_color[i], part_name[i], (unsigned long long)pages[i], part[i]);
    xml_str(f, row->name);
    fprintf(f, ": %s " REPORT_PCT_FMT "%% (%llu pages)</title></rect>\n", part_name[i], part[i],
            (unsigned long long)pages[i]);
  }
  fprintf(f,
          "<text x=\"%d\" y=\"%.2f\" text-anchor=\"middle\" font-size=\"11\">" REPORT_PCT_FMT
          "%%</text>\n",
          x + BAR_W / 2, y - 4, p.total);
  fprintf(f,
          "<text transform=\"translate(%d,%d) rotate(-40)\" text-anchor=\"end\" "
          "font-size=\"11\">",
          x + BAR_W / 2, y0 + 14);
  char name[40];
  snprintf(name, sizeof name, "%s", row->name);
  xml_str(f, name);
  fprintf(f, "</text>\n</g>\n");
}

static void svg_panel(FILE *f, const analyze_row *rows, size_t n, int nonzero, int top, int width)
{
  int y0 = top + PANEL_H;
  fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", LEFT,
          top - 24, nonzero ? "Zero pages left out" : "Zero pages counted");
  for (int t = 0; t <= 100; t += 25) {
    double y = y0 - t / 100.0 * PANEL_H;
    fprintf(f,
            "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#bbb\" "
            "stroke-width=\"0.5\"/>\n<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\" "
            "font-size=\"10\">%d%%</text>\n",
            LEFT - 6, y, width - 10, y, LEFT - 10, y + 3, t);
  }
  for (size_t i = 0; i < n; i++)
    svg_bar(f, &rows[i], nonzero, LEFT + (int)i * STEP + (i == n - 1 ? STEP / 3 : 0), y0);
}

void report_svg(FILE *f, const analyze_result *r, size_t max_rows)
{
  size_t n = 0;
  analyze_row *rows = report_rows(r, max_rows, &n);
  if (!rows)
    return;
  int width = LEFT + (int)n * STEP + STEP / 3 + 40;
  if (width < 620)
    width = 620;
  int panel = TOP + PANEL_H + BELOW;
  int height = 2 * panel + 40;
  fprintf(f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
          "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n",
          width, height, width, height);
  fprintf(f, "<title>diffmem analyze: memory saved by sharing, patching and compression</title>\n");
  fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
  fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"12\">codec ", LEFT);
  xml_str(f, r->codec);
  fprintf(f, ", detector ");
  xml_str(f, r->detector);
  fprintf(f, "; %% of each input's memory</text>\n");
  svg_panel(f, rows, n, 0, TOP, width);
  svg_panel(f, rows, n, 1, TOP + panel, width);
  for (int i = 0; i < 4; i++) {
    int x = LEFT + i * 130;
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
            "<text x=\"%d\" y=\"%d\" font-size=\"11\">%s</text>\n",
            x, height - 28, part_color[i], x + 16, height - 18, part_name[i]);
  }
  fprintf(f, "</svg>\n");
  free(rows);
}
