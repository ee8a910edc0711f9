#!/usr/bin/env bash
# The GPU check, run from an unpacked bundle (scripts/gpu-bundle.sh copies this file into it
# as run.sh) on a machine with an NVIDIA GPU, in one call of at most about 8 minutes:
#
#   run.sh [STEP ...]        default: every step, in this order
#     device      nvidia-smi, driver, nvcc, and which CUDA libraries the binaries resolved
#     tests       the CUDA tests of the kernels and models suites (*Cuda*, NcclCommunicator)
#     bench       kestrel-bench on random weights of the GPT-2-XL shape (fp16, batch 1/8/32,
#                 128 in / 128 out), after the device's measured copy and GEMM ceilings
#     memcheck    compute-sanitizer memcheck on a reduced filter of the CUDA tests
#     racecheck   compute-sanitizer racecheck on the attention and sampling tests
#     bench-llama kestrel-bench on the TinyLlama-1.1B shape (GQA, SwiGLU), same grid
#     latency     GPT-3 1.3B shape, batch 1, 128 in / 8 out (FasterTransformer's A100 figure
#                 is 36.76 ms)
#     hf          Kestrel against PyTorch transformers (eager, fp16) on random weights of the
#                 GPT-2-XL shape, batch 1 and 8, 128 in / 64 out (compare-speed-hf.py)
#     cpu         the CPU tests of the three suites (what ctest bundle.scrubbed_env runs here)
#     libraries   every library resolves: from the bundle, or (those named in PROVIDED) from
#                 the machine; part of `device` too
#   run.sh --list-libraries  prints how each library resolves, then exits
#
# Environment: OUT (default ./gpu-out) receives summary.txt and logs.tar.gz (the device tool
# returns at most 8 files); BUDGET seconds for the whole run (default 450), each step's time
# limit is the smaller of its own cap and what is left; CUDA_FILTER / MEMCHECK_FILTER /
# RACECHECK_FILTER override the gtest filters; BENCH_ARGS adds kestrel-bench options.
# The CUDA runtime, cuBLAS / cuBLASLt and NCCL come from the machine: the CUDA toolkit
# (CUDA_HOME, /usr/local/cuda*), then python3's nvidia-* wheels, then ldconfig. libstdc++
# and libgcc_s from the bundle's compat/ are used only when the machine's are too old.
# Exit status: 0 when every step that ran passed. The summary is printed last.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-$PWD/gpu-out}"
budget="${BUDGET:-450}"
started=$(date +%s)
mkdir -p "$out"
logs="$(mktemp -d)/logs"
mkdir -p "$logs"
# The bundle's fixtures (what the CUDA tests read), unless the caller names others (ctest
# bundle.scrubbed_env runs the CPU tests, which read them all, with the source tree's).
export KESTREL_FIXTURE_DIR="${KESTREL_FIXTURE_DIR:-$here/fixtures}"

status=0
results=()
record() { results+=("$1"); echo "   $1"; }
fail() { record "$1"; status=1; }
note() { echo "== $* ($(elapsed) s)"; }
elapsed() { echo $(( $(date +%s) - started )); }
# Seconds a step may take: its cap, or what is left of the budget.
limit() {
  local left=$(( budget - $(elapsed) ))
  (( left < $1 )) && echo $(( left > 0 ? left : 1 )) || echo "$1"
}

# --- libraries ------------------------------------------------------------------------
cuda_dirs=()
for d in "${CUDA_HOME:-/usr/local/cuda}"/lib64 "${CUDA_HOME:-/usr/local/cuda}"/targets/x86_64-linux/lib \
         /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [[ -d "$d" ]] && cuda_dirs+=("$d")
