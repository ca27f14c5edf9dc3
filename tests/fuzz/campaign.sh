#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# A fuzz campaign: runs every libFuzzer target of a build configured with
# --enable-fuzzing (clang) for a number of executions, and prints one line
# per target: executions, executions per second, coverage (edges, features),
# corpus size, crashes and time.
#
#   tests/fuzz/campaign.sh [--runs N] [--seconds S] [--keep DIR] [--jobs J]
#                          [BUILDDIR [TARGET...]]
#
# BUILDDIR is the build tree (default .); TARGETs are names (codec delta elf
# proto conf roundtrip; default all). --runs: executions per target
# (default 10000000); --seconds: stop a target after S seconds whatever its
# count (default none). --jobs: targets run at once (default 1). Each target
# starts from the corpus in tests/fuzz/corpus/NAME and grows a scratch copy;
# --keep DIR keeps the grown corpora and any crash files under DIR/NAME
# (add the useful ones to the corpus by hand: make check replays it).
# Exit status: 0 when no target crashed, 1 when one did, 2 for a usage error.
set -u

usage() {
  echo "usage: campaign.sh [--runs N] [--seconds S] [--keep DIR] [--jobs J] [BUILDDIR [TARGET...]]" >&2
  exit 2
}
num() { case $2 in '' | *[!0-9]*) echo "campaign.sh: $1 wants a number, not '$2'" >&2; exit 2 ;; esac; }

runs=10000000 secs=0 keep= jobs=1
while [ $# -gt 0 ]; do
  case $1 in
  --runs) [ $# -ge 2 ] || usage; num --runs "$2"; runs=$2; shift 2 ;;
  --runs=*) runs=${1#*=}; num --runs "$runs"; shift ;;
  --seconds) [ $# -ge 2 ] || usage; num --seconds "$2"; secs=$2; shift 2 ;;
  --seconds=*) secs=${1#*=}; num --seconds "$secs"; shift ;;
  --keep) [ $# -ge 2 ] || usage; keep=$2; shift 2 ;;
  --keep=*) keep=${1#*=}; shift ;;
  --jobs) [ $# -ge 2 ] || usage; num --jobs "$2"; jobs=$2; shift 2 ;;
  --jobs=*) jobs=${1#*=}; num --jobs "$jobs"; shift ;;
  -h | --help) usage ;;
  --) shift; break ;;
  -*) echo "campaign.sh: unknown option $1" >&2; usage ;;
  *) break ;;
  esac
done
[ "$runs" -gt 0 ] && [ "$jobs" -gt 0 ] || { echo "campaign.sh: --runs and --jobs must be above 0" >&2; exit 2; }
build=${1:-.}
[ $# -gt 0 ] && shift
targets=${*:-codec delta elf proto conf roundtrip}
src=$(cd "$(dirname "$0")/../.." && pwd)

for t in $targets; do
  [ -x "$build/tests/fuzz/fuzz_$t" ] || {
    echo "campaign.sh: $build/tests/fuzz/fuzz_$t is not built (configure CC=clang --enable-fuzzing, then make tests/fuzz/fuzz_$t)" >&2
    exit 2
  }
  [ -d "$src/tests/fuzz/corpus/$t" ] || { echo "campaign.sh: no corpus for $t" >&2; exit 2; }
done

work=$(mktemp -d /tmp/dmem-campaign.XXXXXX) || exit 2
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# One target: fuzz_NAME over a copy of its corpus; its summary line into
# $work/NAME.line.
one() {
  t=$1 d=$work/$t
  mkdir -p "$d/corpus" "$d/crashes"
  cp "$src/tests/fuzz/corpus/$t"/* "$d/corpus/"
  set -- -runs="$runs" -print_final_stats=1 -artifact_prefix="$d/crashes/"
  [ "$secs" -gt 0 ] && set -- "$@" -max_total_time="$secs"
  t0=$(date +%s)
  "$build/tests/fuzz/fuzz_$t" "$@" "$d/corpus" >"$d/log" 2>&1
  rc=$?
  t1=$(date +%s)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$d/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$d/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$d/log" | tail -1 | awk '{print $2 "/" $4}')
  crashes=$(ls "$d/crashes" | wc -l)
  [ $rc -ne 0 ] && [ "$crashes" -eq 0 ] && crashes="exit $rc"
  printf '%-10s %12s %9s %13s %8s %8s %7s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
    "$(ls "$d/corpus" | wc -l)" "$crashes" "$((t1 - t0))" >"$d.line"
  if [ -n "$keep" ]; then
    mkdir -p "$keep/$t"
    cp -R "$d/corpus" "$d/crashes" "$d/log" "$keep/$t/"
  fi
}

printf '%-10s %12s %9s %13s %8s %8s %7s\n' target execs exec/s "cov edges/ft" corpus crashes seconds
n=0
for t in $targets; do
  one "$t" &
  n=$((n + 1))
  if [ "$n" -ge "$jobs" ]; then
    wait
    n=0
  fi
done
wait
bad=0
for t in $targets; do
  cat "$work/$t.line"
  if ! awk '{ if ($6 != "0") exit 1 }' "$work/$t.line"; then
    bad=1
    [ -n "$keep" ] || tail -30 "$work/$t/log" >&2
  fi
done
exit $bad
