// loaders/ggml_blocks.cc: dequantization of the ggml block formats beyond Q8_0 / Q4_0 /
// Q4_1 (gguf_quant.h lists the layouts). Each function turns `blocks` consecutive blocks
// into floats with the same float32 operations, in the same order, as ggml-quants.c's
// dequantize_row_* and gguf-py's quants.py, so the values are bit-exact (tests compare
// with gguf-py on random blocks). Any bit pattern is a valid block: nothing here can fail.
#include "loaders/ggml_blocks.h"

#include <cmath>
#include <cstring>

#include "core/half.h"

namespace kestrel::ggml {

namespace {

constexpr int kQK = 256;  // elements per K-quant super-block

inline float half_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return f16_to_f32(v);
}

// llama.cpp's non-linear 4-bit grid (IQ4_NL, IQ4_XS).
constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Q4_K / Q5_K: eight 6-bit scales and mins packed in 12 bytes.
//   bytes 0..3: scale j (low 6 bits), top 2 bits = high bits of scale j + 4
//   bytes 4..7: min j (low 6 bits), top 2 bits = high bits of min j + 4
//   bytes 8..11: low nibble = low 4 bits of scale j + 4, high nibble = low 4 bits of min j + 4
inline void scale_min_k4(int j, const uint8_t* s, int* scale, int* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

}  // namespace

// Q5_0, 22 bytes / 32: f16 d, uint32 qh (bit j = 5th bit of element j), uint8 qs[16].
void unpack_q5_0(const uint8_t* block, int8_t q[32], float* scale) {
  *scale = half_at(block);
  uint32_t qh;
  std::memcpy(&qh, block + 2, 4);
  const uint8_t* qs = block + 6;
  for (int j = 0; j < 16; ++j) {
    q[j] = static_cast<int8_t>(((qs[j] & 0x0f) | (((qh >> j) & 1) << 4)) - 16);
    q[j + 16] = static_cast<int8_t>(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
  }
}

void dequantize_q5_0(const uint8_t* src, float* dst, int64_t blocks) {
  int8_t q[32];
  float d;
  for (int64_t b = 0; b < blocks; ++b, src += 22, dst += 32) {
    unpack_q5_0(src, q, &d);
    for (int j = 0; j < 32; ++j) dst[j] = d * static_cast<float>(q[j]);
  }
}

// Q5_1, 24 bytes / 32: f16 d, f16 m, uint32 qh, uint8 qs[16]; x = d * q + m.
void dequantize_q5_1(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 24, dst += 32) {
    const float d = half_at(src), m = half_at(src + 2);
    uint32_t qh;
    std::memcpy(&qh, src + 4, 4);
    const uint8_t* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const uint32_t x0 = (qs[j] & 0x0f) | (((qh >> j) & 1) << 4);
      const uint32_t x1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      dst[j] = d * static_cast<float>(x0) + m;
      dst[j + 16] = d * static_cast<float>(x1) + m;
    }
  }
}

// Q2_K, 84 bytes / 256: uint8 scales[16] (low nibble scale, high nibble min, per 16
// elements), uint8 qs[64] (2 bits each), f16 d, f16 dmin. Element 128 c + 32 s + j holds
// bits 2s of qs[32 c + j]; x = d * scale - dmin * min.
void dequantize_q2_k(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 84, dst += kQK) {
    const uint8_t* scales = src;
    const uint8_t* qs = src + 16;
    const float d = half_at(src + 80), dmin = half_at(src + 82);
    for (int i = 0; i < kQK; ++i) {
      const int c = i / 128, s = (i % 128) / 32, j = i % 32, g = i / 16;
      const float dl = d * static_cast<float>(scales[g] & 0x0f);
      const float ml = dmin * static_cast<float>(scales[g] >> 4);
      dst[i] = dl * static_cast<float>((qs[32 * c + j] >> (2 * s)) & 3) - ml;
    }
  }
}

// Q3_K, 110 bytes / 256: uint8 hmask[32], uint8 qs[64], uint8 scales[12] (sixteen 6-bit
// scales, offset 32), f16 d. Element 128 c + 32 s + j: low 2 bits from qs[32 c + j] >> 2s,
// minus 4 unless bit (i / 32) of hmask[j] is set.
void dequantize_q3_k(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 110, dst += kQK) {
    const uint8_t* hmask = src;
    const uint8_t* qs = src + 32;
    const uint8_t* sc = src + 96;
    const float d = half_at(src + 108);
    int scale[16];
    for (int g = 0; g < 16; ++g) {
      const int low = (sc[g % 8] >> (4 * (g / 8))) & 0x0f;
      const int high = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
      scale[g] = (low | (high << 4)) - 32;
    }
    for (int i = 0; i < kQK; ++i) {
      const int c = i / 128, s = (i % 128) / 32, j = i % 32;
      const int low = (qs[32 * c + j] >> (2 * s)) & 3;
      const int high = (hmask[j] >> (i / 32)) & 1;
      const float dl = d * static_cast<float>(scale[i / 16]);
      dst[i] = dl * static_cast<float>(low - (high ? 0 : 4));
    }
  }
}

