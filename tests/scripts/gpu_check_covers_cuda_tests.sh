#!/usr/bin/env bash
# scripts/gpu-check runs every CUDA test: each test source that includes tests/cuda_skip.h or is
# named *cuda_test.cc belongs to a target that `scripts/gpu-check --list-cuda-tests` lists, and
# each listed target is declared by some tests/*/CMakeLists.txt. A new CUDA test (say the bf16
# kernels' CUDA counterparts of the emulation tests) fails this until gpu-check runs it.
# usage: gpu_check_covers_cuda_tests.sh SOURCE_DIR
set -uo pipefail
cd "$1" || exit 2
fail=0
listed=$(scripts/gpu-check --list-cuda-tests) || { echo "FAIL: --list-cuda-tests failed"; exit 1; }

# The headroom_test / headroom_mpi_test calls of a CMakeLists, one a line.
calls() { tr '\n' ' ' <"$1" | grep -oE 'headroom_(mpi_)?test\([^)]*\)'; }

checked=0
while IFS= read -r src; do
  dir=$(dirname "$src")
  base=$(basename "$src")
  target=$(calls "$dir/CMakeLists.txt" | grep -E "[ (]$base( |\))" | head -1 |
    sed -E 's/^headroom_(mpi_)?test\(([A-Za-z0-9_]+).*/\2/')
  if [ -z "$target" ]; then
    echo "FAIL: $src: no headroom_test in $dir/CMakeLists.txt builds it"
    fail=1
  elif ! grep -qx "$target" <<<"$listed"; then
    echo "FAIL: $src is a CUDA test (target $target) that scripts/gpu-check does not run: add it to CUDA_TESTS there"
    fail=1
  else
    echo "ok   $src -> $target"
    checked=$((checked + 1))
  fi
done < <({
  grep -rlE '#include "tests/cuda_skip.h"' tests --include='*.cc'
  find tests -name '*cuda_test.cc'
} | sort -u)

while IFS= read -r target; do
  if ! cat tests/*/CMakeLists.txt | tr '\n' ' ' | grep -qE "headroom_(mpi_)?test\(${target}[ )]"; then
    echo "FAIL: scripts/gpu-check lists $target, which no tests/*/CMakeLists.txt declares"
    fail=1
  fi
done <<<"$listed"

[ "$checked" -gt 0 ] || { echo "FAIL: no CUDA test sources found"; fail=1; }
exit "$fail"
