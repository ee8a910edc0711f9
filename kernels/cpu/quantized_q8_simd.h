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
#include <cstring>
#include <type_traits>

#include "cpu/quantized_q8_block.h"  // nothing inline but this file's own functions
#include "kquant_blocks.h"            // static functions: this file's own copies

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

// Every row function below takes NT tokens at once (x[t]: token t's activation blocks,
// out[t]: its result): each weight block is loaded and unpacked once and applied to the NT
// tokens, and each token keeps its own accumulators, updated in exactly the order of NT = 1,
// so a token's result is the same bits whatever NT and whichever tokens it is computed with
// (batch invariance). The NT independent accumulator chains also keep more FMAs in flight.

// Blocks go to accumulator b & 1 (two chains per token), walked in pairs so that the
// index is known at compile time and the accumulators stay in registers.
template <class Block>
inline void pairs_of_blocks(int64_t nb, int bpg, Block&& block) {
  int64_t g = 0;
  int j = 0;  // block b is the j-th of group g
  const auto next = [&] {
    if (++j == bpg) {
      j = 0;
      ++g;
    }
  };
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    block(b, g, std::integral_constant<int, 0>{});
    next();
    block(b + 1, g, std::integral_constant<int, 1>{});
    next();
  }
  if (b < nb) block(b, g, std::integral_constant<int, 0>{});
}

// int4 rows (nb blocks of 16 bytes; f16 scale and min per group of `bpg` blocks; a short
// last group has fewer blocks).
template <int NT>
inline void dot_int4(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t nb, int bpg,
                     const Q8Block* const* x, float* out) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256 acc[NT][2];
  float min_total[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    min_total[t] = 0.0f;
  }
  pairs_of_blocks(nb, bpg, [&](int64_t b, int64_t g, auto k) {
    const float s = _cvtsh_ss(scales[g]), m = _cvtsh_ss(mins[g]);
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * b));
    const __m256i w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
    for (int t = 0; t < NT; ++t) {
      const Q8Block& xb = x[t][b];
      const __m256 p = _mm256_cvtepi32_ps(int_dot(w, load_q8(xb)));
      acc[t][k] = _mm256_fmadd_ps(p, _mm256_set1_ps(s * xb.d), acc[t][k]);
      min_total[t] += m * xb.sum;
    }
  });
  for (int t = 0; t < NT; ++t) out[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1])) + min_total[t];
}

// int8 rows (nb blocks of 32 bytes; f32 scale per group of `bpg` blocks).
template <int NT>
inline void dot_int8(const int8_t* q, const float* scales, int64_t nb, int bpg, const Q8Block* const* x,
                     float* out) {
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  pairs_of_blocks(nb, bpg, [&](int64_t b, int64_t g, auto k) {
    const float s = scales[g];
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * b));
    const __m256i w_abs = _mm256_sign_epi8(w, w);
    for (int t = 0; t < NT; ++t) {
      // |w| x (x with w's sign): unsigned x signed, the same products.
      const __m256i p32 = int_dot(w_abs, _mm256_sign_epi8(load_q8(x[t][b]), w));
      acc[t][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(s * x[t][b].d), acc[t][k]);
    }
  });
  for (int t = 0; t < NT; ++t) out[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1]));
}

// int8 rows against 16-bit activations: the weights sign-extended to 16 bits, pairs
// multiplied and added into int32 (vpmaddwd, or vpdpwssd with VNNI).
template <int NT>
inline void dot_int8_q16(const int8_t* q, const float* scales, int64_t nb, int bpg, const Q16Block* const* x,
                         float* out) {
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  pairs_of_blocks(nb, bpg, [&](int64_t b, int64_t g, auto k) {
    const float s = scales[g];
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 32 * b)));
    const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 32 * b + 16)));
    for (int t = 0; t < NT; ++t) {
      const Q16Block& xb = x[t][b];
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.q));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.q + 16));
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
      const __m256i p32 = _mm256_dpwssd_epi32(_mm256_madd_epi16(w0, x0), w1, x1);
#else
      const __m256i p32 = _mm256_add_epi32(_mm256_madd_epi16(w0, x0), _mm256_madd_epi16(w1, x1));
