// kernels/cpu/quantized_q8_simd.h: the SIMD block dot products of the 8-bit-activation
// path (quantized_q8_cpu.h), written once and compiled once per instruction set: included
// by quantized_q8_avx2.cc (-mavx2 -mfma -mf16c) and quantized_q8_vnni.cc (plus AVX-512 VL
// and VNNI), each defining KESTREL_Q8_NS, the namespace that keeps their symbols apart.
//
// Per 32-column block: the weights unpacked to 32 bytes (int4: the 16 low nibbles are
// columns 0..15 and the high nibbles 16..31, as in QuantizedWeight; int8: the bytes with
// their signs moved onto the activations, since the integer product takes unsigned x
// signed), one integer dot product into 8 int32 lanes, converted and multiplied by the
// block's float scale (weight scale x activation scale) into float accumulators.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "cpu/quantized_q8_block.h"  // nothing inline but this file's own functions

namespace kestrel::cpu::KESTREL_Q8_NS {

// sum over groups of 4 bytes of u (unsigned) x s (signed), in 8 int32 lanes.
inline __m256i int_dot(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  // maddubs: pairs into int16 (at most 2 x 255 x 127: no saturation for int4 or |int8|
  // weights); madd with ones: pairs of those into int32.
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i load_q8(const Q8Block& x) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.q)); }

// One int4 row (nb blocks of 16 bytes; f16 scale and min per group of `bpg` blocks).
inline float dot_int4(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t nb, int bpg,
                      const Q8Block* x) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  float min_total = 0.0f;
  for (int64_t g = 0, b = 0; b < nb; ++g) {
    const float s = _cvtsh_ss(scales[g]), m = _cvtsh_ss(mins[g]);
    for (int j = 0; j < bpg && b < nb; ++j, ++b) {  // a short last group has fewer blocks
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * b));
      const __m256i w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
      const __m256 p = _mm256_cvtepi32_ps(int_dot(w, load_q8(x[b])));
      acc[b & 1] = _mm256_fmadd_ps(p, _mm256_set1_ps(s * x[b].d), acc[b & 1]);
      min_total += m * x[b].sum;
    }
  }
  return hsum(_mm256_add_ps(acc[0], acc[1])) + min_total;
}

// One int8 row (nb blocks of 32 bytes; f32 scale per group of `bpg` blocks).
inline float dot_int8(const int8_t* q, const float* scales, int64_t nb, int bpg, const Q8Block* x) {
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t g = 0, b = 0; b < nb; ++g) {
    const float s = scales[g];
    for (int j = 0; j < bpg && b < nb; ++j, ++b) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * b));
      // |w| x (x with w's sign): unsigned x signed, the same products.
      const __m256i p32 = int_dot(_mm256_sign_epi8(w, w), _mm256_sign_epi8(load_q8(x[b]), w));
      acc[b & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(s * x[b].d), acc[b & 1]);
    }
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

// One int8 row against 16-bit activations: the weights sign-extended to 16 bits, pairs
// multiplied and added into int32 (vpmaddwd, or vpdpwssd with VNNI).
inline float dot_int8_q16(const int8_t* q, const float* scales, int64_t nb, int bpg, const Q16Block* x) {
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t g = 0, b = 0; b < nb; ++g) {
    const float s = scales[g];
    for (int j = 0; j < bpg && b < nb; ++j, ++b) {
      const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 32 * b)));
      const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 32 * b + 16)));
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].q));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].q + 16));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
      const __m256i p32 = _mm256_dpwssd_epi32(_mm256_madd_epi16(w0, x0), w1, x1);
#else
      const __m256i p32 = _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1));
#endif
      acc[b & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(s * x[b].d), acc[b & 1]);
    }
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

// The entry points quantized_q8_cpu.cc calls (declared there), one set per instruction set.
float row_int4(const uint8_t* q, const uint16_t* s, const uint16_t* m, int64_t nb, int bpg, const Q8Block* x) {
  return dot_int4(q, s, m, nb, bpg, x);
}
float row_int8(const int8_t* q, const float* s, int64_t nb, int bpg, const Q8Block* x) {
  return dot_int8(q, s, nb, bpg, x);
}
float row_int8_q16(const int8_t* q, const float* s, int64_t nb, int bpg, const Q16Block* x) {
  return dot_int8_q16(q, s, nb, bpg, x);
}

}  // namespace kestrel::cpu::KESTREL_Q8_NS
