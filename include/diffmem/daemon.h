/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file diffmem/daemon.h
 * @brief diffmemd: one engine for every VMM process on a host. The client
 * calls a VMM makes, and the protocol they speak (part of libdiffmem-kvm).
 *
 * Link with `pkg-config --cflags --libs libdiffmem-kvm`.
 *
 * Real KVM hosts run one VMM process per VM. diffmemd(8) owns one engine
 * for the host, and a VMM hands it its guest RAM over a Unix socket:
 *
 *     dmem_kvm_client_options o = DMEM_KVM_CLIENT_OPTIONS_INIT;
 *     o.fd = ram_memfd;     // sealed against shrinking (F_SEAL_SHRINK)
 *     o.addr = ram;         // the VMM's MAP_SHARED mapping of it
 *     o.size = ram_bytes;
 *     o.name = "vm42";
 *     dmem_kvm_client *c;
 *     if (dmem_kvm_client_attach(&c, &o, err, sizeof err) != 0)
 *       ... run without the daemon (err says why) ...
 *     ... run the guest ...
 *     dmem_kvm_client_detach(c);  // every page back in the VMM's memory
 *
 * The client registers the mapping with a userfaultfd of its own (MISSING,
 * and WP where the kernel offers it) and passes the memfd and the
 * userfaultfd to the daemon (SCM_RIGHTS). The daemon reads guest pages
 * through its own mapping of the memfd, evicts by punching holes in it,
 * and serves the VMM's faults through the passed userfaultfd, whose
 * ioctls act on the VMM's address space. The VMM's threads and vCPUs do
 * nothing: a touch of an evicted page waits in the kernel until the daemon
 * has put it back. Which sharing domain a VM joins is the daemon's
 * configuration (by the connecting user, by default), never the client's.
 *
 * Copy-on-write across processes. A page the guests share is best mapped
 * in the VMM from the engine's frame (a private mapping: reads need no
 * fault and no copy, a write gets a private copy), but only the VMM's
 * own process can make that mmap. So the client runs an agent thread,
 * and the daemon, when it uses it, hands the client a socket to talk to
 * it and a read-only descriptor of the memfd holding the frames of the
 * VM's sharing domain (no other domain's frame is in it). The daemon asks
 * the agent to map a frame over a page (DMEM_PROTO_MAP_FRAME) on the
 * page's first read (the agent wakes the reader), and to move it back onto
 * the memfd
 * (DMEM_PROTO_MAP_RAM) once the guest wrote it or the VM is let go; the
 * agent copies the page's content into the memfd before it maps the memfd
 * back, always, so the VMM never reads a wrong byte whatever the daemon
 * does. When the agent's socket closes (the daemon, and its keeper if it
 * died, have let the VM go; or the client detaches), the agent moves back
 * every page it still has mapped itself. An agent that does not answer a
 * DMEM_PROTO_MAP_RAM within the daemon's agent timeout (1 s by default,
 * diffmemd --agent-timeout-ms) leaves that page mapped, its frame kept,
 * and is asked nothing more (its VM's shared pages are copied) until its
 * late answer arrives, which completes the request: a VMM can slow the
 * daemon for that long, and then not again until it answers; one that
 * does not serve a DMEM_PROTO_MAP_FRAME stalls only its own guest. An
 * agent that closes its socket is never asked again. Secure mode maps nothing, so the daemon offers
 * no agent there.
 *
 * Lifecycles:
 *  - the VMM detaches, exits or is killed: the daemon detaches the VM,
 *    writes every evicted page back into the memfd (where another process
 *    holding it still sees the content) and releases its storage;
 *  - the daemon stops (SIGTERM, SIGINT): it puts every evicted page back
 *    into its VMM's memory, unregisters the range, says so to the client
 *    (DMEM_PROTO_RELEASED), and exits; the VMM runs on as if the daemon had
 *    never been there, and its dmem_kvm_client_detach() returns 0;
 *  - the daemon dies (SIGKILL, a crash) at any instant: its keeper, a
 *    second process that holds a copy of the store's memfds and of each
 *    VM's journal, userfaultfd, memfd and connection (and nothing else to
 *    do), rebuilds every page the journals say is evicted, puts it back
 *    through the userfaultfd (waking whoever waits on it), lifts every
 *    write protection, unregisters the range and says RELEASED; the VMM
 *    runs on and its dmem_kvm_client_detach() returns 0. With an agent,
 *    the keeper leaves the range registered and closes its copy of the
 *    agent's socket last: the agent serves what the daemon had asked of it
 *    (a page it was to map is a hole until then), moves its pages back,
 *    and unregisters. The journal
 *    (diffmem.h, dmem_vm_set_journal()) names where a page is before it
 *    leaves guest memory, so this holds at every instant. Only the death
 *    of both processes at once (a SIGKILL of the whole group) loses the
 *    pages the daemon had evicted; kill the daemon alone.
 *
 * What a guest can learn: sharing happens only within a sharing domain
 * (diffmem.h), so a guest learns nothing about the VMs of other domains;
 * within a domain, what the engine's mode allows (README, "Security"). A
 * VMM process (not its guest) may read every frame of its own domain
 * through the descriptor its agent holds: the content of pages that at
 * least two VMs of the domain held. With the default domains (one per
 * connecting user) those VMMs run as one user and could read each other's
 * memory anyway; `--domain-by vm` gives each VM a domain, and a VMM only
 * its own frames.
 *
 * The protocol. Messages travel over an AF_UNIX SOCK_SEQPACKET socket, one
 * message per packet, in host byte order (the peers share a host). Each is
 * a dmem_proto_hdr followed by exactly hdr.length payload bytes, at most
 * DMEM_PROTO_MAX bytes in all; every payload has a fixed layout (below),
 * strings are NUL-terminated within their field, and every reserved field
 * is 0. The client sends requests; the daemon answers each with one reply
 * carrying the request's seq, or DMEM_PROTO_ERROR. The daemon identifies
 * its peer with SO_PEERCRED; the socket file's owner, group and mode
 * decide who may connect. A message that fails to parse, an unknown type,
 * or passing a limit closes that connection (its VMs are detached) and
 * nothing else.
 */
