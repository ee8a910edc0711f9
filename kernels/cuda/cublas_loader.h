// kernels/cuda/cublas_loader.h: cuBLAS, loaded when a CUDA backend first needs it.
//
// libcublas (with libcublasLt, which it loads) initializes about 140 MiB of data and code
// when it is mapped: linked into libkestrel, every CPU-only run paid that in resident
// memory. Loading it with dlopen at CUDA backend creation keeps CPU runs free of it.
#pragma once

#include <cublas_v2.h>

namespace kestrel::cuda {

// The cuBLAS functions Kestrel calls (kestrel-bench's ceiling measurement included).
struct CublasApi {
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*set_workspace)(cublasHandle_t, void*, size_t);
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                            const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
  const char* (*status_string)(cublasStatus_t);
};

// Loads libcublas.so.<major> on first use (the library's search path: LD_LIBRARY_PATH,
// the run path, ldconfig); thread-safe. Throws Error(device) naming the library or the
// symbol when it cannot.
const CublasApi& cublas_api();

}  // namespace kestrel::cuda
