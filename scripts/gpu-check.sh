#!/usr/bin/env bash
# scripts/gpu-check.sh: the whole GPU check, in one run, on a machine with an NVIDIA GPU.
#
#   1. configures a fresh Release build with the CUDA backend and builds everything;
#   2. runs every ctest test, then the CUDA tests of the kernels and models binaries
#      again on their own, counting how many ran and how many skipped (a GPU test that
#      skips on a GPU machine is a finding);
#   3. runs those CUDA tests under compute-sanitizer memcheck and racecheck;
#   4. the NCCL communicator (one rank on one GPU; tp 2 when there are two GPUs and MPI),
#      then kestrel-bench (device ceilings, latency and tokens/s at batch 1, 8, 32);
#   5. writes a summary to $OUT/gpu-summary.txt (OUT defaults to the build directory),
#      with the logs of every step beside it.
#
# Environment: BUILD_DIR (default build-gpu), OUT (default $BUILD_DIR), JOBS (default
# nproc), KESTREL_CUDA_ARCHITECTURES (default 90), SANITIZER_TIMEOUT seconds per
# sanitizer run (default 3600), BENCH_MODEL (default the SmolLM2 GGUF in models/). Exits
# non-zero when any step fails.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
build="${BUILD_DIR:-build-gpu}"
out="${OUT:-$build}"
jobs="${JOBS:-$(nproc)}"
arch="${KESTREL_CUDA_ARCHITECTURES:-90}"
sanitizer_timeout="${SANITIZER_TIMEOUT:-3600}"
cuda_filter='*Cuda*'
# racecheck follows every shared-memory access: leave out the long-sequence attention
# cases (the same kernels run there on shorter sequences).
racecheck_filter='*Cuda*:-*CudaLongAttention*'

status=0
results=()  # lines of the summary
note() { echo "== $*"; }
record() { results+=("$1"); echo "   $1"; }

# A fresh build directory every time (the logs go to OUT, which may be inside it).
rm -rf "$build"
mkdir -p "$out"
logs="$out"

# --- the device ---------------------------------------------------------------------
device="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
[[ -n "$device" ]] || device="unknown (nvidia-smi failed or is missing)"
note "device: $device"

# --- configure and build ------------------------------------------------------------
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
note "configure $build (Release, CUDA architectures $arch)"
if cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DKESTREL_ENABLE_CUDA=ON \
     -DKESTREL_CUDA_ARCHITECTURES="$arch" -DKESTREL_BUILD_TESTS=ON >"$logs/configure.log" 2>&1 &&
   grep -q "CUDA backend ON" "$logs/configure.log"; then
  record "configure: ok"
else
  record "configure: FAILED (CUDA backend not enabled or cmake failed; see configure.log)"
  status=1
fi

built=0
if (( status == 0 )); then
  note "build (-j $jobs)"
  if cmake --build "$build" -j "$jobs" >"$logs/build.log" 2>&1; then
    record "build: ok"
    built=1
  else
    record "build: FAILED (see build.log)"
    status=1
  fi
fi

# Counts per-test result lines of a gtest log (those that end with a time).
count() { grep -cE "^\[ +$1 +\] .+ \([0-9]+ ms\)$" "$2" || true; }

