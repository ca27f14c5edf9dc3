#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# diffmemd end to end, with VMM processes (tests/daemon_vmm) that check
# every page they touch against a shadow copy:
#  - bad options are usage errors (2);
#  - two VMMs on one daemon share across processes, `diffmem stat --json`
#    shows both, and both verify every page, attached and after detach;
#  - a VMM without CAP_SYS_PTRACE attaches through /dev/userfaultfd;
#  - the preload client gives the guest back, every page in the memfd,
#    before its process passes the memfd on (vhost-user) or opens a
#    userfaultfd of its own (postcopy) (tests/preload_vmm);
#  - a VMM killed (SIGKILL) at 20 random moments is detached each time,
#    and the daemon ends with no VM, no storage and the descriptors it had;
#  - a malformed packet closes that connection only; an ATTACH of a memfd
#    that is not sealed against shrinking is refused with an error reply;
#  - the daemon stopped (SIGTERM) at 20 random moments of a VMM's run puts
#    every page back: the VMM runs on, verifies every page, and its detach
#    succeeds; the daemon exits 0 and removes its socket.
#  - the daemon killed (SIGKILL) at 20 random moments of a VMM's run: its
#    keeper puts every evicted page back, the VMM runs on and verifies
#    every page, its detach succeeds, and the keeper exits.
# Skips (77) without userfaultfd.
set -u

fail() { echo "daemon: FAIL: $*"; [ -f "$tmp/log" ] && tail -20 "$tmp/log"; exit 1; }
skip() { echo "daemon: SKIP: $*"; exit 77; }

. "${srcdir:-.}/tests/stacks.sh"

# Waits for child $1 at most $2 seconds and returns its status. A child
# still running then is reported (its threads, the daemon's and the
# keeper's), killed, and the test fails with $3.
reap() {
  i=0
  while [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -ge $(($2 * 20)) ]; then
      echo "daemon: $3: still running after $2 s; where the processes wait:"
      dmem_stacks "$1"
      [ -n "${dpid:-}" ] && [ "$dpid" != "$1" ] && dmem_stacks "$dpid"
      [ -n "${kpid:-}" ] && dmem_stacks "$kpid"
      kill -KILL "$1" 2>/dev/null
      wait "$1" 2>/dev/null
      fail "$3: hung"
    fi
    sleep 0.05
  done
  wait "$1"
}

builddir=${builddir:-.}
daemon=$builddir/diffmemd
vmm=$builddir/tests/daemon_vmm
diffmem=$builddir/diffmem
for p in "$daemon" "$vmm" "$diffmem"; do [ -x "$p" ] || fail "$p not built"; done
command -v python3 >/dev/null || skip "no python3"
tmp=$(mktemp -d /tmp/dmem-daemon.XXXXXX) || fail "mktemp"
dpid=
cleanup() {
  [ -n "$dpid" ] && kill -TERM "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
  pkill -KILL -f "$tmp/sock" 2>/dev/null
  [ -n "${kpid:-}" ] && kill -KILL "$kpid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
sock=$tmp/sock

for bad in "--frob" "--scan-ms 0" "--scan-ms=0" "--domain-by moon" "--socket-mode 9999" \
  "--max-vms" "--secure=maybe" "--frob=1"; do
  # shellcheck disable=SC2086
  "$daemon" $bad >/dev/null 2>"$tmp/err"
  rc=$?
  [ $rc -eq 2 ] || fail "diffmemd $bad exited $rc, want 2"
  grep -q "diffmemd" "$tmp/err" || fail "diffmemd $bad: no message"
done

# Starts a daemon and waits until it listens (its log says so; a stale
# socket of a killed daemon may still be there until then).
srcdir=${srcdir:-.}
# The config file: a bad line stops the daemon with its number; the
# example file parses; options after --config override it.
printf 'socket = %s/x.sock\nsecure = maybe\n' "$tmp" >"$tmp/bad.conf"
"$daemon" --config "$tmp/bad.conf" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 2 ] || fail "a bad config: exit $rc, want 2"
grep -q "line 2: secure" "$tmp/err" || fail "a bad config: $(cat "$tmp/err")"
printf 'socket = %s/conf.sock\nscan-ms = 20\nquiet = yes\n' "$tmp" >"$tmp/good.conf"
"$daemon" --config "$srcdir/data/diffmemd.conf" --config "$tmp/good.conf" --quiet \
  --scan-pages=1000 2>"$tmp/err" &
