# Runs a command alone and as a parallel job; their standard outputs must be identical
# (only rank 0 of the job prints the generated text).
#   cmake "-DSINGLE=cmd|args" "-DPARALLEL=mpirun|-np|4|cmd|args" -P expect_same_output.cmake
string(REPLACE "|" ";" SINGLE "${SINGLE}")
string(REPLACE "|" ";" PARALLEL "${PARALLEL}")
execute_process(COMMAND ${SINGLE} RESULT_VARIABLE single_status OUTPUT_VARIABLE single_out ERROR_VARIABLE single_err
                TIMEOUT 120)
execute_process(COMMAND ${PARALLEL} RESULT_VARIABLE parallel_status OUTPUT_VARIABLE parallel_out
                ERROR_VARIABLE parallel_err TIMEOUT 120)
message("single:\n${single_out}${single_err}\nparallel:\n${parallel_out}${parallel_err}")
if(NOT single_status EQUAL 0 OR NOT parallel_status EQUAL 0)
  message(FATAL_ERROR "a run failed (single: ${single_status}, parallel: ${parallel_status})")
endif()
if(single_out STREQUAL "")
  message(FATAL_ERROR "the single run printed nothing")
endif()
if(NOT single_out STREQUAL parallel_out)
  message(FATAL_ERROR "the parallel job printed something else than the single run")
endif()
