/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem analyze: what sharing, patching and compression would save on a
 * set of memory images, with the core's own index, detectors, delta
 * encoder and codecs (the Difference Engine paper's Table 1, for any
 * memory).
 *
 * Use: analyze_create(), then for each input analyze_begin_input() and
 * analyze_add_page() for each of its pages, then analyze_finish(), which
 * fills an analyze_result. Inputs are taken one after another, never
 * interleaved. One thread at a time. */
#ifndef DMEM_TOOLS_ANALYZE_H
#define DMEM_TOOLS_ANALYZE_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/codec.h>

/* Counts of one input, or of the whole set, in one view (zero pages
 * counted, or left out as if they were not in the input). Every field but
 * distinct_pages adds up over the inputs to the whole set's figure. */
typedef struct analyze_counts {
  uint64_t pages;          /* pages read */
  uint64_t zero_pages;     /* all-zero pages among them */
  uint64_t distinct_pages; /* distinct contents (within this input, for an input) */
  uint64_t saved_within;   /* pages saved by sharing a content seen earlier in the same input */
  uint64_t saved_across;   /* pages whose content first appeared in an earlier input */
  uint64_t patched_pages;
  uint64_t compressed_pages;
  uint64_t bytes_patching;    /* bytes saved: page size minus patch length, summed */
  uint64_t bytes_compression; /* bytes saved: page size minus blob length, summed */
} analyze_counts;

/* Savings of a view as percentages of its pages' bytes. */
typedef struct analyze_percent {
  double sharing, sharing_patching, total;
  double within, across; /* the sharing figure split; within + across == sharing */
} analyze_percent;

typedef struct analyze_row {
  char name[256];            /* the input as the user named it ("all inputs" for the set) */
  char kind[16];             /* "raw", "elf", "pid", "libvirt", "set" */
  analyze_counts all;        /* zero pages counted like any other content */
  analyze_counts nonzero;    /* zero pages left out */
  uint64_t unreadable_pages; /* pages the source could not read (left out) */
  uint64_t ksm_pages;        /* its pages Linux KSM merges now (ksm_merging_pages) */
} analyze_row;

/* Linux KSM on this host when the inputs were read: what it saves already
 * (pages_sharing: page references served by a shared KSM page). */
typedef struct analyze_ksm {
  int present;            /* /sys/kernel/mm/ksm exists */
  long run;               /* its run: 0 stopped, 1 running, 2 unmerging */
  uint64_t pages_shared;  /* KSM pages in use */
  uint64_t pages_sharing; /* pages saved, by ksmd's count */
  /* The live processes' ksm_merging_pages added up: ksmd updates its own
   * counts as it scans, so they lag (after a merged process exits, and for
   * good while KSM is stopped); what it saves is at most this. */
  uint64_t merging_pages;
} analyze_ksm;

typedef struct analyze_result {
  analyze_row total;
  analyze_row *inputs;
  size_t ninputs;
  /* What was used, for the report. */
  char codec[32];
  char detector[48];
  analyze_ksm ksm; /* filled by the caller (memsrc_ksm_state()) */
} analyze_result;

typedef struct analyze_options {
  dmem_codec_id codec;          /* DMEM_CODEC_BEST as the engine */
  unsigned codec_best_mask;     /* 0: WKdm and LZO, as the engine */
  dmem_simdet_kind simdet_kind; /* 0: no patching */
  unsigned simdet_k, simdet_s, simdet_candidates;
  uint64_t seed; /* hash and detector key; 0 would be random, so keep it fixed */
} analyze_options;

/* The engine's defaults (DMEM_ENGINE_OPTIONS_INIT). */
#define ANALYZE_OPTIONS_INIT                                                                       \
  {                                                                                                \
    DMEM_CODEC_BEST, 0, DMEM_SIMDET_HASH, 2, 1, 1, 0x6469666d656d0001ull                           \
  }

typedef struct analyze analyze;

/* Progress of analyze_finish(): called now and then with pages done and
 * pages to do. */
typedef void (*analyze_progress_fn)(uint64_t done, uint64_t total, void *ud);

/* Returns 0, or a negative DMEM_E* code. */
int analyze_create(analyze **out, const analyze_options *opts);
void analyze_destroy(analyze *a);

/* Starts the next input. name and kind are copied (name truncated). */
int analyze_begin_input(analyze *a, const char *name, const char *kind);

/* Adds one page (DMEM_PAGE_SIZE bytes) of the current input. */
int analyze_add_page(analyze *a, const void *page);

/* Notes pages of the current input that could not be read. */
void analyze_note_unreadable(analyze *a, uint64_t pages);
/* Records that KSM merges this many pages of the current input now. */
void analyze_note_ksm(analyze *a, uint64_t pages);

/* Runs patching and compression over the distinct contents and fills
 * *out (free it with analyze_result_free()). The analyze object is spent
 * afterwards: destroy it. */
int analyze_finish(analyze_result *out, analyze *a, analyze_progress_fn progress, void *ud);

void analyze_result_free(analyze_result *r);

/* Derived figures, the one place the report writers get them from. */
static inline uint64_t analyze_saved_sharing(const analyze_counts *c)
{
  return c->saved_within + c->saved_across;
}
analyze_percent analyze_percent_of(const analyze_counts *c);

#endif
