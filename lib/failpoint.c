/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The failure-injection table (failpoint.h). Lock-free: a site's calls are
 * numbered by an atomic counter, and whether call k fails is a function of
 * the site's arming and k alone, so that threads racing through a site
 * fail exactly the calls a run asked for. */
#include "config.h"

#include "failpoint.h"

typedef struct fp {
  uint64_t calls;    /* atomic: calls seen since the reset */
  uint64_t failures; /* atomic */
  uint64_t from;     /* calls already seen when it was armed */
  uint64_t nth;      /* fail call from + nth (0: none) */
  uint64_t seed;
  uint32_t ppm;
  int err;
} fp;

static fp table[DMEM__FP_NSITES];
static int counting; /* atomic: a test reset or armed the table (until then, nothing is counted) */
static int armed;    /* atomic: is any site armed? */

static const struct {
  const char *name;
  int err;
} sites[DMEM__FP_NSITES] = {
    [DMEM__FP_SLAB_MMAP] = {"slab_mmap", ENOMEM},
    [DMEM__FP_SLAB_GROW] = {"slab_grow", ENOSPC},
    [DMEM__FP_SWAP_WRITE] = {"swap_write", ENOSPC},
    [DMEM__FP_SWAP_READ] = {"swap_read", EIO},
    [DMEM__FP_MEMFD_CREATE] = {"memfd_create", EMFILE},
    [DMEM__FP_REGION_FTRUNCATE] = {"region_ftruncate", ENOSPC},
    [DMEM__FP_REGION_MMAP] = {"region_mmap", EAGAIN}, /* ENOMEM is a budget for frames */
    [DMEM__FP_FALLOCATE] = {"fallocate", EIO},
    [DMEM__FP_PWRITE] = {"pwrite", ENOSPC},
    [DMEM__FP_UFFD_COPY] = {"uffd_copy", ENOMEM},
    [DMEM__FP_UFFD_ZEROPAGE] = {"uffd_zeropage", ENOMEM},
    [DMEM__FP_UFFD_CONTINUE] = {"uffd_continue", ENOMEM},
    [DMEM__FP_UFFD_WP] = {"uffd_writeprotect", ENOMEM},
    [DMEM__FP_UFFD_REGISTER] = {"uffd_register", ENOMEM},
    [DMEM__FP_KVM_IOCTL] = {"kvm_ioctl", EFAULT},
    [DMEM__FP_GETRANDOM] = {"getrandom", ENOSYS},
    [DMEM__FP_THREAD] = {"thread_start", EAGAIN},
};

/* splitmix64: a well-mixed function of the seed and the call number. */
static uint64_t mix(uint64_t x)
{
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

int dmem__fp_check(dmem__fp_site s)
{
  if ((unsigned)s >= DMEM__FP_NSITES)
    return 0;
  /* A library no test touched does this load and nothing more: no write
   * to a shared line on the fault path. */
  if (!__atomic_load_n(&counting, __ATOMIC_RELAXED))
    return 0;
  fp *f = &table[s];
  uint64_t k = __atomic_add_fetch(&f->calls, 1, __ATOMIC_RELAXED);
  if (!__atomic_load_n(&armed, __ATOMIC_ACQUIRE))
    return 0;
  /* Relaxed loads: a site may be armed while other threads run through
   * it; such a thread sees the old arming or the new one. */
  uint64_t nth = __atomic_load_n(&f->nth, __ATOMIC_RELAXED);
  uint32_t ppm = __atomic_load_n(&f->ppm, __ATOMIC_RELAXED);
  int fail =
      (nth && k == __atomic_load_n(&f->from, __ATOMIC_RELAXED) + nth) ||
      (ppm &&
       mix(__atomic_load_n(&f->seed, __ATOMIC_RELAXED) ^ (k * 0x100000001b3ull)) % 1000000u < ppm);
  if (!fail)
    return 0;
  __atomic_add_fetch(&f->failures, 1, __ATOMIC_RELAXED);
  int err = __atomic_load_n(&f->err, __ATOMIC_RELAXED);
  return err ? err : sites[s].err;
}

static void set_arming(fp *f, uint64_t from, uint64_t nth, uint32_t ppm, uint64_t seed, int err)
{
  __atomic_store_n(&f->from, from, __ATOMIC_RELAXED);
  __atomic_store_n(&f->nth, nth, __ATOMIC_RELAXED);
  __atomic_store_n(&f->ppm, ppm, __ATOMIC_RELAXED);
  __atomic_store_n(&f->seed, seed, __ATOMIC_RELAXED);
  __atomic_store_n(&f->err, err, __ATOMIC_RELAXED);
}

void dmem__fp_arm(dmem__fp_site s, uint64_t nth, uint32_t ppm, uint64_t seed, int err)
{
  if ((unsigned)s >= DMEM__FP_NSITES)
    return;
  fp *f = &table[s];
  set_arming(f, __atomic_load_n(&f->calls, __ATOMIC_RELAXED), nth, ppm > 1000000u ? 1000000u : ppm,
             seed, err);
  /* release: a thread that sees armed sees the fields above */
  __atomic_store_n(&counting, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&armed, 1, __ATOMIC_RELEASE);
}

void dmem__fp_reset(void)
{
  __atomic_store_n(&armed, 0, __ATOMIC_RELEASE);
  for (unsigned i = 0; i < DMEM__FP_NSITES; i++) {
    fp *f = &table[i];
    __atomic_store_n(&f->calls, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&f->failures, 0, __ATOMIC_RELAXED);
    set_arming(f, 0, 0, 0, 0, 0);
  }
  __atomic_store_n(&counting, 1, __ATOMIC_RELAXED);
}

void dmem__fp_disarm(void)
{
  __atomic_store_n(&armed, 0, __ATOMIC_RELEASE);
}

uint64_t dmem__fp_calls(dmem__fp_site s)
{
  return (unsigned)s < DMEM__FP_NSITES ? __atomic_load_n(&table[s].calls, __ATOMIC_RELAXED) : 0;
}

uint64_t dmem__fp_failures(dmem__fp_site s)
{
  return (unsigned)s < DMEM__FP_NSITES ? __atomic_load_n(&table[s].failures, __ATOMIC_RELAXED) : 0;
}

const char *dmem__fp_name(dmem__fp_site s)
{
  return (unsigned)s < DMEM__FP_NSITES ? sites[s].name : "?";
}
