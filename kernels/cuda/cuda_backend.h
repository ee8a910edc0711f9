// kernels/cuda/cuda_backend.h: CUDA backend entry points beyond backend.h, for tests and
// tools. Plain C++ (no CUDA headers), so code built without nvcc can include it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend.h"

namespace kestrel::cuda {

struct CudaBackendOptions {
  // Multi-block mode of masked_attention (keys of one sequence split over several blocks):
  // 0 = chosen per call (long sequences with few sequence x head blocks), -1 = never,
  // N > 0 = always, with partitions of N positions.
  int masked_attention_partition = 0;
  // FP8 E4M3 weights with more than kQuantGemvMaxTokens tokens: multiply on the FP8 tensor
  // cores (cuBLASLt, fp8_gemm.h) where the device (sm_89 or newer) and the shape (K and M
  // multiples of 16) allow; false, or otherwise, the activations rounded to E4M3 in their
  // own dtype and the weights dequantized for cublasGemmEx.
  bool fp8_tensor_cores = true;
};

// The backend of make_cuda_backend(device_index), with options.
std::unique_ptr<Backend> make_cuda_backend(int device_index, const CudaBackendOptions& options);

// sampling_uniform(seeds[i], steps[i]) evaluated by the device code of the sampling kernel,
// so tests can check it against the host function bit for bit.
std::vector<double> device_sampling_uniform(int device_index, const std::vector<uint64_t>& seeds,
                                            const std::vector<uint64_t>& steps);

}  // namespace kestrel::cuda
