# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by the tests that boot a real Linux guest on QEMU under the
# preload client (qemu_preload.sh, qemu_libvirt.sh), which define fail()
# and skip() first and set builddir and srcdir.

# qemu_guest_prereqs: sets qemu, kernel, preload, libs (its directory),
# daemon, diffmem and cc; skips the test without root, where any is
# missing, or where the build has a sanitizer.
qemu_guest_prereqs() {
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
  libs=$(cd "$builddir/.libs" && pwd)
  daemon=$builddir/diffmemd
  diffmem=$builddir/diffmem
  cc=${CC:-cc}
  cc=${cc%% *}
}

# qemu_guest_initrd DIR: DIR/initrd, with tests/guest_init.c as its init.
qemu_guest_initrd() {
  mkdir -p "$1/root/dev" || fail "mkdir"
  "$cc" -static -O2 -o "$1/root/init" "$srcdir/tests/guest_init.c" 2>"$1/cc.log" ||
    skip "cannot build a static init with $cc: $(head -n 3 "$1/cc.log")"
  (cd "$1/root" && find . | cpio -o -H newc --quiet >"$1/initrd") || fail "cpio"
}

# qemu_guest_daemon SOCKET LOG [OPTION...]: starts diffmemd in the
# background (its pid in dpid) and waits until it listens.
qemu_guest_daemon() {
  _sock=$1 _log=$2
  shift 2
  "$daemon" --socket "$_sock" "$@" 2>"$_log" &
  dpid=$!
  _i=0
  while [ ! -S "$_sock" ]; do
    kill -0 "$dpid" 2>/dev/null || { grep -q "userfaultfd is not available" "$_log" &&
      skip "no userfaultfd"; fail "diffmemd: $(cat "$_log")"; }
    _i=$((_i + 1))
    [ $_i -lt 100 ] || fail "diffmemd did not listen"
    sleep 0.05
  done
}

# qemu_guest_fnv: the FNV-1a 64 of the file tests/guest_init.c writes and
# reads back, in the hex its console line shows.
qemu_guest_fnv() {
  python3 -c '
h = 0xcbf29ce484222325
for i in range(2 << 20):
    h = ((h ^ ((((i * 2654435761) & 0xffffffff) >> 13 ^ i >> 12) & 0xff)) * 0x100000001b3) & (2**64 - 1)
print("%016x" % h)'
}

# qemu_guest_qmp SOCKET COMMAND...: runs QMP commands in order, each
# "name" or "name {json arguments}"; "wait-migrated" polls query-migrate
# until the migration completed. Fails (non-zero, with the error) on the
# first error.
qemu_guest_qmp() {
  python3 - "$@" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
def cmd(name, args):
    f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
json.loads(f.readline())  # the greeting
cmd("qmp_capabilities", {})
for c in sys.argv[2:]:
    name, _, args = c.partition(" ")
    if name == "wait-migrated":
        st = None
        for _ in range(1200):
            st = cmd("query-migrate", {})["return"].get("status")
            if st in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.1)
        if st != "completed":
            sys.exit("migration: %s" % st)
        continue
    r = cmd(name, json.loads(args) if args else {})
    if "error" in r:
        sys.exit("%s: %s" % (name, r["error"]))
PY
}
