// kernels/cuda/quantized_linear_cuda.cu: the int8 / int4 weight-only linear (layouts in
// backend.h, QuantizedWeight).
//
// - quantized_gemv, for a few tokens (decode): memory-bound, so the point is to read each
//   weight byte once, in 16-byte loads, and dequantize in registers. One warp per output
//   row; lane l reads 16-byte chunks l, l + 32, ... of the row (a warp reads 512
//   consecutive bytes per step: coalesced), multiplies them with the matching x values of
//   every token (fp32 accumulators, one per token), and the warp reduces at the end. The
//   bias is added in the epilogue.
// - dequantize_rows, for many tokens (prefill): a tile of weight rows expanded into a
//   scratch matrix in the activation dtype, which CudaBackend then feeds to a cuBLAS
//   tensor-core GEMM.
// ggml block weights (the K-quants, Q4_0, Q5_0 / Q5_1, IQ4_NL / IQ4_XS, kernels/kquant_blocks.h)
// take the same two paths, reading their blocks where they lie. FP8 E4M3 weights take the
// int8 kernels with the byte decoded as E4M3.
#include <cuda_fp8.h>

#include <algorithm>

#include "cuda/cuda_common.cuh"
#include "kquant_blocks.h"

namespace kestrel::cuda {

namespace {

constexpr int kWarpsPerBlock = 4;  // output rows per block of the GEMV
constexpr int kDequantThreads = 256;

// x[t, k0 .. k0 + n) as floats; vector loads when 16-byte aligned.
template <class X>
__device__ __forceinline__ void load_x(const X* row, int64_t k0, int n, bool vec, float* dst) {
  if (vec) {
#pragma unroll
    for (int j = 0; j < 16; j += kVec16<X>) load_vec16(row + k0 + j, dst + j);
  } else {
    for (int j = 0; j < n; ++j) dst[j] = to_float(row[k0 + j]);
  }
}

// The GEMV epilogue: each token's partial sums reduced across the warp, plus the bias,
// written by lane 0 as out[t, m] (row stride ldo: a mixed weight's part writes its columns
// of the whole output).
template <class X, class O>
__device__ __forceinline__ void store_row(const float (&acc)[kQuantGemvMaxTokens], int T, int64_t m, int64_t ldo,
                                          const X* __restrict__ bias, O* __restrict__ out, int lane) {
  const float b = bias ? to_float(bias[m]) : 0.0f;
#pragma unroll
  for (int t = 0; t < kQuantGemvMaxTokens; ++t) {
    if (t >= T) break;
    const float v = warp_sum(acc[t]);
    if (lane == 0) out[t * ldo + m] = from_float<O>(v + b);
  }
}

// A weight byte's value before its scale: int8, or FP8 E4M3 (exact in half precision).
template <bool kFp8>
__device__ __forceinline__ float weight_value(int8_t v) {
  if constexpr (kFp8) {
    return __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(v), __NV_E4M3)));
  } else {
    return static_cast<float>(v);
  }
}

