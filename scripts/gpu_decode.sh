#!/usr/bin/env bash
# Decode on the GPU (issue 4): builds only what it needs, runs the graph-decode and fused
# Mamba-3 step tests and the CUDA fixtures, then the decode benches — 1.3B-class Mamba-3 at
# batch 1 (CUDA graph vs eager) and the batch-128 prefill 2048 + decode 2048 workload.
# With the device tool: run(command="scripts/gpu_decode.sh", carry=[".device_fixtures", ".device_deps"]).
#   scripts/gpu_decode.sh         # build, tests, all benches
#   scripts/gpu_decode.sh quick   # build, tests, batch-1 decode only (GEMV vs cuBLAS GEMV)
#   scripts/gpu_decode.sh profile # build, tests, batch-1 decode with and without programmatic
#                                 # dependent launch, device time per op at batch 1 and 128
#   scripts/gpu_decode.sh e2e     # build, tests, batch-1 decode (both launch modes) and the batch-128
#                                 # prefill 2048 + decode 2048 workload, for the 48-layer shape and
#                                 # the 1.5B layout (24 Mamba-3 layers, each with a gated MLP)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_decode_out}
BUILD=${BUILD:-$ROOT/build/gpu-decode}
mkdir -p "$OUT"
# The build dependencies (unpacked from the carried .deb files when the machine lacks them).
# shellcheck source=gpu_check.sh
source "$ROOT/scripts/gpu_check.sh"
setup_deps || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$SECONDS
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DMAMBACPP_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DMAMBACPP_BUILD_BENCH=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90a "${CMAKE_ARGS[@]}" >"$OUT/configure.log" 2>&1 || { tail -20 "$OUT/configure.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" --target mambacpp step_graph_cuda_test mamba3_step_cuda_test golden_cuda_test \
  linear_gemv_cuda_test linear_cuda_test norm_cuda_test decode_fused_cuda_test \
  >"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" "$OUT/build.log" | head -20; exit 1; }
echo "build: $((SECONDS - t0)) s"
export MAMBACPP_FIXTURES=$ROOT/.device_fixtures
for t in src/ops/linear/linear_gemv_cuda_test src/ops/linear/linear_cuda_test tests/step_graph_cuda_test \
  src/ops/mamba3_step/mamba3_step_cuda_test tests/golden_cuda_test src/ops/norm/norm_cuda_test \
  tests/decode_fused_cuda_test; do
  timeout 120 "$BUILD/$t" --gtest_filter=-*ThroughCli* >"$OUT/$(basename $t).log" 2>&1
  echo "$(basename $t): rc $? $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/$(basename $t).log" | tr '\n' ' ')"
  grep -E "Failure|Expected|Which is|actual|error" "$OUT/$(basename $t).log" | head -12
done
B="$BUILD/bin/mambacpp bench --device cuda --models mamba3-siso --d-model 2048 --n-layer 48 --dtype bf16"
run() { echo "\$ $*" | sed "s|$BUILD/bin/||"; timeout "$1" "${@:2}" 2>&1 | tee -a "$OUT/bench.log" | grep -E "^\| mamba|error"; }
run 90 $B --seq-len 16 --decode-tokens 512 --json "$OUT/b1_graph.json"
if [ "${1:-}" = quick ]; then
  run 90 $B --kernel decode_gemv=cublas --seq-len 16 --decode-tokens 256 --json "$OUT/b1_graph_cublas.json"
  # The decode GEMV without its norm prologue / residual-add epilogue (add + norm kernel instead).
  run 90 $B --kernel fuse_decode=off --seq-len 16 --decode-tokens 512 --json "$OUT/b1_graph_unfused.json"
  cat "$OUT"/b*.json
  echo "total: $((SECONDS - t0)) s"
  exit 0
fi
if [ "${1:-}" = profile ]; then
  # A/B of the launch options, the 1.5B-class layout (24 Mamba-3 layers, each followed by a gated
  # MLP), then where the time goes (eager, device time per op).
  run 90 $B --kernel dependent_launch=off --seq-len 16 --decode-tokens 512 --json "$OUT/b1_graph_nopdl.json"
  run 90 ${B/--n-layer 48/--n-layer 24 --d-intermediate 5632} --seq-len 16 --decode-tokens 512 \
    --json "$OUT/b1_graph_mlp.json"
  timeout 90 $B --seq-len 16 --decode-tokens 64 --profile >"$OUT/profile_b1.log" 2>&1
  timeout 150 $B --batch 128 --seq-len 2048 --decode-tokens 16 --profile >"$OUT/profile_b128.log" 2>&1
  grep -hE "^\| [a-z_0-9]+(\[[0-9]+\])? \||^\| all|device time per op" "$OUT/profile_b1.log" "$OUT/profile_b128.log"
  cat "$OUT"/b*.json
  (cd "$OUT" && tar czf logs.tgz ./*.log ./*.json && rm -f ./*.log ./*.json)
  echo "total: $((SECONDS - t0)) s"
  exit 0
fi
if [ "${1:-}" = e2e ]; then
  M2=${B/--n-layer 48/--n-layer 24 --d-intermediate 5632}
  run 90 $B --kernel dependent_launch=off --seq-len 16 --decode-tokens 512 --json "$OUT/b1_graph_nopdl.json"
  run 90 $M2 --seq-len 16 --decode-tokens 512 --json "$OUT/b1_graph_mlp.json"
  # Batch-128 decode, the streaming Mamba-3 step against the fused one (short prefill).
  run 90 $B --batch 128 --seq-len 16 --decode-tokens 256 --json "$OUT/b128_stream.json"
  run 90 $B --kernel mamba3_step=fused --batch 128 --seq-len 16 --decode-tokens 256 --json "$OUT/b128_fused.json"
  run 200 $B --batch 128 --seq-len 2048 --decode-tokens 2048 --json "$OUT/b128_e2e.json"
  run 200 $M2 --batch 128 --seq-len 2048 --decode-tokens 2048 --json "$OUT/b128_e2e_mlp.json"
  timeout 100 $B --batch 128 --seq-len 2048 --decode-tokens 16 --profile >"$OUT/profile_b128.log" 2>&1
  grep -hE "^\| [a-z_0-9]+(\[[0-9]+\])? \||^\| all|device time per op" "$OUT/profile_b128.log"
  cat "$OUT"/b*.json
  (cd "$OUT" && tar czf logs.tgz ./*.log ./*.json && rm -f ./*.log ./*.json)
  echo "total: $((SECONDS - t0)) s"
  exit 0
fi
run 90 $B --seq-len 16 --decode-tokens 128 --eager --json "$OUT/b1_eager.json"
run 150 $B --batch 128 --seq-len 2048 --decode-tokens 2048 --json "$OUT/b128_graph.json"
run 60 $B --batch 128 --seq-len 16 --decode-tokens 64 --eager --json "$OUT/b128_eager.json"
cat "$OUT"/b*.json
echo "total: $((SECONDS - t0)) s"
