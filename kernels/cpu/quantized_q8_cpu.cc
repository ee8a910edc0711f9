#include "cpu/quantized_q8_cpu.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "core/half.h"
#include "cpu/cpu_ops.h"
#include "cpu/interleaved_rows.h"
#include "cpu/thread_pool.h"
#include "kestrel/error.h"
#include "kquant_blocks.h"

namespace kestrel::cpu {

// The per-instruction-set rows (quantized_q8_simd.h), compiled in their own files: one
// weight row against T tokens (token t's activation blocks at x + t * x_stride, its result
// into out[t * out_stride]), each weight block unpacked once for all of them.
#define KESTREL_Q8_ROWS(ns)                                                                               \
  namespace ns {                                                                                          \
  void rows_int4(const uint8_t* q, const uint16_t* s, const uint16_t* m, int64_t nb, int bpg,             \
                 const Q8Block* x, int64_t x_stride, int64_t T, float* out, int64_t out_stride);          \
  void rows8_int4(const uint8_t* q, const uint16_t* s, const uint16_t* m, int64_t nb, int bpg,            \
                  const Q8Block* x, int64_t x_stride, int64_t T, float* out, int64_t out_stride);         \
  void rows8_int8(const int8_t* q, const float* s, int64_t nb, int bpg, const Q16Block* x, int64_t x_stride, \
                  int64_t T, float* out, int64_t out_stride);                                             \
  void rows_int8(const int8_t* q, const float* s, int64_t nb, int bpg, const Q8Block* x, int64_t x_stride, \
                 int64_t T, float* out, int64_t out_stride);                                              \
  void rows_int8_q16(const int8_t* q, const float* s, int64_t nb, int bpg, const Q16Block* x,             \
                     int64_t x_stride, int64_t T, float* out, int64_t out_stride);                        \
  void rows_q4k(const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T, float* out, \
                int64_t out_stride);                                                                      \
  void rows_q5k(const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T, float* out, \
                int64_t out_stride);                                                                      \
  void rows_q6k(const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T, float* out, \
                int64_t out_stride);                                                                      \
  float row_q4_0(const uint8_t* q, int64_t nb, const Q8Block* x);                                         \
  float row_q5_0(const uint8_t* q, int64_t nb, const Q8Block* x);                                         \
  float row_q5_1(const uint8_t* q, int64_t nb, const Q8Block* x);                                         \
  float row_iq4_nl(const uint8_t* q, int64_t nb, const Q8Block* x);                                       \
  float row_mxfp4(const uint8_t* q, int64_t nb, const Q8Block* x);                                        \
  Rows8Blocks rows8_blocks(QuantFormat f);                                                                \
  float row_iq4_xs(const uint8_t* q, int64_t nsb, const Q8Block* x);                                      \
  float row_q2k(const uint8_t* q, int64_t nsb, const Q8Block* x);                                         \
  float row_q3k(const uint8_t* q, int64_t nsb, const Q8Block* x);                                         \
  }
#if defined(__x86_64__)
KESTREL_Q8_ROWS(q8_avx2)
KESTREL_Q8_ROWS(q8_vnni)
#endif
#undef KESTREL_Q8_ROWS

namespace {

float row_int4_portable(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t nb, int bpg,
                        const Q8Block* x) {
  float total = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* block = q + 16 * b;
    int32_t p = 0;
    for (int j = 0; j < 16; ++j) p += (block[j] & 0xf) * x[b].q[j] + (block[j] >> 4) * x[b].q[16 + j];
    const int64_t g = b / bpg;
    total += f16_to_f32(scales[g]) * x[b].d * static_cast<float>(p) + f16_to_f32(mins[g]) * x[b].sum;
  }
  return total;
}

// int8 weights against 8- or 16-bit activation blocks.
template <class Block>
float row_int8_portable(const int8_t* q, const float* scales, int64_t nb, int bpg, const Block* x) {
  float total = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int32_t p = 0;
    for (int j = 0; j < 32; ++j) p += q[32 * b + j] * x[b].q[j];
    total += scales[b / bpg] * x[b].d * static_cast<float>(p);
  }
  return total;
}

