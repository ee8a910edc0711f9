#!/usr/bin/env bash
# The first command on a fresh machine: installs what is missing (and fetches the default
# model, SmolLM2-135M-Instruct), builds, and asks kestrel-generate a question through the
# model's chat template. Extra arguments go to kestrel-generate instead.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-deps.sh
cmake --preset default > /dev/null
cmake --build --preset default -j "$(nproc)" --target kestrel-generate kestrel-chat
if (( $# == 0 )); then
  set -- --prompt "What is the capital of France?" --max-new-tokens 64
fi
exec ./build/examples/kestrel-generate "$@"
