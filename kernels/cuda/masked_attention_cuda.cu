// kernels/cuda/masked_attention_cuda.cu: the fused generation-phase attention. One new
// token per sequence: bias, rotary, the cache write, q k^T, the softmax and the weighted sum
// of V happen in one kernel, GQA aware, reading K/V through the block table.
//
// Single-block mode: one block per (sequence, query head) covers all positions 0..p.
// Multi-block mode (long sequences, few sequences): the positions are cut into partitions
// of `partition` keys, one block per (sequence, head, partition) writes its running max,
// denominator and unnormalized output to the workspace, and a second kernel merges the
// partitions of each (sequence, head).
//
// The new token's processed k / v stay in each block's shared memory; only the first
// block of each KV head's group (query head h % group == 0, partition 0) writes them to the
// cache, and no block reads that slot from the cache in this kernel, so the blocks never
// race. Unlike the CPU reference, this kernel leaves qkv unchanged: several blocks read
// each of its heads.
#include "cuda/attention_cuda.cuh"

namespace kestrel::cuda {

namespace {

// Workspace layout for (B, nh, P partitions): ml[B, nh, P, 2] (max, denominator) then
// acc[B, nh, P, hd].
struct Workspace {
  float* ml;
  float* acc;
};

__host__ __device__ inline Workspace split_workspace(float* data, int B, int nh, int parts) {
  return {data, data + static_cast<size_t>(B) * nh * parts * 2};
}

// Where sequence b's single new token sits, or false (recorded) when the batch does not
// describe one new token per sequence at a valid position.
__device__ __forceinline__ bool place_sequence(const AttentionArgs& a, int b, int* t, int* pos) {
  const int begin = a.offsets[b], end = a.offsets[b + 1], past = a.n_past[b];
  // The host checked max_total <= max_blocks * block_size.
  const bool ok = end == begin + 1 && begin >= 0 && begin < a.n_tokens && past >= 0 &&
                  static_cast<int64_t>(past) + 1 <= a.max_total;
  if (!ok && threadIdx.x == 0) report(a.errors, DeviceErrorCode::attention_sequence, b);
  *t = begin;
  *pos = past;
  return ok;
}

// Grid (B, nh, partitions); block kAttentionThreads. `partition` = 0: one partition holds
// every position and the block writes the normalized output itself.
template <class E>
__global__ void __launch_bounds__(kAttentionThreads)
    masked_attention_kernel(AttentionArgs a, int partition, float* workspace) {
  __shared__ float q_s[kMaxHeadDim], k_s[kMaxHeadDim], v_s[kMaxHeadDim];
  __shared__ double cos_s[kMaxHeadDim / 2], sin_s[kMaxHeadDim / 2];
  __shared__ AttendShared<E> sh;
  const int b = blockIdx.x, h = blockIdx.y, z = blockIdx.z;
  const int g = h / a.group;
  const int parts = gridDim.z;
  int t, p;
  if (!place_sequence(a, b, &t, &p)) {
    // Nothing valid to attend to: zeros out (the merge kernel writes them in split mode).
    if (partition == 0) {
      E* out = static_cast<E*>(a.out) + static_cast<int64_t>(b) * a.nh * a.hd +
               static_cast<int64_t>(h) * a.hd;
      for (int d = threadIdx.x; d < a.hd; d += blockDim.x) out[d] = from_float<E>(0.0f);
    }
    return;
  }
  const int n_pos = p + 1;
  const int begin = partition == 0 ? 0 : z * partition;
  const int end = partition == 0 ? n_pos : min(n_pos, begin + partition);
  if (begin >= n_pos) return;  // this sequence is shorter than the grid's longest

  // q head h, k and v heads g of the new token: bias, rotary, rounded to E.
  rotary_angles(a, p, cos_s, sin_s);
  __syncthreads();
  const E* row = static_cast<const E*>(a.qkv) + static_cast<int64_t>(t) * a.width;
  const E* bias = static_cast<const E*>(a.bias);
  const int64_t q_col = static_cast<int64_t>(h) * a.hd;
  const int64_t k_col = static_cast<int64_t>(a.nh + g) * a.hd;
  const int64_t v_col = static_cast<int64_t>(a.nh + a.nkv + g) * a.hd;
  load_head(a, row + q_col, bias ? bias + q_col : nullptr, a.rot > 0, cos_s, sin_s, q_s);
  load_head(a, row + k_col, bias ? bias + k_col : nullptr, a.rot > 0, cos_s, sin_s, k_s);
  load_head(a, row + v_col, bias ? bias + v_col : nullptr, false, cos_s, sin_s, v_s);
  __syncthreads();

  if (z == 0 && h % a.group == 0) {
    E* kc = static_cast<E*>(a.k_cache) + cache_row(a, b, p, g);
    E* vc = static_cast<E*>(a.v_cache) + cache_row(a, b, p, g);
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
      kc[d] = from_float<E>(k_s[d]);
      vc[d] = from_float<E>(v_s[d]);
    }
  }

