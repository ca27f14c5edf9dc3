#!/bin/sh
# SPDX-FileCopyrightText: 2026 The libdiffmem authors
# SPDX-License-Identifier: LGPL-2.1-or-later
# `make stress`: the long runs a release makes and CI does not. Each is a
# test of `make check` given ten times its operations or more:
#  - the randomized model over every configuration (tests/stress_model,
#    $DMEM_STRESS_OPS operations, default 10,000,000);
#  - the same model on the KVM adapter (memfd and userfaultfd) and on the
#    Xen adapter's simulated hypervisor, $DMEM_STRESS_OPS each;
#  - the KVM guest tests (real vCPUs) with 4 x $DMEM_STRESS_OPS operations
#    (10 times make check's), and the copy-on-write stress with
#    $DMEM_STRESS_OPS (10 times make check's).
# A test that cannot run here (no /dev/kvm, no userfaultfd, a build without
# the adapter) is skipped and said so. Prints each run's time; exits 1 when
# any run failed.
set -u
builddir=${builddir:-.}
ops=${DMEM_STRESS_OPS:-10000000}
case $ops in '' | *[!0-9]*) echo "stress: DMEM_STRESS_OPS=$ops is not a number"; exit 2 ;; esac
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-20}
failed=0

run() { # NAME ENVIRONMENT... -- PROGRAM ARGS...
  name=$1
  shift
  envs=
  while [ "$1" != -- ]; do envs="$envs $1"; shift; done
  shift
  if [ ! -x "$1" ]; then
    echo "stress: $name: skipped ($1 is not built here)"
    return
  fi
  t0=$(date +%s)
  # shellcheck disable=SC2086
  env $envs "$@" >"$builddir/stress-$name.log" 2>&1
  rc=$?
  t=$(($(date +%s) - t0))
  case $rc in
  0) echo "stress: $name: passed in $t s" ;;
  77) echo "stress: $name: skipped ($(tail -1 "$builddir/stress-$name.log"))" ;;
  *) echo "stress: $name: FAILED (exit $rc) in $t s; see stress-$name.log"; failed=1 ;;
  esac
}

echo "stress: $ops operations per model run"
run model -- "$builddir/tests/stress_model" "$ops"
run kvm-model DMEM_KVM_MODEL_OPS="$ops" -- "$builddir/tests/test_kvm_model"
run xen-model DMEM_XEN_MODEL_OPS="$ops" -- "$builddir/tests/test_xen"
run kvm-guest DMEM_KVM_OPS=$((ops * 4)) -- "$builddir/tests/test_kvm_guest"
run kvm-cow DMEM_COW_OPS="$ops" -- "$builddir/tests/test_kvm_cow"
exit $failed