#ifndef DIFFMEM_DAEMON_H
#define DIFFMEM_DAEMON_H

#include <stddef.h>
#include <stdint.h>

#include <diffmem/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ the client */

/** A VM served by diffmemd. */
typedef struct dmem_kvm_client dmem_kvm_client;

/** Where diffmemd listens unless told otherwise (and unless the
 *  DIFFMEMD_SOCKET environment variable names another path). */
#define DMEM_DAEMON_SOCKET "/run/diffmemd.sock"

/** Options of dmem_kvm_client_attach(). Start from
 *  DMEM_KVM_CLIENT_OPTIONS_INIT. */
typedef struct dmem_kvm_client_options {
  unsigned version; /**< DMEM_KVM_CLIENT_OPTIONS_VERSION */
  /** The daemon's socket; NULL: $DIFFMEMD_SOCKET, else DMEM_DAEMON_SOCKET. */
  const char *socket;
  /** The guest RAM's memfd, sealed with F_SEAL_SHRINK (the daemon maps
   *  it, and a shrinking file would fault the daemon): memfd_create with
   *  MFD_ALLOW_SEALING, then F_ADD_SEALS. QEMU's memory-backend-memfd
   *  seals by default. */
  int fd;
  uint64_t fd_offset; /**< where the RAM starts in fd; page-aligned */
  /** The VMM's MAP_SHARED mapping of fd at fd_offset, page-aligned, not
   *  registered with another userfaultfd. */
  void *addr;
  uint64_t size;    /**< bytes; a multiple of DMEM_PAGE_SIZE, not 0 */
  const char *name; /**< for diffmem stat; NULL: "vm"; truncated to 47 bytes */
  /** Milliseconds to wait for the daemon's answers; 0: 10000. */
  unsigned timeout_ms;
} dmem_kvm_client_options;

#define DMEM_KVM_CLIENT_OPTIONS_VERSION 1
#define DMEM_KVM_CLIENT_OPTIONS_INIT                                                               \
  {                                                                                                \
    DMEM_KVM_CLIENT_OPTIONS_VERSION, NULL, -1, 0, NULL, 0, NULL, 0                                 \
  }

