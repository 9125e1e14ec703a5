#!/usr/bin/env bash
# The GPU session in resumable phases: each call runs the phases not yet done (markers in /tmp on
# the device), each only when the call has time left for it, so the same command is simply repeated
# (within the device's idle window) until it prints "ALL DONE". Results go to $OUT.
#   phases: build (skipped with prebuilt binaries), test (CUDA tests, golden logits of every fixture
#   f32/bf16, the before/after logits hashes), bench (before/after), vim (PyTorch reference fixtures
#   of scripts/vim_reference.py, VimFixture.* on the GPU, classify throughput), serve (issue 12's
#   GPU run), llama (scripts/llamacpp_compare.sh at 2 and 16 threads; needs the kit carried).
#
# Two ways to get the binaries:
#   - built on the device: carry .device_fixtures, .device_deps (scripts/gpu_check.sh prepare) and
#     .device_base (a `git archive` of the before commit);
#   - built here (no device build; a much shorter call): `scripts/gpu_resume.sh prepare BASE_BIN`
#     packs build/ci's mambacpp and CUDA test binaries and BASE_BIN into $PREBUILT (.gpu_prebuilt,
#     git-excluded) with the runtime libraries; carry .device_fixtures, .gpu_prebuilt.
# Env: LIMIT (seconds for this call, default 570), SKIP_BENCH=1, SERVE_GEN (default 128),
#   PHASES (run only these, e.g. "hashes profile vim serve"; default: all but hashes and profile,
#   which are in test / not needed for a full run). Extra phases: hashes (the before/after logits
#   hashes alone), profile (base vs head decode: per-op device time, eager and graph tok/s).
#   run(command="LIMIT=540 scripts/gpu_resume.sh", carry=[".device_fixtures", ".gpu_prebuilt"])
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PREBUILT=${PREBUILT:-.gpu_prebuilt}
TESTS="vim_test grads_cuda_test session_cuda_test dist_cuda_test golden_cuda_test families_cuda_test norm_cuda_test"
if [ "${1:-}" = prepare ]; then
  base=${2:?usage: scripts/gpu_resume.sh prepare BASE_BIN}
  mkdir -p "$PREBUILT/runtime"
  xz -T0 -6 -c "$base" >"$PREBUILT/base.xz"
  xz -T0 -6 -c build/ci/bin/mambacpp >"$PREBUILT/head.xz"
  for t in $TESTS; do
    f=$(find build/ci -name "$t" -type f -perm -u+x | head -1)
    [ -n "$f" ] && xz -T0 -6 -c "$f" >"$PREBUILT/$t.xz"
  done
  (cd "$PREBUILT/runtime" && apt-get download libopenblas0-openmp libopenblas0 libgomp1 libgfortran5 libquadmath0 \
    libpcre2-8-0 libpng16-16 libjpeg62-turbo libcpp-httplib0.11 libbrotli1)
  exclude=$(git rev-parse --path-format=absolute --git-path info/exclude)
  grep -qxF "/$PREBUILT/" "$exclude" 2>/dev/null || echo "/$PREBUILT/" >>"$exclude"
  du -sh "$PREBUILT" .device_fixtures 2>/dev/null
  echo "carry at most 64 MiB in all: drop test binaries from $PREBUILT if over"
  exit 0
fi
export OUT=${OUT:-$ROOT/out}
mkdir -p "$OUT"
T0=$SECONDS
LIMIT=${LIMIT:-570}
left() { echo $((LIMIT - (SECONDS - T0))); }
isdone() { [ -f "/tmp/ph_$1.done" ]; }
want() {  # a phase this call runs (PHASES), not yet done
  if [ -n "${PHASES:-}" ]; then [[ " $PHASES " == *" $1 "* ]] || return 1
  else [[ $1 != hashes && $1 != profile ]] || return 1; fi
  ! isdone "$1"
}
mark() { touch "/tmp/ph_$1.done"; echo "=== phase $1 done at $((SECONDS - T0)) s"; }
need() { [ "$(left)" -ge "$1" ] || { echo "=== stop: $(left) s left, next phase needs $1"; exit 0; }; }
export MAMBACPP_FIXTURES=$ROOT/.device_fixtures
export BUILD=$ROOT/build/ab-head
BB=$ROOT/build/ab-base
# shellcheck source=/dev/null
source "$ROOT/scripts/gpu_check.sh"
if [ -f $PREBUILT/head.xz ]; then CMAKE_ARGS=()
elif [ -d /tmp/mambacpp-deps/usr ]; then  # unpacked by an earlier call
  lib=/tmp/mambacpp-deps/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH=$lib/openblas-pthread:$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PKG_CONFIG_SYSROOT_DIR=/tmp/mambacpp-deps
  export PKG_CONFIG_LIBDIR=$lib/openblas-pthread/pkgconfig:$lib/pkgconfig:/tmp/mambacpp-deps/usr/share/pkgconfig
  pc=pkg-config; command -v pkg-config >/dev/null || pc=/tmp/mambacpp-deps/usr/bin/pkgconf
  CMAKE_ARGS=(-DPKG_CONFIG_EXECUTABLE="$pc" -DCMAKE_PREFIX_PATH=/tmp/mambacpp-deps/usr)
