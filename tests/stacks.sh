# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by tests/limit.sh and tests/daemon.sh: dmem_stacks PID prints
# where every thread of process PID waits (its kernel wait channel and
# stack, and gdb's backtrace where gdb is installed), for a hang's report.
dmem_stacks() {
  [ -d "/proc/$1" ] || return 0
  echo "-- pid $1: $(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)"
  for t in /proc/"$1"/task/*; do
    echo "   thread ${t##*/} ($(cat "$t/comm" 2>/dev/null)): $(cat "$t/wchan" 2>/dev/null)"
    sed 's/^/     /' "$t/stack" 2>/dev/null
  done
  if command -v gdb >/dev/null 2>&1; then
    timeout 30 gdb -p "$1" -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^(#|Thread)'
  fi
  return 0
}