// int8: out[t, m] = sum_k scale[m, k / group] q[m, k] x[t, k] (+ bias[m]); FP8 (kFp8): the
// same with q the E4M3 value of the byte (one group per row).
// x: [T, K]; q: [M, K]; scales: [M, G]; out: [T, M]. T <= kQuantGemvMaxTokens.
// vec: K % 16 == 0, group % 16 == 0 and x, q 16-byte aligned (then every 16-column chunk
// lies inside one group).
template <bool kFp8, class X, class O>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_int8_kernel(const X* __restrict__ x, const int8_t* __restrict__ q, const float* __restrict__ scales,
                     const X* __restrict__ bias, O* __restrict__ out, int T, int64_t M, int64_t ldo, int64_t K,
                     int group, int64_t G, bool vec) {
  const int lane = threadIdx.x % 32;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (m >= M) return;  // uniform per warp
  float acc[kQuantGemvMaxTokens];
#pragma unroll
  for (int t = 0; t < kQuantGemvMaxTokens; ++t) acc[t] = 0.0f;
  const int8_t* row = q + m * K;
  const float* srow = scales + m * G;
  if (vec) {
    for (int64_t k = lane * 16; k < K; k += 32 * 16) {
      const int4 raw = *reinterpret_cast<const int4*>(row + k);
      const int8_t* v = reinterpret_cast<const int8_t*>(&raw);
      float w[16];
      const float s = srow[k / group];
#pragma unroll
      for (int i = 0; i < 16; ++i) w[i] = s * weight_value<kFp8>(v[i]);
#pragma unroll
      for (int t = 0; t < kQuantGemvMaxTokens; ++t) {
        if (t >= T) break;
        float xs[16];
        load_x(x + t * K, k, 16, true, xs);
        float d = 0.0f;
#pragma unroll
        for (int i = 0; i < 16; ++i) d = fmaf(w[i], xs[i], d);
        acc[t] += d;
      }
    }
  } else {
    for (int64_t k = lane; k < K; k += 32) {
      const float w = srow[k / group] * weight_value<kFp8>(row[k]);
#pragma unroll
      for (int t = 0; t < kQuantGemvMaxTokens; ++t) {
        if (t >= T) break;
        acc[t] = fmaf(w, to_float(x[t * K + k]), acc[t]);
      }
    }
  }
  store_row(acc, T, m, ldo, bias, out, lane);
}

// int4: out[t, m] = sum_k (scale[m, g] q[m, k] + min[m, g]) x[t, k] (+ bias[m]), g = k / group.
// Each 16-byte chunk of a row is one block of 32 columns (low nibbles: columns 0..15, high:
// 16..31); blocks past K (the padding of a short last group) are skipped.
// x: [T, K]; q: [M, G * group / 2] bytes; scales, mins: [M, G] f16; out: [T, M].
// vec: K % 16 == 0 and x 16-byte aligned.
template <class X, class O>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_int4_kernel(const X* __restrict__ x, const uint8_t* __restrict__ q, const __half* __restrict__ scales,
                     const __half* __restrict__ mins, const X* __restrict__ bias, O* __restrict__ out, int T,
                     int64_t M, int64_t ldo, int64_t K, int group, int64_t G, bool vec) {
  const int lane = threadIdx.x % 32;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (m >= M) return;  // uniform per warp
  float acc[kQuantGemvMaxTokens];
#pragma unroll
  for (int t = 0; t < kQuantGemvMaxTokens; ++t) acc[t] = 0.0f;
  const int64_t blocks = G * group / 32;
  const uint8_t* row = q + m * blocks * 16;
  for (int64_t blk = lane; blk < blocks; blk += 32) {
    const int64_t k0 = blk * 32;
    if (k0 >= K) break;  // lanes past the end (blk grows with the loop)
    const uint4 raw = *reinterpret_cast<const uint4*>(row + blk * 16);
    const uint8_t* v = reinterpret_cast<const uint8_t*>(&raw);
    const int64_t g = k0 / group;
    const float s = __half2float(scales[m * G + g]), mn = __half2float(mins[m * G + g]);
    const int n = K - k0 < 32 ? static_cast<int>(K - k0) : 32;
    float w[32];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      w[i] = fmaf(s, static_cast<float>(v[i] & 0xf), mn);
      w[i + 16] = fmaf(s, static_cast<float>(v[i] >> 4), mn);
    }
#pragma unroll
    for (int t = 0; t < kQuantGemvMaxTokens; ++t) {
      if (t >= T) break;
      const X* xr = x + t * K;
      float d = 0.0f;
      if (n == 32) {
        float xs[32];
        load_x(xr, k0, 16, vec, xs);
        load_x(xr, k0 + 16, 16, vec, xs + 16);
#pragma unroll
        for (int i = 0; i < 32; ++i) d = fmaf(w[i], xs[i], d);
      } else {  // the last, partial block; unrolled with a predicate so that w stays in registers
#pragma unroll
        for (int i = 0; i < 32; ++i)
          if (i < n) d = fmaf(w[i], to_float(xr[k0 + i]), d);
      }
      acc[t] += d;
    }
  }
  store_row(acc, T, m, ldo, bias, out, lane);
}

