# Use ccache when it is installed: rebuilds on 2-core machines are mostly cache hits.
find_program(KESTREL_CCACHE ccache)
if(KESTREL_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${KESTREL_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${KESTREL_CCACHE})
endif()
