# scripts/make-bench-models.py --tiny makes checkpoints Kestrel loads (ctest:
# tools.make_bench_models): each is sized by kestrel-size from its config alone (the shape
# and parameter count the script promises) and runs one kestrel-bench case.
#   cmake -DPYTHON=... -DSCRIPT=... -DBENCH=... -DSIZE=... -DWORK_DIR=... -P run_bench_models_test.cmake
cmake_minimum_required(VERSION 3.25)

file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(COMMAND ${PYTHON} ${SCRIPT} --tiny --writer plain --out ${WORK_DIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make-bench-models.py failed (${rc}):\n${out}\n${err}")
endif()

# name, architecture, vocab, layers, hidden, kv heads
foreach(spec "gpt2-xl;gpt2;50257;2;128;4" "llama-1.1b;llama;32000;2;128;2")
  list(GET spec 0 name)
  list(GET spec 1 arch)
  list(GET spec 2 vocab)
  list(GET spec 3 layers)
  list(GET spec 4 hidden)
  list(GET spec 5 kv_heads)
  set(model "${WORK_DIR}/${name}-tiny-random")
  execute_process(COMMAND ${SIZE} --model ${model} --json RESULT_VARIABLE rc OUTPUT_VARIABLE size_json ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "kestrel-size on ${model} failed:\n${err}")
  endif()
  foreach(pair "architecture;${arch}" "vocab;${vocab}" "layers;${layers}" "hidden;${hidden}" "kv_heads;${kv_heads}")
    list(GET pair 0 field)
    list(GET pair 1 want)
    string(JSON got GET "${size_json}" model ${field})
    if(NOT got STREQUAL want)
      message(FATAL_ERROR "${model}: ${field} = ${got}, expected ${want}")
    endif()
  endforeach()
  execute_process(COMMAND ${BENCH} --model ${model} --threads 1 --batch 2 --input 8 --output 3 --warmup 0
                          --repeats 1 --json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE bench_json ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "kestrel-bench on ${model} failed:\n${err}")
  endif()
  string(JSON tps GET "${bench_json}" cases 0 tokens_per_second)
  if(NOT tps GREATER 0)
    message(FATAL_ERROR "kestrel-bench on ${model}: tokens_per_second ${tps}")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
