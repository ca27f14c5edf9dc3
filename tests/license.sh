#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every file of the source tree says who holds its copyright and under which
# license it is shipped (SPDX lines, or .reuse/dep5 for files that cannot
# carry a comment), each license it names has its text under LICENSES/, and
# the top-level LICENSE is there. Where the REUSE tool is installed (Debian's
# package reuse), it checks the same against the REUSE specification.
# Needs the git checkout to list the files: skips (77) in a tarball, where
# the files are the ones this test passed on in the checkout. It checks
# the files git tracks (CI's clean clone: all of them).
set -u
srcdir=${srcdir:-.}
cd "$srcdir" || exit 1
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "SKIP: not a git checkout (a release tarball): nothing to list the files with"
  exit 77
fi
# The tags are spelt in two pieces, so that this script's own header is the
# only place where a license tool finds them.
ctag="SPDX-FileCopyright""Text"
ltag="SPDX-License""-Identifier"
fail=0
[ -f LICENSE ] || { echo "FAIL: no LICENSE at the top of the tree"; fail=1; }
# The files git tracks: a build directory made inside the tree (./b, say)
# holds generated files that carry no license of their own.
files=$(git ls-files --cached)
n=0
for f in $files; do
  case $f in
    LICENSE | LICENSES/* | .reuse/* | tests/fuzz/corpus/* | *.md | NEWS | debian/* | abi/*) continue ;;
  esac
  [ -f "$f" ] || continue
  n=$((n + 1))
  head -n 6 "$f" | grep -q "$ctag: " ||
    { echo "FAIL: $f: no $ctag line near its top"; fail=1; }
  id=$(head -n 6 "$f" | sed -n "s/.*$ltag: \([A-Za-z0-9.+-]*\).*/\1/p" | head -n 1)
  if [ -z "$id" ]; then
    echo "FAIL: $f: no $ltag line near its top"
    fail=1
  elif [ ! -f "LICENSES/$id.txt" ]; then
    echo "FAIL: $f: license $id has no text in LICENSES/"
    fail=1
  fi
done
echo "checked $n files"
if command -v reuse >/dev/null 2>&1; then
  # On a copy of the tracked files, as the loop above: in the checkout,
  # reuse lists what git ignores once, when it starts, so a test's .log or
  # .trs written by a parallel `make check` while it walks the tree counts
  # as a file without a license (it failed CI so once); and a file not yet
  # added would count too.
  snap=$(mktemp -d "${TMPDIR:-/tmp}/dmem-reuse.XXXXXX") || exit 99
  trap 'rm -rf "$snap"' EXIT
  git ls-files -z --cached | tar --null -T - -cf - | tar -xf - -C "$snap"
  out=$(reuse --root "$snap" lint 2>&1)
  if [ $? -eq 0 ]; then
    echo "ok: reuse lint"
  else
    printf '%s\n' "$out"
    echo "FAIL: reuse lint"
    fail=1
  fi
else
  echo "note: the reuse tool is not installed; the REUSE check was not run"
fi
exit $fail
