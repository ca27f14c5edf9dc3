#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# diffmem bench sidechannel as a user runs it, small: bad options are usage
# errors; the JSON has the documented shape, every mode, place and
# operation, with accuracies and KS statistics in range and latency
# quantiles in order. The figures themselves are the benchmark's (the
# README's "Security" section), not this test's: a shared machine's timing
# is no pass/fail criterion. Skips (77) without userfaultfd (root).
set -u

fail() { echo "bench_sidechannel: FAIL: $*"; exit 1; }
skip() { echo "bench_sidechannel: SKIP: $*"; exit 77; }

builddir=${builddir:-.}
diffmem=$builddir/diffmem
[ -x "$diffmem" ] || fail "$diffmem not built"
command -v python3 >/dev/null || skip "no python3"
tmp=$(mktemp -d /tmp/dmem-bench-sc.XXXXXX) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

"$diffmem" probe >/dev/null 2>&1 || skip "diffmem probe finds no usable KVM adapter here"
for bad in "--pairs 3" "--pairs x" "--seed -1" "--where moon" "--where" "--frob"; do
  # shellcheck disable=SC2086
  "$diffmem" bench sidechannel $bad >/dev/null 2>"$tmp/err"
  rc=$?
  [ $rc -eq 2 ] || fail "bench sidechannel $bad exited $rc, want 2"
  grep -q "diffmem bench" "$tmp/err" || fail "bench sidechannel $bad: no message: $(cat "$tmp/err")"
done

where=thread
[ -w /dev/kvm ] && where=both
"$diffmem" bench sidechannel --json --pairs 64 --where $where >"$tmp/out.json" 2>"$tmp/err" ||
  fail "bench sidechannel: $(cat "$tmp/err")"
python3 - "$tmp/out.json" "$where" <<'PY' || fail "JSON check: $(cat "$tmp/out.json")"
import json, sys
j = json.load(open(sys.argv[1]))
wheres = ["thread", "vcpu"] if sys.argv[2] == "both" else ["thread"]
def check(cond, what):
    if not cond:
        sys.exit("bad: " + what)
check(j["pairs"] == 64, "pairs")
runs = j["runs"]
seen = {(r["mode"], r["where"], r["op"], r["guess"]) for r in runs}
want = {(m, w, o, g) for m in ("default", "domains", "secure") for w in wheres
        for o in ("read", "write") for g in ("exact", "near")}
check(seen == want, "runs: %s" % sorted(seen ^ want))
for r in runs:
    check(0 <= r["accuracy"] <= 1, "accuracy %r" % r)
    check(0 <= r["ks"] <= 1 and 0 < r["ks_critical"] < 1, "ks %r" % r)
    for k in ("guess", "other"):
        d = r["latency"][k]
        check(0 < d["p10_us"] <= d["p50_us"] <= d["p90_us"], "latency %r" % r)
print("ok: %d runs" % len(runs))
PY
echo "ok: bench sidechannel --where $where"
