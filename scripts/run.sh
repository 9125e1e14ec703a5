#!/usr/bin/env bash
# Sets up, builds the release binary and runs the main job on its embedded default (no files
# needed): with no arguments, `mambacpp bench`, the end-to-end benchmark on built-in model shapes
# (`mambacpp` itself with no arguments prints usage).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake --preset release
cmake --build --preset release --target mambacpp
if [ $# -eq 0 ]; then set -- bench; fi
exec ./build/release/bin/mambacpp "$@"
