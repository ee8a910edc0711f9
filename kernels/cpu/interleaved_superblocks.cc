#include "cpu/interleaved_superblocks.h"

#include <cmath>
#include <cstring>

#include "core/half.h"
#include "kquant_blocks.h"

namespace kestrel::cpu::interleave_detail {

namespace {

// Q6_K (210 bytes per row and 256 columns) for 8 rows, 1680 bytes: their 8 d (f16); their
// 16 scales as [sub-block s][half][row] (8 bytes per half of a sub-block); then per
// sub-block of 32 columns, the low 4 bits of the 6-bit values u = q + 32 as int4's chunks
// (128 bytes) and their high 2 bits in two 32-byte vectors, the first for columns 0-15 and
// the second for 16-31: in lane r, bits 2v, 2v + 1 of byte j are those of column 4v + j
// (of the half).
constexpr int kQ6Bytes = 210, kQ6ScalesAt = 16, kQ6SubAt = 144, kQ6Sub = 192;

void put_q6k(int r, const uint8_t* plain, uint8_t* group) {
  std::memcpy(group + 2 * r, plain + 208, 2);
  for (int i = 0; i < 16; ++i) group[kQ6ScalesAt + 8 * i + r] = plain[192 + i];
  for (int s = 0; s < 8; ++s) {
    uint8_t* sub = group + kQ6SubAt + kQ6Sub * s;
    for (int j = 0; j < 4; ++j) sub[128 + 4 * r + j] = sub[160 + 4 * r + j] = 0;
    for (int c = 0; c < 16; ++c) {
      const int v = c / 4, j = c % 4;
      const int lo = kquant::q6_k_value(plain, 32 * s + c) + 32, hi = kquant::q6_k_value(plain, 32 * s + 16 + c) + 32;
      const int at = 32 * v + 4 * r + j, bits = 128 + 4 * r + j;
      sub[at] = static_cast<uint8_t>((lo & 0xf) | ((hi & 0xf) << 4));
      sub[bits] = static_cast<uint8_t>(sub[bits] | ((lo >> 4) << (2 * v)));
      sub[bits + 32] = static_cast<uint8_t>(sub[bits + 32] | ((hi >> 4) << (2 * v)));
    }
  }
}

void get_q6k(int r, const uint8_t* group, uint8_t* plain) {
  std::memset(plain, 0, kQ6Bytes);
  std::memcpy(plain + 208, group + 2 * r, 2);
  for (int i = 0; i < 16; ++i) plain[192 + i] = group[kQ6ScalesAt + 8 * i + r];
  for (int s = 0; s < 8; ++s) {
    const uint8_t* sub = group + kQ6SubAt + kQ6Sub * s;
    for (int c = 0; c < 32; ++c) {
      const int half = c / 16, v = (c % 16) / 4, j = c % 4;
      const uint8_t byte = sub[32 * v + 4 * r + j];
      const int low = half ? byte >> 4 : byte & 0xf;
      const int high = (sub[128 + 32 * half + 4 * r + j] >> (2 * v)) & 3;
      // back to ggml's places: column n = 128 h + 32 q + c of the super-block (q the quarter)
      const int n = 32 * s + c, h = n / 128, q = (n % 128) / 32, cc = n % 32;
      uint8_t& l = plain[64 * h + cc + 32 * (q & 1)];
      l = static_cast<uint8_t>(q < 2 ? (l & 0xf0) | low : (l & 0x0f) | (low << 4));
      plain[128 + 32 * h + cc] = static_cast<uint8_t>(plain[128 + 32 * h + cc] | (high << (2 * q)));
    }
  }
}

// Q4_K (144 bytes per row and 256 columns) and Q5_K (176) for 8 rows (1152, 1408 bytes):
// their 8 d, their 8 dmin (f16); the 64 6-bit scales and 64 mins, value k = 8 s + r
// (sub-block s, row r), as 96 bytes: low 4 bits of scale k in nibble k / 32 of byte k % 32
// (32 bytes), of min k the same (32 bytes), and byte k % 32 of the last 32 holding the top
// 2 bits of scale k (bits 0-1, k < 32; bits 2-3, k >= 32) and of min k (bits 4-5, 6-7);
// Q5_K's qh as int4-style chunks (8 x 32 bytes: lane r, byte j of chunk v = row r's
// qh[4v + j]); then per pair p of sub-blocks the 32 nibble bytes the pair shares, as 8
// chunks of 32 (lane r, byte j of chunk v = row r's qs[32p + 4v + j]: low nibble sub-block
// 2p, high nibble 2p + 1, column 4v + j).
constexpr int kKScalesAt = 32, kKQhAt = 128;
int k_bytes(bool five) { return five ? 176 : 144; }
int k_qs_at(bool five) { return five ? 384 : 128; }

void put_q45k(bool five, int r, const uint8_t* plain, uint8_t* group) {
  std::memcpy(group + 2 * r, plain, 2);
  std::memcpy(group + 16 + 2 * r, plain + 2, 2);
  uint8_t* packed = group + kKScalesAt;
  for (int s = 0; s < 8; ++s) {
    int sc = 0, m = 0;
    kquant::get_scale_min(s, plain + 4, sc, m);
    const int k = 8 * s + r, byte = k % 32, upper = k / 32;
    if (upper == 0) packed[byte] = packed[32 + byte] = packed[64 + byte] = 0;  // s < 4 comes first
    packed[byte] = static_cast<uint8_t>(packed[byte] | ((sc & 0xf) << (4 * upper)));
    packed[32 + byte] = static_cast<uint8_t>(packed[32 + byte] | ((m & 0xf) << (4 * upper)));
    packed[64 + byte] =
        static_cast<uint8_t>(packed[64 + byte] | ((sc >> 4) << (2 * upper)) | ((m >> 4) << (4 + 2 * upper)));
  }
  const uint8_t* qs = plain + (five ? 48 : 16);
  for (int v = 0; v < 8; ++v) {
    if (five) std::memcpy(group + kKQhAt + kInt4.position(r, v), plain + 16 + 4 * v, 4);
    for (int p = 0; p < 4; ++p)
      std::memcpy(group + k_qs_at(five) + 256 * p + kInt4.position(r, v), qs + 32 * p + 4 * v, 4);
  }
}

void get_q45k(bool five, int r, const uint8_t* group, uint8_t* plain) {
  std::memcpy(plain, group + 2 * r, 2);
  std::memcpy(plain + 2, group + 16 + 2 * r, 2);
  const uint8_t* packed = group + kKScalesAt;
  int sc[8], m[8];
  for (int s = 0; s < 8; ++s) {
    const int k = 8 * s + r, byte = k % 32, upper = k / 32;
    sc[s] = ((packed[byte] >> (4 * upper)) & 0xf) | (((packed[64 + byte] >> (2 * upper)) & 3) << 4);
    m[s] = ((packed[32 + byte] >> (4 * upper)) & 0xf) | (((packed[64 + byte] >> (4 + 2 * upper)) & 3) << 4);
  }
  // ggml's 12 bytes (the inverse of kquant::get_scale_min)
  uint8_t* q = plain + 4;
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    q[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xf) | ((m[j + 4] & 0xf) << 4));
  }
  uint8_t* qs = plain + (five ? 48 : 16);
  for (int v = 0; v < 8; ++v) {
    if (five) std::memcpy(plain + 16 + 4 * v, group + kKQhAt + kInt4.position(r, v), 4);
    for (int p = 0; p < 4; ++p)
      std::memcpy(qs + 32 * p + 4 * v, group + k_qs_at(five) + 256 * p + kInt4.position(r, v), 4);
  }
}

