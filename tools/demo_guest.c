/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The guests of `diffmem demo`: content, program, VM and replay
 * (demo_guest.h says what a guest is and what its program does); and the
 * probe guest, which times single accesses on the same VM setup. */
#include "config.h"

#include "demo_guest.h"
#include "kvm_cpl3.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#define PAGE DG_PAGE
#define PORT_REPORT 0x10

static int fail(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t len, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, len, fmt, ap);
  va_end(ap);
  return -1;
}

int dg_layout_make(dg_layout *l, uint64_t content_pages, uint64_t data_pages)
{
  memset(l, 0, sizeof *l);
  if (content_pages == 0 || data_pages == 0 ||
      content_pages + data_pages > DG_MAX_PAGES - DG_CTL_PAGES)
    return -1;
  l->content_gfn = 0;
  l->content_pages = content_pages;
  l->data_gfn = content_pages;
  l->data_pages = data_pages;
  l->ctl_gfn = content_pages + data_pages;
  l->npages = l->ctl_gfn + DG_CTL_PAGES;
  return 0;
}

static uint64_t mix64(uint64_t z)
{
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* ---------------------------------------------------------------- files */

typedef struct dg_file {
  char *path;
  uint64_t pages, key; /* key: the global order */
  dev_t dev;
  ino_t ino;
} dg_file;

struct dg_files {
  dg_file *e;
  size_t n, cap;
};

/* Files larger than this are left out: the guests should hold many
 * programs, not a few big ones. */
#define FILE_MAX_BYTES (8u << 20)

static uint64_t fnv1a(const char *s)
{
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

static int seen_inode(const dg_files *f, dev_t dev, ino_t ino)
{
  for (size_t i = 0; i < f->n; i++)
    if (f->e[i].dev == dev && f->e[i].ino == ino)
      return 1;
  return 0;
}

static void scan_dir(dg_files *f, const char *dir, int only_so)
{
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || (only_so && !strstr(de->d_name, ".so")))
      continue;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path)
      continue;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < (off_t)PAGE ||
        st.st_size > (off_t)FILE_MAX_BYTES || access(path, R_OK) != 0 ||
        seen_inode(f, st.st_dev, st.st_ino))
      continue;
    if (f->n == f->cap) {
      size_t cap = f->cap ? f->cap * 2 : 1024;
      dg_file *e = realloc(f->e, cap * sizeof *e);
      if (!e)
        break;
      f->e = e;
      f->cap = cap;
    }
    char *p = strdup(path);
    if (!p)
      break;
    dg_file *e = &f->e[f->n++];
    e->path = p;
    e->pages = ((uint64_t)st.st_size + PAGE - 1) / PAGE;
    e->key = mix64(fnv1a(de->d_name));
    e->dev = st.st_dev;
    e->ino = st.st_ino;
  }
  closedir(d);
}

static int by_key(const void *a, const void *b)
{
  const dg_file *x = a, *y = b;
  if (x->key != y->key)
    return x->key < y->key ? -1 : 1;
  return strcmp(x->path, y->path);
}

dg_files *dg_files_scan(void)
{
  dg_files *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  scan_dir(f, "/usr/bin", 0);
  scan_dir(f, "/usr/lib/x86_64-linux-gnu", 1);
  scan_dir(f, "/usr/lib/aarch64-linux-gnu", 1);
  scan_dir(f, "/usr/lib64", 1);
  scan_dir(f, "/usr/lib", 1);
  if (f->n == 0) {
    dg_files_free(f);
    return NULL;
  }
  /* By a hash of the name: the same order on every run of this machine,
   * and programs and libraries mixed. */
  qsort(f->e, f->n, sizeof *f->e, by_key);
  return f;
}

void dg_files_free(dg_files *f)
{
  if (!f)
    return;
  for (size_t i = 0; i < f->n; i++)
    free(f->e[i].path);
  free(f->e);
  free(f);
}

/* Reads pages * 4 KiB bytes of a file into dst. A file that ends early
 * is an error, or with short_ok the rest is zeros (a file's last page). */
static int read_pages(uint8_t *dst, uint64_t pages, const char *path, int short_ok, char *err,
                      size_t errlen)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
  size_t want = (size_t)pages * PAGE, got = 0;
  while (got < want) {
    ssize_t k = pread(fd, dst + got, want - got, (off_t)got);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 || (k == 0 && !short_ok)) {
      close(fd);
      return fail(err, errlen, "%s: read failed at offset %zu: %s", path, got,
                  k < 0 ? strerror(errno) : "unexpected end of file");
    }
    if (k == 0)
      break;
    got += (size_t)k;
  }
  close(fd);
  memset(dst + got, 0, want - got);
  return 0;
}

int dg_fill_files(uint8_t *dst, uint64_t n, uint64_t zero_pages, const dg_files *f, unsigned guest,
                  char *err, size_t errlen)
{
  uint64_t want = zero_pages < n ? n - zero_pages : 0, have = 0;
  size_t *pick = malloc(f->n * sizeof *pick), npick = 0;
  if (!pick)
    return fail(err, errlen, "out of memory");
  /* Walk the global order; this guest skips a third of the files (its own
   * third), and takes the skipped ones only if it runs short. */
  for (int round = 0; round < 2 && have < want; round++) {
    for (size_t i = 0; i < f->n && have < want; i++) {
      int skip = mix64(f->e[i].key ^ (0x9e3779b97f4a7c15ull * (guest + 1))) % 3 == 0;
      if (skip != round)
        continue;
      pick[npick++] = i;
      have += f->e[i].pages;
    }
  }
  /* Its own layout: the picks, rotated. */
  size_t rot = npick ? (size_t)(mix64(guest + 17) % npick) : 0;
  uint64_t at = 0;
  int rc = 0;
  for (size_t k = 0; k < npick && at < want && rc == 0; k++) {
    const dg_file *e = &f->e[pick[(k + rot) % npick]];
    uint64_t np = e->pages < want - at ? e->pages : want - at;
    rc = read_pages(dst + at * PAGE, np, e->path, 1, err, errlen);
    at += np;
  }
  free(pick);
  if (rc == 0)
    memset(dst + at * PAGE, 0, (size_t)(n - at) * PAGE);
  return rc;
}

