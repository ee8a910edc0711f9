// kernels/cuda/attention_cuda.cuh: device code shared by the context-phase and the
// generation-phase (masked) attention kernels: token placement, rotary embeddings, paged
// cache addressing and the online-softmax loop over keys.
//
// Layouts (E = the activation dtype, hd = head size, W = (nh + 2 nkv) hd):
//   qkv  [T, W]                     a row is [q heads | k heads | v heads], hd each
//   kc, vc [num_blocks, nkv, bs, hd]  position p of sequence s is row p % bs of block
//                                      tables[s * max_blocks + p / bs], per KV head
//   out  [T, nh hd]
// The host guarantees hd % 8 == 0 (so a head row is a whole number of 16-byte vectors for
// every dtype), hd <= kMaxHeadDim and 16-byte aligned cache pointers.
#pragma once

#include "cuda/cuda_common.cuh"

namespace kestrel::cuda {

constexpr int kAttentionThreads = 128;  // threads per attention block; also keys per chunk
constexpr int kMaxHeadDim = kAttentionMaxHeadDim;

// Everything an attention kernel needs, by value.
struct AttentionArgs {
  int n_tokens = 0;  // T
  int n_seqs = 0;    // B
  int nh = 0, nkv = 0, hd = 0;
  int group = 1;      // query heads per KV head (nh / nkv)
  int64_t width = 0;  // (nh + 2 nkv) hd
  float scale = 0.0f;
  float softcap = 0.0f;  // > 0: scores become tanh(score / softcap) * softcap
  int window = 0;  // sliding window (0 = off)
  int rot = 0;  // rotating dims per head (0 = no rotary)
  RotaryStyle style = RotaryStyle::none;
  const float* inv_freq = nullptr;  // [rot / 2]
  double cos_sin_scale = 1.0;       // RotaryParams::cos_sin_scale
  int block_size = 0;
  int max_total = 0;       // batch.max_total_tokens: no sequence holds more positions
  int max_blocks = 0;      // block-table entries per sequence
  int64_t num_blocks = 0;  // blocks in the cache
  void* qkv = nullptr;
  const void* bias = nullptr;  // [W] or null
  const void* sinks = nullptr;  // [nh] of E or null: each head's attention-sink logit
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  void* out = nullptr;
  const int32_t* offsets = nullptr;  // [B + 1]
  const int32_t* n_past = nullptr;   // [B]
  const int32_t* tables = nullptr;   // [B, max_blocks]
  DeviceErrorRecord* errors = nullptr;
};

// The kernel arguments of one attention call (shapes validated by CudaBackend).
inline AttentionArgs attention_args(const LaunchContext& ctx, TensorView qkv,
                                    const TensorView* qkv_bias, const AttentionParams& params,
                                    const SequenceBatch& batch, const KvCacheLayer& cache,
                                    TensorView out) {
  AttentionArgs a;
  a.n_tokens = static_cast<int>(qkv.dim(0));
  a.n_seqs = batch.n_seqs;
  a.nh = params.n_heads;
  a.nkv = params.n_kv_heads;
  a.hd = params.head_dim;
  a.group = params.n_heads / params.n_kv_heads;
  a.width = qkv.dim(1);
  a.scale = params.scale;
  a.softcap = params.logit_softcap;
  a.window = params.sliding_window;
  const RotaryParams& rp = params.rotary;
  a.style = rp.style;
  a.rot =
      rp.style == RotaryStyle::none ? 0 : (rp.rotary_dim == 0 ? params.head_dim : rp.rotary_dim);
  a.inv_freq = a.rot > 0 ? static_cast<const float*>(rp.inv_freq.data) : nullptr;
  a.cos_sin_scale = rp.cos_sin_scale;
  a.block_size = cache.block_size;
  a.max_total = batch.max_total_tokens;
  a.max_blocks = batch.max_blocks_per_seq;
  a.num_blocks = cache.k.dim(0);
  a.qkv = qkv.data;
  a.bias = qkv_bias ? qkv_bias->data : nullptr;
  a.sinks = params.sinks.empty() ? nullptr : params.sinks.data;
  a.k_cache = cache.k.data;
  a.v_cache = cache.v.data;
  a.out = out.data;
  a.offsets = static_cast<const int32_t*>(batch.token_offsets.data);
  a.n_past = static_cast<const int32_t*>(batch.n_past.data);
  a.tables = static_cast<const int32_t*>(batch.block_tables.data);
  a.errors = ctx.errors;
  return a;
}

// Sequence and position of token t of a step. Returns false (after recording the error
// from thread 0) when the batch description does not hold token t at a valid position.
__device__ __forceinline__ bool place_token(const AttentionArgs& a, int t, int* seq, int* pos) {
  int lo = 0, hi = a.n_seqs;  // the sequence s with offsets[s] <= t < offsets[s + 1]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (a.offsets[mid] <= t)
      lo = mid;
    else
      hi = mid;
  }
  const int begin = a.offsets[lo], end = a.offsets[lo + 1], past = a.n_past[lo];
  const int64_t p = static_cast<int64_t>(past) + (t - begin);
  // The host checked max_total <= max_blocks * block_size.
  const bool ok = begin <= t && t < end && past >= 0 && end - begin >= 0 &&
                  static_cast<int64_t>(past) + (end - begin) <= a.max_total;
  if (!ok && threadIdx.x == 0) report(a.errors, DeviceErrorCode::attention_sequence, t);
  *seq = lo;
  *pos = static_cast<int>(p);
  return ok;
}

