// kernels/cuda/context_attention_cuda.cu: causal attention of a step's new tokens (context
// phase) over the paged KV cache, in two kernels:
//   1. prepare: per token, add qkv_bias and rotate its q and k heads in place in qkv, and
//      write its k and v heads into the cache slot of its position;
//   2. attend: per (token, query head), softmax(scale q k^T) v over positions 0..p of the
//      token's own sequence (its window's p - window + 1 .. p with a sliding window), every key and value (the new ones included) read back from
//      the cache.
// Kernel 2 starts only after kernel 1 has finished (same stream), so every token sees the
// keys of the earlier new tokens of its sequence.
#include "cuda/attention_cuda.cuh"

namespace kestrel::cuda {

namespace {

// One block per token (grid-stride over tokens). Work items of a token: for each q and k
// head, its rot/2 rotary pairs (a pair is read and written by one thread, so the in-place
// update needs no barrier) and its hd - rot plain elements; then the hd elements of each v
// head. K and V values also go to the cache.
template <class E>
__global__ void __launch_bounds__(kAttentionThreads) prepare_kernel(AttentionArgs a) {
  __shared__ double cos_s[kMaxHeadDim / 2], sin_s[kMaxHeadDim / 2];
  E* qkv = static_cast<E*>(a.qkv);
  const E* bias = static_cast<const E*>(a.bias);
  E* kc = static_cast<E*>(a.k_cache);
  E* vc = static_cast<E*>(a.v_cache);
  const int half = a.rot / 2;
  const int per_head = a.hd - half;  // work items of one q or k head
  const int64_t rotated_items = static_cast<int64_t>(a.nh + a.nkv) * per_head;
  const int64_t items = rotated_items + static_cast<int64_t>(a.nkv) * a.hd;

  for (int t = blockIdx.x; t < a.n_tokens; t += gridDim.x) {
    int s, p;
    const bool ok = place_token(a, t, &s, &p);  // uniform over the block
    if (!ok) continue;
    __syncthreads();  // cos_s / sin_s of the previous token are no longer read
    rotary_angles(a, p, cos_s, sin_s);
    __syncthreads();
    E* row = qkv + static_cast<int64_t>(t) * a.width;

    for (int64_t i = threadIdx.x; i < items; i += blockDim.x) {
      if (i < rotated_items) {
        const int h = static_cast<int>(i / per_head), k = static_cast<int>(i % per_head);
        E* x = row + static_cast<int64_t>(h) * a.hd;
        const E* b = bias ? bias + static_cast<int64_t>(h) * a.hd : nullptr;
        const bool is_key = h >= a.nh;
        E* cache = is_key ? kc + cache_row(a, s, p, h - a.nh) : nullptr;
        if (k < half) {
          int ia, ib;
          rotary_pair(a, k, &ia, &ib);
          float y0, y1;
          rotate(to_float(x[ia]) + (b ? to_float(b[ia]) : 0.0f),
                 to_float(x[ib]) + (b ? to_float(b[ib]) : 0.0f), cos_s[k], sin_s[k], &y0, &y1);
          x[ia] = from_float<E>(y0);
          x[ib] = from_float<E>(y1);
          if (cache) {
            cache[ia] = x[ia];
            cache[ib] = x[ib];
          }
        } else {
          const int d = a.rot + (k - half);
          x[d] = from_float<E>(to_float(x[d]) + (b ? to_float(b[d]) : 0.0f));
          if (cache) cache[d] = x[d];
        }
      } else {
        const int64_t vi = i - rotated_items;
        const int g = static_cast<int>(vi / a.hd), d = static_cast<int>(vi % a.hd);
        const int64_t col = static_cast<int64_t>(a.nh + a.nkv + g) * a.hd + d;
        row[col] = from_float<E>(to_float(row[col]) + (bias ? to_float(bias[col]) : 0.0f));
        vc[cache_row(a, s, p, g) + d] = row[col];
      }
    }
  }
}

// One block per (token, query head): grid (T, nh). The processed q (already rounded to E
// by the prepare kernel) goes to shared memory; attend() runs over positions 0..p.
template <class E>
__global__ void __launch_bounds__(kAttentionThreads) attend_kernel(AttentionArgs a) {
  __shared__ float q_s[kMaxHeadDim];
  __shared__ AttendShared<E> sh;
  const int t = blockIdx.x, h = blockIdx.y;
  E* out = static_cast<E*>(a.out) + static_cast<int64_t>(t) * a.nh * a.hd +
           static_cast<int64_t>(h) * a.hd;
  int s, p;
  if (!place_token(a, t, &s, &p)) {
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) out[d] = from_float<E>(0.0f);
    return;
  }
  const E* q = static_cast<const E*>(a.qkv) + static_cast<int64_t>(t) * a.width +
               static_cast<int64_t>(h) * a.hd;
  for (int d = threadIdx.x; d < a.hd; d += blockDim.x) q_s[d] = to_float(q[d]);
  __syncthreads();
  float m, l;
  attend<E>(a, s, h / a.group, q_s, first_attended(a, p), p + 1, /*new_pos=*/-1, nullptr, nullptr, sh, &m, &l);
  const float inv_l = output_scale<E>(a, h, m, l);
  for (int d = threadIdx.x; d < a.hd; d += blockDim.x) out[d] = from_float<E>(sh.o[d] * inv_l);
}

}  // namespace

void context_attention(const LaunchContext& ctx, TensorView qkv, const TensorView* qkv_bias,
                       const AttentionParams& params, const SequenceBatch& batch,
                       const KvCacheLayer& cache, TensorView out) {
  const AttentionArgs a = attention_args(ctx, qkv, qkv_bias, params, batch, cache, out);
  if (a.n_tokens == 0) return;
  dispatch_float(qkv.dtype, "context_attention", [&]<class E>() {
    prepare_kernel<E><<<grid_for(a.n_tokens, 1, 65535), kAttentionThreads, 0, ctx.stream>>>(a);
    check_launch("context_attention (prepare)");
    attend_kernel<E><<<dim3(a.n_tokens, a.nh), kAttentionThreads, 0, ctx.stream>>>(a);
    check_launch("context_attention");
  });
}

}  // namespace kestrel::cuda
