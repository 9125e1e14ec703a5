#!/usr/bin/env bash
# Before/after on the GPU machine, in one call: builds an older source tree (BASE, e.g. a `git archive`
# of the commit before a refactor) and this tree side by side, then
#   1. this tree's `ctest -L cuda`;
#   2. the logits hashes of both binaries (scripts/logits_hashes.sh, --device cuda, f32 and bf16),
#      lines that differ re-run with this tree's binary to tell nondeterminism from a change;
#   3. `mambacpp bench` of both, alternated (base, head, base, head) at f32 and bf16;
# Results go to $OUT (ab_*.txt / .log).
#   scripts/gpu_ab.sh BASE_SRC [steps: hashes bench test]
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_SRC=$(realpath "$1"); shift
STEPS=${*:-test hashes bench}
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

# The CUDA tests and the four hash passes run at once (separate processes on one GPU), the bench
# after them on a quiet GPU.
if [[ $STEPS == *test* ]]; then
  ( (cd "$BH" && ctest -L cuda --output-on-failure --timeout 300 -j3) >"$OUT/ab_ctest_cuda.log" 2>&1
    echo "rc $?" >"$OUT/ab_ctest_rc.txt" ) &
fi
if [[ $STEPS == *hashes* ]]; then
  t=$SECONDS
  for dt in f32 bf16; do
    for who in base head; do
      b=$BB; [ $who = head ] && b=$BH
      "$ROOT/scripts/logits_hashes.sh" "$b/bin/mambacpp" --device cuda --dtype $dt >"$OUT/ab_hashes_${who}_$dt.txt" 2>&1 &
    done
  done
  wait $(jobs -p | tail -4)
  for dt in f32 bf16; do
    n=$(wc -l <"$OUT/ab_hashes_head_$dt.txt")
    d=$(diff "$OUT/ab_hashes_base_$dt.txt" "$OUT/ab_hashes_head_$dt.txt" | grep -c '^>')
    echo "hashes cuda $dt: $n lines, $d differ, $(grep -c FAILED "$OUT/ab_hashes_head_$dt.txt") failed ($((SECONDS - t)) s)"
    [ "$d" != 0 ] && diff "$OUT/ab_hashes_base_$dt.txt" "$OUT/ab_hashes_head_$dt.txt" | head -12
  done
fi
wait
if [[ $STEPS == *test* ]]; then
  echo "ctest -L cuda (head): $(cat "$OUT/ab_ctest_rc.txt")"
  grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ab_ctest_cuda.log" | head -20
fi

if [[ $STEPS == *bench* ]]; then
  for dt in f32 bf16; do
    for round in $(seq 1 "${ROUNDS:-2}"); do
      for who in base head; do
        b=$BB; [ $who = head ] && b=$BH
        "$b/bin/mambacpp" bench --device cuda --dtype $dt --seq-len 2048 --decode-tokens 64 \
          >"$OUT/ab_bench_${who}_${dt}_$round.log" 2>&1
      done
    done
    echo "--- bench cuda $dt (rows: base, head per round)"
    files=()
    for round in $(seq 1 "${ROUNDS:-2}"); do files+=("$OUT/ab_bench_base_${dt}_$round.log" "$OUT/ab_bench_head_${dt}_$round.log"); done
    paste -d'\n' "${files[@]}" | grep -E "^\|" | head -60
  done
fi

echo "total $((SECONDS - t0)) s"
