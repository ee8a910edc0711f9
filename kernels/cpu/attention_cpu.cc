// kernels/cpu/attention_cpu.cc: fused QKV attention over the paged KV cache, shared by the
// context phase (many new tokens per sequence) and the generation phase (one per sequence).
//
// Three passes over the step's tokens, each a parallel loop:
//   1. per token: add qkv_bias, rotate the q and k heads at the token's position;
//   2. per token: write its k and v heads into the cache slot of its position (rounded to
//      f16, nearest even, in an f16 cache);
//   3. per (token, query head): causal softmax(scale q k^T) v (the scores soft-capped first
//      when logit_softcap is set) over positions first..p of its own sequence (first = 0, or p - sliding_window + 1
//      with a window), reading every key and value (the new ones included) back from the cache;
//      a head's attention sink (gpt-oss) adds exp(sink - max) to the normalizer only.
// Pass 3 only starts once pass 2 has finished (the implicit barrier between the loops), so a
// token sees the keys of the earlier new tokens of its sequence. Its inner loops (the dot
// products with a block's keys, the weighted sum of its values) are attention_rows.h's, AVX2
// where the processor has it; a row's result depends only on the row, so prefill and decode
// compute a position identically.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cpu/attention_rows.h"
#include "cpu/cpu_ops.h"
#include "cpu/thread_pool.h"

