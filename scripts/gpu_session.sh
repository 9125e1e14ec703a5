#!/usr/bin/env bash
# One device call that does as much as fits in its limit (LIMIT seconds, default 570): the
# before/after check of scripts/gpu_ab.sh (BASE_SRC against this tree: CUDA tests, golden logits, hashes,
# bench), then, in the time left, the server phases of scripts/gpu_check.sh on this tree's build.
#   scripts/gpu_session.sh BASE_SRC [gpu_check phases, default: serve servecpu serveturns]
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIMIT=${LIMIT:-570}
base=$1; shift
phases=${*:-serve servecpu serveturns}
export OUT=${OUT:-$ROOT/gpu_check_out}
export BUILD_BASE=${BUILD_BASE:-$ROOT/build/ab-base} BUILD_HEAD=${BUILD_HEAD:-$ROOT/build/ab-head}
timeout $((LIMIT - 20)) "$ROOT/scripts/gpu_ab.sh" "$base" test golden hashes bench
for phase in $phases; do
  left=$((LIMIT - SECONDS))
  [ $left -gt 45 ] || { echo "=== $phase: not run ($left s left)"; continue; }
  echo "=== $phase ($left s left)"
  BUILD=$BUILD_HEAD timeout $((left - 10)) "$ROOT/scripts/gpu_check.sh" $phase 2>&1 | tail -40
done
echo "session: $SECONDS s"
