// kernels/cpu/quantized_linear_cpu.cc: out = x @ dequantize(w)^T + bias for int8 and int4
// weights (layouts in backend.h, QuantizedWeight).
//
// Three paths (and a fourth for W8A8 weights' prefill: w8a8_cpu.cc):
// - few rows of x (decode), weights in 32-column blocks: the activations quantized to 8
//   bits per block and integer dot products (quantized_q8_cpu.h), as llama.cpp does;
// - few rows of x, other layouts: a dot product per (output row, token), dequantizing the weight
//   in registers: the step is memory-bound, and reading 1 (int8) or ~0.6 (int4) bytes per
//   weight instead of 4 is the point. OpenMP over output rows; each weight row is read
//   from memory once and stays in L1 for the other tokens. AVX2 + FMA where the CPU has
//   them (chosen at run time), a portable loop otherwise.
// - many rows (prefill): tiles of output rows are dequantized to f32 (OpenMP over rows) and
//   multiplied with OpenBLAS sgemm (threaded by OpenBLAS), so the dequantization is paid
//   once per weight, not once per token.
// A mixed weight (row ranges in different formats) runs each part on the path it would take
// alone and copies its result into its columns (mixed_linear).
#include <cblas.h>

#include <algorithm>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KESTREL_X86 1
#endif

#include "core/fp8.h"
#include "core/half.h"
#include "cpu/cpu_ops.h"
#include "cpu/interleaved_rows.h"
#include "cpu/thread_pool.h"
#include "cpu/quantized_q8_cpu.h"
#include "kquant_blocks.h"

namespace kestrel::cpu {

namespace {

// Up to this many rows of x take the dot-product path.
constexpr int64_t kDotMaxTokens = 6;
// Output rows per dequantized tile of the sgemm path: large enough that OpenBLAS's packing
// of x is amortized over many rows, small enough to stay in cache (1024 x K floats).
constexpr int64_t kTileRows = 1024;

// --- portable dot products ---------------------------------------------------------------
// Each returns sum_k dequantize(w[row])[k] * x[k] over the K columns of one weight row.

float dot_int8_portable(const int8_t* q, const float* scales, int64_t K, int group, const float* x) {
  float total = 0.0f;
  for (int64_t k0 = 0, g = 0; k0 < K; k0 += group, ++g) {
    const int64_t k1 = std::min<int64_t>(K, k0 + group);
    float acc = 0.0f;
    for (int64_t k = k0; k < k1; ++k) acc += static_cast<float>(q[k]) * x[k];
    total += scales[g] * acc;
  }
  return total;
}

// int4 value at column c (0..31) of a 32-column block of 16 bytes.
inline int nibble(const uint8_t* block, int64_t c) {
  return c < 16 ? (block[c] & 0xf) : (block[c - 16] >> 4);
}

// xsum[g]: the sum of x over group g, so that sum_k (s q_k + m) x_k = s sum q x + m xsum.
float dot_int4_portable(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t K,
                        int group, const float* x, const float* xsum) {
  float total = 0.0f;
  for (int64_t k0 = 0, g = 0; k0 < K; k0 += group, ++g) {
    const int64_t k1 = std::min<int64_t>(K, k0 + group);
    const uint8_t* gq = q + g * (group / 2);
    float acc = 0.0f;
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t c = k - k0;
      acc += static_cast<float>(nibble(gq + (c / 32) * 16, c % 32)) * x[k];
    }
    total += f16_to_f32(scales[g]) * acc + f16_to_f32(mins[g]) * xsum[g];
  }
  return total;
}

// --- AVX2 + FMA dot products (same results up to summation order) -----------------------
#ifdef KESTREL_X86
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 int8 values widened straight from memory to 32-bit lanes, as floats.
__attribute__((target("avx2,fma"))) inline __m256 load_i8x8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// One group per row (per channel): accumulate q * x and scale once. Smaller groups: each
// 16 values are scaled before the FMA, so the accumulators live across the whole row (no
// per-group reduction in the dependency chain).
__attribute__((target("avx2,fma"))) float dot_int8_avx2(const int8_t* q, const float* scales, int64_t K,
                                                        int group, const float* x) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  float tail = 0.0f;
  if (group >= K) {
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      acc0 = _mm256_fmadd_ps(load_i8x8(q + k), _mm256_loadu_ps(x + k), acc0);
      acc1 = _mm256_fmadd_ps(load_i8x8(q + k + 8), _mm256_loadu_ps(x + k + 8), acc1);
    }
    for (; k < K; ++k) tail += static_cast<float>(q[k]) * x[k];
    return scales[0] * (hsum(_mm256_add_ps(acc0, acc1)) + tail);
  }
  for (int64_t k0 = 0, g = 0; k0 < K; k0 += group, ++g) {
    const int64_t k1 = std::min<int64_t>(K, k0 + group);
    const __m256 scale = _mm256_broadcast_ss(&scales[g]);
    int64_t k = k0;
    for (; k + 16 <= k1; k += 16) {
      acc0 = _mm256_fmadd_ps(_mm256_mul_ps(load_i8x8(q + k), scale), _mm256_loadu_ps(x + k), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_mul_ps(load_i8x8(q + k + 8), scale), _mm256_loadu_ps(x + k + 8), acc1);
    }
    float rest = 0.0f;
    for (; k < k1; ++k) rest += static_cast<float>(q[k]) * x[k];
    tail += scales[g] * rest;
  }
  return hsum(_mm256_add_ps(acc0, acc1)) + tail;
}

