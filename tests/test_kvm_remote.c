/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Linux memory layer with a userfaultfd from another process, as a
 * host daemon will use it: a child process (the "VMM") keeps guest RAM in
 * a memfd that it maps, registers its mapping with a userfaultfd of its
 * own, and passes the memfd and the userfaultfd over a Unix socket
 * (SCM_RIGHTS). This process makes a region of them (its own mapping of
 * the memfd; the child's userfaultfd at the child's address) and attaches
 * it to an engine. The engine shares and evicts the child's pages; the
 * child's touches fault to this process's fault thread, which installs the
 * pages in the child's address space. Every page the child reads equals
 * what it wrote, its writes after an eviction land, and detach puts every
 * page back. Then the agent that maps shared pages copy-on-write in a VMM
 * (diffmem/daemon.h, DMEM_PROTO_MAP), played by a thread of this process:
 * its late answer to a RAM loses no write. Also: create's error messages.
 * Needs userfaultfd like the adapter: skips (77) where it is missing. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <diffmem/daemon.h>
#include <diffmem/diffmem.h>
#include <diffmem/kvm.h>

#include "kvm_guest.h"

#define PAGE DMEM_PAGE_SIZE
#define N 512

/* ------------------------------------------------------------ create */

START_TEST(create_says_why)
{
  dmem_kvm_region *r = NULL;
  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  char err[DMEM_ERRBUF_SIZE];
  o.size = 1000;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, err, sizeof err), DMEM_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "multiple of the page size"));
  o.size = 2 * PAGE;
  o.version = 1;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, err, sizeof err), DMEM_EVERSION);
  ck_assert_ptr_nonnull(strstr(err, "version 1"));
  o.version = DMEM_KVM_REGION_OPTIONS_VERSION;

  /* A regular file (this program), a short memfd, a uffd that is not one. */
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  ck_assert_int_ge(fd, 0);
  o.fd = fd;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, err, sizeof err), DMEM_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "not a memfd"));
  close(fd);
  int mfd = memfd_create("short", MFD_CLOEXEC);
  ck_assert_int_ge(mfd, 0);
  ck_assert_int_eq(ftruncate(mfd, PAGE), 0);
  o.fd = mfd;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, err, sizeof err), DMEM_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "short of 8192"));
  ck_assert_int_eq(ftruncate(mfd, 2 * PAGE), 0);
  o.uffd = mfd;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, err, sizeof err), DMEM_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "not a userfaultfd"));
  o.uffd = -1;
  o.uffd_addr = 0x10000;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, err, sizeof err), DMEM_EINVAL);
  ck_assert_ptr_nonnull(strstr(err, "without a uffd"));
  o.uffd_addr = 0;
  /* NULL errbuf is allowed; a good call leaves errbuf empty. */
  o.size = 0;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, NULL, 0), DMEM_EINVAL);
  o.size = 2 * PAGE;
  ck_assert_int_eq(dmem_kvm_region_create(&r, &o, err, sizeof err), 0);
  ck_assert_str_eq(err, "");
  dmem_kvm_region_destroy(r);
  close(mfd);
}
END_TEST

/* ------------------------------------------------------------ the VMM */

typedef struct hello {
  uint64_t addr, features, modes;
} hello;

static uint8_t expect(uint64_t i, unsigned gen)
{
  /* A third of the pages are one of four shared contents, the rest hold
   * their own number; gen counts the child's rewrites. */
  return (uint8_t)((i % 3 == 0 ? i % 4 : i) * 7 + gen * 91 + 1);
}

static void fill(uint8_t *p, uint64_t i, unsigned gen)
{
  memset(p, expect(i, gen), PAGE);
  if (i % 3)
    memcpy(p, &i, sizeof i); /* unique */
}

static int check_page(const uint8_t *p, uint64_t i, unsigned gen)
{
  uint8_t want[PAGE];
  fill(want, i, gen);
  return memcmp(p, want, PAGE) != 0;
}