// K-quant rows (nsb super-blocks), a sub-block of 32 columns against each Q8 block; Q6_K's
// halves of 16 columns each with their own scale.
template <QuantFormat F>
float row_kquant_portable(const uint8_t* q, int64_t nsb, const Q8Block* x) {
  float total = 0.0f;
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + kquant::block_bytes(F) * sb;
    for (int s = 0; s < kquant::kSubBlocks; ++s) {
      const Q8Block& xb = x[8 * sb + s];
      if constexpr (F == QuantFormat::q6_k) {
        int32_t p[2] = {0, 0};
        for (int c = 0; c < 32; ++c) p[c / 16] += kquant::q6_k_value(block, 32 * s + c) * xb.q[c];
        total += xb.d * (kquant::q6_k_scale(block, 32 * s) * static_cast<float>(p[0]) +
                         kquant::q6_k_scale(block, 32 * s + 16) * static_cast<float>(p[1]));
      } else {
        int32_t p = 0;
        for (int c = 0; c < 32; ++c)
          p += (F == QuantFormat::q4_k ? kquant::q4_k_value(block, s, c) : kquant::q5_k_value(block, s, c)) * xb.q[c];
        float scale = 0.0f, min = 0.0f;
        kquant::sub_block_scale_min(block, s, scale, min);
        total += scale * xb.d * static_cast<float>(p) + min * xb.sum;
      }
    }
  }
  return total;
}

// The other block formats (Q4_0, Q5_0, Q5_1, IQ4_NL, MXFP4: blocks of 32; IQ4_XS, Q2_K, Q3_K: of 256),
// through the formats' shared reading (kquant_blocks.h): each 16-column half of a block
// against its activations, scale x the integer product + min x their sum.
template <QuantFormat F>
float row_blocks_portable(const uint8_t* q, int64_t nblocks, const Q8Block* x) {
  constexpr int kCols = kquant::block_columns(F), kBytes = kquant::block_bytes(F);
  float total = 0.0f;
  for (int64_t b = 0; b < nblocks; ++b) {
    const uint8_t* block = q + kBytes * b;
    for (int n0 = 0; n0 < kCols; n0 += 16) {
      const Q8Block& xb = x[(b * kCols + n0) / 32];
      const int8_t* xq = xb.q + n0 % 32;
      int32_t p = 0, sum = 0;
      for (int c = 0; c < 16; ++c) {
        p += kquant::quant_value(F, block, n0 + c) * xq[c];
        sum += xq[c];
      }
      float scale = 0.0f, min = 0.0f;
      kquant::scale_min(F, block, n0, scale, min);
      total += xb.d * (scale * static_cast<float>(p) + min * static_cast<float>(sum));
    }
  }
  return total;
}

// The portable rows: token by token, the same loop for each.
void rows_int4_portable(const uint8_t* q, const uint16_t* s, const uint16_t* m, int64_t nb, int bpg, const Q8Block* x,
                        int64_t x_stride, int64_t T, float* out, int64_t out_stride) {
  for (int64_t t = 0; t < T; ++t) out[t * out_stride] = row_int4_portable(q, s, m, nb, bpg, x + t * x_stride);
}
template <class Block>
void rows_int8_portable(const int8_t* q, const float* s, int64_t nb, int bpg, const Block* x, int64_t x_stride,
                        int64_t T, float* out, int64_t out_stride) {
  for (int64_t t = 0; t < T; ++t) out[t * out_stride] = row_int8_portable<Block>(q, s, nb, bpg, x + t * x_stride);
}
template <QuantFormat F>
void rows_kquant_portable(const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T, float* out,
                          int64_t out_stride) {
  for (int64_t t = 0; t < T; ++t) out[t * out_stride] = row_kquant_portable<F>(q, nsb, x + t * x_stride);
}

using RowsKquant = Rows8Blocks;  // the same signature, one output row per token
using RowsInt8Q16 = void (*)(const int8_t*, const float*, int64_t, int, const Q16Block*, int64_t, int64_t, float*,
                             int64_t);
