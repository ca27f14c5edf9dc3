#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# diffmem bench codecs as a user runs it: on page files built here (heap-like
# pages, and copies of them with pointers relocated, content moved, a few
# words changed), the JSON has the documented shape, every codec and every
# detector round-trips, the detectors find the copies; bad inputs fail with
# a message that names them.
set -u

fail() { echo "bench_cli: FAIL: $*"; exit 1; }

builddir=${builddir:-.}
diffmem=$builddir/diffmem
[ -x "$diffmem" ] || fail "$diffmem not built"
command -v python3 >/dev/null || { echo "bench_cli: SKIP: no python3"; exit 77; }
srcdir=${srcdir:-.}

# bench/qemu-boot and bench/qemu-ksm: bad usage is status 2 with a
# message, before anything runs.
for bad in "qemu-boot --rounds 0" "qemu-boot --mib 64" "qemu-boot --touch-mib 999999" \
  "qemu-boot --frob" "qemu-ksm --guests 0" "qemu-ksm --mib 4096" "qemu-ksm --kind odd" \
  "qemu-ksm --seconds 0" "qemu-ksm --frob"; do
  # shellcheck disable=SC2086
  set -- $bad
  script=$1
  shift
  "$srcdir/bench/$script" "$@" >/dev/null 2>"${TMPDIR:-/tmp}/dmem-qb.$$"
  rc=$?
  msg=$(cat "${TMPDIR:-/tmp}/dmem-qb.$$")
  rm -f "${TMPDIR:-/tmp}/dmem-qb.$$"
  [ $rc -eq 2 ] || fail "bench/$bad exited $rc, want 2"
  [ -n "$msg" ] || fail "bench/$bad: no message"
done

tmp=$(mktemp -d /tmp/dmem-bench-cli.XXXXXX) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

# a.pages: 48 heap-like pages, then each with its pointers relocated (48),
# then each with its content moved by 16 bytes (48). b.pages: each base page
# with three words changed (48), and two zero pages. zero.pages: zero pages
# only. short.pages: a page and 100 bytes.
python3 - "$tmp" <<'EOF'
import os, random, struct, sys
d = sys.argv[1]
rng = random.Random(7)
def heap_page(seed):
    r = random.Random(seed)
    words = []
    for _ in range(512):
        k = r.randrange(5)
        if k == 0:
            words.append(0)
        elif k == 1:
            words.append(r.randrange(1000))
        elif k == 2:
            words.append(0x00007f3a12340000 + 8 * r.randrange(4096))
        elif k == 3:
            words.append(0x000055d0a0000000 + 8 * r.randrange(1 << 20))
        else:
            words.append(struct.unpack("<Q", bytes(r.randrange(97, 123) for _ in range(8)))[0])
    return words
def pack(words):
    return struct.pack("<512Q", *words)
def relocate(words):
    out = []
    for w in words:
        if w >> 32 == 0x7f3a:
            w += 0x0000005c21000000
        elif w >> 32 == 0x55d0:
            w -= 0x0000002e00400000
        out.append(w)
    return out
base = [heap_page(s) for s in range(48)]
a = [pack(w) for w in base]
a += [pack(relocate(w)) for w in base]
a += [pack(w)[4096 - 16:] + pack(w)[:4096 - 16] for w in base]
b = []
for w in base:
    w = list(w)
    for k in range(3):
        w[rng.randrange(512)] ^= 0xdead0000 + k
    b.append(pack(w))
b += [b"\0" * 4096] * 2
open(os.path.join(d, "a.pages"), "wb").write(b"".join(a))
open(os.path.join(d, "b.pages"), "wb").write(b"".join(b))
open(os.path.join(d, "zero.pages"), "wb").write(b"\0" * 8192)
open(os.path.join(d, "short.pages"), "wb").write(a[0] + b"x" * 100)
EOF

"$diffmem" bench codecs --json --repeat 1 "$tmp/a.pages" "$tmp/b.pages" >"$tmp/out.json" \
  2>"$tmp/err" || fail "bench: $(cat "$tmp/err")"
codecs=$("$diffmem" --version | sed -n 's/^codecs://p')
python3 - "$tmp/out.json" "$codecs" <<'EOF' || fail "JSON check"
import json, sys
j = json.load(open(sys.argv[1]))
def check(cond, what):
    if not cond:
        print("bench_cli: " + what)
        sys.exit(1)
