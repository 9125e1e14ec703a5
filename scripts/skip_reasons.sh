#!/usr/bin/env bash
# Lists each skipped CTest entry of the last run in build folder $1 with the reason it printed
# (tests/support/test_gate.cpp's line for a CUDA test without a device, else gtest's skip message).
set -euo pipefail
log=${1:-build/ci}/Testing/Temporary/LastTest.log
[ -f "$log" ] || exit 0
awk '
  /^[0-9]+\/[0-9]+ Test: / { name = $3; next }
  / skipped: / && name != "" && !(name in why) { sub(/^[^ ]+ skipped: /, ""); why[name] = $0; order[++n] = name; next }
  /: Skipped$/ { grab = 1; next }
  grab { grab = 0; if (name != "" && !(name in why)) { why[name] = $0; order[++n] = name } }
  END {
    if (n == 0) exit
    printf "skipped, with the reason each gave (%d):\n", n
    for (i = 1; i <= n; ++i) printf "  %-34s %s\n", order[i], why[order[i]]
  }' "$log"
