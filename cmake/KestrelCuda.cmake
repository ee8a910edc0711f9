# The CUDA backend: built when KESTREL_ENABLE_CUDA is on and nvcc is found, left out
# cleanly otherwise (the runtime then reports that CUDA is unavailable in this build).
set(KESTREL_WITH_CUDA OFF)
if(KESTREL_ENABLE_CUDA)
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(CMAKE_CUDA_ARCHITECTURES ${KESTREL_CUDA_ARCHITECTURES})
    enable_language(CUDA)
    # CMake 3.25 does not know nvcc's C++20 flag; tell it (nvcc >= 12 supports it).
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(KESTREL_WITH_CUDA ON)
    message(STATUS "kestrel: CUDA backend ON (architectures ${KESTREL_CUDA_ARCHITECTURES})")
  else()
    message(STATUS "kestrel: CUDA backend OFF (nvcc not found)")
  endif()
else()
  message(STATUS "kestrel: CUDA backend OFF (KESTREL_ENABLE_CUDA=OFF)")
endif()

function(kestrel_add_cuda_backend target)
  if(NOT KESTREL_WITH_CUDA)
    return()
  endif()
  file(GLOB_RECURSE cuda_sources CONFIGURE_DEPENDS
       ${PROJECT_SOURCE_DIR}/kernels/cuda/*.cu ${PROJECT_SOURCE_DIR}/kernels/cuda/*.cc)
  list(FILTER cuda_sources EXCLUDE REGEX "/kernels/cuda/nccl/")  # kestrel_add_parallel
  target_sources(${target} PRIVATE ${cuda_sources})
  target_compile_definitions(${target} PRIVATE KESTREL_WITH_CUDA=1)
  # -lineinfo: source lines in compute-sanitizer and profiler reports, at no run-time cost.
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo -Xcompiler=-Wall,-Wextra>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${KESTREL_WERROR}>>:-Werror=all-warnings>)
  # cuBLAS is loaded with dlopen when a CUDA backend is made (cublas_loader.h): CPU-only runs
  # never map it. Its headers are the toolkit's.
  target_link_libraries(${target} PRIVATE CUDA::cudart ${CMAKE_DL_LIBS})
endfunction()
