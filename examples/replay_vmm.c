/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: CC0-1.0 */
/* replay_vmm: a small replay VMM on libdiffmem's KVM adapter.
 *
 * It creates N KVM guests, loads each guest's RAM from a memory image (raw
 * 4 KiB pages), runs a guest program on each vCPU that touches memory with
 * a realistic pattern (mostly reads of a hot set, some writes, a cold
 * majority), runs the engine on all guests at once, and reports what the
 * engine saved. At the end it checks that nothing was lost: every image
 * page, read back through the guest's mapping, has the checksum it had
 * when loaded, and the guest's writes all landed.
 *
 * Build against an installed libdiffmem:
 *   cc replay_vmm.c $(pkg-config --cflags --libs libdiffmem-kvm) -lpthread -o replay_vmm
 * Run (root, or a user who may open /dev/kvm and userfaultfd):
 *   ./replay_vmm [-n GUESTS] [-s SECONDS] [--connect SOCKET] IMAGE...
 * With --connect, no engine runs here: each guest's RAM (a sealed memfd)
 * is handed to diffmemd at SOCKET with dmem_kvm_client_attach(), as a
 * VMM of one guest per process would (diffmem/daemon.h), and the daemon
 * shares pages with every other VMM that connects to it.
 * Guest i loads IMAGE number i modulo the images given; N defaults to the
 * number of images, and to 2 with one image (two guests of one image show
 * sharing across guests).
 *
 * What a VMM does to use the engine, and all this file does with it:
 *  1. make guest RAM with dmem_kvm_region_create() (a memfd and a mapping)
 *     and give that mapping to KVM as a memory slot (set_slot);
 *  2. make one engine and attach every region to it: identical pages of
 *     different guests are then kept once;
 *  3. run the engine (here its own thread, dmem_engine_start()); the
 *     guests run meanwhile, and their touches of reclaimed pages are
 *     served by the adapter without the VMM doing anything;
 *  4. detach (or destroy) the regions before destroying the engine.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pread, getopt, MAP_SHARED under -std=c11 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <diffmem/daemon.h>
#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>
#include <getopt.h>

#define PAGE DMEM_PAGE_SIZE
#define DATA_PAGES 256u         /* the guest's writable area, after the image */
#define CTL_PAGES 5u            /* code, parameters, PML4, PDPT, PD */
#define REPORT_GPA 0x3ff00000u  /* no RAM there: a store to it exits (MMIO) */
#define RAM_MAX (1022ull << 20) /* RAM ends below the 2 MiB page of REPORT_GPA */
#define MAX_GUESTS 16

/* The guest, 64-bit code at CPL 3 (on some hosts, PVM among them, guest
 * supervisor code is emulated and slow; user code runs natively). rsi
 * points at its parameters (u32): 0 seed, 1 image pages, 2 hot window
 * mask (dwords), 3 last hot window start, 4 data address, 5 data mask,
 * 6 report mask (ops), 7 hot window step. A 32-bit LCG x picks each
 * operation by x >> 15: 1 is a cold read (the next page of a slow sweep
 * through the whole image: 1 op in 2^17), below 0x2000 a write (about 1
 * in 16: it increments a data dword), the rest a read in the hot window
 * (256 KiB), which slides through the image a page every 4 reports. Every 2^k ops it
 * stores the op count to REPORT_GPA, an MMIO exit where the VMM paces and
 * stops it. rbp counts ops and r12 writes. Assembled with GNU as --64. */
