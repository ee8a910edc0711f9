#!/usr/bin/env bash
# The CPU test suite under ASan + UBSan (preset `asan`: -O1 with asserts, every UBSan
# finding fatal, leaks reported), or the concurrency tests under TSan (preset `tsan`).
#   scripts/sanitize.sh [asan|tsan] [ctest arguments...]
# Both presets compile with clang 14 (about 2.5 times faster than g++ under ASan).
# CI (scripts/test.sh) runs `scripts/sanitize.sh asan`: the whole CPU suite, with every
# time limit four times the plain one (docs/RELIABILITY.md). MPI is off in these builds
# (the parallel tests run in the main build). The tsan preset builds the models tests
# and runs the Concurrency ones with OMP_NUM_THREADS=1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
preset="${1:-asan}"
shift || true
case "$preset" in asan|tsan) ;; *) echo "usage: scripts/sanitize.sh [asan|tsan] [ctest args]" >&2; exit 2 ;; esac
cmake --preset "$preset" > /dev/null
cmake --build --preset "$preset" -j "${SANITIZE_BUILD_JOBS:-2}"
ctest --preset "$preset" -j "${SANITIZE_TEST_JOBS:-2}" "$@"