// K-quants: out[t, m] = sum_k w[m, k] x[t, k] (+ bias[m]) over super-blocks of 256 columns.
// One warp per output row walks its super-blocks; in each, lane l takes columns 8l .. 8l + 7
// (inside one sub-block, and inside one 16-column half for Q6_K: one scale and min per
// lane), so the warp reads the block's bytes and 256 consecutive x values together.
// x: [T, K]; q: [M, (K / 256) * block_bytes(F)] bytes; out: [T, M].
template <QuantFormat F, class X, class O>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kquant_kernel(const X* __restrict__ x, const uint8_t* __restrict__ q, const X* __restrict__ bias,
                       O* __restrict__ out, int T, int64_t M, int64_t ldo, int64_t K) {
  constexpr int kBytes = kquant::block_bytes(F);
  const int lane = threadIdx.x % 32;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (m >= M) return;  // uniform per warp
  float acc[kQuantGemvMaxTokens];
#pragma unroll
  for (int t = 0; t < kQuantGemvMaxTokens; ++t) acc[t] = 0.0f;
  const int64_t nsb = K / kquant::kColumns;
  const int n0 = 8 * lane, s = n0 / 32;
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const uint8_t* block = q + (m * nsb + sb) * kBytes;
    float w[8];
    if constexpr (F == QuantFormat::q6_k) {
      const float scale = kquant::q6_k_scale(block, n0);
#pragma unroll
      for (int i = 0; i < 8; ++i) w[i] = scale * static_cast<float>(kquant::q6_k_value(block, n0 + i));
    } else {
      float scale = 0.0f, min = 0.0f;
      kquant::sub_block_scale_min(block, s, scale, min);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int v = F == QuantFormat::q4_k ? kquant::q4_k_value(block, s, n0 % 32 + i)
                                             : kquant::q5_k_value(block, s, n0 % 32 + i);
        w[i] = fmaf(scale, static_cast<float>(v), min);
      }
    }
    const int64_t k0 = sb * kquant::kColumns + n0;
#pragma unroll
    for (int t = 0; t < kQuantGemvMaxTokens; ++t) {
      if (t >= T) break;
      const X* xr = x + t * K + k0;
      float d = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) d = fmaf(w[i], to_float(xr[i]), d);
      acc[t] += d;
    }
  }
  store_row(acc, T, m, ldo, bias, out, lane);
}