/* ---------------------------------------------------------------- heap */

static void put64(uint8_t *p, uint64_t v)
{
  memcpy(p, &v, 8);
}

/* Three kinds of page, by i % 4: objects with pointers (differ between
 * guests in the pointers' upper bytes: ASLR), counters and names (differ
 * in a few words), and tables (the same in every guest). */
static void heap_page(uint8_t *p, unsigned guest, uint64_t i)
{
  uint64_t base = 0x560000000000ull + (uint64_t)guest * 0x1234567000ull;
  uint64_t lib = 0x7f0000000000ull + (uint64_t)guest * 0x9876000ull;
  memset(p, 0, PAGE);
  switch (i % 4) {
  case 0:
    for (uint64_t k = 0; k < PAGE / 64; k++) {
      uint8_t *o = p + k * 64;
      uint64_t id = i * (PAGE / 64) + k;
      put64(o, base + (id + 1) * 64);                /* next */
      put64(o + 8, id ? base + (id - 1) * 64 : 0);   /* prev */
      put64(o + 16, lib + (id % 11) * 0x40);         /* vtable */
      put64(o + 24, (1 + id % 5) | (id % 11) << 32); /* refs, type */
      put64(o + 32, mix64(id) & 0xffffffffffull);    /* key */
      snprintf((char *)o + 40, 24, "obj-%u", (unsigned)(id % 100000000));
    }
    break;
  case 1:
  case 2:
    for (uint64_t k = 0; k < PAGE / 32; k++) {
      uint8_t *o = p + k * 32;
      snprintf((char *)o, 20, "ctr.%u.%u", (unsigned)(i % 1000000), (unsigned)k);
      put64(o + 24, (i * 31 + k) % 1000);
    }
    for (unsigned k = 0; k < 6; k++) /* this guest's own figures */
      put64(p + (mix64(i * 8 + k) % (PAGE / 32)) * 32 + 24,
            mix64(guest * 1000003 + i + k) % 100000);
    break;
  default:
    for (uint64_t k = 0; k < PAGE / 4; k++) {
      uint32_t v = (uint32_t)((i * 2654435761u + k * k) & 0xfff);
      memcpy(p + k * 4, &v, 4);
    }
    break;
  }
}

void dg_fill_heap(uint8_t *dst, uint64_t n, unsigned guest)
{
  for (uint64_t i = 0; i < n; i++)
    heap_page(dst + i * PAGE, guest, i);
}

int dg_read_image(uint8_t *dst, uint64_t n, const char *path, char *err, size_t errlen)
{
  return read_pages(dst, n, path, 0, err, errlen);
}

/* ---------------------------------------------------------------- program */

/* The loop of demo_guest.h, assembled from AT&T source with GNU as --64;
 * rsi points at the parameter block (u32 words, enum below). Registers:
 * ebx the LCG, rbp operations done, edi the sum, r8d x1, r9d x2 >> 8. */