#endif
      acc[t][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(s * xb.d), acc[t][k]);
    }
  });
  for (int t = 0; t < NT; ++t) out[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1]));
}

// --- K-quant rows (kquant_blocks.h): nsb super-blocks of 8 sub-blocks of 32 columns, each
// sub-block against its own Q8 activation block (x[t][8 * sb + s]).

// Q4_K / Q5_K: a pair of sub-blocks shares 32 bytes of nibbles (low: the even one, high:
// the odd one); Q5_K adds bit s of its 32 qh bytes as the fifth bit of sub-block s. The
// unsigned weights (<= 31) go straight into the unsigned side of the integer product.
template <bool kFive, int NT>
inline void dot_q45k(const uint8_t* q, int64_t nsb, const Q8Block* const* x, float* out) {
  constexpr int kBytes = kFive ? 176 : 144, kNibbles = kFive ? 48 : 16;
  const __m256i low = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
  __m256 acc[NT][2];
  float min_total[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    min_total[t] = 0.0f;
  }
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + kBytes * sb;
    const float d = _cvtsh_ss(static_cast<uint16_t>(block[0] | (block[1] << 8)));
    const float dmin = _cvtsh_ss(static_cast<uint16_t>(block[2] | (block[3] << 8)));
    const __m256i qh = kFive ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16)) : __m256i{};
    for (int pair = 0; pair < 4; ++pair) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kNibbles + 32 * pair));
      __m256i w[2] = {_mm256_and_si256(raw, low), _mm256_and_si256(_mm256_srli_epi16(raw, 4), low)};
      for (int j = 0; j < 2; ++j) {
        const int s = 2 * pair + j;
        if constexpr (kFive)  // bit s of each qh byte, moved to bit 4 (a 0/1 byte never crosses)
          w[j] = _mm256_or_si256(w[j], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, s), one), 4));
        int sc = 0, m = 0;
        kquant::get_scale_min(s, block + 4, sc, m);
        for (int t = 0; t < NT; ++t) {
          const Q8Block& xb = x[t][8 * sb + s];
          const __m256 p = _mm256_cvtepi32_ps(int_dot(w[j], load_q8(xb)));
          acc[t][j] = _mm256_fmadd_ps(p, _mm256_set1_ps(d * static_cast<float>(sc) * xb.d), acc[t][j]);
          min_total[t] -= dmin * static_cast<float>(m) * xb.sum;
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1])) + min_total[t];
}

// Q6_K: per half of 128 columns, 64 bytes of low nibbles and 32 of high bit pairs; the
// 6-bit value minus 32 is signed, so its sign moves onto the activations as for int8. The
// two 16-column halves of a sub-block have their own scales: the integer product's lanes
// 0-3 cover columns 0-15 and lanes 4-7 columns 16-31.
template <int NT>
inline void dot_q6k(const uint8_t* q, int64_t nsb, const Q8Block* const* x, float* out) {
  const __m256i low = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3), bias = _mm256_set1_epi8(32);
  __m256 acc[NT][2];
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + 210 * sb;
    const auto* scales = reinterpret_cast<const int8_t*>(block + 192);
    const float d = _cvtsh_ss(static_cast<uint16_t>(block[208] | (block[209] << 8)));
    for (int h = 0; h < 2; ++h) {
      const __m256i ql[2] = {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 64 * h)),
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 64 * h + 32))};
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 128 + 32 * h));
      for (int r = 0; r < 4; ++r) {
        const int s = 4 * h + r;
        const __m256i nib = r < 2 ? _mm256_and_si256(ql[r], low) : _mm256_and_si256(_mm256_srli_epi16(ql[r - 2], 4), low);
        const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * r), three), 4);
        const __m256i w = _mm256_sub_epi8(_mm256_or_si256(nib, hi), bias);
        const __m256i w_abs = _mm256_sign_epi8(w, w);
        const float s_lo = static_cast<float>(scales[8 * h + 2 * r]), s_hi = static_cast<float>(scales[8 * h + 2 * r + 1]);
        for (int t = 0; t < NT; ++t) {
          const Q8Block& xb = x[t][8 * sb + s];
          const __m256i p32 = int_dot(w_abs, _mm256_sign_epi8(load_q8(xb), w));
          const float dx = d * xb.d;
          const __m256 sc = _mm256_set_m128(_mm_set1_ps(dx * s_hi), _mm_set1_ps(dx * s_lo));
          acc[t][r & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), sc, acc[t][r & 1]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) out[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1]));
}

