// kernels/cpu/attention_rows.cc: the portable attention row loops and the choice of kernel
// (attention_rows.h). The AVX2 loops are in attention_rows_avx2.cc.
#include "cpu/attention_rows.h"

#include <cmath>
#include <vector>

#include "core/half.h"
#include "cpu/quantized_q8_cpu.h"

namespace kestrel::cpu {

#if defined(__x86_64__)
const AttentionRowKernels& attention_rows_avx2_kernels();  // attention_rows_avx2.cc
#endif

namespace {

float dot_row(const float* q, const float* row, int hd) {
  float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
  for (int d = 0; d < hd; ++d) dot += q[d] * row[d];
  return dot;
}

void add_row(float wi, const float* row, int hd, float* acc) {
#pragma omp simd
  for (int d = 0; d < hd; ++d) acc[d] += wi * row[d];
}

void scores_portable(const float* q, const float* k, int count, int hd, float* out) {
  for (int i = 0; i < count; ++i) out[i] = dot_row(q, k + static_cast<long>(i) * hd, hd);
}

void accumulate_portable(const float* w, const float* v, int count, int hd, float* acc) {
  for (int i = 0; i < count; ++i) add_row(w[i], v + static_cast<long>(i) * hd, hd, acc);
}

// One f16 row widened to f32 (exactly), in a per-thread buffer reused across calls.
const float* widen_row(const uint16_t* row, int hd) {
  thread_local std::vector<float> wide;
  wide.resize(static_cast<size_t>(hd));
  for (int d = 0; d < hd; ++d) wide[static_cast<size_t>(d)] = f16_to_f32(row[d]);
  return wide.data();
}

void scores_f16_portable(const float* q, const uint16_t* k, int count, int hd, float* out) {
  for (int i = 0; i < count; ++i) out[i] = dot_row(q, widen_row(k + static_cast<long>(i) * hd, hd), hd);
}

void accumulate_f16_portable(const float* w, const uint16_t* v, int count, int hd, float* acc) {
  for (int i = 0; i < count; ++i) add_row(w[i], widen_row(v + static_cast<long>(i) * hd, hd), hd, acc);
}

double exp_sum_portable(float* s, int n, float max) {
  double sum = 0.0;
  for (int i = 0; i < n; ++i) {
    s[i] = std::exp(s[i] - max);
    sum += s[i];
  }
  return sum;
}

void to_f16_portable(const float* src, int n, uint16_t* dst) {
  for (int i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

}  // namespace

const AttentionRowKernels& attention_rows_portable() {
  static const AttentionRowKernels kernels{"portable",          scores_portable,         accumulate_portable,
                                           scores_f16_portable, accumulate_f16_portable, to_f16_portable,
                                           exp_sum_portable};
  return kernels;
}

const AttentionRowKernels* attention_rows_avx2() {
#if defined(__x86_64__)
  // The same instructions the q8 AVX2 kernels need (AVX2, FMA), detected once there.
  if (q8_isa_available(Q8Isa::avx2)) return &attention_rows_avx2_kernels();
#endif
  return nullptr;
}

const AttentionRowKernels& attention_rows_best() {
  static const AttentionRowKernels& best = [] () -> const AttentionRowKernels& {
    const AttentionRowKernels* avx2 = attention_rows_avx2();
    return avx2 ? *avx2 : attention_rows_portable();
  }();
  return best;
}

}  // namespace kestrel::cpu
