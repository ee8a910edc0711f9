// kernels/kquant_blocks.h: ggml's block formats that Kestrel keeps as a GGUF file stores
// them (QuantFormat::q4_k ... q3_k in backend.h), read where they lie by the kernels of both
// devices. The K-quant super-blocks (Q4_K, Q5_K, Q6_K, and Q2_K, Q3_K, IQ4_XS) hold 256
// consecutive columns of one weight row as 8 sub-blocks of 32; Q4_0, Q5_0, Q5_1, IQ4_NL and
// MXFP4 hold 32.
//
// Every column's value is w = scale * q + min, with q a small integer and scale, min shared
// by the columns of a sub-block (Q6_K, Q3_K, Q2_K: by each half, 16 columns). The byte
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
//   Q4_0 (18 bytes / 32): d f16 | qs[16]: column j < 16 the low nibble of qs[j], j >= 16
//     the high nibble of qs[j - 16]; q = that - 8, in [-8, 7]; scale = d.
//   Q5_0 (22 bytes / 32): d f16 | qh u32 | qs[16]: nibbles as Q4_0's,
//     bit j of qh the fifth bit; q = that - 16.
//   Q5_1 (24 bytes / 32): d | m f16 | qh | qs[16]: as Q5_0 without the - 16; min = m.
//   IQ4_NL (18 bytes / 32): d | qs[16]: nibbles as Q5_0's; q = kIq4Grid[nibble], scale = d.
//   MXFP4 (17 bytes / 32): e u8 | qs[16]: nibbles as Q4_0's, each an OCP E2M1 value held
//     doubled as an integer (kMxfp4Grid: 0, 1, 2, 3, 4, 6, 8, 12 and their negatives);
//     scale = 2^(e - 128), the E8M0 scale halved (ggml's GGML_E8M0_TO_FP32_HALF). e = 255
//     (NaN in the OCP format) is refused at load.
//   IQ4_XS (136 bytes): d | scales_h u16 | scales_l[4] | qs[128]: sub-block s has the
//     6-bit scale (nibble s % 2 of scales_l[s / 2]) | (bits 2s, 2s + 1 of scales_h) << 4,
//     minus 32, times d; its nibbles in qs[16 s ..], as IQ4_NL's.
//   Q2_K (84 bytes): scales[16] | qs[64] | d | dmin: column n = 128 h + 32 r + c:
//     q = bits 2r, 2r + 1 of qs[32 h + c]; half g = n / 16: scale = d * (scales[g] & 15),
//     min = -dmin * (scales[g] >> 4).
//   Q3_K (110 bytes): hmask[32] | qs[64] | scales[12] | d: low 2 bits as Q2_K's (qs at 32),
//     q = those - 4 unless bit n / 32 of hmask[c] is set, in [-4, 3]; half g: the 6-bit
//     scale (nibble g / 8 of scales[g % 8]) | (bits 2 (g / 4) of scales[8 + g % 4]) << 4,
//     minus 32, times d.
// Products d * sc and d * sc * q are exact in f32 (MXFP4's 2^k * q too, down to subnormals) (at most 11 + 8 + 6 significant bits;
// IQ4_XS's dl * grid is rounded once, as ggml rounds it), so scale * q + min (fused or not;
// scale * q alone where there is no min) equals ggml's dequantization bit for bit, signed
// zeros included.
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

