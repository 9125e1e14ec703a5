#!/usr/bin/env bash
# mambacpp against llama.cpp on one machine, both built from source here, the same GGUF files
# (issue 15): pp512 / tg128 at the given thread counts for f32, Q8_0 and Q4_K of the same
# random-weight 130M-shape model (Mamba-2, Mamba-1, and a hybrid: Granite-4.0-H without experts),
# with each process's peak RSS; the table goes into docs/benchmarks.md (between its
# llamacpp_compare markers) and the raw results into $WORK.
#
#   scripts/llamacpp_compare.sh                      # THREADS=2,16 KINDS="mamba2 mamba1 granite4h"
#   THREADS=2 KINDS=mamba2 TYPES="f32 q8_0" D_MODEL=256 N_LAYER=4 scripts/llamacpp_compare.sh   # quick
#
# Env: KIT (the llama.cpp kit; default ../shared/reference/llamacpp next to the checkout),
# WORK (builds, models, results.json; default /tmp/llamacpp_compare), THREADS (comma list),
# KINDS (mamba2 mamba1 granite4h), TYPES (f32 q8_0 q4_k), D_MODEL / N_LAYER (default 768 / 24),
# JOBS (build parallelism; default nproc), DOC (default docs/benchmarks.md; "-" = print only),
# LLAMA_BIN / MAMBACPP_BIN (use these binaries, skip that build).
# Needs: cmake, a C++20 compiler, python3 (stdlib only), mambacpp's build dependencies.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
KIT=${KIT:-$SRC/../shared/reference/llamacpp}
WORK=${WORK:-/tmp/llamacpp_compare}
THREADS=${THREADS:-2,16}
KINDS=${KINDS:-mamba2 mamba1 granite4h}
TYPES=${TYPES:-f32 q8_0 q4_k}
D_MODEL=${D_MODEL:-768}
N_LAYER=${N_LAYER:-24}
JOBS=${JOBS:-$(nproc)}
DOC=${DOC:-$SRC/docs/benchmarks.md}
PY="python3 $SRC/scripts/llamacpp_compare.py"
mkdir -p "$WORK"
[ -d "$KIT/llama.cpp" ] || { echo "error: $KIT/llama.cpp not found (set KIT to the llama.cpp kit)" >&2; exit 2; }
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }

stamp "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
env | grep -E "^(OPENBLAS|OMP|GOMP|MKL)" || true
GEN=Ninja; command -v ninja >/dev/null || GEN="Unix Makefiles"

# On a CPU with AMX (Sapphire Rapids and later) the kit's llama.cpp, built native, multiplies Q8_0 /
# Q4_K through its AMX backend, which segfaults on Mamba-2 (ggml_backend_amx_mul_mat, seen
# 2026-12-07); there it is built with the CPU's other vector features named and AMX off.
ll_isa=()
if grep -qw amx_int8 /proc/cpuinfo; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
  ll_isa=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
          -DGGML_AVX512="$(has avx512f)" -DGGML_AVX512_VBMI="$(has avx512vbmi)"
          -DGGML_AVX512_VNNI="$(has avx512_vnni)" -DGGML_AVX512_BF16="$(has avx512_bf16)"
          -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
  stamp "AMX present: llama.cpp built without its AMX backend (${ll_isa[*]})"
fi
if [ -z "${LLAMA_BIN:-}" ]; then
  stamp "build llama.cpp ($(cat "$KIT/llama.cpp/COMMIT" 2>/dev/null || echo '?')): llama-bench"
  cmake -S "$KIT/llama.cpp" -B "$WORK/build-ll" -G "$GEN" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF "${ll_isa[@]}" \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DGGML_CUDA=OFF \
    -DGIT_EXECUTABLE=/bin/false -DCMAKE_POLICY_VERSION_MINIMUM=3.5 > "$WORK/build_ll.log" 2>&1
  cmake --build "$WORK/build-ll" -j "$JOBS" --target llama-bench >> "$WORK/build_ll.log" 2>&1 ||
    { tail -20 "$WORK/build_ll.log"; exit 1; }
  LLAMA_BIN=$WORK/build-ll/bin/llama-bench
fi
if [ -z "${MAMBACPP_BIN:-}" ]; then
  stamp "build mambacpp ($(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo '?')): release, CPU"
  (cd "$SRC" && cmake --preset release -B "$WORK/build-mc" -DMAMBACPP_BUILD_TESTS=OFF -DMAMBACPP_BUILD_BENCH=OFF > "$WORK/build_mc.log" 2>&1 &&
    cmake --build "$WORK/build-mc" -j "$JOBS" --target mambacpp >> "$WORK/build_mc.log" 2>&1) ||
    { tail -20 "$WORK/build_mc.log"; exit 1; }
  MAMBACPP_BIN=$WORK/build-mc/bin/mambacpp
fi

FILES=()
for k in $KINDS; do
  m=$WORK/models/$k-$D_MODEL-$N_LAYER
  [ -f "$m/model.safetensors" ] || { stamp "model $k"; $PY make-model "$m" "$k" "$D_MODEL" "$N_LAYER"; }
  for t in $TYPES; do
    [ -f "$m/$t.gguf" ] || "$MAMBACPP_BIN" quantize -m "$m" --type "$t" -o "$m/$t.gguf" -t "$JOBS" > /dev/null
    FILES+=("$k:$t=$m/$t.gguf")
  done
done

stamp "timings: threads $THREADS, ${FILES[*]}"
rm -f "$WORK/results.json"
$PY bench "$MAMBACPP_BIN" "$LLAMA_BIN" "$WORK/results.json" "$THREADS" "${FILES[@]}"
if [ "$DOC" = "-" ]; then
  $PY table "$WORK/results.json" "$WORK/table.md"
else
  $PY table "$WORK/results.json" "$DOC"
fi
stamp "done: $WORK/results.json"
