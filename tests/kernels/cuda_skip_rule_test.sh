#!/usr/bin/env bash
# The rule of tests/cuda_skip.h, checked on a CUDA test binary: a CUDA test skips only where no
# GPU is present, fails where a driver is present but CUDA does not work, and fails instead of
# skipping under HEADROOM_REQUIRE_CUDA=1. The broken driver is a stand-in libcuda.so.1 that
# exports nothing (fake_libcuda.c), found first through LD_LIBRARY_PATH.
# usage: cuda_skip_rule_test.sh CUDA_TEST_BINARY FAKE_DRIVER_DIR
set -uo pipefail
bin=$1
fake=$2
filter='CudaOpsTest.ZeroSizesDoNothingAndEmptyGemmScalesC'
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$bin" --gtest_filter="$filter" 2>&1) || { echo "$out"; fail "plain run failed"; }
if grep -q '\[  SKIPPED \]' <<<"$out"; then
  grep -q 'no GPU: ' <<<"$out" || { echo "$out"; fail "a skip without its reason"; }
  out=$(HEADROOM_REQUIRE_CUDA=1 "$bin" --gtest_filter="$filter" 2>&1) &&
    { echo "$out"; fail "HEADROOM_REQUIRE_CUDA=1 without a GPU passed"; }
  grep -q 'HEADROOM_REQUIRE_CUDA is set but there is no GPU' <<<"$out" || { echo "$out"; fail "message"; }
  echo "ok   no GPU: skipped with the reason; HEADROOM_REQUIRE_CUDA=1 fails"
else
  echo "ok   a GPU is here: the test ran"
fi

out=$(LD_LIBRARY_PATH="$fake${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$bin" --gtest_filter="$filter" 2>&1) &&
  { echo "$out"; fail "a broken driver passed (skipped?)"; }
grep -q 'a CUDA driver is present but' <<<"$out" || { echo "$out"; fail "no 'driver present' message"; }
echo "ok   a driver that fails: the test fails, naming the CUDA error"
