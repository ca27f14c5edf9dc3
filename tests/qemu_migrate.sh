#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# QEMU's own features on guest RAM that diffmemd serves through the preload
# client, with a real Linux guest (Debian's kernel, tests/guest_init.c)
# under TCG:
#  - memory hotplug: a memory-backend-memfd and a pc-dimm added through QMP
#    while the guest runs are served too (a second VM of the same QEMU);
#  - precopy live migration: once the daemon has evicted most of the guest,
#    QEMU migrates it (to a file, "exec:cat"), reading every page through
#    its mapping; a second QEMU, also served, takes it in ("-incoming") and
#    the guest runs on there: every page check and the file it wrote before
#    the migration hold, against the checksum computed here, and it powers
#    off cleanly.
# Skips (77) without root, QEMU, a kernel in /boot, cpio, a static libc or
# userfaultfd, and in sanitizer builds.
set -u
fail() { echo "qemu_migrate: FAIL: $*"; [ -n "${tmp:-}" ] && tail -5 "$tmp"/*.log 2>/dev/null; exit 1; }
skip() { echo "qemu_migrate: SKIP: $*"; exit 77; }

builddir=${builddir:-.}
srcdir=${srcdir:-.}
. "$srcdir/tests/qemu_guest.sh"
qemu_guest_prereqs

tmp=$(mktemp -d /tmp/dmem-qmig.XXXXXX) || fail "mktemp"
dpid=
cleanup() {
  pkill -KILL -f "$tmp/qmp" 2>/dev/null
  [ -n "$dpid" ] && kill -TERM "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

qemu_guest_initrd "$tmp"
sock=$tmp/sock
qemu_guest_daemon "$sock" "$tmp/daemon.log" --domain-by one --scan-ms 20 --scan-pages 100000

# guest LOG QMP [OPTION...]: one QEMU, served by the daemon.
guest() {
  log=$1 qmp=$2
  shift 2
  timeout 300 env LD_PRELOAD="$preload" LD_LIBRARY_PATH="$libs" DIFFMEMD_SOCKET="$sock" \
    DIFFMEM_PRELOAD_DEBUG=1 "$qemu" -accel tcg -m 256,slots=2,maxmem=512M \
    -object memory-backend-memfd,id=mem,size=256M,share=on -machine pc,memory-backend=mem \
    -kernel "$kernel" -initrd "$tmp/initrd" -append "console=ttyS0 panic=-1 quiet dmem_sleep=10" \
    -nographic -no-reboot -nodefaults -serial stdio -qmp "unix:$qmp,server=on,wait=off" \
    "$@" >"$log" 2>&1
}

# evicted: the pages the daemon holds out of guest memory, and its VMs.
evicted() {
  "$diffmem" stat --socket "$sock" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
t = j["total"]
print(t["zero"] + t["shared"] + t["patched"] + t["compressed"] + t["swapped"], len(j["vms"]))'
}

guest "$tmp/src.log" "$tmp/qmp1" &
src=$!
i=0
until grep -q "diffmem-guest: filled" "$tmp/src.log" 2>/dev/null; do
  kill -0 $src 2>/dev/null || fail "the source QEMU exited: $(tail -3 "$tmp/src.log")"
  i=$((i + 1)); [ $i -lt 3000 ] || fail "the guest did not fill its memory"; sleep 0.1
done
sleep 1

# Memory hotplug.
qemu_guest_qmp "$tmp/qmp1" \
  'object-add {"qom-type": "memory-backend-memfd", "id": "hp", "size": 67108864, "share": true}' \
  'device_add {"driver": "pc-dimm", "id": "dimm1", "memdev": "hp"}' >"$tmp/qmp.log" 2>&1 ||
  fail "hotplug: $(cat "$tmp/qmp.log")"
set -- $(evicted)
[ "$2" -eq 2 ] || fail "after the hotplug the daemon serves $2 VMs, want 2 (guest RAM and the DIMM)"
grep -q "64 MiB of guest RAM served by diffmemd" "$tmp/src.log" ||
  fail "the hot-plugged memory was not served: $(grep libdiffmem "$tmp/src.log")"
echo "ok: a hot-plugged memory-backend-memfd is served too"
# Within the guest's first 10 s pause (dmem_sleep=10), the daemon evicts.
i=0
while set -- $(evicted) && [ "$1" -le 20000 ]; do
  i=$((i + 1)); [ $i -lt 60 ] || fail "the daemon evicted only $1 pages in 6 s"; sleep 0.1
done
before=$1

# Precopy migration to a file, then out of it into a second QEMU.
qemu_guest_qmp "$tmp/qmp1" "migrate {\"uri\": \"exec:cat > $tmp/mig\"}" wait-migrated quit \
  >"$tmp/qmp.log" 2>&1 || fail "migration: $(cat "$tmp/qmp.log")"
wait $src || fail "the source QEMU after the migration: $(tail -3 "$tmp/src.log")"
guest "$tmp/dst.log" "$tmp/qmp2" -object memory-backend-memfd,id=hp,size=64M,share=on \
  -device pc-dimm,id=dimm1,memdev=hp -incoming "exec:cat $tmp/mig" ||
  fail "the destination QEMU: $(tail -3 "$tmp/dst.log")"
grep -q "served by diffmemd" "$tmp/dst.log" || fail "the destination was not served"
grep -q "diffmem-guest: ok0" "$tmp/dst.log" ||
  fail "the guest's checks after the migration: $(grep diffmem-guest "$tmp/dst.log")"
fnv=$(qemu_guest_fnv)
grep -q "diffmem-guest: file fnv $fnv" "$tmp/dst.log" ||
  fail "the file's checksum after the migration: $(grep 'file fnv' "$tmp/dst.log"), want $fnv"
echo "ok: migrated with $before pages evicted, the guest ran on in a second QEMU; every check held, file $fnv"