/**
 * Connects to diffmemd and hands it the RAM. On success the daemon serves
 * the VM until dmem_kvm_client_detach(); on failure nothing is left
 * registered and the VMM runs on its own memory as before.
 * @param errbuf why, in words, on failure (DMEM_ERRBUF_SIZE is enough).
 * @param out receives the client.
 * @param opts the RAM, the socket and the rest (DMEM_KVM_CLIENT_OPTIONS_INIT).
 * @param errlen the size of @p errbuf.
 * @retval 0 success.
 * @retval DMEM_EINVAL bad options (also a memfd without F_SEAL_SHRINK).
 * @retval DMEM_EVERSION unknown options version, or a daemon that speaks
 *         another protocol version.
 * @retval DMEM_ENOTSUP no userfaultfd for shared memory here.
 * @retval DMEM_EIO no daemon at the socket, or it went away, or it did not
 *         answer in time.
 * @retval DMEM_EPERM the daemon refused the VM (its limits, or no access).
 * @retval DMEM_ESYS, DMEM_ENOMEM.
 */
DMEM_API int dmem_kvm_client_attach(dmem_kvm_client **out, const dmem_kvm_client_options *opts,
                                    char *errbuf, size_t errlen);

/**
 * Asks the daemon to put every page back into the VMM's memory and to
 * forget the VM, waits for it, and frees the client. Also 0 when the
 * daemon had already released the VM (it stopped cleanly). NULL: 0.
 * @retval DMEM_EIO the daemon went away without releasing the VM: pages
 *         it had evicted are lost (see the lifecycles above).
 */
DMEM_API int dmem_kvm_client_detach(dmem_kvm_client *client);

/** The VM's id in the daemon's engine (diffmem stat shows it). */
DMEM_API uint32_t dmem_kvm_client_vm(const dmem_kvm_client *client);
/** The sharing domain the daemon put the VM in. */
DMEM_API uint32_t dmem_kvm_client_domain(const dmem_kvm_client *client);

/* ---------------------------------------------------------- the protocol */

#define DMEM_PROTO_MAGIC 0x444d4d44u /**< "DMMD" read as little-endian bytes */
#define DMEM_PROTO_VERSION 1u
#define DMEM_PROTO_MAX 65536u /**< largest message, header included */
#define DMEM_PROTO_NAME_MAX 48u
#define DMEM_PROTO_MSG_MAX 256u
/** Most VM entries in one DMEM_PROTO_STATS_REPLY (the engine's first). */
#define DMEM_PROTO_STATS_MAX 255u

/** Message types. Requests come from the client, replies from the daemon. */
typedef enum dmem_proto_type {
  /** Request: serve this RAM. Payload dmem_proto_attach; exactly two
   *  descriptors ride with it (SCM_RIGHTS): the memfd, then the
   *  userfaultfd. Reply: DMEM_PROTO_ATTACHED. */
  DMEM_PROTO_ATTACH = 1,
  /** Request: put every page back and forget the VM. Payload
   *  dmem_proto_vm. Reply: DMEM_PROTO_RELEASED. */
  DMEM_PROTO_DETACH = 2,
  /** Request: statistics. No payload. Reply: DMEM_PROTO_STATS_REPLY. */
  DMEM_PROTO_STATS = 3,
  /** Request from the daemon to the client's agent, on the agent socket
   *  (DMEM_PROTO_ATTACHED_AGENT): change what backs one page of the VMM's
   *  mapping. Payload dmem_proto_map. The agent serves them in order.
   *  Reply: DMEM_PROTO_MAP_DONE for DMEM_PROTO_MAP_RAM; none for
   *  DMEM_PROTO_MAP_FRAME (the daemon does not wait on a fault's path). */
  DMEM_PROTO_MAP = 4,
  /** Reply: the VM is served. Payload dmem_proto_attached. */
  DMEM_PROTO_ATTACHED = 0x81,
  /** Reply to DETACH, or unasked (seq 0) when the daemon stops: every page
   *  of the VM is back in the VMM's memory and the daemon serves it no
   *  more. Payload dmem_proto_vm. */
  DMEM_PROTO_RELEASED = 0x82,
  /** Reply: the engine's totals (vm = UINT32_MAX), then one entry per VM.
   *  Payload: 1 to DMEM_PROTO_STATS_MAX + 1 dmem_proto_vm_stats. */
  DMEM_PROTO_STATS_REPLY = 0x83,
  /** The agent's reply to DMEM_PROTO_MAP. Payload dmem_proto_map_done. */
  DMEM_PROTO_MAP_DONE = 0x84,
  /** Reply: the request failed. Payload dmem_proto_error. */
  DMEM_PROTO_ERROR = 0xff
} dmem_proto_type;