// Q4_K, 144 bytes / 256: f16 d, f16 dmin, uint8 scales[12] (scale_min_k4), uint8 qs[128].
// Element 64 c + 32 s + j: nibble s of qs[32 c + j]; sub-block i / 32.
void dequantize_q4_k(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 144, dst += kQK) {
    const float d = half_at(src), dmin = half_at(src + 2);
    const uint8_t* sc = src + 4;
    const uint8_t* qs = src + 16;
    for (int sb = 0; sb < 8; ++sb) {
      int scale, min;
      scale_min_k4(sb, sc, &scale, &min);
      const float d1 = d * static_cast<float>(scale), m1 = dmin * static_cast<float>(min);
      const uint8_t* q = qs + 32 * (sb / 2);
      for (int j = 0; j < 32; ++j)
        dst[32 * sb + j] = d1 * static_cast<float>((q[j] >> (4 * (sb % 2))) & 0x0f) - m1;
    }
  }
}

// Q5_K, 176 bytes / 256: f16 d, f16 dmin, uint8 scales[12], uint8 qh[32] (bit sb of qh[j]:
// the 5th bit of element 32 sb + j), uint8 qs[128] (as Q4_K).
void dequantize_q5_k(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 176, dst += kQK) {
    const float d = half_at(src), dmin = half_at(src + 2);
    const uint8_t* sc = src + 4;
    const uint8_t* qh = src + 16;
    const uint8_t* qs = src + 48;
    for (int sb = 0; sb < 8; ++sb) {
      int scale, min;
      scale_min_k4(sb, sc, &scale, &min);
      const float d1 = d * static_cast<float>(scale), m1 = dmin * static_cast<float>(min);
      const uint8_t* q = qs + 32 * (sb / 2);
      for (int j = 0; j < 32; ++j) {
        const int v = ((q[j] >> (4 * (sb % 2))) & 0x0f) | (((qh[j] >> sb) & 1) << 4);
        dst[32 * sb + j] = d1 * static_cast<float>(v) - m1;
      }
    }
  }
}

// Q6_K, 210 bytes / 256: uint8 ql[128], uint8 qh[64], int8 scales[16], f16 d.
// Element 128 c + 32 s + j: low nibble (s / 2) of ql[64 c + 32 (s % 2) + j], high 2 bits
// (qh[32 c + j] >> 2s) & 3; x = d * scale[i / 16] * (q - 32).
void unpack_q6_k(const uint8_t* block, int8_t q[256], float scales[16]) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(block + 192);
  const float d = half_at(block + 208);
  for (int g = 0; g < 16; ++g) scales[g] = d * static_cast<float>(sc[g]);
  for (int i = 0; i < kQK; ++i) {
    const int c = i / 128, s = (i % 128) / 32, j = i % 32;
    const int low = (ql[64 * c + 32 * (s % 2) + j] >> (4 * (s / 2))) & 0x0f;
    const int high = (qh[32 * c + j] >> (2 * s)) & 3;
    q[i] = static_cast<int8_t>((low | (high << 4)) - 32);
  }
}

void dequantize_q6_k(const uint8_t* src, float* dst, int64_t blocks) {
  int8_t q[kQK];
  float scales[16];
  for (int64_t b = 0; b < blocks; ++b, src += 210, dst += kQK) {
    unpack_q6_k(src, q, scales);
    for (int i = 0; i < kQK; ++i) dst[i] = scales[i / 16] * static_cast<float>(q[i]);
  }
}

// IQ4_NL, 18 bytes / 32: f16 d, uint8 qs[16]; x = d * grid[nibble] (low nibbles 0..15).
void dequantize_iq4_nl(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 18, dst += 32) {
    const float d = half_at(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * static_cast<float>(kIq4Values[qs[j] & 0x0f]);
      dst[j + 16] = d * static_cast<float>(kIq4Values[qs[j] >> 4]);
    }
  }
}

// MXFP4, 17 bytes / 32: uint8 e (E8M0), uint8 qs[16]; x = 2^(e - 127) * fp4[nibble] (the
// OCP E2M1 values; low nibbles 0..15), computed as ggml does: the values doubled, the
// scale halved.
void dequantize_mxfp4(const uint8_t* src, float* dst, int64_t blocks) {
  static constexpr int8_t kDoubledE2m1[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  for (int64_t b = 0; b < blocks; ++b, src += 17, dst += 32) {
    const int exponent = static_cast<int>(src[0]) - 128;
    const uint8_t* qs = src + 1;
    for (int j = 0; j < 16; ++j) {
      dst[j] = std::ldexp(static_cast<float>(kDoubledE2m1[qs[j] & 0x0f]), exponent);
      dst[j + 16] = std::ldexp(static_cast<float>(kDoubledE2m1[qs[j] >> 4]), exponent);
    }
  }
}

// IQ4_XS, 136 bytes / 256: f16 d, uint16 scales_h, uint8 scales_l[4], uint8 qs[128]:
// eight 6-bit scales (offset 32) per 32 elements, the grid of IQ4_NL.
void dequantize_iq4_xs(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 136, dst += kQK) {
    const float d = half_at(src);
    uint16_t scales_h;
    std::memcpy(&scales_h, src + 2, 2);
    const uint8_t* scales_l = src + 4;
    const uint8_t* qs = src + 8;
    for (int sb = 0; sb < 8; ++sb) {
      const int low = (scales_l[sb / 2] >> (4 * (sb % 2))) & 0x0f;
      const int high = (scales_h >> (2 * sb)) & 3;
      const float dl = d * static_cast<float>((low | (high << 4)) - 32);
      const uint8_t* q = qs + 16 * sb;
      for (int j = 0; j < 16; ++j) {
        dst[32 * sb + j] = dl * static_cast<float>(kIq4Values[q[j] & 0x0f]);
        dst[32 * sb + j + 16] = dl * static_cast<float>(kIq4Values[q[j] >> 4]);
      }
    }
  }
}

}  // namespace kestrel::ggml