// Element offset of the cache row holding KV head g at position p of sequence s. A
// block-table entry outside the cache is recorded and replaced by block 0, so a corrupt
// table yields wrong numbers (and an error at the next synchronize), never a wild access.
__device__ __forceinline__ int64_t cache_row(const AttentionArgs& a, int s, int p, int g) {
  int64_t block = a.tables[static_cast<int64_t>(s) * a.max_blocks + p / a.block_size];
  if (block < 0 || block >= a.num_blocks) {
    report(a.errors, DeviceErrorCode::attention_block, s);
    block = 0;
  }
  return ((block * a.nkv + g) * a.block_size + p % a.block_size) * static_cast<int64_t>(a.hd);
}

// cos / sin of the rot/2 rotary angles at position `pos`, into shared memory (the caller
// synchronizes before use). Same arithmetic as the CPU reference: angle =
// float(float(pos) * inv_freq[j]), cos and sin in double.
__device__ __forceinline__ void rotary_angles(const AttentionArgs& a, int pos, double* cos_s,
                                              double* sin_s) {
  const float p = static_cast<float>(pos);
  for (int j = threadIdx.x; j < a.rot / 2; j += blockDim.x) {
    const double angle = __fmul_rn(p, a.inv_freq[j]);
    sincos(angle, &sin_s[j], &cos_s[j]);
    cos_s[j] *= a.cos_sin_scale;
    sin_s[j] *= a.cos_sin_scale;
  }
}

// The first position a token at position `pos` attends to: 0, or the start of its window.
__device__ __forceinline__ int first_attended(const AttentionArgs& a, int pos) {
  return a.window > 0 ? max(0, pos - a.window + 1) : 0;
}

// The factor that turns attend()'s unnormalized output of head h (running max m,
// denominator l) into the softmax-weighted sum: 1 / l, or with an attention sink s (one more
// logit in the softmax, no value row) exp(m - M) / (l exp(m - M) + exp(s - M)), M = max(m, s),
// as the CPU reference computes it.
template <class E>
__device__ __forceinline__ float output_scale(const AttentionArgs& a, int h, float m, float l) {
  if (!a.sinks) return 1.0f / l;
  const float sink = to_float(static_cast<const E*>(a.sinks)[h]);
  const float M = fmaxf(m, sink), keep = expf(m - M);
  return keep / (l * keep + expf(sink - M));
}

// Rotary pair j of a head: the two element indices it turns (NeoX: j, j + rot/2; GPT-J:
// 2j, 2j + 1).
__device__ __forceinline__ void rotary_pair(const AttentionArgs& a, int j, int* ia, int* ib) {
  if (a.style == RotaryStyle::neox) {
    *ia = j;
    *ib = j + a.rot / 2;
  } else {
    *ia = 2 * j;
    *ib = 2 * j + 1;
  }
}

// (x0, x1) turned by the angle with cos c and sin s, in double without contraction so it
// rounds like the CPU reference.
__device__ __forceinline__ void rotate(float x0, float x1, double c, double s, float* y0,
                                       float* y1) {
  *y0 = static_cast<float>(__dsub_rn(__dmul_rn(x0, c), __dmul_rn(x1, s)));
  *y1 = static_cast<float>(__dadd_rn(__dmul_rn(x1, c), __dmul_rn(x0, s)));
}

// Head `src` (hd elements of E) plus `bias` (hd elements or null), rotated when `rotate_it`,
// rounded through E, into dst[0 : hd] (shared memory; the caller synchronizes before use).
// One thread per element; a rotated element reads its partner too (src is not written).
template <class E>
__device__ __forceinline__ void load_head(const AttentionArgs& a, const E* src, const E* bias,
                                          bool rotate_it, const double* cos_s, const double* sin_s,
                                          float* dst) {
  const int half = a.rot / 2;
  for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
    const float x = to_float(src[d]) + (bias ? to_float(bias[d]) : 0.0f);
    float y = x;
    if (rotate_it && d < a.rot) {
      // j: the pair of d; first: whether d is the pair's first element.
      const bool first = a.style == RotaryStyle::neox ? d < half : d % 2 == 0;
      const int j = a.style == RotaryStyle::neox ? (first ? d : d - half) : d / 2;
      int ia, ib;
      rotary_pair(a, j, &ia, &ib);
      const int partner = first ? ib : ia;
      const float xp = to_float(src[partner]) + (bias ? to_float(bias[partner]) : 0.0f);
      float y0, y1;
      if (first)
        rotate(x, xp, cos_s[j], sin_s[j], &y0, &y1);
      else
        rotate(xp, x, cos_s[j], sin_s[j], &y0, &y1);
      y = first ? y0 : y1;
    }
    dst[d] = round_to<E>(y);
  }
}

