#!/bin/bash
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# The bash completion (data/completion/) against the programs built here:
# every command completes, every option of every command's usage (and of
# each bench subcommand's, and diffmemd's) completes from its prefix, and
# the values it knows (codecs, detectors) complete.
set -u
srcdir=${srcdir:-.}
PATH=$PWD:$PATH
fail() { echo "completion: FAIL: $*"; exit 1; }
command -v diffmem >/dev/null || fail "no diffmem built here"
# shellcheck source=/dev/null
. "$srcdir/data/completion/diffmem" || fail "the script does not load"
comp() { # comp WORD... : COMPREPLY for the last word, one line
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  if [ "$1" = diffmemd ]; then _diffmemd; else _diffmem; fi
  echo " ${COMPREPLY[*]} "
}
has() { # has WANT WORD...
  local want=$1
  shift
  case $(comp "$@") in *" $want "*) ;; *) fail "'$*' does not offer $want: $(comp "$@")" ;; esac
}
n=0
cmds=$(diffmem help | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p')
[ -n "$cmds" ] || fail "no commands in diffmem help"
for c in $cmds; do
  has "$c" diffmem "${c:0:2}"
  n=$((n + 1))
  [ "$c" = bench ] || [ "$c" = help ] || [ "$c" = version ] || {
    for o in $(diffmem "$c" --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
      has "$o" diffmem "$c" "${o:0:4}"
      n=$((n + 1))
    done
  }
done
for s in $(diffmem bench --help | sed -n 's/.*diffmem bench \([a-z]*\) .*/\1/p' | sort -u); do
  has "$s" diffmem bench "${s:0:1}"
  for o in $(diffmem bench --help | grep "diffmem bench $s " | grep -o -- '--[a-z][a-z0-9-]*'); do
    has "$o" diffmem bench "$s" "${o:0:4}"
    n=$((n + 1))
  done
done
has -V diffmem -
has lz4 diffmem analyze --codec l
has content diffmem analyze --detector c
if [ -x ./diffmemd ]; then
  # diffmemd's file loads diffmem's from beside it.
  (unset -f _diffmemd; . "$srcdir/data/completion/diffmemd" && declare -F _diffmemd >/dev/null) ||
    fail "data/completion/diffmemd does not give _diffmemd"
  for o in $(diffmemd --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
    has "$o" diffmemd "${o:0:5}"
    n=$((n + 1))
  done
  has vm diffmemd --domain-by v
fi
echo "completion: PASS ($n commands and options complete)"
