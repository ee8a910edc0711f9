// kernels/cuda/fp8_gemm.h: FP8 E4M3 x E4M3 GEMM on Hopper's (and Ada's) FP8 tensor cores
// through cuBLASLt, for the prefill of fp8_e4m3 weights (CudaBackend::quantized_linear).
//
// acc [T, M] f32 = q [T, K] x w [M, K]^T, both operands E4M3 bytes row-major. In cuBLASLt's
// column-major terms that is D (M x T, ld M) = op(A) B with A = w read as K x M (ld K,
// transposed: FP8 needs the "TN" layout) and B = q as K x T (ld K), f32 compute and output,
// no scale pointers (1): the per-token and per-channel scales and the bias are applied
// afterwards by fp8_epilogue (fp8_gemm_cuda.cu), in f32.
// cuBLASLt is opened on first use (cublaslt_loader.h). Shapes it does not take (K or M not
// a multiple of 16, no algorithm found) and devices without FP8 tensor cores (before
// sm_89) report unusable, and the caller keeps its dequantize + cuBLAS path.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace kestrel::cuda {

class Fp8Gemm {
 public:
  explicit Fp8Gemm(int device) : device_(device) {}
  ~Fp8Gemm();
  Fp8Gemm(const Fp8Gemm&) = delete;
  Fp8Gemm& operator=(const Fp8Gemm&) = delete;

  // Whether the device and the shape allow the FP8 GEMM (loads cuBLASLt the first time);
  // why_not() says why not when the device or library is the reason.
  bool usable(int64_t M, int64_t K);
  const std::string& why_not() const { return why_not_; }
  // Enqueues acc = q w^T on `stream`; false (nothing enqueued) when cuBLASLt finds no
  // algorithm for the shape. Throws Error(device) when cuBLASLt fails.
  bool run(cudaStream_t stream, const void* w, const void* q, float* acc, int64_t T, int64_t M, int64_t K);

 private:
  bool open();
  int device_;
  int state_ = 0;  // 0: not tried, 1: ready, -1: unusable (why_not_)
  std::string why_not_;
  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;
  static constexpr size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt's recommendation for Hopper
};

}  // namespace kestrel::cuda