// clang-format off
static const uint8_t guest_code[] = {
  /* start: */
  0x8b, 0x1e,                         /* 00: mov (%rsi),%ebx          x = seed */
  0x31, 0xed,                         /* 02: xor %ebp,%ebp            ops = 0 */
  0x31, 0xff,                         /* 04: xor %edi,%edi            sum = 0 */
  /* loop: */
  0x69, 0xdb, 0x0d, 0x66, 0x19, 0x00, /* 06: imul $1664525,%ebx,%ebx */
  0x81, 0xc3, 0x5f, 0xf3, 0x6e, 0x3c, /* 0c: add $1013904223,%ebx */
  0x41, 0x89, 0xd8,                   /* 12: mov %ebx,%r8d            x1 */
  0x69, 0xdb, 0x0d, 0x66, 0x19, 0x00, /* 15: imul $1664525,%ebx,%ebx */
  0x81, 0xc3, 0x5f, 0xf3, 0x6e, 0x3c, /* 1b: add $1013904223,%ebx */
  0x41, 0x89, 0xd9,                   /* 21: mov %ebx,%r9d */
  0x41, 0xc1, 0xe9, 0x08,             /* 24: shr $8,%r9d              r = x2 >> 8 */
  0x44, 0x89, 0xc0,                   /* 28: mov %r8d,%eax */
  0xc1, 0xe8, 0x10,                   /* 2b: shr $16,%eax             h = x1 >> 16 */
  0x3b, 0x46, 0x08,                   /* 2e: cmp 0x8(%rsi),%eax */
  0x72, 0x2d,                         /* 31: jb cold */
  0x3b, 0x46, 0x0c,                   /* 33: cmp 0xc(%rsi),%eax */
  0x72, 0x49,                         /* 36: jb data */
  0x44, 0x89, 0xc8,                   /* 38: mov %r9d,%eax            hot read */
  0x23, 0x46, 0x18,                   /* 3b: and 0x18(%rsi),%eax      r & mask */
  0x8b, 0x4e, 0x1c,                   /* 3e: mov 0x1c(%rsi),%ecx */
  0x49, 0x89, 0xea,                   /* 41: mov %rbp,%r10 */
  0x49, 0xd3, 0xea,                   /* 44: shr %cl,%r10             ops >> shift */
  0x44, 0x8b, 0x5e, 0x20,             /* 47: mov 0x20(%rsi),%r11d */
  0x4d, 0x0f, 0xaf, 0xd3,             /* 4b: imul %r11,%r10           * step */
  0x4c, 0x01, 0xd0,                   /* 4f: add %r10,%rax */
  0x31, 0xd2,                         /* 52: xor %edx,%edx */
  0x44, 0x8b, 0x5e, 0x14,             /* 54: mov 0x14(%rsi),%r11d */
  0x49, 0xf7, 0xf3,                   /* 58: div %r11                 % content dwords */
  0x48, 0x89, 0xd0,                   /* 5b: mov %rdx,%rax */
  0xeb, 0x0f,                         /* 5e: jmp content_read */
  /* cold: */
  0x44, 0x89, 0xc8,                   /* 60: mov %r9d,%eax */
  0x44, 0x8b, 0x5e, 0x14,             /* 63: mov 0x14(%rsi),%r11d */
  0x49, 0x0f, 0xaf, 0xc3,             /* 67: imul %r11,%rax */
  0x48, 0xc1, 0xe8, 0x18,             /* 6b: shr $24,%rax             r * dwords >> 24 */
  /* content_read: */
  0x48, 0xc1, 0xe0, 0x02,             /* 6f: shl $2,%rax */
  0x44, 0x8b, 0x5e, 0x10,             /* 73: mov 0x10(%rsi),%r11d */
  0x4c, 0x01, 0xd8,                   /* 77: add %r11,%rax */
  0xc1, 0xc7, 0x05,                   /* 7a: rol $5,%edi */
  0x03, 0x38,                         /* 7d: add (%rax),%edi          sum */
  0xeb, 0x45,                         /* 7f: jmp next */
  /* data: */
  0x44, 0x89, 0xc8,                   /* 81: mov %r9d,%eax */
  0x23, 0x46, 0x2c,                   /* 84: and 0x2c(%rsi),%eax */
  0x8b, 0x4e, 0x30,                   /* 87: mov 0x30(%rsi),%ecx */
  0x49, 0x89, 0xea,                   /* 8a: mov %rbp,%r10 */
  0x49, 0xd3, 0xea,                   /* 8d: shr %cl,%r10 */
  0x44, 0x8b, 0x5e, 0x34,             /* 90: mov 0x34(%rsi),%r11d */
  0x4d, 0x0f, 0xaf, 0xd3,             /* 94: imul %r11,%r10 */
  0x4c, 0x01, 0xd0,                   /* 98: add %r10,%rax */
  0x31, 0xd2,                         /* 9b: xor %edx,%edx */
  0x44, 0x8b, 0x5e, 0x28,             /* 9d: mov 0x28(%rsi),%r11d */
  0x49, 0xf7, 0xf3,                   /* a1: div %r11                 % data dwords */
  0x48, 0x8d, 0x04, 0x95, 0x00, 0x00, 0x00, 0x00, /* a4: lea 0(,%rdx,4),%rax */
  0x44, 0x8b, 0x5e, 0x24,             /* ac: mov 0x24(%rsi),%r11d */
  0x4c, 0x01, 0xd8,                   /* b0: add %r11,%rax */
  0x85, 0xdb,                         /* b3: test %ebx,%ebx */
  0x78, 0x07,                         /* b5: js write                 x2 top bit */
  0xc1, 0xc7, 0x05,                   /* b7: rol $5,%edi */
  0x03, 0x38,                         /* ba: add (%rax),%edi */
  0xeb, 0x08,                         /* bc: jmp next */
  /* write: */
  0x44, 0x89, 0xc1,                   /* be: mov %r8d,%ecx */
  0xc1, 0xe9, 0x18,                   /* c1: shr $24,%ecx */
  0x01, 0x08,                         /* c4: add %ecx,(%rax)          += x1 >> 24 */
  /* next: */
  0x48, 0xff, 0xc5,                   /* c6: inc %rbp */
  0x89, 0xe8,                         /* c9: mov %ebp,%eax */
  0x23, 0x46, 0x04,                   /* cb: and 0x4(%rsi),%eax */
  0x0f, 0x85, 0x32, 0xff, 0xff, 0xff, /* ce: jne loop */
  0x89, 0xe8,                         /* d4: mov %ebp,%eax */
  0xe7, 0x10,                         /* d6: out %eax,$0x10           report */
  0xe9, 0x29, 0xff, 0xff, 0xff,       /* d8: jmp loop */
};
// clang-format on

/* The parameter page, u32 words (offset 4 * word in the code above). */
// clang-format off
enum { P_SEED, P_REPMASK, P_COLD, P_DATAOP, P_CONTENT, P_CDWORDS, P_HOTMASK, P_HOTSHIFT,
       P_HOTSTEP, P_DATA, P_DDWORDS, P_DMASK, P_DSHIFT, P_DSTEP, P_WORDS };
// clang-format on

static void params(uint32_t *w, const dg_layout *l, const dg_program *p)
{
  memset(w, 0, P_WORDS * 4);
  w[P_SEED] = p->seed;
  w[P_REPMASK] = (1u << p->report_log) - 1;
  w[P_COLD] = p->cold_thresh;
  w[P_DATAOP] = p->data_thresh;
  w[P_CONTENT] = (uint32_t)(l->content_gfn * PAGE);
  w[P_CDWORDS] = (uint32_t)(l->content_pages * (PAGE / 4));
  w[P_HOTMASK] = (1u << p->hot_win_log) - 1;
  w[P_HOTSHIFT] = p->hot_shift;
  w[P_HOTSTEP] = p->hot_step;
  w[P_DATA] = (uint32_t)(l->data_gfn * PAGE);
  w[P_DDWORDS] = (uint32_t)(l->data_pages * (PAGE / 4));
  w[P_DMASK] = (1u << p->data_win_log) - 1;
  w[P_DSHIFT] = p->data_shift;
  w[P_DSTEP] = p->data_step;
}

