#!/usr/bin/env bash
# The first command on a fresh machine: installs what is missing, builds, and runs
# kestrel-generate on the default model. Extra arguments go to kestrel-generate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-deps.sh
cmake --preset default > /dev/null
cmake --build --preset default -j "$(nproc)" --target kestrel-generate
if (( $# == 0 )); then
  set -- --prompt "The quick brown fox" --max-new-tokens 32
fi
exec ./build/examples/kestrel-generate "$@"