cpid=$!
i=0
while [ ! -S "$tmp/conf.sock" ]; do
  i=$((i + 1))
  kill -0 $cpid 2>/dev/null || { grep -q "userfaultfd is not available" "$tmp/err" &&
    skip "no userfaultfd here"; fail "the config's daemon: $(cat "$tmp/err")"; }
  [ $i -lt 100 ] || fail "the config's daemon did not listen at its socket"
  sleep 0.05
done
kill -TERM $cpid
reap $cpid 60 "the config's daemon on SIGTERM" || fail "the config's daemon did not stop cleanly"
echo "ok: diffmemd.conf: the example parses, a bad line is refused with its number"

# The systemd unit, where systemd-analyze is (with the man pages it cites).
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$tmp/man/man5" "$tmp/man/man8"
  cp "$srcdir/man/diffmemd.8" "$tmp/man/man8/"
  cp "$srcdir/man/diffmemd.conf.5" "$tmp/man/man5/"
  real=$daemon
  [ -x "$builddir/.libs/diffmemd" ] && real=$builddir/.libs/diffmemd
  sed -e "s|@sbindir@/diffmemd|$(cd "$(dirname "$real")" && pwd)/$(basename "$real")|" \
    -e "s|@sysconfdir@|$tmp|" "$srcdir/data/diffmemd.service.in" >"$tmp/diffmemd.service"
  MANPATH=$tmp/man systemd-analyze verify "$tmp/diffmemd.service" >"$tmp/err" 2>&1 ||
    fail "systemd-analyze verify: $(cat "$tmp/err")"
  echo "ok: diffmemd.service passes systemd-analyze verify"
fi

start_daemon() {
  : >>"$tmp/log"
  n0=$(grep -c "listening on" "$tmp/log")
  "$daemon" --socket "$sock" --domain-by one --scan-ms 20 --scan-pages 100000 "$@" 2>>"$tmp/log" &
  dpid=$!
  i=0
  while [ "$(grep -c "listening on" "$tmp/log")" -le "${n0:-0}" ]; do
    if ! kill -0 "$dpid" 2>/dev/null; then
      wait "$dpid"
      rc=$?
      dpid=
      grep -q "userfaultfd is not available" "$tmp/log" && skip "no userfaultfd here"
      fail "diffmemd exited $rc at start"
    fi
    i=$((i + 1))
    [ $i -lt 100 ] || fail "diffmemd did not listen within 5 s"
    sleep 0.05
  done
}

stop_daemon() {
  kill -TERM "$dpid" || fail "no daemon to stop"
  reap "$dpid" 60 "the daemon on SIGTERM"
  rc=$?
  dpid=
  [ $rc -eq 0 ] || fail "diffmemd exited $rc on SIGTERM"
  [ ! -e "$sock" ] || fail "diffmemd left its socket behind"
}

nfds() { ls "/proc/$dpid/fd" | wc -l; }

# The daemon's descriptors come back to $base (a client's hang-up is seen
# at the daemon's next poll, so allow it a moment); $1 names the step.
fds_settle() {
  i=0
  while [ "$(nfds)" -ne "$base" ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "descriptors: $base at start, $(nfds) $1: $(ls -l "/proc/$dpid/fd" | sed 's/.* [0-9]* -> /  /')"
    sleep 0.05
  done
}

# Waits until the VMM writing to $tmp/vs says it attached; $1 names the step.
wait_attached() {
  i=0
  until grep -q attached "$tmp/vs" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "$1: the VMM did not attach: $(cat "$tmp/vs")"
    sleep 0.05
  done
}

# VMs the daemon serves now, from diffmem stat --json.
vms() {
  "$diffmem" stat --socket "$sock" --json >"$tmp/stat.json" || fail "diffmem stat failed"
  python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["vms"]))' "$tmp/stat.json"
}

# A random delay in seconds, 0.1 to 1.5, from a seeded sequence.
seed=1
delay() {
  seed=$(( (seed * 1103515245 + 12345) % 2147483648 ))
  awk -v s="$seed" 'BEGIN { printf "%.2f", 0.1 + (s % 1400) / 1000 }'
}

start_daemon
base=$(nfds)

