#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# An unmodified QEMU whose guest RAM diffmemd serves through the preload
# client (libdiffmem-preload.so): Debian's kernel boots under TCG with
# -object memory-backend-memfd,share=on and an init of our own that fills
# 96 MiB with shared, zero and unique pages, then, while the daemon
# evicts, shares and compresses underneath it, reads every page back three
# times against the values it computes afresh, writes some, and powers
# off. Passes when the guest says every check held, diffmem stat saw the
# daemon evict the guest's pages meanwhile, and QEMU exited cleanly; also
# when no daemon runs, QEMU runs as if the library were not there and says
# so once. Skips (77) without root, QEMU, a kernel in /boot, cpio, a static
# libc or userfaultfd.
set -u
fail() { echo "qemu_preload: FAIL: $*"; [ -n "${tmp:-}" ] && tail -20 "$tmp/qemu.log" 2>/dev/null; exit 1; }
skip() { echo "qemu_preload: SKIP: $*"; exit 77; }

builddir=${builddir:-.}
srcdir=${srcdir:-.}
. "$srcdir/tests/qemu_guest.sh"
qemu_guest_prereqs

tmp=$(mktemp -d /tmp/dmem-qemu.XXXXXX) || fail "mktemp"
dpid=
cleanup() {
  [ -n "$dpid" ] && kill -TERM "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

qemu_guest_initrd "$tmp"

run_qemu() { # $1: log file, then QEMU options; the environment says where the daemon is
  log=$1
  shift
  timeout 300 env LD_PRELOAD="$preload" LD_LIBRARY_PATH="$libs" "$qemu" -accel tcg -m 256 \
    -object memory-backend-memfd,id=mem,size=256M,share=on -machine pc,memory-backend=mem \
    -kernel "$kernel" -initrd "$tmp/initrd" -append "console=ttyS0 panic=-1 quiet" \
    -nographic -no-reboot -nodefaults -serial stdio "$@" >"$log" 2>&1
}

# Once the guest has filled its memory and the daemon has had 3 s to evict,
# QEMU writes the guest's RAM out with dump-guest-memory (QMP): it reads
# every page through its own mapping, evicted ones through the daemon.
dump_guest() {
  i=0
  until grep -q "diffmem-guest: filled" "$tmp/qemu.log" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 1200 ] || return 1; sleep 0.1
  done
  sleep 3
  qemu_guest_qmp "$tmp/qmp" "dump-guest-memory {\"paging\": false, \"protocol\": \"file:$tmp/guest.core\"}"
}

# With the daemon.
sock=$tmp/sock
qemu_guest_daemon "$sock" "$tmp/daemon.log" --domain-by one --scan-ms 20 --scan-pages 100000
DIFFMEMD_SOCKET=$sock DIFFMEM_PRELOAD_DEBUG=1 run_qemu "$tmp/qemu.log" \
  -qmp "unix:$tmp/qmp,server=on,wait=off" &
qpid=$!
dump_guest >"$tmp/dump.log" 2>&1 &
dumper=$!
: >"$tmp/evicted"
while kill -0 $qpid 2>/dev/null; do
  "$diffmem" stat --socket "$sock" --json 2>/dev/null | python3 -c '
import json, sys
j = json.load(sys.stdin)
for v in j["vms"]:
    print(v["zero"] + v["shared"] + v["patched"] + v["compressed"] + v["swapped"])' \
    >>"$tmp/evicted" 2>/dev/null
  sleep 1
done
wait $qpid
rc=$?
[ $rc -eq 0 ] || fail "QEMU exited $rc"
grep -q "served by diffmemd" "$tmp/qemu.log" || fail "the preload client did not attach"
grep -q "diffmem-guest: ok0" "$tmp/qemu.log" || fail "the guest's checks: $(grep diffmem-guest "$tmp/qemu.log")"
fnv=$(qemu_guest_fnv)
grep -q "diffmem-guest: file fnv $fnv" "$tmp/qemu.log" ||
  fail "the file's checksum: $(grep 'file fnv' "$tmp/qemu.log"), want $fnv"
most=$(sort -n "$tmp/evicted" | tail -n 1)
[ "${most:-0}" -gt 1000 ] || fail "the daemon evicted at most ${most:-0} guest pages"
echo "ok: a TCG guest on unmodified QEMU, served by diffmemd: every check held; up to $most of its pages evicted"
# The dump holds the guest's pages, not zeros where the daemon had evicted:
# the init's 8192 unique pages (tests/guest_init.c, before its first
# rewrite, which changes 85 of them) are found in it by content.
wait $dumper || fail "dump-guest-memory: $(cat "$tmp/dump.log")"
found=$(python3 - "$tmp/guest.core" <<'PY'
import hashlib, struct, sys
PS, PAGES, M = 4096, 96 << 8, (1 << 64) - 1
def page(p):
    out = bytearray()
    for w in range(PS // 8):
        z = ((1000 + p) * 0x9e3779b97f4a7c15 & M) ^ (w * 0xbf58476d1ce4e5b9 & M)
        out += struct.pack("<Q", (z ^ (z >> 29)) & 0x0f0f0f0f0f0f0f0f)
    return hashlib.sha1(out).digest()
want = {page(p) for p in range(PAGES) if p % 3 == 2}
data = open(sys.argv[1], "rb").read()
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
seen = set()
for i in range(phnum):
    typ, _, off, _, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
    if typ != 1:  # PT_LOAD
        continue
    for o in range(off, off + filesz - PS + 1, PS):
        h = hashlib.sha1(data[o:o + PS]).digest()
        if h in want:
            seen.add(h)
print(len(seen))
PY
) || fail "reading the dump"
[ "$found" -ge 8100 ] || fail "the dump holds $found of the guest's 8192 unique pages"
echo "ok: dump-guest-memory while the daemon evicts: $found of the guest's 8192 unique pages in the dump"
kill -TERM "$dpid"; wait "$dpid"; dpid=

# Without a daemon: QEMU runs as before, and says so once.
DIFFMEMD_SOCKET=$tmp/nobody run_qemu "$tmp/qemu2.log" || fail "QEMU without a daemon"
grep -q "diffmem-guest: ok0" "$tmp/qemu2.log" || fail "the guest without a daemon"
[ "$(grep -c 'running without diffmemd' "$tmp/qemu2.log")" -eq 1 ] ||
  fail "without a daemon: $(grep -c 'running without diffmemd' "$tmp/qemu2.log") notices"
echo "ok: without a daemon QEMU runs as before and says so once"
