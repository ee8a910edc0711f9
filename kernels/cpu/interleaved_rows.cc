#include "cpu/interleaved_rows.h"

#include <cmath>
#include <cstring>
#include <string>

#include "core/half.h"
#include "kestrel/error.h"

namespace kestrel::cpu {

namespace {

constexpr int kRows = kInterleaveRows;

// One format's interleaving: a row's 32-column block is block_bytes in the plain layout,
// cut into runs of lane_bytes; run v of row r goes to lane r of chunk v (8 lanes) in the 8
// rows' interleaved block. int4: runs of 4 bytes (columns 4v .. 4v + 3 and 16 + 4v ..);
// int8: runs of 2 (columns 2v, 2v + 1).
struct Layout {
  int block_bytes;  // per row
  int lane_bytes;
  int runs() const { return block_bytes / lane_bytes; }
  // Offset of row r's run v in the interleaved block.
  int position(int r, int v) const { return (v * kRows + r) * lane_bytes; }
};
constexpr Layout kInt4{16, 4};
constexpr Layout kInt8{32, 2};

const Layout& layout_of(const QuantizedWeight& w) { return w.format == QuantFormat::int4 ? kInt4 : kInt8; }

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
  const bool int4 = w.format == QuantFormat::int4, int8 = w.format == QuantFormat::int8;
  return (int4 || int8) && w.interleave == 0 && !(int4 && w.precise_activations) && !w.int8_activations &&
         w.rows > 0 && w.rows % kRows == 0 && w.cols % 32 == 0 && w.group_size > 0 && w.group_size % 32 == 0;
}

void interleave_rows(QuantizedWeight& w) {
  if (!interleavable(w))
    throw Error(ErrorCategory::internal, "interleave_rows: not an int4 / int8 weight this layout takes");
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
  const Layout& layout = layout_of(w);
  const int64_t G = w.groups(), bytes = row_bytes(w), blocks = bytes / layout.block_bytes;
  const bool int4 = w.format == QuantFormat::int4;
  const size_t scale_bytes = int4 ? 2 : 4;
  const auto* q = reinterpret_cast<const uint8_t*>(w.data.data);
  const auto* scales = static_cast<const uint8_t*>(w.scales.data);
  const auto* mins = static_cast<const uint16_t*>(w.mins.data);
  if (w.interleave == 0)
    return {q + m * bytes, scales + m * G * scale_bytes, int4 ? mins + m * G : nullptr};
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

void rows8_int8_portable(const int8_t* q, const float* scales, int64_t nb, int bpg, const Q16Block* x,
                         int64_t x_stride, int64_t T, float* out, int64_t out_stride) {
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

}  // namespace kestrel::cpu