static int send_fds(int sock, const hello *h, int memfd, int uffd)
{
  char cbuf[CMSG_SPACE(2 * sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {(void *)h, sizeof *h};
  struct msghdr m = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(2 * sizeof(int));
  int fds[2] = {memfd, uffd};
  memcpy(CMSG_DATA(c), fds, sizeof fds);
  return sendmsg(sock, &m, 0) == (ssize_t)sizeof *h ? 0 : -1;
}

static int recv_fds(int sock, hello *h, int *memfd, int *uffd)
{
  char cbuf[CMSG_SPACE(2 * sizeof(int))];
  struct iovec iov = {h, sizeof *h};
  struct msghdr m = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != (ssize_t)sizeof *h)
    return -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(2 * sizeof(int)))
    return -1;
  int fds[2];
  memcpy(fds, CMSG_DATA(c), sizeof fds);
  *memfd = fds[0];
  *uffd = fds[1];
  return 0;
}

static int get(int sock, void *buf, size_t n)
{
  return read(sock, buf, n) == (ssize_t)n ? 0 : -1;
}

static int put(int sock, const void *buf, size_t n)
{
  return write(sock, buf, n) == (ssize_t)n ? 0 : -1;
}

/* The child: its RAM, its userfaultfd, then touches on command. Exits 0
 * when every read matched; 2..9 for a setup step that failed. */
static int vmm(int sock)
{
  int memfd = memfd_create("vmm-ram", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate(memfd, (off_t)N * PAGE) != 0)
    return 2;
  uint8_t *ram = mmap(NULL, (size_t)N * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (ram == MAP_FAILED)
    return 3;
  for (uint64_t i = 0; i < N; i++)
    fill(ram + i * PAGE, i, 0);
  int probe = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  if (probe < 0 || ioctl(probe, UFFDIO_API, &api) != 0)
    return 4;
  close(probe);
  uint64_t want = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  hello h = {.addr = (uint64_t)(uintptr_t)ram, .features = api.features & want};
  h.modes = UFFDIO_REGISTER_MODE_MISSING;
  if (h.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM)
    h.modes |= UFFDIO_REGISTER_MODE_WP;
  int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  api = (struct uffdio_api){.api = UFFD_API, .features = h.features};
  if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) != 0)
    return 5;
  struct uffdio_register reg = {.range = {.start = h.addr, .len = (uint64_t)N * PAGE},
                                .mode = h.modes};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
    return 6;
  if (send_fds(sock, &h, memfd, uffd) != 0)
    return 7;
  close(memfd); /* the parent has them; the registration lives on in our mm */
  close(uffd);
  char cmd;
  unsigned gen = 0;
  while (get(sock, &cmd, 1) == 0 && cmd != 'q') {
    uint64_t bad = 0;
    for (uint64_t i = 0; i < N; i++)
      bad += (uint64_t)check_page(ram + i * PAGE, i, gen);
    if (cmd == 'w') { /* rewrite every page: each write lands after a fault */
      gen++;
      for (uint64_t i = 0; i < N; i++)
        fill(ram + i * PAGE, i, gen);
    }
    if (put(sock, &bad, sizeof bad) != 0)
      return 8;
  }
  return cmd == 'q' ? 0 : 9;
}

static uint64_t ask(int sock, char cmd)
{
  uint64_t bad = ~0ull;
  ck_assert_int_eq(put(sock, &cmd, 1), 0);
  ck_assert_int_eq(get(sock, &bad, sizeof bad), 0);
  return bad;
}

static uint64_t memfd_bytes(dmem_kvm_region *r)
{
  uint64_t b = 0;
  ck_assert_int_eq(dmem_kvm_region_memfd_bytes(&b, r), 0);
  return b;
}

