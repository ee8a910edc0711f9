// kernels/cpu/interleaved_rows_simd.h: the SIMD rows of the interleaved layouts
// (interleaved_rows.h), written once and compiled once per instruction set with
// quantized_q8_simd.h, whose helpers (int_dot, for_tokens, the IQ4 grid ...) they use:
// included after it by quantized_q8_avx2.cc and quantized_q8_vnni.cc, in the namespace
// KESTREL_Q8_NS those define.
#pragma once

#include "cpu/quantized_q8_simd.h"

namespace kestrel::cpu::KESTREL_Q8_NS {

// --- 8 rows interleaved (interleaved_rows.h): per 32-column block, chunks whose 32-bit
// lane r holds a few columns of row r (int4: 4 chunks of 32 bytes, low nibbles columns
// 4v .. 4v + 3 of chunk v, high nibbles 16 + 4v ..; int8: 16 chunks of 16 bytes, columns
// 2v, 2v + 1, sign-extended to 16 bits). Each chunk meets the token's matching activations
// broadcast to every lane, so the integer sums of the 8 rows build up in the 8 lanes of one
// vector, and the block's scale (and min) arithmetic is one vector each, lane by lane as
// rows8_int4_portable / rows8_int8_portable compute each row.
inline __m256i broadcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline __m256i int_dot_add(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, int_dot(u, s));
#endif
}

// acc + pairs of 16-bit products (no saturation: the weights are int8).
inline __m256i int16_dot_add(__m256i acc, __m256i a, __m256i b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpwssd_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

// Bytes ahead of the block being read that each block asks the cache for. Measured on the
// 2-core EPYC (decode, Q4_1 / Q8_0 / Q4_K_M, 1 and 2 threads, alternating runs): 256 at
// par with none or up to 5% faster; 512 and 1024 up to 35% slower (Q8_0).
constexpr int kPrefetch = 256;
inline void prefetch_lines(const void* p, int bytes) {
  for (int i = 0; i < bytes; i += 64) _mm_prefetch(static_cast<const char*>(p) + kPrefetch + i, _MM_HINT_T0);
}

template <int NT>
inline void dot8_int4(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t nb, int bpg,
                      const Q8Block* const* x, float* out) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  int64_t g = 0;
  int j = 0;  // block b is the j-th of group g
  __m256 s = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales)));
  __m256 m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mins)));
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* block = q + 128 * b;
    prefetch_lines(block, 128);
    // Two integer chains per token (low and high nibbles) keep more dot products in flight.
    __m256i p_low[NT], p_high[NT];
    for (int t = 0; t < NT; ++t) p_low[t] = p_high[t] = _mm256_setzero_si256();
    for (int v = 0; v < 4; ++v) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 * v));
      const __m256i w_low = _mm256_and_si256(raw, low), w_high = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
      for (int t = 0; t < NT; ++t) {
        p_low[t] = int_dot_add(p_low[t], w_low, broadcast32(x[t][b].q + 4 * v));
        p_high[t] = int_dot_add(p_high[t], w_high, broadcast32(x[t][b].q + 16 + 4 * v));
      }
    }
    for (int t = 0; t < NT; ++t) {
      const __m256 p = _mm256_cvtepi32_ps(_mm256_add_epi32(p_low[t], p_high[t]));
      acc[t] = _mm256_fmadd_ps(p, _mm256_mul_ps(s, _mm256_set1_ps(x[t][b].d)), acc[t]);
      acc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(x[t][b].sum), acc[t]);
    }
    if (++j == bpg && b + 1 < nb) {
      j = 0;
      ++g;
      s = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + 8 * g)));
      m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mins + 8 * g)));
    }
  }
  for (int t = 0; t < NT; ++t) _mm256_storeu_ps(out + 8 * t, acc[t]);
}

