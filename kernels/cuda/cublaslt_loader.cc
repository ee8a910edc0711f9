#include "cuda/cublaslt_loader.h"

#include <dlfcn.h>

#include <string>

#include "kestrel/error.h"

namespace kestrel::cuda {

namespace {

template <class F>
void resolve(void* lib, const char* name, const std::string& library, F* out) {
  void* symbol = dlsym(lib, name);
  if (!symbol)
    throw Error(ErrorCategory::device, library + ": symbol " + name + " not found (" + dlerror() + ")");
  *out = reinterpret_cast<F>(symbol);
}

CublasLtApi load() {
  const std::string library = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    throw Error(ErrorCategory::device, "cannot load " + library + " (cuBLASLt " + std::to_string(CUBLAS_VER_MAJOR) +
                                           ", from the CUDA toolkit): " + dlerror());
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
