#!/usr/bin/env bash
# The test command: installs what is missing, builds (CUDA kernels too when nvcc is
# present; GPU tests skip without a GPU), and runs every test under ctest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-deps.sh
cmake --preset default
cmake --build --preset default -j "$(nproc)"
ctest --preset default -j "$(nproc)" "$@"
