#!/usr/bin/env bash
# The main job: sets up (apt packages), builds the release binary and, with no arguments, runs the
# demonstration on its embedded default (scripts/demo.sh, a few minutes on 2 cores, no downloads):
# train a byte-level Mamba-3 on the bundled data/kjv_genesis.txt with a live progress line, plot its
# loss (out/demo/loss.png), generate from it, continue a saved state in a second process, benchmark
# (median and range of repeated runs). With arguments, runs `mambacpp ARGS...` instead
# (`scripts/run.sh bench` is the full benchmark; `mambacpp` alone prints usage).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake --preset release
cmake --build --preset release --target mambacpp
if [ $# -eq 0 ]; then exec ./scripts/demo.sh; fi
exec ./build/release/bin/mambacpp "$@"