static const uint8_t guest_code[] = {
    0x8b, 0x1e,                               /* mov (%rsi),%ebx          x = seed */
    0x31, 0xed,                               /* xor %ebp,%ebp            ops */
    0x45, 0x31, 0xe4,                         /* xor %r12d,%r12d          writes */
    0x45, 0x31, 0xed,                         /* xor %r13d,%r13d          cold page */
    0x45, 0x31, 0xf6,                         /* xor %r14d,%r14d          hot start */
    0x69, 0xdb, 0x0d, 0x66, 0x19, 0x00,       /* loop: imul $1664525,%ebx,%ebx */
    0x81, 0xc3, 0x5f, 0xf3, 0x6e, 0x3c,       /* add $1013904223,%ebx */
    0x89, 0xd8,                               /* mov %ebx,%eax */
    0xc1, 0xe8, 0x08,                         /* shr $8,%eax              r = x >> 8 */
    0x89, 0xd9,                               /* mov %ebx,%ecx */
    0xc1, 0xe9, 0x0f,                         /* shr $15,%ecx */
    0x83, 0xf9, 0x01,                         /* cmp $1,%ecx */
    0x74, 0x17,                               /* je cold */
    0x81, 0xf9, 0x00, 0x20, 0x00, 0x00,       /* cmp $0x2000,%ecx */
    0x72, 0x25,                               /* jb write */
    0x23, 0x46, 0x08,                         /* and 0x8(%rsi),%eax       hot read */
    0x44, 0x01, 0xf0,                         /* add %r14d,%eax */
    0x03, 0x3c, 0x85, 0x00, 0x00, 0x00, 0x00, /* add 0(,%rax,4),%edi */
    0xeb, 0x22,                               /* jmp next */
    0x44, 0x89, 0xe8,                         /* cold: mov %r13d,%eax */
    0xc1, 0xe0, 0x0c,                         /* shl $12,%eax */
    0x03, 0x38,                               /* add (%rax),%edi */
    0x41, 0xff, 0xc5,                         /* inc %r13d */
    0x44, 0x3b, 0x6e, 0x04,                   /* cmp 0x4(%rsi),%r13d */
    0x72, 0x11,                               /* jb next */
    0x45, 0x31, 0xed,                         /* xor %r13d,%r13d */
    0xeb, 0x0c,                               /* jmp next */
    0x23, 0x46, 0x14,                         /* write: and 0x14(%rsi),%eax */
    0x8b, 0x4e, 0x10,                         /* mov 0x10(%rsi),%ecx */
    0xff, 0x04, 0x81,                         /* incl (%rcx,%rax,4) */
    0x49, 0xff, 0xc4,                         /* inc %r12 */
    0x48, 0xff, 0xc5,                         /* next: inc %rbp */
    0x89, 0xe8,                               /* mov %ebp,%eax */
    0x23, 0x46, 0x18,                         /* and 0x18(%rsi),%eax */
    0x75, 0xa2,                               /* jne loop */
    0x44, 0x03, 0x76, 0x1c,                   /* add 0x1c(%rsi),%r14d     slide */
    0x44, 0x3b, 0x76, 0x0c,                   /* cmp 0xc(%rsi),%r14d */
    0x76, 0x03,                               /* jbe report */
    0x45, 0x31, 0xf6,                         /* xor %r14d,%r14d */
    0x89, 0x2c, 0x25, 0x00, 0x00, 0xf0, 0x3f, /* report: mov %ebp,0x3ff00000 */
    0xeb, 0x8c,                               /* jmp loop */
};

typedef struct guest {
  const char *image;
  uint64_t image_pages, npages;
  uint64_t *csum; /* per image page, as loaded */
  dmem_kvm_region *region;
  dmem_vm *vm;
  int memfd;               /* --connect: the RAM's sealed memfd */
  dmem_kvm_client *client; /* --connect: served by diffmemd */
  int vm_fd, vcpu_fd;
  struct kvm_run *run;
  size_t run_size;
  pthread_t thread;
  uint64_t ops, writes; /* read from the registers when it stops */
  char err[DMEM_ERRBUF_SIZE + 64];
} guest;

static int stop_guests;          /* atomic: the vCPUs leave at their next report */
static const char *connect_sock; /* --connect */

static uint64_t page_sum(const uint8_t *p)
{
  uint64_t h = 0xcbf29ce484222325ull, w;
  for (size_t i = 0; i < PAGE; i += 8) {
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
  }
  return h;
}

/* Guest RAM: the image, DATA_PAGES zero pages, then the control pages.
 * The region is filled through its mapping before it is attached, so that
 * every page is a real, allocated page when the engine first sees it. */