else
  setup_deps || exit 1
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
echo "cpu: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
VIMFIX=/tmp/vimfix
if want vim && ! isdone vimref && [ ! -f /tmp/vimref.started ]; then
  touch /tmp/vimref.started
  (python3 scripts/vim_reference.py --out $VIMFIX --official .device_fixtures/official >/tmp/vim_ref.log 2>&1 &&
    touch /tmp/ph_vimref.done) &
fi

configure() {  # src build
  [ -f "$2/build.ninja" ] && return 0
  cmake -S "$1" -B "$2" -G Ninja -DMAMBACPP_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DMAMBACPP_BUILD_BENCH=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90a "${CMAKE_ARGS[@]}" >"$OUT/configure_$(basename "$2").log" 2>&1
}
if [ -f $PREBUILT/head.xz ]; then  # binaries built elsewhere: no build here
  mkdir -p /tmp/pre/base/bin /tmp/pre/head/bin /tmp/pre/head/tests
  for f in base:base/bin/mambacpp head:head/bin/mambacpp $(for t in $TESTS; do echo "$t:head/tests/$t"; done); do
    n=${f%%:*} to=/tmp/pre/${f#*:}
    [ -f "$PREBUILT/$n.xz" ] || continue
    [ -x "$to" ] || { xz -dc "$PREBUILT/$n.xz" >"$to.part" && chmod +x "$to.part" && mv "$to.part" "$to"; }
  done
  ls -la /tmp/pre/*/bin /tmp/pre/head/tests
  BB=/tmp/pre/base BUILD=/tmp/pre/head
  if ldd "$BUILD/bin/mambacpp" | grep -q "not found"; then
    prefix=/tmp/mambacpp-rt
    [ -f $prefix.done ] || { rm -rf $prefix && mkdir -p $prefix && for f in "$PREBUILT"/runtime/*.deb; do dpkg -x "$f" $prefix; done; touch $prefix.done; }
    rl=$prefix/usr/lib/x86_64-linux-gnu
    export LD_LIBRARY_PATH=$rl/openblas-pthread:$rl/openblas-openmp:$rl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  ldd "$BUILD/bin/mambacpp" | grep -E "not found|cublas|nccl"
  touch /tmp/ph_build.done
fi
if ! isdone build; then
  configure "$ROOT/.device_base" "$BB" && configure "$ROOT" "$BUILD" || { tail -20 "$OUT"/configure_*.log; exit 1; }
  targets="mambacpp vim_test $(cd "$BUILD" && ctest -N -L cuda | awk '/Test +#/{print $3}' | sed 's/_optional$//' | sort -u)"
  t=$SECONDS
  timeout "$(left)" cmake --build "$BB" -j16 -- -k 0 mambacpp >"$OUT/build_base.log" 2>&1 &
  timeout "$(left)" cmake --build "$BUILD" -j16 -- -k 0 $targets >"$OUT/build_head.log" 2>&1
  rh=$?
  wait %1 2>/dev/null; rb=$?
  echo "builds: head rc $rh, base rc $rb, $((SECONDS - t)) s"
  grep -hE "FAILED|error:" "$OUT"/build_*.log | head -10
  [ $rh = 0 ] && [ -x "$BB/bin/mambacpp" ] && [ -x "$BUILD/bin/mambacpp" ] && mark build || exit 0
fi

if want test; then
  need 200
  if [ -f "$BUILD/build.ninja" ]; then
    ( (cd "$BUILD" && ctest -L cuda --output-on-failure --timeout 200 -j4) >"$OUT/ctest_cuda.log" 2>&1
      echo "rc $?" >"$OUT/ctest_rc.txt" ) &
  else  # the carried CUDA test binaries
    ( for t in $TESTS; do
        [ "$t" = vim_test ] && continue
        [ -x "$BUILD/tests/$t" ] || continue
        echo "=== $t"; timeout 200 "$BUILD/tests/$t" 2>&1 | grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]|Failure|rror" | head -30
      done >"$OUT/ctest_cuda.log" 2>&1; echo "rc $?" >"$OUT/ctest_rc.txt" ) &
  fi
  steps=golden; [ -x "$BB/bin/mambacpp" ] && steps="golden hashes"
  OUT=$OUT timeout 300 scripts/gpu_prebuilt.sh "${BASEBIN:-$BB/bin/mambacpp}" "$BUILD/bin/mambacpp" $steps 2>&1 | tail -40
  wait
  echo "cuda tests: $(cat "$OUT/ctest_rc.txt")"
  cat "$OUT/ctest_cuda.log" | head -60
  mark test
fi

if want hashes; then
  need 150
  OUT=$OUT timeout 300 scripts/gpu_prebuilt.sh "$BB/bin/mambacpp" "$BUILD/bin/mambacpp" hashes 2>&1 | tail -20 |
    tee "$OUT/hashes_summary.txt"
  mark hashes
fi

if want profile; then  # where a decode difference between base and head comes from
  need 150
  for who in base head; do
    b=$BB/bin/mambacpp; [ $who = head ] && b=$BUILD/bin/mambacpp
    common=(bench --device cuda --dtype bf16 --seq-len 512 --threads 1)
    "$b" "${common[@]}" --models mamba1 mamba2 --decode-tokens 64 --profile >"$OUT/profile_$who.log" 2>&1
    for mode in graph eager; do
      flag=(); [ $mode = eager ] && flag=(--eager)
      "$b" "${common[@]}" --models mamba1 mamba2 mamba3-siso --decode-tokens 128 "${flag[@]}" >"$OUT/${mode}_$who.log" 2>&1
    done
  done
  # Programmatic dependent launch off in both (base: its environment switch; head: the plan).
  MAMBACPP_NO_PDL=1 "$BB/bin/mambacpp" "${common[@]}" --models mamba1 mamba2 mamba3-siso --decode-tokens 128 \
    >"$OUT/nopdl_base.log" 2>&1
  "$BUILD/bin/mambacpp" "${common[@]}" --models mamba1 mamba2 mamba3-siso --decode-tokens 128 \
    --kernel dependent_launch=off >"$OUT/nopdl_head.log" 2>&1
  for mode in graph eager nopdl; do
    echo "--- decode $mode (rows: base, head)"
    paste -d'\n' "$OUT/${mode}_base.log" "$OUT/${mode}_head.log" | grep -E "^\| (mamba|hybrid)" | tee -a "$OUT/profile_summary.txt"
  done
  grep -h "replays alone" "$OUT/graph_head.log" | tee -a "$OUT/profile_summary.txt"
  ldd "$BB/bin/mambacpp" | grep -iE "cublas|cudart" | tee -a "$OUT/profile_summary.txt"
  LD_DEBUG=libs "$BUILD/bin/mambacpp" bench --models mamba2 --device cuda --seq-len 16 --decode-tokens 2 --threads 1 \
    --repeat 1 2>&1 | grep -E "calling init: .*cublas" | head -3 | tee -a "$OUT/profile_summary.txt"
  mark profile
fi

if want normtest; then  # the gated norm's register-cached kernel: its test, and Mamba-2 decode before/after
  need 40
  { "$BUILD/tests/norm_cuda_test" 2>&1 | grep -E "^\[  (PASSED|FAILED) |Failure|rror" | head -8
    for who in base head; do
      b=$BB/bin/mambacpp; [ $who = head ] && b=$BUILD/bin/mambacpp
      printf "%s " $who; "$b" bench --device cuda --dtype bf16 --models mamba2 --seq-len 64 --decode-tokens 512 \
        --threads 1 2>&1 | grep -E "^\| mamba2" | tr -s ' '
    done; } | tee "$OUT/normtest.txt"
  mark normtest
fi

if want trace; then  # device time per kernel inside the decode graphs, before and after (CUPTI)
  need 90
  so=$ROOT/$PREBUILT/libkernel_trace.so
  [ -f "$so" ] || so=$(scripts/kernel_trace.sh /tmp/libkernel_trace.so)
  for who in base head; do
    b=$BB/bin/mambacpp; [ $who = head ] && b=$BUILD/bin/mambacpp
    for m in mamba1 mamba2; do
      CUDA_INJECTION64_PATH=$so KERNEL_TRACE_OUT=$OUT/trace_${who}_$m.txt "$b" bench --device cuda --dtype bf16 \
        --models $m --seq-len 64 --decode-tokens 512 --threads 1 >"$OUT/trace_${who}_$m.log" 2>&1
      echo "--- $who $m"; grep -E "^\| $m" "$OUT/trace_${who}_$m.log"; sed -n "/^graph launches/,\$p" "$OUT/trace_${who}_$m.txt" | cut -c1-150 | grep -v "us  _Z" | head -4; sed -n "2,12p" "$OUT/trace_${who}_$m.txt" | cut -c1-110
    done
  done | tee "$OUT/trace_summary.txt"
  mark trace
fi

if [ -z "${SKIP_BENCH:-}" ] && want bench && [ -x "$BB/bin/mambacpp" ]; then
  need 150
  OUT=$OUT scripts/gpu_prebuilt.sh "$BB/bin/mambacpp" "$BUILD/bin/mambacpp" bench 2>&1 | tail -70
  mark bench
fi

if want vim; then
  need 150
  for i in $(seq 60); do isdone vimref && break; sleep 2; done
  tail -5 /tmp/vim_ref.log; cp /tmp/vim_ref.log "$OUT/"
  if isdone vimref; then
    rm -rf "$OUT/vim_fixtures"; tar -czf "$OUT/0_vim_fixtures.tgz" -C "$(dirname $VIMFIX)" "$(basename $VIMFIX)"
    MAMBACPP_VIM_FIXTURES=$VIMFIX "$BUILD/tests/vim_test" --gtest_filter='VimFixture.*' 2>&1 | tail -15 | tee "$OUT/vim_test_gpu.log"
    ls "$BUILD"/tests/vim_test* "$BUILD"/bin/vim_test* 2>/dev/null
  fi
  for shape in tiny small; do
    for dt in f32 bf16; do
      "$BUILD/bin/mambacpp" classify --bench --device cuda --shape $shape --dtype $dt --bench-batch 1 64 --iters 10 2>&1 |
        tail -4 | tee -a "$OUT/vim_classify_gpu.log"
    done
  done
  mark vim
fi

if want serve; then
  export SERVE_GEN=${SERVE_GEN:-128}
  need 300
  serve_bench
  mark serve
fi

if want turns; then  # issue 12's 32K multi-turn chat on the GPU: the 129M bench model (TURNS_MODELS)
  need 200
  sb=(python3 "$ROOT/scripts/serve_bench.py" --bin "$BUILD/bin/mambacpp" --json "$OUT/serve_turns.jsonl" --log-dir "$OUT")
  [ -f /tmp/sb/m129/model.safetensors ] || "${sb[@]}" -t 16 make-model /tmp/sb/m129 --train-args "--device cuda" 2>&1 | tail -1
  models=${TURNS_MODELS:-m129}  # m13b: the 1.3B one too
  [[ $models != *m13b* ]] || [ -f /tmp/sb/m13b/model.safetensors ] ||
    "${sb[@]}" -t 8 make-model /tmp/sb/m13b --d-model 2048 --n-layer 48 --train-args "--device cuda" 2>&1 | tail -1
  for m in $models; do
    "${sb[@]}" -t 8 --server-args "--device cuda --dtype bf16" multiturn -m /tmp/sb/$m --turns 10 \
      --user-tokens 3200 --reply-tokens 32 2>&1 | tail -30 | tee "$OUT/serve_multiturn_gpu_$m.log"
  done
  mark turns
fi

if want servecpu; then  # issue 12's CPU throughput at 1/8/32/128 streams, on this machine's 16 cores
  need 150
  serve_cpu 2>&1 | grep -E "^\||^streams" | tail -12
  mark servecpu
fi

if want llama && [ ! -d "$ROOT/.device_llama/llama.cpp" ]; then
  echo "=== llama: .device_llama not carried"
elif want llama; then
  need 400
  cp docs/benchmarks.md "$OUT/benchmarks.md"
  KIT=$ROOT/.device_llama WORK=/tmp/llc MAMBACPP_BIN=$BUILD/bin/mambacpp DOC=$OUT/benchmarks.md THREADS=2,16 \
    timeout "$(left)" scripts/llamacpp_compare.sh 2>&1 | tail -40
  cp /tmp/llc/results.json "$OUT/" 2>/dev/null
  [ -f /tmp/llc/results.json ] && mark llama
fi
echo "=== summary"
cat "$OUT/hashes_summary.txt" "$OUT/profile_summary.txt" "$OUT/trace_summary.txt" "$OUT/normtest.txt" 2>/dev/null
grep -h "cuda f32 max" "$OUT/vim_test_gpu.log" 2>/dev/null
grep -h "^streams" "$OUT/serve_concurrency_gpu.log" "$OUT/serve_concurrency_cpu.log" 2>/dev/null
grep -h "ratio\|identical" "$OUT"/serve_multiturn_gpu_*.log 2>/dev/null
# Only a few files come back from a call: everything but the arrays, packed in one (first by name).
(cd "$OUT" && find . -type f ! -name '*.npy' ! -name '0_all.tgz' -print0 | tar -czf 0_all.tgz --null -T -)
echo "ALL DONE"
