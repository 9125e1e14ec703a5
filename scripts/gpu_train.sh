#!/usr/bin/env bash
# Training-speed runs on the GPU machine (issue 13) with binaries built here: no device build.
#   scripts/gpu_train.sh prepare            # packs build/ci's mambacpp, cuda_bwd_bench (+ TESTS) into .gpu_train
#   run(command="scripts/gpu_train.sh official bwdbench train profile", carry=[".gpu_train", ".device_fixtures"])
# Phases: official (the official Triton kernels, ../shared/reference/official/bench_official.py, carried in
# .device_fixtures/official), bwdbench (our scans forward + backward, same shapes), tiny (the Table 5b
# model: base.xz's binary and this one, then packed runs), big (d768 x 24 models, bf16, 8 x 2048, both
# binaries), profile (nsys kernel summary of a Table 5b training step), tests (the carried CUDA test
# binaries, TESTS). Binaries: .gpu_train/NAME.xz unpacks to /tmp/gt/NAME (base = the binary before).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PRE=${PRE:-.gpu_train}
TESTS=${TESTS:-train_cuda_test}
if [ "${1:-}" = prepare ]; then
  mkdir -p "$PRE/runtime"
  for b in mambacpp cuda_bwd_bench; do xz -T0 -6 -c "build/ci/bin/$b" >"$PRE/$b.xz"; done
  for t in $TESTS; do
    f=$(find build/ci -name "$t" -type f -perm -u+x | head -1)
    [ -n "$f" ] && xz -T0 -6 -c "$f" >"$PRE/$t.xz"
  done
  [ -n "$(ls "$PRE"/runtime/*.deb 2>/dev/null)" ] || (cd "$PRE/runtime" && apt-get download libopenblas0-openmp \
    libopenblas0 libgomp1 libgfortran5 libquadmath0 libpcre2-8-0 libpng16-16 libjpeg62-turbo libcpp-httplib0.11 libbrotli1)
  exclude=$(git rev-parse --path-format=absolute --git-path info/exclude)
  grep -qxF "/$PRE/" "$exclude" 2>/dev/null || echo "/$PRE/" >>"$exclude"
  du -sh "$PRE" .device_fixtures
  exit 0
