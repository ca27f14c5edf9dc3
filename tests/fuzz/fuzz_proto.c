/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: dmem_proto_parse() (diffmem/daemon.h), what diffmemd runs on
 * every packet a VMM sends (and a client's agent on every request from the
 * daemon), must accept or refuse any bytes without
 * reading past them; and a message it accepts must be exactly what
 * dmem_proto_encode() makes of the parsed fields (nothing in a packet goes
 * unchecked or unread), with every string terminated in its field. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <diffmem/daemon.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t payload_len(const dmem_proto_msg *m)
{
  switch (m->hdr.type) {
  case DMEM_PROTO_ATTACH:
    return sizeof m->u.attach;
  case DMEM_PROTO_DETACH:
  case DMEM_PROTO_RELEASED:
    return sizeof m->u.vm;
  case DMEM_PROTO_ATTACHED:
    return sizeof m->u.attached;
  case DMEM_PROTO_ERROR:
    return sizeof m->u.error;
  case DMEM_PROTO_MAP:
    return sizeof m->u.map;
  case DMEM_PROTO_MAP_DONE:
    return sizeof m->u.map_done;
  default:
    return 0;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* The daemon parses from an aligned buffer: so does this. */
  static uint64_t buf[DMEM_PROTO_MAX / 8 + 1];
  static uint64_t again[DMEM_PROTO_MAX / 8 + 1];
  if (size > sizeof buf)
    size = sizeof buf;
  memcpy(buf, data, size);
  dmem_proto_msg m;
  if (dmem_proto_parse(&m, buf, size) != 0)
    return 0;
  const void *payload = &m.u;
  size_t plen = payload_len(&m);
  if (m.hdr.type == DMEM_PROTO_STATS_REPLY) {
    payload = m.stats;
    plen = m.nstats * sizeof *m.stats;
    for (size_t i = 0; i < m.nstats; i++)
      if (strlen(m.stats[i].name) >= sizeof m.stats[i].name)
        abort();
  }
  if (m.hdr.type == DMEM_PROTO_ATTACH && strlen(m.u.attach.name) >= sizeof m.u.attach.name)
    abort();
  if (m.hdr.type == DMEM_PROTO_ERROR && strlen(m.u.error.msg) >= sizeof m.u.error.msg)
    abort();
  size_t n =
      dmem_proto_encode(again, sizeof again, (dmem_proto_type)m.hdr.type, m.hdr.seq, payload, plen);
  if (n != size || memcmp(again, buf, size) != 0)
    abort();
  return 0;
}
