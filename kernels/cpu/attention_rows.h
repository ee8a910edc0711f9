// kernels/cpu/attention_rows.h: the inner loops of the CPU attention (attention_cpu.cc):
// one query row against a run of consecutive cache rows (the slots of one KV block).
//
// Each row's arithmetic is a fixed sequence that depends only on the row itself (its query,
// the keys and values it reads, in ascending position order), never on the other rows of the
// step: prefill and decode compute a position identically, whatever shares the step.
//   - scores: every dot product is summed in the same order, whether its key is computed
//     with seven others (the 8-key kernel) or alone;
//   - accumulate: each output element adds the weighted values in ascending position order.
//
// An f16 cache (SessionOptions::kv_dtype) holds keys and values rounded to nearest even when
// they are written (to_f16); scores_f16 / accumulate_f16 widen them to f32 exactly and then
// do the f32 kernels' arithmetic in the same order, so an f16 row computes what the f32 row
// computes on the rounded values.
#pragma once

#include <cstdint>

namespace kestrel::cpu {

struct AttentionRowKernels {
  const char* name;
  // out[i] = sum_d q[d] * k[i * hd + d], for i < count.
  void (*scores)(const float* q, const float* k, int count, int hd, float* out);
  // acc[d] += w[i] * v[i * hd + d], for i = 0 .. count - 1 in that order, d < hd.
  void (*accumulate)(const float* w, const float* v, int count, int hd, float* acc);
  // The same over f16 keys and values (IEEE binary16 bits).
  void (*scores_f16)(const float* q, const uint16_t* k, int count, int hd, float* out);
  void (*accumulate_f16)(const float* w, const uint16_t* v, int count, int hd, float* acc);
  // dst[i] = src[i] rounded to f16, nearest even (overflow to infinity), for i < n.
  void (*to_f16)(const float* src, int n, uint16_t* dst);
  // The softmax numerators: s[i] = exp(s[i] - max) for i < n (s[i] <= max), returning their
  // sum in double. Within 2 ulps of std::exp (the AVX2 loop's polynomial; underflow below
  // e^-87 gives e^-87 or 0); a NaN stays NaN, so a poisoned row shows.
  double (*exp_sum)(float* s, int n, float max);
};

// The scalar loops (any processor; the reference the tests compare with).
const AttentionRowKernels& attention_rows_portable();
// AVX2 + FMA, or null where this build or this processor has none.
const AttentionRowKernels* attention_rows_avx2();
// The best this processor runs, decided once.
const AttentionRowKernels& attention_rows_best();

}  // namespace kestrel::cpu
