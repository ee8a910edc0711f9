#include "cuda/cublas_loader.h"

#include <string>

#include "cuda/dl_library.h"

namespace kestrel::cuda {

namespace {

CublasApi load() {
  const std::string library = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* lib = open_library(library, "cuBLAS " + std::to_string(CUBLAS_VER_MAJOR) + ", from the CUDA toolkit");
  CublasApi api{};
  resolve(lib, "cublasCreate_v2", library, &api.create);
  resolve(lib, "cublasDestroy_v2", library, &api.destroy);
  resolve(lib, "cublasSetStream_v2", library, &api.set_stream);
  resolve(lib, "cublasSetWorkspace_v2", library, &api.set_workspace);
  resolve(lib, "cublasGemmEx", library, &api.gemm_ex);
  resolve(lib, "cublasGetStatusString", library, &api.status_string);
  return api;  // the library stays loaded for the process
}

}  // namespace

const CublasApi& cublas_api() {
  static const CublasApi api = load();  // a throw leaves it unset: the next call tries again
  return api;
}

}  // namespace kestrel::cuda
