#!/usr/bin/env bash
# One device call with a deadline: runs `scripts/gpu_check.sh PHASES` (build, test, sanitize, ...)
# with its many logs in a scratch folder, stops it SECS seconds in, and packs every log into
# $OUT/logs.tgz (the device returns at most 8 files) beside the summary ($OUT/summary.txt).
#   scripts/gpu_call.sh SECS PHASES...
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=$1; shift
final=${OUT:?OUT must be set}
scratch=/tmp/gpu_call_logs; mkdir -p $scratch
OUT=$scratch timeout "$secs" "$ROOT/scripts/gpu_check.sh" "$@" 2>&1 | tee "$final/summary.txt"
echo "gpu_call: rc ${PIPESTATUS[0]} after $SECONDS s" | tee -a "$final/summary.txt"
tar czf "$final/logs.tgz" -C $scratch .
