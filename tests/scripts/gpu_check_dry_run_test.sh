#!/usr/bin/env bash
# scripts/gpu-check's plan, checked without a GPU through its dry run (GPU_CHECK_DRY_RUN=1: the
# control flow, the torch check and the target lists run for real, the commands are printed, each
# stage counts as taking its estimate). Against issue 15's item 7:
#  - order: tests, racecheck (then memcheck), profile, bench against eager, torch.compile;
#  - the 420-s budget holds everything but torch.compile, which runs only with 150 s left;
#  - only the targets it runs are built (never `all`), and each CUDA test binary is run;
#  - torch is checked before the build; without it one line says so and the PyTorch stages skip;
#  - the summary is written as stages end.
# usage: gpu_check_dry_run_test.sh SOURCE_DIR
set -uo pipefail
src=$1
# shellcheck source=tests/scripts/lib.sh
source "$(dirname "$0")/lib.sh"  # $tmp, fail
# Stand-ins for the python that has torch, and for one that has not.
printf '#!/bin/sh\necho "2.11.0 True"\n' >"$tmp/torch-python"
printf '#!/bin/sh\necho "ModuleNotFoundError: No module named torch" >&2\nexit 1\n' >"$tmp/bare-python"
chmod +x "$tmp/torch-python" "$tmp/bare-python"

# run NAME BUDGET PYTHON: a dry run into $tmp/NAME, its stdout in $tmp/NAME.txt; echoes the status.
run() {
  OUT=$tmp/$1 GPU_CHECK_LOGS=$tmp/$1-logs GPU_CHECK_DRY_RUN=1 GPU_CHECK_BUDGET=$2 GPU_CHECK_PYTHON=$3 GPU_CHECK_SKIP='' \
    GPU_CHECK_TRAIN='' GPU_CHECK_TRAIN_CMD='' "$src/scripts/gpu-check" >"$tmp/$1.txt" 2>&1
  echo $?
}
# The stage rows of a run's output: "NAME RESULT", one a line.
rows() { sed -nE 's/^\[gpu-check\] ([a-z]+) +([A-Z]+) .*/\1 \2/p' "$tmp/$1.txt"; }

rc=$(run roomy 600 "$tmp/torch-python")
[ "$rc" = 0 ] || { cat "$tmp/roomy.txt"; fail "a dry run with 600 s exited $rc"; }
want="env PASS
torch PASS
deps PASS
configure PASS
build PASS
tests PASS
racecheck PASS
memcheck PASS
profile PASS
bench PASS
compile PASS"
[ "$(rows roomy)" = "$want" ] || { cat "$tmp/roomy.txt"; fail "stages or order: $(rows roomy | tr '\n' ' ')"; }
echo "ok   600 s: every stage, in the order of issue 15 item 7, torch.compile last"

build=$(grep -A3 '^\[dry-run\] build' "$tmp/roomy.txt" | grep 'would run: cmake --build')
[ -n "$build" ] || fail "no build command"
grep -q -- '--target all\|--target  ' <<<"$build" && fail "builds everything: $build"
for t in headroom $("$src/scripts/gpu-check" --list-cuda-tests); do
  grep -qE -- "--target .*\\b$t\\b" <<<"$build" || fail "does not build $t: $build"
done
for t in $("$src/scripts/gpu-check" --list-cuda-tests | grep -v zero_cuda); do
  grep -qE "would run: \\S*/$t --gtest_filter" "$tmp/roomy.txt" || fail "does not run $t"
done
grep -q "would run: ctest .*trainer_zero_cuda_test_mpi_np2" "$tmp/roomy.txt" || fail "no ZeRO-1 CUDA ctest"
echo "ok   builds headroom and the CUDA test targets only, and runs each"

grep -q "would run: $tmp/torch-python bench/gpu_compare.py .*--runs headroom\\\\,eager" "$tmp/roomy.txt" ||
  fail "bench is not gpu_compare.py --runs headroom,eager with the torch python"
grep -q "would run: $tmp/torch-python bench/gpu_compare.py .*--runs compile" "$tmp/roomy.txt" ||
  fail "compile is not gpu_compare.py --runs compile"
grep -q '^| compile | PASS |' "$tmp/roomy/summary.md" || fail "summary.md lacks the compile row"
echo "ok   bench (eager) and compile through bench/gpu_compare.py; summary.md has every row"

# The device tool brings back 8 files of $OUT at most: two, and the tarball holds every log.
[ "$(find "$tmp/roomy" -type f | wc -l)" -le 8 ] || fail "more than 8 files in OUT: $(ls "$tmp/roomy")"
logs=$(tar tzf "$tmp/roomy/gpu-check-logs.tgz") || fail "no gpu-check-logs.tgz in OUT"
for f in summary.md tests.log profile.log memcheck.log bench.log; do
  grep -qx "./$f" <<<"$logs" || fail "gpu-check-logs.tgz lacks $f: $logs"
done
echo "ok   OUT holds summary.md and gpu-check-logs.tgz (every stage's log), under the tool's 8 files"

rc=$(run tight 420 "$tmp/torch-python")
[ "$rc" = 0 ] || { cat "$tmp/tight.txt"; fail "the 420-s dry run exited $rc"; }
[ "$(rows tight | tail -2)" = "bench PASS
compile SKIP" ] || { cat "$tmp/tight.txt"; fail "420 s: $(rows tight | tr '\n' ' ')"; }
grep -qE '^\[gpu-check\] compile +SKIP .*torch.compile needs 150' "$tmp/tight.txt" || fail "no 150-s note"
total=$(sed -nE 's/^- total: ([0-9]+) s.*/\1/p' "$tmp/tight/summary.md")
[ "${total:-999}" -le 420 ] || fail "420-s budget, planned total ${total:-?} s"
echo "ok   420 s: everything but torch.compile fits (planned ${total} s), compile skips naming the 150-s rule"

rc=$(run bare 600 "$tmp/bare-python")
[ "$rc" != 0 ] || fail "no torch, yet exit 0"
[ "$(rows bare | sed -n 2p)" = "torch FAIL" ] || fail "torch is not checked second: $(rows bare | tr '\n' ' ')"
n=$(grep -c '^\[gpu-check\] .*no python3 here imports torch' "$tmp/bare.txt")
[ "$n" = 1 ] || fail "not one line saying torch is missing ($n)"
grep -q 'Traceback\|ModuleNotFoundError' "$tmp/bare.txt" && fail "python's error reaches the output"
grep -qE '^\[gpu-check\] bench +SKIP .*no torch' "$tmp/bare.txt" || fail "bench does not skip"
grep -qE '^\[gpu-check\] compile +SKIP .*no torch' "$tmp/bare.txt" || fail "compile does not skip"
grep -q 'gpu_compare.py' "$tmp/bare.txt" && fail "gpu_compare.py would still run"
[ "$(rows bare | grep -c PASS)" = 8 ] || fail "without torch the other stages should still run"
echo "ok   no torch: said in one line before the build, bench and compile skip, the rest runs"
