// kernels/cuda/cublaslt_loader.h: cuBLASLt, loaded when the FP8 tensor-core GEMM first
// needs it (as cublas_loader.h loads cuBLAS: libkestrel never links it, so CPU-only runs
// and CUDA runs without FP8 weights do not map it).
#pragma once

#include <cublasLt.h>

namespace kestrel::cuda {

// The cuBLASLt functions the FP8 GEMM (fp8_gemm_cuda.cc) calls.
struct CublasLtApi {
  cublasStatus_t (*create)(cublasLtHandle_t*);
  cublasStatus_t (*destroy)(cublasLtHandle_t);
  cublasStatus_t (*matmul_desc_create)(cublasLtMatmulDesc_t*, cublasComputeType_t, cudaDataType_t);
  cublasStatus_t (*matmul_desc_destroy)(cublasLtMatmulDesc_t);
  cublasStatus_t (*matmul_desc_set_attribute)(cublasLtMatmulDesc_t, cublasLtMatmulDescAttributes_t, const void*, size_t);
  cublasStatus_t (*matrix_layout_create)(cublasLtMatrixLayout_t*, cudaDataType, uint64_t, uint64_t, int64_t);
  cublasStatus_t (*matrix_layout_destroy)(cublasLtMatrixLayout_t);
  cublasStatus_t (*preference_create)(cublasLtMatmulPreference_t*);
  cublasStatus_t (*preference_destroy)(cublasLtMatmulPreference_t);
  cublasStatus_t (*preference_set_attribute)(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t,
                                             const void*, size_t);
  cublasStatus_t (*algo_get_heuristic)(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
                                       cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                       cublasLtMatmulPreference_t, int, cublasLtMatmulHeuristicResult_t*, int*);
  cublasStatus_t (*matmul)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void*, const void*, cublasLtMatrixLayout_t,
                           const void*, cublasLtMatrixLayout_t, const void*, const void*, cublasLtMatrixLayout_t, void*,
                           cublasLtMatrixLayout_t, const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t);
  const char* (*status_string)(cublasStatus_t);
};

// Loads libcublasLt.so.<major> on first use; thread-safe. Throws Error(device) naming the
// library or the symbol when it cannot.
const CublasLtApi& cublaslt_api();

}  // namespace kestrel::cuda