// IQ4_XS (136 bytes per row and 256 columns) for 8 rows (1088 bytes): their 8 d (f16); the
// 64 6-bit scales ls (value k = 8 s + r) as 48 bytes: low 4 bits in nibble k / 32 of byte
// k % 32, top 2 bits at bits 2 (k / 16) of byte 32 + k % 16; then per sub-block its nibbles
// as int4's chunks (lane r, byte j of chunk v = row r's qs[16 s + 4 v + j]).
constexpr int kXsBytes = 136, kXsScalesAt = 16, kXsQsAt = 64;

void put_iq4xs(int r, const uint8_t* plain, uint8_t* group) {
  std::memcpy(group + 2 * r, plain, 2);
  uint8_t* packed = group + kXsScalesAt;
  for (int s = 0; s < 8; ++s) {
    const int ls = kquant::iq4_xs_scale(plain, s) + 32, k = 8 * s + r;
    if (k < 32) packed[k] = 0;  // s < 4 comes first
    if (k < 16) packed[32 + k] = 0;
    packed[k % 32] = static_cast<uint8_t>(packed[k % 32] | ((ls & 0xf) << (4 * (k / 32))));
    packed[32 + k % 16] = static_cast<uint8_t>(packed[32 + k % 16] | ((ls >> 4) << (2 * (k / 16))));
  }
  for (int s = 0; s < 8; ++s)
    for (int v = 0; v < 4; ++v)
      std::memcpy(group + kXsQsAt + 128 * s + kInt4.position(r, v), plain + 8 + 16 * s + 4 * v, 4);
}