# Two VMMs at once, sharing across processes.
"$vmm" "$sock" 2048 4 1 >"$tmp/v1" 2>&1 &
v1=$!
"$vmm" "$sock" 2048 4 2 >"$tmp/v2" 2>&1 &
v2=$!
sleep 2.5
"$diffmem" stat --socket "$sock" --json >"$tmp/stat.json" || fail "diffmem stat"
python3 - "$tmp/stat.json" <<'PY' || fail "stat: $(cat "$tmp/stat.json")"
import json, sys
j = json.load(open(sys.argv[1]))
t, vms = j["total"], j["vms"]
assert len(vms) == 2, "want 2 VMs"
assert t["pages"] == 4096, t
assert all(v["shared"] > 0 and v["zero"] > 0 and v["domain"] == vms[0]["domain"] for v in vms), vms
assert t["bytes_saved"] > 0 and t["faults"] > 0, t
assert len({v["pid"] for v in vms}) == 2, "two processes"
# Read-hot shared pages are mapped copy-on-write in each VMM (its agent).
assert all(v["mapped"] > 0 for v in vms), vms
print(t["mapped"])
PY
mapped=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"]["mapped"])' "$tmp/stat.json")
reap $v1 120 "VMM 1" || fail "VMM 1: $(cat "$tmp/v1")"
reap $v2 120 "VMM 2" || fail "VMM 2: $(cat "$tmp/v2")"
echo "ok: two VMM processes on one daemon, $mapped pages mapped copy-on-write: $(tail -1 "$tmp/v1")"
[ "$(vms)" -eq 0 ] || fail "VMs left after both detached"

# Agents slower than the daemon waits (--agent-timeout-ms 1, and VMM 1
# stopped for 50 ms of every 100, as a debugger or a cgroup freezer stops
# it): a request to put a mapped page back that times out leaves the page
# mapped with its frame kept, nothing more is asked of that agent until it
# answers, and the late answer completes the request. Every page is
# verified, attached, after detach and in the memfd, and nothing hangs.
stop_daemon
start_daemon --agent-timeout-ms 1
"$vmm" "$sock" 2048 4 3 >"$tmp/v1" 2>&1 &
v1=$!
"$vmm" "$sock" 2048 4 4 >"$tmp/v2" 2>&1 &
v2=$!
(
  while kill -STOP $v1 2>/dev/null; do
    sleep 0.05
    kill -CONT $v1 2>/dev/null
    sleep 0.05
  done
) &
stopper=$!
reap $v1 120 "slow agents: VMM 1" || fail "slow agents: VMM 1: $(cat "$tmp/v1")"
wait $stopper
reap $v2 120 "slow agents: VMM 2" || fail "slow agents: VMM 2: $(cat "$tmp/v2")"
late=$(sed -n 's/.* \([0-9]*\) requests to its agent unanswered in time.*/\1/p' "$tmp/log" | tail -2 |
  awk '{ n += $1 } END { print n + 0 }')
[ "$late" -gt 0 ] || fail "slow agents: no request timed out: nothing was tried"
echo "ok: agents slower than the daemon waits ($late requests unanswered in time): $(tail -1 "$tmp/v1")"
stop_daemon
start_daemon

# A VMM without CAP_SYS_PTRACE (as libvirt runs QEMU, capabilities
# cleared): where the system call refuses it, the client opens its
# userfaultfd through /dev/userfaultfd, which its file mode governs.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && [ -c /dev/userfaultfd ] &&
  [ "$(uname -m)" = x86_64 ] && [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 0 ]; then
  noptrace() { setpriv --bounding-set=-sys_ptrace --inh-caps=-sys_ptrace -- "$@"; }
  noptrace python3 -c 'import ctypes, sys
sys.exit(0 if ctypes.CDLL(None).syscall(323, 0o2000000) < 0 else 1)' ||
    fail "the userfaultfd system call works without CAP_SYS_PTRACE: nothing to test"
  noptrace "$vmm" "$sock" 1024 2 5 >"$tmp/vp" 2>&1 &
  reap $! 120 "VMM without CAP_SYS_PTRACE" || fail "VMM without CAP_SYS_PTRACE: $(cat "$tmp/vp")"
  echo "ok: a VMM without CAP_SYS_PTRACE attaches through /dev/userfaultfd: $(tail -1 "$tmp/vp")"
else
  echo "daemon: the VMM without CAP_SYS_PTRACE is not tried here (needs root, setpriv, /dev/userfaultfd, x86-64 and vm.unprivileged_userfaultfd=0)"
fi

