/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The page store (see store.h for its invariants). */
#include "config.h"

#if DMEM_HAVE_MEMFD
#include <linux/falloc.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "store.h"

uint32_t dmem__checksum(const void *page)
{
  return (uint32_t)XXH3_64bits(page, DMEM_PAGE_SIZE);
}

/* ------------------------------------------------------------ slab pools */

/* log2 of the slots in a slab of at most slab_bytes. */
static unsigned pool_shift(size_t slot_size, size_t slab_bytes)
{
  unsigned shift = 0;
  while (((size_t)2 << shift) * slot_size <= slab_bytes)
    shift++;
  return shift;
}

static void pool_init(dmem__pool *p, size_t slot_size, size_t slab_bytes)
{
  memset(p, 0, sizeof *p);
  p->fd = -1;
  p->slot_size = slot_size;
  p->shift = pool_shift(slot_size, slab_bytes);
}

static size_t slab_bytes(const dmem__pool *p)
{
  return p->slot_size << p->shift;
}

static size_t bitmap_words(const dmem__pool *p)
{
  return (((size_t)1 << p->shift) + 63) / 64;
}

static void slab_unmap(dmem__store *s, dmem__pool *p, dmem__slab *sl, dmem__alloc *a)
{
  munmap(sl->mem, slab_bytes(p));
#if DMEM_HAVE_MEMFD
  if (sl->fd >= 0) /* the memory goes with the blocks, not with the mapping */
    if (dmem__sys_punch(sl->fd,
                        (off_t)(p->base + (int64_t)((size_t)(sl - p->slabs) * slab_bytes(p))),
                        (off_t)slab_bytes(p)) != 0 &&
        s)
      s->punch_errors++;
#endif
  dmem__free(a, sl->bitmap, bitmap_words(p) * 8);
  sl->mem = NULL;
  sl->bitmap = NULL;
  p->mapped_bytes -= slab_bytes(p);
}

static void pool_fini(dmem__pool *p, dmem__alloc *a)
{
  for (uint32_t i = 0; i < p->nslabs; i++)
    if (p->slabs[i].mem)
      slab_unmap(NULL, p, &p->slabs[i], a); /* the memfd goes too */
  dmem__free(a, p->slabs, p->cap * sizeof *p->slabs);
  memset(p, 0, sizeof *p);
  p->fd = -1;
}

/* Maps slab si: anonymous memory, or its part of memfd fd (grown to hold
 * it; never shrunk, holes cost nothing). */
