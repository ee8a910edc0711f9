// kernels/cuda/fp8_gemm_cuda.cu: the kernels around the FP8 tensor-core GEMM (fp8_gemm.h):
// each token's activations rounded to E4M3 bytes with one scale per token, and the
// epilogue that scales the f32 products back: out[t, m] = acc[t, m] x_scale[t] w_scale[m]
// (+ bias[m]).
#include <cuda_fp8.h>

#include <algorithm>

#include "cuda/cuda_common.cuh"
#include "cuda/scaled_epilogue.cuh"

namespace kestrel::cuda {

namespace {

constexpr int kQuantizeThreads = 256;

// One block per row of x [T, K]: q[t, :] = e4m3(x[t, :] * 448 / amax_t), scale_t = amax_t /
// 448, the codes round_rows_fp8 and the CPU's fake_quantize_rows_fp8 compute (round to
// nearest even, saturating).
template <class X>
__global__ void __launch_bounds__(kQuantizeThreads)
    quantize_rows_fp8_kernel(const X* __restrict__ x, __nv_fp8_storage_t* __restrict__ q, float* __restrict__ scales,
                             int64_t T, int64_t K) {
  __shared__ float scratch[32];
  for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
    const X* row = x + t * K;
    float amax = 0.0f;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) amax = fmaxf(amax, fabsf(to_float(row[k])));
    amax = block_max<kQuantizeThreads>(amax, scratch);
    const float inv = amax > 0.0f ? 448.0f / amax : 0.0f;
    if (threadIdx.x == 0) scales[t] = amax / 448.0f;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x)
      q[t * K + k] = __nv_cvt_float_to_fp8(to_float(row[k]) * inv, __NV_SATFINITE, __NV_E4M3);
  }
}

}  // namespace

void quantize_rows_fp8(const LaunchContext& ctx, const TensorView& x, uint8_t* q, float* scales) {
  const char* op = "quantized_linear (FP8 activations)";
  const int64_t T = x.dim(0), K = x.dim(1);
  if (T == 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(T, 65535));
  dispatch_float(x.dtype, op, [&]<class X>() {
    quantize_rows_fp8_kernel<X><<<blocks, kQuantizeThreads, 0, ctx.stream>>>(
        static_cast<const X*>(x.data), reinterpret_cast<__nv_fp8_storage_t*>(q), scales, T, K);
  });
  check_launch(op);
}

void fp8_epilogue(const LaunchContext& ctx, const float* acc, const float* x_scales, const float* w_scales,
                  const TensorView* bias, TensorView out) {
  launch_scaled_epilogue(ctx, acc, x_scales, w_scales, bias, out, "quantized_linear (FP8 epilogue)");
}

}  // namespace kestrel::cuda
