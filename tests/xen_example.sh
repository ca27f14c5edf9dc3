#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# examples/xen_pager on a machine without Xen: it must say clearly that
# there is no Xen (naming the device it could not open) and exit with 2,
# not crash or hang. Skips (77) where Xen runs.
if [ -e /dev/xen/privcmd ] || [ -e /proc/xen/privcmd ]; then
  echo "SKIP: Xen is running here; this test checks the error without it"
  exit 77
fi
prog=${builddir:-.}/examples/xen_pager
out=$("$prog" 1 2>&1)
rc=$?
echo "$out"
[ "$rc" -eq 2 ] || { echo "FAIL: exit status $rc, want 2"; exit 1; }
case $out in
  *"cannot open /dev/xen/privcmd: No such file or directory"*) ;;
  *) echo "FAIL: the message does not name /dev/xen/privcmd"; exit 1 ;;
esac
"$prog" 0 >/dev/null 2>&1 && { echo "FAIL: dom0 accepted as a guest"; exit 1; }
"$prog" >/dev/null 2>&1 && { echo "FAIL: no domain id accepted"; exit 1; }
exit 0