/* Where the code page holds the descriptor tables. A TSS of our own
 * matters: where OUT at CPL 3 is checked against the TSS's I/O bitmap
 * (this project's PVM hosts do, IOPL notwithstanding), the reset TR (base
 * 0, limit 0xffff) would read a bitmap out of guest page 0, which here
 * holds content. Ours allows ports 0 to 0x3ff. The IDT is empty: any
 * exception is a triple fault, which the run loop reports. */
#define TSS_OFF 0x800u
#define TSS_LIMIT (0x68u + 128u) /* the header, the bitmap, its 0xff end */
#define GDT_OFF 0xc00u
#define GDT_LIMIT (7u * 8 - 1)
#define IDT_OFF 0xe00u
#define SEL_CODE 0x1b /* GDT entry 3, RPL 3 */
#define SEL_DATA 0x23 /* entry 4 */
#define SEL_TSS 0x28  /* entries 5 and 6 */

static void descriptor_tables(uint8_t *page, uint64_t at)
{
  uint8_t *tss = page + TSS_OFF;
  uint16_t iomap = 0x68;
  memcpy(tss + 0x66, &iomap, 2);
  tss[TSS_LIMIT] = 0xff;
  uint64_t *gdt = (uint64_t *)(page + GDT_OFF), base = at + TSS_OFF;
  gdt[3] = 0x00affb000000ffffull; /* 64-bit code, DPL 3 */
  gdt[4] = 0x00cff3000000ffffull; /* data, DPL 3 */
  gdt[5] = (TSS_LIMIT & 0xffffull) | (base & 0xffffffull) << 16 | 0x8bull << 40 |
           ((base >> 24) & 0xffull) << 56; /* busy 64-bit TSS, present */
  gdt[6] = base >> 32;
}

/* What the page tables map: guest physical 0 to 4 GiB, identity. */
#define MAPPED_BYTES ((uint64_t)4 << 30)

/* The DG_CTL_PAGES control pages every guest of ours has, at guest page
 * ctl_gfn: its code (at most TSS_OFF bytes) and descriptor tables, an
 * empty parameter page for the caller to fill, and the page tables. */
static void control_base(uint8_t *ctl, uint64_t ctl_gfn, const uint8_t *code, size_t code_len)
{
  uint64_t at = ctl_gfn * PAGE;
  memset(ctl, 0, (size_t)DG_CTL_PAGES * PAGE);
  memcpy(ctl, code, code_len);
  descriptor_tables(ctl, at);
  uint64_t *pml4 = (uint64_t *)(ctl + 2 * PAGE), *pdpt = (uint64_t *)(ctl + 3 * PAGE);
  /* Present, writable, user, and accessed (and dirty): bits the CPU
   * would set otherwise, so that the page tables stay as written. */
  pml4[0] = (at + 3 * PAGE) | 0x27;
  for (uint64_t i = 0; i < 4; i++) {
    pdpt[i] = (at + (4 + i) * PAGE) | 0x27;
    uint64_t *pd = (uint64_t *)(ctl + (4 + i) * PAGE);
    for (uint64_t j = 0; j < 512; j++)
      pd[j] = (i << 30 | j << 21) | 0xe7; /* a 2 MiB page */
  }
}

_Static_assert(sizeof guest_code <= TSS_OFF, "the demo's code overlaps its TSS");

/* The control part as dg_guest_create writes it: ctl is DG_CTL_PAGES
 * pages at guest page l->ctl_gfn. */
static void control_pages(uint8_t *ctl, const dg_layout *l, const dg_program *p)
{
  control_base(ctl, l->ctl_gfn, guest_code, sizeof guest_code);
  params((uint32_t *)(ctl + PAGE), l, p);
}

uint64_t dg_check_control(const uint8_t *mem, const dg_layout *l, const dg_program *p)
{
  uint8_t want[DG_CTL_PAGES * PAGE];
  control_pages(want, l, p);
  uint64_t bad = 0;
  for (unsigned i = 0; i < DG_CTL_PAGES; i++)
    bad += memcmp(want + i * PAGE, mem + (l->ctl_gfn + i) * PAGE, PAGE) != 0;
  return bad;
}

static uint32_t rotl5(uint32_t v)
{
  return v << 5 | v >> 27;
}

uint32_t dg_replay(uint8_t *data, const uint8_t *content, const dg_layout *l, const dg_program *p,
                   uint64_t ops)
{
  uint32_t w[P_WORDS];
  params(w, l, p);
  uint64_t cdw = w[P_CDWORDS], ddw = w[P_DDWORDS];
  uint32_t x = w[P_SEED], sum = 0, v;
  for (uint64_t op = 0; op < ops; op++) {
    uint32_t x1 = x = x * 1664525u + 1013904223u;
    uint32_t x2 = x = x * 1664525u + 1013904223u;
    uint32_t r = x2 >> 8, h = x1 >> 16;
    uint64_t i;
    if (h < w[P_COLD]) {
      i = (uint64_t)r * cdw >> 24;
    } else if (h < w[P_DATAOP]) {
      i = ((r & w[P_DMASK]) + (op >> w[P_DSHIFT]) * w[P_DSTEP]) % ddw;
      memcpy(&v, data + i * 4, 4);
      if (x2 & 0x80000000u) {
        v += x1 >> 24;
        memcpy(data + i * 4, &v, 4);
      } else {
        sum = rotl5(sum) + v;
      }
      continue;
    } else {
      i = ((r & w[P_HOTMASK]) + (op >> w[P_HOTSHIFT]) * w[P_HOTSTEP]) % cdw;
    }
    memcpy(&v, content + i * 4, 4);
    sum = rotl5(sum) + v;
  }
  return sum;
}