fi
export OUT=${OUT:-$ROOT/out}
mkdir -p "$OUT" /tmp/gt
export MAMBACPP_FIXTURES=${MAMBACPP_FIXTURES:-$ROOT/.device_fixtures}
for f in "$PRE"/*.xz; do
  n=$(basename "$f" .xz)
  [ -x /tmp/gt/$n ] || { xz -dc "$f" >/tmp/gt/$n.part && chmod +x /tmp/gt/$n.part && mv /tmp/gt/$n.part /tmp/gt/$n; }
done
if ldd /tmp/gt/mambacpp | grep -q "not found"; then
  prefix=/tmp/mambacpp-rt
  [ -f $prefix.done ] || { rm -rf $prefix && mkdir -p $prefix && for f in "$PRE"/runtime/*.deb; do dpkg -x "$f" $prefix; done; touch $prefix.done; }
  rl=$prefix/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH=$rl/openblas-pthread:$rl/openblas-openmp:$rl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
M=/tmp/gt/mambacpp
T0=$SECONDS
for phase in "$@"; do
  echo "=== $phase at $((SECONDS - T0)) s"
  case $phase in
    official)  # Triton's compiled kernels are kept in $OUT/triton_cache.tgz; carried back as $PRE/triton_cache.tgz they skip the compile
      export TRITON_CACHE_DIR=/tmp/triton_cache
      [ -f "$PRE/triton_cache.tgz" ] && mkdir -p $TRITON_CACHE_DIR && tar -xzf "$PRE/triton_cache.tgz" -C $TRITON_CACHE_DIR
      (cd "$([ -d "$PRE/official" ] && echo "$PRE/official" || echo .device_fixtures/official)" && timeout $(( ${DEADLINE:-100000} - (SECONDS - T0) < ${OFFICIAL_LIMIT:-300} ? ${DEADLINE:-100000} - (SECONDS - T0) : ${OFFICIAL_LIMIT:-300} )) python3 -u bench_official.py 2>&1 |
      grep --line-buffered -v Warning | tee "$OUT/official.log")
      [ -d $TRITON_CACHE_DIR ] && tar -czf "$OUT/triton_cache.tgz" -C $TRITON_CACHE_DIR . && du -sh "$OUT/triton_cache.tgz" ;;
    trace)  # device time per kernel (CUPTI, bench/kernel_trace.cpp): a Table 5b training run and cuda_bwd_bench
      so=$ROOT/$PRE/libkernel_trace.so
      [ -f "$so" ] || so=$(scripts/kernel_trace.sh /tmp/libkernel_trace.so)
      for model in ${TINY_MODELS:-"Mamba3 --rope data_dependent" "Mamba2"}; do
        tag=${model%% *}
        CUDA_INJECTION64_PATH=$so KERNEL_TRACE_OUT=$OUT/trace_tiny_$tag.txt timeout 120 $M train --task parity --layer $model --n-layer 1 \
          --d-model 64 --d-state 64 --min-length 3 --max-length 160 --stages 1 --steps 60 --batch 256 --lr 3e-3 --warmup 10 --device cuda \
          --eval-every 0 --eval-batches 1 --checkpoint-dir /tmp/tt_$tag --checkpoint-every 0 2>&1 | grep -E "throughput|rror"
        echo "--- trace tiny $tag"; head -40 "$OUT/trace_tiny_$tag.txt" | cut -c1-200
        for k in ${BUCKETS:-}; do  # the same run as groups of rows of similar length (--length-buckets)
          echo "--- tiny $tag --length-buckets $k"
          timeout 120 $M train --task parity --layer $model --n-layer 1 --d-model 64 --d-state 64 --min-length 3 --max-length 160 \
            --stages 1 --steps 60 --batch 256 --lr 3e-3 --warmup 10 --device cuda --eval-every 0 --eval-batches 1 \
            --checkpoint-dir /tmp/tk_${tag}_$k --checkpoint-every 0 --length-buckets $k 2>&1 | grep -E "throughput|rror"
        done
      done
      [ "${TRACE_BWD:-1}" = 1 ] || continue
      CUDA_INJECTION64_PATH=$so KERNEL_TRACE_OUT=$OUT/trace_bwd.txt timeout 200 /tmp/gt/cuda_bwd_bench ${BWD_ARGS:-} >/dev/null 2>&1
      echo "--- trace cuda_bwd_bench"; head -60 "$OUT/trace_bwd.txt" | cut -c1-200 ;;
    new)  # a branch's fused-backward binaries (new_*.xz): tests, bench, memcheck, per-kernel trace
      N=/tmp/gt
      timeout 200 $N/new_ssd_bwd_cuda_test --gtest_filter='SsdBwdCuda.Fused*' 2>&1 | grep -v "^\[ RUN\|^\[       OK" | tail -30 | tee "$OUT/new_fused_m2.log"
      timeout 200 $N/new_mamba3_scan_bwd_cuda_test --gtest_filter='*Fused*' 2>&1 | grep -v "^\[ RUN\|^\[       OK" | tail -30 | tee "$OUT/new_fused_m3.log"
      ;;
    newbench)
      N=/tmp/gt
      timeout 200 $N/new_cuda_bwd_bench --quick 2>&1 | tee "$OUT/new_bwd_bench.log"
      so=$ROOT/$PRE/libkernel_trace.so
      for w in --ssd --mamba3; do
        CUDA_INJECTION64_PATH=$so KERNEL_TRACE_OUT=$OUT/new_trace$w.txt timeout 200 $N/new_cuda_bwd_bench --quick $w >/dev/null 2>&1
        echo "--- trace new $w"; head -40 "$OUT/new_trace$w.txt" | cut -c1-200
      done
      ;;
    newcheck)  # the branch's fused tests under compute-sanitizer memcheck
      N=/tmp/gt
      cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
      [ -n "$cs" ] && timeout 120 "$cs" --tool memcheck $N/new_ssd_bwd_cuda_test --gtest_filter='SsdBwdCuda.Fused*' 2>&1 |
        grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" | head -20 | tee "$OUT/new_memcheck.log"
      [ -n "$cs" ] && timeout 120 "$cs" --tool memcheck $N/new_mamba3_scan_bwd_cuda_test --gtest_filter='*Fused*' 2>&1 |
        grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" | head -20 | tee -a "$OUT/new_memcheck.log" ;;
    graphdbg)  # why the d768 x 24 runs with --graph replay no step: the whole log
      timeout 150 $M train --graph --task text --text README.md docs/architecture.md docs/benchmarks.md --layer Mamba2 --d-model 768 \
        --n-layer 24 --d-state 128 --headdim 64 --length 2048 --batch 8 --steps 6 --warmup 0 --device cuda --dtype bf16 \
        --checkpoint-dir /tmp/tg_big --checkpoint-every 0 2>&1 | tee "$OUT/graphdbg.log" | grep -v "^step" | tail -30 ;;
    debug)  # the training crash: eager with this binary, then the graph path under memcheck
      timeout 60 $M train --task parity --layer Mamba3 --n-layer 1 --d-model 64 --d-state 64 --min-length 3 --max-length 160 \
        --stages 1 --steps 6 --batch 256 --device cuda --eval-every 0 --eval-batches 1 2>&1 | tail -3
      cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
      timeout 120 "$cs" --tool memcheck --show-backtrace device $M train --task parity --layer Mamba3 --n-layer 1 --d-model 64 \
        --d-state 64 --min-length 3 --max-length 40 --stages 1 --steps 3 --batch 16 --device cuda --graph --eval-every 0 \
        --eval-batches 1 2>&1 | head -60 | tee "$OUT/memcheck_train.log" ;;
    eager)  # this binary without graphs: the Table 5b model alone and 16 packed runs, the d768 Mamba-2 at 8 x 2048
      for runs in 1 16; do
        timeout 90 $M train --task parity --layer Mamba3 --rope data_dependent --n-layer 1 --d-model 64 --d-state 64 --min-length 3 \
          --max-length 160 --stages 1 --steps 30 --batch 256 --lr 3e-3 --warmup 10 --device cuda --eval-every 0 --eval-batches 1 \
          --runs $runs --checkpoint-dir /tmp/te_$runs 2>&1 | grep -E "throughput|rror" | tee -a "$OUT/eager.log"
      done
      timeout 120 $M train --task text --text README.md docs/architecture.md docs/benchmarks.md --layer Mamba2 --d-model 768 \
        --n-layer 24 --d-state 128 --headdim 64 --length 2048 --batch 8 --steps 6 --warmup 0 --device cuda --dtype bf16 \
        --checkpoint-dir /tmp/te_big --checkpoint-every 0 2>&1 | grep -E "throughput|memory|rror" | tee -a "$OUT/eager.log" ;;
    decodeab)  # issue 10's graph-decode gap (Mamba-1/2, 512 graph-replayed steps, DTYPES): the binaries AB_BINS
      # (/tmp/gt/NAME; "before" = 2829477, cuBLAS linked: its CUDA libraries from the toolkit), alternated, REPS times
      L=$(dirname "$(ls /usr/local/cuda/lib64/libcublas.so.* 2>/dev/null | head -1)")
      for rep in $(seq ${REPS:-2}); do
        for dt in ${DTYPES:-bf16}; do
          for b in ${AB_BINS:-before mambacpp}; do
            for m in mamba1 mamba2; do
              printf "%-10s %-5s %s\n" "$b" "$dt" "$(LD_LIBRARY_PATH=$L:${LD_LIBRARY_PATH:-} /tmp/gt/$b bench --device cuda --dtype $dt \
                --models $m --seq-len 64 --decode-tokens 512 --threads 1 2>&1 | grep -E "^\| $m|rror" | tr -s ' ' | head -1)"
            done
          done
        done
      done 2>&1 | tee "$OUT/decodeab.txt"
      [ "${TRACE:-0}" = 1 ] || continue
      for m in mamba1 mamba2; do  # per-kernel device time inside the new decode graph (CUPTI)
        CUDA_INJECTION64_PATH=$ROOT/$PRE/libkernel_trace.so KERNEL_TRACE_OUT=$OUT/trace_dec_$m.txt $M bench --device cuda \
          --dtype bf16 --models $m --seq-len 64 --decode-tokens 512 --threads 1 >/dev/null 2>&1
        echo "--- trace $m"; sed -n "1,14p" "$OUT/trace_dec_$m.txt" | cut -c1-190
      done ;;
    hashes)  # logits / one-token steps / greedy hashes of the fixtures on the GPU: HASH_BINS, f32 and bf16, diffed
      for dt in f32 bf16; do
        for b in ${HASH_BINS:-old mambacpp}; do scripts/logits_hashes.sh /tmp/gt/$b --device cuda --dtype $dt >"$OUT/hash_${b}_$dt.txt" 2>&1; done
        set -- ${HASH_BINS:-old mambacpp}
        echo "--- $dt: lines differing between $1 and $2 (of $(wc -l <"$OUT/hash_${1}_$dt.txt"))"
        diff "$OUT/hash_${1}_$dt.txt" "$OUT/hash_${2}_$dt.txt" | grep "^>" | cut -c70-
        grep -h FAILED "$OUT"/hash_*_$dt.txt
      done ;;
    optests)  # the carried test binaries (OPTESTS; cuda_tests_all = every CUDA test, GTEST_FILTER), failures in full
      cli=${CLI_PATH:-}; [ -n "$cli" ] || cli=$(strings /tmp/gt/cuda_tests_all 2>/dev/null | grep -m1 -E "^/.*/bin/mambacpp$")  # the CLI path built in
      [ -n "$cli" ] && [ ! -e "$cli" ] && mkdir -p "$(dirname "$cli")" && ln -sf $M "$cli"
      for t in ${OPTESTS:-cuda_tests_all}; do
        timeout ${OPTESTS_LIMIT:-300} /tmp/gt/$t --gtest_filter="${GTEST_FILTER:-*}" >"$OUT/optests_$t.log" 2>&1
        echo "--- $t rc $?"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]" "$OUT/optests_$t.log" | tail -30
        grep -B2 -A12 -E "Failure$" "$OUT/optests_$t.log" | head -80
      done ;;
    memcheck)  # compute-sanitizer memcheck over MEMCHECK_FILTER of cuda_tests_all
      cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
      timeout ${MEMCHECK_LIMIT:-150} "$cs" --tool memcheck /tmp/gt/cuda_tests_all --gtest_filter="${MEMCHECK_FILTER:-*}" 2>&1 |
        grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid|^\[==========\]" | head -20 | tee "$OUT/memcheck.log" ;;
    tinyab)  # the Table 5b model (Mamba-3, 1 layer, d_model 64, batch 256), eager, TINY_BINS alternated
      for rep in 1 2; do for b in ${TINY_BINS:-old mambacpp}; do
        printf "%-10s " $b; timeout 90 /tmp/gt/$b train --task parity --layer Mamba3 --rope data_dependent --n-layer 1 --d-model 64 \
          --d-state 64 --min-length 3 --max-length 160 --stages 1 --steps 60 --batch 256 --lr 3e-3 --warmup 10 --device cuda \
          --eval-every 0 --eval-batches 1 --checkpoint-dir /tmp/ta_$b --checkpoint-every 0 2>&1 | grep -E "throughput|rror" | head -2
      done; done | tee "$OUT/tinyab.txt" ;;
    bwdbench) timeout 300 /tmp/gt/cuda_bwd_bench ${BWD_ARGS:-} 2>&1 | tee "$OUT/cuda_bwd_bench.log" ;;
    fused)  # the fused tensor-core Mamba-2 backward against the exact kernel, then under memcheck
      timeout 200 /tmp/gt/ssd_bwd_cuda_test --gtest_filter='SsdBwdCuda.Fused*' 2>&1 | tee "$OUT/fused_test.log" | tail -40
      [ -x /tmp/gt/mamba3_scan_bwd_cuda_test ] && timeout 200 /tmp/gt/mamba3_scan_bwd_cuda_test --gtest_filter='Mamba3ScanBwdCuda.Fused*' 2>&1 |
        tee "$OUT/fused_m3_test.log" | grep -v "^\[ RUN\|^\[       OK" | tail -40
      cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
      [ -n "$cs" ] && timeout 100 "$cs" --tool memcheck /tmp/gt/ssd_bwd_cuda_test --gtest_filter='SsdBwdCuda.Fused*' 2>&1 |
        grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" | head -20 | tee "$OUT/fused_memcheck.log"
      [ -n "$cs" ] && timeout 100 "$cs" --tool memcheck /tmp/gt/mamba3_scan_bwd_cuda_test --gtest_filter='Mamba3ScanBwdCuda.Fused*' 2>&1 |
        grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" | head -20 | tee -a "$OUT/fused_memcheck.log" ;;
    tiny)  # the Table 5b model: the binary before (BASE, eager) and now (captured graphs), then packed runs
      for model in ${TINY_MODELS:-"Mamba3 --rope data_dependent" "Mamba2"}; do
        for bin in /tmp/gt/base $M; do
          [ -x $bin ] || continue
          g=; [ $bin = $M ] && g=--graph
          echo "--- $(basename $bin) $g parity $model d64 batch 256"
          timeout 120 $bin train $g --task parity --layer $model --n-layer 1 --d-model 64 --d-state 64 --min-length 3 --max-length 160 \
            --stages 1 --steps 100 --batch 256 --lr 3e-3 --warmup 10 --device cuda --eval-every 0 --eval-batches 1 \
            --checkpoint-dir /tmp/tb_parity --checkpoint-every 0 2>&1 | grep -E "throughput|rror|recorded" | tee -a "$OUT/tiny.log"
        done
        for runs in 16 64; do
          echo "--- packed --graph parity $model d64 batch 256 runs $runs"
          timeout 150 $M train --graph --task parity --layer $model --n-layer 1 --d-model 64 --d-state 64 --min-length 3 --max-length 160 \
            --stages 1 --steps ${PACKED_STEPS:-24} --batch 256 --lr 3e-3 --warmup 10 --device cuda --eval-every 0 --eval-batches 1 --runs $runs \
            --checkpoint-dir /tmp/tp_$runs --checkpoint-every 0 2>&1 | grep -E "throughput|rror|recorded" | tee -a "$OUT/tiny.log"
        done
      done ;;
    big)  # d768 x 24 bf16 mixed precision at batch 8 x 2048, before and now
      for layer in ${BIG_LAYERS:-Mamba2 Mamba3}; do
        for bin in ${BIG_BINS:-/tmp/gt/base $M}; do
          [ -x $bin ] || continue
          g=; [ $bin = $M ] && g=--graph
          echo "--- $(basename $bin) $g train $layer d768x24 bf16 batch 8 x ${BIG_LEN:-2048}"
          timeout 150 $bin train $g --task text --text README.md docs/architecture.md docs/benchmarks.md --layer $layer --d-model 768 \
            --n-layer 24 --d-state 128 --headdim 64 --length ${BIG_LEN:-2048} --batch 8 --steps ${TRAIN_STEPS:-6} --warmup 0 \
            --device cuda --dtype bf16 --checkpoint-dir /tmp/tb_$layer --checkpoint-every 0 2>&1 |
            grep -E "parameters|throughput|memory|rror|recorded" | tee -a "$OUT/big.log"
        done
      done ;;
    profile)
      nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys 2>/dev/null | head -1)
      [ -n "$nsys" ] || { echo "no nsys"; continue; }
      for model in "Mamba3 --rope data_dependent" "Mamba2"; do
        tag=${model%% *}
        "$nsys" profile --stats=false -o /tmp/prof_$tag --force-overwrite true ${PROFILE_BIN:-/tmp/gt/base} train --task parity --layer $model --n-layer 1 \
          --d-model 64 --d-state 64 --min-length 3 --max-length 160 --stages 1 --steps 40 --batch 256 --device cuda \
          --eval-every 0 --eval-batches 1 --checkpoint-dir /tmp/prof_ckpt --checkpoint-every 0 >/dev/null 2>&1
        "$nsys" stats --report cuda_gpu_kern_sum,cuda_api_sum --format csv /tmp/prof_$tag.nsys-rep >"$OUT/profile_$tag.csv" 2>&1
        head -30 "$OUT/profile_$tag.csv" | cut -c1-220
      done
      "$nsys" profile --stats=false -o /tmp/prof_bwd --force-overwrite true /tmp/gt/cuda_bwd_bench >/dev/null 2>&1
      "$nsys" stats --report cuda_gpu_kern_sum --format csv /tmp/prof_bwd.nsys-rep >"$OUT/profile_bwd.csv" 2>&1
      head -40 "$OUT/profile_bwd.csv" | cut -c1-220 ;;
    tests) for t in $TESTS; do [ -x /tmp/gt/$t ] && timeout 300 /tmp/gt/$t --gtest_filter="${GTEST_FILTER:-*}" 2>&1 | grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]|Failure|rror|^\[ .* \]|Expected|Which is|  Actual|recorded" | head -80; done ;;
    *) echo "unknown phase $phase" ;;
  esac
done
if [ -f "$OUT/official_bench.json" ] && [ -f "$OUT/cuda_bwd_bench.log" ]; then
  python3 scripts/training_table.py "$OUT" | tee "$OUT/training_table.md"
fi
echo "=== end at $((SECONDS - T0)) s"
