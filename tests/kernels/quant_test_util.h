// Helpers for the quantized_linear tests (CPU and CUDA): random quantized weights, and the
// reference: the weight dequantized in double precision straight from the layout that
// kernels/backend.h documents (not through any Kestrel function), then multiplied in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backend.h"
#include "core/half.h"
#include "kquant_blocks.h"
#include "loaders/gguf_quant.h"
#include "models/quantize.h"
#include "test_support.h"

namespace kestrel::testing {

struct QuantCase {
  QuantFormat format;
  int group_size;  // 0: one group per row (int8 per channel)
  int64_t M, K, T;
  bool bias;
};

inline std::string quant_case_name(const QuantCase& c) {
  return std::string(to_string(c.format)) + "_g" +
         std::to_string(c.group_size) + "_M" + std::to_string(c.M) + "_K" + std::to_string(c.K) +
         "_T" + std::to_string(c.T) + (c.bias ? "_bias" : "");
}

inline GgmlType ggml_type_of(QuantFormat f) {
  switch (f) {
    case QuantFormat::q4_k: return GgmlType::q4_k;
    case QuantFormat::q5_k: return GgmlType::q5_k;
    case QuantFormat::q6_k: return GgmlType::q6_k;
    case QuantFormat::q4_0: return GgmlType::q4_0;
    case QuantFormat::q5_0: return GgmlType::q5_0;
    case QuantFormat::q5_1: return GgmlType::q5_1;
    case QuantFormat::iq4_nl: return GgmlType::iq4_nl;
    case QuantFormat::iq4_xs: return GgmlType::iq4_xs;
    case QuantFormat::q2_k: return GgmlType::q2_k;
    case QuantFormat::mxfp4: return GgmlType::mxfp4;
    default: return GgmlType::q3_k;
  }
}

// The ggml block formats beyond the K-quants that came first.
inline std::vector<QuantFormat> other_block_formats() {
  return {QuantFormat::q4_0, QuantFormat::q5_0, QuantFormat::q5_1, QuantFormat::iq4_nl,
          QuantFormat::iq4_xs, QuantFormat::q2_k, QuantFormat::q3_k, QuantFormat::mxfp4};
}
inline std::vector<QuantFormat> block_formats() {
  std::vector<QuantFormat> all = {QuantFormat::q4_k, QuantFormat::q5_k, QuantFormat::q6_k};
  for (QuantFormat f : other_block_formats()) all.push_back(f);
  return all;
}

// Random ggml blocks: random bytes (every nibble, high bit and packed scale pattern
// occurs), with the f16 block scales d (and dmin / m) drawn from a realistic range instead
// (random bits would make infinities and NaNs); MXFP4's E8M0 scale byte from 2^-14 .. 2^-7.
inline HostQuantizedWeight random_kquant(const QuantCase& c, uint64_t seed) {
  HostQuantizedWeight q;
  q.format = c.format;
  q.rows = c.M;
  q.cols = c.K;
  q.group_size = kquant::block_columns(c.format);
  const int bytes = kquant::block_bytes(c.format);
  const int64_t blocks = c.M * (c.K / q.group_size);
  std::vector<float> r = random_floats(static_cast<size_t>(blocks * bytes), seed, 0.0f, 256.0f);
  std::vector<float> scales = random_floats(static_cast<size_t>(blocks * 2), seed + 1, 1e-4f, 2e-3f);
  q.data.resize(static_cast<size_t>(blocks * bytes));
  auto* data = reinterpret_cast<uint8_t*>(q.data.data());
  for (size_t i = 0; i < q.data.size(); ++i) data[i] = static_cast<uint8_t>(std::min(255.0f, r[i]));
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* block = data + b * bytes;
    const uint16_t d = f32_to_f16(scales[2 * b]), dmin = f32_to_f16(scales[2 * b + 1]);
    if (c.format == QuantFormat::mxfp4) {
      block[0] = static_cast<uint8_t>(113 + static_cast<int>(scales[2 * b] * 4e3f));  // 113 .. 120
      continue;
    }
    int first = 0, second = 0;
    kquant::scale_offsets(c.format, first, second);
    std::memcpy(block + first, &d, 2);
    if (second >= 0) std::memcpy(block + second, &dmin, 2);
  }
  return q;
}

// Random weights of a realistic spread (a few outlier columns), quantized as `c` asks.
inline HostQuantizedWeight random_quantized(const QuantCase& c, uint64_t seed) {
  if (kquant::is_block_format(c.format)) return random_kquant(c, seed);
  std::vector<float> w = random_floats(static_cast<size_t>(c.M * c.K), seed, -0.5f, 0.5f);
  for (int64_t m = 0; m < c.M; ++m) w[m * c.K + (m * 7) % c.K] *= 6.0f;
  const int group = c.group_size > 0 ? c.group_size : static_cast<int>(c.K);
  return c.format == QuantFormat::int8 ? quantize_int8(w.data(), c.M, c.K, group)
                                       : quantize_int4(w.data(), c.M, c.K, group);
}

