// kernels/cuda/head_norm_cuda.cu: per-head RMSNorm of the q and k heads of a fused QKV row
// (Qwen3's and Gemma 3's q_norm / k_norm), and the elementwise scale and soft-cap.
#include "cuda/cuda_common.cuh"

namespace kestrel::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

// qkv: [T, (nh + 2 nkv) hd] of E, in place; q_gamma, k_gamma: [hd] of E.
// Thread mapping: one warp per (token, head) over the nh + nkv q and k heads of each token,
// heads grid-stride over warps; a lane strides over the head's hd elements, reads back only
// its own elements after the warp-shuffle sum, so no barrier is needed. Statistics in fp32.
template <class E>
__global__ void __launch_bounds__(kThreads)
    head_norm_kernel(E* qkv, const E* q_gamma, const E* k_gamma, int64_t n_tokens, int nh, int nkv, int hd,
                     float q_eps, float k_eps) {
  const int lane = threadIdx.x % 32;
  const int64_t heads_per_token = nh + nkv;
  const int64_t width = static_cast<int64_t>(nh + 2 * nkv) * hd;
  const int64_t n_items = n_tokens * heads_per_token;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; item < n_items;
       item += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t t = item / heads_per_token;
    const int h = static_cast<int>(item % heads_per_token);  // < nh: a q head, else k head h - nh
    const bool is_q = h < nh;
    E* x = qkv + t * width + static_cast<int64_t>(h) * hd;
    const E* gamma = is_q ? q_gamma : k_gamma;
    float sq = 0.0f;
    for (int d = lane; d < hd; d += 32) {
      const float v = to_float(x[d]);
      sq += v * v;
    }
    const float inv = rsqrtf(warp_sum(sq) / hd + (is_q ? q_eps : k_eps));
    for (int d = lane; d < hd; d += 32) x[d] = from_float<E>(to_float(x[d]) * inv * to_float(gamma[d]));
  }
}

// x: n elements of E, in place; one thread per element, grid-stride.
template <class E>
__global__ void scale_kernel(E* x, int64_t n, float factor) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = from_float<E>(to_float(x[i]) * factor);
}

template <class E>
__global__ void soft_cap_kernel(E* x, int64_t n, float cap) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] = from_float<E>(tanhf(to_float(x[i]) / cap) * cap);
}

}  // namespace

void head_norm(const LaunchContext& ctx, TensorView qkv, int nh, int nkv, int hd, const NormParams& q_norm,
               const NormParams& k_norm) {
  const int64_t T = qkv.dim(0);
  if (T == 0) return;
  dispatch_float(qkv.dtype, "head_norm", [&]<class E>() {
    head_norm_kernel<E><<<grid_for(T * (nh + nkv), kWarpsPerBlock, 65535), kThreads, 0, ctx.stream>>>(
        static_cast<E*>(qkv.data), static_cast<const E*>(q_norm.gamma.data),
        static_cast<const E*>(k_norm.gamma.data), T, nh, nkv, hd, q_norm.eps, k_norm.eps);
  });
  check_launch("head_norm");
}

void scale(const LaunchContext& ctx, TensorView x, float factor) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(x.dtype, "scale", [&]<class E>() {
    scale_kernel<E><<<grid_for(n, kThreads, 65535), kThreads, 0, ctx.stream>>>(static_cast<E*>(x.data), n, factor);
  });
  check_launch("scale");
}

void soft_cap(const LaunchContext& ctx, TensorView x, float cap) {
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_float(x.dtype, "soft_cap", [&]<class E>() {
    soft_cap_kernel<E><<<grid_for(n, kThreads, 65535), kThreads, 0, ctx.stream>>>(static_cast<E*>(x.data), n, cap);
  });
  check_launch("soft_cap");
}

}  // namespace kestrel::cuda
