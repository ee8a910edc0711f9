// The FP8 tensor-core prefill (CudaBackendOptions.fp8_tensor_cores: cuBLASLt E4M3 x E4M3
// -> f32, kernels/cuda/fp8_gemm.h) against the CPU's FP8 path on the same E4M3 weights
// and the same per-token E4M3 activations: both multiply the same codes, so they agree up
// to f32 summation order. Shapes cuBLASLt's FP8 kernels do not take (M or K not a
// multiple of 16) fall back to the dequantize + cuBLAS path and must agree too; and the
// backend with the tensor cores turned off gives the same answers. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cuda_test_util.h"
#include "models/quantize.h"
#include "quant_test_util.h"

namespace kestrel {
namespace {

#ifdef KESTREL_WITH_CUDA
std::unique_ptr<Backend> fp8_backend(bool tensor_cores) {
  cuda::CudaBackendOptions options;
  options.fp8_tensor_cores = tensor_cores;
  return cuda::make_cuda_backend(0, options);
}
#endif

TEST(CudaFp8Gemm, TensorCorePrefillMatchesTheCpuFp8Path) {
  const std::string why = testing::cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
#ifdef KESTREL_WITH_CUDA
  for (bool tensor_cores : {true, false}) {
    auto gpu = fp8_backend(tensor_cores);
    for (DType dtype : {DType::f32, DType::f16, DType::bf16})
      // (M, K, T): SmolLM2's QKV and down shapes, a prompt of 9 (just past the GEMV) and of
      // 64 tokens; then M = 130 and K = 200 (not multiples of 16: the fallback).
      for (auto [M, K, T] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
               {960, 576, 9}, {576, 1536, 64}, {192, 576, 40}, {130, 576, 40}, {32, 200, 17}}) {
        SCOPED_TRACE(std::string(tensor_cores ? "tensor cores " : "dequantize ") + to_string(dtype) + " M " +
                     std::to_string(M) + " K " + std::to_string(K) + " T " + std::to_string(T));
        std::vector<float> w = testing::random_floats(M * K, 41 + M, -0.5f, 0.5f);
        w[3] = 6.0f;  // an outlier sets row 0's scale
        HostQuantizedWeight q = quantize_fp8(w.data(), M, K);
        std::vector<float> x = testing::round_to(dtype, testing::random_floats(T * K, 42 + K, -2.0f, 2.0f));
        x[K + 1] = testing::round_to(dtype, {25.0f})[0];  // an outlier in token 1
        std::vector<float> bias = testing::round_to(dtype, testing::random_floats(M, 43));
        // The CPU's FP8 path (activations rounded per token in f32, then sgemm).
        std::vector<float> want(static_cast<size_t>(T * M));
        const QuantizedWeight host = q.view();
        TensorView xv(x.data(), DType::f32, {T, K}), bv(bias.data(), DType::f32, {M}), wv(want.data(), DType::f32, {T, M});
        cpu::quantized_linear(xv, host, &bv, wv, 2, cpu::QuantKernel::tiled_gemm);

        testing::DeviceTensor data(*gpu, DType::i8, {M, K}), scales(*gpu, DType::f32, {M, 1});
        data.set_bytes(host.data.data);
        scales.set_bytes(host.scales.data);
        QuantizedWeight dev = host;
        dev.data = data;
        dev.scales = scales;
        testing::DeviceTensor x_d(*gpu, dtype, {T, K}), bias_d(*gpu, dtype, {M}), out_d(*gpu, DType::f32, {T, M});
        x_d.set(x);
        bias_d.set(bias);
        gpu->quantized_linear(x_d, dev, bias_d.ptr(), out_d);
        const std::vector<float> got = out_d.floats();
        // The same E4M3 codes on both sides (the tensor-core path rounds x from its own
        // dtype, as the CPU rounds the same values in f32); the dequantize path stores the
        // rounded activations in x's dtype first, which costs its rounding (f16 2^-11, bf16
        // 2^-8) relative to each product.
        float scale = 0.0f, err = 0.0f;
        for (size_t i = 0; i < got.size(); ++i) {
          scale = std::max(scale, std::abs(want[i]));
          err = std::max(err, std::abs(got[i] - want[i]));
        }
        const bool exact_codes = tensor_cores && M % 16 == 0 && K % 16 == 0;
        const float tol = exact_codes || dtype == DType::f32 ? 1e-4f : dtype == DType::f16 ? 2e-3f : 1.6e-2f;
        EXPECT_LE(err, tol * scale) << "max |error| " << err << " of max |logit| " << scale;
      }
  }
#endif
}

}  // namespace
}  // namespace kestrel