void get_iq4xs(int r, const uint8_t* group, uint8_t* plain) {
  std::memcpy(plain, group + 2 * r, 2);
  const uint8_t* packed = group + kXsScalesAt;
  uint16_t high = 0;
  for (int i = 0; i < 4; ++i) plain[4 + i] = 0;
  for (int s = 0; s < 8; ++s) {
    const int k = 8 * s + r;
    const int ls = ((packed[k % 32] >> (4 * (k / 32))) & 0xf) | (((packed[32 + k % 16] >> (2 * (k / 16))) & 3) << 4);
    plain[4 + s / 2] = static_cast<uint8_t>(plain[4 + s / 2] | ((ls & 0xf) << (4 * (s % 2))));
    high = static_cast<uint16_t>(high | ((ls >> 4) << (2 * s)));
  }
  plain[2] = static_cast<uint8_t>(high & 0xff);
  plain[3] = static_cast<uint8_t>(high >> 8);
  for (int s = 0; s < 8; ++s)
    for (int v = 0; v < 4; ++v)
      std::memcpy(plain + 8 + 16 * s + 4 * v, group + kXsQsAt + 128 * s + kInt4.position(r, v), 4);
}

// Q2_K (84 bytes per row and 256 columns) and Q3_K (110) for 8 rows (672, 880 bytes). Per
// sub-block s of 32 columns, the 2-bit values as two 32-byte vectors, the first for columns
// 0-15 and the second for 16-31 of the sub-block: in lane r, bits 2v, 2v + 1 of byte j are
// those of column 4v + j (of the half); Q3_K adds a third vector, lane r byte j holding the
// high-mask bits of columns 4v + j (bit v) and 16 + 4v + j (bit 4 + v).
//   Q2_K: their 8 d, their 8 dmin, their 16 scale bytes as [half g][row], then the values.
//   Q3_K: their 8 d, their 128 6-bit scales (value k = 8 g + r) as 96 bytes: low 4 bits in
//         nibble k / 64 of byte k % 64, top 2 bits at bits 2 (k / 32) of byte 64 + k % 32;
//         then the values.
constexpr int kQ2Bytes = 84, kQ2ScalesAt = 32, kQ2SubAt = 160;
constexpr int kQ3Bytes = 110, kQ3ScalesAt = 16, kQ3SubAt = 112;

// The 2-bit value of column n (Q2_K: qs at 16; Q3_K: at 32).
int two_bits(const uint8_t* qs, int n) { return (qs[32 * (n / 128) + n % 32] >> (2 * ((n % 128) / 32))) & 3; }