// --- The other ggml block formats (kquant_blocks.h) ------------------------------------

// Activation block s of super-block sb.
inline const Q8Block& xb_at(const Q8Block* x, int64_t sb, int s) { return x[8 * sb + s]; }

// Signed weights (|w| <= 127) against a Q8 block: |w| x (x with w's sign).
inline __m256i signed_dot(__m256i w, __m256i x) { return int_dot(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)); }

// The 16 bytes of a 32-column block's nibbles as 32 bytes: columns 0..15 (low nibbles)
// then 16..31 (high nibbles), as the activation block holds them.
inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0f));
}

// 32 bits as 32 bytes: byte i is 0xff where bit i is set (each byte picks the bits byte
// i / 8, then tests its own bit i % 8).
inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3,
                                        3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), pick);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

inline float half_at(const uint8_t* p) { return _cvtsh_ss(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// IQ4's grid in both 128-bit lanes, looked up by nibble with one shuffle.
inline __m256i iq4_grid_bytes() {
  return _mm256_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113, -127, -104, -83,
                          -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
}

// Q5_0 / Q5_1 (nb blocks of 32 columns): nibbles plus the fifth bit from qh. Q5_0's value
// minus 16 is signed; Q5_1's is unsigned with a min.
template <bool kMin>
inline float dot_q5(const uint8_t* q, int64_t nb, const Q8Block* x) {
  constexpr int kBytes = kMin ? 24 : 22, kQh = kMin ? 4 : 2;
  const __m256i fifth = _mm256_set1_epi8(0x10), sixteen = _mm256_set1_epi8(16);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  float min_total = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* block = q + kBytes * b;
    uint32_t qh;
    memcpy(&qh, block + kQh, 4);
    const __m256i w = _mm256_or_si256(nibbles32(block + kQh + 4), _mm256_and_si256(bits_to_bytes(qh), fifth));
    const __m256i p32 = kMin ? int_dot(w, load_q8(x[b])) : signed_dot(_mm256_sub_epi8(w, sixteen), load_q8(x[b]));
    acc[b & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(half_at(block) * x[b].d), acc[b & 1]);
    if constexpr (kMin) min_total += half_at(block + 2) * x[b].sum;
  }
  return hsum(_mm256_add_ps(acc[0], acc[1])) + min_total;
}

// Q4_0 (nb blocks of 32 columns): the nibbles minus 8, signed.
inline float dot_q4_0(const uint8_t* q, int64_t nb, const Q8Block* x) {
  const __m256i eight = _mm256_set1_epi8(8);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* block = q + 18 * b;
    const __m256i p32 = signed_dot(_mm256_sub_epi8(nibbles32(block + 2), eight), load_q8(x[b]));
    acc[b & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(half_at(block) * x[b].d), acc[b & 1]);
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

// IQ4_NL and MXFP4 (nb blocks of 32; an f16 d, or an E8M0 byte halved) and IQ4_XS (nb
// super-blocks of 8 x 32, a 6-bit scale each): nibbles mapped through the format's grid to
// signed bytes.
template <QuantFormat F>
inline float dot_grid32(const uint8_t* q, int64_t nb, const Q8Block* x) {
  static_assert(F == QuantFormat::iq4_nl || F == QuantFormat::mxfp4);
  constexpr bool kMx = F == QuantFormat::mxfp4;
  constexpr int kBytes = kquant::block_bytes(F), kQs = kMx ? 1 : 2;
  const __m256i grid = kMx ? _mm256_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12, 0, 1, 2, 3, 4,
                                              6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)
                           : iq4_grid_bytes();
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* block = q + kBytes * b;
    const __m256i p32 = signed_dot(_mm256_shuffle_epi8(grid, nibbles32(block + kQs)), load_q8(x[b]));
    const float d = kMx ? kquant::e8m0_half(block[0]) : half_at(block);
    acc[b & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(d * x[b].d), acc[b & 1]);
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

inline float dot_iq4_xs(const uint8_t* q, int64_t nsb, const Q8Block* x) {
  const __m256i grid = iq4_grid_bytes();
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + 136 * sb;
    const float d = half_at(block);
    for (int s = 0; s < 8; ++s) {
      const Q8Block& xb = xb_at(x, sb, s);
      const __m256i p32 = signed_dot(_mm256_shuffle_epi8(grid, nibbles32(block + 8 + 16 * s)), load_q8(xb));
      const float scale = d * static_cast<float>(kquant::iq4_xs_scale(block, s)) * xb.d;
      acc[s & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_set1_ps(scale), acc[s & 1]);
    }
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

// Q3_K / Q2_K (nsb super-blocks): per half of 128 columns, 32 bytes of 2-bit fields; field
// r of byte c is column 32 r + c of the half (sub-block s = 4 h + r). Each 16 columns have
// their own scale (lanes 0-3 and 4-7 of the integer product, as for Q6_K).
inline __m256 half_scales(float lo, float hi) { return _mm256_set_m128(_mm_set1_ps(hi), _mm_set1_ps(lo)); }

// Q3_K: the third bit (bit s of hmask[c]) set means q = low, clear means low - 4.
inline float dot_q3k(const uint8_t* q, int64_t nsb, const Q8Block* x) {
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + 110 * sb;
    const float d = half_at(block + 108);
    const __m256i hmask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block));
    for (int h = 0; h < 2; ++h) {
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 + 32 * h));
      for (int r = 0; r < 4; ++r) {
        const int s = 4 * h + r;
        const __m256i low = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * r), three);
        const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hmask, s), one), 2);
        const __m256i w = _mm256_sub_epi8(_mm256_or_si256(low, high), four);
        const Q8Block& xb = xb_at(x, sb, s);
        const __m256i p32 = signed_dot(w, load_q8(xb));
        const float dx = d * xb.d;
        const __m256 sc = half_scales(dx * static_cast<float>(kquant::q3_k_scale(block, 2 * s)),
                                      dx * static_cast<float>(kquant::q3_k_scale(block, 2 * s + 1)));
        acc[r & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), sc, acc[r & 1]);
      }
    }
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

