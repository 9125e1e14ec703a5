#!/usr/bin/env bash
# GPU check: configure with the CUDA backend, build, run the `cuda` tests (op parity and the
# fixtures on the GPU) and the CPU golden tests, compute-sanitizer on small CUDA tests, and the
# end-to-end GPU bench; logs and a summary go to $OUT (default ./gpu_check_out).
#
#   scripts/gpu_check.sh prepare   # here: copy the fixtures and the build dependencies (.deb) into
#                                  # .device_fixtures/ and .device_deps/ (both git-ignored)
#   scripts/gpu_check.sh [phases]  # on the GPU machine; phases: build test sanitize bench (the
#                                  # default) and golden (the CPU golden tests)
#
# With the device tool: run(command="scripts/gpu_check.sh", carry=[".device_fixtures", ".device_deps"]).
# The GPU machine has no package registry: missing build dependencies are unpacked from the
# carried Debian packages into a private prefix (never into /).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/gpu_check_out}
BUILD=${BUILD:-$ROOT/build/gpu-check}
DEPS_PREFIX=/tmp/mambacpp-deps
DEB_PACKAGES="libopenblas-dev libopenblas0-pthread libopenblas-pthread-dev libopenblas0 libgfortran5 libquadmath0
  libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 nlohmann-json3-dev libcli11-dev libgtest-dev
  pkgconf pkgconf-bin libpkgconf3 pkg-config libcpp-httplib-dev libcpp-httplib0.11 libssl-dev libssl3 zlib1g-dev
  zlib1g libbrotli-dev libbrotli1 libpng-dev libpng16-16 libjpeg62-turbo-dev libjpeg62-turbo libjpeg-dev"