// Row r's 2-bit values (and Q3_K's high-mask bits) of sub-block s into the sub-block's vectors.
void put_low_bits(bool three, int r, const uint8_t* plain, uint8_t* sub, int s) {
  const uint8_t* qs = plain + (three ? 32 : 16);
  for (int j = 0; j < 4; ++j) sub[4 * r + j] = sub[32 + 4 * r + j] = 0;
  if (three)
    for (int j = 0; j < 4; ++j) sub[64 + 4 * r + j] = 0;
  for (int c = 0; c < 32; ++c) {
    const int n = 32 * s + c, half = c / 16, v = (c % 16) / 4, j = c % 4;
    uint8_t& low = sub[32 * half + 4 * r + j];
    low = static_cast<uint8_t>(low | (two_bits(qs, n) << (2 * v)));
    if (three) {
      const int bit = (plain[n % 32] >> (n / 32)) & 1;
      sub[64 + 4 * r + j] = static_cast<uint8_t>(sub[64 + 4 * r + j] | (bit << (4 * half + v)));
    }
  }
}
void get_low_bits(bool three, int r, const uint8_t* sub, int s, uint8_t* plain) {
  uint8_t* qs = plain + (three ? 32 : 16);
  for (int c = 0; c < 32; ++c) {
    const int n = 32 * s + c, half = c / 16, v = (c % 16) / 4, j = c % 4;
    const int value = (sub[32 * half + 4 * r + j] >> (2 * v)) & 3;
    uint8_t& q = qs[32 * (n / 128) + n % 32];
    q = static_cast<uint8_t>(q | (value << (2 * ((n % 128) / 32))));
    if (three) {
      const int bit = (sub[64 + 4 * r + j] >> (4 * half + v)) & 1;
      plain[n % 32] = static_cast<uint8_t>(plain[n % 32] | (bit << (n / 32)));
    }
  }
}

void put_q2k(int r, const uint8_t* plain, uint8_t* group) {
  std::memcpy(group + 2 * r, plain + 80, 2);
  std::memcpy(group + 16 + 2 * r, plain + 82, 2);
  for (int g = 0; g < 16; ++g) group[kQ2ScalesAt + 8 * g + r] = plain[g];
  for (int s = 0; s < 8; ++s) put_low_bits(false, r, plain, group + kQ2SubAt + 64 * s, s);
}
void get_q2k(int r, const uint8_t* group, uint8_t* plain) {
  std::memset(plain, 0, kQ2Bytes);
  std::memcpy(plain + 80, group + 2 * r, 2);
  std::memcpy(plain + 82, group + 16 + 2 * r, 2);
  for (int g = 0; g < 16; ++g) plain[g] = group[kQ2ScalesAt + 8 * g + r];
  for (int s = 0; s < 8; ++s) get_low_bits(false, r, group + kQ2SubAt + 64 * s, s, plain);
}

void put_q3k(int r, const uint8_t* plain, uint8_t* group) {
  std::memcpy(group + 2 * r, plain + 108, 2);
  uint8_t* packed = group + kQ3ScalesAt;
  for (int g = 0; g < 16; ++g) {
    const int sc = kquant::q3_k_scale(plain, g) + 32, k = 8 * g + r;
    if (k < 64) packed[k] = 0;  // g < 8 comes first
    if (k < 32) packed[64 + k] = 0;
    packed[k % 64] = static_cast<uint8_t>(packed[k % 64] | ((sc & 0xf) << (4 * (k / 64))));
    packed[64 + k % 32] = static_cast<uint8_t>(packed[64 + k % 32] | ((sc >> 4) << (2 * (k / 32))));
  }
  for (int s = 0; s < 8; ++s) put_low_bits(true, r, plain, group + kQ3SubAt + 96 * s, s);
}
void get_q3k(int r, const uint8_t* group, uint8_t* plain) {
  std::memset(plain, 0, kQ3Bytes);
  std::memcpy(plain + 108, group + 2 * r, 2);
  const uint8_t* packed = group + kQ3ScalesAt;
  for (int g = 0; g < 16; ++g) {  // ggml's 12 bytes: the inverse of kquant::q3_k_scale
    const int k = 8 * g + r;
    const int sc = ((packed[k % 64] >> (4 * (k / 64))) & 0xf) | (((packed[64 + k % 32] >> (2 * (k / 32))) & 3) << 4);
    plain[96 + g % 8] = static_cast<uint8_t>(plain[96 + g % 8] | ((sc & 0xf) << (4 * (g / 8))));
    plain[104 + g % 4] = static_cast<uint8_t>(plain[104 + g % 4] | ((sc >> 4) << (2 * (g / 4))));
  }
  for (int s = 0; s < 8; ++s) get_low_bits(true, r, group + kQ3SubAt + 96 * s, s, plain);
}