using RowsInt4 = void (*)(const uint8_t*, const uint16_t*, const uint16_t*, int64_t, int, const Q8Block*, int64_t,
                          int64_t, float*, int64_t);
using RowsInt8 = void (*)(const int8_t*, const float*, int64_t, int, const Q8Block*, int64_t, int64_t, float*,
                          int64_t);

// out[t, m] += bias[m] for the T tokens of output row m.
void add_bias(const float* bias, int64_t m, int64_t T, int64_t M, float* out) {
  if (bias)
    for (int64_t t = 0; t < T; ++t) out[t * M + m] += bias[m];
}

// The interleaved weights' row groups (interleaved_rows.h) over the threads: rows(i) writes
// output rows 8i .. 8i + 7 of every token, then their bias is added.
template <class Rows>
void for_row_groups(const QuantizedWeight& w, const float* bias, int64_t T, float* out, int threads, Rows&& rows) {
  const int64_t M = w.rows;
  parallel_for(threads_for(M * w.cols, threads), M / kInterleaveRows, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      rows(i);
      for (int64_t m = i * kInterleaveRows; m < (i + 1) * kInterleaveRows; ++m) add_bias(bias, m, T, M, out);
    }
  });
}

using RowKquant = float (*)(const uint8_t*, int64_t, const Q8Block*);

// A one-token row function over T tokens, one call per token: the block formats without a
// multi-token kernel yet (each token's result is the same either way).
template <RowKquant Row>
void rows_one_by_one(const uint8_t* q, int64_t nblocks, const Q8Block* x, int64_t x_stride, int64_t T, float* out,
                     int64_t out_stride) {
  for (int64_t t = 0; t < T; ++t) out[t * out_stride] = Row(q, nblocks, x + t * x_stride);
}

// The rows function of a ggml block format on an instruction set.
RowsKquant block_rows(QuantFormat f, Q8Isa isa) {
#if defined(__x86_64__)
  if (isa == Q8Isa::avx2 || isa == Q8Isa::avx512_vnni) {
    const bool v = isa == Q8Isa::avx512_vnni;
    switch (f) {
      case QuantFormat::q4_k: return v ? q8_vnni::rows_q4k : q8_avx2::rows_q4k;
      case QuantFormat::q5_k: return v ? q8_vnni::rows_q5k : q8_avx2::rows_q5k;
      case QuantFormat::q6_k: return v ? q8_vnni::rows_q6k : q8_avx2::rows_q6k;
      case QuantFormat::q4_0: return v ? rows_one_by_one<q8_vnni::row_q4_0> : rows_one_by_one<q8_avx2::row_q4_0>;
      case QuantFormat::q5_0: return v ? rows_one_by_one<q8_vnni::row_q5_0> : rows_one_by_one<q8_avx2::row_q5_0>;
      case QuantFormat::q5_1: return v ? rows_one_by_one<q8_vnni::row_q5_1> : rows_one_by_one<q8_avx2::row_q5_1>;
      case QuantFormat::iq4_nl: return v ? rows_one_by_one<q8_vnni::row_iq4_nl> : rows_one_by_one<q8_avx2::row_iq4_nl>;
      case QuantFormat::iq4_xs: return v ? rows_one_by_one<q8_vnni::row_iq4_xs> : rows_one_by_one<q8_avx2::row_iq4_xs>;
      case QuantFormat::q2_k: return v ? rows_one_by_one<q8_vnni::row_q2k> : rows_one_by_one<q8_avx2::row_q2k>;
      case QuantFormat::q3_k: return v ? rows_one_by_one<q8_vnni::row_q3k> : rows_one_by_one<q8_avx2::row_q3k>;
      case QuantFormat::mxfp4: return v ? rows_one_by_one<q8_vnni::row_mxfp4> : rows_one_by_one<q8_avx2::row_mxfp4>;
      default: break;
    }
  }
#else
  (void)isa;
#endif
  switch (f) {
    case QuantFormat::q4_k: return rows_kquant_portable<QuantFormat::q4_k>;
    case QuantFormat::q5_k: return rows_kquant_portable<QuantFormat::q5_k>;
    case QuantFormat::q6_k: return rows_kquant_portable<QuantFormat::q6_k>;
    case QuantFormat::q4_0: return rows_one_by_one<row_blocks_portable<QuantFormat::q4_0>>;
    case QuantFormat::q5_0: return rows_one_by_one<row_blocks_portable<QuantFormat::q5_0>>;
    case QuantFormat::q5_1: return rows_one_by_one<row_blocks_portable<QuantFormat::q5_1>>;
    case QuantFormat::iq4_nl: return rows_one_by_one<row_blocks_portable<QuantFormat::iq4_nl>>;
    case QuantFormat::iq4_xs: return rows_one_by_one<row_blocks_portable<QuantFormat::iq4_xs>>;
    case QuantFormat::q2_k: return rows_one_by_one<row_blocks_portable<QuantFormat::q2_k>>;
    case QuantFormat::q3_k: return rows_one_by_one<row_blocks_portable<QuantFormat::q3_k>>;
    case QuantFormat::mxfp4: return rows_one_by_one<row_blocks_portable<QuantFormat::mxfp4>>;
    default: throw Error(ErrorCategory::internal, std::string("block_rows: ") + to_string(f) + " is not a block format");
  }
}

}  // namespace

