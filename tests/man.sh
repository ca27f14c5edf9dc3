#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# The man pages stay in step with the tool: every command `diffmem --help`
# lists has its section in diffmem(1), and every page formats without a
# warning (where groff is installed).
set -u
srcdir=${srcdir:-.}
builddir=${builddir:-.}
fail() { echo "man: FAIL: $*"; exit 1; }
diffmem=$builddir/diffmem
[ -x "$diffmem" ] || fail "$diffmem not built"
page=$srcdir/man/diffmem.1
[ -f "$page" ] || fail "no $page"
cmds=$("$diffmem" --help | sed -n 's/^  \([a-z][a-z]*\)  .*/\1/p')
[ -n "$cmds" ] || fail "diffmem --help lists no command"
for c in $cmds; do
  grep -q "^\.SS .*\b$c\b" "$page" || fail "diffmem(1) has no section for '$c'"
done
echo "ok: diffmem(1) covers: $(echo $cmds)"
if command -v groff >/dev/null 2>&1; then
  for p in "$srcdir"/man/*.[1358]; do
    out=$(groff -man -Tutf8 -ww -z "$p" 2>&1)
    [ -z "$out" ] || fail "$p: $out"
  done
  echo "ok: every page formats without a warning"
fi