// The other ggml block formats (Q4_0, Q5_0, Q5_1, IQ4_NL: blocks of 32 columns; IQ4_XS, Q2_K,
// Q3_K: of 256), read through kquant_blocks.h. One warp per output row walks the row 256
// columns at a time; lane l takes columns 8l .. 8l + 7 of each stretch (inside one block
// and one 16-column half: one scale and min per lane). K is a multiple of the block, not
// necessarily of 256 (Q5_0 rows of 576): lanes past the end of the row sit the last
// stretch out.
// x: [T, K]; q: [M, (K / block_columns(F)) * block_bytes(F)] bytes; out: [T, M].
template <QuantFormat F, class X, class O>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_blocks_kernel(const X* __restrict__ x, const uint8_t* __restrict__ q, const X* __restrict__ bias,
                       O* __restrict__ out, int T, int64_t M, int64_t ldo, int64_t K) {
  constexpr int kCols = kquant::block_columns(F), kBytes = kquant::block_bytes(F);
  const int lane = threadIdx.x % 32;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (m >= M) return;  // uniform per warp
  float acc[kQuantGemvMaxTokens];
#pragma unroll
  for (int t = 0; t < kQuantGemvMaxTokens; ++t) acc[t] = 0.0f;
  const uint8_t* row = q + m * (K / kCols) * kBytes;
  for (int64_t k0 = 8 * lane; k0 < K; k0 += 256) {
    const uint8_t* block = row + (k0 / kCols) * kBytes;
    const int n0 = static_cast<int>(k0 % kCols);
    float scale = 0.0f, min = 0.0f;
    kquant::scale_min(F, block, n0, scale, min);
    float w[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = fmaf(scale, static_cast<float>(kquant::quant_value(F, block, n0 + i)), min);
#pragma unroll
    for (int t = 0; t < kQuantGemvMaxTokens; ++t) {
      if (t >= T) break;
      const X* xr = x + t * K + k0;
      float d = 0.0f;
#pragma unroll
      for (int i = 0; i < 8; ++i) d = fmaf(w[i], to_float(xr[i]), d);
      acc[t] += d;
    }
  }
  store_row(acc, T, m, ldo, bias, out, lane);
}

// ggml block formats: out[r, k] = w[row0 + r, k], one element per thread-iteration.
template <QuantFormat F, class E>
__global__ void __launch_bounds__(kDequantThreads)
    dequantize_kquant_kernel(const uint8_t* __restrict__ q, E* __restrict__ out, int64_t row0, int64_t rows, int K) {
  constexpr int kCols = kquant::block_columns(F), kBytes = kquant::block_bytes(F);
  const int64_t row_bytes = static_cast<int64_t>(K / kCols) * kBytes;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const uint8_t* qr = q + (row0 + r) * row_bytes;
    E* o = out + r * K;
    for (int k = threadIdx.x; k < K; k += blockDim.x)
      o[k] = from_float<E>(kquant::value(F, qr + (k / kCols) * kBytes, k % kCols));
  }
}

// Calls f.template operator()<F>() with w's ggml block format as a template argument.
template <class Fn>
void dispatch_kquant(QuantFormat format, Fn&& f) {
  switch (format) {
    case QuantFormat::q4_k: f.template operator()<QuantFormat::q4_k>(); return;
    case QuantFormat::q5_k: f.template operator()<QuantFormat::q5_k>(); return;
    case QuantFormat::q6_k: f.template operator()<QuantFormat::q6_k>(); return;
    case QuantFormat::q4_0: f.template operator()<QuantFormat::q4_0>(); return;
    case QuantFormat::q5_0: f.template operator()<QuantFormat::q5_0>(); return;
    case QuantFormat::q5_1: f.template operator()<QuantFormat::q5_1>(); return;
    case QuantFormat::iq4_nl: f.template operator()<QuantFormat::iq4_nl>(); return;
    case QuantFormat::iq4_xs: f.template operator()<QuantFormat::iq4_xs>(); return;
    case QuantFormat::q2_k: f.template operator()<QuantFormat::q2_k>(); return;
    case QuantFormat::q3_k: f.template operator()<QuantFormat::q3_k>(); return;
    case QuantFormat::mxfp4: f.template operator()<QuantFormat::mxfp4>(); return;
    default: throw Error(ErrorCategory::internal, "dispatch_kquant: not a ggml block format");
  }
}

// out[r, k] = dequantize(w)[row0 + r, k] for r < rows. Blocks stride over rows, threads over
// the columns of a row (coalesced reads and writes, no 64-bit division per element).
template <bool kFp8, class E>
__global__ void __launch_bounds__(kDequantThreads)
    dequantize_int8_kernel(const int8_t* __restrict__ q, const float* __restrict__ scales, E* __restrict__ out,
                           int64_t row0, int64_t rows, int K, int group, int64_t G) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t m = row0 + r;
    const int8_t* qr = q + m * K;
    const float* sr = scales + m * G;
    E* o = out + r * K;
    for (int k = threadIdx.x; k < K; k += blockDim.x) o[k] = from_float<E>(sr[k / group] * weight_value<kFp8>(qr[k]));
  }
}