// Q2_K: unsigned 2-bit q with a 4-bit scale and a 4-bit min per 16 columns; the min term
// needs each half's activation sum, an integer product with ones.
inline float dot_q2k(const uint8_t* q, int64_t nsb, const Q8Block* x) {
  const __m256i three = _mm256_set1_epi8(3), ones = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + 84 * sb;
    const float d = half_at(block + 80), dmin = half_at(block + 82);
    for (int h = 0; h < 2; ++h) {
      const __m256i qs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16 + 32 * h));
      for (int r = 0; r < 4; ++r) {
        const int s = 4 * h + r;
        const Q8Block& xb = xb_at(x, sb, s);
        const __m256i xv = load_q8(xb);
        const __m256i p32 = int_dot(_mm256_and_si256(_mm256_srli_epi16(qs, 2 * r), three), xv);
        const __m256i sums = int_dot(ones, xv);
        const uint8_t lo = block[2 * s], hi = block[2 * s + 1];
        const float dx = d * xb.d, mx = dmin * xb.d;
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32),
                              half_scales(dx * static_cast<float>(lo & 0xf), dx * static_cast<float>(hi & 0xf)), acc);
        acc_min = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums),
                                  half_scales(mx * static_cast<float>(lo >> 4), mx * static_cast<float>(hi >> 4)),
                                  acc_min);
      }
    }
  }
  return hsum(_mm256_sub_ps(acc, acc_min));
}

// T tokens in groups of up to kTokens (4: 8 accumulators, with the unpacked weights and the
// products, fit AVX2's 16 vector registers): x_t = x + t * x_stride, result t into
// out[t * out_stride].
constexpr int kTokens = 4;
// A kernel of kOuts output rows writes token t's into r[t * kOuts + j], copied to
// out[t * out_stride + j].
template <int kOuts = 1, class Block, class Kernel>
inline void for_tokens(const Block* x, int64_t x_stride, int64_t T, float* out, int64_t out_stride, Kernel&& kernel) {
  for (int64_t t0 = 0; t0 < T; t0 += kTokens) {
    const int n = static_cast<int>(T - t0 < kTokens ? T - t0 : kTokens);
    const Block* xs[kTokens] = {};
    float r[kTokens * kOuts] = {};
    for (int t = 0; t < n; ++t) xs[t] = x + (t0 + t) * x_stride;
    switch (n) {
      case 4: kernel(std::integral_constant<int, 4>{}, xs, r); break;
      case 3: kernel(std::integral_constant<int, 3>{}, xs, r); break;
      case 2: kernel(std::integral_constant<int, 2>{}, xs, r); break;
      default: kernel(std::integral_constant<int, 1>{}, xs, r); break;
    }
    for (int t = 0; t < n; ++t)
      for (int j = 0; j < kOuts; ++j) out[(t0 + t) * out_stride + j] = r[t * kOuts + j];
  }
}