// Q4_0, Q5_0, Q5_1, IQ4_NL interleaved (8 rows' d, Q5_1's m, Q5's rearranged qh, then the
// nibbles as int4's): Q4_0's nibbles are taken unsigned as they are (their - 8 is the min
// term, -8 d x the activations' sum), so a chunk costs two masks and two dot products;
// Q5's add a fifth bit: per chunk v, each lane's qh byte v spread over its 4 bytes gives
// the fifth bits of the chunk's low (bits 0-3) and high (bits 4-7) nibbles; IQ4_NL's
// nibbles go through the grid to signed bytes (their sign moved onto the activations).
template <QuantFormat F, int NT>
inline void dot8_nibbles(const uint8_t* q, int64_t nb, const Q8Block* const* x, float* out) {
  constexpr bool kQ5 = F == QuantFormat::q5_0 || F == QuantFormat::q5_1, kMin = F == QuantFormat::q5_1;
  constexpr bool kGrid = F == QuantFormat::iq4_nl;
  constexpr int kQh = kMin ? 32 : 16, kQs = 16 + (kMin ? 16 : 0) + (kQ5 ? 32 : 0), kBytes = 8 * (kQs / 8 + 16);
  static_assert(kBytes == 8 * kquant::block_bytes(F));
  const __m256i low = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
  const __m256i bits_low = _mm256_set1_epi32(0x08040201), bits_high = _mm256_set1_epi32(static_cast<int>(0x80402010u));
  const __m256i grid = iq4_grid_bytes();
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* block = q + kBytes * b;
    prefetch_lines(block, kBytes);
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
    const __m256i qh = kQ5 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kQh)) : __m256i{};
    __m256i p_low[NT], p_high[NT];
    for (int t = 0; t < NT; ++t) p_low[t] = p_high[t] = _mm256_setzero_si256();
    for (int v = 0; v < 4; ++v) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kQs + 32 * v));
      __m256i w_low = _mm256_and_si256(raw, low), w_high = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
      if constexpr (kQ5) {
        // byte v of each lane to its 4 bytes; bit j (low) / 4 + j (high) of byte j -> 0 / 1 -> bit 4
        const __m256i pick = _mm256_add_epi8(_mm256_set1_epi8(static_cast<char>(v)),
                                             _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 0, 0,
                                                              0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12));
        const __m256i hb = _mm256_shuffle_epi8(qh, pick);
        w_low = _mm256_or_si256(w_low, _mm256_slli_epi16(_mm256_min_epu8(_mm256_and_si256(hb, bits_low), one), 4));
        w_high = _mm256_or_si256(w_high, _mm256_slli_epi16(_mm256_min_epu8(_mm256_and_si256(hb, bits_high), one), 4));
      }
      if constexpr (!kGrid) {
        for (int t = 0; t < NT; ++t) {
          p_low[t] = int_dot_add(p_low[t], w_low, broadcast32(x[t][b].q + 4 * v));
          p_high[t] = int_dot_add(p_high[t], w_high, broadcast32(x[t][b].q + 16 + 4 * v));
        }
      } else {
        w_low = _mm256_shuffle_epi8(grid, w_low);
        w_high = _mm256_shuffle_epi8(grid, w_high);
        const __m256i a_low = _mm256_sign_epi8(w_low, w_low), a_high = _mm256_sign_epi8(w_high, w_high);
        for (int t = 0; t < NT; ++t) {
          p_low[t] = int_dot_add(p_low[t], a_low, _mm256_sign_epi8(broadcast32(x[t][b].q + 4 * v), w_low));
          p_high[t] = int_dot_add(p_high[t], a_high, _mm256_sign_epi8(broadcast32(x[t][b].q + 16 + 4 * v), w_high));
        }
      }
    }
    __m256 m = _mm256_setzero_ps();
    if constexpr (F == QuantFormat::q4_0) m = _mm256_mul_ps(d, _mm256_set1_ps(-8.0f));
    if constexpr (F == QuantFormat::q5_0) m = _mm256_mul_ps(d, _mm256_set1_ps(-16.0f));
    if constexpr (kMin) m = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16)));
    for (int t = 0; t < NT; ++t) {
      const __m256 p = _mm256_cvtepi32_ps(_mm256_add_epi32(p_low[t], p_high[t]));
      acc[t] = _mm256_fmadd_ps(p, _mm256_mul_ps(d, _mm256_set1_ps(x[t][b].d)), acc[t]);
      if constexpr (!kGrid) acc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(x[t][b].sum), acc[t]);
    }
  }
  for (int t = 0; t < NT; ++t) _mm256_storeu_ps(out + 8 * t, acc[t]);
}

