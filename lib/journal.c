/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Journals (diffmem.h): where each page of a VM lives, kept in memory that
 * outlives the engine's process, and the reader that rebuilds a page from
 * one with nothing but the store's descriptors.
 *
 * Layout: a 64-byte header, then one 64-bit entry per page:
 *   bits 0..3   the kind (dmem_page_kind; MAPPED is written as RESIDENT:
 *               the page is in guest memory);
 *   bits 4..31  the top 28 bits of the page's checksum (0 for RESIDENT
 *               and ZERO);
 *   bits 32..63 where: the frame id (SHARED), blob id (PATCHED,
 *               COMPRESSED) or swap slot (SWAPPED).
 * The engine writes an entry with one release store, under its lock, in
 * the order described in diffmem.h; see the call sites in scan.c and
 * engine.c (dmem__journal). */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

#define JOURNAL_MAGIC 0x4c4a4d44u /* "DMJL" */
#define HDR_BYTES 64u

typedef struct jhdr {
  uint32_t magic;
  uint32_t version;
  uint64_t npages;
  uint32_t page_size;
  uint32_t reserved[11];
} jhdr;

_Static_assert(sizeof(jhdr) == HDR_BYTES, "journal header size");

size_t dmem_journal_size(uint64_t npages)
{
  if (npages > (SIZE_MAX - HDR_BYTES) / 8)
    return 0;
  return HDR_BYTES + (size_t)npages * 8;
}

static uint64_t entry(dmem_page_kind kind, uint32_t loc, uint32_t csum)
{
  return (uint64_t)loc << 32 | (uint64_t)(csum >> 4) << 4 | (uint64_t)kind;
}

void dmem__journal(dmem_engine *e, dmem_vm *vm, uint64_t gfn, dmem_page_kind kind, uint32_t loc)
{
  if (!vm->journal)
    return;
  uint32_t csum = 0;
  const uint8_t *payload;
  switch (kind) {
  case DMEM_PAGE_SHARED:
    csum = dmem__frame_meta(&e->store, loc)->csum;
    break;
  case DMEM_PAGE_PATCHED:
  case DMEM_PAGE_COMPRESSED:
    csum = dmem__blob_get(&e->store, loc, &payload)->csum;
    break;
  case DMEM_PAGE_SWAPPED:
    csum = e->store.swap_csum[loc];
    break;
  case DMEM_PAGE_ZERO:
    loc = 0;
    break;
  default: /* RESIDENT, MAPPED: in guest memory */
    kind = DMEM_PAGE_RESIDENT;
    loc = 0;
    break;
  }
  __atomic_store_n(&vm->journal[gfn], entry(kind, loc, csum), __ATOMIC_RELEASE);
}

int dmem_vm_set_journal(dmem_vm *vm, void *journal, size_t size)
{
  if (!vm)
    return DMEM_EINVAL;
  if (journal && (size < dmem_journal_size(vm->npages) || (uintptr_t)journal % 8 != 0))
    return DMEM_EINVAL;
  dmem_engine *e = vm->e;
  pthread_mutex_lock(&e->lock);
  vm->journal = NULL;
  if (journal)
    dmem__journal_start(e, vm, journal);
  pthread_mutex_unlock(&e->lock);
  return 0;
}

void dmem__journal_start(dmem_engine *e, dmem_vm *vm, void *journal)
{
  /* The entries first, the header last: a reader takes a journal without
   * a valid header for one with nothing in it yet. */
  vm->journal = (uint64_t *)(void *)((uint8_t *)journal + HDR_BYTES);
  for (uint64_t g = 0; g < vm->npages; g++)
    dmem__journal(e, vm, g, (dmem_page_kind)vm->pages[g].kind, vm->pages[g].loc);
  jhdr h;
  memset(&h, 0, sizeof h);
  h.magic = JOURNAL_MAGIC;
  h.version = DMEM_JOURNAL_VERSION;
  h.npages = vm->npages;
  h.page_size = DMEM_PAGE_SIZE;
  __atomic_thread_fence(__ATOMIC_RELEASE);
  memcpy(journal, &h, sizeof h);
}