/* ---------------------------------------------------------------- the VM */

/* A VM of ours: one vCPU at CPL 3 over a dg_ram (slot 0 at guest physical
 * 0) whose control pages start at guest page ctl_gfn. Shared by the demo
 * guest and the probe. */
typedef struct dg_vm {
  dg_ram ram; /* addr and npages filled in for a region too */
  int kvm, vm, vcpu;
  struct kvm_run *run;
  size_t run_size;
} dg_vm;

/* The RAM's mapping and size: a region's own, or the caller's. */
static dg_ram ram_resolve(const dg_ram *ram)
{
  dg_ram r = *ram;
  if (r.region) {
    r.addr = dmem_kvm_region_addr(r.region);
    r.npages = dmem_kvm_region_npages(r.region);
  }
  return r;
}

/* 64-bit flat segments at CPL 3, paging on, IOPL 3, with our own TSS. */
static int setup_vcpu(const dg_vm *v, uint64_t ctl_gfn, char *err, size_t len)
{
  struct kvm_cpuid2 *cpuid = kvm_cpl3_cpuid(v->kvm);
  uint64_t at = ctl_gfn * PAGE;
  kvm_cpl3 c = {.cr3 = at + 2 * PAGE,
                .rip = at,
                .rsi = at + PAGE,
                .code_sel = SEL_CODE,
                .data_sel = SEL_DATA,
                .gdt_base = at + GDT_OFF,
                .idt_base = at + IDT_OFF,
                .tss_base = at + TSS_OFF,
                .gdt_limit = GDT_LIMIT,
                .tss_limit = TSS_LIMIT,
                .tss_sel = SEL_TSS};
  int rc = kvm_cpl3_setup(v->vcpu, cpuid, &c, err, len);
  free(cpuid);
  return rc;
}

/* Makes the RAM memory slot 0 at guest physical 0 of the VM (vm_fd -1:
 * forgets it, for a region). */
static int set_slot(const dg_ram *ram, int vm_fd, char *err, size_t errlen)
{
  if (ram->region) {
    if (dmem_kvm_region_set_slot(ram->region, vm_fd, 0, 0, 0) == 0)
      return 0;
    return fail(err, errlen, "%s", dmem_kvm_region_errmsg(ram->region));
  }
  if (vm_fd < 0)
    return 0;
  struct kvm_userspace_memory_region m = {.slot = 0,
                                          .flags = 0,
                                          .guest_phys_addr = 0,
                                          .memory_size = ram->npages * PAGE,
                                          .userspace_addr = (uint64_t)(uintptr_t)ram->addr};
  if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &m) == 0)
    return 0;
  return fail(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
}

static void vm_close(dg_vm *v)
{
  if (v->run)
    munmap(v->run, v->run_size);
  if (v->vcpu >= 0)
    close(v->vcpu);
  if (v->vm >= 0) {
    set_slot(&v->ram, -1, NULL, 0);
    close(v->vm);
  }
  if (v->kvm >= 0)
    close(v->kvm);
  v->run = NULL;
  v->kvm = v->vm = v->vcpu = -1;
}

/* Makes the VM and its vCPU over ram (resolved), ready to run the code at
 * the start of the control pages, which the caller has written. On
 * failure everything made is closed again. */
static int vm_open(dg_vm *v, const dg_ram *ram, uint64_t ctl_gfn, char *err, size_t errlen)
{
  memset(v, 0, sizeof *v);
  v->ram = *ram;
  v->kvm = v->vm = v->vcpu = -1;
  const char *what = NULL;
  int sz = 0;
  if ((v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0)
    what = "cannot open /dev/kvm";
  else if ((v->vm = ioctl(v->kvm, KVM_CREATE_VM, 0)) < 0)
    what = "KVM_CREATE_VM";
  else if ((sz = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0)) <= 0)
    what = "KVM_GET_VCPU_MMAP_SIZE";
  else if (set_slot(&v->ram, v->vm, err, errlen) != 0)
    goto out; /* err says why */
  else if ((v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0ul)) < 0)
    what = "KVM_CREATE_VCPU";
  else if ((v->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0)) ==
           MAP_FAILED)
    what = "mmap of kvm_run";
  if (what) {
    if (v->run == MAP_FAILED)
      v->run = NULL;
    fail(err, errlen, "%s: %s", what, strerror(errno));
    goto out;
  }
  v->run_size = (size_t)sz;
  if (setup_vcpu(v, ctl_gfn, err, errlen) == 0)
    return 0;
out:
  vm_close(v);
  return -1;
}

/* What an exit other than the expected OUT means, into err. */
static void describe_exit(const struct kvm_run *run, char *err, size_t len)
{
  if (run->exit_reason == KVM_EXIT_SHUTDOWN)
    fail(err, len, "KVM_EXIT_SHUTDOWN: the guest took an exception (triple fault)");
  else if (run->exit_reason == KVM_EXIT_MMIO)
    fail(err, len, "KVM_EXIT_MMIO at %#llx (guest RAM not reachable?)",
         (unsigned long long)run->mmio.phys_addr);
  else if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
    fail(err, len, "KVM_EXIT_INTERNAL_ERROR, suberror %u", run->internal.suberror);
  else if (run->exit_reason == KVM_EXIT_IO)
    fail(err, len, "unexpected I/O exit: port %#x dir %u size %u", run->io.port, run->io.direction,
         run->io.size);
  else
    fail(err, len, "unexpected exit reason %u", run->exit_reason);
}