// Q6_K interleaved (interleaved_rows.cc, put_q6k): per sub-block, the 6-bit values u of
// chunk v are its nibbles with bits 2v, 2v + 1 of the matching high-bit vector on top;
// u - 32 is signed (its sign moved onto the activations). Columns 0-15 (the chunks' low
// nibbles) and 16-31 (high nibbles) have their own scales: two integer sums per token.
template <int NT>
inline void dot8_q6k(const uint8_t* q, int64_t nsb, const Q8Block* const* x, float* out) {
  const __m256i low = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3), bias = _mm256_set1_epi8(32);
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + 1680 * sb;
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
    for (int s = 0; s < 8; ++s) {
      const uint8_t* sub = block + 144 + 192 * s;
      prefetch_lines(sub, 192);
      const __m256i bits[2] = {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sub + 128)),
                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sub + 160))};
      __m256i p[NT][2];
      for (int t = 0; t < NT; ++t) p[t][0] = p[t][1] = _mm256_setzero_si256();
      for (int v = 0; v < 4; ++v) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sub + 32 * v));
        const __m256i nib[2] = {_mm256_and_si256(raw, low), _mm256_and_si256(_mm256_srli_epi16(raw, 4), low)};
        for (int h = 0; h < 2; ++h) {
          const __m256i high = _mm256_and_si256(_mm256_srli_epi16(bits[h], 2 * v), three);
          const __m256i w = _mm256_sub_epi8(_mm256_or_si256(nib[h], _mm256_slli_epi16(high, 4)), bias);
          const __m256i a = _mm256_sign_epi8(w, w);
          for (int t = 0; t < NT; ++t)
            p[t][h] = int_dot_add(p[t][h], a, _mm256_sign_epi8(broadcast32(x[t][8 * sb + s].q + 16 * h + 4 * v), w));
        }
      }
      __m256 scale[2];
      for (int h = 0; h < 2; ++h) {
        const __m128i sc = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 16 + 8 * (2 * s + h)));
        scale[h] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)));
      }
      for (int t = 0; t < NT; ++t) {
        const __m256 xd = _mm256_set1_ps(x[t][8 * sb + s].d);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[t][0]), _mm256_mul_ps(scale[0], xd), acc[t]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[t][1]), _mm256_mul_ps(scale[1], xd), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm256_storeu_ps(out + 8 * t, acc[t]);
}

// Q4_K / Q5_K interleaved (interleaved_rows.cc, put_q45k): per super-block the 64 scales
// and mins of the 8 rows decoded with a few vector operations into [sub-block][row] bytes;
// per pair of sub-blocks, each chunk's low nibbles (plus Q5_K's bit 2p of the matching qh
// chunk) are sub-block 2p, its high nibbles (bit 2p + 1) sub-block 2p + 1.
template <bool kFive, int NT>
inline void dot8_q45k(const uint8_t* q, int64_t nsb, const Q8Block* const* x, float* out) {
  constexpr int kBytes = kFive ? 1408 : 1152, kQs = kFive ? 384 : 128;
  const __m256i low = _mm256_set1_epi8(0x0f), two = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  alignas(32) uint8_t sc[64], mn[64];  // [sub-block][row]
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + kBytes * sb;
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16)));
    {
      const __m256i ls = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32));
      const __m256i lm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 64));
      const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 96));
      const auto top = [&](int shift) {  // 2 bits of hi at `shift`, moved to bits 4-5
        return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hi, shift), two), 4);
      };
      _mm256_store_si256(reinterpret_cast<__m256i*>(sc), _mm256_or_si256(_mm256_and_si256(ls, low), top(0)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(sc + 32),
                         _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ls, 4), low), top(2)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(mn), _mm256_or_si256(_mm256_and_si256(lm, low), top(4)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(mn + 32),
                         _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lm, 4), low), top(6)));
    }
    for (int p = 0; p < 4; ++p) {
      const uint8_t* pair = block + kQs + 256 * p;
      prefetch_lines(pair, 256);
      const __m256i bit_a = _mm256_set1_epi8(static_cast<char>(1 << (2 * p)));
      const __m256i bit_b = _mm256_set1_epi8(static_cast<char>(1 << (2 * p + 1)));
      __m256i pa[NT], pb[NT];
      for (int t = 0; t < NT; ++t) pa[t] = pb[t] = _mm256_setzero_si256();
      for (int v = 0; v < 8; ++v) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pair + 32 * v));
        __m256i wa = _mm256_and_si256(raw, low), wb = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
        if constexpr (kFive) {
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 128 + 32 * v));
          wa = _mm256_or_si256(wa, _mm256_slli_epi16(_mm256_min_epu8(_mm256_and_si256(qh, bit_a), one), 4));
          wb = _mm256_or_si256(wb, _mm256_slli_epi16(_mm256_min_epu8(_mm256_and_si256(qh, bit_b), one), 4));
        }
        for (int t = 0; t < NT; ++t) {
          pa[t] = int_dot_add(pa[t], wa, broadcast32(x[t][8 * sb + 2 * p].q + 4 * v));
          pb[t] = int_dot_add(pb[t], wb, broadcast32(x[t][8 * sb + 2 * p + 1].q + 4 * v));
        }
      }
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * p + h;
        const __m256 scale = _mm256_mul_ps(
            d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 8 * s)))));
        const __m256 min = _mm256_sub_ps(
            _mm256_setzero_ps(),
            _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(
                                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn + 8 * s))))));
        for (int t = 0; t < NT; ++t) {
          const Q8Block& xb = x[t][8 * sb + s];
          acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h ? pb[t] : pa[t]), _mm256_mul_ps(scale, _mm256_set1_ps(xb.d)),
                                   acc[t]);
          acc[t] = _mm256_fmadd_ps(min, _mm256_set1_ps(xb.sum), acc[t]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm256_storeu_ps(out + 8 * t, acc[t]);
}

