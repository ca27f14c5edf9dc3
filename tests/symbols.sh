#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# Lists the dynamic symbols each built shared library defines and fails on
# any that does not start with dmem_: our export surface is DMEM_API only.
# Each library's Debian symbols file (debian/PACKAGE.symbols) must list
# exactly the symbols it exports: a symbol added or removed without the
# file fails here, not later in a package build. (To bring a file up to
# date: dpkg-buildpackage, then dpkg-gensymbols -pPACKAGE -Pdebian/PACKAGE
# -vVERSION -Odebian/PACKAGE.symbols, with VERSION the first release that
# has the new symbols.)
set -u
builddir=${builddir:-.}
srcdir=${srcdir:-.}
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
  base=$(basename "$lib" .so)
  deb=$srcdir/debian/${base}0.symbols
  if [ -f "$deb" ]; then
    want=$(sed -n 's/^ \(dmem_[A-Za-z0-9_]*\)@Base .*/\1/p' "$deb" | sort)
    have=$(printf '%s\n' "$syms" | grep '^dmem_' | sort)
    if [ "$want" != "$have" ]; then
      echo "FAIL: debian/${base}0.symbols does not list what $(basename "$lib") exports:"
      printf '%s\n' "$want" >"${TMPDIR:-/tmp}/dmem-sym-want.$$"
      printf '%s\n' "$have" | diff "${TMPDIR:-/tmp}/dmem-sym-want.$$" - | sed -n 's/^[<>]/  &/p'
      rm -f "${TMPDIR:-/tmp}/dmem-sym-want.$$"
      fail=1
    else
      echo "ok: debian/${base}0.symbols lists the same $n symbols"
    fi
  fi
done
[ "$found" -gt 0 ] || { echo "FAIL: no shared library built under $builddir/.libs"; exit 1; }
exit $fail
