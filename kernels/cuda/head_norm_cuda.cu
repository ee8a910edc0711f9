// kernels/cuda/head_norm_cuda.cu: RMSNorm of the q and k heads of a fused QKV row, per head
// (Qwen3's and Gemma 3's q_norm / k_norm) or over all q / all k heads at once (OLMo 2's),
// and the elementwise scale and soft-cap.
#include "cuda/cuda_common.cuh"

namespace kestrel::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

// qkv: [T, (nh + 2 nkv) hd] of E, in place; q_gamma: [q_span], k_gamma: [k_span] of E, each
// span one head (hd) or all the q / k heads (nh hd / nkv hd: OLMo 2).
// Thread mapping: one warp per (token, span) over the q and k spans of each token, spans
// grid-stride over warps; a lane strides over the span's elements, reads back only its own
// elements after the warp-shuffle sum, so no barrier is needed. Statistics in fp32.
template <class E>
__global__ void __launch_bounds__(kThreads)
    head_norm_kernel(E* qkv, const E* q_gamma, const E* k_gamma, int64_t n_tokens, int nh, int nkv, int hd,
                     int q_span, int k_span, float q_eps, float k_eps) {
  const int lane = threadIdx.x % 32;
  const int q_spans = nh * hd / q_span;
  const int64_t spans_per_token = q_spans + nkv * hd / k_span;
  const int64_t width = static_cast<int64_t>(nh + 2 * nkv) * hd;
  const int64_t n_items = n_tokens * spans_per_token;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32; item < n_items;
       item += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t t = item / spans_per_token;
    const int i = static_cast<int>(item % spans_per_token);  // < q_spans: q span i, else k span i - q_spans
    const bool is_q = i < q_spans;
    const int span = is_q ? q_span : k_span;
    E* x = qkv + t * width + (is_q ? static_cast<int64_t>(i) * q_span
                                   : static_cast<int64_t>(nh) * hd + static_cast<int64_t>(i - q_spans) * k_span);
    const E* gamma = is_q ? q_gamma : k_gamma;
    float sq = 0.0f;
    for (int d = lane; d < span; d += 32) {
      const float v = to_float(x[d]);
      sq += v * v;
    }
    const float inv = rsqrtf(warp_sum(sq) / span + (is_q ? q_eps : k_eps));
    for (int d = lane; d < span; d += 32) x[d] = from_float<E>(to_float(x[d]) * inv * to_float(gamma[d]));
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
  const int q_span = static_cast<int>(q_norm.gamma.dim(0)), k_span = static_cast<int>(k_norm.gamma.dim(0));
  const int64_t spans = nh * hd / q_span + nkv * hd / k_span;
  dispatch_float(qkv.dtype, "head_norm", [&]<class E>() {
    head_norm_kernel<E><<<grid_for(T * spans, kWarpsPerBlock, 65535), kThreads, 0, ctx.stream>>>(
        static_cast<E*>(qkv.data), static_cast<const E*>(q_norm.gamma.data),
        static_cast<const E*>(k_norm.gamma.data), T, nh, nkv, hd, q_span, k_span, q_norm.eps, k_norm.eps);
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
