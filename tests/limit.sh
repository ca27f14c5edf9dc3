#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs one test of `make check` ("$@") with a time limit, so that a test
# that hangs fails on its own, with a report of where it hangs, instead of
# holding up the whole suite (and CI) until something outside kills it.
#
# The limit is $DMEM_TEST_TIMEOUT seconds (default 1200: the slowest test,
# a QEMU boot under TCG, takes a few minutes). The test runs in a session of
# its own; at the limit every process of that session is reported (its
# command line, and for each thread the kernel's wait channel and stack,
# plus a gdb backtrace where gdb is), then killed, and the test is a hard
# error (99). Otherwise its own status passes through (0, 77 skip, ...).
set -u
limit=${DMEM_TEST_TIMEOUT:-1200}
case $limit in '' | *[!0-9]*) echo "limit.sh: DMEM_TEST_TIMEOUT=$limit is not a number of seconds"; exit 99 ;; esac
[ $# -gt 0 ] || { echo "usage: limit.sh TEST [ARG...]"; exit 99; }

# A background child of a shell without job control is no group leader, so
# setsid makes it a session leader in place: $! is the session's id.
setsid "$@" &
pid=$!
trap 'kill -TERM -- "-$pid" 2>/dev/null' INT TERM HUP

# The processes of the test's session, the test first.
members() {
  for d in /proc/[0-9]*; do
    s=$(cut -d' ' -f6 "$d/stat" 2>/dev/null) || continue
    [ "$s" = "$pid" ] && echo "${d#/proc/}"
  done
}

. "$(dirname "$0")/stacks.sh"

report() {
  echo "limit.sh: $1 still runs after $limit s (DMEM_TEST_TIMEOUT); where its processes wait:"
  for p in $(members); do
    dmem_stacks "$p"
  done
}

t=0
while kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
  if [ "$t" -ge $((limit * 5)) ]; then
    report "$1"
    kill -KILL -- "-$pid" 2>/dev/null
    for p in $(members); do kill -KILL "$p" 2>/dev/null; done
    wait "$pid" 2>/dev/null
    exit 99
  fi
  sleep 0.2
  t=$((t + 1))
done
wait "$pid"
