/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The page store: frames, patches, compressed blobs and swap slots.
 *
 * Frames are refcounted immutable copies of page content: the pages that
 * share one and the patches that use it as their reference each hold a
 * reference. Patches and compressed blobs live in size classes of 64-byte
 * steps; each class is a set of slabs, and a slab is unmapped as soon as
 * its last slot is freed, so an emptied class gives its memory back to the
 * OS. Slab memory comes from mmap(), not the allocator hook: only whole
 * mappings can be returned. Every stored item keeps a 32-bit checksum of
 * the page it rebuilds (for a frame, of the frame itself), checked on every
 * rebuild; swap slots keep theirs in memory.
 *
 * Ids are 32 bits. A blob id holds its class in the top 6 bits and
 * (slab << shift | slot) below.
 */
#ifndef DMEM_STORE_H
#define DMEM_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define DMEM__NO_ID UINT32_MAX

typedef struct dmem__slab {
  uint8_t *mem;     /* NULL when unmapped */
  int fd;           /* the memfd its blocks are in (at the slab's offset), or -1 */
  uint64_t *bitmap; /* slots in use */
  uint32_t used;
} dmem__slab;

typedef struct dmem__pool {
  /* Where new slabs go (the frames pool: the caller says, per frame):
   * -1: anonymous memory; else slab k at base + k * slab bytes. */
  int fd;
  int64_t base;
  size_t slot_size;
  unsigned shift; /* log2 of slots per slab */
  dmem__slab *slabs;
  uint32_t nslabs, cap;
  uint32_t hint; /* a slab that may have room */
  uint64_t used_slots;
  uint64_t mapped_bytes;
} dmem__pool;

typedef struct dmem__frame {
  uint64_t hash;   /* index key, to remove it when freed */
  uint32_t refs;   /* sharers + patches */
  uint32_t sharers; /* pages mapping or evicted onto it */
  uint32_t csum;
  uint32_t dom;  /* slot of its sharing domain (core.h) */
  uint32_t dead; /* 1: queued for a scan to free (secure mode) */
} dmem__frame;

/* Header of a patch or compressed blob slot. */
typedef struct dmem__blob_hdr {
  uint16_t len;  /* payload bytes */
  uint16_t kind; /* DMEM_PAGE_PATCHED or DMEM_PAGE_COMPRESSED */
  uint32_t csum; /* of the page it rebuilds */
  uint32_t ref;  /* reference frame of a patch */
} dmem__blob_hdr;

#define DMEM__BLOB_CLASSES 34 /* 64 .. 2176 bytes */
#define DMEM__BLOB_MAX (DMEM__BLOB_CLASSES * 64 - sizeof(dmem__blob_hdr))

typedef struct dmem__store {
  dmem__alloc *alloc;
  dmem__pool frames;
  dmem__frame *ftab; /* by frame id */
  uint32_t ftab_cap;
  uint64_t nframes;
  dmem__pool blobs[DMEM__BLOB_CLASSES];
  int blobs_fd; /* the blob classes' memfd (class c from DMEM__BLOB_BASE(c)), or -1 */
  /* swap */
  int swap_fd; /* unnamed: nothing to remove on fini */
  uint32_t swap_slots, swap_next, *swap_free, swap_nfree;
  uint32_t *swap_csum;
  uint64_t swap_used;
  /* Blocks of an emptied slab that could not be given back (a failed
   * hole punch): the memory stays in the memfd, counted by
   * dmem_engine_memfd_bytes(); the engine counts these among its errors. */
  uint64_t punch_errors;
} dmem__store;

uint32_t dmem__checksum(const void *page);

/* swap_dir: where the unnamed swap file goes (diffmem.h), or NULL. */
int dmem__store_init(dmem__store *s, dmem__alloc *a, const char *swap_dir, uint64_t swap_max);
void dmem__store_fini(dmem__store *s);

/* Frames. new copies content in with refs = 0, into a slab of memfd @p fd
 * (frame id at offset id * DMEM_PAGE_SIZE of it: the ids are one space,
 * and each memfd holds only the slabs placed in it, so that adapters can
 * map a frame copy-on-write from the memfd of its own sharing domain, and
 * no other domain's frame is in there), or of anonymous memory for -1.
 * @p hint: the caller's memory of a slab with room (start at 0). */
int dmem__frame_new(uint32_t *out, dmem__store *s, const void *content, uint64_t hash, int fd,
                    uint32_t *hint);
const uint8_t *dmem__frame_data(const dmem__store *s, uint32_t id);
dmem__frame *dmem__frame_meta(const dmem__store *s, uint32_t id);
/* Frees the frame when it has no references left; returns 1 if freed. */
int dmem__frame_release_if_unused(dmem__store *s, uint32_t id);

/* Where blob class c's slabs start in the blobs memfd: each class has
 * 2^38 bytes of (sparse) file, more than its 2^26 slots can fill. */
#define DMEM__BLOB_BASE(c) ((int64_t)(c) << 38)
/* The blobs' memfd, or -1 (anonymous memory). */
int dmem__store_blobs_fd(const dmem__store *s);
/* Offset of blob id's slot (header, then payload) in the blobs memfd, and
 * the slot's size. Pure arithmetic on the id: the journal's reader uses it
 * without a store. */
int64_t dmem__blob_offset(uint32_t id, size_t *slot_size);

/* Blobs: payload of len bytes (len <= DMEM__BLOB_MAX). */
int dmem__blob_put(uint32_t *out, dmem__store *s, const dmem__blob_hdr *h, const void *payload);
const dmem__blob_hdr *dmem__blob_get(const dmem__store *s, uint32_t id, const uint8_t **payload);
size_t dmem__blob_slot_size(uint32_t id);
void dmem__blob_free(dmem__store *s, uint32_t id);

/* Swap: put writes a page and keeps its checksum; get reads it back and
 * checks it (DMEM_EIO, DMEM_ECORRUPT). */
int dmem__swap_put(uint32_t *out, dmem__store *s, const void *page);
/* Has the store a swap file with a slot free (within swap_max)? */
static inline int dmem__swap_room(const dmem__store *s)
{
  return s->swap_fd >= 0 && (s->swap_nfree > 0 || s->swap_next < s->swap_slots);
}
int dmem__swap_get(void *page, dmem__store *s, uint32_t slot);
void dmem__swap_free(dmem__store *s, uint32_t slot);

uint64_t dmem__store_bytes(const dmem__store *s);
uint64_t dmem__store_meta_bytes(const dmem__store *s);

#endif