// One block of 32 int4 columns (16 bytes at `block`) times x[0..32), scaled, into acc[4].
// The bytes are widened straight from memory to 32-bit lanes and the nibbles split with an
// AND and a shift (no byte shuffles); scaling before the FMA lets the accumulators live
// across the whole row (no per-group reduction in the dependency chain).
__attribute__((target("avx2,fma"))) inline void int4_block(const uint8_t* block, const float* x, __m256 scale,
                                                           __m256* acc) {
  const __m256i mask = _mm256_set1_epi32(0x0f);
  const __m256i b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block)));
  const __m256i b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 8)));
  acc[0] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b0, mask)), scale),
                           _mm256_loadu_ps(x), acc[0]);  // columns 0..7
  acc[1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b1, mask)), scale),
                           _mm256_loadu_ps(x + 8), acc[1]);  // 8..15
  acc[2] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b0, 4)), scale),
                           _mm256_loadu_ps(x + 16), acc[2]);  // 16..23
  acc[3] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b1, 4)), scale),
                           _mm256_loadu_ps(x + 24), acc[3]);  // 24..31
}

// Scales and mins are converted 8 groups at a time (vcvtph2ps), and the min terms
// sum_g min_g * xsum_g are one vector FMA per 8 groups, so a group of 32 costs little more
// than its 16 bytes of nibbles.
__attribute__((target("avx2,fma,f16c"))) float dot_int4_avx2(const uint8_t* q, const uint16_t* scales,
                                                             const uint16_t* mins, int64_t K, int group,
                                                             const float* x, const float* xsum) {
  const int64_t G = (K + group - 1) / group;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  __m256 min_total = _mm256_setzero_ps();
  float tail = 0.0f;
  alignas(32) float sbuf[8];
  int64_t g_begin = 0;
  if (group == 32) {
    // Groups of 32 (ggml's blocks): 8 groups per step, one 16-byte block each, unrolled.
    const int64_t full = K / 32;
    for (; g_begin + 8 <= full; g_begin += 8) {
      const int64_t g0 = g_begin;
      min_total = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mins + g0))),
                                  _mm256_loadu_ps(xsum + g0), min_total);
      _mm256_store_ps(sbuf, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + g0))));
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        int4_block(q + (g0 + j) * 16, x + (g0 + j) * 32, _mm256_broadcast_ss(&sbuf[j]), acc);
      }
    }
  }
  for (int64_t g0 = g_begin; g0 < G; g0 += 8) {
    const int64_t n = std::min<int64_t>(8, G - g0);
    __m256 s8, m8, xs8;
    if (n == 8) {
      s8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + g0)));
      m8 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mins + g0)));
      xs8 = _mm256_loadu_ps(xsum + g0);
    } else {
      alignas(32) float sb[8] = {}, mb[8] = {}, xb[8] = {};
      for (int64_t j = 0; j < n; ++j) {
        sb[j] = _cvtsh_ss(scales[g0 + j]);
        mb[j] = _cvtsh_ss(mins[g0 + j]);
        xb[j] = xsum[g0 + j];
      }
      s8 = _mm256_load_ps(sb);
      m8 = _mm256_load_ps(mb);
      xs8 = _mm256_load_ps(xb);
    }
    min_total = _mm256_fmadd_ps(m8, xs8, min_total);
    _mm256_store_ps(sbuf, s8);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t g = g0 + j, k0 = g * group, k1 = std::min<int64_t>(K, k0 + group);
      const uint8_t* gq = q + g * (group / 2);
      const __m256 scale = _mm256_broadcast_ss(&sbuf[j]);
      int64_t k = k0;
      for (; k + 32 <= k1; k += 32, gq += 16) {
        int4_block(gq, x + k, scale, acc);
      }
      if (k < k1) {  // a short last group: its last partial block of 32
        float rest = 0.0f;
        for (; k < k1; ++k) rest += static_cast<float>(nibble(gq, (k - k0) % 32)) * x[k];
        tail += sbuf[j] * rest;
      }
    }
  }
  const __m256 total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
  return hsum(_mm256_add_ps(total, min_total)) + tail;
}

