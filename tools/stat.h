/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem stat's query of diffmemd, for diffmem demo --processes too
 * (KVM builds only). */
#ifndef DMEM_TOOLS_STAT_H
#define DMEM_TOOLS_STAT_H

#include <stddef.h>
#include <sys/types.h>

#include <diffmem/daemon.h>

/* One STATS request to the daemon at path: up to max entries (the engine's
 * totals first) into out, their count into *n, and the daemon's pid (from
 * SO_PEERCRED) into *pid when not NULL. Returns 0, or -1 after saying why
 * on stderr. */
int stat_query(const char *path, dmem_proto_vm_stats *out, size_t max, size_t *n, pid_t *pid);

/* Starts diffmemd (next to this program, else from PATH) on sock with the
 * extra arguments (NULL-terminated; at most 27) and --quiet, and waits
 * until it listens. Returns its pid, or -1. */
pid_t stat_daemon_start(const char *sock, char *const extra[]);

#endif
