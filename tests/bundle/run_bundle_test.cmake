# ctest bundle.scrubbed_env: the GPU bundle (scripts/gpu-bundle.sh) packed from this build
# tree, unpacked into a fresh folder and run with a scrubbed environment (env -i: no
# LD_LIBRARY_PATH, no KESTREL_* variables but the fixture folder), so that a library missing from the bundle, or a
# path into the source or build tree, fails here rather than on the GPU machine.
# Runs the bundle's own checks: `libraries` (every library from the bundle, or one the bundle
# leaves to the machine) and `cpu` (the CPU tests of the three suites, from the bundle).
# Variables: SOURCE_DIR, BUILD_DIR, WORK_DIR.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}/unpacked")

execute_process(COMMAND "${SOURCE_DIR}/scripts/gpu-bundle.sh" --no-build --build-dir "${BUILD_DIR}"
                        --out "${WORK_DIR}/kestrel-gpu-bundle.tar.gz"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gpu-bundle.sh failed (${rc}):\n${out}\n${err}")
endif()
message(STATUS "${out}")

execute_process(COMMAND ${CMAKE_COMMAND} -E tar xzf "${WORK_DIR}/kestrel-gpu-bundle.tar.gz"
                WORKING_DIRECTORY "${WORK_DIR}/unpacked" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cannot unpack the bundle (${rc})")
endif()
set(bundle "${WORK_DIR}/unpacked/kestrel-gpu-bundle")
foreach(part run.sh MANIFEST PROVIDED bin/kestrel-bench bin/kestrel_kernels_tests lib/libkestrel.so.0
        fixtures/tiny-llama/config.json)
  if(NOT EXISTS "${bundle}/${part}")
    message(FATAL_ERROR "the bundle has no ${part}")
  endif()
endforeach()

# The CPU tests read every fixture; the bundle carries only what the CUDA tests read.
execute_process(COMMAND env -i PATH=/usr/bin:/bin HOME=${WORK_DIR} OUT=${WORK_DIR}/out
                        KESTREL_FIXTURE_DIR=${SOURCE_DIR}/tests/fixtures "${bundle}/run.sh" libraries cpu
                WORKING_DIRECTORY "${WORK_DIR}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "${out}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the bundle's run.sh libraries cpu failed (${rc}):\n${err}")
endif()
file(READ "${WORK_DIR}/out/summary.txt" summary)
foreach(needle "libraries: all resolved" "cpu-unit: " "cpu-kernels: " "cpu-models: " "result: PASS")
  string(FIND "${summary}" "${needle}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the bundle's summary lacks '${needle}':\n${summary}")
  endif()
endforeach()
if(summary MATCHES "cpu-[a-z]+: 0 passed")
  message(FATAL_ERROR "a suite ran no test from the bundle:\n${summary}")
endif()
