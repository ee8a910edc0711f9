// kernels/cuda/scaled_epilogue.cuh: the epilogue of the 8-bit GEMMs (W8A8's int32 products,
// FP8's f32 products): out[t, m] = acc[t, m] x_scale[t] w_scale[m] (+ bias[m]), in the
// output's dtype.
#pragma once

#include "cuda/cuda_common.cuh"

namespace kestrel::cuda {

constexpr int kScaledEpilogueThreads = 256;

// One thread per output element (grid-stride).
template <class Acc, class B, class O>
__global__ void __launch_bounds__(kScaledEpilogueThreads)
    scaled_epilogue_kernel(const Acc* __restrict__ acc, const float* __restrict__ x_scales,
                           const float* __restrict__ w_scales, const B* __restrict__ bias, O* __restrict__ out,
                           int64_t n, int64_t M) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / M, m = i % M;
    float v = static_cast<float>(acc[i]) * x_scales[t] * w_scales[m];
    if (bias) v += to_float(bias[m]);
    out[i] = from_float<O>(v);
  }
}

// out [T, M] from acc [T, M] (row-major), on ctx's stream; `op` names the caller in errors.
template <class Acc>
void launch_scaled_epilogue(const LaunchContext& ctx, const Acc* acc, const float* x_scales, const float* w_scales,
                            const TensorView* bias, TensorView out, const char* op) {
  const int64_t n = out.numel(), M = out.dim(1);
  if (n == 0) return;
  const unsigned grid = grid_for(n, kScaledEpilogueThreads);
  dispatch_float(out.dtype, op, [&]<class O>() {
    if (bias) {
      dispatch_float(bias->dtype, op, [&]<class B>() {
        scaled_epilogue_kernel<Acc, B, O><<<grid, kScaledEpilogueThreads, 0, ctx.stream>>>(
            acc, x_scales, w_scales, static_cast<const B*>(bias->data), static_cast<O*>(out.data), n, M);
      });
    } else {
      scaled_epilogue_kernel<Acc, O, O><<<grid, kScaledEpilogueThreads, 0, ctx.stream>>>(
          acc, x_scales, w_scales, nullptr, static_cast<O*>(out.data), n, M);
    }
  });
  check_launch(op);
}

}  // namespace kestrel::cuda
