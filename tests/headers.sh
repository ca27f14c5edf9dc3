#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# Compiles every public header on its own, once as C11 and once as C++11,
# with warnings as errors: a header must include what it uses and must
# not break a C++ user. Run by make check with CC, CXX, srcdir, builddir.
set -u
srcdir=${srcdir:-.}
builddir=${builddir:-.}
tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
fail=0
count=0
for h in "$srcdir"/include/diffmem/*.h "$builddir"/include/diffmem/*.h; do
  [ -f "$h" ] || continue
  name=diffmem/$(basename "$h")
  printf '#include <%s>\n#include <%s>\nint dmem_header_test_anchor;\n' "$name" "$name" >"$tmp/t.c"
  cp "$tmp/t.c" "$tmp/t.cpp"
  inc="-I$srcdir/include -I$builddir/include"
  if ! ${CC:-cc} -std=c11 -Wall -Wextra -Wpedantic -Werror $inc -c "$tmp/t.c" -o "$tmp/t.o" 2>"$tmp/err"; then
    echo "FAIL: $name does not compile alone as C11:"; cat "$tmp/err"; fail=1
  fi
  if ! ${CXX:-c++} -std=c++11 -Wall -Wextra -Wpedantic -Werror $inc -c "$tmp/t.cpp" -o "$tmp/t.o" 2>"$tmp/err"; then
    echo "FAIL: $name does not compile alone as C++11:"; cat "$tmp/err"; fail=1
  fi
  count=$((count + 1))
done
[ "$count" -gt 0 ] || { echo "FAIL: no public headers found"; exit 1; }
echo "checked $count public headers as C11 and C++11"
exit $fail
