#!/usr/bin/env bash
# Sets up, builds (CI preset: -Werror, CUDA compiled when nvcc exists) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake --preset ci
cmake --build --preset ci
scripts/check_format.sh
ctest --preset ci -j "$(nproc)"
