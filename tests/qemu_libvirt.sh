#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# The libvirt way to the preload client, with a real libvirtd (qemu:///system)
# and Debian's QEMU under TCG: the domain XML of the README's "libvirt"
# section (<memoryBacking> memfd + shared, LD_PRELOAD and DIFFMEMD_SOCKET
# through <qemu:env>).
#  - Two guests at once, QEMU run as root by a per-domain DAC label (the
#    way that needs no host change): both boot Debian's kernel with the
#    init of tests/guest_init.c, diffmemd evicts and shares their pages
#    underneath them (across the two QEMU processes: one sharing domain,
#    their user's), patching some, every check in both guests holds, the
#    file each wrote reads back with the checksum computed here, and both
#    power off.
#  - One guest as libvirt's own QEMU user, capabilities cleared: where the
#    host gave that user no userfaultfd (/dev/userfaultfd in the domain's
#    /dev and its mode, see the README), QEMU runs unmanaged, the preload
#    client says why exactly once, and the guest's checks hold; where the
#    host did, diffmemd serves it and its checks hold.
# Starts virtlogd and libvirtd when they are not running. Skips (77) without
# root, libvirt, QEMU, a kernel in /boot, cpio, a static libc, or a domain
# libvirt can start; and in sanitizer builds (the library cannot be
# preloaded into a plain QEMU).
set -u
fail() { echo "qemu_libvirt: FAIL: $*"; [ -n "${tmp:-}" ] && tail -5 "$tmp"/*.console 2>/dev/null; exit 1; }
skip() { echo "qemu_libvirt: SKIP: $*"; exit 77; }

builddir=${builddir:-.}
srcdir=${srcdir:-.}
uri=qemu:///system
[ "$(id -u)" -eq 0 ] || skip "needs root to reach qemu:///system and start libvirtd"
command -v virsh >/dev/null || skip "no virsh (install libvirt-clients)"
. "$srcdir/tests/qemu_guest.sh"
qemu_guest_prereqs

. "$srcdir/tests/libvirtd.sh"
libvirt_up "$uri"

tmp=$(mktemp -d /tmp/dmem-qlibvirt.XXXXXX) || fail "mktemp"
chmod 755 "$tmp" # libvirt's QEMU user reads the kernel and the libraries here
dpid=
names=
cleanup() {
  for n in $names; do
    virsh -c "$uri" destroy "$n" >/dev/null 2>&1
    rm -f "/var/log/libvirt/qemu/$n.log" # libvirt made it for our domain
  done
  [ -n "$dpid" ] && kill -TERM "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

mkdir -p "$tmp/lib" || fail "mkdir"
qemu_guest_initrd "$tmp"
cp "$kernel" "$tmp/vmlinuz" || fail "cannot copy $kernel"
# The preload client and the libraries it links, where QEMU's user may read.
cp -L "$preload" "$builddir/.libs/libdiffmem-kvm.so.0" "$builddir/.libs/libdiffmem.so.0" \
  "$tmp/lib/" || fail "cannot copy the libraries"
chmod -R a+rX "$tmp"

# The daemon, its socket open to the group libvirt's QEMU runs in (kvm on
# Debian), sharing domains by the connecting user (the default).
sock=$tmp/sock
group=
getent group kvm >/dev/null && group="--socket-group kvm"
# shellcheck disable=SC2086
qemu_guest_daemon "$sock" "$tmp/daemon.log" $group --socket-mode 0660 --scan-ms 20 --scan-pages 100000

# domain NAME [DAC-LABEL]: the domain XML; with a label, QEMU runs as it.
domain() {
  seclabel=
  [ $# -gt 1 ] && seclabel="<seclabel type='static' model='dac' relabel='no'><label>$2</label></seclabel>"
  cat <<EOF
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$1</name>
  <memory unit='MiB'>256</memory>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$tmp/vmlinuz</kernel>
    <initrd>$tmp/initrd</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$qemu</emulator>
    <serial type='file'><source path='$tmp/$1.console'/><target port='0'/></serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
  $seclabel
  <qemu:commandline>
    <qemu:env name='LD_PRELOAD' value='$tmp/lib/libdiffmem-preload.so'/>
    <qemu:env name='LD_LIBRARY_PATH' value='$tmp/lib'/>
    <qemu:env name='DIFFMEMD_SOCKET' value='$sock'/>
    <qemu:env name='DIFFMEM_PRELOAD_DEBUG' value='1'/>
  </qemu:commandline>
</domain>
EOF
}

# start NAME [DAC-LABEL]: creates the transient domain; its QEMU log (the
# preload client's stderr) is copied to $tmp/NAME.qemu when it ends.
start() {
  domain "$@" >"$tmp/$1.xml"
  virsh -c "$uri" create "$tmp/$1.xml" >"$tmp/create.log" 2>&1 ||
    skip "libvirt cannot start a QEMU domain here: $(tr '\n' ' ' <"$tmp/create.log")"
  names="$names $1"
}

# wait_off NAME...: until every domain has powered off (TCG: under 5 min),
# sampling the daemon's evicted pages meanwhile into $tmp/evicted.
wait_off() {
  : >"$tmp/evicted"
  i=0
  while :; do
    up=0
    for n in "$@"; do virsh -c "$uri" domstate "$n" >/dev/null 2>&1 && up=1; done
    [ $up -eq 1 ] || break
    "$diffmem" stat --socket "$sock" --json 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)
vms = j["vms"]
print(sum(v["zero"] + v["shared"] + v["patched"] + v["compressed"] + v["swapped"] for v in vms),
      len(vms), len({v["domain"] for v in vms}), len({v["pid"] for v in vms}),
      sum(v["patched"] for v in vms))' \
      >>"$tmp/evicted" 2>/dev/null
    i=$((i + 1))
    [ $i -lt 300 ] || fail "the guests did not power off within 5 minutes"
    sleep 1
  done
  for n in "$@"; do
    cp "/var/log/libvirt/qemu/$n.log" "$tmp/$n.qemu" 2>/dev/null ||
      fail "no QEMU log for $n in /var/log/libvirt/qemu"
  done
}

# Two guests, QEMU as root by the domain's DAC label.
a=dmem-pl-a-$$ b=dmem-pl-b-$$
start "$a" +0:+0
start "$b" +0:+0
wait_off "$a" "$b"
fnv=$(qemu_guest_fnv)
for n in "$a" "$b"; do
  grep -q "served by diffmemd" "$tmp/$n.qemu" || fail "$n: the preload client did not attach: $(grep libdiffmem "$tmp/$n.qemu")"
  grep -q "diffmem-guest: ok0" "$tmp/$n.console" || fail "$n: the guest's checks: $(grep diffmem-guest "$tmp/$n.console")"
  grep -q "diffmem-guest: file fnv $fnv" "$tmp/$n.console" ||
    fail "$n: the file's checksum: $(grep 'file fnv' "$tmp/$n.console"), want $fnv"
done
patched=$(awk '{ print $5 }' "$tmp/evicted" | sort -n | tail -n 1)
[ "${patched:-0}" -gt 0 ] || fail "the daemon patched no page of the two guests"
# Both at once, in one sharing domain (same user), from two processes.
most=$(awk '$2 == 2 && $3 == 1 && $4 == 2 { print $1 }' "$tmp/evicted" | sort -n | tail -n 1)
[ "${most:-0}" -gt 20000 ] ||
  fail "with both guests attached the daemon evicted at most ${most:-0} pages: $(tail -3 "$tmp/evicted")"
echo "ok: two libvirt guests (QEMU as root by DAC label) served by one diffmemd; up to $most of their pages evicted ($patched patched at most); every check held, file checksums $fnv"

# One guest as libvirt's own QEMU user.
c=dmem-pl-c-$$
start "$c"
wait_off "$c"
grep -q "diffmem-guest: ok0" "$tmp/$c.console" || fail "$c: the guest's checks: $(grep diffmem-guest "$tmp/$c.console")"
if grep -q "served by diffmemd" "$tmp/$c.qemu"; then
  echo "ok: a guest as libvirt's QEMU user served by diffmemd (this host gives it a userfaultfd); every check held"
else
  n=$(grep -c "running without diffmemd" "$tmp/$c.qemu")
  [ "$n" -eq 1 ] || fail "$c: $n notices of running without diffmemd: $(grep libdiffmem "$tmp/$c.qemu")"
  echo "ok: a guest as libvirt's QEMU user without a userfaultfd runs unmanaged, says so once ($(sed -n 's/.*running without diffmemd: //p' "$tmp/$c.qemu")), every check held"
fi
