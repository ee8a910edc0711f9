#include "cpu/quantized_q8_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "core/half.h"
#include "cpu/cpu_ops.h"
#include "cpu/thread_pool.h"

namespace kestrel::cpu {

// The per-instruction-set rows (quantized_q8_simd.h), compiled in their own files.
#define KESTREL_Q8_ROWS(ns)                                                                               \
  namespace ns {                                                                                          \
  float row_int4(const uint8_t* q, const uint16_t* s, const uint16_t* m, int64_t nb, int bpg,             \
                 const Q8Block* x);                                                                       \
  float row_int8(const int8_t* q, const float* s, int64_t nb, int bpg, const Q8Block* x);                 \
  float row_int8_q16(const int8_t* q, const float* s, int64_t nb, int bpg, const Q16Block* x);            \
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

using RowInt8Q16 = float (*)(const int8_t*, const float*, int64_t, int, const Q16Block*);
using RowInt4 = float (*)(const uint8_t*, const uint16_t*, const uint16_t*, int64_t, int, const Q8Block*);
using RowInt8 = float (*)(const int8_t*, const float*, int64_t, int, const Q8Block*);

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

bool q8_eligible(const QuantizedWeight& w) { return w.cols % 32 == 0 && w.group_size % 32 == 0; }

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
  RowInt8Q16 row = row_int8_portable<Q16Block>;
#if defined(__x86_64__)
  if (isa == Q8Isa::avx2) row = q8_avx2::row_int8_q16;
  if (isa == Q8Isa::avx512_vnni) row = q8_vnni::row_int8_q16;
#endif
  const auto* q8 = static_cast<const int8_t*>(w.data.data);
  const auto* scales32 = static_cast<const float*>(w.scales.data);
  parallel_for(threads_for(M * K, threads), M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t t = 0; t < T; ++t)
        out[t * M + m] = row(q8 + m * K, scales32 + m * G, nb, bpg, xq + t * nb) + (bias ? bias[m] : 0.0f);
  });
}

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

  RowInt4 row4 = row_int4_portable;
  RowInt8 row8 = row_int8_portable<Q8Block>;
#if defined(__x86_64__)
  if (isa == Q8Isa::avx2) {
    row4 = q8_avx2::row_int4;
    row8 = q8_avx2::row_int8;
  } else if (isa == Q8Isa::avx512_vnni) {
    row4 = q8_vnni::row_int4;
    row8 = q8_vnni::row_int8;
  }
#endif
  const auto* q4 = static_cast<const uint8_t*>(w.data.data);
  const auto* q8 = static_cast<const int8_t*>(w.data.data);
  const auto* scales16 = static_cast<const uint16_t*>(w.scales.data);
  const auto* mins16 = static_cast<const uint16_t*>(w.mins.data);
  const auto* scales32 = static_cast<const float*>(w.scales.data);
  const bool int4 = w.format == QuantFormat::int4;
  parallel_for(threads_for(M * K, threads), M, 1, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      for (int64_t t = 0; t < T; ++t) {
        const Q8Block* xt = xq + t * nb;
        const float v = int4 ? row4(q4 + m * G * (w.group_size / 2), scales16 + m * G, mins16 + m * G, nb, bpg, xt)
                             : row8(q8 + m * K, scales32 + m * G, nb, bpg, xt);
        out[t * M + m] = v + (bias ? bias[m] : 0.0f);
      }
    }
  });
}

}  // namespace kestrel::cpu