template <class E>
__global__ void __launch_bounds__(kDequantThreads)
    dequantize_int4_kernel(const uint8_t* __restrict__ q, const __half* __restrict__ scales,
                           const __half* __restrict__ mins, E* __restrict__ out, int64_t row0, int64_t rows,
                           int K, int group, int64_t G) {
  const int64_t row_bytes = G * group / 2;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t m = row0 + r;
    const uint8_t* qr = q + m * row_bytes;
    E* o = out + r * K;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
      const int c = k % 32;  // blocks of 32 never straddle groups
      const uint8_t b = qr[(k / 32) * 16 + c % 16];
      const int v = c < 16 ? (b & 0xf) : (b >> 4);
      const int64_t g = m * G + k / group;
      o[k] = from_float<E>(fmaf(__half2float(scales[g]), static_cast<float>(v), __half2float(mins[g])));
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

constexpr int kRoundThreads = 256;

// out[t, :] = e4m3(x[t, :] / s_t) s_t with s_t = max |x[t, :]| / 448: one block per row,
// rounding as __nv_cvt_float_to_fp8 with
// __NV_SATFINITE does (core/fp8.h on the host rounds the same way).
template <class X>
__global__ void __launch_bounds__(kRoundThreads)
    round_rows_fp8_kernel(const X* __restrict__ x, X* __restrict__ out, int64_t T, int64_t K) {
  __shared__ float scratch[32];
  for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
    const X* row = x + t * K;
    float amax = 0.0f;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) amax = fmaxf(amax, fabsf(to_float(row[k])));
    amax = block_max<kRoundThreads>(amax, scratch);
    const float scale = amax / 448.0f, inv = amax > 0.0f ? 448.0f / amax : 0.0f;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
      const __nv_fp8_storage_t q = __nv_cvt_float_to_fp8(to_float(row[k]) * inv, __NV_SATFINITE, __NV_E4M3);
      out[t * K + k] = from_float<X>(__half2float(__half(__nv_cvt_fp8_to_halfraw(q, __NV_E4M3))) * scale);
    }
  }
}

}  // namespace

void round_rows_fp8(const LaunchContext& ctx, const TensorView& x, TensorView out) {
  const char* op = "quantized_linear (fp8 activations)";
  const int64_t T = x.dim(0), K = x.dim(1);
  if (T == 0 || K == 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(T, 65535));
  dispatch_float(x.dtype, op, [&]<class X>() {
    round_rows_fp8_kernel<X><<<blocks, kRoundThreads, 0, ctx.stream>>>(static_cast<const X*>(x.data),
                                                                       static_cast<X*>(out.data), T, K);
  });
  check_launch(op);
}

