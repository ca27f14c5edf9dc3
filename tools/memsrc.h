/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sources of memory pages for diffmem analyze: a raw image, an ELF core, a
 * live process (/proc/PID/maps, pagemap, mem), a libvirt domain
 * (virDomainMemoryPeek), and the list of this machine's processes for the
 * default input. Each source hands out whole 4 KiB pages in order. */
#ifndef DMEM_TOOLS_MEMSRC_H
#define DMEM_TOOLS_MEMSRC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct memsrc memsrc;

typedef struct memsrc_ops {
  /* Up to max pages into buf: the count, 0 at the end, -1 on error (the
   * message in src->err). */
  long (*read)(memsrc *src, uint8_t *buf, size_t max);
  void (*close)(memsrc *src);
} memsrc_ops;

struct memsrc {
  const memsrc_ops *ops;
  char name[256];    /* as the user named the input */
  char kind[16];     /* "raw", "elf", "pid", "libvirt", "memfd" */
  char err[768];     /* "NAME: what went wrong" */
  uint64_t expected; /* bytes to walk, for progress (0: unknown) */
  uint64_t done;     /* bytes walked so far */
  uint64_t skipped;  /* pages that could not be read and were left out */
  pid_t pid;         /* the process read, for a "pid" source; else 0 */
  void *priv;
};

/* All openers return 0, or -1 with "NAME: reason" in err. */

/* A file: an ELF core when it starts with the ELF magic (unless
 * force_raw), else a raw image of whole pages. */
int memsrc_open_file(memsrc **out, const char *path, int force_raw, char *err, size_t errlen);

typedef struct memsrc_pid_options {
  int writable_only; /* only mappings with w permission */
  int private_only;  /* only private (p) mappings */
  uint64_t lo, hi;   /* only pages in [lo, hi); hi 0: no limit */
} memsrc_pid_options;

/* The resident pages of a process's readable mappings. name is how to
 * call it in messages ("pid:123"). */
int memsrc_open_pid(memsrc **out, pid_t pid, const char *name, const memsrc_pid_options *opts,
                    char *err, size_t errlen);

/* The guest-physical memory of a running libvirt domain, [0, memory size).
 * Without libvirt built in, fails with a message that says so. */
int memsrc_open_libvirt(memsrc **out, const char *uri, const char *domain, char *err,
                        size_t errlen);

/* The names of the running (active) domains at uri, in libvirt's order:
 * 0 with a malloc'd array of malloc'd names in *out (possibly none), or -1
 * with err set (no libvirt built in, no connection). */
int memsrc_libvirt_domains(char ***out, size_t *n, const char *uri, char *err, size_t errlen);

/* A memfd that some process maps shared and writable: guest RAM of a VMM
 * (QEMU's memory-backend-memfd, share=on), which no process's private
 * memory holds. */
typedef struct memsrc_memfd {
  pid_t pid;       /* a process that maps it */
  uint64_t lo, hi; /* one of its mappings there */
  uint64_t dev, ino;
  char name[128]; /* its memfd name ("memory-backend-memfd") */
} memsrc_memfd;

/* Every such memfd that the processes pids (memsrc_list_processes()) map,
 * once each: 0 with a malloc'd array (possibly empty), or -1. */
int memsrc_list_memfds(memsrc_memfd **out, size_t *n, const pid_t *pids, size_t npids);

/* The resident pages of the memfd (through /proc/PID/map_files: root),
 * read without faulting in or allocating a page. kind "memfd". */
int memsrc_open_memfd(memsrc **out, const memsrc_memfd *mf, const char *name, char *err,
                      size_t errlen);

/* The number a file such as /sys/kernel/mm/ksm/run holds: 0 with *out
 * set, or -1 (no such file, or no number in it). */
int memsrc_read_u64(uint64_t *out, const char *path);

/* /proc/PID/ksm_merging_pages: the process's pages KSM merges now, or -1
 * (no such process, or a kernel before 6.1). */
long memsrc_ksm_merging_pages(pid_t pid);

/* /sys/kernel/mm/ksm: whether it exists, its run, pages_shared and
 * pages_sharing (what it saves, by ksmd's count); and the live processes'
 * ksm_merging_pages added up. */
void memsrc_ksm_state(int *present, long *run, uint64_t *pages_shared, uint64_t *pages_sharing,
                      uint64_t *merging_pages);

/* The ids of this machine's user processes (those with mappings), without
 * the caller's own. Returns 0 and a malloc'd array, or -1. */
int memsrc_list_processes(pid_t **out, size_t *n);

/* The process's command name ("bash"), or "?" . */
void memsrc_process_comm(char *buf, size_t len, pid_t pid);

static inline long memsrc_read(memsrc *s, uint8_t *buf, size_t max)
{
  return s->ops->read(s, buf, max);
}

void memsrc_close(memsrc *s);

/* Shared by the sources: a zeroed memsrc with its name and kind set and a
 * zeroed private part of @priv_size bytes in s->priv; NULL with
 * "NAME: out of memory" in @err. */
memsrc *memsrc__new(const memsrc_ops *ops, const char *name, const char *kind, size_t priv_size,
                    char *err, size_t errlen);

#endif