static void *slab_map(dmem__pool *p, uint32_t si, int fd)
{
  size_t bytes = slab_bytes(p);
  if (fd < 0)
    return dmem__sys_mmap(DMEM__FP_SLAB_MMAP, NULL, bytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  off_t off = (off_t)(p->base + (int64_t)((size_t)si * bytes));
  struct stat st;
  if (fstat(fd, &st) != 0 || (st.st_size < off + (off_t)bytes &&
                              dmem__sys_ftruncate(DMEM__FP_SLAB_GROW, fd, off + (off_t)bytes) != 0))
    return MAP_FAILED;
  return dmem__sys_mmap(DMEM__FP_SLAB_MMAP, NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                        off);
}

/* A slab index with room in memfd fd (-1: anonymous), mapping a new slab
 * if needed; UINT32_MAX on failure. An unmapped slab's index may go to any
 * memfd. */
static uint32_t pool_slab_with_room(dmem__pool *p, dmem__alloc *a, uint32_t max_slabs, int fd,
                                    uint32_t *hint)
{
  uint32_t slots = (uint32_t)1 << p->shift;
  uint32_t empty = UINT32_MAX;
  for (uint32_t k = 0; k < p->nslabs; k++) {
    uint32_t i = (*hint + k) % p->nslabs;
    if (p->slabs[i].mem && p->slabs[i].fd == fd && p->slabs[i].used < slots)
      return *hint = i;
    if (!p->slabs[i].mem && empty == UINT32_MAX)
      empty = i;
  }
  if (empty == UINT32_MAX) {
    if (p->nslabs >= max_slabs)
      return UINT32_MAX;
    if (p->nslabs == p->cap) {
      uint32_t ncap = p->cap ? p->cap * 2 : 8;
      dmem__slab *ns = dmem__calloc(a, ncap * sizeof *ns);
      if (!ns)
        return UINT32_MAX;
      if (p->slabs)
        memcpy(ns, p->slabs, p->nslabs * sizeof *ns);
      dmem__free(a, p->slabs, p->cap * sizeof *p->slabs);
      p->slabs = ns;
      p->cap = ncap;
    }
    empty = p->nslabs++;
    memset(&p->slabs[empty], 0, sizeof p->slabs[empty]);
  }
  dmem__slab *sl = &p->slabs[empty];
  sl->bitmap = dmem__calloc(a, bitmap_words(p) * 8);
  if (!sl->bitmap)
    return UINT32_MAX;
  void *m = slab_map(p, empty, fd);
  if (m == MAP_FAILED) {
    dmem__free(a, sl->bitmap, bitmap_words(p) * 8);
    sl->bitmap = NULL;
    return UINT32_MAX;
  }
  sl->mem = m;
  sl->fd = fd;
  sl->used = 0;
  p->mapped_bytes += slab_bytes(p);
  return *hint = empty;
}

static int pool_alloc(uint32_t *out, dmem__pool *p, dmem__alloc *a, uint32_t max_slabs, int fd,
                      uint32_t *hint)
{
  uint32_t si = pool_slab_with_room(p, a, max_slabs, fd, hint);
  if (si == UINT32_MAX)
    return DMEM_ENOMEM;
  dmem__slab *sl = &p->slabs[si];
  size_t words = bitmap_words(p);
  for (size_t w = 0; w < words; w++) {
    if (sl->bitmap[w] == UINT64_MAX)
      continue;
    unsigned bit = (unsigned)__builtin_ctzll(~sl->bitmap[w]);
    uint32_t slot = (uint32_t)(w * 64 + bit);
    sl->bitmap[w] |= 1ull << bit;
    sl->used++;
    p->used_slots++;
    *out = (si << p->shift) | slot;
    return 0;
  }
  return DMEM_ENOMEM; /* unreachable: the slab had room */
}

static uint8_t *pool_ptr(const dmem__pool *p, uint32_t id)
{
  const dmem__slab *sl = &p->slabs[id >> p->shift];
  uint32_t slot = id & (((uint32_t)1 << p->shift) - 1);
  return sl->mem + (size_t)slot * p->slot_size;
}

static void pool_free(dmem__store *s, dmem__pool *p, uint32_t id)
{
  dmem__slab *sl = &p->slabs[id >> p->shift];
  uint32_t slot = id & (((uint32_t)1 << p->shift) - 1);
  sl->bitmap[slot / 64] &= ~(1ull << (slot % 64));
  sl->used--;
  p->used_slots--;
  if (sl->used == 0)
    slab_unmap(s, p, sl, s->alloc); /* the class gives this memory back */
}

/* ---------------------------------------------------------------- frames */

int dmem__frame_new(uint32_t *out, dmem__store *s, const void *content, uint64_t hash, int fd,
                    uint32_t *hint)
{
  uint32_t id;
  int rc = pool_alloc(&id, &s->frames, s->alloc, UINT32_MAX >> s->frames.shift, fd, hint);
  if (rc)
    return rc;
  if (id >= s->ftab_cap) {
    uint32_t ncap = s->ftab_cap ? s->ftab_cap : 1024;
    while (ncap <= id)
      ncap *= 2;
    dmem__frame *nt = dmem__calloc(s->alloc, (size_t)ncap * sizeof *nt);
    if (!nt) {
      pool_free(s, &s->frames, id);
      return DMEM_ENOMEM;
    }
    if (s->ftab)
      memcpy(nt, s->ftab, (size_t)s->ftab_cap * sizeof *nt);
    dmem__free(s->alloc, s->ftab, (size_t)s->ftab_cap * sizeof *s->ftab);
    s->ftab = nt;
    s->ftab_cap = ncap;
  }
  memcpy(pool_ptr(&s->frames, id), content, DMEM_PAGE_SIZE);
  dmem__frame *f = &s->ftab[id];
  f->hash = hash;
  f->refs = 0;
  f->sharers = 0;
  f->dead = 0;
  f->csum = dmem__checksum(content);
  s->nframes++;
  *out = id;
  return 0;
}

const uint8_t *dmem__frame_data(const dmem__store *s, uint32_t id)
{
  return pool_ptr(&s->frames, id);
}

dmem__frame *dmem__frame_meta(const dmem__store *s, uint32_t id)
{
  return &s->ftab[id];
}

int dmem__frame_release_if_unused(dmem__store *s, uint32_t id)
{
  if (s->ftab[id].refs != 0)
    return 0;
  pool_free(s, &s->frames, id);
  s->nframes--;
  return 1;
}

/* ----------------------------------------------------------------- blobs */

#define BLOB_CLASS_SHIFT 26
#define BLOB_SLAB_BYTES (256u << 10)

int64_t dmem__blob_offset(uint32_t id, size_t *slot_size)
{
  unsigned c = id >> BLOB_CLASS_SHIFT;
  uint32_t idx = id & (((uint32_t)1 << BLOB_CLASS_SHIFT) - 1);
  size_t size = ((size_t)c + 1) * 64;
  unsigned shift = pool_shift(size, BLOB_SLAB_BYTES);
  uint32_t slab = idx >> shift, slot = idx & (((uint32_t)1 << shift) - 1);
  if (slot_size)
    *slot_size = size;
  return DMEM__BLOB_BASE(c) + (int64_t)slab * (int64_t)(size << shift) +
         (int64_t)slot * (int64_t)size;
}

int dmem__store_blobs_fd(const dmem__store *s)
{
  return s->blobs_fd;
}

static unsigned blob_class(size_t total)
{
  return (unsigned)((total + 63) / 64 - 1);
}

int dmem__blob_put(uint32_t *out, dmem__store *s, const dmem__blob_hdr *h, const void *payload)
{
  if (h->len > DMEM__BLOB_MAX)
    return DMEM_ETOOBIG;
  unsigned c = blob_class(sizeof *h + h->len);
  dmem__pool *p = &s->blobs[c];
  uint32_t id;
  int rc =
      pool_alloc(&id, p, s->alloc, ((uint32_t)1 << BLOB_CLASS_SHIFT) >> p->shift, p->fd, &p->hint);
  if (rc)
    return rc;
  uint8_t *slot = pool_ptr(p, id);
  memcpy(slot, h, sizeof *h);
  memcpy(slot + sizeof *h, payload, h->len);
  *out = ((uint32_t)c << BLOB_CLASS_SHIFT) | id;
  return 0;
}

const dmem__blob_hdr *dmem__blob_get(const dmem__store *s, uint32_t id, const uint8_t **payload)
{
  const dmem__pool *p = &s->blobs[id >> BLOB_CLASS_SHIFT];
  const uint8_t *slot = pool_ptr(p, id & (((uint32_t)1 << BLOB_CLASS_SHIFT) - 1));
  *payload = slot + sizeof(dmem__blob_hdr);
  return (const dmem__blob_hdr *)(const void *)slot;
}

size_t dmem__blob_slot_size(uint32_t id)
{
  return ((size_t)(id >> BLOB_CLASS_SHIFT) + 1) * 64;
}

void dmem__blob_free(dmem__store *s, uint32_t id)
{
  pool_free(s, &s->blobs[id >> BLOB_CLASS_SHIFT], id & (((uint32_t)1 << BLOB_CLASS_SHIFT) - 1));
}

/* ------------------------------------------------------------------ swap */

int dmem__swap_put(uint32_t *out, dmem__store *s, const void *page)
{
  if (s->swap_fd < 0)
    return DMEM_ENOTSUP;
  if (!dmem__swap_room(s))
    return DMEM_ENOSPC; /* the budget (swap_max), not a failure */
  uint32_t slot = s->swap_nfree ? s->swap_free[--s->swap_nfree] : s->swap_next++;
  ssize_t n = dmem__sys_pwrite(DMEM__FP_SWAP_WRITE, s->swap_fd, page, DMEM_PAGE_SIZE,
                               (off_t)slot * DMEM_PAGE_SIZE);
  if (n != (ssize_t)DMEM_PAGE_SIZE) {
    if (n >= 0)
      errno = EIO; /* a short write: the file system is full */
    s->swap_free[s->swap_nfree++] = slot;
    return DMEM_EIO;
  }
  s->swap_csum[slot] = dmem__checksum(page);
  s->swap_used++;
  *out = slot;
  return 0;
}

int dmem__swap_get(void *page, dmem__store *s, uint32_t slot)
{
  if (s->swap_fd < 0 || slot >= s->swap_next)
    return DMEM_ECORRUPT;
  ssize_t n = dmem__sys_pread(DMEM__FP_SWAP_READ, s->swap_fd, page, DMEM_PAGE_SIZE,
                              (off_t)slot * DMEM_PAGE_SIZE);
  if (n != (ssize_t)DMEM_PAGE_SIZE) {
    if (n >= 0)
      errno = EIO;
    return n < 0 ? DMEM_EIO : DMEM_ECORRUPT; /* short: truncated behind the engine */
  }
  return dmem__checksum(page) == s->swap_csum[slot] ? 0 : DMEM_ECORRUPT;
}

void dmem__swap_free(dmem__store *s, uint32_t slot)
{
  s->swap_free[s->swap_nfree++] = slot;
  s->swap_used--;
}

/* ----------------------------------------------------------------- store */

/* An unnamed swap file in dir: O_TMPFILE, or where the filesystem has no
 * O_TMPFILE a new file (O_EXCL: never an existing file or a symlink) that
 * is unlinked at once. -1 with errno set on failure. */
static int open_swap(const char *dir)
{
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
    return fd;
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/.dmem-swap-XXXXXX", dir) >= sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  fd = mkostemp(path, O_CLOEXEC); /* O_CREAT | O_EXCL, mode 0600 */
  if (fd >= 0 && unlink(path) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

int dmem__store_init(dmem__store *s, dmem__alloc *a, const char *swap_dir, uint64_t swap_max)
{
  memset(s, 0, sizeof *s);
  s->alloc = a;
  s->swap_fd = -1;
  /* Frames go into the memfd of their sharing domain (the engine's). */
  pool_init(&s->frames, DMEM_PAGE_SIZE, 2u << 20);
  s->blobs_fd = -1;
#if DMEM_HAVE_MEMFD
  /* Blobs too, each class in a range of its own: with the frames memfd and
   * a VM's journal (dmem_vm_set_journal), another process can rebuild any
   * evicted page should this one die. */
  s->blobs_fd = dmem__sys_memfd_create("dmem-blobs", MFD_CLOEXEC);
  /* Where the system has no memfd to give (ENOSYS, or EPERM from a
   * sandbox), anonymous memory: nothing to rebuild from after a crash. Any
   * other failure is one. */
  if (s->blobs_fd < 0 && errno != ENOSYS && errno != EPERM)
    return DMEM_ESYS;
#endif
  for (unsigned c = 0; c < DMEM__BLOB_CLASSES; c++) {
    pool_init(&s->blobs[c], ((size_t)c + 1) * 64, BLOB_SLAB_BYTES);
    s->blobs[c].fd = s->blobs_fd;
    s->blobs[c].base = DMEM__BLOB_BASE(c);
  }
  if (!swap_dir)
    return 0;
  uint64_t slots = (swap_max ? swap_max : (1ull << 30)) / DMEM_PAGE_SIZE;
  if (slots == 0 || slots > UINT32_MAX - 1)
    return DMEM_EINVAL;
  s->swap_slots = (uint32_t)slots; /* before the allocations: fini frees by it */
  s->swap_free = dmem__malloc(a, slots * sizeof *s->swap_free);
  s->swap_csum = dmem__malloc(a, slots * sizeof *s->swap_csum);
  if (!s->swap_free || !s->swap_csum) {
    dmem__store_fini(s);
    return DMEM_ENOMEM;
  }
  s->swap_fd = open_swap(swap_dir);
  if (s->swap_fd < 0) {
    int rc = errno == ENOENT || errno == ENOTDIR ? DMEM_EINVAL : DMEM_EIO;
    dmem__store_fini(s);
    return rc;
  }
  return 0;
}

void dmem__store_fini(dmem__store *s)
{
  dmem__alloc *a = s->alloc;
  pool_fini(&s->frames, a);
  for (unsigned c = 0; c < DMEM__BLOB_CLASSES; c++)
    pool_fini(&s->blobs[c], a);
  if (s->blobs_fd >= 0)
    close(s->blobs_fd);
  s->blobs_fd = -1;
  dmem__free(a, s->ftab, (size_t)s->ftab_cap * sizeof *s->ftab);
  if (s->swap_fd >= 0)
    close(s->swap_fd); /* unnamed: its blocks go with it */
  dmem__free(a, s->swap_free, (size_t)s->swap_slots * sizeof *s->swap_free);
  dmem__free(a, s->swap_csum, (size_t)s->swap_slots * sizeof *s->swap_csum);
  s->ftab = NULL;
  s->swap_fd = -1;
  s->swap_free = s->swap_csum = NULL;
}

uint64_t dmem__store_bytes(const dmem__store *s)
{
  uint64_t b = s->frames.mapped_bytes;
  for (unsigned c = 0; c < DMEM__BLOB_CLASSES; c++)
    b += s->blobs[c].mapped_bytes;
  return b;
}

uint64_t dmem__store_meta_bytes(const dmem__store *s)
{
  uint64_t b = (uint64_t)s->ftab_cap * sizeof(dmem__frame);
  b += (uint64_t)s->frames.cap * sizeof(dmem__slab);
  for (unsigned c = 0; c < DMEM__BLOB_CLASSES; c++)
    b += (uint64_t)s->blobs[c].cap * sizeof(dmem__slab);
  b += (uint64_t)s->swap_slots * 8;
  return b;
}