// (rows8_superblocks_portable's, for one kind of format)
void rows8_q6k_portable(const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T, float* out,
                        int64_t out_stride) {
  for (int64_t t = 0; t < T; ++t) {
    const Q8Block* xt = x + t * x_stride;
    float acc[kRows] = {};
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* group = q + sb * kRows * kQ6Bytes;
      for (int r = 0; r < kRows; ++r) {
        uint8_t plain[kQ6Bytes];
        get_q6k(r, group, plain);
        const float d = f16_to_f32(static_cast<uint16_t>(plain[208] | (plain[209] << 8)));
        for (int s = 0; s < 8; ++s) {
          const Q8Block& xb = xt[8 * sb + s];
          for (int half = 0; half < 2; ++half) {
            int32_t p = 0;
            for (int c = 16 * half; c < 16 * half + 16; ++c) p += kquant::q6_k_value(plain, 32 * s + c) * xb.q[c];
            const float scale = d * static_cast<float>(static_cast<int8_t>(plain[192 + 2 * s + half]));
            acc[r] = std::fma(static_cast<float>(p), scale * xb.d, acc[r]);
          }
        }
      }
    }
    for (int r = 0; r < kRows; ++r) out[t * out_stride + r] = acc[r];
  }
}

void dequantize_q6k_row(const QuantizedWeight& w, int64_t m, float* out) {
  const int64_t nsb = w.cols / 256;
  const int r = static_cast<int>(m % kRows);
  const uint8_t* q = reinterpret_cast<const uint8_t*>(w.data.data) + (m / kRows) * kRows * nsb * kQ6Bytes;
  for (int64_t sb = 0; sb < nsb; ++sb, out += 256) {
    const uint8_t* group = q + sb * kRows * kQ6Bytes;
    const float d = f16_to_f32(static_cast<uint16_t>(group[2 * r] | (group[2 * r + 1] << 8)));
    for (int s = 0; s < 8; ++s) {
      const uint8_t* sub = group + kQ6SubAt + kQ6Sub * s;
      for (int half = 0; half < 2; ++half) {
        // As kquant::dequantize_block: (d * sc) * q, the product d * sc exact.
        const float scale = d * static_cast<float>(static_cast<int8_t>(group[kQ6ScalesAt + 8 * (2 * s + half) + r]));
        for (int v = 0; v < 4; ++v)
          for (int j = 0; j < 4; ++j) {
            const uint8_t byte = sub[32 * v + 4 * r + j];
            const int low = half ? byte >> 4 : byte & 0xf;
            const int high = (sub[128 + 32 * half + 4 * r + j] >> (2 * v)) & 3;
            out[32 * s + 16 * half + 4 * v + j] = scale * static_cast<float>((low | (high << 4)) - 32);
          }
      }
    }
  }
}

// (rows8_superblocks_portable's, for one kind of format)
void rows8_q45k_portable(bool five, const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T,
                         float* out, int64_t out_stride) {
  const int bytes = k_bytes(five);
  for (int64_t t = 0; t < T; ++t) {
    const Q8Block* xt = x + t * x_stride;
    float acc[kRows] = {};
    for (int64_t sb = 0; sb < nsb; ++sb) {
      for (int r = 0; r < kRows; ++r) {
        uint8_t plain[176];
        get_q45k(five, r, q + sb * kRows * bytes, plain);
        for (int s = 0; s < 8; ++s) {
          const Q8Block& xb = xt[8 * sb + s];
          int32_t p = 0;
          for (int c = 0; c < 32; ++c)
            p += (five ? kquant::q5_k_value(plain, s, c) : kquant::q4_k_value(plain, s, c)) * xb.q[c];
          float scale = 0.0f, min = 0.0f;
          kquant::sub_block_scale_min(plain, s, scale, min);
          acc[r] = std::fma(static_cast<float>(p), scale * xb.d, acc[r]);
          acc[r] = std::fma(min, xb.sum, acc[r]);
        }
      }
    }
    for (int r = 0; r < kRows; ++r) out[t * out_stride + r] = acc[r];
  }
}