START_TEST(uffd_from_another_process)
{
  int sv[2];
  ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(sv[0]);
    _exit(vmm(sv[1]));
  }
  close(sv[1]);
  int sock = sv[0];
  hello h;
  int memfd = -1, uffd = -1;
  ck_assert_int_eq(recv_fds(sock, &h, &memfd, &uffd), 0);

  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  o.size = (uint64_t)N * PAGE;
  o.fd = memfd;
  o.uffd = uffd;
  o.uffd_features = h.features;
  o.uffd_addr = h.addr;
  char err[DMEM_ERRBUF_SIZE];
  dmem_kvm_region *r = NULL;
  ck_assert_msg(dmem_kvm_region_create(&r, &o, err, sizeof err) == 0, "create: %s", err);
  ck_assert_uint_eq(memfd_bytes(r), (uint64_t)N * PAGE);
  dmem_engine *e;
  ck_assert_int_eq(kt_engine(&e, 2, 64), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "remote"), 0);
  /* The child's range is not this process's mapping: no MINOR tracking. */
  ck_assert_uint_eq(dmem_kvm_region_track(r) & DMEM_KVM_TRACK_MINOR, 0);

  /* The shared third goes to four frames, and its memfd blocks with it. */
  for (int pass = 0; pass < 3; pass++)
    ck_assert_int_eq(dmem_engine_scan(NULL, e, N), 0);
  dmem_stats vs = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_ge(vs.shared, N / 3 - 4);
  ck_assert_uint_eq(vs.errors, 0);
  ck_assert_uint_le(memfd_bytes(r), (uint64_t)(N - N / 3 + 4) * PAGE);

  /* The child reads every page: evicted ones fault to this process. */
  ck_assert_uint_eq(ask(sock, 'r'), 0);
  dmem_kvm_stats ks = kt_region_stats(r);
  ck_assert_uint_ge(ks.faults_missing, N / 3 - 4);
  ck_assert_uint_ge(ks.installs, N / 3 - 4);

  /* Evict again, then the child rewrites every page (WP and MISSING
   * faults in its address space), and reads its writes back. */
  for (int pass = 0; pass < 3; pass++)
    ck_assert_int_eq(dmem_engine_scan(NULL, e, N), 0);
  ck_assert_uint_eq(ask(sock, 'w'), 0);
  ck_assert_uint_eq(ask(sock, 'r'), 0);
  for (int pass = 0; pass < 3; pass++)
    ck_assert_int_eq(dmem_engine_scan(NULL, e, N), 0);
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_gt(vs.shared, 0);

  /* Detach: every page back into the memfd, and the range unregistered
   * (the child then reads plain memory). */
  ck_assert_int_eq(dmem_kvm_region_detach(r), 0);
  ck_assert_uint_eq(memfd_bytes(r), (uint64_t)N * PAGE);
  ck_assert_uint_eq(ask(sock, 'r'), 0);
  const uint8_t *mine = dmem_kvm_region_addr(r);
  for (uint64_t i = 0; i < N; i++)
    ck_assert_int_eq(check_page(mine + i * PAGE, i, 1), 0);
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
  /* The region never closes the caller's userfaultfd or memfd. */
  ck_assert_int_ne(fcntl(uffd, F_GETFD), -1);
  ck_assert_int_ne(fcntl(memfd, F_GETFD), -1);
  close(uffd);
  close(memfd);

  char q = 'q';
  ck_assert_int_eq(put(sock, &q, 1), 0);
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the VMM child exited with %d",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  close(sock);
}
END_TEST

/* ------------------------------------------------------------ agent */

/* An agent as the client runs one in a VMM (adapters/kvm/client.c), in a
 * thread of this process: its "VMM mapping" is a second mapping of the
 * memfd, registered with a userfaultfd of its own, which the region takes
 * as another address space (uffd_addr is not the region's mapping). Its
 * next RAM can be held between the copy and the remap, as a VMM that is
 * stopped or starved of CPU holds it. */
#define AN 16

typedef struct agent {
  int sock, frames_fd, ram_fd, uffd;
  uint8_t *ram;
  int mapped[AN];
  int hold, in_window, go, remapped; /* hold: the next RAM waits, once copied, for go */
  pthread_t t;
} agent;