prepare() {
  mkdir -p "$ROOT/.device_deps"
  rm -rf "$ROOT/.device_fixtures"
  cp -r "${MAMBACPP_FIXTURES:-$ROOT/../shared/fixtures}" "$ROOT/.device_fixtures"
  (cd "$ROOT/.device_deps" && apt-get download $DEB_PACKAGES)
  local exclude
  exclude=$(cd "$ROOT" && git rev-parse --path-format=absolute --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  for p in /.device_fixtures/ /.device_deps/; do
    grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"
  done
  du -sh "$ROOT/.device_fixtures" "$ROOT/.device_deps"
}

# Uses the carried packages when the machine lacks a dependency; sets CMAKE_ARGS and the
# library path for the tests.
setup_deps() {
  CMAKE_ARGS=()
  local missing=0
  command -v pkg-config >/dev/null || missing=1
  [ $missing = 0 ] && ! pkg-config --exists openblas libpcre2-8 && missing=1
  [ -f /usr/include/gtest/gtest.h ] && [ -f /usr/include/nlohmann/json.hpp ] && [ -f /usr/include/CLI/CLI.hpp ] || missing=1
  [ $missing = 0 ] && ! pkg-config --exists cpp-httplib libpng && missing=1
  [ -f /usr/include/jpeglib.h ] || [ -f /usr/include/x86_64-linux-gnu/jpeglib.h ] || missing=1
  [ $missing = 0 ] && return 0
  if ! ls "$ROOT"/.device_deps/*.deb >/dev/null 2>&1; then
    echo "missing build dependencies and no .device_deps/ carried (run: scripts/gpu_check.sh prepare)"
    return 1
  fi
  echo "unpacking carried build dependencies into $DEPS_PREFIX"
  rm -rf "$DEPS_PREFIX" && mkdir -p "$DEPS_PREFIX"
  for f in "$ROOT"/.device_deps/*.deb; do dpkg -x "$f" "$DEPS_PREFIX"; done
  local lib=$DEPS_PREFIX/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH=$lib/openblas-pthread:$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PKG_CONFIG_SYSROOT_DIR=$DEPS_PREFIX
  export PKG_CONFIG_LIBDIR=$lib/openblas-pthread/pkgconfig:$lib/pkgconfig:$DEPS_PREFIX/usr/share/pkgconfig
  local pc=pkg-config
  command -v pkg-config >/dev/null || pc=$DEPS_PREFIX/usr/bin/pkgconf
  CMAKE_ARGS=(-DPKG_CONFIG_EXECUTABLE="$pc" -DCMAKE_PREFIX_PATH="$DEPS_PREFIX/usr")
}

build() {
  nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
  { nvcc --version || /usr/local/cuda/bin/nvcc --version; cmake --version; c++ --version; } >"$OUT/toolchain.txt" 2>&1
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DMAMBACPP_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DMAMBACPP_BUILD_BENCH=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90a "${CMAKE_ARGS[@]}" >"$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; return 1; }
  local t0=$SECONDS
  cmake --build "$BUILD" -j"$(nproc)" -- -k 0 ${TARGETS:-} >"$OUT/build.log" 2>&1  # TARGETS: a subset
  local rc=$?
  echo "build: rc $rc in $((SECONDS - t0)) s"
  grep -E "FAILED|error" "$OUT/build.log" | head -20
  return 0  # run whatever built
}

run_tests() {
  export MAMBACPP_FIXTURES=${MAMBACPP_FIXTURES:-$ROOT/.device_fixtures}
  (cd "$BUILD" && ctest -L cuda ${CUDA_TEST_REGEX:+-R "$CUDA_TEST_REGEX"} --output-on-failure --timeout 300 -j4) >"$OUT/ctest_cuda.log" 2>&1
  echo "ctest -L cuda: rc $?"; grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ctest_cuda.log" | head -20
  grep -h "cuda-golden" "$BUILD"/Testing/Temporary/LastTest.log 2>/dev/null | sort -u | head -10
}

# The CPU golden tests (CI runs them too; optional here to save device time).
run_golden_cpu() {
  export MAMBACPP_FIXTURES=${MAMBACPP_FIXTURES:-$ROOT/.device_fixtures}
  (cd "$BUILD" && ctest -L golden --output-on-failure --timeout 600 -j4) >"$OUT/ctest_golden.log" 2>&1
  echo "ctest -L golden (CPU): rc $?"; grep -E "tests passed|tests failed|Failed" "$OUT/ctest_golden.log" | head -10
}

sanitize() {
  local cs=compute-sanitizer
  command -v $cs >/dev/null || cs=/usr/local/cuda/bin/compute-sanitizer
  export MAMBACPP_FIXTURES=${MAMBACPP_FIXTURES:-$ROOT/.device_fixtures}
  # memcheck on every CUDA test binary (8 at a time), racecheck on those with shared-memory kernels.
  find "$BUILD" -name '*_cuda_test' -type f -perm -u+x | sort >"$OUT/sanitize_tests.txt"
  export cs OUT
  xargs -P 8 -I{} bash -c 'n=$(basename {}); timeout 150 $cs --tool memcheck --error-exitcode 3 {} >"$OUT/memcheck_$n.log" 2>&1;
    echo "memcheck $n: rc $? $(grep -E "ERROR SUMMARY" "$OUT/memcheck_$n.log")"' <"$OUT/sanitize_tests.txt"
  grep -E 'ssd_cuda_test|mamba3_scan_cuda_test|norm_cuda_test|cross_entropy|mamba3_step_cuda|linear_gemv|mamba3_gates_cuda' "$OUT/sanitize_tests.txt" |
    xargs -P 8 -I{} bash -c 'n=$(basename {}); timeout 240 $cs --tool racecheck --error-exitcode 3 {} >"$OUT/racecheck_$n.log" 2>&1;
    echo "racecheck $n: rc $? $(grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$OUT/racecheck_$n.log")"'
}

bench() {
  for dtype in f32 bf16; do
    "$BUILD/bin/mambacpp" bench --device cuda --dtype $dtype --seq-len 2048 --decode-tokens 64 \
      --json "$OUT/bench_cuda_$dtype.json" 2>&1 | tee "$OUT/bench_cuda_$dtype.log"
  done
}

# The model families at reduced width (cmd_bench.cpp): prefill / decode and each sublayer's share.
family_bench() {
  local models="nemotron-h nemotron-h-moe granite-4-h jamba zamba2 bamba falcon-h1 falcon-mamba codestral"
  for dtype in f32 bf16; do
    "$BUILD/bin/mambacpp" bench --device cuda --dtype $dtype --models $models --seq-len 2048 --decode-tokens 64 \
      --json "$OUT/bench_family_cuda_$dtype.json" 2>&1 | tee "$OUT/bench_family_cuda_$dtype.log"
  done
  "$BUILD/bin/mambacpp" bench --models $models --threads 16 --seq-len 512 --decode-tokens 16 \
    --json "$OUT/bench_family_cpu.json" 2>&1 | tee "$OUT/bench_family_cpu.log"
}

# Forward + backward of the scans at the issue's shapes (bench/cuda_bwd_bench.cu).
bwd_bench() {
  "$BUILD/bin/cuda_bwd_bench" 2>&1 | tee "$OUT/cuda_bwd_bench.log"
}

# GPU training throughput: the realistic shapes of `mambacpp bench` on byte-level text (f32 and bf16
# mixed precision), and a tiny state-tracking model (Table 5b shape).
train_bench() {
  local m=$BUILD/bin/mambacpp
  for layer in Mamba2 Mamba3 Mamba1; do
    for dtype in f32 bf16; do
      echo "--- train $layer d768x24 $dtype"
      "$m" train --task text --text "$ROOT/README.md" "$ROOT/docs/architecture.md" --layer $layer --d-model 768 --n-layer 24 \
        --d-state $([ $layer = Mamba1 ] && echo 16 || echo 128) --headdim 64 --length 512 --batch 8 --steps 12 --warmup 0 \
        --device cuda --dtype $dtype --checkpoint-dir /tmp/tb_${layer}_${dtype} --checkpoint-every 0 2>&1 | grep -E "parameters|throughput|rror" | tee -a "$OUT/train_bench.log"
    done
  done
  for model in "Mamba3 --rope data_dependent" "Mamba2"; do
    echo "--- train parity $model d64 batch 256"
    "$m" train --task parity --layer $model --n-layer 1 --d-model 64 --d-state 64 --min-length 3 --max-length 160 \
      --stages 1 --steps 300 --batch 256 --lr 3e-3 --warmup 10 --device cuda --eval-every 0 --eval-batches 1 \
      --checkpoint-dir /tmp/tb_parity --checkpoint-every 0 2>&1 | grep -E "parameters|throughput|rror" | tee -a "$OUT/train_bench.log"
  done
}

# Where a training step of the small state-tracking model spends its GPU time (nsys kernel summary).
profile_train() {
  local nsys=nsys
  command -v nsys >/dev/null || nsys=$(ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys 2>/dev/null | head -1)
  [ -n "$nsys" ] || { echo "no nsys"; return 0; }
  "$nsys" profile --stats=false -o /tmp/train_prof --force-overwrite true "$BUILD/bin/mambacpp" train --task parity \
    --layer Mamba3 --n-layer 1 --d-model 64 --d-state 64 --min-length 3 --max-length 160 --stages 1 --steps 60 \
    --batch 256 --device cuda --eval-every 0 --eval-batches 1 --checkpoint-dir /tmp/prof_ckpt >/dev/null 2>&1
  "$nsys" stats --report cuda_gpu_kern_sum,cuda_api_sum --format csv /tmp/train_prof.nsys-rep >"$OUT/train_profile.csv" 2>&1
  head -25 "$OUT/train_profile.csv"
}

# The server on the GPU (issue 12): a 1.3B-class Mamba-2 (d_model 2048, 48 layers, random weights +
# one AdamW step), `bench --generate` at the same shape as the reference, then total decode tok/s
# against 1/8/32/128 concurrent streams. Phase serveturns: 10 turns to a 32K-token conversation,
# cache on and off, on the 1.3B model (GPU) and on the 129M bench model (CPU, 16 threads).
serve_bench() {
  local m=$BUILD/bin/mambacpp
  local sb=(python3 "$ROOT/scripts/serve_bench.py" --bin "$m" --json "$OUT/serve_gpu.jsonl" --log-dir "$OUT")
  [ -f /tmp/sb/m13b/model.safetensors ] ||
    "${sb[@]}" -t 8 make-model /tmp/sb/m13b --d-model 2048 --n-layer 48 --train-args "--device cuda" 2>&1 | tail -3
  "$m" bench --generate --models mamba2 --device cuda --dtype bf16 --d-model 2048 --n-layer 48 --batch 1 8 32 128 \
    --decode-tokens 128 --json "$OUT/bench_generate_13b.json" 2>&1 | tee "$OUT/bench_generate_13b.log"
  "${sb[@]}" -t 8 --server-args "--device cuda --dtype bf16" concurrency -m /tmp/sb/m13b --streams ${SERVE_STREAMS:-128 32 8 1} \
    --prompt-tokens 16 --gen-tokens ${SERVE_GEN:-256} --temperature ${SERVE_TEMP:-0} 2>&1 | tee "$OUT/serve_concurrency_gpu.log"
}
serve_turns() {
  local m=$BUILD/bin/mambacpp
  local sb=(python3 "$ROOT/scripts/serve_bench.py" --bin "$m" --json "$OUT/serve_turns.jsonl" --log-dir "$OUT")
  "${sb[@]}" -t 8 --server-args "--device cuda --dtype bf16" multiturn -m /tmp/sb/m13b --turns 10 \
    --user-tokens 3200 --reply-tokens 32 2>&1 | tee "$OUT/serve_multiturn_gpu.log"
  [ -f /tmp/sb/m129/model.safetensors ] || "${sb[@]}" -t 16 make-model /tmp/sb/m129 2>&1 | tail -2
  "${sb[@]}" -t 16 multiturn -m /tmp/sb/m129 --turns 10 --user-tokens 3200 --reply-tokens 32 2>&1 |
    tee "$OUT/serve_multiturn_cpu.log"
}

# The server on the GPU machine's CPU (16 threads): throughput against 1/8/32/128 streams on the 129M
# bench model, next to `bench --generate` at the same batch sizes.
serve_cpu() {
  local m=$BUILD/bin/mambacpp
  local sb=(python3 "$ROOT/scripts/serve_bench.py" --bin "$m" --json "$OUT/serve_cpu.jsonl" --log-dir "$OUT")
  [ -f /tmp/sb/m129/model.safetensors ] || "${sb[@]}" -t 16 make-model /tmp/sb/m129 2>&1 | tail -2
  OMP_WAIT_POLICY=passive "$m" bench --generate --models mamba2 --threads 16 --batch 1 8 32 128 --decode-tokens 32 \
    --json "$OUT/bench_generate_cpu.json" 2>&1 | tee "$OUT/bench_generate_cpu.log"
  "${sb[@]}" -t 16 concurrency -m /tmp/sb/m129 --streams 128 32 8 1 --prompt-tokens 16 --gen-tokens 64 \
    --temperature 0 2>&1 | tee "$OUT/serve_concurrency_cpu.log"
}

# Sourced (scripts/gpu_decode.sh, gpu_results.sh): the functions above only, e.g. setup_deps.
[[ "${BASH_SOURCE[0]}" != "$0" ]] && return 0

if [ "${1:-}" = prepare ]; then
  prepare
  exit $?
fi
mkdir -p "$OUT"
setup_deps || exit 1
phases=${*:-build test sanitize bench}
for phase in $phases; do
  echo "=== $phase"
  case $phase in
    build) build ;;
    test) run_tests ;;
    golden) run_golden_cpu ;;
    sanitize) sanitize ;;
    bench) bench ;;
    familybench) family_bench ;;
    bwdbench) bwd_bench ;;
    train) train_bench ;;
    profile) profile_train ;;
    serve) serve_bench ;;
    serveturns) serve_turns ;;
    servecpu) serve_cpu ;;
    *) echo "unknown phase $phase (build test golden sanitize bench familybench bwdbench train profile serve serveturns servecpu)"; exit 2 ;;
  esac
done