// IQ4_XS interleaved (interleaved_rows.cc, put_iq4xs): the 64 6-bit scales of the 8 rows
// decoded per super-block into [sub-block][row] bytes; per sub-block IQ4_NL's chunks.
template <int NT>
inline void dot8_iq4xs(const uint8_t* q, int64_t nsb, const Q8Block* const* x, float* out) {
  const __m256i low = _mm256_set1_epi8(0x0f), two = _mm256_set1_epi8(3), grid = iq4_grid_bytes();
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  alignas(32) uint8_t ls[64];  // [sub-block][row], 0..63
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + 1088 * sb;
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
    {
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16));
      const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 48));
      // byte k of the first vector: top bits of scale k (k < 32), at bits 2 (k / 16)
      const __m256i top0 = _mm256_set_m128i(_mm_srli_epi16(hi, 2), hi);
      const __m256i top1 = _mm256_set_m128i(_mm_srli_epi16(hi, 6), _mm_srli_epi16(hi, 4));
      _mm256_store_si256(reinterpret_cast<__m256i*>(ls), _mm256_or_si256(_mm256_and_si256(lo, low),
                                                                         _mm256_slli_epi16(_mm256_and_si256(top0, two), 4)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(ls + 32),
                         _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo, 4), low),
                                         _mm256_slli_epi16(_mm256_and_si256(top1, two), 4)));
    }
    for (int s = 0; s < 8; ++s) {
      const uint8_t* sub = block + 64 + 128 * s;
      prefetch_lines(sub, 128);
      __m256i p_low[NT], p_high[NT];
      for (int t = 0; t < NT; ++t) p_low[t] = p_high[t] = _mm256_setzero_si256();
      for (int v = 0; v < 4; ++v) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sub + 32 * v));
        const __m256i w_low = _mm256_shuffle_epi8(grid, _mm256_and_si256(raw, low));
        const __m256i w_high = _mm256_shuffle_epi8(grid, _mm256_and_si256(_mm256_srli_epi16(raw, 4), low));
        const __m256i a_low = _mm256_sign_epi8(w_low, w_low), a_high = _mm256_sign_epi8(w_high, w_high);
        for (int t = 0; t < NT; ++t) {
          const int8_t* xq = x[t][8 * sb + s].q;
          p_low[t] = int_dot_add(p_low[t], a_low, _mm256_sign_epi8(broadcast32(xq + 4 * v), w_low));
          p_high[t] = int_dot_add(p_high[t], a_high, _mm256_sign_epi8(broadcast32(xq + 16 + 4 * v), w_high));
        }
      }
      const __m256i l32 = _mm256_sub_epi32(
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ls + 8 * s))), _mm256_set1_epi32(32));
      const __m256 scale = _mm256_mul_ps(d, _mm256_cvtepi32_ps(l32));
      for (int t = 0; t < NT; ++t) {
        const __m256 p = _mm256_cvtepi32_ps(_mm256_add_epi32(p_low[t], p_high[t]));
        acc[t] = _mm256_fmadd_ps(p, _mm256_mul_ps(scale, _mm256_set1_ps(x[t][8 * sb + s].d)), acc[t]);
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm256_storeu_ps(out + 8 * t, acc[t]);
}