# The preload client takes the guest back before QEMU hands its RAM to
# another process (vhost-user) or opens a userfaultfd of its own (postcopy).
preload=$builddir/.libs/libdiffmem-preload.so
# A sanitizer build (its runtime's symbols are in the libraries).
sanitized=0
nm -D "$preload" 2>/dev/null | grep -q '__[at]san_' && sanitized=1
if [ $sanitized -eq 1 ]; then
  echo "daemon: the preload client is not tried in a sanitizer build"
else
  libs=$(cd "$builddir/.libs" && pwd)
  for how in sendmsg userfaultfd; do
    LD_PRELOAD="$libs/libdiffmem-preload.so" LD_LIBRARY_PATH="$libs" DIFFMEMD_SOCKET="$sock" \
      DIFFMEM_PRELOAD_DEBUG=1 "$builddir/tests/preload_vmm" "$how" >"$tmp/pv" 2>&1 &
    reap $! 120 "preload_vmm $how" || fail "preload_vmm $how: $(cat "$tmp/pv")"
    grep -q "served by diffmemd" "$tmp/pv" || fail "preload_vmm $how did not attach: $(cat "$tmp/pv")"
    grep -q "left to QEMU alone" "$tmp/pv" || fail "preload_vmm $how: no give-up: $(cat "$tmp/pv")"
    echo "$(grep '^ok' "$tmp/pv"); $(sed -n 's/^libdiffmem-preload: \(.*\); guest RAM.*/\1/p' "$tmp/pv")"
  done
  [ "$(vms)" -eq 0 ] || fail "VMs left after the preload client gave up"
fi