// AVX2 + FMA + F16C: what the 8-bit-activation path's avx2 kernels need too.
bool cpu_has_avx2() { return q8_isa_available(Q8Isa::avx2); }
#else
bool cpu_has_avx2() { return false; }
#endif

// --- dequantization of whole rows (the sgemm path and tests) -----------------------------
// A row of ggml blocks, the format a template argument so that kquant_blocks.h's switches
// over it fold away inside the per-column loops.
template <QuantFormat F>
void dequantize_block_row(const uint8_t* q, int64_t blocks, float* o) {
  for (int64_t g = 0; g < blocks; ++g)
    kquant::dequantize_block(F, q + g * kquant::block_bytes(F), o + g * kquant::block_columns(F));
}

void dequantize_block_row(QuantFormat f, const uint8_t* q, int64_t blocks, float* o) {
  switch (f) {
    case QuantFormat::q4_k: return dequantize_block_row<QuantFormat::q4_k>(q, blocks, o);
    case QuantFormat::q5_k: return dequantize_block_row<QuantFormat::q5_k>(q, blocks, o);
    case QuantFormat::q6_k: return dequantize_block_row<QuantFormat::q6_k>(q, blocks, o);
    case QuantFormat::q4_0: return dequantize_block_row<QuantFormat::q4_0>(q, blocks, o);
    case QuantFormat::q5_0: return dequantize_block_row<QuantFormat::q5_0>(q, blocks, o);
    case QuantFormat::q5_1: return dequantize_block_row<QuantFormat::q5_1>(q, blocks, o);
    case QuantFormat::iq4_nl: return dequantize_block_row<QuantFormat::iq4_nl>(q, blocks, o);
    case QuantFormat::iq4_xs: return dequantize_block_row<QuantFormat::iq4_xs>(q, blocks, o);
    case QuantFormat::q2_k: return dequantize_block_row<QuantFormat::q2_k>(q, blocks, o);
    case QuantFormat::q3_k: return dequantize_block_row<QuantFormat::q3_k>(q, blocks, o);
    case QuantFormat::mxfp4: return dequantize_block_row<QuantFormat::mxfp4>(q, blocks, o);
    default: fail("quantized_linear", std::string("not a ggml block format: ") + to_string(f));
  }
}

