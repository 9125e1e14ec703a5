#!/usr/bin/env bash
# Installs the Debian 12 packages mambacpp builds with (run as root or with sudo available).
# CUDA is optional: the CUDA backend is compiled when /usr/local/cuda/bin/nvcc exists.
set -euo pipefail
packages=(
  build-essential g++ cmake ninja-build pkg-config git
  libopenblas-openmp-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev clang-format
  libpng-dev libjpeg62-turbo-dev  # image input of the vision models (docs/vision.md)
  clang libclang-rt-14-dev libomp-dev  # the sanitizer stage: libFuzzer, ASan + UBSan (scripts/sanitize.sh)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi
echo "setup: all build dependencies are installed"