void dequantize_k_row(const QuantizedWeight& w, int64_t m, float* out) {
  const bool five = w.format == QuantFormat::q5_k;
  const int bytes = k_bytes(five);
  const int64_t nsb = w.cols / 256;
  const int r = static_cast<int>(m % kRows);
  const uint8_t* q = reinterpret_cast<const uint8_t*>(w.data.data) + (m / kRows) * kRows * nsb * bytes;
  for (int64_t sb = 0; sb < nsb; ++sb, out += 256) {
    const uint8_t* group = q + sb * kRows * bytes;
    const float d = f16_to_f32(static_cast<uint16_t>(group[2 * r] | (group[2 * r + 1] << 8)));
    const float dmin = f16_to_f32(static_cast<uint16_t>(group[16 + 2 * r] | (group[17 + 2 * r] << 8)));
    const uint8_t* packed = group + kKScalesAt;
    for (int s = 0; s < 8; ++s) {
      const int k = 8 * s + r, byte = k % 32, upper = k / 32;
      const int sc = ((packed[byte] >> (4 * upper)) & 0xf) | (((packed[64 + byte] >> (2 * upper)) & 3) << 4);
      const int mn = ((packed[32 + byte] >> (4 * upper)) & 0xf) | (((packed[64 + byte] >> (4 + 2 * upper)) & 3) << 4);
      // As kquant::sub_block_scale_min and dequantize_block: scale * q + min, both exact.
      const float scale = d * static_cast<float>(sc), min = -(dmin * static_cast<float>(mn));
      const uint8_t* pair = group + k_qs_at(five) + 256 * (s / 2);
      const int shift = 4 * (s % 2);
      for (int v = 0; v < 8; ++v)
        for (int j = 0; j < 4; ++j) {
          int value = (pair[32 * v + 4 * r + j] >> shift) & 0xf;
          if (five) value |= ((group[kKQhAt + 32 * v + 4 * r + j] >> s) & 1) << 4;
          out[32 * s + 4 * v + j] = scale * static_cast<float>(value) + min;
        }
    }
  }
}

// (rows8_superblocks_portable's, for one kind of format)
void rows8_iq4xs_portable(const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T, float* out,
                          int64_t out_stride) {
  for (int64_t t = 0; t < T; ++t) {
    const Q8Block* xt = x + t * x_stride;
    float acc[kRows] = {};
    for (int64_t sb = 0; sb < nsb; ++sb) {
      for (int r = 0; r < kRows; ++r) {
        uint8_t plain[kXsBytes];
        get_iq4xs(r, q + sb * kRows * kXsBytes, plain);
        const float d = f16_to_f32(static_cast<uint16_t>(plain[0] | (plain[1] << 8)));
        for (int s = 0; s < 8; ++s) {
          const Q8Block& xb = xt[8 * sb + s];
          int32_t p = 0;
          for (int c = 0; c < 32; ++c) p += kquant::iq4_grid(kquant::low_high_nibble(plain + 8 + 16 * s, c)) * xb.q[c];
          const float scale = d * static_cast<float>(kquant::iq4_xs_scale(plain, s));
          acc[r] = std::fma(static_cast<float>(p), scale * xb.d, acc[r]);
        }
      }
    }
    for (int r = 0; r < kRows; ++r) out[t * out_stride + r] = acc[r];
  }
}