if (( built )); then
  # --- every test -------------------------------------------------------------------
  note "ctest"
  ctest --test-dir "$build" -j "$jobs" --output-on-failure >"$logs/ctest.log" 2>&1
  ctest_rc=$?
  ctest_line="$(grep -E "tests passed|tests failed" "$logs/ctest.log" | tail -n 1)"
  ctest_skipped="$(grep -c "(Skipped)" "$logs/ctest.log" || true)"
  record "ctest: ${ctest_line:-no summary line}, $ctest_skipped skipped (exit $ctest_rc; see ctest.log)"
  (( ctest_rc == 0 )) || status=1

  # --- the GPU tests on their own: how many ran ---------------------------------------
  for suite in kernels models; do
    bin="$build/tests/kestrel_${suite}_tests"
    log="$logs/cuda-$suite.log"
    "$bin" --gtest_filter="$cuda_filter" >"$log" 2>&1
    rc=$?
    ran=$(count OK "$log")
    failed=$(count FAILED "$log")
    skipped=$(count SKIPPED "$log")
    record "gpu tests ($suite): $ran passed, $failed failed, $skipped skipped (exit $rc; see cuda-$suite.log)"
    (( rc == 0 && failed == 0 )) || status=1
    if (( skipped > 0 )); then
      record "  skipped on a GPU machine: $(grep -m 1 -o 'no CUDA device: .*' "$log" || echo 'see the log')"
      status=1
    fi
  done

  # --- tensor / pipeline parallel over NCCL -------------------------------------------
  # One GPU: NCCL runs only as a one-rank group (the kernels test below). Two or more GPUs
  # and an MPI build: the parallel tests run as tp 2 over NCCL, one GPU per rank.
  log="$logs/nccl.log"
  "$build/tests/kestrel_kernels_tests" --gtest_filter='NcclCommunicator.*' >"$log" 2>&1
  rc=$?
  if (( $(count OK "$log") > 0 )); then
    record "nccl one-rank group: passed"
  elif (( $(count SKIPPED "$log") > 0 )); then
    record "nccl one-rank group: skipped ($(grep -m 1 -oE 'this build has no NCCL.*|no CUDA device: .*' "$log" || echo 'see nccl.log'))"
  else
    record "nccl one-rank group: FAILED (exit $rc; see nccl.log)"
    status=1
  fi
  gpus="$(nvidia-smi --list-gpus 2>/dev/null | wc -l)"
  if [[ -x "$build/tests/kestrel_parallel_tests" ]] && (( gpus >= 2 )); then
    log="$logs/parallel-cuda.log"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 1800 mpirun -np 2 \
      "$build/tests/kestrel_parallel_tests" --tp 2 --pp 1 --device cuda >"$log" 2>&1
    rc=$?
    record "parallel tp 2 over NCCL on 2 GPUs: exit $rc (see parallel-cuda.log)"
    (( rc == 0 )) || status=1
  else
    record "parallel over NCCL across GPUs: not run ($gpus GPU(s); needs 2 and an MPI build)"
  fi

  # --- compute-sanitizer ------------------------------------------------------------
  sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
  if [[ -x "$sanitizer" ]]; then
    for tool in memcheck racecheck; do
      filter="$cuda_filter"
      [[ "$tool" == racecheck ]] && filter="$racecheck_filter"
      for suite in kernels models; do
        bin="$build/tests/kestrel_${suite}_tests"
        log="$logs/sanitizer-$tool-$suite.log"
        note "compute-sanitizer --tool $tool ($suite)"
        timeout "$sanitizer_timeout" "$sanitizer" --tool "$tool" --error-exitcode 97 --print-limit 50 \
          "$bin" --gtest_filter="$filter" >"$log" 2>&1
        rc=$?
        summary_line="$(grep -E "(ERROR|RACECHECK) SUMMARY" "$log" | tail -n 1)"
        if (( rc == 124 )); then
          record "$tool ($suite): TIMEOUT after ${sanitizer_timeout}s (see sanitizer-$tool-$suite.log)"
          status=1
        elif (( rc == 0 )); then
          record "$tool ($suite): clean; ${summary_line:-no summary line}"
        else
          record "$tool ($suite): FAILED (exit $rc); ${summary_line:-no summary line} (see sanitizer-$tool-$suite.log)"
          status=1
        fi
      done
    done
  else
    record "compute-sanitizer: not found, memcheck and racecheck NOT run"
    status=1
  fi

  # --- decode benchmark ---------------------------------------------------------------
  # kestrel-bench on the default model (or $BENCH_MODEL): the device's measured ceilings and
  # the latency / tokens/s table at a few batch sizes; the full tables are in
  # docs/PERFORMANCE.md (its "Owed runs" section has the commands).
  bench_model="${BENCH_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
  note "decode benchmark (kestrel-bench on $bench_model)"
  if "$build/examples/kestrel-bench" --device cuda --model "$bench_model" --batch 1,8,32 --input 128 \
       --output 128 >"$logs/bench.txt" 2>"$logs/bench.log"; then
    record "decode benchmark: ok (bench.txt)"
    while IFS= read -r line; do record "  $line"; done < <(grep -v '^# context\|^# model MiB' "$logs/bench.txt")
  else
    record "decode benchmark: FAILED (see bench.log)"
    status=1
  fi
fi

# --- summary --------------------------------------------------------------------------
{
  echo "Kestrel GPU check"
  echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
  echo "device:  $device"
  echo "nvcc:    $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo unknown)"
  echo "build:   $build (Release, CUDA architectures $arch)"
  echo
  for line in "${results[@]}"; do echo "$line"; done
  echo
  if (( status == 0 )); then echo "result: PASS"; else echo "result: FAIL"; fi
} >"$out/gpu-summary.txt"

note "summary: $out/gpu-summary.txt"
cat "$out/gpu-summary.txt"
exit "$status"
