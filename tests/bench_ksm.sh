#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# diffmem bench ksm as a user runs it, on two small generated guests with
# KSM at a fast rate so that both sides merge within the run: the JSON has
# the documented shape, both sides save memory and verify every page, and
# KSM's settings are as they were afterwards, also after a SIGINT in the
# middle of the KSM run. Without root it fails, says why and changes
# nothing. It changes /sys/kernel/mm/ksm only while it runs, and puts back
# what it changed. Skips (77) without root, /dev/kvm or KSM.
set -u

fail() { echo "bench_ksm: FAIL: $*"; exit 1; }
skip() { echo "bench_ksm: SKIP: $*"; exit 77; }

builddir=${builddir:-.}
diffmem=$builddir/diffmem
ksm=/sys/kernel/mm/ksm
[ -x "$diffmem" ] || fail "$diffmem not built"
[ -e /dev/kvm ] || skip "no /dev/kvm"
[ -f $ksm/run ] || skip "no KSM here ($ksm/run)"
[ "$(id -u)" -eq 0 ] || skip "needs root to set KSM's rate"
command -v python3 >/dev/null || skip "no python3"
"$diffmem" probe >/dev/null 2>&1 || skip "diffmem probe finds no usable KVM adapter here"
tmp=$(mktemp -d /tmp/dmem-bench-ksm.XXXXXX) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

settings() { cat $ksm/run $ksm/pages_to_scan $ksm/sleep_millisecs | tr '\n' ' '; }
was=$(settings)

# Bad options are usage errors (2) and change nothing.
for bad in "--seconds 0" "--ksm-pages-to-scan x" "--ksm-sleep-ms -1" "--guests 65" "--frob"; do
  # shellcheck disable=SC2086
  "$diffmem" bench ksm $bad >/dev/null 2>"$tmp/err"
  rc=$?
  [ $rc -eq 2 ] || fail "bench ksm $bad exited $rc, want 2"
  grep -q "diffmem bench" "$tmp/err" || fail "bench ksm $bad: no message: $(cat "$tmp/err")"
done
[ "$(settings)" = "$was" ] || fail "a usage error changed KSM's settings: $was -> $(settings)"

# Without root: a clear refusal, status 1, nothing changed.
if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  setpriv --reuid=nobody --regid=nogroup --clear-groups "$diffmem" bench ksm --seconds 1 \
    >/dev/null 2>"$tmp/err"
  rc=$?
  [ $rc -eq 1 ] || fail "as nobody: exited $rc, want 1"
  grep -q "needs root" "$tmp/err" || fail "as nobody: $(cat "$tmp/err")"
  [ "$(settings)" = "$was" ] || fail "as nobody, KSM's settings changed: $was -> $(settings)"
fi

args="--guests 2 --guest-mib 8 --ksm-pages-to-scan 20000 --ksm-sleep-ms 10 --no-progress"
# shellcheck disable=SC2086
"$diffmem" bench ksm --json --seconds 4 $args >"$tmp/out.json" 2>"$tmp/err" ||
  fail "bench ksm: $(cat "$tmp/err")"
[ "$(settings)" = "$was" ] || fail "KSM's settings not restored: $was -> $(settings)"
# Under ThreadSanitizer the engine's memory includes its shadow (several
# times what it stores): the savings are not measured there.
tsan=0
nm -D "$builddir/.libs/libdiffmem.so" 2>/dev/null | grep -q '__tsan_' && tsan=1
python3 - "$tmp/out.json" $tsan <<'PY' || fail "JSON check: $(cat "$tmp/out.json")"
import json, sys
j = json.load(open(sys.argv[1]))
tsan = sys.argv[2] == "1"
def check(cond, what):
    if not cond:
        print("bench_ksm: " + what)
        sys.exit(1)
keys = ["saved_pct", "saved_mib", "cpu_s", "t50_s", "t90_s", "cpu_per_gib", "steady_cpu_pct",
        "guest_ops_per_s", "verify_mismatches"]
for side in ("ksm", "diffmem"):
    s = j[side]
    for k in keys:
        check(k in s, "%s lacks %s" % (side, k))
    check(s["verify_mismatches"] == 0, "%s: %d mismatching pages" % (side, s["verify_mismatches"]))
    check(s["pages_checked"] == 2 * 2048, "%s: %d pages checked" % (side, s["pages_checked"]))
    # Two guests built from the same files: both sides find the duplicates.
    # (KSM's pace also depends on other mergeable memory on the host, such
    # as a QEMU guest another test boots at the same time: it must save
    # something, and the engine a fair part.)
    if tsan and side == "diffmem":
        print("bench_ksm: note: the engine's savings are not checked under ThreadSanitizer")
    elif side == "diffmem" or s["saved_mib"] > 0:
        check(0 < s["saved_mib"] < s["before_mib"], "%s: saved %s of %s MiB" %
              (side, s["saved_mib"], s["before_mib"]))
        check(s["t50_s"] is not None and s["t90_s"] is not None and
              s["t50_s"] <= s["t90_s"] <= s["seconds"] + 0.5,
              "%s: t50 %s, t90 %s in %s s" % (side, s["t50_s"], s["t90_s"], s["seconds"]))
        check(s["cpu_per_gib"] is not None and s["cpu_per_gib"] >= 0,
              "%s: per GiB %s" % (side, s["cpu_per_gib"]))
    else:
        print("bench_ksm: note: KSM saved nothing in this short run (a busy host)")
    check(s["cpu_s"] >= 0, "%s: cpu %s" % (side, s["cpu_s"]))
    check(s["guest_ops_per_s"] > 0, "%s: no guest operations" % side)
check(j["ksm"]["full_scans"] >= 1, "KSM made no full scan during its run")
check(tsan or j["diffmem"]["saved_pct"] > 10,
      "the engine saved only %.1f%%" % j["diffmem"]["saved_pct"])
check(j["diffmem"]["cpu_s"] > 0, "the engine used no CPU")
check(j["none"]["guest_ops_per_s"] > 0 and j["none"]["verify_mismatches"] == 0, "none: %s" % j["none"])
r = j["ratio"]
if tsan:
    pass
elif j["ksm"]["saved_mib"] > 0:
    check(abs(r["saved"] - j["diffmem"]["saved_mib"] / j["ksm"]["saved_mib"]) < 0.01 * r["saved"],
          "ratio.saved %s" % r)
else:
    check(r["saved"] is None, "ratio.saved %s without KSM savings" % r)
check("cpu_per_gib" in r, "ratio lacks cpu_per_gib")
PY

# SIGINT in the middle of the KSM run (the second of three): status 1, a
# message, and the settings as they were.
# shellcheck disable=SC2086
"$diffmem" bench ksm --seconds 8 $args >/dev/null 2>"$tmp/err" &
pid=$!
i=0
while [ "$(cat $ksm/pages_to_scan)" != 20000 ] && [ $i -lt 300 ]; do
  sleep 0.1
  i=$((i + 1))
done
[ "$(cat $ksm/pages_to_scan)" = 20000 ] || { kill -INT $pid; wait $pid; fail "the KSM run never began"; }
sleep 1
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 1 ] || fail "after SIGINT: exited $rc, want 1 ($(cat "$tmp/err"))"
grep -q "interrupted" "$tmp/err" || fail "after SIGINT: $(cat "$tmp/err")"
[ "$(settings)" = "$was" ] || fail "after SIGINT, KSM's settings not restored: $was -> $(settings)"
echo "bench_ksm: ok (KSM settings $was kept)"