int dmem_engine_store_fds(const dmem_engine *e, int *blobs_fd, int *swap_fd)
{
  if (!e)
    return DMEM_EINVAL;
  int b = dmem__store_blobs_fd(&e->store);
  if (b < 0)
    return DMEM_ENOTSUP;
  if (blobs_fd)
    *blobs_fd = b;
  if (swap_fd)
    *swap_fd = e->store.swap_fd;
  return 0;
}

/* ---------------------------------------------------------------- reading */

static int read_at(int fd, void *buf, size_t n, int64_t off)
{
  size_t done = 0;
  while (done < n) {
    ssize_t k = pread(fd, (uint8_t *)buf + done, n - done, (off_t)(off + (int64_t)done));
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return DMEM_ECORRUPT; /* a hole past the end, or the descriptor is wrong */
    done += (size_t)k;
  }
  return 0;
}

static int csum_matches(const void *page, uint64_t e)
{
  return (dmem__checksum(page) >> 4) == (uint32_t)((e >> 4) & 0x0fffffffu);
}

int dmem_journal_page(void *out, const void *journal, size_t size, uint64_t gfn,
                      const dmem_journal_store *st, dmem_codec *codec)
{
  if (!out || !journal || !st || size < HDR_BYTES)
    return DMEM_EINVAL;
  jhdr h;
  memcpy(&h, journal, sizeof h);
  if (h.magic != JOURNAL_MAGIC || h.version != DMEM_JOURNAL_VERSION ||
      h.page_size != DMEM_PAGE_SIZE)
    return DMEM_EVERSION;
  if (gfn >= h.npages || dmem_journal_size(h.npages) == 0 || size < dmem_journal_size(h.npages))
    return DMEM_ERANGE;
  uint64_t e;
  memcpy(&e, (const uint8_t *)journal + HDR_BYTES + gfn * 8, 8);
  unsigned kind = (unsigned)(e & 0xf);
  uint32_t loc = (uint32_t)(e >> 32);
  int rc;
  switch (kind) {
  case DMEM_PAGE_RESIDENT:
    return 0;
  case DMEM_PAGE_ZERO:
    memset(out, 0, DMEM_PAGE_SIZE);
    return 1;
  case DMEM_PAGE_SHARED:
    rc = read_at(st->frames_fd, out, DMEM_PAGE_SIZE, (int64_t)loc * DMEM_PAGE_SIZE);
    return rc ? rc : csum_matches(out, e) ? 1 : DMEM_ECORRUPT;
  case DMEM_PAGE_SWAPPED:
    if (st->swap_fd < 0)
      return DMEM_ECORRUPT;
    rc = read_at(st->swap_fd, out, DMEM_PAGE_SIZE, (int64_t)loc * DMEM_PAGE_SIZE);
    return rc ? rc : csum_matches(out, e) ? 1 : DMEM_ECORRUPT;
  case DMEM_PAGE_PATCHED:
  case DMEM_PAGE_COMPRESSED:
    break;
  default:
    return DMEM_ECORRUPT;
  }
  size_t slot;
  int64_t off = dmem__blob_offset(loc, &slot);
  if ((loc >> 26) >= DMEM__BLOB_CLASSES)
    return DMEM_ECORRUPT;
  uint8_t blob[DMEM__BLOB_CLASSES * 64];
  dmem__blob_hdr bh;
  rc = read_at(st->blobs_fd, blob, slot, off);
  if (rc)
    return rc;
  memcpy(&bh, blob, sizeof bh);
  if (bh.kind != kind || bh.len > slot - sizeof bh || (bh.csum >> 4) != ((e >> 4) & 0x0fffffffu))
    return DMEM_ECORRUPT;
  const uint8_t *payload = blob + sizeof bh;
  if (kind == DMEM_PAGE_COMPRESSED) {
    if (!codec || dmem_codec_decompress(out, codec, payload, bh.len) != 0)
      return DMEM_ECORRUPT;
  } else {
    uint8_t ref[DMEM_PAGE_SIZE];
    rc = read_at(st->frames_fd, ref, DMEM_PAGE_SIZE, (int64_t)bh.ref * DMEM_PAGE_SIZE);
    if (rc || dmem_delta_decode(out, ref, payload, bh.len) != 0)
      return DMEM_ECORRUPT;
  }
  return dmem__checksum(out) == bh.csum ? 1 : DMEM_ECORRUPT;
}