  // With a sliding window, keys before the window are skipped; a partition left empty
  // yields m = -inf, l = 0 and a zero output, which the merge weighs by exp(-inf) = 0
  // (the partition holding p is never empty).
  float m, l;
  attend<E>(a, b, g, q_s, max(begin, first_attended(a, p)), end, /*new_pos=*/p, k_s, v_s, sh, &m, &l);

  if (partition == 0) {
    E* out = static_cast<E*>(a.out) + static_cast<int64_t>(t) * a.nh * a.hd +
             static_cast<int64_t>(h) * a.hd;
    const float inv_l = output_scale<E>(a, h, m, l);
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) out[d] = from_float<E>(sh.o[d] * inv_l);
  } else {
    const Workspace ws = split_workspace(workspace, a.n_seqs, a.nh, parts);
    const size_t slot = (static_cast<size_t>(b) * a.nh + h) * parts + z;
    if (threadIdx.x == 0) {
      ws.ml[slot * 2] = m;
      ws.ml[slot * 2 + 1] = l;
    }
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) ws.acc[slot * a.hd + d] = sh.o[d];
  }
}

// Grid (B, nh); block kAttentionThreads, one thread per output element of the head. Merges
// the partitions 0 .. ceil((p + 1) / partition) - 1 of (sequence b, head h):
//   out = sum_z exp(m_z - M) acc_z / sum_z exp(m_z - M) l_z,  M = max_z m_z
// (with an attention sink, the denominator also holds it: output_scale).
template <class E>
__global__ void __launch_bounds__(kAttentionThreads)
    merge_partitions_kernel(AttentionArgs a, int partition, int parts, const float* workspace) {
  const int b = blockIdx.x, h = blockIdx.y;
  int t, p;
  const bool ok = place_sequence(a, b, &t, &p);
  E* out = static_cast<E*>(a.out) + static_cast<int64_t>(ok ? t : b) * a.nh * a.hd +
           static_cast<int64_t>(h) * a.hd;
  if (!ok) {
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) out[d] = from_float<E>(0.0f);
    return;
  }
  const int used = (p + 1 + partition - 1) / partition;
  const Workspace ws = split_workspace(const_cast<float*>(workspace), a.n_seqs, a.nh, parts);
  const size_t first = (static_cast<size_t>(b) * a.nh + h) * parts;
  float M = -INFINITY;
  for (int z = 0; z < used; ++z) M = fmaxf(M, ws.ml[(first + z) * 2]);
  float l = 0.0f;
  for (int z = 0; z < used; ++z) l += expf(ws.ml[(first + z) * 2] - M) * ws.ml[(first + z) * 2 + 1];
  const float inv_l = output_scale<E>(a, h, M, l);  // the partitions' sum is relative to M
  for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
    float acc = 0.0f;
    for (int z = 0; z < used; ++z)
      acc += expf(ws.ml[(first + z) * 2] - M) * ws.acc[(first + z) * a.hd + d];
    out[d] = from_float<E>(acc * inv_l);
  }
}

}  // namespace

size_t masked_attention_workspace_floats(int n_seqs, int n_heads, int head_dim, int partitions) {
  return static_cast<size_t>(n_seqs) * n_heads * partitions * (2 + static_cast<size_t>(head_dim));
}

void masked_attention(const LaunchContext& ctx, TensorView qkv, const TensorView* qkv_bias,
                      const AttentionParams& params, const SequenceBatch& batch,
                      const KvCacheLayer& cache, TensorView out, int partition_size,
                      const AttentionWorkspace& workspace) {
  const AttentionArgs a = attention_args(ctx, qkv, qkv_bias, params, batch, cache, out);
  if (a.n_seqs == 0) return;
  const int parts =
      partition_size > 0 ? (batch.max_total_tokens + partition_size - 1) / partition_size : 1;
  dispatch_float(qkv.dtype, "masked_attention", [&]<class E>() {
    masked_attention_kernel<E><<<dim3(a.n_seqs, a.nh, parts), kAttentionThreads, 0, ctx.stream>>>(
        a, partition_size, workspace.data);
    check_launch("masked_attention");
    if (partition_size > 0) {
      merge_partitions_kernel<E><<<dim3(a.n_seqs, a.nh), kAttentionThreads, 0, ctx.stream>>>(
          a, partition_size, parts, workspace.data);
      check_launch("masked_attention (merge)");
    }
  });
}

}  // namespace kestrel::cuda
