#!/usr/bin/env bash
# Sets up, builds (CI preset: -Werror, CUDA compiled when nvcc exists) and runs the test suite.
# Tests that cannot run here (no GPU, no fixtures, an optional tool absent) are reported by CTest
# as skipped; the reasons they printed are listed after its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake --preset ci
cmake --build --preset ci
scripts/check_format.sh
status=0
ctest --preset ci -j "$(nproc)" || status=$?
scripts/skip_reasons.sh build/ci
exit "$status"