# VMMs killed at random moments.
for k in $(seq 20); do
  "$vmm" "$sock" 1024 30 $((10 + k)) >"$tmp/vk" 2>&1 &
  vp=$!
  sleep "$(delay)"
  kill -KILL $vp
  wait $vp 2>/dev/null
  i=0
  while [ "$(vms)" -ne 0 ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "kill $k: the killed VMM's VM still attached after 5 s"
    sleep 0.05
  done
done
python3 - "$tmp/stat.json" <<'PY' || fail "after the kills: $(cat "$tmp/stat.json")"
import json, sys
t = json.load(open(sys.argv[1]))["total"]
assert t["pages"] == 0 and t["store_bytes"] == 0, t
PY
fds_settle "after 20 killed VMMs"
echo "ok: 20 VMMs killed at random moments, each detached; no storage or descriptor left"

# Hostile packets: garbage closes that connection; an unsealed memfd is refused.
python3 - "$sock" <<'PY' || fail "hostile packets"
import os, socket, struct, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(path)
s.send(b"junk that is no message")
s.settimeout(5)
assert s.recv(65536) == b"", "the daemon kept a connection that sent garbage"
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(path)
fd = os.memfd_create("unsealed")
os.ftruncate(fd, 1 << 20)
payload = struct.pack("=QQQQII48s", 1 << 20, 0, 1 << 30, 1, 0, 0, b"hostile")
hdr = struct.pack("=IHHII", 0x444d4d44, 1, 1, len(payload), 7)
socket.send_fds(s, [hdr + payload], [fd, fd])
s.settimeout(5)
r = s.recv(65536)
magic, ver, typ, length, seq = struct.unpack("=IHHII", r[:16])
code = struct.unpack("=i", r[16:20])[0]
assert typ == 0xff and seq == 7 and code < 0, (typ, seq, code)
assert b"F_SEAL_SHRINK" in r, r
PY
[ "$(vms)" -eq 0 ] || fail "VMs after the hostile packets"
fds_settle "after the hostile packets"
echo "ok: garbage closes its connection; an unsealed memfd is refused"
stop_daemon

# The daemon stopped at random moments: every VMM runs on and verifies.
for k in $(seq 20); do
  start_daemon
  "$vmm" "$sock" 1024 2 $((50 + k)) --survive >"$tmp/vs" 2>&1 &
  vp=$!
  wait_attached "stop $k"
  sleep "$(delay)"
  stop_daemon
  reap $vp 120 "stop $k" || fail "stop $k: the VMM after the daemon stopped: $(cat "$tmp/vs")"
done
echo "ok: the daemon stopped 20 times at random moments; every VMM verified every page"

# The daemon killed at random moments: its keeper puts every page back.
alive() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# The keeper killed on its own: the daemon starts a new one at once, and
# that one puts the pages back when the daemon dies in turn.
start_daemon
kpid=$(sed -n 's/.*keeper pid \([0-9]*\).*/\1/p' "$tmp/log" | tail -1)
"$vmm" "$sock" 1024 3 77 --survive >"$tmp/vs" 2>&1 &
vp=$!
wait_attached "keeper kill"
kill -KILL "$kpid"
i=0
until grep -q "a new one (pid" "$tmp/log"; do
  i=$((i + 1))
  [ $i -lt 100 ] || fail "the daemon did not start a new keeper"
  sleep 0.05
done
kpid=$(sed -n 's/.*a new one (pid \([0-9]*\)).*/\1/p' "$tmp/log" | tail -1)
sleep 0.5
kill -KILL "$dpid"
wait "$dpid" 2>/dev/null
dpid=
reap $vp 120 "keeper kill" || fail "keeper kill: the VMM after the daemon died: $(cat "$tmp/vs")"
echo "ok: a keeper killed alone is replaced at once, and the new one saves the pages"

for k in $(seq 20); do
  start_daemon
  kpid=$(sed -n 's/.*keeper pid \([0-9]*\).*/\1/p' "$tmp/log" | tail -1)
  [ -n "$kpid" ] && alive "$kpid" || fail "kill $k: no keeper"
  "$vmm" "$sock" 1024 2 $((80 + k)) --survive >"$tmp/vs" 2>&1 &
  vp=$!
  wait_attached "kill $k"
  sleep "$(delay)"
  kill -KILL "$dpid"
  wait "$dpid" 2>/dev/null
  dpid=
  reap $vp 120 "daemon kill $k" || fail "daemon kill $k: the VMM after the daemon died: $(cat "$tmp/vs")"
  i=0
  while alive "$kpid"; do
    i=$((i + 1))
    [ $i -lt 200 ] || fail "kill $k: the keeper did not exit"
    sleep 0.05
  done
done
grep -q "pages put back, 0 lost" "$tmp/log" || fail "the keeper never put a page back"
if grep "pages put back" "$tmp/log" | grep -qv " 0 lost"; then
  fail "the keeper lost pages: $(grep 'put back' "$tmp/log" | grep -v ' 0 lost')"
fi
echo "ok: the daemon killed 20 times at random moments; its keeper put back $(grep -c 'put back' "$tmp/log") VMs' pages, every VMM verified every page"

# diffmem demo --processes (KVM guests, each in its own process, on a
# daemon the demo starts) and diffmem bench faults, small: they run, verify
# and say so in the documented JSON.
if [ -w /dev/kvm ]; then
  "$diffmem" demo --processes --seconds 3 --guests 2 --guest-mib 8 --json >"$tmp/demo.json" \
    2>"$tmp/err" || fail "demo --processes: $(cat "$tmp/err")"
  python3 - "$tmp/demo.json" $sanitized <<'PY' || fail "demo --processes: $(cat "$tmp/demo.json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["processes"] is True and j["guests"] == 2, j
assert j["verify_mismatches"] == 0 and j["sum_mismatches"] == 0 and j["pages_checked"] > 0, j
assert j["faults"] > 0, j
# A sanitizer's shadow memory counts in the engine's anonymous memory:
# there, only the guests' memfds are held to shrinking.
if sys.argv[2] == "1":
    assert j["memfd_after_kb"] < j["memfd_before_kb"], j
else:
    assert j["rss_after_kb"] < j["rss_before_kb"], j
PY
  echo "ok: diffmem demo --processes: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("saved %.1f%%, %d pages checked" % (j["saved_pct"], j["pages_checked"]))' "$tmp/demo.json")"
fi
"$diffmem" bench faults --pages 256 --rounds 1 --json >"$tmp/faults.json" 2>"$tmp/err" ||
  fail "bench faults: $(cat "$tmp/err")"
python3 - "$tmp/faults.json" <<'PY' || fail "bench faults: $(cat "$tmp/faults.json")"
import json, sys
j = json.load(open(sys.argv[1]))
for side in ("in_process", "daemon"):
    d = j[side]
    assert 0 < d["p50_us"] <= d["p90_us"] <= d["p99_us"], j
assert j["mismatches"] == 0 and j["ratio_p50"] > 0 and j["ratio_p99"] > 0, j
assert j["scan_ms"] == 100 and j["scan_pages"] == 4096, j
PY
echo "ok: diffmem bench faults"