// Q2_K / Q3_K interleaved (interleaved_rows.cc, put_q2k / put_q3k): per sub-block, the
// 2-bit values of chunk v are bits 2v, 2v + 1 of the half's vector; Q3_K's high-mask bit
// (bit 4h + v of its third vector) set keeps them, clear subtracts 4 (signed, the sign moved
// onto the activations). Each 16-column half has its scale; Q2_K's min multiplies the half's
// activation sum, one more integer dot product (with ones) per chunk, shared by the 8 rows.
template <bool kThree, int NT>
inline void dot8_q23k(const uint8_t* q, int64_t nsb, const Q8Block* const* x, float* out) {
  constexpr int kBytes = kThree ? 880 : 672, kSubAt = kThree ? 112 : 160, kSub = kThree ? 96 : 64;
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  alignas(32) uint8_t sc[128];  // [half g][row]: Q2_K scale | min << 4; Q3_K the 6-bit scale
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + kBytes * sb;
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
    const __m256 dmin = kThree ? _mm256_setzero_ps() : _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16)));
    if constexpr (kThree) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 48));
      const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 80));
      const auto top = [&](int shift) { return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hi, shift), three), 4); };
      _mm256_store_si256(reinterpret_cast<__m256i*>(sc), _mm256_or_si256(_mm256_and_si256(l0, low), top(0)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(sc + 32), _mm256_or_si256(_mm256_and_si256(l1, low), top(2)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(sc + 64),
                         _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low), top(4)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(sc + 96),
                         _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low), top(6)));
    } else {
      std::memcpy(sc, block + 32, 128);
    }
    for (int s = 0; s < 8; ++s) {
      const uint8_t* sub = block + kSubAt + kSub * s;
      prefetch_lines(sub, kSub);
      const __m256i hmask = kThree ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sub + 64)) : __m256i{};
      for (int h = 0; h < 2; ++h) {
        const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sub + 32 * h));
        __m256i p[NT], sum[NT];
        for (int t = 0; t < NT; ++t) p[t] = sum[t] = _mm256_setzero_si256();
        for (int v = 0; v < 4; ++v) {
          __m256i w = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * v), three);
          if constexpr (kThree) {
            const __m256i set = _mm256_and_si256(_mm256_srli_epi16(hmask, 4 * h + v), one);
            w = _mm256_sub_epi8(w, _mm256_andnot_si256(_mm256_slli_epi16(set, 2), four));  // bit clear: - 4
            const __m256i a = _mm256_sign_epi8(w, w);
            for (int t = 0; t < NT; ++t)
              p[t] = int_dot_add(p[t], a, _mm256_sign_epi8(broadcast32(x[t][8 * sb + s].q + 16 * h + 4 * v), w));
          } else {
            for (int t = 0; t < NT; ++t) {
              const __m256i xv = broadcast32(x[t][8 * sb + s].q + 16 * h + 4 * v);
              p[t] = int_dot_add(p[t], w, xv);
              sum[t] = int_dot_add(sum[t], one, xv);
            }
          }
        }
        const __m256i g8 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 8 * (2 * s + h))));
        const __m256 scale = kThree ? _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(g8, _mm256_set1_epi32(32))))
                                    : _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(g8, _mm256_set1_epi32(15))));
        const __m256 min = _mm256_sub_ps(_mm256_setzero_ps(),
                                         _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_srli_epi32(g8, 4))));
        for (int t = 0; t < NT; ++t) {
          const __m256 xd = _mm256_set1_ps(x[t][8 * sb + s].d);
          acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[t]), _mm256_mul_ps(scale, xd), acc[t]);
          if constexpr (!kThree) acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_mul_ps(min, xd), acc[t]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) _mm256_storeu_ps(out + 8 * t, acc[t]);
}