// The entry points quantized_q8_cpu.cc calls (declared there), one set per instruction set:
// one weight row against the T tokens' activation blocks (token t's at x + t * x_stride),
// token t's result into out[t * out_stride].
void rows_int4(const uint8_t* q, const uint16_t* s, const uint16_t* m, int64_t nb, int bpg, const Q8Block* x,
               int64_t x_stride, int64_t T, float* out, int64_t out_stride) {
  for_tokens(x, x_stride, T, out, out_stride,
             [&](auto nt, const Q8Block* const* xs, float* r) { dot_int4<decltype(nt)::value>(q, s, m, nb, bpg, xs, r); });
}
void rows_int8(const int8_t* q, const float* s, int64_t nb, int bpg, const Q8Block* x, int64_t x_stride, int64_t T,
               float* out, int64_t out_stride) {
  for_tokens(x, x_stride, T, out, out_stride,
             [&](auto nt, const Q8Block* const* xs, float* r) { dot_int8<decltype(nt)::value>(q, s, nb, bpg, xs, r); });
}
void rows_int8_q16(const int8_t* q, const float* s, int64_t nb, int bpg, const Q16Block* x, int64_t x_stride,
                   int64_t T, float* out, int64_t out_stride) {
  for_tokens(x, x_stride, T, out, out_stride,
             [&](auto nt, const Q16Block* const* xs, float* r) { dot_int8_q16<decltype(nt)::value>(q, s, nb, bpg, xs, r); });
}
void rows_q4k(const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T, float* out,
              int64_t out_stride) {
  for_tokens(x, x_stride, T, out, out_stride,
             [&](auto nt, const Q8Block* const* xs, float* r) { dot_q45k<false, decltype(nt)::value>(q, nsb, xs, r); });
}
void rows_q5k(const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T, float* out,
              int64_t out_stride) {
  for_tokens(x, x_stride, T, out, out_stride,
             [&](auto nt, const Q8Block* const* xs, float* r) { dot_q45k<true, decltype(nt)::value>(q, nsb, xs, r); });
}
void rows_q6k(const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T, float* out,
              int64_t out_stride) {
  for_tokens(x, x_stride, T, out, out_stride,
             [&](auto nt, const Q8Block* const* xs, float* r) { dot_q6k<decltype(nt)::value>(q, nsb, xs, r); });
}
float row_q4_0(const uint8_t* q, int64_t nb, const Q8Block* x) { return dot_q4_0(q, nb, x); }
float row_q5_0(const uint8_t* q, int64_t nb, const Q8Block* x) { return dot_q5<false>(q, nb, x); }
float row_q5_1(const uint8_t* q, int64_t nb, const Q8Block* x) { return dot_q5<true>(q, nb, x); }
float row_iq4_nl(const uint8_t* q, int64_t nb, const Q8Block* x) { return dot_grid32<QuantFormat::iq4_nl>(q, nb, x); }
float row_mxfp4(const uint8_t* q, int64_t nb, const Q8Block* x) { return dot_grid32<QuantFormat::mxfp4>(q, nb, x); }
float row_iq4_xs(const uint8_t* q, int64_t nsb, const Q8Block* x) { return dot_iq4_xs(q, nsb, x); }
float row_q2k(const uint8_t* q, int64_t nsb, const Q8Block* x) { return dot_q2k(q, nsb, x); }
float row_q3k(const uint8_t* q, int64_t nsb, const Q8Block* x) { return dot_q3k(q, nsb, x); }

}  // namespace kestrel::cpu::KESTREL_Q8_NS
