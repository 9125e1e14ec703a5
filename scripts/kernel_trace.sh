#!/usr/bin/env bash
# Builds bench/kernel_trace.cpp (CUPTI activity tracing, loaded by the CUDA driver through
# CUDA_INJECTION64_PATH) into OUT_SO (default /tmp/libkernel_trace.so). See the source's header.
#   scripts/kernel_trace.sh [OUT_SO]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CUDA=${CUDA_HOME:-/usr/local/cuda}
out=${1:-/tmp/libkernel_trace.so}
g++ -std=c++17 -O2 -shared -fPIC -Wall -Wextra -o "$out" "$ROOT/bench/kernel_trace.cpp" -I"$CUDA/include" \
  -L"$CUDA/targets/x86_64-linux/lib" -Wl,-rpath,"$CUDA/targets/x86_64-linux/lib" -lcupti -L"$CUDA/lib64/stubs" -lcuda
echo "$out"