// Bytes of one block; 0 for formats that are not ggml blocks (int8, int4).
KESTREL_HD constexpr int block_bytes(QuantFormat f) {
  switch (f) {
    case QuantFormat::q4_k: return 144;
    case QuantFormat::q5_k: return 176;
    case QuantFormat::q6_k: return 210;
    case QuantFormat::q4_0: return 18;
    case QuantFormat::q5_0: return 22;
    case QuantFormat::q5_1: return 24;
    case QuantFormat::iq4_nl: return 18;
    case QuantFormat::iq4_xs: return 136;
    case QuantFormat::q2_k: return 84;
    case QuantFormat::q3_k: return 110;
    case QuantFormat::mxfp4: return 17;
    default: return 0;
  }
}
// Columns of one block: 32 or 256 (0 for int8, int4).
KESTREL_HD constexpr int block_columns(QuantFormat f) {
  return block_bytes(f) == 0 ? 0
         : (f == QuantFormat::q4_0 || f == QuantFormat::q5_0 || f == QuantFormat::q5_1 || f == QuantFormat::iq4_nl ||
            f == QuantFormat::mxfp4)
             ? 32
             : kColumns;
}
KESTREL_HD constexpr bool is_block_format(QuantFormat f) { return block_bytes(f) != 0; }

