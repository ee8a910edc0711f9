#!/usr/bin/env bash
# Builds the libFuzzer targets (CMake preset `fuzz`: clang, ASan + UBSan, CPU only) when
# needed and runs one target, or all of them one after another, for SECONDS each.
#   scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags...]
#   scripts/fuzz.sh list                     the targets
# Seeds come from the fixtures (tests/fuzz/make_seeds.py) and from tests/fuzz/corpus/TARGET
# (inputs worth keeping, committed); what a run adds goes to build-fuzz/corpus/TARGET.
# A crash, leak, sanitizer report or timeout (a single input over 10 s) stops that target
# with its input in build-fuzz/artifacts/TARGET/ and makes the script exit non-zero.
# One libFuzzer process per target (no -jobs / -fork), targets one after another.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="$root/build-fuzz"
targets=(gguf_reader safetensors config_json tokenizer_json tokenizer_gguf tokenizer_encode
         chat_template jinja request_options grammar chat_output)

usage() { echo "usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer flags]; targets: ${targets[*]}" >&2; exit 2; }
[[ "${1:-}" == "list" ]] && { printf '%s\n' "${targets[@]}"; exit 0; }
(( $# >= 2 )) || usage
which="$1" seconds="$2"
shift 2
if [[ "$which" == all ]]; then
  run=("${targets[@]}")
else
  [[ " ${targets[*]} " == *" $which "* ]] || usage
  run=("$which")
fi

if ! command -v clang++-14 > /dev/null; then
  echo "fuzz: clang++-14 is missing (scripts/install-deps.sh installs clang-14 and libclang-rt-14-dev)" >&2
  exit 1
fi
[[ -f "$build/CMakeCache.txt" ]] || cmake --preset fuzz > /dev/null
cmake --build --preset fuzz -j "${FUZZ_BUILD_JOBS:-2}"

# Leaks are findings; the allocator may refuse (rather than abort on) absurd sizes so that
# the library's own checks decide what a malformed size does.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS=1
seeds="$build/seeds"
rm -rf "$seeds"
python3 "$root/tests/fuzz/make_seeds.py" "$seeds"

status=0
for t in "${run[@]}"; do
  corpus="$build/corpus/$t" artifacts="$build/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  dirs=("$corpus" "$seeds/$t")
  [[ -d "$root/tests/fuzz/corpus/$t" ]] && dirs+=("$root/tests/fuzz/corpus/$t")
  echo "fuzz: $t for ${seconds}s"
  start=$(date +%s)
  if ! "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
       -print_final_stats=1 \
       -artifact_prefix="$artifacts/" "$@" "${dirs[@]}" > "$build/$t.log" 2>&1; then
    status=1
    echo "fuzz: $t FAILED; input in $artifacts/, log in $build/$t.log" >&2
    grep -E "ERROR|SUMMARY|Test unit written" "$build/$t.log" >&2 || tail -20 "$build/$t.log" >&2
  fi
  runs=$(grep -E "^stat::number_of_executed_units" "$build/$t.log" | awk '{s += $2} END {print s + 0}')
  echo "fuzz: $t: $runs runs in $(( $(date +%s) - start ))s"
done
exit $status