static int load_image(guest *g)
{
  int fd = open(g->image, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(g->err, sizeof g->err, "%s: %s", g->image, strerror(errno));
    goto fail;
  }
  g->image_pages = (uint64_t)st.st_size / PAGE; /* a partial last page is left out */
  g->npages = g->image_pages + DATA_PAGES + CTL_PAGES;
  if (g->image_pages == 0 || g->npages * PAGE > RAM_MAX) {
    snprintf(g->err, sizeof g->err, "%s: needs 1 to %llu whole pages", g->image,
             (unsigned long long)(RAM_MAX / PAGE - DATA_PAGES - CTL_PAGES));
    goto fail;
  }
  dmem_kvm_region_options ro = DMEM_KVM_REGION_OPTIONS_INIT;
  ro.size = g->npages * PAGE;
  ro.sharing_domain = 1; /* all the guests are one tenant's: they may share */
  if (connect_sock) {
    /* diffmemd maps the RAM: it must not shrink under it. The region only
     * maps it here and makes it a KVM slot; it is attached to no engine. */
    g->memfd = memfd_create("replay-vmm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (g->memfd < 0 || ftruncate(g->memfd, (off_t)ro.size) != 0 ||
        fcntl(g->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
      snprintf(g->err, sizeof g->err, "memfd: %s", strerror(errno));
      goto fail;
    }
    ro.fd = g->memfd;
  }
  char why[DMEM_ERRBUF_SIZE];
  int rc = dmem_kvm_region_create(&g->region, &ro, why, sizeof why);
  if (rc != 0) {
    snprintf(g->err, sizeof g->err, "region: %s (%s)", dmem_strerror(rc), why);
    goto fail;
  }
  uint8_t *mem = dmem_kvm_region_addr(g->region);
  size_t want = g->image_pages * PAGE, got = 0;
  while (got < want) {
    ssize_t k = pread(fd, mem + got, want - got, (off_t)got);
    if (k <= 0) {
      snprintf(g->err, sizeof g->err, "%s: read failed at offset %zu", g->image, got);
      goto fail;
    }
    got += (size_t)k;
  }
  close(fd);
  memset(mem + want, 0, (size_t)(g->npages - g->image_pages) * PAGE);
  g->csum = malloc(g->image_pages * sizeof *g->csum);
  if (!g->csum) {
    snprintf(g->err, sizeof g->err, "out of memory");
    return -1;
  }
  for (uint64_t i = 0; i < g->image_pages; i++)
    g->csum[i] = page_sum(mem + i * PAGE);
  return 0;
fail:
  if (fd >= 0)
    close(fd);
  return -1;
}

/* Code, parameters and page tables after the data pages. The page tables
 * map the first GiB with 2 MiB pages, user-accessible: RAM and, above it,
 * REPORT_GPA, where no memory slot lies. */
static void write_control(guest *g, uint32_t seed)
{
  uint8_t *mem = dmem_kvm_region_addr(g->region);
  uint64_t ctl = g->image_pages + DATA_PAGES;
  memcpy(mem + ctl * PAGE, guest_code, sizeof guest_code);
  uint32_t *p = (uint32_t *)(mem + (ctl + 1) * PAGE);
  uint32_t hot = 1u << 16; /* 64 Ki dwords: 256 KiB */
  while (hot > g->image_pages * (PAGE / 4))
    hot >>= 1;
  p[0] = seed;
  p[1] = (uint32_t)g->image_pages;
  p[2] = hot - 1;
  p[3] = (uint32_t)(g->image_pages * (PAGE / 4) - hot);
  p[4] = (uint32_t)(g->image_pages * PAGE);
  p[5] = DATA_PAGES * (PAGE / 4) - 1;
  p[6] = (1u << 14) - 1;
  p[7] = 256; /* one page every 4 reports */
  uint64_t *pml4 = (uint64_t *)(mem + (ctl + 2) * PAGE);
  uint64_t *pdpt = (uint64_t *)(mem + (ctl + 3) * PAGE);
  uint64_t *pd = (uint64_t *)(mem + (ctl + 4) * PAGE);
  pml4[0] = (ctl + 3) * PAGE | 7; /* present, writable, user */
  pdpt[0] = (ctl + 4) * PAGE | 7;
  for (uint64_t i = 0; i < 512; i++)
    pd[i] = i << 21 | 0x87; /* a 2 MiB page */
}

/* A KVM VM over the region (slot 0 at guest physical 0) with one vCPU in
 * 64-bit mode at CPL 3, starting at the code with rsi at the parameters. */
static int make_vm(guest *g, int kvm)
{
  uint64_t ctl = (g->image_pages + DATA_PAGES) * PAGE;
  struct kvm_sregs s;
  struct kvm_regs r;
  g->vm_fd = ioctl(kvm, KVM_CREATE_VM, 0);
  int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (g->vm_fd < 0 || sz <= 0 || dmem_kvm_region_set_slot(g->region, g->vm_fd, 0, 0, 0) != 0)
    goto fail;
  g->vcpu_fd = ioctl(g->vm_fd, KVM_CREATE_VCPU, 0ul);
  g->run_size = (size_t)sz;
  g->run = mmap(NULL, g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu_fd, 0);
  if (g->vcpu_fd < 0 || g->run == MAP_FAILED || ioctl(g->vcpu_fd, KVM_GET_SREGS, &s) != 0)
    goto fail;
  struct kvm_segment cs = {.limit = 0xffffffff,
                           .selector = 0x1b,
                           .type = 11,
                           .present = 1,
                           .dpl = 3,
                           .s = 1,
                           .l = 1,
                           .g = 1};
  struct kvm_segment ds = cs;
  ds.selector = 0x23;
  ds.type = 3;
  ds.l = 0;
  ds.db = 1;
  s.cs = cs;
  s.ds = s.es = s.fs = s.gs = s.ss = ds;
  s.cr3 = ctl + 2 * PAGE;
  s.cr4 |= 0x20;        /* PAE */
  s.efer |= 0x500;      /* LME, LMA */
  s.cr0 |= 0x80000001u; /* PG, PE */
  memset(&r, 0, sizeof r);
  r.rflags = 2;
  r.rip = ctl;
  r.rsi = ctl + PAGE;
  if (ioctl(g->vcpu_fd, KVM_SET_SREGS, &s) != 0 || ioctl(g->vcpu_fd, KVM_SET_REGS, &r) != 0)
    goto fail;
  return 0;
fail:
  snprintf(g->err, sizeof g->err, "KVM setup: %s", strerror(errno));
  return -1;
}

/* The vCPU thread. Each report is an MMIO exit; the guest is paced there
 * (2 ms of sleep every 16384 ops: a mostly idle guest, which also leaves
 * CPU for the engine) and stopped there, so that its counters are exact. */
static void *vcpu_loop(void *arg)
{
  guest *g = arg;
  for (;;) {
    if (ioctl(g->vcpu_fd, KVM_RUN, 0) != 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      snprintf(g->err, sizeof g->err, "KVM_RUN: %s", strerror(errno));
      return NULL;
    }
    if (g->run->exit_reason != KVM_EXIT_MMIO || g->run->mmio.phys_addr != REPORT_GPA) {
      snprintf(g->err, sizeof g->err, "guest stopped: exit reason %u", g->run->exit_reason);
      return NULL;
    }
    if (__atomic_load_n(&stop_guests, __ATOMIC_ACQUIRE)) {
      struct kvm_regs r;
      if (ioctl(g->vcpu_fd, KVM_GET_REGS, &r) == 0) {
        g->ops = r.rbp;
        g->writes = r.r12;
      }
      return NULL;
    }
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
}

/* Nothing lost: every image page, read through the guest's mapping (an
 * evicted page faults and the engine rebuilds it), has its checksum from
 * load time, and the data dwords add up to the writes the guest made. */
static uint64_t verify(guest *g)
{
  const uint8_t *mem = dmem_kvm_region_addr(g->region);
  uint64_t bad = 0, total = 0;
  for (uint64_t i = 0; i < g->image_pages; i++)
    bad += page_sum(mem + i * PAGE) != g->csum[i];
  const uint32_t *data = (const uint32_t *)(mem + g->image_pages * PAGE);
  for (size_t i = 0; i < DATA_PAGES * (PAGE / 4); i++)
    total += data[i];
  if (total != g->writes) {
    fprintf(stderr, "%s: the data area holds %llu writes, the guest made %llu\n", g->image,
            (unsigned long long)total, (unsigned long long)g->writes);
    bad++;
  }
  return bad;
}

/* Host memory that holds the guests, by the kernel's accounting: the
 * memfds' blocks (guest pages still in RAM) plus this process's anonymous
 * memory (where the engine keeps its frames, patches and blobs). */
static uint64_t host_kib(guest *gs, unsigned n, uint64_t *memfd)
{
  uint64_t sum = 0, b;
  for (unsigned i = 0; i < n; i++)
    if (dmem_kvm_region_memfd_bytes(&b, gs[i].region) == 0)
      sum += b;
  *memfd = sum / 1024;
  unsigned long long anon = 0;
  char line[128];
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "Anonymous: %llu kB", &anon) == 1)
      break;
  if (f)
    fclose(f);
  return *memfd + anon;
}