const char* to_string(Q8Isa isa) {
  switch (isa) {
    case Q8Isa::portable: return "portable";
    case Q8Isa::avx2: return "avx2";
    case Q8Isa::avx512_vnni: return "avx512-vnni";
  }
  return "?";
}

bool q8_isa_available(Q8Isa isa) {
#if defined(__x86_64__)
  // F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports has no "f16c".
  static const bool f16c = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  }();
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  static const bool vnni = avx2 && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  switch (isa) {
    case Q8Isa::portable: return true;
    case Q8Isa::avx2: return avx2;
    case Q8Isa::avx512_vnni: return vnni;
  }
  return false;
#else
  return isa == Q8Isa::portable;
#endif
}

Q8Isa best_q8_isa() {
  static const Q8Isa best = q8_isa_available(Q8Isa::avx512_vnni) ? Q8Isa::avx512_vnni
                            : q8_isa_available(Q8Isa::avx2)      ? Q8Isa::avx2
                                                                 : Q8Isa::portable;
  return best;
}

bool q8_eligible(const QuantizedWeight& w) {
  if (w.format == QuantFormat::mixed)
    return std::all_of(w.parts.begin(), w.parts.end(), [](const QuantizedWeight& p) { return q8_eligible(p); });
  return w.format != QuantFormat::fp8_e4m3 && w.cols % 32 == 0 && w.group_size % 32 == 0;
}

void quantize_row_q8(const float* x, int64_t K, Q8Block* out) {
  for (int64_t b = 0; b < K / 32; ++b) {
    const float* xb = x + 32 * b;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    Q8Block& o = out[b];
    o.d = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) {
      o.q[j] = static_cast<int8_t>(std::nearbyint(xb[j] * inv));  // |x| <= amax: within [-127, 127]
      sum += o.q[j];
    }
    o.sum = o.d * static_cast<float>(sum);
  }
}

void quantize_row_q16(const float* x, int64_t K, Q16Block* out) {
  for (int64_t b = 0; b < K / 32; ++b) {
    const float* xb = x + 32 * b;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    out[b].d = amax / 32767.0f;
    const float inv = amax > 0.0f ? 32767.0f / amax : 0.0f;
    for (int j = 0; j < 32; ++j) out[b].q[j] = static_cast<int16_t>(std::nearbyint(xb[j] * inv));
  }
}