// w[m, k] in double, from the documented layout; K-quants through the GGUF loader's
// dequantization (src/loaders, checked bit for bit against gguf-py's), which shares no code
// with the kernels' reading of the blocks (kernels/kquant_blocks.h).
inline std::vector<double> reference_dequantize(const HostQuantizedWeight& q) {
  const int64_t M = q.rows, K = q.cols, G = q.groups(), gs = q.group_size;
  std::vector<double> w(static_cast<size_t>(M * K));
  if (kquant::is_block_format(q.format)) {
    std::vector<float> row(static_cast<size_t>(K));
    const int64_t row_bytes = G * kquant::block_bytes(q.format);
    for (int64_t m = 0; m < M; ++m) {
      dequantize_row(ggml_type_of(q.format), q.data.data() + m * row_bytes, row.data(), K);
      std::copy(row.begin(), row.end(), w.begin() + m * K);
    }
    return w;
  }
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = k / gs, c = k % gs;
      if (q.format == QuantFormat::int8) {
        w[m * K + k] = double(q.scales[m * G + g]) * q.data[m * K + k];
      } else {
        const auto* bytes = reinterpret_cast<const uint8_t*>(q.data.data()) + m * G * (gs / 2) + g * (gs / 2);
        const uint8_t b = bytes[(c / 32) * 16 + c % 16];
        const int v = (c % 32) < 16 ? (b & 0xf) : (b >> 4);
        w[m * K + k] = double(f16_to_f32(q.scales16[m * G + g])) * v + double(f16_to_f32(q.mins16[m * G + g]));
      }
    }
  return w;
}

// out[t, m] = sum_k x[t, k] w[m, k] + bias[m] in double, and the scale of each output's
// terms (sum |x w| + |bias|) for a normalized error.
inline void reference_linear(const std::vector<float>& x, const std::vector<double>& w,
                             const std::vector<float>* bias, int64_t T, int64_t M, int64_t K,
                             std::vector<double>& out, std::vector<double>& magnitude) {
  out.assign(static_cast<size_t>(T * M), 0.0);
  magnitude.assign(static_cast<size_t>(T * M), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t m = 0; m < M; ++m) {
      double s = bias ? (*bias)[m] : 0.0, a = bias ? std::abs((*bias)[m]) : 0.0;
      for (int64_t k = 0; k < K; ++k) {
        s += double(x[t * K + k]) * w[m * K + k];
        a += std::abs(double(x[t * K + k]) * w[m * K + k]);
      }
      out[t * M + m] = s;
      magnitude[t * M + m] = a;
    }
}

// Largest |actual - expected| / (magnitude + 1e-6) over all outputs (NaN counts as worst).
inline double worst_normalized_error(const std::vector<float>& actual, const std::vector<double>& expected,
                                     const std::vector<double>& magnitude) {
  double worst = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double e = std::abs(actual[i] - expected[i]) / (magnitude[i] + 1e-6);
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

// The shapes every backend runs: K not a multiple of the group, tiny M, batch 1 and 64.
inline std::vector<QuantCase> quant_cases() {
  std::vector<QuantCase> cases;
  const std::vector<std::pair<QuantFormat, int>> formats = {
      {QuantFormat::int8, 0}, {QuantFormat::int8, 32}, {QuantFormat::int4, 32},
      {QuantFormat::int4, 64}, {QuantFormat::int4, 128}};
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 32}, {3, 100}, {17, 200}, {130, 576}};
  for (auto [format, group] : formats)
    for (auto [M, K] : shapes)
      for (int64_t T : {1, 3, 64}) cases.push_back({format, group, M, K, T, (M + T) % 2 == 0});
  // ggml block formats: K a multiple of their blocks (of 256 columns; Q4_0, Q5_0, Q5_1, IQ4_NL
  // of 32, with K = 96 and 576 not multiples of 256).
  for (QuantFormat format : block_formats()) {
    const int columns = kquant::block_columns(format);
    const std::vector<std::pair<int64_t, int64_t>> block_shapes =
        columns == 256 ? std::vector<std::pair<int64_t, int64_t>>{{1, 256}, {5, 512}, {33, 768}}
                       : std::vector<std::pair<int64_t, int64_t>>{{1, 32}, {5, 96}, {33, 576}};
    for (auto [M, K] : block_shapes)
      for (int64_t T : {1, 3, 64}) cases.push_back({format, columns, M, K, T, (M + T) % 2 == 1});
  }
  return cases;
}

}  // namespace kestrel::testing
