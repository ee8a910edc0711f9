// kernels/kquant_blocks.h: ggml's K-quant super-blocks (Q4_K, Q5_K, Q6_K), read where they
// lie by the kernels of both devices (QuantFormat::q4_k / q5_k / q6_k in backend.h).
//
// A super-block holds 256 consecutive columns of one weight row as 8 sub-blocks of 32
// columns. Every column's value is w = scale * q + min, with q a small integer and scale,
// min shared by the columns of a sub-block (Q6_K: by each half, 16 columns). The byte
// layouts are llama.cpp's (ggml-common.h), read little-endian:
//   Q4_K (144 bytes): d f16 | dmin f16 | scales[12] | qs[128]
//     scales: eight 6-bit (sc, m) pairs (get_scale_min below); scale = d * sc,
//     min = -dmin * m; q in [0, 15]: sub-block s uses qs[32 (s / 2) + c], its low nibble
//     when s is even, the high one when odd.
//   Q5_K (176 bytes): d | dmin | scales[12] | qh[32] | qs[128]
//     as Q4_K, plus the fifth bit of column c of sub-block s in bit s of qh[c]: q in [0, 31].
//   Q6_K (210 bytes): ql[128] | qh[64] | scales[16] i8 | d f16
//     column n = 128 h + 32 r + c (h half, r quarter, c < 32): ql[64 h + c + 32 (r & 1)],
//     low nibble for r < 2, high for r >= 2; bits 2r, 2r + 1 of qh[32 h + c] on top;
//     q = that 6-bit value - 32, in [-32, 31]; scale = d * scales[8 h + 2 r + c / 16];
//     min = 0.
// Products d * sc and d * sc * q are exact in f32 (at most 11 + 8 + 6 significant bits), so
// scale * q + min (fused or not) equals ggml's dequantization bit for bit.
//
// Plain functions on bytes, compiled for the host and, under nvcc, for the device too. They
// are static (each translation unit its own copy) because the CPU's per-instruction-set
// files include them: an inline function compiled there with AVX-512 flags could otherwise
// be the one copy the linker keeps for every caller.
#pragma once

#include <cstdint>
#include <cstring>

#include "backend.h"

#if defined(__CUDACC__)
#define KESTREL_HD static __host__ __device__ __forceinline__
#else
#define KESTREL_HD static inline
#endif

namespace kestrel::kquant {

constexpr int kColumns = 256;   // per super-block
constexpr int kSubBlocks = 8;   // of 32 columns

// Bytes of one super-block; 0 for formats that are not K-quants.
KESTREL_HD constexpr int block_bytes(QuantFormat f) {
  return f == QuantFormat::q4_k ? 144 : f == QuantFormat::q5_k ? 176 : f == QuantFormat::q6_k ? 210 : 0;
}
KESTREL_HD constexpr bool is_kquant(QuantFormat f) { return block_bytes(f) != 0; }

// IEEE half (its bits, little-endian at p) to float, exactly.
KESTREL_HD float load_half(const uint8_t* p) {
  const uint32_t h = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8);
  const uint32_t sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float v = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  const uint32_t bits = exponent == 31 ? (sign | 0x7f800000u | (mantissa << 13))
                                       : (sign | ((exponent + 112) << 23) | (mantissa << 13));
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

// Q4_K / Q5_K: the 6-bit scale and min of sub-block s from the 12 packed bytes
// (llama.cpp's get_scale_min_k4).
KESTREL_HD void get_scale_min(int s, const uint8_t* q, int& sc, int& m) {
  if (s < 4) {
    sc = q[s] & 63;
    m = q[s + 4] & 63;
  } else {
    sc = (q[s + 4] & 0xf) | ((q[s - 4] >> 6) << 4);
    m = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

// Scale and min of sub-block s (32 columns) of a Q4_K or Q5_K super-block.
KESTREL_HD void sub_block_scale_min(const uint8_t* block, int s, float& scale, float& min) {
  int sc = 0, m = 0;
  get_scale_min(s, block + 4, sc, m);
  scale = load_half(block) * static_cast<float>(sc);
  min = -(load_half(block + 2) * static_cast<float>(m));
}

// The integer q of column c (0..31) of sub-block s.
KESTREL_HD int q4_k_value(const uint8_t* block, int s, int c) {
  const uint8_t b = block[16 + 32 * (s / 2) + c];
  return (s & 1) ? (b >> 4) : (b & 0xf);
}
KESTREL_HD int q5_k_value(const uint8_t* block, int s, int c) {
  const uint8_t b = block[48 + 32 * (s / 2) + c];
  const int low = (s & 1) ? (b >> 4) : (b & 0xf);
  return low | (((block[16 + c] >> s) & 1) << 4);
}
// Q6_K: column n (0..255) as a signed q, and the scale of its 16-column half.
KESTREL_HD int q6_k_value(const uint8_t* block, int n) {
  const int h = n / 128, r = (n % 128) / 32, c = n % 32;
  const uint8_t l = block[64 * h + c + 32 * (r & 1)];
  const int low = r < 2 ? (l & 0xf) : (l >> 4);
  const int high = (block[128 + 32 * h + c] >> (2 * r)) & 3;
  return (low | (high << 4)) - 32;
}
KESTREL_HD float q6_k_scale(const uint8_t* block, int n) {
  const int h = n / 128, r = (n % 128) / 32, c = n % 32;
  return load_half(block + 208) * static_cast<float>(static_cast<int8_t>(block[192 + 8 * h + 2 * r + c / 16]));
}

// The value of column n (0..255) of a super-block, as ggml dequantizes it.
KESTREL_HD float value(QuantFormat f, const uint8_t* block, int n) {
  if (f == QuantFormat::q6_k) return q6_k_scale(block, n) * static_cast<float>(q6_k_value(block, n));
  float scale = 0.0f, min = 0.0f;
  sub_block_scale_min(block, n / 32, scale, min);
  const int q = f == QuantFormat::q4_k ? q4_k_value(block, n / 32, n % 32) : q5_k_value(block, n / 32, n % 32);
  return scale * static_cast<float>(q) + min;
}

// All 256 values of a super-block.
KESTREL_HD void dequantize_block(QuantFormat f, const uint8_t* block, float* out) {
  if (f == QuantFormat::q6_k) {
    for (int n = 0; n < kColumns; ++n) out[n] = q6_k_scale(block, n) * static_cast<float>(q6_k_value(block, n));
    return;
  }
  for (int s = 0; s < kSubBlocks; ++s) {
    float scale = 0.0f, min = 0.0f;
    sub_block_scale_min(block, s, scale, min);
    for (int c = 0; c < 32; ++c) {
      const int q = f == QuantFormat::q4_k ? q4_k_value(block, s, c) : q5_k_value(block, s, c);
      out[32 * s + c] = scale * static_cast<float>(q) + min;
    }
  }
}

}  // namespace kestrel::kquant
