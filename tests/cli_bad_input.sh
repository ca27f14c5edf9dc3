#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# Bad inputs to the diffmem tool, each of which once hung, crashed or passed
# silently: a FIFO, an empty file, output to a full device, an option
# without its value, a negative seed. Each must end within seconds with a
# message naming the problem and an exit status from 1 to 127.
set -u

fail() { echo "cli_bad_input: FAIL: $*"; exit 1; }

builddir=${builddir:-.}
diffmem=$builddir/diffmem
[ -x "$diffmem" ] || fail "$diffmem not built"
tmp=$(mktemp -d /tmp/dmem-cli-bad.XXXXXX) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

# expect WHAT PATTERN -- COMMAND...: status 1..127 within 10 s, PATTERN on stderr.
expect() {
  what=$1 pattern=$2
  shift 3
  timeout 10 "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ $rc -ne 124 ] || fail "$what: hung (killed after 10 s)"
  [ $rc -ge 1 ] && [ $rc -le 127 ] || fail "$what: exit status $rc, want 1..127"
  grep -q -- "$pattern" "$tmp/err" || fail "$what: stderr lacks '$pattern': $(cat "$tmp/err")"
  echo "ok: $what (status $rc)"
}

mkfifo "$tmp/fifo" || fail "mkfifo"
: >"$tmp/empty"
head -c 1 /dev/zero >"$tmp/one"
head -c 8192 /dev/urandom >"$tmp/two.pages"

expect "analyze of a FIFO" "not a regular file" -- "$diffmem" analyze --no-progress "$tmp/fifo"
expect "bench codecs of a FIFO" "not a regular file" -- "$diffmem" bench codecs "$tmp/fifo"
expect "bench codecs of an empty file" "not a single whole" -- "$diffmem" bench codecs "$tmp/empty"
expect "bench codecs of a 1-byte file" "not a single whole" -- "$diffmem" bench codecs "$tmp/one"
expect "analyze of an empty file" "no pages" -- "$diffmem" analyze --no-progress "$tmp/empty"
# A 4 KiB sparse ELF core whose header claims 65534 program headers of
# 65535 bytes (4 GiB apparent): it once read for 24 s and took 4 GB of RSS.
python3 - "$tmp/sparse.core" <<'PY' || fail "cannot make the sparse core"
import struct, sys
e = bytearray(64)
e[0:4] = b'\x7fELF'; e[4] = 2; e[5] = 1; e[6] = 1
struct.pack_into('<HHI', e, 16, 4, 62, 1)
struct.pack_into('<Q', e, 32, 64)
struct.pack_into('<HHHHH', e, 52, 64, 65535, 65534, 64, 0)
with open(sys.argv[1], 'wb') as f:
    f.write(e)
    f.truncate(4 << 30)
PY
expect "analyze of a sparse core with a huge header" "e_phentsize" -- \
  "$diffmem" analyze --no-progress "$tmp/sparse.core"
if "$diffmem" probe >/dev/null 2>&1; then # (without KVM, demo stops before)
  expect "demo asking for more RAM than the machine has" "MiB available" -- \
    "$diffmem" demo --guests 64 --guest-mib 2048 --no-progress
fi
expect "bench --repeat without a value" "--repeat needs a value" -- "$diffmem" bench codecs --repeat
expect "analyze --seed -1" "non-zero number" -- "$diffmem" analyze --seed -1 "$tmp/two.pages"
expect "bench faults --scan-ms 0" "takes a number" -- "$diffmem" bench faults --scan-ms 0
expect "bench faults --scan-pages x" "takes a number" -- "$diffmem" bench faults --scan-pages x
if [ -w /dev/full ]; then
  for cmd in "--version" "--help" "help bench" "probe" "bench codecs --repeat 1 $tmp/two.pages" \
             "analyze --no-progress $tmp/two.pages"; do
    # shellcheck disable=SC2086
    timeout 60 "$diffmem" $cmd >/dev/full 2>"$tmp/err"
    rc=$?
    [ $rc -ge 1 ] && [ $rc -le 127 ] || fail "$cmd >/dev/full: exit status $rc, want 1..127"
    grep -q "cannot write\|write" "$tmp/err" || fail "$cmd >/dev/full: no message: $(cat "$tmp/err")"
    echo "ok: $cmd >/dev/full (status $rc)"
  done
fi

# The option conventions (getopt_long; diffmem(1)): --opt=value is
# --opt value, a prefix will do, options may follow the operands, "--"
# ends them, -V is --version; an option given a value it takes none of is
# a usage error (2).
"$diffmem" bench codecs --json --repeat=1 "$tmp/two.pages" >"$tmp/a.json" 2>/dev/null ||
  fail "--repeat=1 refused"
"$diffmem" bench codecs "$tmp/two.pages" --rep 1 --js >"$tmp/b.json" 2>/dev/null ||
  fail "options after the operand, or prefixes, refused"
python3 -c 'import json,sys; [json.load(open(f)) for f in sys.argv[1:]]' "$tmp/a.json" "$tmp/b.json" ||
  fail "--json=... or --js gave no JSON"
cp "$tmp/two.pages" "$tmp/--json"
abs=$(cd "$builddir" && pwd)/diffmem
(cd "$tmp" && "$abs" bench codecs -- --json) >"$tmp/c.out" 2>&1 || fail "-- then a file named --json"
grep -q '^{' "$tmp/c.out" && fail "after --, --json was taken as the option"
[ "$("$diffmem" -V)" = "$("$diffmem" --version)" ] || fail "-V is not --version"
"$diffmem" probe --json=yes >/dev/null 2>"$tmp/err"
[ $? -eq 2 ] && grep -q "takes no value" "$tmp/err" || fail "--json=yes: $(cat "$tmp/err")"
echo "ok: --opt=value, prefixes, options after operands, --, -V"
echo "cli_bad_input: ok"
