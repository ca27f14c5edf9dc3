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
[ "$(id -u)" -eq 0 ] || skip "needs root (userfaultfd on another process's memory)"
qemu=$(command -v qemu-system-x86_64) || skip "no qemu-system-x86_64 (install qemu-system-x86)"
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] && [ -r "$kernel" ] || skip "no kernel in /boot (install linux-image-amd64)"
command -v cpio >/dev/null || skip "no cpio"
command -v python3 >/dev/null || skip "no python3"
preload=$builddir/.libs/libdiffmem-preload.so
[ -f "$preload" ] || fail "$preload not built"
# A sanitizer build's library needs its runtime loaded first, which an
# uninstrumented QEMU does not do.
if nm -D "$preload" 2>/dev/null | grep -q '__[at]san_'; then
  skip "the library is built with a sanitizer; LD_PRELOAD into QEMU needs a plain build"
fi
daemon=$builddir/diffmemd
diffmem=$builddir/diffmem
libs=$(cd "$builddir/.libs" && pwd)
cc=${CC:-cc}
cc=${cc%% *}

tmp=$(mktemp -d /tmp/dmem-qemu.XXXXXX) || fail "mktemp"
dpid=
cleanup() {
  [ -n "$dpid" ] && kill -TERM "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/root/dev" || fail "mkdir"
"$cc" -static -O2 -o "$tmp/root/init" "$srcdir/tests/guest_init.c" 2>"$tmp/cc.log" ||
  skip "cannot build a static init with $cc: $(head -n 3 "$tmp/cc.log")"
(cd "$tmp/root" && find . | cpio -o -H newc --quiet >"$tmp/initrd") || fail "cpio"

run_qemu() { # $1: log file; the environment says where the daemon is
  timeout 300 env LD_PRELOAD="$preload" LD_LIBRARY_PATH="$libs" "$qemu" -accel tcg -m 256 \
    -object memory-backend-memfd,id=mem,size=256M,share=on -machine pc,memory-backend=mem \
    -kernel "$kernel" -initrd "$tmp/initrd" -append "console=ttyS0 panic=-1 quiet" \
    -nographic -no-reboot -nodefaults -serial stdio >"$1" 2>&1
}

# With the daemon.
sock=$tmp/sock
"$daemon" --socket "$sock" --domain-by one --scan-ms 20 --scan-pages 100000 2>"$tmp/daemon.log" &
dpid=$!
i=0
while [ ! -S "$sock" ]; do
  kill -0 "$dpid" 2>/dev/null || { grep -q "userfaultfd is not available" "$tmp/daemon.log" &&
    skip "no userfaultfd"; fail "diffmemd: $(cat "$tmp/daemon.log")"; }
  i=$((i + 1)); [ $i -lt 100 ] || fail "diffmemd did not listen"; sleep 0.05
done
DIFFMEMD_SOCKET=$sock DIFFMEM_PRELOAD_DEBUG=1 run_qemu "$tmp/qemu.log" &
qpid=$!
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
most=$(sort -n "$tmp/evicted" | tail -n 1)
[ "${most:-0}" -gt 1000 ] || fail "the daemon evicted at most ${most:-0} guest pages"
echo "ok: a TCG guest on unmodified QEMU, served by diffmemd: every check held; up to $most of its pages evicted"
kill -TERM "$dpid"; wait "$dpid"; dpid=

# Without a daemon: QEMU runs as before, and says so once.
DIFFMEMD_SOCKET=$tmp/nobody run_qemu "$tmp/qemu2.log" || fail "QEMU without a daemon"
grep -q "diffmem-guest: ok0" "$tmp/qemu2.log" || fail "the guest without a daemon"
[ "$(grep -c 'running without diffmemd' "$tmp/qemu2.log")" -eq 1 ] ||
  fail "without a daemon: $(grep -c 'running without diffmemd' "$tmp/qemu2.log") notices"
echo "ok: without a daemon QEMU runs as before and says so once"