// Loops per group (no division per element) that the compiler vectorizes: this runs over
// every weight at every prefill step.
void dequantize_rows(const QuantizedWeight& w, int64_t row0, int64_t count, float* out) {
  const int64_t K = w.cols, G = w.groups(), group = w.group_size;
  for (int64_t r = 0; r < count; ++r) {
    const int64_t m = row0 + r;
    float* o = out + r * K;
    if (dequantize_interleaved_row(w, m, o)) continue;
    if (kquant::is_block_format(w.format)) {
      const int bytes = kquant::block_bytes(w.format);
      const uint8_t* q = reinterpret_cast<const uint8_t*>(w.data.ptr<int8_t>()) + m * G * bytes;
      thread_local PlainRowScratch scratch;
      if (w.interleave != 0) q = plain_row(w, m, scratch).q;
      dequantize_block_row(w.format, q, G, o);
    } else if (w.format == QuantFormat::fp8_e4m3) {
      const auto* q = reinterpret_cast<const uint8_t*>(w.data.ptr<int8_t>()) + m * K;
      const float scale = w.scales.ptr<float>()[m];
      for (int64_t k = 0; k < K; ++k) o[k] = scale * fp8_e4m3_to_f32(q[k]);
    } else if (w.format == QuantFormat::int8) {
      thread_local PlainRowScratch scratch;
      const PlainRow row = plain_row(w, m, scratch);
      const auto* q = reinterpret_cast<const int8_t*>(row.q);
      const auto* s = static_cast<const float*>(row.scales);
      for (int64_t g = 0, k0 = 0; g < G; ++g, k0 += group) {
        const int64_t n = std::min(K - k0, group);
        const float scale = s[g];
        for (int64_t k = 0; k < n; ++k) o[k0 + k] = scale * static_cast<float>(q[k0 + k]);
      }
    } else {
      thread_local PlainRowScratch scratch;
      const PlainRow row = plain_row(w, m, scratch);
      const uint8_t* q = row.q;
      const auto* s = static_cast<const uint16_t*>(row.scales);
      const uint16_t* mn = row.mins;
      for (int64_t g = 0, k0 = 0; g < G; ++g, k0 += group) {
        const float scale = f16_to_f32(s[g]), min = f16_to_f32(mn[g]);
        for (int64_t b0 = k0; b0 < std::min(K, k0 + group); b0 += 32) {
          const uint8_t* block = q + b0 / 2;
          if (b0 + 32 <= K) {
            for (int j = 0; j < 16; ++j) {
              o[b0 + j] = scale * static_cast<float>(block[j] & 0xf) + min;
              o[b0 + 16 + j] = scale * static_cast<float>(block[j] >> 4) + min;
            }
          } else {
            for (int64_t c = 0; c < K - b0; ++c) o[b0 + c] = scale * static_cast<float>(nibble(block, c)) + min;
          }
        }
      }
    }
  }
}

using DotInt8 = float (*)(const int8_t*, const float*, int64_t, int, const float*);
using DotInt4 = float (*)(const uint8_t*, const uint16_t*, const uint16_t*, int64_t, int, const float*,
                          const float*);

// K-quants with f32 activations (a precise LM head) and FP8: each weight row dequantized
// once into a per-thread buffer, then dotted with every token's row.
void row_dot_path(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out, int threads) {
  const int64_t T = x.dim(0), K = w.cols, M = w.rows;
  const float* xs = x.ptr<float>();
  parallel_for(threads_for(M * K, threads), M, 1, [&](int64_t m0, int64_t m1) {
    thread_local std::vector<float> row;
    row.resize(static_cast<size_t>(K));
    for (int64_t m = m0; m < m1; ++m) {
      dequantize_rows(w, m, 1, row.data());
      for (int64_t t = 0; t < T; ++t)
        out[t * M + m] = cblas_sdot(static_cast<blasint>(K), row.data(), 1, xs + t * K, 1) + (bias ? bias[m] : 0.0f);
    }
  });
}

void dot_path(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out,
              int threads, bool simd) {
  if (kquant::is_block_format(w.format) || w.format == QuantFormat::fp8_e4m3) {
    row_dot_path(x, w, bias, out, threads);
    return;
  }
  const int64_t T = x.dim(0), K = w.cols, M = w.rows, G = w.groups();
  const int group = w.group_size;
  const float* xs = x.ptr<float>();
  // int4: per-token, per-group sums of x (the min term), computed once for all rows.
  std::vector<float> xsum;
  if (w.format == QuantFormat::int4) {
    xsum.assign(static_cast<size_t>(T * G), 0.0f);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t g = 0; g < G; ++g)
        for (int64_t k = g * group; k < std::min<int64_t>(K, (g + 1) * group); ++k) xsum[t * G + g] += xs[t * K + k];
  }
  DotInt8 dot8 = dot_int8_portable;
  DotInt4 dot4 = dot_int4_portable;