typedef struct dmem_proto_hdr {
  uint32_t magic;   /**< DMEM_PROTO_MAGIC */
  uint16_t version; /**< DMEM_PROTO_VERSION */
  uint16_t type;    /**< dmem_proto_type */
  uint32_t length;  /**< payload bytes after the header */
  uint32_t seq;     /**< the request's, echoed by its reply */
} dmem_proto_hdr;

typedef struct dmem_proto_attach {
  uint64_t size;          /**< bytes of RAM; page multiple, not 0 */
  uint64_t fd_offset;     /**< page-aligned */
  uint64_t uffd_addr;     /**< the VMM's mapping (where it registered); page-aligned */
  uint64_t uffd_features; /**< what UFFDIO_API accepted on the userfaultfd */
  uint32_t flags;         /**< DMEM_PROTO_ATTACH_* */
  uint32_t reserved;
  char name[DMEM_PROTO_NAME_MAX]; /**< NUL-terminated */
} dmem_proto_attach;

/** dmem_proto_attach.flags: the client runs an agent, a thread in the VMM
 *  that maps pages in the VMM's address space when the daemon asks it to
 *  (DMEM_PROTO_MAP), so that shared pages are mapped copy-on-write there
 *  instead of copied. */
#define DMEM_PROTO_ATTACH_AGENT 1u

typedef struct dmem_proto_vm {
  uint32_t vm;
  uint32_t reserved;
} dmem_proto_vm;

typedef struct dmem_proto_attached {
  uint32_t vm;     /**< the VM's id */
  uint32_t domain; /**< its sharing domain */
  uint64_t pages;
  uint32_t flags; /**< DMEM_PROTO_ATTACHED_* */
  uint32_t reserved;
} dmem_proto_attached;

/** dmem_proto_attached.flags: the daemon uses the client's agent. Two
 *  descriptors ride with the reply: the agent socket (SOCK_SEQPACKET; the
 *  daemon sends DMEM_PROTO_MAP on it, the agent answers each with
 *  DMEM_PROTO_MAP_DONE, in order), then a read-only descriptor of the
 *  memfd that holds the frames of the VM's sharing domain (and of no other
 *  domain). Only with DMEM_PROTO_ATTACH_AGENT asked. */
#define DMEM_PROTO_ATTACHED_AGENT 1u

/** DMEM_PROTO_MAP: what the agent does to the page at @c addr (a page of
 *  the RAM the VMM attached; anything else is refused). */
typedef enum dmem_proto_map_what {
  /** Map the frames memfd at @c offset over the page, MAP_PRIVATE (the
   *  page is then shared copy-on-write), fault it in for reading, register
   *  it with the userfaultfd in WP mode, write-protect it (a write must be
   *  seen), and wake the threads waiting on it. Where the mapping cannot
   *  be made, write the frame into the RAM memfd at the page instead (the
   *  page is an evicted hole until then), and wake them all the same. */
  DMEM_PROTO_MAP_FRAME = 1,
  /** Copy the page's current content (the frame, or the VMM's private copy
   *  of it) into the RAM memfd, then map the RAM memfd back over the page,
   *  MAP_SHARED, as before DMEM_PROTO_MAP_FRAME; for a page the agent did
   *  not map, nothing (its content is in the memfd). @c offset is 0: the
   *  agent knows where the page is in its memfd. The daemon write-protects
   *  the page first, so that no write lands between the copy and the
   *  mapping. */
  DMEM_PROTO_MAP_RAM = 2
} dmem_proto_map_what;

typedef struct dmem_proto_map {
  uint64_t addr;   /**< page-aligned, in the VMM's address space */
  uint64_t offset; /**< page-aligned, into the frames memfd */
  uint32_t what;   /**< dmem_proto_map_what */
  uint32_t reserved;
} dmem_proto_map;

typedef struct dmem_proto_map_done {
  int32_t code;   /**< 0, or a DMEM_E* code (DMEM_ENOSPC: no room for another mapping) */
  uint32_t error; /**< the errno of the call that failed, for the daemon's log */
} dmem_proto_map_done;

typedef struct dmem_proto_error {
  int32_t code; /**< a DMEM_E* code */
  uint32_t reserved;
  char msg[DMEM_PROTO_MSG_MAX]; /**< NUL-terminated */
} dmem_proto_error;

