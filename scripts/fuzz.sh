#!/usr/bin/env bash
# Builds the libFuzzer targets (the `fuzz` preset: clang, ASan + UBSan, build/fuzz) and runs each
# on its corpus, one after another (docs/fuzzing.md).
#   scripts/fuzz.sh [--time S | --runs N] [--build-only] [--no-build] [SURFACE...]
# Default: every surface for 60 s. The corpus of a surface (build/fuzz/corpus/<surface>) starts from
# fuzz/seeds/<surface>, fuzz/regressions/<surface> and the fixtures, and keeps what the fuzzer adds.
# A crash, leak, timeout or OOM leaves its input in build/fuzz/artifacts/<surface>/ and makes the
# script fail; copy it to fuzz/regressions/<surface>/ once fixed (fuzz_regressions replays it).
# Environment: MAMBACPP_FIXTURES (default ../shared/fixtures), FUZZ_EXTRA_ARGS (more libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
budget=(-max_total_time=60)
build=1 run=1
surfaces=()
while (($#)); do
  case "$1" in
    --time) budget=(-max_total_time="$2"); shift 2 ;;
    --runs) budget=(-runs="$2"); shift 2 ;;
    --build-only) run=0; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 1 ;;
    *) surfaces+=("$1"); shift ;;
  esac
done
all=(safetensors config npy tokenizer_json tokenize state bin chat_template request gguf image vim)
((${#surfaces[@]})) || surfaces=("${all[@]}")
fixtures=${MAMBACPP_FIXTURES:-$root/../shared/fixtures}
out=build/fuzz

if ((build)); then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$root")}
  cmake --preset fuzz "${launcher[@]}" >/dev/null
  cmake --build "$out" --target fuzzers mambacpp_fuzz_replay -j "$(nproc)"
fi
((run)) || exit 0

# Per surface: the longest input worth mutating and the dictionary (JSON syntax + the format's words).
declare -A max_len=([safetensors]=4096 [config]=4096 [npy]=1024 [tokenizer_json]=8192 [tokenize]=1024
                    [state]=65536 [bin]=4096 [chat_template]=4096 [request]=2048 [gguf]=16384
                    [image]=4096 [vim]=2048)
declare -A dict=([safetensors]="json safetensors" [config]="json config" [npy]="npy" [tokenizer_json]="json tokenizer"
                 [tokenize]="tokenizer" [state]="state" [bin]="bin" [chat_template]="template" [request]="json request"
                 [gguf]="gguf" [image]="image" [vim]="json config")

seed_corpus() {  # surface dir
  local s=$1 dir=$2
  mkdir -p "$dir"
  for src in fuzz/seeds/"$s" fuzz/regressions/"$s"; do
    [[ -d $src ]] && find "$src" -maxdepth 1 -type f ! -name README.md -exec cp -n {} "$dir"/ \;
  done
  case $s in
    config) for f in "$fixtures"/*/config.json "$fixtures"/families/*/config.json; do
              [[ -f $f ]] && cp -n "$f" "$dir/fixture_$(basename "$(dirname "$f")")"; done ;;
    npy) for f in "$fixtures"/*/input_ids.npy; do [[ -f $f ]] && cp -n "$f" "$dir/fixture_$(basename "$(dirname "$f")")"; done ;;
    bin) find tests/data/torch_pickle -name '*.bin' -size -8k -exec cp -n {} "$dir"/ \; ;;
    chat_template) cp -n tests/data/chat_templates/*.jinja tests/data/chat_templates/unit/* "$dir"/ 2>/dev/null || true ;;
    state) [[ -n $(ls -A "$dir") && -f "$dir/seed_0" ]] || "$out"/fuzz/mambacpp_fuzz_replay --write-state-seeds "$dir" ;;
  esac
}

export TMPDIR=${FUZZ_TMPDIR:-$([[ -w /dev/shm ]] && echo /dev/shm || echo "${TMPDIR:-/tmp}")}
failed=0
summary=()
for s in "${surfaces[@]}"; do
  bin=$out/fuzz/fuzz_$s
  [[ -x $bin ]] || { echo "fuzz.sh: $bin not built" >&2; exit 1; }
  corpus=$out/corpus/$s artifacts=$out/artifacts/$s
  seed_corpus "$s" "$corpus"
  mkdir -p "$artifacts"
  d=$out/dict/$s.dict
  mkdir -p "$(dirname "$d")"
  : >"$d"
  for part in ${dict[$s]}; do cat fuzz/dict/"$part".dict >>"$d"; done
  log=$out/logs/$s.log
  mkdir -p "$(dirname "$log")"
  start=$(date +%s)
  set +e
  # -rss_limit_mb / -malloc_limit_mb: an allocation past the entries' 256 MiB ceiling is a finding.
  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive "$bin" "$corpus" "${budget[@]}" -max_len="${max_len[$s]}" \
    -dict="$d" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -artifact_prefix="$artifacts/" \
    -print_final_stats=1 ${FUZZ_EXTRA_ARGS:-} >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  [[ -z $execs ]] && execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  line=$(printf '%-15s rc=%d execs=%s seconds=%d corpus=%d' "$s" "$rc" "${execs:-?}" "$(( $(date +%s) - start ))" \
    "$(find "$corpus" -type f | wc -l)")
  summary+=("$line")
  echo "fuzz: $line"
  if ((rc != 0)); then
    failed=1
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -5 | sed 's/^/  /'
  fi
done
printf '%s\n' "${summary[@]}" >"$out/summary.txt"
exit $failed
