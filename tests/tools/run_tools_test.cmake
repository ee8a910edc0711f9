# kestrel-bench and kestrel-size end to end on a fixture (ctest: tools.bench_and_size).
#   cmake -DBENCH=... -DSIZE=... -DMODEL=... -DGGUF=... -P run_tools_test.cmake
# 1. kestrel-bench --json on a tiny grid parses, has every field, and its numbers are sane.
# 2. kestrel-size --json for the same session limits reports exactly the weight and session
#    bytes the benchmark's real Model and Session allocated.
# 3. On a GGUF file (llama.cpp's Q4_K_M mix), kestrel-size's default (--quant auto: the
#    file's stored formats) reports exactly the weight bytes of the benchmark's model, and
#    its per-format breakdown adds up to them.
# 4. Bad flags and over-long shapes fail with a message naming them.
cmake_minimum_required(VERSION 3.25)

function(run_ok out_var)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

function(run_fails expected)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(rc EQUAL 0)
    message(FATAL_ERROR "expected a failure: ${ARGN}")
  endif()
  string(FIND "${err}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the error of ${ARGN} does not mention '${expected}':\n${err}")
  endif()
endfunction()

function(expect_positive json)
  foreach(field IN LISTS ARGN)
    string(JSON value GET "${json}" ${field})
    if(NOT value GREATER 0)
      message(FATAL_ERROR "field ${field} = '${value}' is not positive")
    endif()
  endforeach()
endfunction()

set(batches 1 3)
set(input 12)
set(output 5)
run_ok(bench_json ${BENCH} --model ${MODEL} --threads 1 --batch 1,3 --input ${input} --output ${output}
       --warmup 1 --repeats 3 --json)
string(JSON n LENGTH "${bench_json}" cases)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "expected 2 cases, got ${n}:\n${bench_json}")
endif()
string(JSON device GET "${bench_json}" device)
if(NOT device STREQUAL "cpu")
  message(FATAL_ERROR "device '${device}'")
endif()
foreach(i RANGE 0 1)
  string(JSON c GET "${bench_json}" cases ${i})
  list(GET batches ${i} batch)
  string(JSON b GET "${c}" batch)
  string(JSON in GET "${c}" input)
  string(JSON out GET "${c}" output)
  if(NOT b EQUAL batch OR NOT in EQUAL input OR NOT out EQUAL output)
    message(FATAL_ERROR "case ${i} is ${b} x ${in} x ${out}")
  endif()
  # Timings are only checked for presence and sign: on a loaded 2-core machine a tiny
  # model's per-token time can vanish in the noise (total - context <= 0 is reported as 0).
  expect_positive("${c}" context_ms total_ms tokens_per_second weight_bytes session_bytes
                  peak_rss_bytes gen_bytes_per_step context_flop_rate)
  foreach(field per_token_ms gen_bandwidth_bytes_per_second gen_flop_rate)
    string(JSON value GET "${c}" ${field})
    if(value LESS 0)
      message(FATAL_ERROR "field ${field} = ${value} is negative")
    endif()
  endforeach()

  # The same session limits through the sizing calculator: the bench's session has
  # max_sequences = batch, max_sequence_tokens = input + output, max_step_tokens = batch x input.
  math(EXPR seq "${input} + ${output}")
  math(EXPR step "${batch} * ${input}")
  run_ok(size_json ${SIZE} --model ${MODEL} --device cpu --batch ${batch} --seq-len ${seq}
         --max-step-tokens ${step} --memory 1GiB --bandwidth 10GB/s --flops 100G --json)
  string(JSON weights GET "${size_json}" per_gpu weights)
  string(JSON kv GET "${size_json}" per_gpu kv_cache)
  string(JSON act GET "${size_json}" per_gpu activations)
  string(JSON bench_weights GET "${c}" weight_bytes)
  string(JSON bench_session GET "${c}" session_bytes)
  math(EXPR session "${kv} + ${act}")
  if(NOT weights EQUAL bench_weights OR NOT session EQUAL bench_session)
    message(FATAL_ERROR "kestrel-size says weights ${weights}, session ${session}; "
                        "the real Model / Session hold ${bench_weights}, ${bench_session}")
  endif()
  string(JSON fits GET "${size_json}" fits)
  if(NOT fits)
    message(FATAL_ERROR "a tiny fixture does not fit 1 GiB?\n${size_json}")
  endif()
  expect_positive("${size_json}" max_sequences_that_fit)
  string(JSON roofline GET "${size_json}" roofline)
  expect_positive("${roofline}" decode_step_seconds context_step_seconds)
endforeach()

# A shape given as flags sizes exactly as the preset of the same dimensions.
run_ok(dims_json ${SIZE} --arch llama --layers 22 --hidden 2048 --heads 32 --kv-heads 4 --ffn 5632 --vocab 32000
       --max-positions 2048 --tied false --tp 2 --pp 2 --json)
run_ok(preset_json ${SIZE} --preset tinyllama-1.1b --tp 2 --pp 2 --json)
string(JSON dims_total GET "${dims_json}" per_gpu total)
string(JSON preset_total GET "${preset_json}" per_gpu total)
string(JSON parameters GET "${preset_json}" model parameters)
if(NOT dims_total EQUAL preset_total OR NOT parameters EQUAL 1100048384)
  message(FATAL_ERROR "flags give ${dims_total} bytes, the preset ${preset_total} (${parameters} parameters)")
endif()

run_ok(gguf_bench ${BENCH} --model ${GGUF} --threads 1 --batch 1 --input 4 --output 2 --warmup 1 --repeats 1 --json)
run_ok(gguf_size ${SIZE} --model ${GGUF} --device cpu --json)
string(JSON gguf_weights GET "${gguf_size}" per_gpu weights)
string(JSON gguf_bench_weights GET "${gguf_bench}" cases 0 weight_bytes)
string(JSON stored GET "${gguf_size}" options stored_formats)
if(NOT stored OR NOT gguf_weights EQUAL gguf_bench_weights)
  message(FATAL_ERROR "kestrel-size says ${gguf_weights} bytes of weights (stored formats: ${stored}); "
                      "the model kestrel-bench loaded holds ${gguf_bench_weights}")
endif()
string(JSON formats GET "${gguf_size}" stages 0 weights formats)
string(JSON n_formats LENGTH "${formats}")
math(EXPR last "${n_formats} - 1")
set(sum 0)
set(names "")
foreach(i RANGE 0 ${last})
  string(JSON name MEMBER "${formats}" ${i})
  string(JSON bytes GET "${formats}" "${name}")
  math(EXPR sum "${sum} + ${bytes}")
  list(APPEND names "${name}")
endforeach()
if(NOT sum EQUAL gguf_weights OR NOT "q4_k" IN_LIST names OR NOT "q6_k" IN_LIST names)
  message(FATAL_ERROR "formats ${formats} (sum ${sum}) do not break down ${gguf_weights} bytes of Q4_K and Q6_K")
endif()

run_fails("--batch value 0" ${BENCH} --model ${MODEL} --batch 0 --input 4 --output 2)
run_fails("exceeds the model's" ${BENCH} --model ${MODEL} --batch 1 --input 4000 --output 2)
run_fails("tensor_parallel 3" ${SIZE} --model ${MODEL} --tp 3)
run_fails("unknown preset" ${SIZE} --preset nonesuch)
message(STATUS "kestrel-bench and kestrel-size agree with the real allocations")