struct dg_guest {
  dg_vm v;
  dg_layout layout;
  dg_program prog;
  pthread_t thread;
  int started;
  double ops_per_s;
  int stop, forced, done; /* atomics */
  uint64_t ops_now;       /* atomic */
  dg_result res;
};

int dg_guest_create(dg_guest **out, const dg_ram *ram, const dg_layout *l, const dg_program *p,
                    char *err, size_t errlen)
{
  dg_ram r = ram_resolve(ram);
  if (!r.addr || r.npages < l->npages || p->report_log < 4 || p->report_log > 30 ||
      p->hot_win_log > 22 || p->data_win_log > 22 || p->hot_shift > 63 || p->data_shift > 63 ||
      p->data_thresh < p->cold_thresh)
    return fail(err, errlen, "bad guest configuration");
  dg_guest *g = calloc(1, sizeof *g);
  if (!g)
    return fail(err, errlen, "out of memory");
  g->layout = *l;
  g->prog = *p;
  control_pages((uint8_t *)r.addr + l->ctl_gfn * PAGE, l, p);
  if (vm_open(&g->v, &r, l->ctl_gfn, err, errlen) != 0) {
    free(g);
    return -1;
  }
  *out = g;
  return 0;
}

void dg_guest_destroy(dg_guest *g)
{
  if (!g)
    return;
  dg_guest_join(g, 0);
  vm_close(&g->v);
  free(g);
}

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void verr(dg_guest *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void verr(dg_guest *g, const char *fmt, ...)
{
  if (g->res.error[0])
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g->res.error, sizeof g->res.error, fmt, ap);
  va_end(ap);
}

/* Sleeps until the report's time slot, so that the guest runs about
 * ops_per_s; a guest that fell behind (slow faults) skips the backlog
 * instead of bursting. Wakes early when asked to stop. */
static void pace(dg_guest *g, uint64_t *t0)
{
  if (g->ops_per_s <= 0)
    return;
  uint64_t slot = (uint64_t)((double)(g->res.reports << g->prog.report_log) / g->ops_per_s * 1e9);
  uint64_t target = *t0 + slot, now = now_ns();
  if (now > target + 200000000u) {
    *t0 += now - target;
    return;
  }
  while (now < target && !__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE)) {
    uint64_t d = target - now < 50000000u ? target - now : 50000000u;
    struct timespec ts = {0, (long)d};
    nanosleep(&ts, NULL);
    now = now_ns();
  }
}

/* A report: checks it, then stops (reading the results) or paces.
 * Returns 1 to leave the run loop, 0 to go on, -1 on error. */
static int on_report(dg_guest *g, uint64_t *t0)
{
  struct kvm_run *run = g->v.run;
  uint32_t val;
  if (run->io.direction != KVM_EXIT_IO_OUT || run->io.size != 4 || run->io.count != 1 ||
      run->io.port != PORT_REPORT) {
    verr(g, "unexpected I/O exit: port %#x dir %u size %u", run->io.port, run->io.direction,
         run->io.size);
    return -1;
  }
  memcpy(&val, (uint8_t *)run + run->io.data_offset, 4);
  uint64_t want = (g->res.reports + 1) << g->prog.report_log;
  if (val != (uint32_t)want) {
    verr(g, "report %u, expected %u", val, (uint32_t)want);
    return -1;
  }
  g->res.reports++;
  __atomic_store_n(&g->ops_now, want, __ATOMIC_RELEASE);
  if (!__atomic_load_n(&g->stop, __ATOMIC_ACQUIRE)) {
    pace(g, t0);
    return 0;
  }
  struct kvm_regs r;
  if (ioctl(g->v.vcpu, KVM_GET_REGS, &r) != 0) {
    verr(g, "KVM_GET_REGS: %s", strerror(errno));
    return -1;
  }
  if (r.rbp != want) {
    verr(g, "stopped after %llu operations, reported %llu", (unsigned long long)r.rbp,
         (unsigned long long)want);
    return -1;
  }
  g->res.ops = r.rbp;
  g->res.sum = (uint32_t)r.rdi;
  g->res.stopped = 1;
  return 1;
}

