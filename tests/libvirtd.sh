# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the tests that need a real libvirtd (analyze_libvirt.sh,
# qemu_libvirt.sh), which define skip() first.
#
# libvirt_up URI: reaches libvirtd at URI, starting virtlogd (the QEMU
# driver logs through it) and libvirtd when no service manager did; skips
# the test when it cannot.
libvirt_up() {
  if ! virsh -c "$1" version >/dev/null 2>&1; then
    pgrep -x virtlogd >/dev/null || virtlogd -d || skip "virtlogd does not start"
    pgrep -x libvirtd >/dev/null || libvirtd -d || skip "libvirtd does not start"
    for _i in $(seq 1 50); do
      virsh -c "$1" version >/dev/null 2>&1 && break
      sleep 0.2
    done
  fi
  virsh -c "$1" version >/dev/null 2>&1 || skip "cannot connect to libvirtd at $1"
  pgrep -x virtlogd >/dev/null || virtlogd -d || skip "virtlogd does not start"
}