#ifdef KESTREL_X86
  if (simd) {
    dot8 = dot_int8_avx2;
    dot4 = dot_int4_avx2;
  }
#endif
  parallel_for(threads_for(M * K, threads), M, 1, [&](int64_t m0, int64_t m1) {
    thread_local PlainRowScratch scratch;
    for (int64_t m = m0; m < m1; ++m) {
      const PlainRow row = plain_row(w, m, scratch);
      for (int64_t t = 0; t < T; ++t) {
        const float* xt = xs + t * K;
        const float v = w.format == QuantFormat::int8
                            ? dot8(reinterpret_cast<const int8_t*>(row.q), static_cast<const float*>(row.scales), K,
                                   group, xt)
                            : dot4(row.q, static_cast<const uint16_t*>(row.scales), row.mins, K, group, xt,
                                   xsum.data() + t * G);
        out[t * M + m] = v + (bias ? bias[m] : 0.0f);
      }
    }
  });
}

void tiled_gemm_path(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out,
                     int threads) {
  const int64_t T = x.dim(0), K = w.cols, M = w.rows;
  const float* xs = x.ptr<float>();
  // Reused across calls: prefill steps come back with the same shapes.
  // (Through a plain pointer: inside the parallel region `tile` would name each worker's own.)
  thread_local std::vector<float> tile;
  tile.resize(static_cast<size_t>(std::min(kTileRows, M) * K));
  float* const buffer = tile.data();
  for (int64_t m0 = 0; m0 < M; m0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, M - m0);
    parallel_for(threads_for(rows * K, threads), rows, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) dequantize_rows(w, m0 + r, 1, buffer + r * K);
    });
    // out[:, m0 : m0 + rows] = x @ tile^T (row-major, ldc = M); OpenBLAS threads itself.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(T), static_cast<blasint>(rows),
                static_cast<blasint>(K), 1.0f, xs, static_cast<blasint>(K), buffer,
                static_cast<blasint>(K), 0.0f, out + m0, static_cast<blasint>(M));
  }
  if (bias) {
    parallel_for(threads_for(T * M, threads), T, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) for (int64_t m = 0; m < M; ++m) out[t * M + m] += bias[m];
    });
  }
}

// FP8: the activations rounded to E4M3 per token (as an FP8 GEMM takes them), then the
// products in f32 with the weights' E4M3 values: by rows for few tokens, by dequantized
// tiles and sgemm for many. This CPU has no FP8 arithmetic; the result is what the
// hardware's FP8 GEMM computes up to the summation order.
void fp8_linear(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out, int threads,
                QuantKernel kernel) {
  if (kernel != QuantKernel::automatic && kernel != QuantKernel::batch_invariant &&
      kernel != QuantKernel::dot_portable && kernel != QuantKernel::dot_simd && kernel != QuantKernel::tiled_gemm)
    fail("quantized_linear", "fp8_e4m3 weights run on the f32 row and tile paths only");
  const int64_t T = x.dim(0), K = w.cols;
  thread_local std::vector<float> rounded;
  rounded.assign(x.ptr<float>(), x.ptr<float>() + T * K);
  fake_quantize_rows_fp8(rounded.data(), T, K);
  const TensorView xq(rounded.data(), DType::f32, {T, K});
  const bool rows = kernel == QuantKernel::batch_invariant || kernel == QuantKernel::dot_portable ||
                    kernel == QuantKernel::dot_simd || (kernel == QuantKernel::automatic && T <= kDotMaxTokens);
  if (rows)
    row_dot_path(xq, w, bias, out, threads);
  else
    tiled_gemm_path(xq, w, bias, out, threads);
}