namespace {

// Interleaved int8 rows (interleaved_rows.h), 8 at a time, against the T tokens' 16-bit
// blocks xq ([T, K / 32]: precise activations, or 8-bit blocks widened).
void interleaved_int8_rows(const Q16Block* xq, int64_t T, const QuantizedWeight& w, const float* bias, float* out,
                           int threads, Q8Isa isa) {
  const int64_t K = w.cols, M = w.rows, G = w.groups(), nb = K / 32;
  const int bpg = w.group_size / 32;
  RowsInt8Q16 rows = rows8_int8_portable;
#if defined(__x86_64__)
  if (isa == Q8Isa::avx2) rows = q8_avx2::rows8_int8;
  if (isa == Q8Isa::avx512_vnni) rows = q8_vnni::rows8_int8;
#else
  (void)isa;
#endif
  const auto* q8 = static_cast<const int8_t*>(w.data.data);
  const auto* scales32 = static_cast<const float*>(w.scales.data);
  for_row_groups(w, bias, T, out, threads, [&](int64_t i) {
    rows(q8 + i * kInterleaveRows * K, scales32 + i * kInterleaveRows * G, nb, bpg, xq, nb, T,
         out + i * kInterleaveRows, M);
  });
}

}  // namespace

// int8 weights that keep their activations precise: 16-bit blocks. Products of an int8
// weight and a 16-bit value, summed in pairs, stay far inside int32.
void q16_dot_path(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out, int threads,
                  Q8Isa isa) {
  const int64_t T = x.dim(0), K = w.cols, M = w.rows, G = w.groups(), nb = K / 32;
  const int bpg = w.group_size / 32;
  thread_local std::vector<Q16Block> xq_buffer;
  xq_buffer.resize(static_cast<size_t>(T * nb));
  Q16Block* const xq = xq_buffer.data();
  for (int64_t t = 0; t < T; ++t) quantize_row_q16(x.ptr<float>() + t * K, K, xq + t * nb);
  if (w.interleave == kInterleaveRows) {
    interleaved_int8_rows(xq, T, w, bias, out, threads, isa);
    return;
  }
  RowsInt8Q16 rows = rows_int8_portable<Q16Block>;
#if defined(__x86_64__)
  if (isa == Q8Isa::avx2) rows = q8_avx2::rows_int8_q16;
  if (isa == Q8Isa::avx512_vnni) rows = q8_vnni::rows_int8_q16;
#endif
  const auto* q8 = static_cast<const int8_t*>(w.data.data);
  const auto* scales32 = static_cast<const float*>(w.scales.data);
  parallel_for(threads_for(M * K, threads), M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      rows(q8 + m * K, scales32 + m * G, nb, bpg, xq, nb, T, out + m, M);
      add_bias(bias, m, T, M, out);
    }
  });
}

namespace {

// The interleaved 32-column block formats' rows (interleaved_rows.h), 8 at a time.
void interleaved_block_rows(const Q8Block* xq, int64_t T, const QuantizedWeight& w, const float* bias, float* out,
                            int threads, Q8Isa isa) {
  const int64_t K = w.cols, M = w.rows, nb = K / kquant::block_columns(w.format);
  const int64_t group_bytes = kInterleaveRows * nb * kquant::block_bytes(w.format);
  Rows8Blocks rows = nullptr;  // portable below
#if defined(__x86_64__)
  if (isa == Q8Isa::avx2) rows = q8_avx2::rows8_blocks(w.format);
  if (isa == Q8Isa::avx512_vnni) rows = q8_vnni::rows8_blocks(w.format);
#else
  (void)isa;
#endif
  const auto* q = static_cast<const uint8_t*>(w.data.data);
  for_row_groups(w, bias, T, out, threads, [&](int64_t i) {
    float* const o = out + i * kInterleaveRows;
    if (rows)
      rows(q + i * group_bytes, nb, xq, K / 32, T, o, M);
    else
      rows8_blocks_portable(w.format, q + i * group_bytes, nb, xq, K / 32, T, o, M);
  });
}

// The ggml block formats' rows against the T tokens' activation blocks xq ([T, K / 32]).
void kquant_rows(const Q8Block* xq, int64_t T, const QuantizedWeight& w, const float* bias, float* out,
                 int threads, Q8Isa isa) {
  if (w.interleave == kInterleaveRows) {
    interleaved_block_rows(xq, T, w, bias, out, threads, isa);
    return;
  }
  const int64_t K = w.cols, M = w.rows, nsb = K / kquant::block_columns(w.format), nb = K / 32;
  const int64_t row_bytes = nsb * kquant::block_bytes(w.format);
  const RowsKquant rows = block_rows(w.format, isa);
  const auto* q = static_cast<const uint8_t*>(w.data.data);
  parallel_for(threads_for(M * K, threads), M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      rows(q + m * row_bytes, nsb, xq, nb, T, out + m, M);
      add_bias(bias, m, T, M, out);
    }
  });
}

}  // namespace

