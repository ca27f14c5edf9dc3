#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# diffmem analyze against a real libvirt domain: boots Debian's kernel with
# an initramfs whose init (a tiny static C program built here) fills memory
# with pages whose sharing is known, under QEMU TCG (type='qemu', so no
# /dev/kvm needed) as a transient libvirt domain, then
#  - analyzes it with --connect qemu:///system --domain NAME --json and
#    checks the figures (pages == memory size / 4096, the known duplicates
#    found, percentages in range and in order, table agreeing with JSON);
#  - dumps it with `virsh dump --memory-only` and analyzes the QEMU core;
#  - asks for an unknown domain, which must fail and name it.
# Starts virtlogd and libvirtd when they are not running (as root). Exits 77
# (skip) and says why when libvirt, QEMU, a kernel or root is missing.
set -u

skip() { echo "analyze_libvirt: SKIP: $*"; exit 77; }
fail() { echo "analyze_libvirt: FAIL: $*"; exit 1; }

builddir=${builddir:-.}
srcdir=${srcdir:-.}
diffmem=$builddir/diffmem
uri=qemu:///system
mem_mib=160
[ -x "$diffmem" ] || skip "$diffmem not built"
if "$diffmem" analyze --no-progress --connect "$uri" --domain x 2>&1 | grep -q "without libvirt"; then
  skip "diffmem was built without libvirt (install libvirt-dev)"
fi
[ "$(id -u)" -eq 0 ] || skip "needs root to reach qemu:///system and start libvirtd"
command -v virsh >/dev/null || skip "no virsh (install libvirt-clients)"
qemu=$(command -v qemu-system-x86_64) || skip "no qemu-system-x86_64 (install qemu-system-x86)"
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
[ -n "$kernel" ] && [ -r "$kernel" ] || skip "no kernel in /boot (install linux-image-amd64)"
command -v cpio >/dev/null || skip "no cpio (install cpio)"
command -v python3 >/dev/null || skip "no python3"
cc=${CC:-cc}
cc=${cc%% *}

. "$srcdir/tests/libvirtd.sh"
libvirt_up "$uri"

tmp=$(mktemp -d /tmp/dmem-libvirt.XXXXXX) || fail "mktemp"
chmod 755 "$tmp" # QEMU runs as another user and reads the kernel from here
name=dmem-analyze-$$
cleanup() {
  virsh -c "$uri" destroy "$name" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# The guest's init: 2048 copies of one page, 1024 zero pages and 1024
# distinct pages, touched so that they exist, then it says so and waits.
cat >"$tmp/init.c" <<'EOF'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void)
{
  enum { PS = 4096, SAME = 2048, ZERO = 1024, DIFF = 1024 };
  uint8_t *m = malloc((size_t)(SAME + ZERO + DIFF + 1) * PS);
  if (!m)
    return 1;
  m = (uint8_t *)(((uintptr_t)m + PS - 1) & ~(uintptr_t)(PS - 1));
  for (size_t i = 0; i < SAME; i++)
    memset(m + i * PS, 0x5a, PS);
  memset(m + (size_t)SAME * PS, 0, (size_t)ZERO * PS);
  for (size_t i = 0; i < DIFF; i++)
    for (size_t j = 0; j < PS; j += 8)
      memcpy(m + (size_t)(SAME + ZERO + i) * PS + j, &(uint64_t){i * 0x9e3779b97f4a7c15ull + j}, 8);
  printf("diffmem-guest-ready\n");
  fflush(stdout);
  for (;;)
    pause();
}
EOF
mkdir -p "$tmp/root/dev" || fail "mkdir"
"$cc" -static -O2 -o "$tmp/root/init" "$tmp/init.c" 2>"$tmp/cc.log" ||
  skip "cannot build a static init with $cc (needs libc6-dev): $(head -n 3 "$tmp/cc.log")"
(cd "$tmp/root" && find . | cpio -o -H newc --quiet >"$tmp/initrd") || fail "cpio"
cp "$kernel" "$tmp/vmlinuz" || fail "cannot copy $kernel"
chmod 644 "$tmp/vmlinuz" "$tmp/initrd"

cat >"$tmp/domain.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>$mem_mib</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$tmp/vmlinuz</kernel>
    <initrd>$tmp/initrd</initrd>
    <cmdline>console=ttyS0 rdinit=/init panic=-1 quiet</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$qemu</emulator>
    <serial type='file'><source path='$tmp/console.log'/><target port='0'/></serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
virsh -c "$uri" create "$tmp/domain.xml" >"$tmp/create.log" 2>&1 ||
  skip "libvirt cannot start a QEMU domain here: $(tr '\n' ' ' <"$tmp/create.log")"

# TCG boots the kernel in a few seconds to a minute.
ready=no
for i in $(seq 1 300); do
  if grep -q diffmem-guest-ready "$tmp/console.log" 2>/dev/null; then
    ready=yes
    break
  fi
  virsh -c "$uri" domstate "$name" 2>/dev/null | grep -q running || break
  sleep 0.5