static void agent_frame(agent *a, uint64_t gfn, uint64_t off)
{
  uint8_t *at = a->ram + gfn * PAGE;
  struct uffdio_range rg = {(uint64_t)(uintptr_t)at, PAGE};
  if (mmap(at, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, a->frames_fd, (off_t)off) !=
      MAP_FAILED) {
    a->mapped[gfn] = 1;
    (void)madvise(at, PAGE, MADV_POPULATE_READ);
    struct uffdio_register reg = {.range = rg, .mode = UFFDIO_REGISTER_MODE_WP};
    struct uffdio_writeprotect wp = {.range = rg, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
    if (ioctl(a->uffd, UFFDIO_REGISTER, &reg) == 0)
      (void)ioctl(a->uffd, UFFDIO_WRITEPROTECT, &wp);
  }
  (void)ioctl(a->uffd, UFFDIO_WAKE, &rg);
}

static int32_t agent_ram(agent *a, uint64_t gfn)
{
  uint8_t *at = a->ram + gfn * PAGE;
  if (!a->mapped[gfn])
    return 0;
  if (pwrite(a->ram_fd, at, PAGE, (off_t)(gfn * PAGE)) != PAGE)
    return DMEM_ESYS;
  if (__atomic_exchange_n(&a->hold, 0, __ATOMIC_ACQ_REL)) {
    __atomic_store_n(&a->in_window, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 10000 && !__atomic_load_n(&a->go, __ATOMIC_ACQUIRE); i++)
      usleep(1000);
  }
  if (mmap(at, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, a->ram_fd,
           (off_t)(gfn * PAGE)) == MAP_FAILED)
    return DMEM_ESYS;
  a->mapped[gfn] = 0;
  __atomic_store_n(&a->remapped, 1, __ATOMIC_RELEASE);
  return 0;
}

static void *agent_main(void *arg)
{
  agent *a = arg;
  union {
    uint64_t align;
    uint8_t b[256];
  } buf;
  long k;
  while ((k = dmem_proto_recv(a->sock, buf.b, sizeof buf.b, NULL, 0, NULL, -1)) > 0) {
    dmem_proto_msg m;
    if (dmem_proto_parse(&m, buf.b, (size_t)k) != 0 || m.hdr.type != DMEM_PROTO_MAP)
      break;
    uint64_t gfn = (m.u.map.addr - (uint64_t)(uintptr_t)a->ram) / PAGE;
    if (gfn >= AN)
      break;
    if (m.u.map.what == DMEM_PROTO_MAP_FRAME) {
      agent_frame(a, gfn, m.u.map.offset);
      continue;
    }
    dmem_proto_map_done d = {agent_ram(a, gfn), 0};
    size_t n = dmem_proto_encode(buf.b, sizeof buf.b, DMEM_PROTO_MAP_DONE, m.hdr.seq, &d, sizeof d);
    if (dmem_proto_send(a->sock, buf.b, n, NULL, 0, 0) != 0)
      break;
  }
  return NULL;
}

typedef struct writer {
  uint8_t *page;
  int value, done;
} writer;

static void *write_page(void *arg)
{
  writer *w = arg;
  memset(w->page, w->value, PAGE);
  __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

/* Waits up to ms for *flag. */
static int wait_flag(const int *flag, int ms)
{
  for (int i = 0; i < ms && !__atomic_load_n(flag, __ATOMIC_ACQUIRE); i++)
    usleep(1000);
  return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

/* A RAM the agent answers late (agent_timeout_ms 1, and the agent held
 * between its copy of the page and its remap): the engine gives up on the
 * unmap, but the page stays write-protected until the answer comes, so a
 * guest write made meanwhile waits and then lands in the memfd. Lifted,
 * the write would land in the private copy that the remap throws away. */
START_TEST(late_agent_answer_keeps_a_write)
{
  int memfd = memfd_create("vmm-ram", MFD_CLOEXEC);
  ck_assert_int_ge(memfd, 0);
  ck_assert_int_eq(ftruncate(memfd, (off_t)AN * PAGE), 0);
  uint8_t *ram = mmap(NULL, (size_t)AN * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  ck_assert_ptr_ne(ram, MAP_FAILED);
  for (uint64_t i = 0; i < AN; i++) /* the first half alike: shared */
    fill(ram + i * PAGE, i < AN / 2 ? 0 : i, 0);
  uint64_t want = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  ck_assert_int_ge(uffd, 0);
  struct uffdio_api api = {.api = UFFD_API, .features = want};
  if (ioctl(uffd, UFFDIO_API, &api) != 0) {
    close(uffd);
    munmap(ram, (size_t)AN * PAGE);
    close(memfd);
    return; /* no WP on shared memory: no agent, pages are copied */
  }
  struct uffdio_register reg = {.range = {(uint64_t)(uintptr_t)ram, (uint64_t)AN * PAGE},
                                .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP};
  ck_assert_int_eq(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
  int sv[2];
  ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);

  dmem_kvm_region_options o = DMEM_KVM_REGION_OPTIONS_INIT;
  o.size = (uint64_t)AN * PAGE;
  o.fd = memfd;
  o.uffd = uffd;
  o.uffd_features = want;
  o.uffd_addr = (uint64_t)(uintptr_t)ram;
  o.agent_fd = sv[0];
  o.agent_timeout_ms = 1;
  char err[DMEM_ERRBUF_SIZE];
  dmem_kvm_region *r = NULL;
  ck_assert_msg(dmem_kvm_region_create(&r, &o, err, sizeof err) == 0, "create: %s", err);
  dmem_engine_options eo = DMEM_ENGINE_OPTIONS_INIT;
  eo.seed = 0x5eed;
  eo.c4_passes = 2;
  eo.map_shared = 1;
  dmem_engine *e;
  ck_assert_int_eq(dmem_engine_create(&e, &eo), 0);
  dmem_vm *vm;
  ck_assert_int_eq(dmem_kvm_region_attach(&vm, e, r, "agent"), 0);
  agent a = {
      .sock = sv[1], .frames_fd = dmem_vm_frames_fd(vm), .ram_fd = memfd, .uffd = uffd, .ram = ram};
  ck_assert_int_ge(a.frames_fd, 0);
  ck_assert_int_eq(pthread_create(&a.t, NULL, agent_main, &a), 0);

  for (int pass = 0; pass < 3; pass++)
    ck_assert_int_eq(dmem_engine_scan(NULL, e, AN), 0);
  dmem_stats vs = DMEM_STATS_INIT;
  ck_assert_int_eq(dmem_vm_stats(&vs, vm), 0);
  ck_assert_uint_ge(vs.shared, AN / 2 - 1);
  /* A read maps page 0's frame (the agent maps it); a write gives it a
   * private copy, which the next pass takes back to the memfd. */
  ck_assert_int_eq(check_page(ram, 0, 0), 0);
  ck_assert_uint_eq(kt_region_stats(r).cow_maps, 1);
  memset(ram, 3, PAGE);
  __atomic_store_n(&a.hold, 1, __ATOMIC_RELEASE);
  ck_assert_int_eq(dmem_engine_scan(NULL, e, AN), 0);
  ck_assert_int_eq(wait_flag(&a.in_window, 5000), 1);
  ck_assert_uint_eq(kt_region_stats(r).agent_timeouts, 1);

  /* The agent has copied the page and not yet put the memfd back. */
  writer w = {.page = ram, .value = 2};
  pthread_t wt;
  ck_assert_int_eq(pthread_create(&wt, NULL, write_page, &w), 0);
  ck_assert_int_eq(wait_flag(&w.done, 200), 0); /* it waits for the page */
  __atomic_store_n(&a.go, 1, __ATOMIC_RELEASE);
  /* The late answer is taken without a scan, and lets the write go. */
  ck_assert_int_eq(wait_flag(&a.remapped, 5000), 1);
  ck_assert_int_eq(wait_flag(&w.done, 5000), 1);
  pthread_join(wt, NULL);
  uint8_t expect2[PAGE];
  memset(expect2, 2, PAGE);
  ck_assert_msg(memcmp(ram, expect2, PAGE) == 0, "the write made while the agent was late is lost");
  ck_assert_uint_eq(kt_region_stats(r).agent_late, 1);

  for (int pass = 0; pass < 3; pass++)
    ck_assert_int_eq(dmem_engine_scan(NULL, e, AN), 0);
  ck_assert_int_eq(dmem_kvm_region_detach(r), 0);
  ck_assert_uint_eq(memfd_bytes(r), (uint64_t)AN * PAGE);
  ck_assert_int_eq(memcmp(ram, expect2, PAGE), 0);
  for (uint64_t i = 1; i < AN; i++)
    ck_assert_int_eq(check_page(ram + i * PAGE, i < AN / 2 ? 0 : i, 0), 0);
  dmem_kvm_region_destroy(r);
  dmem_engine_destroy(e);
  close(sv[0]); /* the agent reads the end and stops */
  pthread_join(a.t, NULL);
  close(sv[1]);
  close(uffd);
  munmap(ram, (size_t)AN * PAGE);
  close(memfd);
}
END_TEST

static Suite *remote_suite(void)
{
  Suite *s = suite_create("kvm_remote");
  TCase *tc = tcase_create("remote");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, create_says_why);
  tcase_add_test(tc, uffd_from_another_process);
  tcase_add_test(tc, late_agent_answer_keeps_a_write);
  suite_add_tcase(s, tc);
  return s;
}

/* Check's main lives in tests/runner.c, which cannot skip: this program
 * has its own, so that a host without userfaultfd skips it (77). */
int main(void)
{
  kt_skip_unless_supported("test_kvm_remote");
  return kt_run_suite(remote_suite());
}