keys = ["name", "pages", "in_bytes", "out_bytes", "ratio", "compress_MBps", "decompress_MBps",
        "roundtrip_ok"]
names = [c["name"] for c in j["codecs"]]
for want in ["wkdm", "best", "default"] + (["lzo"] if "lzo" in sys.argv[2].split() else []):
    check(want in names, "codec %s missing from %s" % (want, names))
for c in j["codecs"]:
    for k in keys:
        check(k in c, "codec %s lacks %s" % (c.get("name"), k))
    check(c["pages"] == 192, "%s: %d pages, want 192 (zero pages left out)" % (c["name"], c["pages"]))
    check(c["in_bytes"] == 192 * 4096, "%s: in_bytes %d" % (c["name"], c["in_bytes"]))
    check(0 < c["out_bytes"] < c["in_bytes"], "%s: out_bytes %d" % (c["name"], c["out_bytes"]))
    check(c["roundtrip_ok"] is True, "%s: round trip failed" % c["name"])
best = [c for c in j["codecs"] if c["name"] == "best"][0]
for c in j["codecs"]:
    # zlib-1 (where built with zlib) is the yardstick, not one of ours.
    check(c["name"] == "zlib-1" or best["out_bytes"] <= c["out_bytes"],
          "best writes more than %s" % c["name"])
dkeys = ["detector", "pairs", "mean_patch_bytes", "encode_MBps", "decode_MBps", "roundtrip_ok"]
dets = [d["detector"] for d in j["delta"]]
check(dets == ["hash(2,1)", "hash(4,1)", "content(2,1)", "content(2,1)+lz"], "detectors %s" % dets)
for d in j["delta"]:
    for k in dkeys:
        check(k in d, "%s lacks %s" % (d["detector"], k))
    check(d["roundtrip_ok"] is True, "%s: round trip failed" % d["detector"])
    check(d["pairs"] == 0 or 0 < d["mean_patch_bytes"] <= 2048,
          "%s: mean patch %s" % (d["detector"], d["mean_patch_bytes"]))
by = {d["detector"]: d for d in j["delta"]}
# The paper's detector finds the copies with three words changed (its two
# sampled blocks seldom hold one), not the moved ones; the content-defined
# one finds those too.
check(by["hash(2,1)"]["pairs"] >= 40, "hash(2,1) found %d pairs" % by["hash(2,1)"]["pairs"])
check(by["content(2,1)"]["pairs"] >= 48, "content(2,1) found %d pairs" % by["content(2,1)"]["pairs"])
check(by["content(2,1)+lz"]["pairs"] >= by["content(2,1)"]["pairs"], "+lz found fewer pairs")
EOF

# The table names every codec and detector and says ok for each.
"$diffmem" bench codecs --repeat 1 "$tmp/a.pages" >"$tmp/table" 2>"$tmp/err" ||
  fail "table: $(cat "$tmp/err")"
for w in wkdm best "hash(2,1)" "content(2,1)+lz" $codecs; do
  grep -F -q -- "$w" "$tmp/table" || fail "table lacks $w"
done
grep -q FAILED "$tmp/table" && fail "table reports a failed round trip"

# Bad inputs: each fails (or warns) with a message that names it.
"$diffmem" bench codecs "$tmp/none.pages" >/dev/null 2>"$tmp/err" && fail "missing file accepted"
grep -q "none.pages" "$tmp/err" || fail "missing file not named: $(cat "$tmp/err")"
"$diffmem" bench codecs "$tmp/zero.pages" >/dev/null 2>"$tmp/err" && fail "zero pages accepted"
grep -q "no non-zero pages" "$tmp/err" || fail "zero pages: $(cat "$tmp/err")"
"$diffmem" bench codecs --repeat 1 "$tmp/short.pages" >/dev/null 2>"$tmp/err" ||
  fail "short file: $(cat "$tmp/err")"
grep -q "short.pages.*trailing" "$tmp/err" || fail "trailing bytes not reported: $(cat "$tmp/err")"
"$diffmem" bench codecs --repeat 0 "$tmp/a.pages" >/dev/null 2>&1 && fail "--repeat 0 accepted"
"$diffmem" bench codecs --bogus "$tmp/a.pages" >/dev/null 2>&1 && fail "unknown option accepted"
"$diffmem" bench codecs >/dev/null 2>&1 && fail "no FILE accepted"
"$diffmem" bench nothing >/dev/null 2>&1 && fail "unknown bench accepted"
echo "bench_cli: ok"
exit 0
