#!/usr/bin/env bash
# Soak test (not in CI): one Session serves many generate calls of random prompt length,
# output length and sampling options; resident memory is sampled every 250 calls and must
# stay flat after warm-up (kestrel_soak, tests/tools/soak.cc, checks it and exits non-zero
# on growth or on any error). Builds the `cpu` preset's kestrel_soak when needed.
#   scripts/soak.sh [MODEL] [CALLS] [MAX_NEW_TOKENS] [extra kestrel_soak flags]
# Defaults: the default model (models/SmolLM2-135M-Instruct.Q4_1.gguf), 10000 calls,
# 1-16 new tokens per call. The log (CSV of calls, RSS MiB, tokens; then a summary) goes
# to stdout and to build-cpu/soak.log.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
model="${1:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
calls="${2:-10000}"
max_new="${3:-16}"
shift $(( $# < 3 ? $# : 3 ))
[[ -f build-cpu/CMakeCache.txt ]] || cmake --preset cpu > /dev/null
cmake --build --preset cpu --target kestrel_soak -j "${SOAK_BUILD_JOBS:-2}" > /dev/null
echo "soak: $model, $calls calls, 1-$max_new new tokens each"
/usr/bin/time -v build-cpu/tests/kestrel_soak "$model" --calls "$calls" --max-new-tokens "$max_new" "$@" \
  2> >(grep -E "Maximum resident|Elapsed|kestrel_soak" >&2) | tee build-cpu/soak.log
