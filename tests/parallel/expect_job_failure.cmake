# Runs a parallel job that must fail: it has to end by itself (no hang) within
# LIMIT seconds, with a non-zero status and output matching EXPECT.
#   cmake "-DCOMMAND=mpirun|-np|2|..." -DEXPECT=regex -DLIMIT=60 -P expect_job_failure.cmake
string(REPLACE "|" ";" COMMAND "${COMMAND}")
string(TIMESTAMP start "%s")
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT ${LIMIT})
string(TIMESTAMP end "%s")
math(EXPR took "${end} - ${start}")
message("${out}${err}")
if(status MATCHES "timeout|Process terminated")
  message(FATAL_ERROR "the job hung: still running after ${LIMIT} s")
endif()
if(status EQUAL 0)
  message(FATAL_ERROR "the job succeeded but should have failed")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "the output does not match '${EXPECT}'")
endif()
message("job failed as expected in ${took} s (status ${status})")
