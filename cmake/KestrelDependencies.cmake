# Dependencies, all from Debian packages (scripts/install-deps.sh installs them).
find_package(PkgConfig REQUIRED)
# A folder holding Debian packages extracted with dpkg -x, for machines where they cannot be
# installed (scripts/gpu-fallback-build.sh); empty: the system's.
set(KESTREL_DEPS_ROOT "" CACHE PATH "Root of extracted Debian packages to build against")
# Prefer the OpenMP build of OpenBLAS (libopenblas-openmp-dev): it shares one thread pool
# with the CPU kernels' OpenMP regions. With the pthread build, OpenMP threads spinning
# after a region starve OpenBLAS's own threads and decode steps slow down 3-4x.
set(_openblas_openmp_pc ${KESTREL_DEPS_ROOT}/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp/pkgconfig)
if(EXISTS ${_openblas_openmp_pc}/openblas.pc)
  set(ENV{PKG_CONFIG_PATH} "${_openblas_openmp_pc}:$ENV{PKG_CONFIG_PATH}")
  # Its libopenblas.so.0 is not the one the loader finds first: keep its directory in RPATH.
  set(CMAKE_INSTALL_RPATH_USE_LINK_PATH ON)
endif()
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
message(STATUS "kestrel: OpenBLAS from ${OPENBLAS_LIBDIR}")
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
# oneDNN (libdnnl-dev): the CPU's int8 x int8 -> int32 GEMM for W8A8 prefill. Only its
# header is needed here: the library is opened at run time (kernels/cpu/w8a8_cpu.cc).
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.h HINTS ${KESTREL_DEPS_ROOT}/usr/include REQUIRED)
