#!/usr/bin/env bash
# Fails if any tracked C++/CUDA file differs from .clang-format's formatting (CI runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh' 2>/dev/null || true)
[[ -z "$files" ]] && exit 0
bad=$(clang-format --dry-run $files 2>&1 | grep -c "warning:" || true)
if [[ "$bad" != "0" ]]; then
  clang-format --dry-run $files 2>&1 | grep "warning:" | cut -d: -f1 | sort -u | sed 's/^/needs clang-format: /'
  exit 1
fi
echo "format: ok"
