#include "cpu/interleaved_rows.h"

#include <cmath>
#include <cstring>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/half.h"
#include "cpu/interleaved_superblocks.h"
#include "kestrel/error.h"
#include "kquant_blocks.h"

namespace kestrel::cpu {

using namespace interleave_detail;  // kRows, Layout, kInt4, kInt8, the super-block formats

namespace {

const Layout& layout_of(const QuantizedWeight& w) { return w.format == QuantFormat::int4 ? kInt4 : kInt8; }

bool nibble_format(QuantFormat f) {
  return f == QuantFormat::q4_0 || f == QuantFormat::q5_0 || f == QuantFormat::q5_1 || f == QuantFormat::iq4_nl;
}
// The ggml block formats with an interleaved layout.
bool block_format(QuantFormat f) { return nibble_format(f) || superblock_format(f); }

// A 32-column ggml block (kquant_blocks.h): d at 0, Q5_1's m at 2, Q5's qh after them, then
// 16 bytes of nibbles; -1 where a field is absent. In the interleaved block of 8 rows the
// same fields come as arrays of 8 (d at 0, m at 16, qh after them, the nibbles last).
struct NibbleBlock {
  int bytes, min_at, qh_at, qs_at;
  int group_min_at() const { return 16; }
  int group_qh_at() const { return min_at >= 0 ? 32 : 16; }
  int group_qs_at() const { return 16 + (min_at >= 0 ? 16 : 0) + (qh_at >= 0 ? 32 : 0); }
};
NibbleBlock nibble_block(QuantFormat f) {
  if (f == QuantFormat::q5_0) return {22, -1, 2, 6};
  if (f == QuantFormat::q5_1) return {24, 2, 4, 8};
  return {18, -1, -1, 2};  // Q4_0, IQ4_NL
}

// qh (bit j: column j's fifth bit) <-> byte v holding columns 4v .. 4v + 3 in its low
// nibble and 16 + 4v .. in its high one (the columns of int4 chunk v).
uint32_t chunk_order_qh(uint32_t qh) {
  uint32_t out = 0;
  for (int v = 0; v < 4; ++v) out |= (((qh >> (4 * v)) & 0xf) | (((qh >> (16 + 4 * v)) & 0xf) << 4)) << (8 * v);
  return out;
}
uint32_t plain_order_qh(uint32_t qh) {
  uint32_t out = 0;
  for (int v = 0; v < 4; ++v) {
    const uint32_t byte = (qh >> (8 * v)) & 0xff;
    out |= ((byte & 0xf) << (4 * v)) | ((byte >> 4) << (16 + 4 * v));
  }
  return out;
}

// Row r's plain block `plain` into / out of the interleaved block `group` of 8 rows.
void put_nibble_block(const NibbleBlock& f, int r, const uint8_t* plain, uint8_t* group) {
  std::memcpy(group + 2 * r, plain, 2);
  if (f.min_at >= 0) std::memcpy(group + f.group_min_at() + 2 * r, plain + f.min_at, 2);
  if (f.qh_at >= 0) {
    uint32_t qh;
    std::memcpy(&qh, plain + f.qh_at, 4);
    qh = chunk_order_qh(qh);
    std::memcpy(group + f.group_qh_at() + 4 * r, &qh, 4);
  }
  for (int v = 0; v < kInt4.runs(); ++v)
    std::memcpy(group + f.group_qs_at() + kInt4.position(r, v), plain + f.qs_at + 4 * v, 4);
}
void get_nibble_block(const NibbleBlock& f, int r, const uint8_t* group, uint8_t* plain) {
  std::memcpy(plain, group + 2 * r, 2);
  if (f.min_at >= 0) std::memcpy(plain + f.min_at, group + f.group_min_at() + 2 * r, 2);
  if (f.qh_at >= 0) {
    uint32_t qh;
    std::memcpy(&qh, group + f.group_qh_at() + 4 * r, 4);
    qh = plain_order_qh(qh);
    std::memcpy(plain + f.qh_at, &qh, 4);
  }
  for (int v = 0; v < kInt4.runs(); ++v)
    std::memcpy(plain + f.qs_at + 4 * v, group + f.group_qs_at() + kInt4.position(r, v), 4);
}

// Bytes of a row as stored: int4, groups padded to group_size; int8, one per column (an
// interleaved weight's cols are a multiple of 32: whole blocks).
int64_t row_bytes(const QuantizedWeight& w) {
  return w.format == QuantFormat::int4 ? w.groups() * w.group_size / 2 : w.cols;
}

// Moves the 8 x G values of row group i (row-major [8, G]) into group-major [G, 8] order.
template <class T>
void interleave_scales(T* values, int64_t G, std::vector<T>& tmp) {
  tmp.resize(static_cast<size_t>(kRows * G));
  for (int r = 0; r < kRows; ++r)
    for (int64_t g = 0; g < G; ++g) tmp[static_cast<size_t>(g * kRows + r)] = values[r * G + g];
  std::memcpy(values, tmp.data(), tmp.size() * sizeof(T));
}

}  // namespace

bool interleavable(const QuantizedWeight& w) {
  const bool int8 = w.format == QuantFormat::int8;
  return (w.format == QuantFormat::int4 || int8 || block_format(w.format)) && w.interleave == 0 &&
         (int8 || !w.precise_activations) && !w.int8_activations && w.rows > 0 && w.rows % kRows == 0 &&
         w.cols % 32 == 0 && w.group_size > 0 && w.group_size % 32 == 0;
}

namespace {

// Row r's plain block into / out of the 8 rows' interleaved block of a ggml format.
void put_block(QuantFormat f, int r, const uint8_t* plain, uint8_t* group) {
  if (superblock_format(f))
    put_superblock(f, r, plain, group);
  else
    put_nibble_block(nibble_block(f), r, plain, group);
}
void get_block(QuantFormat f, int r, const uint8_t* group, uint8_t* plain) {
  if (superblock_format(f))
    get_superblock(f, r, group, plain);
  else
    get_nibble_block(nibble_block(f), r, group, plain);
}

void interleave_blocks(QuantizedWeight& w) {
  const int bytes = kquant::block_bytes(w.format);
  const int64_t blocks = w.cols / kquant::block_columns(w.format), group_bytes = kRows * blocks * bytes;
  auto* q = reinterpret_cast<uint8_t*>(w.data.data);
  std::vector<uint8_t> tmp(static_cast<size_t>(group_bytes));
  for (int64_t i = 0; i < w.rows / kRows; ++i) {
    uint8_t* gq = q + i * group_bytes;
    for (int r = 0; r < kRows; ++r)
      for (int64_t b = 0; b < blocks; ++b)
        put_block(w.format, r, gq + (r * blocks + b) * bytes, tmp.data() + b * kRows * bytes);
    std::memcpy(gq, tmp.data(), tmp.size());
  }
}

}  // namespace

void interleave_rows(QuantizedWeight& w) {
  if (!interleavable(w))
    throw Error(ErrorCategory::internal, std::string("interleave_rows: not a weight this layout takes (") +
                                             to_string(w.format) + ", rows " + std::to_string(w.rows) + ")");
  if (block_format(w.format)) {
    interleave_blocks(w);
    w.interleave = kInterleaveRows;
    return;
  }
  const Layout& layout = layout_of(w);
  const int64_t M = w.rows, G = w.groups(), blocks = row_bytes(w) / layout.block_bytes;
  const int64_t group_bytes = kRows * blocks * layout.block_bytes;
  auto* q = reinterpret_cast<uint8_t*>(w.data.data);
  std::vector<uint8_t> qs(static_cast<size_t>(group_bytes));
  std::vector<uint16_t> tmp16;
  std::vector<float> tmp32;
  for (int64_t i = 0; i < M / kRows; ++i) {
    uint8_t* gq = q + i * group_bytes;
    for (int r = 0; r < kRows; ++r)
      for (int64_t b = 0; b < blocks; ++b)
        for (int v = 0; v < layout.runs(); ++v)
          std::memcpy(qs.data() + b * kRows * layout.block_bytes + layout.position(r, v),
                      gq + (r * blocks + b) * layout.block_bytes + v * layout.lane_bytes,
                      static_cast<size_t>(layout.lane_bytes));
    std::memcpy(gq, qs.data(), qs.size());
    if (w.format == QuantFormat::int4) {
      interleave_scales(static_cast<uint16_t*>(w.scales.data) + i * kRows * G, G, tmp16);
      interleave_scales(static_cast<uint16_t*>(w.mins.data) + i * kRows * G, G, tmp16);
    } else {
      interleave_scales(static_cast<float*>(w.scales.data) + i * kRows * G, G, tmp32);
    }
  }
  w.interleave = kInterleaveRows;
}

void prepare_quantized_cpu(QuantizedWeight& w) {
  if (w.format == QuantFormat::mixed) {
    // The parts carry the mixed weight's flags (QuantizedWeight::part).
    for (size_t i = 0; i < w.parts.size(); ++i) {
      QuantizedWeight p = w.part(i);
      if (interleavable(p)) {
        interleave_rows(p);
        w.parts[i].interleave = p.interleave;
      }
    }
    return;
  }
  if (interleavable(w)) interleave_rows(w);
}

PlainRow plain_row(const QuantizedWeight& w, int64_t m, PlainRowScratch& scratch) {
  if (block_format(w.format)) {
    const int bytes = kquant::block_bytes(w.format);
    const int64_t blocks = w.cols / kquant::block_columns(w.format);
    const uint8_t* q = reinterpret_cast<const uint8_t*>(w.data.data);
    if (w.interleave == 0) return {q + m * blocks * bytes, nullptr, nullptr};
    const uint8_t* gq = q + (m / kRows) * kRows * blocks * bytes;
    scratch.q.resize(static_cast<size_t>(blocks * bytes));
    for (int64_t b = 0; b < blocks; ++b)
      get_block(w.format, static_cast<int>(m % kRows), gq + b * kRows * bytes, scratch.q.data() + b * bytes);
    return {scratch.q.data(), nullptr, nullptr};
  }
  const Layout& layout = layout_of(w);
  const int64_t G = w.groups(), bytes = row_bytes(w), blocks = bytes / layout.block_bytes;
  const bool int4 = w.format == QuantFormat::int4;
  const size_t scale_bytes = int4 ? 2 : 4;
  const auto* q = reinterpret_cast<const uint8_t*>(w.data.data);
  const auto* scales = static_cast<const uint8_t*>(w.scales.data);
  const auto* mins = static_cast<const uint16_t*>(w.mins.data);
  if (w.interleave == 0) return {q + m * bytes, scales + m * G * scale_bytes, int4 ? mins + m * G : nullptr};
  const int64_t i = m / kRows;
  const int r = static_cast<int>(m % kRows);
  scratch.q.resize(static_cast<size_t>(bytes));
  scratch.scales.resize(static_cast<size_t>(G));
  const uint8_t* gq = q + i * kRows * bytes;
  uint8_t* out = scratch.q.data();
  if (int4) {  // the run lengths known here: each run one 4- or 2-byte move
    for (int64_t b = 0; b < blocks; ++b)
      for (int v = 0; v < kInt4.runs(); ++v)
        std::memcpy(out + b * kInt4.block_bytes + v * 4, gq + b * kRows * kInt4.block_bytes + kInt4.position(r, v), 4);
  } else {
    for (int64_t b = 0; b < blocks; ++b)
      for (int v = 0; v < kInt8.runs(); ++v)
        std::memcpy(out + b * kInt8.block_bytes + v * 2, gq + b * kRows * kInt8.block_bytes + kInt8.position(r, v), 2);
  }
  auto* scale_out = reinterpret_cast<uint8_t*>(scratch.scales.data());
  for (int64_t g = 0; g < G; ++g)
    std::memcpy(scale_out + g * scale_bytes, scales + ((i * G + g) * kRows + r) * scale_bytes, scale_bytes);
  if (!int4) return {scratch.q.data(), scratch.scales.data(), nullptr};
  scratch.mins.resize(static_cast<size_t>(G));
  for (int64_t g = 0; g < G; ++g) scratch.mins[static_cast<size_t>(g)] = mins[(i * G + g) * kRows + r];
  return {scratch.q.data(), scratch.scales.data(), scratch.mins.data()};
}

void rows8_int4_portable(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t nb, int bpg,
                         const Q8Block* x, int64_t x_stride, int64_t T, float* out, int64_t out_stride) {
  for (int64_t t = 0; t < T; ++t) {
    const Q8Block* xt = x + t * x_stride;
    float acc[kRows] = {};
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* block = q + b * kRows * kInt4.block_bytes;
      const int64_t g = b / bpg;
      for (int r = 0; r < kRows; ++r) {
        int32_t p = 0;
        for (int j = 0; j < kInt4.block_bytes; ++j) {
          const uint8_t byte = block[kInt4.position(r, j / 4) + j % 4];
          p += (byte & 0xf) * xt[b].q[j] + (byte >> 4) * xt[b].q[16 + j];
        }
        const float s = f16_to_f32(scales[g * kRows + r]), m = f16_to_f32(mins[g * kRows + r]);
        acc[r] = std::fma(static_cast<float>(p), s * xt[b].d, acc[r]);
        acc[r] = std::fma(m, xt[b].sum, acc[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) out[t * out_stride + r] = acc[r];
  }
}

void rows8_int8_portable(const int8_t* q, const float* scales, int64_t nb, int bpg, const Q16Block* x, int64_t x_stride,
                         int64_t T, float* out, int64_t out_stride) {
  for (int64_t t = 0; t < T; ++t) {
    const Q16Block* xt = x + t * x_stride;
    float acc[kRows] = {};
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* block = q + b * kRows * kInt8.block_bytes;
      const int64_t g = b / bpg;
      for (int r = 0; r < kRows; ++r) {
        int32_t p = 0;
        for (int j = 0; j < kInt8.block_bytes; ++j) p += block[kInt8.position(r, j / 2) + j % 2] * xt[b].q[j];
        acc[r] = std::fma(static_cast<float>(p), scales[g * kRows + r] * xt[b].d, acc[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) out[t * out_stride + r] = acc[r];
  }
}

void widen_q8_blocks(const Q8Block* x, int64_t n, Q16Block* out) {
  for (int64_t i = 0; i < n; ++i) {
    out[i].d = x[i].d;
    for (int j = 0; j < 32; ++j) out[i].q[j] = x[i].q[j];
  }
}

// (rows8_blocks_portable's, for one kind of format)
static void rows8_nibbles_portable(QuantFormat format, const uint8_t* q, int64_t nb, const Q8Block* x, int64_t x_stride,
                                   int64_t T, float* out, int64_t out_stride) {
  const NibbleBlock f = nibble_block(format);
  for (int64_t t = 0; t < T; ++t) {
    const Q8Block* xt = x + t * x_stride;
    float acc[kRows] = {};
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* group = q + b * kRows * f.bytes;
      for (int r = 0; r < kRows; ++r) {
        uint8_t plain[24];
        get_nibble_block(f, r, group, plain);
        uint32_t qh = 0;
        if (f.qh_at >= 0) std::memcpy(&qh, plain + f.qh_at, 4);
        int32_t p = 0;
        for (int c = 0; c < 32; ++c) {
          const int nibble = kquant::low_high_nibble(plain + f.qs_at, c);
          const int value = format == QuantFormat::iq4_nl ? kquant::iq4_grid(nibble)
                                                          : nibble | static_cast<int>(((qh >> c) & 1) << 4);
          p += value * xt[b].q[c];
        }
        const float d = f16_to_f32(static_cast<uint16_t>(plain[0] | (plain[1] << 8)));
        acc[r] = std::fma(static_cast<float>(p), d * xt[b].d, acc[r]);
        if (format == QuantFormat::q4_0) acc[r] = std::fma(-8.0f * d, xt[b].sum, acc[r]);
        if (format == QuantFormat::q5_0) acc[r] = std::fma(-16.0f * d, xt[b].sum, acc[r]);
        if (format == QuantFormat::q5_1)
          acc[r] = std::fma(f16_to_f32(static_cast<uint16_t>(plain[2] | (plain[3] << 8))), xt[b].sum, acc[r]);
      }
    }
    for (int r = 0; r < kRows; ++r) out[t * out_stride + r] = acc[r];
  }
}

static void dequantize_interleaved_int4_row(const QuantizedWeight& w, int64_t m, float* out) {
  const int64_t K = w.cols, G = w.groups(), blocks = row_bytes(w) / kInt4.block_bytes;
  const int r = static_cast<int>(m % kRows);
  const int64_t i = m / kRows;
  const uint8_t* q = reinterpret_cast<const uint8_t*>(w.data.data) + i * kRows * blocks * kInt4.block_bytes;
  const auto* scales = static_cast<const uint16_t*>(w.scales.data) + i * kRows * G;
  const auto* mins = static_cast<const uint16_t*>(w.mins.data) + i * kRows * G;
  const int bpg = w.group_size / 32;
  for (int64_t b = 0; b < K / 32; ++b) {
    const int64_t g = b / bpg;
    // As the plain layout's dequantization: scale * q + min.
    const float scale = f16_to_f32(scales[g * kRows + r]), min = f16_to_f32(mins[g * kRows + r]);
    const uint8_t* block = q + b * kRows * kInt4.block_bytes;
    float* o = out + 32 * b;
    for (int v = 0; v < 4; ++v) {  // the row's 4 bytes of chunk v: columns 4v + j and 16 + 4v + j
      const uint8_t* p = block + kInt4.position(r, v);
#if defined(__SSE2__)
      // The 4 bytes straight into a vector (a byte loop here stalls on store forwarding).
      int32_t word;
      std::memcpy(&word, p, 4);
      const __m128i zero = _mm_setzero_si128();
      const __m128i d = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(word), zero), zero);
      const __m128 s4 = _mm_set1_ps(scale), m4 = _mm_set1_ps(min);
      const __m128i lo = _mm_and_si128(d, _mm_set1_epi32(0xf)), hi = _mm_srli_epi32(d, 4);
      _mm_storeu_ps(o + 4 * v, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(lo), s4), m4));
      _mm_storeu_ps(o + 16 + 4 * v, _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(hi), s4), m4));
#else
      for (int j = 0; j < 4; ++j) {
        o[4 * v + j] = scale * static_cast<float>(p[j] & 0xf) + min;
        o[16 + 4 * v + j] = scale * static_cast<float>(p[j] >> 4) + min;
      }
#endif
    }
  }
}

