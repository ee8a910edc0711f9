# Sanitizer builds, CPU only (presets asan, tsan and fuzz):
#   KESTREL_SANITIZE=address   ASan + UBSan, every UBSan finding fatal (-fno-sanitize-recover)
#   KESTREL_SANITIZE=thread    TSan
#   KESTREL_BUILD_FUZZERS=ON   clang only: ASan + UBSan plus libFuzzer's coverage
#                              instrumentation on every target (tests/fuzz links the fuzzer)
# The flags apply to every target of the project (library, tests, examples, fuzzers), and
# KESTREL_SANITIZER_FLAGS carries them to projects built by the tests (the install test's
# consumer), which must link the same runtime.
set(KESTREL_SANITIZER_FLAGS "")
if(KESTREL_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "KESTREL_BUILD_FUZZERS needs clang (libFuzzer): configure with the "
                        "`fuzz` preset or -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(KESTREL_SANITIZE AND NOT KESTREL_SANITIZE STREQUAL "address")
    message(FATAL_ERROR "KESTREL_BUILD_FUZZERS runs with ASan + UBSan; KESTREL_SANITIZE=${KESTREL_SANITIZE} conflicts")
  endif()
  set(KESTREL_SANITIZE address)
  list(APPEND KESTREL_SANITIZER_FLAGS -fsanitize=fuzzer-no-link)
endif()
if(KESTREL_SANITIZE STREQUAL "address")
  list(APPEND KESTREL_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all)
elseif(KESTREL_SANITIZE STREQUAL "thread")
  list(APPEND KESTREL_SANITIZER_FLAGS -fsanitize=thread)
elseif(KESTREL_SANITIZE)
  message(FATAL_ERROR "KESTREL_SANITIZE=${KESTREL_SANITIZE}: expected address, thread or empty")
endif()
if(KESTREL_SANITIZE)
  if(KESTREL_ENABLE_CUDA)
    message(FATAL_ERROR "sanitizer builds are CPU only: add -DKESTREL_ENABLE_CUDA=OFF")
  endif()
  list(APPEND KESTREL_SANITIZER_FLAGS -fno-omit-frame-pointer)
  add_compile_options(${KESTREL_SANITIZER_FLAGS})
  # The fuzzer-no-link flag is for compiling only; the fuzzers link -fsanitize=fuzzer.
  set(_link_flags ${KESTREL_SANITIZER_FLAGS})
  list(REMOVE_ITEM _link_flags -fsanitize=fuzzer-no-link)
  add_link_options(${_link_flags})
  message(STATUS "kestrel: sanitizers (${KESTREL_SANITIZE}): ${KESTREL_SANITIZER_FLAGS}")
endif()
