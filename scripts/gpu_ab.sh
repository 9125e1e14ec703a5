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

if [[ $STEPS == *test* ]]; then
  (cd "$BH" && ctest -L cuda --output-on-failure --timeout 300 -j4) >"$OUT/ab_ctest_cuda.log" 2>&1
  echo "ctest -L cuda (head): rc $?"
  grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ab_ctest_cuda.log" | head -20
fi
if [[ $STEPS == *hashes* ]]; then
  for dt in f32 bf16; do
    t=$SECONDS
    "$ROOT/scripts/logits_hashes.sh" "$BB/bin/mambacpp" --device cuda --dtype $dt >"$OUT/ab_hashes_base_$dt.txt" 2>&1
    "$ROOT/scripts/logits_hashes.sh" "$BH/bin/mambacpp" --device cuda --dtype $dt >"$OUT/ab_hashes_head_$dt.txt" 2>&1
    n=$(wc -l <"$OUT/ab_hashes_head_$dt.txt")
    d=$(diff "$OUT/ab_hashes_base_$dt.txt" "$OUT/ab_hashes_head_$dt.txt" | grep -c '^>')
    echo "hashes cuda $dt: $n lines, $d differ ($((SECONDS - t)) s)"
    if [ "$d" != 0 ]; then  # is the head itself deterministic?
      "$ROOT/scripts/logits_hashes.sh" "$BH/bin/mambacpp" --device cuda --dtype $dt >"$OUT/ab_hashes_head2_$dt.txt" 2>&1
      echo "  head run twice: $(diff "$OUT/ab_hashes_head_$dt.txt" "$OUT/ab_hashes_head2_$dt.txt" | grep -c '^>') differ"
      diff "$OUT/ab_hashes_base_$dt.txt" "$OUT/ab_hashes_head_$dt.txt" | head -12
    fi
  done
fi

if [[ $STEPS == *bench* ]]; then
  for dt in f32 bf16; do
    for round in 1 2; do
      for who in base head; do
        b=$BB; [ $who = head ] && b=$BH
        "$b/bin/mambacpp" bench --device cuda --dtype $dt --seq-len 2048 --decode-tokens 64 \
          >"$OUT/ab_bench_${who}_${dt}_$round.log" 2>&1
      done
    done
    echo "--- bench cuda $dt (base round 1 / head round 1 / base round 2 / head round 2)"
    paste -d'\n' "$OUT/ab_bench_base_${dt}_1.log" "$OUT/ab_bench_head_${dt}_1.log" \
      "$OUT/ab_bench_base_${dt}_2.log" "$OUT/ab_bench_head_${dt}_2.log" | grep -E "^\|" | head -60
  done
fi

echo "total $((SECONDS - t0)) s"
