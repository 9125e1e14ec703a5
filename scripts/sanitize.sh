#!/usr/bin/env bash
# CI's sanitizer stage (scripts/test.sh runs it after the normal tests; docs/fuzzing.md): one clang
# build with ASan + UBSan (the `fuzz` preset, build/fuzz; every sanitizer report is fatal) that
#  1. runs the CPU unit and golden tests (every op against its naive reference, the models against
#     their fixtures, the parsers, the runtime, the server, the trainer) and the fuzz regression
#     replay under the sanitizers, and
#  2. runs every libFuzzer target for FUZZ_SECONDS (default 10) on its corpus.
# Left to the Release run: the tests that drive the CLI binary in subprocesses (generate_cli,
# cli_flags, cli_report, train_cli, crash_safety: minutes of model runs each, already covered
# in-process by the tests above) and the layering probes (compile-only).
# MAMBACPP_SANITIZE=0 skips the stage (a quick local scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ ${MAMBACPP_SANITIZE:-1} == 0 ]] && { echo "sanitize: skipped (MAMBACPP_SANITIZE=0)"; exit 0; }
start=$(date +%s)
dir=build/fuzz
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)

cli_tests="generate_cli_test|cli_flags_test|cli_report_test|train_cli_test|crash_safety_test"
cmake --preset fuzz "${launcher[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"  # everything: the fuzzers, the replay and the test binaries
built=$(date +%s)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
ctest --test-dir "$dir" -LE "cuda|layering" -E "^($cli_tests)$" -j "$(nproc)" --timeout 900 --output-on-failure
tested=$(date +%s)

scripts/fuzz.sh --no-build --time "${FUZZ_SECONDS:-10}"
end=$(date +%s)
echo "sanitize: build $((built - start)) s, unit tests $((tested - built)) s, fuzzers $((end - tested)) s," \
  "total $((end - start)) s"