template <int NT>
inline void dot8_int8(const int8_t* q, const float* scales, int64_t nb, int bpg, const Q16Block* const* x,
                      float* out) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  int64_t g = 0;
  int j = 0;  // block b is the j-th of group g
  __m256 s = _mm256_loadu_ps(scales);
  for (int64_t b = 0; b < nb; ++b) {
    const int8_t* block = q + 256 * b;
    prefetch_lines(block, 256);
    __m256i p[NT][2];
    for (int t = 0; t < NT; ++t) p[t][0] = p[t][1] = _mm256_setzero_si256();
    for (int v = 0; v < 16; ++v) {
      const __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16 * v)));
      for (int t = 0; t < NT; ++t) p[t][v & 1] = int16_dot_add(p[t][v & 1], w, broadcast32(x[t][b].q + 2 * v));
    }
    for (int t = 0; t < NT; ++t) {
      const __m256 sum = _mm256_cvtepi32_ps(_mm256_add_epi32(p[t][0], p[t][1]));
      acc[t] = _mm256_fmadd_ps(sum, _mm256_mul_ps(s, _mm256_set1_ps(x[t][b].d)), acc[t]);
    }
    if (++j == bpg && b + 1 < nb) {
      j = 0;
      ++g;
      s = _mm256_loadu_ps(scales + 8 * g);
    }
  }
  for (int t = 0; t < NT; ++t) _mm256_storeu_ps(out + 8 * t, acc[t]);
}

// The entry points quantized_q8_cpu.cc calls (declared there), one set per instruction set.
void rows8_int4(const uint8_t* q, const uint16_t* s, const uint16_t* m, int64_t nb, int bpg, const Q8Block* x,
                int64_t x_stride, int64_t T, float* out, int64_t out_stride) {
  for_tokens<8>(x, x_stride, T, out, out_stride,
                [&](auto nt, const Q8Block* const* xs, float* r) { dot8_int4<decltype(nt)::value>(q, s, m, nb, bpg, xs, r); });
}
// The interleaved ggml block formats (interleaved_rows.h) by format: n blocks of 32 columns
// (Q4_0, Q5_0, Q5_1, IQ4_NL) or super-blocks of 256 (the others).
template <QuantFormat F, int NT>
inline void dot8_block(const uint8_t* q, int64_t n, const Q8Block* const* x, float* out) {
  if constexpr (F == QuantFormat::q4_k || F == QuantFormat::q5_k)
    dot8_q45k<F == QuantFormat::q5_k, NT>(q, n, x, out);
  else if constexpr (F == QuantFormat::q2_k || F == QuantFormat::q3_k)
    dot8_q23k<F == QuantFormat::q3_k, NT>(q, n, x, out);
  else if constexpr (F == QuantFormat::q6_k)
    dot8_q6k<NT>(q, n, x, out);
  else if constexpr (F == QuantFormat::iq4_xs)
    dot8_iq4xs<NT>(q, n, x, out);
  else
    dot8_nibbles<F, NT>(q, n, x, out);
}
template <QuantFormat F>
void rows8_block(const uint8_t* q, int64_t n, const Q8Block* x, int64_t x_stride, int64_t T, float* out,
                 int64_t out_stride) {
  for_tokens<8>(x, x_stride, T, out, out_stride,
                [&](auto nt, const Q8Block* const* xs, float* r) { dot8_block<F, decltype(nt)::value>(q, n, xs, r); });
}
Rows8Blocks rows8_blocks(QuantFormat f) {
  switch (f) {
    case QuantFormat::q4_0: return rows8_block<QuantFormat::q4_0>;
    case QuantFormat::q5_0: return rows8_block<QuantFormat::q5_0>;
    case QuantFormat::q5_1: return rows8_block<QuantFormat::q5_1>;
    case QuantFormat::iq4_nl: return rows8_block<QuantFormat::iq4_nl>;
    case QuantFormat::iq4_xs: return rows8_block<QuantFormat::iq4_xs>;
    case QuantFormat::q2_k: return rows8_block<QuantFormat::q2_k>;
    case QuantFormat::q3_k: return rows8_block<QuantFormat::q3_k>;
    case QuantFormat::q4_k: return rows8_block<QuantFormat::q4_k>;
    case QuantFormat::q5_k: return rows8_block<QuantFormat::q5_k>;
    case QuantFormat::q6_k: return rows8_block<QuantFormat::q6_k>;
    default: return nullptr;
  }
}
void rows8_int8(const int8_t* q, const float* s, int64_t nb, int bpg, const Q16Block* x, int64_t x_stride, int64_t T,
                float* out, int64_t out_stride) {
  for_tokens<8>(x, x_stride, T, out, out_stride,
                [&](auto nt, const Q16Block* const* xs, float* r) { dot8_int8<decltype(nt)::value>(q, s, nb, bpg, xs, r); });
}

}  // namespace kestrel::cpu::KESTREL_Q8_NS
