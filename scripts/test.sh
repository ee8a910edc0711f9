#!/usr/bin/env bash
# The test command: installs what is missing, builds (CUDA kernels too when nvcc is
# present; GPU tests skip without a GPU), and runs every test under ctest. Then, CPU only,
# the hardening checks (docs/RELIABILITY.md): the test suite under ASan + UBSan
# (scripts/sanitize.sh asan) and a short run of every fuzz target (scripts/fuzz.sh all,
# KESTREL_FUZZ_SECONDS each, 15 by default). KESTREL_HARDENING=0 skips those two.
# Arguments go to the main ctest run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Runs a step and says how long it took.
timed() {
  local name="$1" start=$SECONDS
  shift
  "$@"
  echo "test.sh: $name took $(( SECONDS - start )) s"
}

scripts/install-deps.sh
cmake --preset default
timed "build" cmake --build --preset default -j "$(nproc)"
timed "ctest" ctest --preset default -j "$(nproc)" "$@"
if [[ "${KESTREL_HARDENING:-1}" != 0 ]]; then
  timed "ASan + UBSan build and suite" scripts/sanitize.sh asan
  timed "fuzz smoke (build and every target)" scripts/fuzz.sh all "${KESTREL_FUZZ_SECONDS:-15}"
fi