void q8_dot_path(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out, int threads,
                 Q8Isa isa) {
  const int64_t T = x.dim(0), K = w.cols, M = w.rows, G = w.groups(), nb = K / 32;
  const int bpg = w.group_size / 32;
  if (w.precise_activations && w.format == QuantFormat::int8) {
    q16_dot_path(x, w, bias, out, threads, isa);
    return;
  }
  // The activations, quantized once per call for all rows (a per-thread buffer reused
  // across steps: no allocation in the decode loop once it has grown).
  thread_local std::vector<Q8Block> xq_buffer;
  xq_buffer.resize(static_cast<size_t>(T * nb));
  Q8Block* const xq = xq_buffer.data();
  for (int64_t t = 0; t < T; ++t) quantize_row_q8(x.ptr<float>() + t * K, K, xq + t * nb);

  RowsInt4 rows4 = rows_int4_portable, rows4_interleaved = rows8_int4_portable;
  RowsInt8 rows8 = rows_int8_portable<Q8Block>;
#if defined(__x86_64__)
  if (isa == Q8Isa::avx2) {
    rows4 = q8_avx2::rows_int4;
    rows4_interleaved = q8_avx2::rows8_int4;
    rows8 = q8_avx2::rows_int8;
  } else if (isa == Q8Isa::avx512_vnni) {
    rows4 = q8_vnni::rows_int4;
    rows4_interleaved = q8_vnni::rows8_int4;
    rows8 = q8_vnni::rows_int8;
  }
#endif
  if (kquant::is_block_format(w.format)) {
    kquant_rows(xq, T, w, bias, out, threads, isa);
    return;
  }
  const auto* q4 = static_cast<const uint8_t*>(w.data.data);
  const auto* q8 = static_cast<const int8_t*>(w.data.data);
  const auto* scales16 = static_cast<const uint16_t*>(w.scales.data);
  const auto* mins16 = static_cast<const uint16_t*>(w.mins.data);
  const auto* scales32 = static_cast<const float*>(w.scales.data);
  const bool int4 = w.format == QuantFormat::int4;
  if (!int4 && w.interleave == kInterleaveRows) {  // the 16-bit rows, on the same values
    thread_local std::vector<Q16Block> wide_buffer;
    wide_buffer.resize(xq_buffer.size());
    widen_q8_blocks(xq, T * nb, wide_buffer.data());
    interleaved_int8_rows(wide_buffer.data(), T, w, bias, out, threads, isa);
    return;
  }
  if (int4 && w.interleave == kInterleaveRows) {  // 8 rows at a time (interleaved_rows.h)
    const int64_t group_bytes = kInterleaveRows * G * (w.group_size / 2), group_scales = kInterleaveRows * G;
    for_row_groups(w, bias, T, out, threads, [&](int64_t i) {
      rows4_interleaved(q4 + i * group_bytes, scales16 + i * group_scales, mins16 + i * group_scales, nb, bpg, xq, nb,
                        T, out + i * kInterleaveRows, M);
    });
    return;
  }
  // Each weight row against all T tokens at once (a block unpacked once for them); every
  // (token, output) sum in the order of a one-token call, so batches give the same bits.
  parallel_for(threads_for(M * K, threads), M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      if (int4)
        rows4(q4 + m * G * (w.group_size / 2), scales16 + m * G, mins16 + m * G, nb, bpg, xq, nb, T, out + m, M);
      else
        rows8(q8 + m * K, scales32 + m * G, nb, bpg, xq, nb, T, out + m, M);
      add_bias(bias, m, T, M, out);
    }
  });
}

}  // namespace kestrel::cpu