namespace kestrel::cpu {

namespace {

// Where each token of the step sits: its sequence and logical position.
struct TokenPlacement {
  std::vector<int32_t> seq;
  std::vector<int32_t> pos;
  int32_t max_total = 0;  // max over sequences of n_past + n_new
};

// Validates the batch against the cache and returns each token's sequence and position.
TokenPlacement place_tokens(const SequenceBatch& batch, const KvCacheLayer& cache, int64_t T,
                            bool one_token_per_seq, const char* op) {
  const int B = batch.n_seqs;
  if (B < 0) fail(op, "n_seqs is negative");
  expect_tensor(batch.token_offsets, DType::i32, {B + 1}, op, "token_offsets");
  expect_tensor(batch.n_past, DType::i32, {B}, op, "n_past");
  expect_tensor(batch.block_tables, DType::i32, {B, batch.max_blocks_per_seq}, op, "block_tables");
  const int32_t* offsets = batch.token_offsets.ptr<int32_t>();
  const int32_t* n_past = batch.n_past.ptr<int32_t>();
  const int32_t* tables = batch.block_tables.ptr<int32_t>();
  const int64_t num_blocks = cache.k.dim(0);
  const int bs = cache.block_size;

  if (offsets[0] != 0 || offsets[B] != T)
    fail(op, "token_offsets must run from 0 to T = " + std::to_string(T) + ", got " +
                 std::to_string(offsets[0]) + " .. " + std::to_string(offsets[B]));
  if (one_token_per_seq && T != B)
    fail(op, "expects one token per sequence, got T = " + std::to_string(T) +
                 " for B = " + std::to_string(B));
  TokenPlacement placement;
  placement.seq.resize(static_cast<size_t>(T));
  placement.pos.resize(static_cast<size_t>(T));
  for (int i = 0; i < B; ++i) {
    const std::string who = "sequence " + std::to_string(i);
    const int32_t n_new = offsets[i + 1] - offsets[i];
    if (n_new < 0) fail(op, who + ": token_offsets decrease");
    if (one_token_per_seq && n_new != 1)
      fail(op, who + " has " + std::to_string(n_new) + " new tokens, expected 1");
    if (n_past[i] < 0) fail(op, who + ": negative n_past " + std::to_string(n_past[i]));
    if (n_new > batch.max_new_tokens)
      fail(op, who + " has " + std::to_string(n_new) + " new tokens, above max_new_tokens " +
                   std::to_string(batch.max_new_tokens));
    const int64_t total = static_cast<int64_t>(n_past[i]) + n_new;
    if (total > batch.max_total_tokens)
      fail(op, who + " holds " + std::to_string(total) + " positions, above max_total_tokens " +
                   std::to_string(batch.max_total_tokens));
    const int64_t blocks_needed = (total + bs - 1) / bs;
    if (blocks_needed > batch.max_blocks_per_seq)
      fail(op, who + " needs " + std::to_string(blocks_needed) +
                   " blocks, above max_blocks_per_seq " + std::to_string(batch.max_blocks_per_seq));
    for (int64_t b = 0; b < blocks_needed; ++b) {
      const int32_t block = tables[static_cast<int64_t>(i) * batch.max_blocks_per_seq + b];
      if (block < 0 || block >= num_blocks)
        fail(op, who + ": block_tables entry " + std::to_string(b) + " = " + std::to_string(block) +
                     " is outside the cache's " + std::to_string(num_blocks) + " blocks");
    }
    for (int32_t j = 0; j < n_new; ++j) {
      placement.seq[offsets[i] + j] = i;
      placement.pos[offsets[i] + j] = n_past[i] + j;
    }
    placement.max_total = std::max<int32_t>(placement.max_total, static_cast<int32_t>(total));
  }
  return placement;
}

// Rotates the first `rot` dims of one head in place. cos_t / sin_t hold the rot/2 angles
// of the token. NeoX pairs dim j with j + rot/2, GPT-J pairs 2j with 2j + 1; pair j turns
// by angle_j.
void rotate_head(float* x, int rot, RotaryStyle style, const double* cos_t, const double* sin_t) {
  const int half = rot / 2;
  for (int j = 0; j < half; ++j) {
    const int a = style == RotaryStyle::neox ? j : 2 * j;
    const int b = style == RotaryStyle::neox ? j + half : 2 * j + 1;
    const double x0 = x[a], x1 = x[b];
    x[a] = static_cast<float>(x0 * cos_t[j] - x1 * sin_t[j]);
    x[b] = static_cast<float>(x1 * cos_t[j] + x0 * sin_t[j]);
  }
}

// The row kernels of the cache's element type: f32, or f16 bits (attention_rows.h).
void score_rows(const AttentionRowKernels& r, const float* q, const float* k, int n, int hd, float* out) {
  r.scores(q, k, n, hd, out);
}
void score_rows(const AttentionRowKernels& r, const float* q, const uint16_t* k, int n, int hd, float* out) {
  r.scores_f16(q, k, n, hd, out);
}
void accumulate_rows(const AttentionRowKernels& r, const float* w, const float* v, int n, int hd, float* acc) {
  r.accumulate(w, v, n, hd, acc);
}
void accumulate_rows(const AttentionRowKernels& r, const float* w, const uint16_t* v, int n, int hd, float* acc) {
  r.accumulate_f16(w, v, n, hd, acc);
}
void store_row(const AttentionRowKernels&, const float* src, int n, float* dst) {
  std::copy(src, src + n, dst);
}
void store_row(const AttentionRowKernels& r, const float* src, int n, uint16_t* dst) { r.to_f16(src, n, dst); }

}  // namespace

// qkv: [T, (nh + 2 nkv) hd] as [q heads | k heads | v heads], modified in place (bias,
// rotary); qkv_bias: [(nh + 2 nkv) hd] or null; cache.k / cache.v: [num_blocks, nkv,
// block_size, hd], f32 or f16; out: [T, nh hd].
void attention(TensorView qkv, const TensorView* qkv_bias, const AttentionParams& params,
               const SequenceBatch& batch, const KvCacheLayer& cache, TensorView out,
               bool one_token_per_seq, const char* op, int threads) {
  const int nh = params.n_heads, nkv = params.n_kv_heads, hd = params.head_dim;
  const int rot = check_attention_params(Device::cpu(), params, op);
  const RotaryParams& rp = params.rotary;

  const int64_t width = static_cast<int64_t>(nh + 2 * nkv) * hd;
  expect_tensor(qkv, DType::f32, {-1, width}, op, "qkv");
  const int64_t T = qkv.dim(0);
  expect_tensor(out, DType::f32, {T, static_cast<int64_t>(nh) * hd}, op, "out");
  if (qkv_bias) expect_tensor(*qkv_bias, DType::f32, {width}, op, "qkv_bias");
  if (!params.sinks.empty()) expect_tensor(params.sinks, DType::f32, {nh}, op, "sinks");
  if (cache.block_size <= 0) fail(op, "cache block_size must be positive");
  if (cache.k.dtype != DType::f32 && cache.k.dtype != DType::f16)
    fail(op, std::string("cache.k is ") + to_string(cache.k.dtype) + ": the CPU's KV cache is f32 or f16");
  expect_tensor(cache.k, cache.k.dtype, {-1, nkv, cache.block_size, hd}, op, "cache.k");
  expect_tensor(cache.v, cache.k.dtype, {cache.k.dim(0), nkv, cache.block_size, hd}, op, "cache.v");
  const TokenPlacement place = place_tokens(batch, cache, T, one_token_per_seq, op);

  float* x = qkv.ptr<float>();
  const float* bias = qkv_bias ? qkv_bias->ptr<float>() : nullptr;
  const float* sinks = params.sinks.empty() ? nullptr : params.sinks.ptr<float>();
  float* o = out.ptr<float>();
  const int32_t* tables = batch.block_tables.ptr<int32_t>();
  const int64_t mb = batch.max_blocks_per_seq;
  const int bs = cache.block_size;

  // The angle of pair j is the f32 product pos * inv_freq[j], as Hugging Face computes it;
  // its cos / sin are taken in double.
  const float* inv_freq = rot > 0 ? rp.inv_freq.ptr<float>() : nullptr;

  // Start of the cache row holding head g at logical position p of sequence s.
  auto cache_offset = [&](int32_t s, int32_t p, int g) {
    const int64_t block = tables[s * mb + p / bs];
    return ((block * nkv + g) * bs + p % bs) * static_cast<int64_t>(hd);
  };

  const AttentionRowKernels& rows = attention_rows_best();
  // Kv: the cache's element type (float, or uint16_t holding f16).
  auto run = [&](auto* kc, auto* vc) {
    // Passes 1 and 2: bias, rotary, cache write (one token per iteration).
    parallel_for(threads_for(T * width, threads), T, 1, [&](int64_t t0, int64_t t1) {
      // Per-thread angle tables, reused across calls (no allocation in the decode loop).
      thread_local std::vector<double> cos_t, sin_t;
      cos_t.resize(static_cast<size_t>(rot / 2));
      sin_t.resize(static_cast<size_t>(rot / 2));
      for (int64_t t = t0; t < t1; ++t) {
        float* row = x + t * width;
        if (bias)
          for (int64_t i = 0; i < width; ++i) row[i] += bias[i];
        if (rot > 0) {
          const float p = static_cast<float>(place.pos[t]);
          for (int j = 0; j < rot / 2; ++j) {
            const double angle = p * inv_freq[j];
            cos_t[j] = std::cos(angle) * rp.cos_sin_scale;
            sin_t[j] = std::sin(angle) * rp.cos_sin_scale;
          }
          for (int h = 0; h < nh + nkv; ++h)
            rotate_head(row + static_cast<int64_t>(h) * hd, rot, rp.style, cos_t.data(),
                        sin_t.data());
        }
        for (int g = 0; g < nkv; ++g) {
          const int64_t dst = cache_offset(place.seq[t], place.pos[t], g);
          store_row(rows, row + static_cast<int64_t>(nh + g) * hd, hd, kc + dst);
          store_row(rows, row + static_cast<int64_t>(nh + nkv + g) * hd, hd, vc + dst);
        }
      }
    });

    // Pass 3: one (token, query head) per iteration; query head h reads kv head h / (nh/nkv).
    const int group = nh / nkv;
    const float scale = params.scale;
    const float softcap = params.logit_softcap;
    const int64_t work = T * nh * static_cast<int64_t>(place.max_total) * hd;  // upper bound
    parallel_for(threads_for(work, threads), T * nh, 1, [&](int64_t item0, int64_t item1) {
      thread_local std::vector<float> scores, acc;  // per thread, reused across calls
      scores.resize(static_cast<size_t>(place.max_total));
      acc.resize(static_cast<size_t>(hd));
      for (int64_t item = item0; item < item1; ++item) {
        const int64_t t = item / nh;
        const int h = static_cast<int>(item % nh);
        const int g = h / group;
        const int32_t s = place.seq[t], p = place.pos[t];
        const float* q = x + t * width + static_cast<int64_t>(h) * hd;

        // A block's slots hold consecutive positions in consecutive rows of hd floats, so the
        // positions are walked block by block (no division per position), from the block
        // holding `first`.
        const int32_t n = p + 1;
        const int32_t first = params.sliding_window > 0 ? std::max(0, p - params.sliding_window + 1) : 0;
        const int32_t first_block = first - first % bs;
        float max_score = -INFINITY;
        for (int32_t j0 = first_block; j0 < n; j0 += bs) {
          const int32_t j1 = std::max(j0, first), j2 = std::min(n, j0 + bs);
          score_rows(rows, q, kc + cache_offset(s, j0, g) + static_cast<int64_t>(j1 - j0) * hd, j2 - j1, hd,
                      scores.data() + j1);
          for (int32_t j = j1; j < j2; ++j) {
            scores[j] *= scale;
            if (softcap > 0.0f) scores[j] = std::tanh(scores[j] / softcap) * softcap;
            max_score = std::max(max_score, scores[j]);
          }
        }
        // Softmax with the max subtracted; the normalizer is summed in double. A sink joins the
        // max and the normalizer as one more logit, as transformers concatenates it to the scores.
        if (sinks) max_score = std::max(max_score, sinks[h]);
        double sum = rows.exp_sum(scores.data() + first, n - first, max_score);
        if (sinks) sum += std::exp(static_cast<double>(sinks[h]) - max_score);
        for (int d = 0; d < hd; ++d) acc[d] = 0.0f;
        for (int32_t j0 = first_block; j0 < n; j0 += bs) {
          const int32_t j1 = std::max(j0, first), j2 = std::min(n, j0 + bs);
          accumulate_rows(rows, scores.data() + j1, vc + cache_offset(s, j0, g) + static_cast<int64_t>(j1 - j0) * hd,
                          j2 - j1, hd, acc.data());
        }
        const float inv_sum = static_cast<float>(1.0 / sum);
        float* dst = o + t * static_cast<int64_t>(nh) * hd + static_cast<int64_t>(h) * hd;
        for (int d = 0; d < hd; ++d) dst[d] = acc[d] * inv_sum;
      }
    });
  };
  if (cache.k.dtype == DType::f16) run(cache.k.ptr<uint16_t>(), cache.v.ptr<uint16_t>());
  else run(cache.k.ptr<float>(), cache.v.ptr<float>());
}

}  // namespace kestrel::cpu
