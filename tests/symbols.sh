#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# Lists the dynamic symbols each built shared library defines and fails on
# any that does not start with dmem_: our export surface is DMEM_API only.
set -u
builddir=${builddir:-.}
fail=0
found=0
for lib in "$builddir"/.libs/libdiffmem.so "$builddir"/.libs/libdiffmem-kvm.so \
           "$builddir"/.libs/libdiffmem-xen.so; do
  [ -f "$lib" ] || continue
  found=$((found + 1))
  syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }')
  n=$(printf '%s\n' "$syms" | grep -c '^dmem_')
  bad=$(printf '%s\n' "$syms" | grep -v '^dmem_' | grep -v '^$')
  if [ -n "$bad" ]; then
    echo "FAIL: $(basename "$lib") exports symbols outside dmem_:"
    printf '  %s\n' $bad
    fail=1
  elif [ "$n" -eq 0 ]; then
    echo "FAIL: $(basename "$lib") exports no dmem_ symbol at all"
    fail=1
  else
    echo "ok: $(basename "$lib") exports $n symbols, all dmem_"
  fi
done
[ "$found" -gt 0 ] || { echo "FAIL: no shared library built under $builddir/.libs"; exit 1; }
exit $fail
