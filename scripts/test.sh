#!/usr/bin/env bash
# Sets up, builds (CI preset: -Werror, CUDA compiled when nvcc exists) and runs the test suite.
# Tests that cannot run here (no GPU, no fixtures, an optional tool absent) are reported by CTest
# as skipped; the reasons they printed are listed after its summary. Then the sanitizer stage
# (scripts/sanitize.sh; MAMBACPP_SANITIZE=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake --preset ci
cmake --build --preset ci
scripts/check_format.sh
status=0
ctest --preset ci -j "$(nproc)" || status=$?
scripts/skip_reasons.sh build/ci
# ASan + UBSan unit tests of the input surfaces and a short run of every fuzzer (docs/fuzzing.md).
scripts/sanitize.sh || status=$?
exit "$status"