int main(int argc, char **argv)
{
  unsigned n = 0, seconds = 15;
  int opt;
  static const struct option longs[] = {{"connect", required_argument, NULL, 'c'}, {0, 0, 0, 0}};
  while ((opt = getopt_long(argc, argv, "n:s:", longs, NULL)) != -1) {
    if (opt == 'n')
      n = (unsigned)atoi(optarg);
    else if (opt == 's')
      seconds = (unsigned)atoi(optarg);
    else if (opt == 'c')
      connect_sock = optarg;
    else
      optind = argc + 1;
  }
  int nimages = argc - optind;
  if (optind > argc || nimages < 1 || n > MAX_GUESTS || seconds < 1) {
    fprintf(stderr, "usage: %s [-n GUESTS (1-%d)] [-s SECONDS] [--connect SOCKET] IMAGE...\n",
            argv[0], MAX_GUESTS);
    return 2;
  }
  if (n == 0)
    n = nimages == 1 ? 2 : (unsigned)(nimages < MAX_GUESTS ? nimages : MAX_GUESTS);
  dmem_kvm_caps caps = DMEM_KVM_CAPS_INIT;
  if (dmem_kvm_probe(&caps) != 0) {
    fprintf(stderr, "KVM adapter cannot run here: %s\n", caps.reason);
    return 1;
  }
  guest gs[MAX_GUESTS];
  memset(gs, 0, sizeof gs);
  for (unsigned i = 0; i < MAX_GUESTS; i++)
    gs[i].vm_fd = gs[i].vcpu_fd = gs[i].memfd = -1;
  dmem_engine *engine = NULL;
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), rc = 1;
  unsigned started = 0;
  if (kvm < 0 || (!connect_sock && dmem_engine_create(&engine, &eo) != 0)) {
    fprintf(stderr, "cannot open /dev/kvm or make the engine\n");
    goto out;
  }
  uint64_t pages = 0;
  for (unsigned i = 0; i < n; i++) {
    guest *g = &gs[i];
    g->image = argv[optind + (int)(i % (unsigned)nimages)];
    if (load_image(g) != 0)
      goto fail;
    write_control(g, 1000 + i);
    if (make_vm(g, kvm) != 0)
      goto fail;
    /* The guest may already run when its region is attached; here it
     * starts later, so that "before" below is the loaded RAM. */
    if (connect_sock) {
      dmem_kvm_client_options co = DMEM_KVM_CLIENT_OPTIONS_INIT;
      char why[DMEM_ERRBUF_SIZE];
      co.socket = connect_sock;
      co.fd = g->memfd;
      co.addr = dmem_kvm_region_addr(g->region);
      co.size = g->npages * PAGE;
      co.name = g->image;
      if (dmem_kvm_client_attach(&g->client, &co, why, sizeof why) != 0) {
        snprintf(g->err, sizeof g->err, "diffmemd: %s", why);
        goto fail;
      }
    } else if (dmem_kvm_region_attach(&g->vm, engine, g->region, g->image) != 0) {
      snprintf(g->err, sizeof g->err, "attach: %s", dmem_kvm_region_errmsg(g->region));
      goto fail;
    }
    pages += g->npages;
    continue;
  fail:
    fprintf(stderr, "guest %u: %s\n", i, g->err);
    goto out;
  }
  uint64_t memfd0, memfd, before = host_kib(gs, n, &memfd0);
  /* The engine's thread visits a twentieth of all guest pages every 50
   * ms: every page once a second. */
  if (engine && dmem_engine_start(engine, 50, pages / 20 + 1) != 0)
    goto out;
  for (; started < n; started++)
    if (pthread_create(&gs[started].thread, NULL, vcpu_loop, &gs[started]) != 0)
      goto out;
  printf("%u guests, %llu pages (%.1f MiB); host memory %.1f MiB\n", n, (unsigned long long)pages,
         (double)pages * PAGE / 1048576, (double)before / 1024);
  for (unsigned t = 1; t <= seconds; t++) {
    sleep(1);
    dmem_stats s = DMEM_STATS_INIT;
    if (engine)
      dmem_engine_stats(&s, engine);
    uint64_t host = host_kib(gs, n, &memfd);
    printf("  %3us: host memory %6.1f MiB (memfds %6.1f); zero %llu shared %llu patched %llu "
           "compressed %llu; faults %llu\n",
           t, (double)host / 1024, (double)memfd / 1024, (unsigned long long)s.zero,
           (unsigned long long)s.shared, (unsigned long long)s.patched,
           (unsigned long long)s.compressed, (unsigned long long)s.faults);
  }
  rc = 0;