done
[ $ready = yes ] || {
  tail -n 20 "$tmp/console.log" 2>/dev/null
  fail "the guest did not reach its init (console above)"
}
echo "analyze_libvirt: guest $name is up ($mem_mib MiB, TCG)"

start=$(date +%s)
"$diffmem" analyze --no-progress --connect "$uri" --domain "$name" --json >"$tmp/peek.json" \
  2>"$tmp/peek.err" || fail "analyze --domain: $(cat "$tmp/peek.err")"
"$diffmem" analyze --no-progress --connect "$uri" --domain "$name" >"$tmp/peek.txt" \
  2>"$tmp/peek.err" || fail "analyze --domain (table): $(cat "$tmp/peek.err")"
echo "analyze_libvirt: two reads of the domain took $(( $(date +%s) - start )) s"
cat "$tmp/peek.txt"

# Figures: every page read, the init's duplicates found, figures in order.
python3 - "$tmp/peek.json" "$tmp/peek.txt" "$mem_mib" <<'EOF' || fail "figures (above)"
import json, re, sys
j = json.load(open(sys.argv[1]))
table = open(sys.argv[2]).read()
pages = int(sys.argv[3]) * 1024 * 1024 // 4096
ok = True
def check(cond, what):
    global ok
    if not cond:
        print("check failed:", what); ok = False
check(j["total_pages"] == pages, "total_pages %d == %d" % (j["total_pages"], pages))
check(len(j["inputs"]) == 1 and j["inputs"][0]["kind"] == "libvirt", "one libvirt input")
# The init made 2047 duplicates of one page and 1023 of the zero page (at least).
check(j["pages_saved_sharing"] >= 2047 + 1023, "pages_saved_sharing %d >= 3070" % j["pages_saved_sharing"])
check(j["zero_pages"] >= 1024, "zero_pages >= 1024")
check(j["pages_saved_sharing"] == j["total_pages"] - j["distinct_pages"], "saved == total - distinct")
for key in ("percent_saved", "percent_saved_nonzero"):
    p = j[key]
    check(0 <= p["sharing"] <= p["sharing_patching"] <= p["total"] <= 100, key + " in order")
check(abs(j["bytes_saved"]["sharing"] - 4096 * j["pages_saved_sharing"]) == 0, "bytes_saved.sharing")
# The table's set row shows the same figures (the guest runs, so allow drift
# between the two reads: a tenth of a percent).
row = re.search(r"all inputs\s+(\d+)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%", table)
check(row is not None, "table has the set's row")
if row:
    check(int(row.group(1)) == j["total_pages"], "table pages == JSON total_pages")
    for col, key in ((3, "sharing"), (6, "sharing_patching"), (7, "total")):
        check(abs(float(row.group(col)) - j["percent_saved"][key]) < 0.2, "table %s ~ JSON" % key)
sys.exit(0 if ok else 1)
EOF

# The same guest through a QEMU ELF core.
if virsh -c "$uri" dump --memory-only --format elf "$name" "$tmp/guest.core" >"$tmp/dump.log" 2>&1; then
  "$diffmem" analyze --no-progress --json "$tmp/guest.core" >"$tmp/core.json" 2>"$tmp/core.err" ||
    fail "analyze of the QEMU core: $(cat "$tmp/core.err")"
  python3 - "$tmp/core.json" "$mem_mib" <<'EOF' || fail "core figures (above)"
import json, sys
j = json.load(open(sys.argv[1]))
pages = int(sys.argv[2]) * 256
print("analyze_libvirt: QEMU core: %d pages, %.1f%% saved by sharing, %.1f%% in all"
      % (j["total_pages"], j["percent_saved"]["sharing"], j["percent_saved"]["total"]))
assert j["inputs"][0]["kind"] == "elf", "read as ELF"
assert pages - 1024 <= j["total_pages"] <= pages + 8192, "core holds the guest's RAM"
assert j["pages_saved_sharing"] >= 3070, "the init's duplicates"
EOF
else
  echo "analyze_libvirt: note: virsh dump --memory-only failed: $(cat "$tmp/dump.log")"
fi

# --connect alone: every running domain, this one among them (other
# domains of the host may run too).
"$diffmem" analyze --no-progress --connect "$uri" --json >"$tmp/all.json" 2>"$tmp/all.err" ||
  fail "analyze --connect alone: $(cat "$tmp/all.err")"
python3 - "$tmp/all.json" "$name" <<'EOF' || fail "--connect alone did not read $name (above)"
import json, sys
j = json.load(open(sys.argv[1]))
names = [i["name"] for i in j["inputs"]]
assert sys.argv[2] in names, names
EOF
echo "analyze_libvirt: --connect alone read the running domains"

# An unknown domain: non-zero exit, and the message names it.
if "$diffmem" analyze --no-progress --connect "$uri" --domain "no-such-$name" >/dev/null 2>"$tmp/bad.err"; then
  fail "an unknown domain succeeded"
fi
grep -q "no-such-$name" "$tmp/bad.err" || fail "the error does not name the domain: $(cat "$tmp/bad.err")"
echo "analyze_libvirt: unknown domain: $(cat "$tmp/bad.err")"
echo "analyze_libvirt: PASS"