// Q4_0: d * (nibble - 8), as kquant::value computes it (a negative d times 0 stays -0).
static void dequantize_interleaved_q4_0_row(const QuantizedWeight& w, int64_t m, float* out) {
  const NibbleBlock f = nibble_block(QuantFormat::q4_0);
  const int64_t blocks = w.cols / 32;
  const int r = static_cast<int>(m % kRows);
  const uint8_t* q = reinterpret_cast<const uint8_t*>(w.data.data) + (m / kRows) * kRows * blocks * f.bytes;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* group = q + b * kRows * f.bytes;
    const float d = f16_to_f32(static_cast<uint16_t>(group[2 * r] | (group[2 * r + 1] << 8)));
    float* o = out + 32 * b;
    for (int v = 0; v < 4; ++v) {  // the row's 4 bytes of chunk v: columns 4v + j and 16 + 4v + j
      const uint8_t* p = group + f.group_qs_at() + kInt4.position(r, v);
#if defined(__SSE2__)
      int32_t word;
      std::memcpy(&word, p, 4);
      const __m128i zero = _mm_setzero_si128(), eight = _mm_set1_epi32(8);
      const __m128i bytes = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(word), zero), zero);
      const __m128i lo = _mm_sub_epi32(_mm_and_si128(bytes, _mm_set1_epi32(0xf)), eight);
      const __m128i hi = _mm_sub_epi32(_mm_srli_epi32(bytes, 4), eight);
      const __m128 d4 = _mm_set1_ps(d);
      _mm_storeu_ps(o + 4 * v, _mm_mul_ps(d4, _mm_cvtepi32_ps(lo)));
      _mm_storeu_ps(o + 16 + 4 * v, _mm_mul_ps(d4, _mm_cvtepi32_ps(hi)));
#else
      for (int j = 0; j < 4; ++j) {
        o[4 * v + j] = d * static_cast<float>((p[j] & 0xf) - 8);
        o[16 + 4 * v + j] = d * static_cast<float>((p[j] >> 4) - 8);
      }
#endif
    }
  }
}

void rows8_blocks_portable(QuantFormat f, const uint8_t* q, int64_t n, const Q8Block* x, int64_t x_stride, int64_t T,
                           float* out, int64_t out_stride) {
  if (superblock_format(f))
    rows8_superblocks_portable(f, q, n, x, x_stride, T, out, out_stride);
  else
    rows8_nibbles_portable(f, q, n, x, x_stride, T, out, out_stride);
}

bool dequantize_interleaved_row(const QuantizedWeight& w, int64_t m, float* out) {
  if (w.interleave == 0) return false;
  if (w.format == QuantFormat::int4) {
    dequantize_interleaved_int4_row(w, m, out);
    return true;
  }
  if (w.format == QuantFormat::q4_0) {
    dequantize_interleaved_q4_0_row(w, m, out);
    return true;
  }
  return dequantize_superblock_row(w, m, out);
}

}  // namespace kestrel::cpu