// Shared memory of one attend() call.
template <class E>
struct AttendShared {
  float w[kAttentionThreads];                // softmax weights of the chunk
  float red[32];                             // reduction scratch
  float acc[kAttentionThreads * kVec16<E>];  // per key-group partial outputs
  float o[kMaxHeadDim];                      // the result: sum_j w_j v_j
};

// The softmax-weighted sum of V over keys [begin, end) of sequence s, KV head g, for the
// query q_s (hd floats in shared memory; the softmax scale and any logit soft-cap are
// applied here).
// Keys come from the paged cache, except position new_pos (-1: none), whose key and value
// are k_new / v_new in shared memory (the generation kernel's own token, whose cache slot
// another block may be writing).
//
// Thread mapping, per chunk of kAttentionThreads keys: scores with one thread per key (a
// full hd-long dot product over 16-byte vector loads of the key row); then the weighted
// sum of V with hd / kVec16 threads per value row (one 16-byte vector each) and
// kAttentionThreads / (hd / kVec16) key groups striding over the chunk's keys. The
// softmax is online (running max m and denominator l in fp32), so any length fits.
// Returns m and l; sh.o[0 : hd] holds the unnormalized output (sum_j exp(s_j - m) v_j).
template <class E>
__device__ void attend(const AttentionArgs& a, int s, int g, const float* q_s, int begin, int end,
                       int new_pos, const float* k_new, const float* v_new, AttendShared<E>& sh,
                       float* m_out, float* l_out) {
  constexpr int N = kVec16<E>;
  const int tid = threadIdx.x;
  const int hd = a.hd;
  const int tpr = hd / N;                        // threads per value row
  const int n_groups = kAttentionThreads / tpr;  // key groups in the V pass
  const int group = tid / tpr, chunk = tid % tpr;
  const bool in_v_pass = group < n_groups;
  const E* kc = static_cast<const E*>(a.k_cache);
  const E* vc = static_cast<const E*>(a.v_cache);

  float m_run = -INFINITY, l_run = 0.0f;
  float acc[N];
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i] = 0.0f;

  for (int c0 = begin; c0 < end; c0 += kAttentionThreads) {
    const int n_keys = min(kAttentionThreads, end - c0);
    float score = -INFINITY;
    if (tid < n_keys) {
      const int j = c0 + tid;
      float dot = 0.0f;
      if (j == new_pos) {
        for (int d = 0; d < hd; ++d) dot += q_s[d] * k_new[d];
      } else {
        const E* k = kc + cache_row(a, s, j, g);
        for (int d = 0; d < hd; d += N) {
          float kv[N];
          load_vec16(k + d, kv);
#pragma unroll
          for (int i = 0; i < N; ++i) dot += q_s[d + i] * kv[i];
        }
      }
      score = dot * a.scale;
      if (a.softcap > 0.0f) score = tanhf(score / a.softcap) * a.softcap;
    }
    const float m_new = fmaxf(m_run, block_max<kAttentionThreads>(score, sh.red));
    const float w = tid < n_keys ? expf(score - m_new) : 0.0f;
    sh.w[tid] = w;
    const float chunk_sum = block_sum<kAttentionThreads>(w, sh.red);  // also publishes sh.w
    const float alpha = expf(m_run - m_new);  // 0 on the first chunk (m_run = -inf)
    l_run = l_run * alpha + chunk_sum;
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i] *= alpha;
    m_run = m_new;

    if (in_v_pass) {
      for (int jj = group; jj < n_keys; jj += n_groups) {
        const int j = c0 + jj;
        const float wj = sh.w[jj];
        float vv[N];
        if (j == new_pos) {
#pragma unroll
          for (int i = 0; i < N; ++i) vv[i] = v_new[chunk * N + i];
        } else {
          load_vec16(vc + cache_row(a, s, j, g) + chunk * N, vv);
        }
#pragma unroll
        for (int i = 0; i < N; ++i) acc[i] += wj * vv[i];
      }
    }
    __syncthreads();  // sh.w is rewritten by the next chunk
  }

  // Sum the key groups' partial outputs.
  if (in_v_pass) {
#pragma unroll
    for (int i = 0; i < N; ++i) sh.acc[group * hd + chunk * N + i] = acc[i];
  }
  __syncthreads();
  for (int d = tid; d < hd; d += kAttentionThreads) {
    float total = 0.0f;
    for (int gi = 0; gi < n_groups; ++gi) total += sh.acc[gi * hd + d];
    sh.o[d] = total;
  }
  __syncthreads();
  *m_out = m_run;
  *l_out = l_run;
}

}  // namespace kestrel::cuda
