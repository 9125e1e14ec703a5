#!/usr/bin/env bash
# Before/after on the GPU machine, in one call: builds an older source tree (BASE, e.g. a `git archive`
# of the commit before a refactor) and this tree side by side, then
#   1. this tree's `ctest -L cuda`;
#   2. scripts/gpu_prebuilt.sh on the two binaries: golden logits against the fixtures, the logits
#      hashes of both (f32, bf16) and `mambacpp bench` of both;
# Results go to $OUT (ab_*.txt / .log).
#   scripts/gpu_ab.sh BASE_SRC [steps: test golden hashes bench]
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_SRC=$(realpath "$1"); shift
STEPS=${*:-test golden hashes bench}
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
# shellcheck source=gpu_check.sh
source "$ROOT/scripts/gpu_check.sh"
setup_deps || exit 1
export MAMBACPP_FIXTURES=${MAMBACPP_FIXTURES:-$ROOT/.device_fixtures}
BB=${BUILD_BASE:-$ROOT/build/ab-base}
BH=${BUILD_HEAD:-$ROOT/build/ab-head}

configure() {  # src build
  cmake -S "$1" -B "$2" -G Ninja -DMAMBACPP_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DMAMBACPP_BUILD_BENCH=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90a "${CMAKE_ARGS[@]}" >"$OUT/ab_configure_$(basename "$2").log" 2>&1
}
t0=$SECONDS
configure "$BASE_SRC" "$BB" && configure "$ROOT" "$BH" || { tail -20 "$OUT"/ab_configure_*.log; exit 1; }
head_targets="mambacpp"
[[ $STEPS == *test* ]] && head_targets="$head_targets $(cd "$BH" && ctest -N -L cuda | awk '/Test +#/{print $3}')"
cmake --build "$BB" -j"$(nproc)" -- -k 0 mambacpp >"$OUT/ab_build_base.log" 2>&1 &
cmake --build "$BH" -j"$(nproc)" -- -k 0 $head_targets >"$OUT/ab_build_head.log" 2>&1 &
wait
echo "builds done in $((SECONDS - t0)) s"
grep -hE "FAILED|error:" "$OUT"/ab_build_*.log | head -10
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv >"$OUT/ab_gpu.txt" 2>&1; cat "$OUT/ab_gpu.txt"

# The CUDA tests run beside the golden and hash checks of scripts/gpu_prebuilt.sh (the same check
# for binaries built elsewhere; separate processes on one GPU), the bench after them on a quiet GPU.
if [[ $STEPS == *test* ]]; then
  ( (cd "$BH" && ctest -L cuda --output-on-failure --timeout 300 -j3) >"$OUT/ab_ctest_cuda.log" 2>&1
    echo "rc $?" >"$OUT/ab_ctest_rc.txt" ) &
fi
steps=""
for st in golden hashes; do [[ $STEPS == *$st* ]] && steps="$steps $st"; done
[ -n "$steps" ] && "$ROOT/scripts/gpu_prebuilt.sh" "$BB/bin/mambacpp" "$BH/bin/mambacpp" $steps
wait
if [[ $STEPS == *test* ]]; then
  echo "ctest -L cuda (head): $(cat "$OUT/ab_ctest_rc.txt")"
  grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ab_ctest_cuda.log" | head -20
fi
[[ $STEPS == *bench* ]] && "$ROOT/scripts/gpu_prebuilt.sh" "$BB/bin/mambacpp" "$BH/bin/mambacpp" bench

echo "total $((SECONDS - t0)) s"