typedef struct dmem_proto_vm_stats {
  uint32_t vm;       /**< UINT32_MAX: the engine's totals */
  uint32_t domain;   /**< 0 for the totals */
  uint32_t pid, uid; /**< the VMM's (SO_PEERCRED); 0 for the totals */
  char name[DMEM_PROTO_NAME_MAX];
  uint64_t pages, resident, mapped, zero, shared, patched, compressed, swapped;
  int64_t bytes_saved;
  int64_t entitlement_bytes;
  uint64_t merges, faults, errors;
  /** Fault service time (0: none yet): from the daemon reading the fault
   *  to the page installed, or, for a page the VMM's agent maps, to the
   *  request sent (bench faults times the whole touch). */
  uint64_t fault_p50_ns, fault_p99_ns;
  uint64_t cpu_ns;      /**< the daemon's CPU time (totals only) */
  uint64_t store_bytes; /**< frames, patches and blobs (totals only) */
} dmem_proto_vm_stats;

/** A parsed message: hdr, and the payload of its type. */
typedef struct dmem_proto_msg {
  dmem_proto_hdr hdr;
  union {
    dmem_proto_attach attach;
    dmem_proto_vm vm; /* DETACH, RELEASED */
    dmem_proto_attached attached;
    dmem_proto_error error;
    dmem_proto_map map;
    dmem_proto_map_done map_done;
  } u;
  /** DMEM_PROTO_STATS_REPLY: the entries, pointing into the parsed buffer
   *  (which must outlive their use), and how many. */
  const dmem_proto_vm_stats *stats;
  size_t nstats;
} dmem_proto_msg;

/**
 * Parses and checks one message of @p len bytes (a whole packet): magic,
 * version, a known type, the exact payload size for the type, strings
 * terminated within their fields, reserved fields 0, and the values'
 * ranges (sizes and addresses page-aligned, a non-zero size, the stats
 * count). Never reads past @p len.
 * @retval 0 success.
 * @retval DMEM_EVERSION another protocol version.
 * @retval DMEM_ECORRUPT anything else wrong (out gets nothing useful).
 * @retval DMEM_EINVAL NULL arguments.
 */
DMEM_API int dmem_proto_parse(dmem_proto_msg *out, const void *buf, size_t len);

/**
 * Writes a message of @p type with @p payload (@p plen bytes) into @p buf.
 * @return the message's size, or 0 when it does not fit @p cap or passes
 *         DMEM_PROTO_MAX.
 */
DMEM_API size_t dmem_proto_encode(void *buf, size_t cap, dmem_proto_type type, uint32_t seq,
                                  const void *payload, size_t plen);

/**
 * Sends one packet (a whole message) on a SOCK_SEQPACKET socket, with
 * @p nfds descriptors (0 to DMEM_PROTO_FDS_MAX) riding along (SCM_RIGHTS),
 * retrying when a signal interrupts it and never raising SIGPIPE.
 * @param nonblock 1: fail with EAGAIN rather than wait for room.
 * @param sock the socket.
 * @param buf the packet, from dmem_proto_encode().
 * @param len its length.
 * @param fds the descriptors to pass (NULL when @p nfds is 0).
 * @param nfds how many.
 * @return 0, or -1 with errno set.
 */
DMEM_API int dmem_proto_send(int sock, const void *buf, size_t len, const int *fds, int nfds,
                             int nonblock);

/**
 * Receives one packet into @p buf (@p cap bytes) and its descriptors
 * (close-on-exec) into @p fds, their count into @p *nfds (NULL when none
 * are expected). Waits up to @p timeout_ms (-1: as long as it takes; 0:
 * only what is there already). A packet longer than @p cap or with more
 * than @p maxfds descriptors is an error (EMSGSIZE), and every descriptor
 * that came with it is closed.
 * @return the packet's length; 0 at end of file; -1 with errno set
 *         (ETIMEDOUT when nothing came in time, EAGAIN, EMSGSIZE, ...).
 */
DMEM_API long dmem_proto_recv(int sock, void *buf, size_t cap, int *fds, int maxfds, int *nfds,
                              int timeout_ms);

/** Most descriptors one packet carries (dmem_proto_send, dmem_proto_recv). */
#define DMEM_PROTO_FDS_MAX 4

#ifdef __cplusplus
}
#endif

#endif /* DIFFMEM_DAEMON_H */