void quantized_gemv(const LaunchContext& ctx, const TensorView& x, const QuantizedWeight& w,
                    const TensorView* bias, TensorView out, int64_t col0) {
  const char* op = "quantized_linear";
  const int T = static_cast<int>(x.dim(0));
  const int64_t M = w.rows, K = w.cols, G = w.groups(), ldo = out.dim(1);
  if (T == 0 || M == 0) return;
  if (w.format == QuantFormat::mixed || col0 < 0 || col0 + M > ldo)
    throw Error(ErrorCategory::internal, std::string(op) + ": GEMV of " + to_string(w.format) + " rows [" +
                                             std::to_string(col0) + ", " + std::to_string(col0 + M) +
                                             ") into an output of " + std::to_string(ldo) + " columns");
  if (T > kQuantGemvMaxTokens)
    throw Error(ErrorCategory::internal, std::string(op) + ": GEMV path takes at most " +
                                             std::to_string(kQuantGemvMaxTokens) + " tokens, got " +
                                             std::to_string(T));
  const unsigned blocks = static_cast<unsigned>((M + kWarpsPerBlock - 1) / kWarpsPerBlock);
  // int4 rows are read as 16-byte blocks whatever `vec` says; int8's vector path takes one
  // scale per 16 columns, so its groups must not start inside a chunk.
  if (w.format == QuantFormat::int4 && !aligned16(w.data.data))
    throw Error(ErrorCategory::internal, std::string(op) + ": int4 weight data is not 16-byte aligned");
  const bool vec = K % 16 == 0 && aligned16(x.data) &&
                   (w.format == QuantFormat::int4 || (aligned16(w.data.data) && w.group_size % 16 == 0));
  dispatch_float(x.dtype, op, [&]<class X>() {
    const X* xp = static_cast<const X*>(x.data);
    const X* bp = bias ? static_cast<const X*>(bias->data) + col0 : nullptr;
    auto launch = [&]<class O>() {
      O* o = static_cast<O*>(out.data) + col0;
      if (kquant::is_block_format(w.format))
        dispatch_kquant(w.format, [&]<QuantFormat F>() {
          const auto* q = static_cast<const uint8_t*>(w.data.data);
          if constexpr (F == QuantFormat::q4_k || F == QuantFormat::q5_k || F == QuantFormat::q6_k)
            gemv_kquant_kernel<F, X, O><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream>>>(xp, q, bp, o, T, M, ldo, K);
          else
            gemv_blocks_kernel<F, X, O><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream>>>(xp, q, bp, o, T, M, ldo, K);
        });
      else if (w.format == QuantFormat::int8)
        gemv_int8_kernel<false, X, O><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream>>>(
            xp, static_cast<const int8_t*>(w.data.data), static_cast<const float*>(w.scales.data), bp, o, T, M,
            ldo, K, w.group_size, G, vec);
      else if (w.format == QuantFormat::fp8_e4m3)
        gemv_int8_kernel<true, X, O><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream>>>(
            xp, static_cast<const int8_t*>(w.data.data), static_cast<const float*>(w.scales.data), bp, o, T, M,
            ldo, K, w.group_size, G, vec);
      else
        gemv_int4_kernel<X, O><<<blocks, kWarpsPerBlock * 32, 0, ctx.stream>>>(
            xp, static_cast<const uint8_t*>(w.data.data), static_cast<const __half*>(w.scales.data),
            static_cast<const __half*>(w.mins.data), bp, o, T, M, ldo, K, w.group_size, G, vec);
    };
    if (out.dtype == DType::f32)
      launch.template operator()<float>();
    else
      launch.template operator()<X>();
  });
  check_launch(op);
}

void dequantize_rows(const LaunchContext& ctx, const QuantizedWeight& w, int64_t row0, int64_t rows,
                     TensorView out) {
  const char* op = "quantized_linear (dequantize)";
  const int64_t G = w.groups();
  const int K = static_cast<int>(w.cols);
  if (w.format == QuantFormat::mixed)
    throw Error(ErrorCategory::internal, std::string(op) + ": dequantize a mixed weight part by part");
  if (rows == 0 || K == 0) return;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
  dispatch_float(out.dtype, op, [&]<class E>() {
    E* o = static_cast<E*>(out.data);
    if (kquant::is_block_format(w.format))
      dispatch_kquant(w.format, [&]<QuantFormat F>() {
        dequantize_kquant_kernel<F, E><<<blocks, kDequantThreads, 0, ctx.stream>>>(
            static_cast<const uint8_t*>(w.data.data), o, row0, rows, K);
      });
    else if (w.format == QuantFormat::int8)
      dequantize_int8_kernel<false, E><<<blocks, kDequantThreads, 0, ctx.stream>>>(
          static_cast<const int8_t*>(w.data.data), static_cast<const float*>(w.scales.data), o, row0, rows, K,
          w.group_size, G);
    else if (w.format == QuantFormat::fp8_e4m3)
      dequantize_int8_kernel<true, E><<<blocks, kDequantThreads, 0, ctx.stream>>>(
          static_cast<const int8_t*>(w.data.data), static_cast<const float*>(w.scales.data), o, row0, rows, K,
          w.group_size, G);
    else
      dequantize_int4_kernel<E><<<blocks, kDequantThreads, 0, ctx.stream>>>(
          static_cast<const uint8_t*>(w.data.data), static_cast<const __half*>(w.scales.data),
          static_cast<const __half*>(w.mins.data), o, row0, rows, K, w.group_size, G);
  });
  check_launch(op);
}

}  // namespace kestrel::cuda
