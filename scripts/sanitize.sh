#!/usr/bin/env bash
# CI's sanitizer stage (scripts/test.sh runs it after the normal tests; docs/fuzzing.md): one clang
# build with ASan + UBSan (the `fuzz` preset, build/fuzz; every sanitizer report is fatal) that
#  1. runs the unit tests of everything that reads files or requests (listed below) and the fuzz
#     regression replay under the sanitizers, and
#  2. runs every libFuzzer target for FUZZ_SECONDS (default 10) on its corpus.
# One build serves both: a second sanitizer build (the g++ `asan` preset) would add ~10 minutes and
# not fit CI's 30. MAMBACPP_SANITIZE=0 skips the stage (a quick local scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ ${MAMBACPP_SANITIZE:-1} == 0 ]] && { echo "sanitize: skipped (MAMBACPP_SANITIZE=0)"; exit 0; }
start=$(date +%s)
dir=build/fuzz
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)

# The parsers' and loaders' unit tests, the runtime (state files), the server (requests) and the
# hostile-input classes. The op and golden tests are numerics, covered by the Release run; under
# the sanitizers they would take most of CI's budget.
tests=(io_safetensors_test io_npy_test io_torch_pickle_test tokenizer_test chat_template_test runtime_test
       server_test sampler_test hostile_input_test)
cmake --preset fuzz "${launcher[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)" --target fuzzers mambacpp_fuzz_replay mamba_test_gate "${tests[@]}"
built=$(date +%s)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
regex="^($(IFS='|'; echo "${tests[*]}")|fuzz_regressions|fuzz_seeds)$"
ctest --test-dir "$dir" -R "$regex" -LE cuda -j "$(nproc)" --output-on-failure
tested=$(date +%s)

scripts/fuzz.sh --no-build --time "${FUZZ_SECONDS:-10}"
end=$(date +%s)
echo "sanitize: build $((built - start)) s, unit tests $((tested - built)) s, fuzzers $((end - tested)) s," \
  "total $((end - start)) s"
