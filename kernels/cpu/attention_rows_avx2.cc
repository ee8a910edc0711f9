// kernels/cpu/attention_rows_avx2.cc: the attention row loops (attention_rows.h) in AVX2 +
// FMA, compiled with -mavx2 -mfma (CMakeLists.txt) and chosen at run time.
//
// scores: eight keys at a time, one 8-lane accumulator per key over the head dimension; the
// eight accumulators are then reduced together (horizontal adds), which sums each key's lanes
// as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). A key handled alone (the last few of
// a run) is reduced in that same order, so a score never depends on its neighbours. Head
// dimensions that are not a multiple of 8 add their last dims one by one after the lanes.
//
// accumulate: the output row in registers, 64 dims (eight vectors) at a time; each weighted
// value row is added in ascending order, one multiply-add per element.
//
// The f16 cache's rows go through the same loops, eight halves widened per load (F16C's
// vcvtph2ps, exact), and its writes round eight at a time (vcvtps2ph, nearest even), as the
// portable f32_to_f16 does.
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "core/half.h"
#include "cpu/attention_rows.h"

namespace kestrel::cpu {

namespace {

// ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), as reduce8 sums each of its keys.
inline float hsum_tree(__m256 v) {
  const __m256 pairs = _mm256_hadd_ps(v, v);          // l0+l1, l2+l3, .., l4+l5, l6+l7, ..
  const __m256 quads = _mm256_hadd_ps(pairs, pairs);  // (l0+l1)+(l2+l3), .., (l4+l5)+(l6+l7), ..
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(quads), _mm256_extractf128_ps(quads, 1)));
}

// Lane i of the result is hsum_tree(a_i).
inline __m256 reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                      __m256 a7) {
  const __m256 t0 = _mm256_hadd_ps(a0, a1), t1 = _mm256_hadd_ps(a2, a3);
  const __m256 t2 = _mm256_hadd_ps(a4, a5), t3 = _mm256_hadd_ps(a6, a7);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  // u0 = [a0 lo, a1 lo, a2 lo, a3 lo | a0 hi, a1 hi, a2 hi, a3 hi], u1 the same for a4..a7.
  const __m256 lo = _mm256_permute2f128_ps(u0, u1, 0x20), hi = _mm256_permute2f128_ps(u0, u1, 0x31);
  return _mm256_add_ps(lo, hi);
}

// Eight elements of a cache row as f32, and one element alone.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) { return f16_to_f32(*p); }

template <class Kv>
void scores_avx2(const float* q, const Kv* k, int count, int hd, float* out) {
  const int vec = hd & ~7;
  int i = 0;
  for (; i + 8 <= count; i += 8) {
    const Kv* r = k + static_cast<long>(i) * hd;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int d = 0; d < vec; d += 8) {
      const __m256 qv = _mm256_loadu_ps(q + d);
      a0 = _mm256_fmadd_ps(qv, load8(r + d), a0);
      a1 = _mm256_fmadd_ps(qv, load8(r + hd + d), a1);
      a2 = _mm256_fmadd_ps(qv, load8(r + 2 * hd + d), a2);
      a3 = _mm256_fmadd_ps(qv, load8(r + 3 * hd + d), a3);
      a4 = _mm256_fmadd_ps(qv, load8(r + 4 * hd + d), a4);
      a5 = _mm256_fmadd_ps(qv, load8(r + 5 * hd + d), a5);
      a6 = _mm256_fmadd_ps(qv, load8(r + 6 * hd + d), a6);
      a7 = _mm256_fmadd_ps(qv, load8(r + 7 * hd + d), a7);
    }
    _mm256_storeu_ps(out + i, reduce8(a0, a1, a2, a3, a4, a5, a6, a7));
    if (vec < hd)
      for (int j = 0; j < 8; ++j)
        for (int d = vec; d < hd; ++d) out[i + j] = std::fma(q[d], load1(r + static_cast<long>(j) * hd + d), out[i + j]);
  }
  for (; i < count; ++i) {
    const Kv* r = k + static_cast<long>(i) * hd;
    __m256 a = _mm256_setzero_ps();
    for (int d = 0; d < vec; d += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), load8(r + d), a);
    float dot = hsum_tree(a);
    for (int d = vec; d < hd; ++d) dot = std::fma(q[d], load1(r + d), dot);
    out[i] = dot;
  }
}

// acc[d0 .. d0 + 8 * N) += sum_i w[i] * v[i * hd + d0 ..], the row held in N registers.
template <int N, class Kv>
void accumulate_block(const float* w, const Kv* v, int count, int hd, int d0, float* acc) {
  __m256 a[N];
  for (int c = 0; c < N; ++c) a[c] = _mm256_loadu_ps(acc + d0 + 8 * c);
  for (int i = 0; i < count; ++i) {
    const __m256 wi = _mm256_broadcast_ss(w + i);
    const Kv* r = v + static_cast<long>(i) * hd + d0;
    for (int c = 0; c < N; ++c) a[c] = _mm256_fmadd_ps(wi, load8(r + 8 * c), a[c]);
  }
  for (int c = 0; c < N; ++c) _mm256_storeu_ps(acc + d0 + 8 * c, a[c]);
}

template <class Kv>
void accumulate_avx2(const float* w, const Kv* v, int count, int hd, float* acc) {
  const int vec = hd & ~7;
  int d0 = 0;
  for (; d0 + 64 <= vec; d0 += 64) accumulate_block<8>(w, v, count, hd, d0, acc);
  for (; d0 + 32 <= vec; d0 += 32) accumulate_block<4>(w, v, count, hd, d0, acc);
  for (; d0 + 8 <= vec; d0 += 8) accumulate_block<1>(w, v, count, hd, d0, acc);
  for (int d = vec; d < hd; ++d) {
    float a = acc[d];
    for (int i = 0; i < count; ++i) a = std::fma(w[i], load1(v + static_cast<long>(i) * hd + d), a);
    acc[d] = a;
  }
}

// e^x for x <= 0, eight lanes: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two so that
// n ln2 is exact), e^r by its degree-6 minimax polynomial (the Cephes expf coefficients),
// times 2^n built in the exponent bits. x is clamped at -87.3 (e^x then 1.2e-38, where
// std::exp gives a subnormal or 0); the clamp keeps a NaN (max returns its second operand).
inline __m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// Eight numerators at a time, summed in two vectors of four doubles (lanes 0-3, 4-7), then
// ((a0 + a1) + (a2 + a3)) with the scalar tail added last in order.
double exp_sum_avx2(float* s, int n, float max) {
  const __m256 m = _mm256_set1_ps(max);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(s + i), m));
    _mm256_storeu_ps(s + i, e);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo, hi));
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  if (i < n) {  // the last few through the same polynomial, eight lanes with the rest unused
    alignas(32) float tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = i; j < n; ++j) tail[j - i] = s[j];
    _mm256_store_ps(tail, exp_nonpositive(_mm256_sub_ps(_mm256_load_ps(tail), m)));
    for (int j = i; j < n; ++j) {
      s[j] = tail[j - i];
      sum += s[j];
    }
  }
  return sum;
}

void to_f16_avx2(const float* src, int n, uint16_t* dst) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

}  // namespace

const AttentionRowKernels& attention_rows_avx2_kernels() {
  static const AttentionRowKernels kernels{"avx2",
                                           scores_avx2<float>,
                                           accumulate_avx2<float>,
                                           scores_avx2<uint16_t>,
                                           accumulate_avx2<uint16_t>,
                                           to_f16_avx2,
                                           exp_sum_avx2};
  return kernels;
}

}  // namespace kestrel::cpu
#endif
