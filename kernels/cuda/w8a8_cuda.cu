// kernels/cuda/w8a8_cuda.cu: W8A8's many-token path (QuantizedWeight.int8_activations):
// each token's activations quantized to int8 with one scale per token (max |x_t| / 127,
// nearest even, as the CPU's w8a8_cpu.cc), an int8 x int8 -> int32 tensor-core GEMM
// (cublasGemmEx, CUDA_R_8I / CUBLAS_COMPUTE_32I, in CudaBackend), and this epilogue:
// out[t, m] = acc[t, m] x_scale[t] w_scale[m] (+ bias[m]).
#include <algorithm>

#include "cuda/cuda_common.cuh"
#include "cuda/scaled_epilogue.cuh"

namespace kestrel::cuda {

namespace {

constexpr int kQuantizeThreads = 256;

// One block per row of x [T, K]: q[t, :] = round(x[t, :] / s_t), s_t = max |x[t, :]| / 127.
template <class X>
__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_rows_int8_kernel(const X* __restrict__ x, int8_t* __restrict__ q, float* __restrict__ scales, int64_t T,
                              int64_t K) {
  __shared__ float scratch[32];
  for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
    const X* row = x + t * K;
    float amax = 0.0f;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) amax = fmaxf(amax, fabsf(to_float(row[k])));
    amax = block_max<kQuantizeThreads>(amax, scratch);
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    if (threadIdx.x == 0) scales[t] = amax / 127.0f;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
      const int v = __float2int_rn(to_float(row[k]) * inv);  // |x| <= amax: within [-127, 127]
      q[t * K + k] = static_cast<int8_t>(max(-127, min(127, v)));
    }
  }
}

}  // namespace

void quantize_rows_int8(const LaunchContext& ctx, const TensorView& x, int8_t* q, float* scales) {
  const char* op = "quantized_linear (W8A8 activations)";
  const int64_t T = x.dim(0), K = x.dim(1);
  if (T == 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(T, 65535));
  dispatch_float(x.dtype, op, [&]<class X>() {
    quantize_rows_int8_kernel<X><<<blocks, kQuantizeThreads, 0, ctx.stream>>>(static_cast<const X*>(x.data), q,
                                                                               scales, T, K);
  });
  check_launch(op);
}

void w8a8_epilogue(const LaunchContext& ctx, const int32_t* acc, const float* x_scales, const float* w_scales,
                   const TensorView* bias, TensorView out) {
  launch_scaled_epilogue(ctx, acc, x_scales, w_scales, bias, out, "quantized_linear (W8A8 epilogue)");
}

}  // namespace kestrel::cuda
