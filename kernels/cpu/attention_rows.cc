// kernels/cpu/attention_rows.cc: the portable attention row loops and the choice of kernel
// (attention_rows.h). The AVX2 loops are in attention_rows_avx2.cc.
#include "cpu/attention_rows.h"

#include "cpu/quantized_q8_cpu.h"

namespace kestrel::cpu {

#if defined(__x86_64__)
const AttentionRowKernels& attention_rows_avx2_kernels();  // attention_rows_avx2.cc
#endif

namespace {

void scores_portable(const float* q, const float* k, int count, int hd, float* out) {
  for (int i = 0; i < count; ++i) {
    const float* row = k + static_cast<long>(i) * hd;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int d = 0; d < hd; ++d) dot += q[d] * row[d];
    out[i] = dot;
  }
}

void accumulate_portable(const float* w, const float* v, int count, int hd, float* acc) {
  for (int i = 0; i < count; ++i) {
    const float wi = w[i];
    const float* row = v + static_cast<long>(i) * hd;
#pragma omp simd
    for (int d = 0; d < hd; ++d) acc[d] += wi * row[d];
  }
}

}  // namespace

const AttentionRowKernels& attention_rows_portable() {
  static const AttentionRowKernels kernels{"portable", scores_portable, accumulate_portable};
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