// A mixed weight: each part's product, by whatever path this call would take for that
// part alone (same kernel choice, tokens and threads), into a scratch [T, rows of the part],
// then copied into its columns of out. Copying T x M floats is small beside the product
// (which reads M x K weights), and every kernel path serves the parts unchanged, so each
// output column is bit for bit the part's own product.
void mixed_linear(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out, int threads,
                  QuantKernel kernel) {
  const int64_t T = x.dim(0), M = w.rows;
  thread_local std::vector<float> scratch;
  int64_t begin = 0;
  for (size_t i = 0; i < w.parts.size(); ++i) {
    const QuantizedWeight part = w.part(i);
    const int64_t rows = part.rows;
    scratch.resize(static_cast<size_t>(T * rows));
    float* const part_out = scratch.data();  // (a plain pointer: workers below name their own)
    const TensorView part_bias(bias ? const_cast<float*>(bias + begin) : nullptr, DType::f32, {rows});
    quantized_linear(x, part, bias ? &part_bias : nullptr, TensorView(part_out, DType::f32, {T, rows}), threads,
                     kernel);
    parallel_for(threads_for(T * rows, threads), T, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t)
        std::copy_n(part_out + t * rows, rows, out + t * M + begin);
    });
    begin += rows;
  }
}

}  // namespace

void dequantize_weight_rows(const QuantizedWeight& w, int64_t row0, int64_t count, float* out) {
  if (w.format != QuantFormat::mixed) {
    dequantize_rows(w, row0, count, out);
    return;
  }
  // Rows [row0, row0 + count) from the parts that hold them.
  for (int64_t begin = 0; const QuantizedWeight& part : w.parts) {
    const int64_t lo = std::max(row0, begin), hi = std::min(row0 + count, begin + part.rows);
    if (lo < hi) dequantize_rows(part, lo - begin, hi - lo, out + (lo - row0) * w.cols);
    begin += part.rows;
  }
}
void dequantize_weight(const QuantizedWeight& w, float* out) { dequantize_weight_rows(w, 0, w.rows, out); }

void quantized_linear(const TensorView& x, const QuantizedWeight& w, const TensorView* bias,
                      TensorView out, int threads, QuantKernel kernel) {
  check_quantized_linear(Device::cpu(), DType::f32, x, w, bias, out, "quantized_linear");
  const int64_t T = x.dim(0), M = w.rows;
  if (T == 0 || M == 0) return;
  const float* b = bias ? bias->ptr<float>() : nullptr;
  if (w.format == QuantFormat::mixed) {
    mixed_linear(x, w, b, out.ptr<float>(), threads, kernel);
    return;
  }
  if (w.format == QuantFormat::fp8_e4m3) {
    fp8_linear(x, w, b, out.ptr<float>(), threads, kernel);
    return;
  }
  if (kernel == QuantKernel::int8_gemm ||
      (kernel == QuantKernel::automatic && w.int8_activations && T > kDotMaxTokens)) {
    w8a8_gemm(x, w, b, out.ptr<float>(), threads);
    return;
  }
  if (kernel == QuantKernel::q8_portable || kernel == QuantKernel::q8_avx2 || kernel == QuantKernel::q8_vnni) {
    const Q8Isa isa = kernel == QuantKernel::q8_portable ? Q8Isa::portable
                      : kernel == QuantKernel::q8_avx2   ? Q8Isa::avx2
                                                         : Q8Isa::avx512_vnni;
    if (!q8_eligible(w) || !q8_isa_available(isa))
      fail("quantized_linear", std::string("the 8-bit-activation kernel (") + to_string(isa) +
                                   ") cannot run this weight on this processor");
    q8_dot_path(x, w, b, out.ptr<float>(), threads, isa);
    return;
  }
  // Precise activations: 16-bit blocks for int8 weights, f32 for int4.
  const bool integer_dots = !w.precise_activations || w.format == QuantFormat::int8;
  // Few tokens, or any number when the result must not depend on it.
  const bool few = kernel == QuantKernel::batch_invariant || (kernel == QuantKernel::automatic && T <= kDotMaxTokens);
  if (few && q8_eligible(w) && integer_dots) {
    q8_dot_path(x, w, b, out.ptr<float>(), threads, best_q8_isa());
    return;
  }
  const bool dots = kernel == QuantKernel::dot_portable || kernel == QuantKernel::dot_simd || few;
  if (dots)
    dot_path(x, w, b, out.ptr<float>(), threads, kernel != QuantKernel::dot_portable && cpu_has_avx2());
  else
    tiled_gemm_path(x, w, b, out.ptr<float>(), threads);
}

}  // namespace kestrel::cpu
