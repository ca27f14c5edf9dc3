#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# The libraries' ABI against the baseline committed in abi/ (abidw's XML of
# the last release, and the libtool -version-info each was built with).
#
#   tests/abi.sh check SRCDIR BUILDDIR NAME=CURRENT:REVISION:AGE...
#   tests/abi.sh dump  SRCDIR BUILDDIR NAME=CURRENT:REVISION:AGE...
#
# `make abi-check` and `make abi-baseline` call it with the libraries this
# build made. check: for each library, abidiff compares the baseline with
# BUILDDIR/.libs/NAME.so, types limited to the public headers. An
# incompatible change (abidiff's bit 8: a struct's layout, a function's
# type, a symbol removed) fails, unless the library's -version-info is not
# the baseline's any more: the change then comes with its bump, and the
# baseline is made again at the release (dump). abidiff flags only removed
# symbols as incompatible (its bit 8); any other type change is its bit 4,
# so its report is read as well:
#  - a symbol removed, a member moved, deleted or retyped, an enumerator's
#    value changed: incompatible, the soname (CURRENT - AGE) must change;
#  - a type changed otherwise (a field appended to a versioned struct):
#    the -version-info must change (CURRENT+1 and AGE+1 when compatible);
#  - symbols added, nothing changed: passes (the bump comes at the release). Exit 0, 1 (an ABI
# broken), 2 (usage, or a tool failed), 77 (abigail-tools missing, or a
# library without debug information: nothing to compare).
set -u
mode=${1:-}
src=${2:-}
build=${3:-}
[ "$mode" = check ] || [ "$mode" = dump ] || {
  echo "usage: tests/abi.sh check|dump SRCDIR BUILDDIR NAME=CURRENT:REVISION:AGE..." >&2
  exit 2
}
[ -n "$src" ] && [ -n "$build" ] && [ $# -gt 3 ] || {
  echo "tests/abi.sh: SRCDIR, BUILDDIR and at least one library are needed" >&2
  exit 2
}
shift 3
for tool in abidw abidiff; do
  command -v $tool >/dev/null 2>&1 || {
    echo "SKIP: $tool is not installed (Debian: abigail-tools)"
    exit 77
  }
done
# The public headers: the source tree's and the generated version.h.
hd="--headers-dir $src/include/diffmem --headers-dir $build/include/diffmem"
# The soname's number of a -version-info: CURRENT - AGE.
major() { echo $((${1%%:*} - ${1##*:})); }
fail=0
for spec in "$@"; do
  name=${spec%%=*}
  ver=${spec#*=}
  lib=$build/.libs/$name.so
  base=$src/abi/$name.abi
  [ -f "$lib" ] || { echo "tests/abi.sh: $lib was not built" >&2; exit 2; }
  if ! readelf -S "$lib" | grep -q '\.debug_info'; then
    echo "SKIP: $lib has no debug information (build with -g)"
    exit 77
  fi
  # The library must carry the soname of its -version-info.
  soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  if [ "$soname" != "$name.so.$(major "$ver")" ]; then
    echo "tests/abi.sh: $lib is $soname, not built with -version-info $ver" >&2
    exit 2
  fi
  if [ "$mode" = dump ]; then
    mkdir -p "$src/abi"
    abidw $hd --drop-private-types --no-corpus-path --no-comp-dir-path "$lib" >"$base.tmp" ||
      { rm -f "$base.tmp"; echo "tests/abi.sh: abidw failed on $lib" >&2; exit 2; }
    mv "$base.tmp" "$base"
    echo "$ver" >"$src/abi/$name.version"
    echo "$name: baseline written ($base, -version-info $ver)"
    continue
  fi
  [ -f "$base" ] || { echo "FAIL: $name: no baseline $base (make abi-baseline)"; fail=1; continue; }
  was=$(cat "$src/abi/$name.version" 2>/dev/null)
  out=$(abidiff --drop-private-types --headers-dir2 "$src/include/diffmem" \
    --headers-dir2 "$build/include/diffmem" "$base" "$lib" 2>&1)
  rc=$?
  if [ $((rc & 3)) -ne 0 ]; then
    printf '%s\n' "$out"
    echo "tests/abi.sh: abidiff failed on $name (status $rc)" >&2
    exit 2
  fi
  changed=$(printf '%s\n' "$out" | sed -n 's/.*changes summary: [0-9]* Removed, \([0-9]*\) Changed.*/\1/p' |
    awk '{ n += $1 } END { print n + 0 }')
  if [ $((rc & 8)) -ne 0 ] ||
    printf '%s\n' "$out" | grep -Eq '(^|[^0-9])[1-9][0-9]* Removed|offset changed|data member deletion|type changed|value changed|[0-9]+ Removed enumerator'; then
    printf '%s\n' "$out"
    if [ "$(major "$ver")" != "$(major "$was")" ]; then
      echo "ok: $name: incompatible with the baseline, and the soname went from .$(major "$was") to .$(major "$ver") with it"
    else
      echo "FAIL: $name: an incompatible ABI change (a symbol removed, a member moved or retyped),"
      echo "  and -version-info $ver keeps the soname: CURRENT+1, REVISION 0 and AGE 0 in"
      echo "  configure.ac in the same commit, or undo the change"
      fail=1
    fi
  elif [ "$changed" -gt 0 ]; then
    printf '%s\n' "$out"
    if [ "$ver" != "$was" ]; then
      echo "ok: $name: a type grew at its end (compatible where the struct is versioned), -version-info $was to $ver"
    else
      echo "FAIL: $name: a type the headers declare changed, and -version-info is still $ver:"
      echo "  a field appended to a versioned struct is CURRENT+1 and AGE+1; anything else, a new soname"
      fail=1
    fi
  elif [ $((rc & 4)) -ne 0 ]; then
    printf '%s\n' "$out"
    echo "ok: $name: only additions to the baseline (CURRENT and AGE go up at the release)"
  else
    echo "ok: $name: the same ABI as the baseline (-version-info $was)"
  fi
done
exit $fail
