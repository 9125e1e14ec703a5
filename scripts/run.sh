#!/usr/bin/env bash
# Sets up, builds the release binary and runs the main job on its embedded default (no files
# needed): `mambacpp` with no arguments = the end-to-end benchmark on built-in model shapes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake --preset release
cmake --build --preset release --target mambacpp
exec ./build/release/bin/mambacpp "$@"
