#include "cuda/cublaslt_loader.h"

#include <string>

#include "cuda/dl_library.h"

namespace kestrel::cuda {

namespace {

CublasLtApi load() {
  const std::string library = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* lib = open_library(library, "cuBLASLt " + std::to_string(CUBLAS_VER_MAJOR) + ", from the CUDA toolkit");
  CublasLtApi api{};
  resolve(lib, "cublasLtCreate", library, &api.create);
  resolve(lib, "cublasLtDestroy", library, &api.destroy);
  resolve(lib, "cublasLtMatmulDescCreate", library, &api.matmul_desc_create);
  resolve(lib, "cublasLtMatmulDescDestroy", library, &api.matmul_desc_destroy);
  resolve(lib, "cublasLtMatmulDescSetAttribute", library, &api.matmul_desc_set_attribute);
  resolve(lib, "cublasLtMatrixLayoutCreate", library, &api.matrix_layout_create);
  resolve(lib, "cublasLtMatrixLayoutDestroy", library, &api.matrix_layout_destroy);
  resolve(lib, "cublasLtMatmulPreferenceCreate", library, &api.preference_create);
  resolve(lib, "cublasLtMatmulPreferenceDestroy", library, &api.preference_destroy);
  resolve(lib, "cublasLtMatmulPreferenceSetAttribute", library, &api.preference_set_attribute);
  resolve(lib, "cublasLtMatmulAlgoGetHeuristic", library, &api.algo_get_heuristic);
  resolve(lib, "cublasLtMatmul", library, &api.matmul);
  resolve(lib, "cublasLtGetStatusString", library, &api.status_string);
  return api;  // the library stays loaded for the process
}

}  // namespace

const CublasLtApi& cublaslt_api() {
  static const CublasLtApi api = load();  // a throw leaves it unset: the next call tries again
  return api;
}

}  // namespace kestrel::cuda
