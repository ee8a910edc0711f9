// kernels/cuda/norm_cuda.cu: residual add fused with LayerNorm / RMSNorm, one pass per row.
#include "cuda/cuda_common.cuh"

namespace kestrel::cuda {

namespace {

// Rows up to this size get one warp each (warp-shuffle reductions only); longer rows get a
// whole block of kBlockRowThreads and block reductions.
constexpr int64_t kWarpRowMaxH = 1024;
constexpr int kWarpRowsPerBlock = 4;
constexpr int kBlockRowThreads = 512;

template <int kRowThreads, int kBlockThreads>
__device__ __forceinline__ float row_sum(float v, float* scratch) {
  if constexpr (kRowThreads == 32) {
    return warp_sum(v);
  } else {
    static_assert(kRowThreads == kBlockThreads, "a row is a warp or the whole block");
    return block_sum<kBlockThreads>(v, scratch);
  }
}

// residual: [T, H] in/out; delta: [T, H] or null; delta_bias: [H] or null; gamma: [H];
// beta: [H] or null; out: [T, H]; all of element type E.
// Thread mapping: kRowThreads threads per row (a warp, or the whole block), striding over
// the row's H elements; rows grid-stride over blocks. Each thread reads back only the
// elements it wrote itself, so the three passes (add + sum, variance, normalize) need no
// barrier beyond the reductions. The statistics are those of the residual as stored
// (rounded to E), which is what the next layer adds to.
template <class E, int kRowThreads, int kBlockThreads>
__global__ void __launch_bounds__(kBlockThreads)
    add_residual_norm_kernel(E* residual, const E* delta, const E* delta_bias, const E* gamma,
                             const E* beta, E* out, int64_t n_rows, int64_t H, bool rms,
                             float eps) {
  __shared__ float scratch[32];
  constexpr int kRowsPerBlock = kBlockThreads / kRowThreads;
  const int sub = threadIdx.x / kRowThreads, lane = threadIdx.x % kRowThreads;
  const bool add = delta || delta_bias;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock; base < n_rows;
       base += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const int64_t t = base + sub;
    // Only the warp-per-row variant can have idle rows here; it has no block barriers.
    if (t >= n_rows) continue;
    E* r = residual + t * H;
    const E* d = delta ? delta + t * H : nullptr;

    float sum = 0.0f;
    for (int64_t i = lane; i < H; i += kRowThreads) {
      float v = to_float(r[i]);
      if (add) {
        const float extra =
            (d ? to_float(d[i]) : 0.0f) + (delta_bias ? to_float(delta_bias[i]) : 0.0f);
        const E stored = from_float<E>(v + extra);
        r[i] = stored;
        v = to_float(stored);
      }
      sum += v;
    }
    const float mean = rms ? 0.0f : row_sum<kRowThreads, kBlockThreads>(sum, scratch) / H;

    float sq = 0.0f;
    for (int64_t i = lane; i < H; i += kRowThreads) {
      const float c = to_float(r[i]) - mean;
      sq += c * c;
    }
    const float var = row_sum<kRowThreads, kBlockThreads>(sq, scratch) / H;
    const float inv = 1.0f / sqrtf(var + eps);

    E* o = out + t * H;
    for (int64_t i = lane; i < H; i += kRowThreads) {
      const float y =
          (to_float(r[i]) - mean) * inv * to_float(gamma[i]) + (beta ? to_float(beta[i]) : 0.0f);
      o[i] = from_float<E>(y);
    }
  }
}

}  // namespace

void add_residual_norm(const LaunchContext& ctx, TensorView residual, const TensorView* delta,
                       const TensorView* delta_bias, const NormParams& norm, TensorView out) {
  const int64_t T = residual.dim(0), H = residual.dim(1);
  if (T == 0 || H == 0) return;
  const bool rms = norm.kind == NormKind::rms_norm;
  dispatch_float(residual.dtype, "add_residual_norm", [&]<class E>() {
    E* res = static_cast<E*>(residual.data);
    const E* d = delta ? static_cast<const E*>(delta->data) : nullptr;
    const E* db = delta_bias ? static_cast<const E*>(delta_bias->data) : nullptr;
    const E* gamma = static_cast<const E*>(norm.gamma.data);
    const E* beta = norm.beta.empty() ? nullptr : static_cast<const E*>(norm.beta.data);
    E* o = static_cast<E*>(out.data);
    if (H <= kWarpRowMaxH) {
      constexpr int kThreads = 32 * kWarpRowsPerBlock;
      add_residual_norm_kernel<E, 32, kThreads>
          <<<grid_for(T, kWarpRowsPerBlock, 65535), kThreads, 0, ctx.stream>>>(
              res, d, db, gamma, beta, o, T, H, rms, norm.eps);
    } else {
      add_residual_norm_kernel<E, kBlockRowThreads, kBlockRowThreads>
          <<<grid_for(T, 1, 65535), kBlockRowThreads, 0, ctx.stream>>>(res, d, db, gamma, beta, o,
                                                                       T, H, rms, norm.eps);
    }
  });
  check_launch("add_residual_norm");
}

}  // namespace kestrel::cuda
