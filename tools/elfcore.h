/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The memory segments of an ELF core file: QEMU's dump-guest-memory,
 * `virsh dump --memory-only`, gdb's gcore, a kernel core dump. Little-endian
 * ELF64 and ELF32 (QEMU writes ELF32 for a guest that is not in long mode).
 *
 * The parser trusts nothing in the file: every header, count and offset is
 * checked against the file size before use, and an error says what is wrong
 * and at which file offset. It reads through a callback, so that a fuzz
 * target can hand it a buffer. */
#ifndef DMEM_TOOLS_ELFCORE_H
#define DMEM_TOOLS_ELFCORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct elfcore_segment {
  uint64_t offset; /* in the file; offset + filesz <= file size */
  uint64_t filesz; /* bytes the file holds */
  uint64_t memsz;  /* bytes of memory it describes (>= filesz) */
  uint64_t vaddr, paddr;
  uint64_t phdr_offset; /* where its program header is, for messages */
} elfcore_segment;

typedef struct elfcore {
  elfcore_segment *segs; /* the PT_LOAD segments, in file order */
  size_t nsegs;
  int elf_class;    /* 32 or 64 */
  unsigned machine; /* e_machine */
} elfcore;

/* Reads len bytes at off into buf; returns 0, or -1 with errno set. The
 * parser never asks for bytes past the file size it was given. */
typedef int (*elfcore_read_fn)(void *buf, size_t len, uint64_t off, void *ud);

enum {
  ELFCORE_OK = 0,
  ELFCORE_NOTELF = -1,    /* no ELF magic: the caller may read it as raw */
  ELFCORE_MALFORMED = -2, /* bad, truncated or not a core; err says where */
  ELFCORE_READ = -3,      /* the read callback failed; err holds errno's text */
  ELFCORE_NOMEM = -4
};

/* Does the buffer start with the ELF magic? (n may be short.) */
int elfcore_is_elf(const void *head, size_t n);

/* Parses the headers of a core of file_size bytes. On success fills *out
 * (free with elfcore_free()). On failure *out is empty and err (errlen
 * bytes) holds a message such as "malformed ELF core at offset 64:
 * program header 2: segment runs past the end of the file". */
int elfcore_parse(elfcore *out, uint64_t file_size, elfcore_read_fn read, void *ud, char *err,
                  size_t errlen);

void elfcore_free(elfcore *core);

#endif