// (rows8_superblocks_portable's, for one kind of format)
void rows8_q23k_portable(bool three, const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride, int64_t T,
                         float* out, int64_t out_stride) {
  const QuantFormat f = three ? QuantFormat::q3_k : QuantFormat::q2_k;
  const int bytes = three ? kQ3Bytes : kQ2Bytes;
  for (int64_t t = 0; t < T; ++t) {
    const Q8Block* xt = x + t * x_stride;
    float acc[kRows] = {};
    for (int64_t sb = 0; sb < nsb; ++sb) {
      for (int r = 0; r < kRows; ++r) {
        uint8_t plain[kQ3Bytes];
        if (three)
          get_q3k(r, q + sb * kRows * bytes, plain);
        else
          get_q2k(r, q + sb * kRows * bytes, plain);
        for (int s = 0; s < 8; ++s) {
          const Q8Block& xb = xt[8 * sb + s];
          for (int half = 0; half < 2; ++half) {
            int32_t p = 0, sum = 0;
            for (int c = 16 * half; c < 16 * half + 16; ++c) {
              p += kquant::quant_value(f, plain, 32 * s + c) * xb.q[c];
              sum += xb.q[c];
            }
            float scale = 0.0f, min = 0.0f;
            kquant::scale_min(f, plain, 32 * s + 16 * half, scale, min);
            acc[r] = std::fma(static_cast<float>(p), scale * xb.d, acc[r]);
            if (!three) acc[r] = std::fma(static_cast<float>(sum), min * xb.d, acc[r]);
          }
        }
      }
    }
    for (int r = 0; r < kRows; ++r) out[t * out_stride + r] = acc[r];
  }
}

}  // namespace

bool superblock_format(QuantFormat f) {
  return f == QuantFormat::q2_k || f == QuantFormat::q3_k || f == QuantFormat::q4_k || f == QuantFormat::q5_k ||
         f == QuantFormat::q6_k || f == QuantFormat::iq4_xs;
}

void put_superblock(QuantFormat f, int r, const uint8_t* plain, uint8_t* group) {
  switch (f) {
    case QuantFormat::q6_k:
      return put_q6k(r, plain, group);
    case QuantFormat::q4_k:
    case QuantFormat::q5_k:
      return put_q45k(f == QuantFormat::q5_k, r, plain, group);
    case QuantFormat::iq4_xs:
      return put_iq4xs(r, plain, group);
    case QuantFormat::q2_k:
      return put_q2k(r, plain, group);
    default:
      return put_q3k(r, plain, group);
  }
}

void get_superblock(QuantFormat f, int r, const uint8_t* group, uint8_t* plain) {
  switch (f) {
    case QuantFormat::q6_k:
      return get_q6k(r, group, plain);
    case QuantFormat::q4_k:
    case QuantFormat::q5_k:
      return get_q45k(f == QuantFormat::q5_k, r, group, plain);
    case QuantFormat::iq4_xs:
      return get_iq4xs(r, group, plain);
    case QuantFormat::q2_k:
      return get_q2k(r, group, plain);
    default:
      return get_q3k(r, group, plain);
  }
}

void rows8_superblocks_portable(QuantFormat f, const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride,
                                int64_t T, float* out, int64_t out_stride) {
  switch (f) {
    case QuantFormat::q4_k:
    case QuantFormat::q5_k:
      return rows8_q45k_portable(f == QuantFormat::q5_k, q, nsb, x, x_stride, T, out, out_stride);
    case QuantFormat::q2_k:
    case QuantFormat::q3_k:
      return rows8_q23k_portable(f == QuantFormat::q3_k, q, nsb, x, x_stride, T, out, out_stride);
    case QuantFormat::q6_k:
      return rows8_q6k_portable(q, nsb, x, x_stride, T, out, out_stride);
    default:
      return rows8_iq4xs_portable(q, nsb, x, x_stride, T, out, out_stride);
  }
}

bool dequantize_superblock_row(const QuantizedWeight& w, int64_t m, float* out) {
  switch (w.format) {
    case QuantFormat::q4_k:
    case QuantFormat::q5_k:
      dequantize_k_row(w, m, out);
      return true;
    case QuantFormat::q6_k:
      dequantize_q6k_row(w, m, out);
      return true;
    default:
      return false;
  }
}

}  // namespace kestrel::cpu::interleave_detail