// llama.cpp's non-linear 4-bit grid (IQ4_NL, IQ4_XS).
KESTREL_HD int iq4_grid(int nibble) {
  constexpr int8_t kGrid[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  return kGrid[nibble];
}

// MXFP4's E2M1 values, doubled to integers (llama.cpp's kvalues_mxfp4).
KESTREL_HD int mxfp4_grid(int nibble) {
  constexpr int8_t kGrid[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  return kGrid[nibble];
}

// Half the E8M0 scale e: 2^(e - 128), exactly (subnormal for e < 2).
KESTREL_HD float e8m0_half(uint8_t e) {
  const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

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

// The nibble of column c (0..31) of a 32-column block whose 16 bytes are at qs (Q4_0, Q5_0,
// Q5_1, IQ4_NL, IQ4_XS): byte c % 16, its low nibble for c < 16.
KESTREL_HD int low_high_nibble(const uint8_t* qs, int c) { return c < 16 ? (qs[c] & 0xf) : (qs[c - 16] >> 4); }
KESTREL_HD uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
// IQ4_XS: the signed scale (-32..31) of sub-block s.
KESTREL_HD int iq4_xs_scale(const uint8_t* block, int s) {
  const int low = (block[4 + s / 2] >> (4 * (s % 2))) & 0xf;
  const int high = ((block[2] | (block[3] << 8)) >> (2 * s)) & 3;
  return (low | (high << 4)) - 32;
}
// Q3_K: the signed scale (-32..31) of 16-column half g.
KESTREL_HD int q3_k_scale(const uint8_t* block, int g) {
  const uint8_t* sc = block + 96;
  const int low = (sc[g % 8] >> (4 * (g / 8))) & 0xf;
  const int high = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// The integer q of column n of a block of format f.
KESTREL_HD int quant_value(QuantFormat f, const uint8_t* block, int n) {
  switch (f) {
    case QuantFormat::q4_k: return q4_k_value(block, n / 32, n % 32);
    case QuantFormat::q5_k: return q5_k_value(block, n / 32, n % 32);
    case QuantFormat::q6_k: return q6_k_value(block, n);
    case QuantFormat::q4_0: return low_high_nibble(block + 2, n) - 8;
    case QuantFormat::q5_0:
    case QuantFormat::q5_1: {
      const int qs = f == QuantFormat::q5_0 ? 6 : 8;
      const int v = low_high_nibble(block + qs, n) | (((load_u32(block + qs - 4) >> n) & 1) << 4);
      return f == QuantFormat::q5_0 ? v - 16 : v;
    }
    case QuantFormat::iq4_nl: return iq4_grid(low_high_nibble(block + 2, n));
    case QuantFormat::iq4_xs: return iq4_grid(low_high_nibble(block + 8 + 16 * (n / 32), n % 32));
    case QuantFormat::mxfp4: return mxfp4_grid(low_high_nibble(block + 1, n));
    case QuantFormat::q2_k: return (block[16 + 32 * (n / 128) + n % 32] >> (2 * ((n % 128) / 32))) & 3;
    case QuantFormat::q3_k: {
      const int low = (block[32 + 32 * (n / 128) + n % 32] >> (2 * ((n % 128) / 32))) & 3;
      return ((block[n % 32] >> (n / 32)) & 1) ? low : low - 4;
    }
    default: return 0;
  }
}

// The scale and min of column n's 16-column half (its sub-block's, for formats with one
// per 32): its value is scale * q + min.
KESTREL_HD void scale_min(QuantFormat f, const uint8_t* block, int n, float& scale, float& min) {
  min = 0.0f;
  switch (f) {
    case QuantFormat::q4_k:
    case QuantFormat::q5_k: sub_block_scale_min(block, n / 32, scale, min); return;
    case QuantFormat::q6_k: scale = q6_k_scale(block, n); return;
    case QuantFormat::q4_0:
    case QuantFormat::q5_0:
    case QuantFormat::iq4_nl: scale = load_half(block); return;
    case QuantFormat::q5_1:
      scale = load_half(block);
      min = load_half(block + 2);
      return;
    case QuantFormat::iq4_xs: scale = load_half(block) * static_cast<float>(iq4_xs_scale(block, n / 32)); return;
    case QuantFormat::q2_k: {
      const uint8_t sc = block[n / 16];
      scale = load_half(block + 80) * static_cast<float>(sc & 0xf);
      min = -(load_half(block + 82) * static_cast<float>(sc >> 4));
      return;
    }
    case QuantFormat::q3_k: scale = load_half(block + 108) * static_cast<float>(q3_k_scale(block, n / 16)); return;
    case QuantFormat::mxfp4: scale = e8m0_half(block[0]); return;
    default: scale = 0.0f; return;
  }
}

// Formats whose values have a min term (scale * q + min); the others are scale * q alone,
// without adding a zero that would turn ggml's -0 (a negative scale times 0) into +0.
KESTREL_HD constexpr bool has_min(QuantFormat f) {
  return f == QuantFormat::q4_k || f == QuantFormat::q5_k || f == QuantFormat::q5_1 || f == QuantFormat::q2_k;
}

// The value of column n of a block, as ggml dequantizes it.
KESTREL_HD float value(QuantFormat f, const uint8_t* block, int n) {
  float scale = 0.0f, min = 0.0f;
  scale_min(f, block, n, scale, min);
  const float product = scale * static_cast<float>(quant_value(f, block, n));
  return has_min(f) ? product + min : product;
}

// All block_columns(f) values of a block.
KESTREL_HD void dequantize_block(QuantFormat f, const uint8_t* block, float* out) {
  const int columns = block_columns(f);
  for (int h = 0; h < columns / 16; ++h) {  // a scale and min per 16 columns at most
    float scale = 0.0f, min = 0.0f;
    scale_min(f, block, 16 * h, scale, min);
    for (int c = 16 * h; c < 16 * h + 16; ++c) {
      const float product = scale * static_cast<float>(quant_value(f, block, c));
      out[c] = has_min(f) ? product + min : product;
    }
  }
}

// The offsets of a block's f16 scales (d, and dmin or m where the format has one), which
// must be finite; -1 where there is no second one, and both -1 for MXFP4, whose one scale
// is the E8M0 byte 0 (kE8m0Nan is its only invalid value).
KESTREL_HD void scale_offsets(QuantFormat f, int& first, int& second) {
  second = -1;
  switch (f) {
    case QuantFormat::q4_k:
    case QuantFormat::q5_k:
    case QuantFormat::q5_1: first = 0, second = 2; return;
    case QuantFormat::q6_k: first = 208; return;
    case QuantFormat::q2_k: first = 80, second = 82; return;
    case QuantFormat::q3_k: first = 108; return;
    case QuantFormat::mxfp4: first = -1; return;
    default: first = 0; return;  // Q4_0, Q5_0, IQ4_NL, IQ4_XS: d first
  }
}

constexpr uint8_t kE8m0Nan = 0xff;

}  // namespace kestrel::kquant