static void *vcpu_thread(void *arg)
{
  dg_guest *g = arg;
  uint64_t t0 = now_ns();
  for (;;) {
    if (__atomic_load_n(&g->forced, __ATOMIC_ACQUIRE)) {
      verr(g, "forced out of the guest between reports");
      break;
    }
    uint64_t r0 = now_ns();
    int rc = ioctl(g->v.vcpu, KVM_RUN, 0);
    g->res.run_ns += now_ns() - r0;
    g->res.exits++;
    if (rc < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (rc < 0) {
      verr(g, "KVM_RUN: %s", strerror(errno));
      break;
    }
    if (g->v.run->exit_reason != KVM_EXIT_IO) {
      char why[sizeof g->res.error];
      describe_exit(g->v.run, why, sizeof why);
      verr(g, "%s", why);
      break;
    }
    if (on_report(g, &t0) != 0)
      break;
  }
  struct timespec cpu;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
  g->res.cpu_ns = (uint64_t)cpu.tv_sec * 1000000000u + (uint64_t)cpu.tv_nsec;
  __atomic_store_n(&g->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

static void on_signal(int sig)
{
  (void)sig;
}

int dg_guest_start(dg_guest *g, double ops_per_s)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* only to interrupt KVM_RUN */
  sigaction(SIGUSR1, &sa, NULL);
  g->ops_per_s = ops_per_s;
  if (pthread_create(&g->thread, NULL, vcpu_thread, g) != 0)
    return -1;
  g->started = 1;
  return 0;
}

void dg_guest_stop(dg_guest *g)
{
  __atomic_store_n(&g->stop, 1, __ATOMIC_RELEASE);
}

int dg_guest_join(dg_guest *g, unsigned timeout_ms)
{
  if (!g->started)
    return g->res.stopped ? 0 : -1;
  dg_guest_stop(g);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)timeout_ms * 1000000u;
  until.tv_sec += (time_t)(ns / 1000000000u);
  until.tv_nsec = (long)(ns % 1000000000u);
  if (pthread_timedjoin_np(g->thread, NULL, &until) != 0) {
    __atomic_store_n(&g->forced, 1, __ATOMIC_RELEASE);
    g->v.run->immediate_exit = 1;
    pthread_kill(g->thread, SIGUSR1);
    pthread_join(g->thread, NULL);
  }
  g->started = 0;
  return g->res.stopped ? 0 : -1;
}

int dg_guest_running(const dg_guest *g)
{
  return g->started && !__atomic_load_n(&g->done, __ATOMIC_ACQUIRE);
}

uint64_t dg_guest_ops(const dg_guest *g)
{
  return __atomic_load_n(&g->ops_now, __ATOMIC_ACQUIRE);
}

double dg_guest_cpu_s(const dg_guest *g)
{
  if (!dg_guest_running(g))
    return (double)g->res.cpu_ns * 1e-9;
  clockid_t cid;
  struct timespec ts;
  if (pthread_getcpuclockid(g->thread, &cid) != 0 || clock_gettime(cid, &ts) != 0)
    return 0;
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const dg_result *dg_guest_result(const dg_guest *g)
{
  return &g->res;
}

/* ---------------------------------------------------------------- probe */

/* The probe's loop, assembled from AT&T source with GNU as --64; rsi
 * points at its parameter page (probe_params below). For each address
 * it times one access between two rdtsc; the lfence before the first
 * rdtsc waits for the previous access's store of its result, the one
 * after it keeps the access from starting before the clock is read
 * (rdtsc is not ordered with later instructions), and the one after the
 * access waits for it to complete. The write is lock orb $0: one access
 * that needs the page writable (a write fault where the page is
 * read-only or absent, copy-on-write included) and leaves its content
 * as it was. Registers: r8 the address list, r9 the results, r10 i, r11
 * n, ebp write, edi and r12d the first rdtsc. After the batch it reports
 * n with OUT and, resumed, starts again from the parameter page. */
#define PORT_PROBE 0x11
// clang-format off
static const uint8_t probe_code[] = {
  /* start: */
  0x4c, 0x8b, 0x46, 0x08,             /* 00: mov 0x8(%rsi),%r8        addresses */
  0x4c, 0x8b, 0x4e, 0x10,             /* 04: mov 0x10(%rsi),%r9       results */
  0x44, 0x8b, 0x1e,                   /* 08: mov (%rsi),%r11d         n */
  0x8b, 0x6e, 0x04,                   /* 0b: mov 0x4(%rsi),%ebp       write */
  0x45, 0x31, 0xd2,                   /* 0e: xor %r10d,%r10d          i = 0 */
  /* loop: */
  0x4d, 0x39, 0xda,                   /* 11: cmp %r11,%r10 */
  0x73, 0x4f,                         /* 14: jae done */
  0x4b, 0x8b, 0x1c, 0xd0,             /* 16: mov (%r8,%r10,8),%rbx    address i */
  0x85, 0xed,                         /* 1a: test %ebp,%ebp */
  0x75, 0x17,                         /* 1c: jne write */
  0x0f, 0xae, 0xe8,                   /* 1e: lfence */
  0x0f, 0x31,                         /* 21: rdtsc */
  0x89, 0xc7,                         /* 23: mov %eax,%edi */
  0x41, 0x89, 0xd4,                   /* 25: mov %edx,%r12d */
  0x0f, 0xae, 0xe8,                   /* 28: lfence */
  0x0f, 0xb6, 0x0b,                   /* 2b: movzbl (%rbx),%ecx       the read */
  0x0f, 0xae, 0xe8,                   /* 2e: lfence */
  0x0f, 0x31,                         /* 31: rdtsc */
  0xeb, 0x16,                         /* 33: jmp store */
  /* write: */
  0x0f, 0xae, 0xe8,                   /* 35: lfence */
  0x0f, 0x31,                         /* 38: rdtsc */
  0x89, 0xc7,                         /* 3a: mov %eax,%edi */
  0x41, 0x89, 0xd4,                   /* 3c: mov %edx,%r12d */
  0x0f, 0xae, 0xe8,                   /* 3f: lfence */
  0xf0, 0x80, 0x0b, 0x00,             /* 42: lock orb $0x0,(%rbx)     the write */
  0x0f, 0xae, 0xe8,                   /* 46: lfence */
  0x0f, 0x31,                         /* 49: rdtsc */
  /* store: */
  0x48, 0xc1, 0xe2, 0x20,             /* 4b: shl $32,%rdx */
  0x48, 0x09, 0xc2,                   /* 4f: or %rax,%rdx             second TSC */
  0x49, 0xc1, 0xe4, 0x20,             /* 52: shl $32,%r12 */
  0x49, 0x09, 0xfc,                   /* 56: or %rdi,%r12             first TSC */
  0x4c, 0x29, 0xe2,                   /* 59: sub %r12,%rdx */
  0x4b, 0x89, 0x14, 0xd1,             /* 5c: mov %rdx,(%r9,%r10,8)    cycles[i] */
  0x49, 0xff, 0xc2,                   /* 60: inc %r10 */
  0xeb, 0xac,                         /* 63: jmp loop */
  /* done: */
  0x44, 0x89, 0xd0,                   /* 65: mov %r10d,%eax */
  0xe7, 0x11,                         /* 68: out %eax,$0x11           report n */
  0xeb, 0x94,                         /* 6a: jmp start */
};
// clang-format on

_Static_assert(sizeof probe_code <= TSS_OFF, "the probe's code overlaps its TSS");
_Static_assert(DG_PROBE_MAX * 8 <= PAGE, "the address list and the results are a page each");

/* The probe's parameter page (the second control page), as its code reads
 * it; the address list and the results are the pages after the common
 * control pages. */
typedef struct probe_params {
  uint32_t n, write;
  uint64_t list_gpa, results_gpa;
} probe_params;
#define PROBE_LIST DG_CTL_PAGES
#define PROBE_RESULTS (DG_CTL_PAGES + 1)

struct dg_probe {
  dg_vm v;
  uint64_t ctl_gfn;
  uint8_t *ctl; /* the control pages in the RAM's mapping */
  int broken;   /* an earlier batch failed: the vCPU's state is unknown */
};

int dg_probe_create(dg_probe **out, const dg_ram *ram, uint64_t ctl_gfn, char *err, size_t errlen)
{
  dg_ram r = ram_resolve(ram);
  if (!r.addr || ctl_gfn + DG_PROBE_PAGES > r.npages ||
      ctl_gfn + DG_PROBE_PAGES > MAPPED_BYTES / PAGE)
    return fail(err, errlen, "probe control pages at gfn %#llx: outside the RAM or above 4 GiB",
                (unsigned long long)ctl_gfn);
  dg_probe *p = calloc(1, sizeof *p);
  if (!p)
    return fail(err, errlen, "out of memory");
  p->ctl_gfn = ctl_gfn;
  p->ctl = (uint8_t *)r.addr + ctl_gfn * PAGE;
  control_base(p->ctl, ctl_gfn, probe_code, sizeof probe_code);
  memset(p->ctl + DG_CTL_PAGES * PAGE, 0, (DG_PROBE_PAGES - DG_CTL_PAGES) * PAGE);
  probe_params w = {.list_gpa = (ctl_gfn + PROBE_LIST) * PAGE,
                    .results_gpa = (ctl_gfn + PROBE_RESULTS) * PAGE};
  memcpy(p->ctl + PAGE, &w, sizeof w);
  if (vm_open(&p->v, &r, ctl_gfn, err, errlen) != 0) {
    free(p);
    return -1;
  }
  *out = p;
  return 0;
}

int dg_probe_run(dg_probe *p, const uint64_t *gpa, size_t n, int write, uint64_t *cycles, char *err,
                 size_t errlen)
{
  if (p->broken)
    return fail(err, errlen, "the probe's vCPU failed in an earlier batch");
  if (n > DG_PROBE_MAX)
    return fail(err, errlen, "%zu addresses, at most %d", n, DG_PROBE_MAX);
  uint64_t ram = p->v.ram.npages * PAGE, ctl = p->ctl_gfn * PAGE;
  for (size_t i = 0; i < n; i++) {
    /* Checked here: outside the RAM the guest would take an MMIO exit or
     * a triple fault mid-batch, and a probe of its own pages measures
     * nothing. */
    if (gpa[i] >= ram || gpa[i] >= MAPPED_BYTES ||
        (gpa[i] >= ctl && gpa[i] < ctl + DG_PROBE_PAGES * PAGE))
      return fail(err, errlen, "address %zu (%#llx): outside the RAM or 4 GiB, or a control page",
                  i, (unsigned long long)gpa[i]);
  }
  if (n)
    memcpy(p->ctl + PROBE_LIST * PAGE, gpa, n * sizeof *gpa);
  probe_params w;
  memcpy(&w, p->ctl + PAGE, sizeof w);
  w.n = (uint32_t)n;
  w.write = write != 0;
  memcpy(p->ctl + PAGE, &w, sizeof w);
  struct kvm_run *run = p->v.run;
  for (;;) {
    if (ioctl(p->v.vcpu, KVM_RUN, 0) == 0)
      break;
    /* A signal for this thread: the guest resumes where it was, and the
     * access it was in is timed with the detour. */
    if (errno == EINTR || errno == EAGAIN)
      continue;
    p->broken = 1;
    return fail(err, errlen, "KVM_RUN: %s", strerror(errno));
  }
  uint32_t val;
  if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT ||
      run->io.size != 4 || run->io.count != 1 || run->io.port != PORT_PROBE) {
    p->broken = 1;
    describe_exit(run, err, errlen);
    return -1;
  }
  memcpy(&val, (uint8_t *)run + run->io.data_offset, 4);
  if (val != n) {
    p->broken = 1;
    return fail(err, errlen, "the probe reported %u accesses, expected %zu", val, n);
  }
  if (n)
    memcpy(cycles, p->ctl + PROBE_RESULTS * PAGE, n * sizeof *cycles);
  return 0;
}

void dg_probe_destroy(dg_probe *p)
{
  if (!p)
    return;
  vm_close(&p->v);
  free(p);
}

static double tsc_per_ns;

static void measure_tsc(void)
{
  /* At each end, of five clock-rdtsc-clock triples the tightest, so that
   * an interruption (preemption, a clock read that traps) does not skew
   * the pairing. */
  uint64_t t[2], c[2];
  for (int end = 0; end < 2; end++) {
    if (end) {
      struct timespec ts = {0, 20000000};
      nanosleep(&ts, NULL);
    }
    uint64_t best = UINT64_MAX;
    for (int k = 0; k < 5; k++) {
      uint64_t a = now_ns(), tsc = __rdtsc(), b = now_ns();
      if (b - a < best) {
        best = b - a;
        t[end] = a + (b - a) / 2;
        c[end] = tsc;
      }
    }
  }
  tsc_per_ns = (double)(c[1] - c[0]) / (double)(t[1] - t[0]);
}

double dg_tsc_per_ns(void)
{
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, measure_tsc);
  return tsc_per_ns;
}