out:
  __atomic_store_n(&stop_guests, 1, __ATOMIC_RELEASE);
  for (unsigned i = 0; i < started; i++)
    pthread_join(gs[i].thread, NULL);
  if (engine)
    dmem_engine_stop(engine);
  if (rc == 0) {
    dmem_stats s = DMEM_STATS_INIT;
    dmem_kvm_stats ks = {.version = DMEM_KVM_STATS_VERSION};
    if (engine)
      dmem_engine_stats(&s, engine);
    uint64_t after = host_kib(gs, n, &memfd), lat = 0, bad = 0, ops = 0;
    for (unsigned i = 0; i < n; i++) {
      dmem_kvm_stats one = {.version = DMEM_KVM_STATS_VERSION};
      dmem_kvm_region_stats(&one, gs[i].region);
      for (unsigned b = 0; b < DMEM_KVM_LAT_BUCKETS; b++)
        ks.lat_hist[b] += one.lat_hist[b];
      lat += one.lat_count;
      ops += gs[i].ops;
      if (gs[i].err[0])
        fprintf(stderr, "guest %u: %s\n", i, gs[i].err);
      rc |= gs[i].err[0] != 0;
    }
    ks.lat_count = lat;
    for (unsigned i = 0; i < n; i++)
      bad += verify(&gs[i]);
    printf("host memory %.1f -> %.1f MiB (memfds %.1f -> %.1f MiB): %.1f%% saved%s\n",
           (double)before / 1024, (double)after / 1024, (double)memfd0 / 1024, (double)memfd / 1024,
           100.0 * ((double)before - (double)after) / (double)before,
           connect_sock ? " in this process (the daemon's store is not counted here)" : "");
    if (connect_sock)
      printf("%.1f M guest operations; faults served by diffmemd (diffmem stat --socket %s)\n",
             (double)ops / 1e6, connect_sock);
    else
      printf("%.1f M guest operations; %llu faults served, p50 %.0f us, p99 %.0f us\n",
             (double)ops / 1e6, (unsigned long long)s.faults,
             dmem_kvm_stats_percentile_us(&ks, 0.5), dmem_kvm_stats_percentile_us(&ks, 0.99));
    printf("verify: %llu pages lost or changed%s\n", (unsigned long long)bad,
           bad ? "" : " (every image page has its checksum, every write landed)");
    rc |= bad != 0;
  }
  for (unsigned i = 0; i < n; i++) {
    if (gs[i].run && gs[i].run != MAP_FAILED)
      munmap(gs[i].run, gs[i].run_size);
    if (gs[i].vcpu_fd >= 0)
      close(gs[i].vcpu_fd);
    if (gs[i].vm_fd >= 0) {
      dmem_kvm_region_set_slot(gs[i].region, -1, 0, 0, 0); /* the region forgets the VM */
      close(gs[i].vm_fd);
    }
    if (gs[i].client && dmem_kvm_client_detach(gs[i].client) != 0) {
      fprintf(stderr, "guest %u: diffmemd did not give every page back\n", i);
      rc = 1;
    }
    dmem_kvm_region_destroy(gs[i].region); /* detaches: every page back in the memfd */
    if (gs[i].memfd >= 0)
      close(gs[i].memfd);
    free(gs[i].csum);
  }
  dmem_engine_destroy(engine);
  if (kvm >= 0)
    close(kvm);
  return rc;
}