done
if command -v python3 >/dev/null; then
  while IFS= read -r d; do [[ -n "$d" ]] && cuda_dirs+=("$d"); done < <(
    python3 -c 'import nvidia, os
for p in nvidia.__path__:
    for dirpath, _, files in os.walk(p):
        if any(f.startswith("lib") and ".so" in f for f in files): print(dirpath)' 2>/dev/null)
fi
# Loaded with dlopen when a CUDA backend is made (kernels/cuda/cublas_loader.h), so ldd
# does not list them: found like the rest unless the loader's cache already knows them.
dlopened=()
for name in libcublas.so.13 libcublasLt.so.13; do
  ldconfig -p 2>/dev/null | grep -q "^\s*$name " || dlopened+=("$name")
done
# The directories that hold what the binaries still miss, in the order above.
resolve_libraries() {
  local path="$here/lib" missing name d
  for name in $( (LD_LIBRARY_PATH="$path" ldd "$here/lib/libkestrel.so.0" "$here"/bin/* 2>/dev/null |
                  awk '$2 == "=>" && $3 == "not" {print $1}'; printf '%s\n' "${dlopened[@]}") | sort -u); do
    for d in "${cuda_dirs[@]}"; do
      if [[ -e "$d/$name" ]]; then
        [[ ":$path:" == *":$d:"* ]] || path+=":$d"
        continue 2
      fi
    done
    missing+=" $name"
  done
  # libstdc++ / libgcc_s older than the build's: use the bundle's.
  if LD_LIBRARY_PATH="$path" ldd "$here/lib/libkestrel.so.0" "$here"/bin/kestrel_unit_tests 2>&1 |
       grep -q "version .\(GLIBCXX\|CXXABI\|GCC\)_"; then
    path+=":$here/compat"
  fi
  echo "$path"
  [[ -z "${missing:-}" ]] || echo "run.sh: not found anywhere:$missing" >&2
}
export LD_LIBRARY_PATH="$(resolve_libraries)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
list_libraries() {
  ldd "$here/lib/libkestrel.so.0" "$here"/bin/kestrel_kernels_tests |
    awk '$2 == "=>" {print $1, $3}' | sort -u
}
if [[ "${1:-}" == "--list-libraries" ]]; then
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  list_libraries
  exit 0
fi

# Every library resolves, from the bundle or, for those the bundle leaves to the machine,
# from outside it.
check_libraries() {
  local provided outside missing
  provided="$(cat "$here/PROVIDED")"
  missing="$(ldd "$here"/bin/* "$here/lib/libkestrel.so.0" 2>/dev/null | awk '$3 == "not" {print $1}' | sort -u | tr '\n' ' ')"
  outside="$(list_libraries | while read -r name path; do
               [[ "$path" == "$here"/* || "$name" =~ $provided ]] || printf '%s (%s) ' "$name" "$path"
             done)"
  if [[ -n "$missing" ]]; then fail "libraries not found: $missing"; fi
  if [[ -n "$outside" ]]; then fail "libraries from outside the bundle that the device may not have: $outside"; fi
  [[ -n "$missing$outside" ]] || record "libraries: all resolved ($(ls "$here/lib" | wc -l) from the bundle)"
}

# Counts per-test result lines of a gtest log (those that end with a time).
count() { grep -cE "^\[ +$1 +\] .+ \([0-9]+ ms\)$" "$2" || true; }

# Runs a gtest binary with a filter and a time limit; records passed / failed / skipped.
gtest_step() {  # label, cap, binary, filter [expect_no_skips]
  local label="$1" cap="$2" bin="$here/bin/$3" filter="$4" strict="${5:-1}"
  local log="$logs/$label.log" t rc
  t=$(limit "$cap")
  timeout "$t" "$bin" --gtest_filter="$filter" >"$log" 2>&1
  rc=$?
  local ok failed skipped
  ok=$(count OK "$log"); failed=$(count FAILED "$log"); skipped=$(count SKIPPED "$log")
  local line="$label: $ok passed, $failed failed, $skipped skipped (exit $rc"
  (( rc == 124 )) && line+=", TIMEOUT after ${t}s"
  line+="; $label.log)"
  if (( rc != 0 || failed > 0 )); then fail "$line"; else record "$line"; fi
  if (( failed > 0 )); then
    while IFS= read -r t; do record "  failed: $t"; done < <(grep -E '^\[  FAILED  \] .+ \([0-9]+ ms\)$' "$log" | head -n 20)
  fi
  if (( skipped > 0 && strict )); then
    fail "  $skipped skipped on a GPU machine: $(grep -m 1 -oE '(no CUDA device|this build has no NCCL)[^"]*' "$log" || echo 'see the log')"
  fi
}

sanitizer_step() {  # tool, cap, binary, filter
  local tool="$1" cap="$2" bin="$here/bin/$3" filter="$4"
  local log="$logs/$tool-$3.log" sanitizer t rc
  sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)"
  if [[ -z "$sanitizer" ]]; then
    record "$tool ($3): not run (compute-sanitizer not found)"
    return
  fi
  t=$(limit "$cap")
  timeout "$t" "$sanitizer" --tool "$tool" --error-exitcode 97 --print-limit 50 \
    "$bin" --gtest_filter="$filter" >"$log" 2>&1
  rc=$?
  local summary ran
  summary="$(grep -E "(ERROR|RACECHECK|LEAK) SUMMARY" "$log" | tail -n 1)"
  ran=$(count OK "$log")
  if (( rc == 124 )); then
    local errors
    errors=$(grep -c "^========= \(Invalid\|Race\|Error\|Program hit\)" "$log" || true)
    if (( errors > 0 )); then fail "$tool ($3): $errors reports in the $ran tests done before the ${t}s limit ($tool-$3.log)"
    else record "$tool ($3): clean in the $ran tests done before the ${t}s limit (partial; $tool-$3.log)"; fi
  elif (( rc == 0 )); then
    record "$tool ($3): clean, $ran tests; ${summary:-no summary line}"
  else
    fail "$tool ($3): FAILED (exit $rc), $ran tests; ${summary:-no summary line} ($tool-$3.log)"
  fi
}

bench_step() {  # label, cap, shape, kestrel-bench options...
  local label="$1" cap="$2" shape="$3"
  shift 3
  local t rc
  t=$(limit "$cap")
  # shellcheck disable=SC2086
  timeout "$t" "$here/bin/kestrel-bench" --synthetic "$shape" --device cuda "$@" ${BENCH_ARGS:-} \
    >"$logs/$label.txt" 2>"$logs/$label.log"
  rc=$?
  if (( rc == 0 )); then
    record "$label ($shape $*):"
    while IFS= read -r line; do record "  $line"; done <"$logs/$label.txt"
  else
    fail "$label ($shape): FAILED (exit $rc$( (( rc == 124 )) && echo ", TIMEOUT after ${t}s"); $(tail -n 1 "$logs/$label.log"))"
  fi
}

cuda_filter="${CUDA_FILTER:-*Cuda*:NcclCommunicator.*}"
memcheck_filter="${MEMCHECK_FILTER:-CudaOps/*:CudaAttention/*:CudaSampling*:CudaQuantizedLinear/*:*/CudaMixedQuantizedLinear.*/q4_kx96_q6_kx32:CudaBackendTest.*:NcclCommunicator.*}"
racecheck_filter="${RACECHECK_FILTER:-CudaAttention/*:CudaSampling*}"

steps=("$@")
(( ${#steps[@]} )) || steps=(device tests bench memcheck racecheck bench-llama latency hf)
for step in "${steps[@]}"; do
  note "$step"
  case "$step" in
    device)
      {
        nvidia-smi 2>&1
        echo
        nvcc --version 2>&1
        echo
        echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
        list_libraries
        echo
        cat "$here/MANIFEST"
      } >"$logs/device.txt"
      gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>/dev/null | head -n 1)"
      [[ -n "$gpu" ]] || { gpu="none (nvidia-smi failed or is missing)"; status=1; }
      record "device: $gpu"
      record "cuda libraries: $(list_libraries | grep -E 'libcuda|libcudart|libnccl' | awk '{printf "%s%s -> %s", sep, $1, $2; sep="; "}'); libcublas.so.13 (dlopen) from $(ldconfig -p 2>/dev/null | awk '$1 == "libcublas.so.13" {print $NF; exit}' | grep . || for d in ${LD_LIBRARY_PATH//:/ }; do [[ -e $d/libcublas.so.13 ]] && { echo "$d"; break; }; done)"
      check_libraries
      ;;
    libraries) check_libraries ;;
    tests)
      gtest_step cuda-kernels 150 kestrel_kernels_tests "$cuda_filter"
      gtest_step cuda-models 90 kestrel_models_tests "$cuda_filter"
      ;;
    bench) bench_step bench-gpt2-xl 120 gpt2-xl --dtype f16 --batch 1,8,32 --input 128 --output 128 ;;
    bench-llama) bench_step bench-tinyllama 90 tinyllama-1.1b --dtype f16 --batch 1,8,32 --input 128 --output 128 ;;
    latency) bench_step latency-gpt3-1.3b 45 gpt3-1.3b --dtype f16 --batch 1 --input 128 --output 8 --repeats 5 ;;
    hf)
      t=$(limit 150)
      if timeout "$t" python3 "$here/compare-speed-hf.py" --synthetic gpt2-xl --batch 1,8 --input 128 --output 64 \
           --repeats 2 --no-compile --kestrel-bench "$here/bin/kestrel-bench" >"$logs/hf.txt" 2>"$logs/hf.log"; then
        record "hf (Kestrel vs transformers eager, random gpt2-xl, 128 in / 64 out):"
        while IFS= read -r line; do record "  $line"; done < <(grep '^|' "$logs/hf.txt")
      else
        fail "hf: FAILED (exit $?; $(tail -n 1 "$logs/hf.log"))"
      fi
      ;;
    memcheck)
      sanitizer_step memcheck 120 kestrel_kernels_tests "$memcheck_filter"
      sanitizer_step memcheck 45 kestrel_models_tests "CudaModel/*"
      ;;
    racecheck) sanitizer_step racecheck 60 kestrel_kernels_tests "$racecheck_filter" ;;
    cpu)
      gtest_step cpu-unit 300 kestrel_unit_tests "*" 0
      gtest_step cpu-kernels 300 kestrel_kernels_tests "-*Cuda*:NcclCommunicator.*" 0
      gtest_step cpu-models 600 kestrel_models_tests "-*Cuda*" 0
      ;;
    *) fail "unknown step '$step' (device libraries tests bench memcheck racecheck bench-llama latency hf cpu)" ;;
  esac
done

{
  echo "Kestrel GPU check"
  echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  sed -n 's/^commit: /bundle:  /p; s/^built: /built:   /p' "$here/MANIFEST"
  echo "host:    $(hostname) ($(getconf _NPROCESSORS_ONLN) cores), $(elapsed) s of a ${budget} s budget, steps: ${steps[*]}"
  echo
  for line in "${results[@]}"; do echo "$line"; done
  echo
  if (( status == 0 )); then echo "result: PASS"; else echo "result: FAIL"; fi
} >"$out/summary.txt"
cp "$out/summary.txt" "$logs/"
tar -C "$(dirname "$logs")" -czf "$out/logs.tar.gz" logs
echo
cat "$out/summary.txt"
exit "$status"
