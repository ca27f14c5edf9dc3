#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# diffmem analyze as a user runs it: exact figures on raw images built
# here, the table, JSON and SVG agreeing, a live process, the default input,
# and bad inputs failing with a message that names them.
set -u

fail() { echo "analyze_cli: FAIL: $*"; exit 1; }

builddir=${builddir:-.}
srcdir=${srcdir:-.}
diffmem=$builddir/diffmem
[ -x "$diffmem" ] || fail "$diffmem not built"
command -v python3 >/dev/null || { echo "analyze_cli: SKIP: no python3"; exit 77; }
tmp=$(mktemp -d /tmp/dmem-analyze-cli.XXXXXX) || fail "mktemp"
sleeper=
cleanup() {
  [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# a.img: 4 x page A, 2 zero pages, 2 distinct pages (8 pages, 4 contents:
# 4 saved within). b.img: 2 x page A, 1 zero page, 1 distinct page (4 pages,
# 3 contents: 1 saved within, and A and zero across). The set: 12 pages, 5
# contents, 7 saved; without zero pages 9 pages, 4 contents, 5 saved.
python3 - "$tmp" <<'EOF'
import os, sys
d = sys.argv[1]
A = b"A" * 4096
Z = b"\0" * 4096
def distinct(i):
    return bytes((i * 131 + j * 7919 + (j >> 8) * 17) & 0xff for j in range(4096))
open(os.path.join(d, "a.img"), "wb").write(A * 4 + Z * 2 + distinct(1) + distinct(2))
open(os.path.join(d, "b.img"), "wb").write(A * 2 + Z + distinct(3))
open(os.path.join(d, "short.img"), "wb").write(A + b"x" * 100)
EOF

"$diffmem" analyze --json --svg "$tmp/chart.svg" "$tmp/a.img" "$tmp/b.img" >"$tmp/out.json" \
  2>"$tmp/err" || fail "analyze: $(cat "$tmp/err")"
[ -s "$tmp/err" ] && fail "stderr not empty (no progress bar off a terminal): $(cat "$tmp/err")"
"$diffmem" analyze "$tmp/a.img" "$tmp/b.img" >"$tmp/out.txt" 2>"$tmp/err" ||
  fail "analyze (table): $(cat "$tmp/err")"

python3 - "$tmp/out.json" "$tmp/out.txt" "$tmp/chart.svg" <<'EOF' || fail "figures (above)"
import json, re, sys
import xml.etree.ElementTree as ET
j = json.load(open(sys.argv[1]))
table = open(sys.argv[2]).read()
svg = ET.parse(sys.argv[3]).getroot()
ok = True
def check(cond, what):
    global ok
    if not cond:
        print("check failed:", what); ok = False
def eq(a, b, what):
    check(a == b, "%s: %r != %r" % (what, a, b))
eq(j["schema"], 1, "schema")
eq(j["total_pages"], 12, "total_pages")
eq(j["zero_pages"], 3, "zero_pages")
eq(j["distinct_pages"], 5, "distinct_pages")
eq(j["pages_saved_sharing"], 7, "pages_saved_sharing")
eq(j["pages_saved_sharing_within"], 5, "within")
eq(j["pages_saved_sharing_across"], 2, "across")
a, b = j["inputs"]
eq((a["total_pages"], a["distinct_pages"], a["pages_saved_sharing"]), (8, 4, 4), "a.img")
eq((b["total_pages"], b["distinct_pages"], b["pages_saved_sharing"]), (4, 3, 3), "b.img")
eq((b["pages_saved_sharing_within"], b["pages_saved_sharing_across"]), (1, 2), "b.img split")
eq(a["pages_saved_sharing"] + b["pages_saved_sharing"], j["pages_saved_sharing"], "rows add up")
eq(j["bytes_saved"]["sharing"], 7 * 4096, "bytes_saved.sharing")
check(abs(j["percent_saved"]["sharing"] - 700 / 12) < 1e-3, "percent_saved.sharing")
eq(j["nonzero"]["total_pages"], 9, "nonzero pages")
eq(j["nonzero"]["pages_saved_sharing"], 5, "nonzero saved")
check(abs(j["percent_saved_nonzero"]["sharing"] - 500 / 9) < 1e-3, "percent_saved_nonzero.sharing")
# The table's set rows and the SVG's bars say the same as the JSON.
rows = re.findall(r"all inputs\s+(\d+)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%", table)
eq(len(rows), 2, "two views in the table")
bars = {g.get("data-view"): g for g in svg.iter("{http://www.w3.org/2000/svg}g")
        if g.get("data-row") == "all inputs"}
for row, key, view in ((rows[0], "percent_saved", "all"), (rows[1], "percent_saved_nonzero", "nonzero")):
    p = j[key]
    g = bars.get(view)
    check(g is not None, "SVG bar for " + view)
    for col, k, attr in ((2, "sharing", "data-sharing"), (5, "sharing_patching", "data-sharing-patching"),
                         (6, "total", "data-total")):
        eq(row[col], "%.1f" % p[k], "table %s %s vs JSON" % (view, k))
        if g is not None:
            eq(g.get(attr), row[col], "SVG %s %s vs table" % (view, attr))
eq(int(rows[0][0]), j["total_pages"], "table pages")
sys.exit(0 if ok else 1)
EOF

# Bad inputs: exit 1 and a message that names the input (and the offset).
expect_fail() { # expect_fail WHAT TEXT ARGS...
  what=$1 text=$2
  shift 2
  "$diffmem" analyze --no-progress "$@" >/dev/null 2>"$tmp/err"
  rc=$?
  [ $rc -eq 1 ] || fail "$what: exit $rc, want 1 ($(cat "$tmp/err"))"
  grep -qF -- "$text" "$tmp/err" || fail "$what: '$text' not in: $(cat "$tmp/err")"
  echo "analyze_cli: $what: $(head -n 1 "$tmp/err")"
}
expect_fail "missing file" "$tmp/nope: cannot open" "$tmp/a.img" "$tmp/nope"
expect_fail "truncated raw" "$tmp/short.img: truncated raw image" "$tmp/short.img"
expect_fail "truncated raw offset" "100 stray bytes at offset 4096" "$tmp/short.img"
expect_fail "truncated core" "bad-truncated-segment: malformed ELF core at offset 176" \
  "$srcdir/tests/fuzz/corpus/elf/bad-truncated-segment"
expect_fail "bad pid" "pid:abc: not a process id" pid:abc
sleep 60 &
sleeper=$!
kill "$sleeper"
wait "$sleeper" 2>/dev/null
expect_fail "dead pid" "pid:$sleeper: no such process" "pid:$sleeper"
sleeper=
"$diffmem" analyze --bogus >/dev/null 2>&1
[ $? -eq 2 ] || fail "an unknown option is a usage error (exit 2)"

# A file name that is not UTF-8 (Latin-1 "café"): the JSON is valid UTF-8
# all the same, the byte being the character of its value.
cp "$tmp/a.img" "$tmp/caf$(printf '\351').img"
"$diffmem" analyze --json "$tmp/caf$(printf '\351').img" >"$tmp/latin1.json" 2>"$tmp/err" ||
  fail "a Latin-1 file name: $(cat "$tmp/err")"
python3 - "$tmp/latin1.json" <<'EOF' || fail "JSON of a Latin-1 file name (above)"
import json, sys
raw = open(sys.argv[1], "rb").read()
j = json.loads(raw.decode("utf-8"))  # strict: fails on a stray byte
names = [i["name"] for i in j["inputs"]]
assert names[0].endswith("caf\u00e9.img"), names
EOF
echo "ok: a file name that is not UTF-8 gives valid UTF-8 JSON"

# A live process, and the default input (this machine's processes).
sleep 60 &
sleeper=$!
"$diffmem" analyze --json "pid:$sleeper" >"$tmp/pid.json" 2>"$tmp/err" ||
  fail "pid:$sleeper: $(cat "$tmp/err")"
"$diffmem" analyze --json --writable "pid:$sleeper" >"$tmp/pidw.json" 2>"$tmp/err" ||
  fail "pid:$sleeper --writable: $(cat "$tmp/err")"
"$diffmem" analyze --json >"$tmp/default.json" 2>"$tmp/err" || fail "default: $(cat "$tmp/err")"
python3 - "$tmp/pid.json" "$tmp/pidw.json" "$tmp/default.json" <<'EOF' || fail "process figures"
import json, sys
p, w, d = (json.load(open(f)) for f in sys.argv[1:4])
assert p["inputs"][0]["kind"] == "pid" and p["total_pages"] > 0
assert 0 < w["total_pages"] < p["total_pages"], "writable mappings are fewer"
assert len(d["inputs"]) >= 1 and d["total_pages"] > 0
assert d["total_pages"] == sum(i["total_pages"] for i in d["inputs"])
assert d["pages_saved_sharing"] == sum(i["pages_saved_sharing"] for i in d["inputs"])
print("analyze_cli: pid: %d pages (%d writable); default: %d processes, %d pages, %.1f%% saved"
      % (p["total_pages"], w["total_pages"], len(d["inputs"]), d["total_pages"],
         d["percent_saved"]["total"]))
EOF
# Guest RAM mapped shared, as QEMU's memory-backend-memfd with share=on
# keeps it: the default survey reads it as one input of kind memfd, its
# resident pages only, without allocating a page of it (its holes stay
# holes: a hole may be a page diffmemd keeps elsewhere). Needs root
# (/proc/PID/map_files).
if [ "$(id -u)" -eq 0 ]; then
  python3 - "$tmp/blocks" <<'EOF' &
import mmap, os, sys, time
fd = os.memfd_create("dmem-test-ram")
n = 1024
os.ftruncate(fd, 2 * n * 4096)  # the second half stays holes
m = mmap.mmap(fd, 2 * n * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for i in range(n):
    m[i * 4096:(i + 1) * 4096] = bytes([65 + i % 4]) * 4096
for _ in range(600):
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write("%d\n" % os.fstat(fd).st_blocks)
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.1)
EOF
  sleeper=$!
  i=0
  until [ -s "$tmp/blocks" ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "the memfd process did not start"
    sleep 0.1
  done
  before=$(cat "$tmp/blocks")
  "$diffmem" analyze --no-progress --json >"$tmp/host.json" 2>"$tmp/err" ||
    fail "default survey with a shared memfd: $(cat "$tmp/err")"
  sleep 0.3
  after=$(cat "$tmp/blocks")
  [ "$before" = "$after" ] || fail "the survey allocated memfd blocks: $before -> $after"
  python3 - "$tmp/host.json" "$sleeper" <<'EOF' || fail "the shared memfd input (above)"
import json, os, sys
j = json.load(open(sys.argv[1]))
mine = [i for i in j["inputs"] if i["kind"] == "memfd" and "dmem-test-ram" in i["name"]
        and "pid %s," % sys.argv[2] in i["name"]]
assert len(mine) == 1, [i["name"] for i in j["inputs"] if i["kind"] == "memfd"]
m = mine[0]
assert m["total_pages"] == 1024, m["total_pages"]       # resident pages, not the holes
assert m["pages_saved_sharing"] == 1020, m["pages_saved_sharing"]  # 4 contents
assert m["ksm_pages"] == 0
assert j["memfd_bytes"] >= 1024 * 4096
k = j["ksm"]
assert k["present"] == os.path.exists("/sys/kernel/mm/ksm/run")
assert k["bytes_saved"] == min(k["pages_sharing"], k["merging_pages"]) * 4096
assert j["bytes_saved_beyond_ksm"] == max(0, j["bytes_saved_total"] - k["bytes_saved"])
print("analyze_cli: shared memfd: %d pages, %d saved by sharing; KSM run=%d saves %d MiB"
      % (m["total_pages"], m["pages_saved_sharing"], k["run"], k["bytes_saved"] >> 20))
EOF
  kill "$sleeper" 2>/dev/null
  wait "$sleeper" 2>/dev/null
  sleeper=
fi

# --svg at a name where a symlink was planted: the symlink is replaced by
# the chart, the file it pointed to stays as it was.
printf 'precious\n' >"$tmp/victim"
chmod 644 "$tmp/victim"
ln -s "$tmp/victim" "$tmp/planted.svg"
"$diffmem" analyze --no-progress --svg "$tmp/planted.svg" "$tmp/a.img" >/dev/null 2>"$tmp/err" ||
  fail "analyze --svg over a symlink: $(cat "$tmp/err")"
[ "$(cat "$tmp/victim")" = precious ] || fail "--svg wrote through a planted symlink"
[ ! -L "$tmp/planted.svg" ] && grep -q "<svg" "$tmp/planted.svg" || fail "--svg left no chart"
ls "$tmp"/planted.svg.* >/dev/null 2>&1 && fail "--svg left a temporary file"
echo "analyze_cli: PASS"
