// Helpers for the mixed-format weight tests (CPU and CUDA): a fused weight whose row ranges
// are stored in different formats (QuantFormat::mixed), built from random parts.
#pragma once

#include <string>
#include <vector>

#include "quant_test_util.h"

namespace kestrel::testing {

struct MixedPart {
  QuantFormat format;
  int group_size;  // as QuantCase (0: int8 per channel); ignored by the ggml block formats
  int64_t rows;
};

// A fused weight of `parts`, K columns each: the host parts, the mixed view of them, and
// the whole weight dequantized in double from the documented layouts (the reference).
struct MixedWeight {
  std::vector<HostQuantizedWeight> parts;
  QuantizedWeight view;
  std::vector<double> reference;
  int64_t rows = 0, cols = 0;

  // Row offset of part i in the fused weight.
  int64_t row_begin(size_t i) const {
    int64_t begin = 0;
    for (size_t j = 0; j < i; ++j) begin += parts[j].rows;
    return begin;
  }
};

inline MixedWeight random_mixed(const std::vector<MixedPart>& parts, int64_t K, uint64_t seed) {
  MixedWeight m;
  m.cols = K;
  m.view.format = QuantFormat::mixed;
  m.view.cols = K;
  m.parts.reserve(parts.size());  // the views below point into these
  for (size_t i = 0; i < parts.size(); ++i) {
    const MixedPart& p = parts[i];
    m.parts.push_back(random_quantized({p.format, p.group_size, p.rows, K, 1, false}, seed + 17 * i));
    const std::vector<double> w = reference_dequantize(m.parts.back());
    m.reference.insert(m.reference.end(), w.begin(), w.end());
    m.rows += p.rows;
  }
  for (HostQuantizedWeight& part : m.parts) m.view.parts.push_back(part.view());
  m.view.rows = m.rows;
  return m;
}

inline std::string mixed_name(const std::vector<MixedPart>& parts) {
  std::string name;
  for (const MixedPart& p : parts) {
    if (!name.empty()) name += '_';
    name += to_string(p.format);
    name += 'x';
    name += std::to_string(p.rows);
  }
  return name;
}

// The fused weights the tests run: llama.cpp's Q4_K_M / Q5_K_M QKV (Q4_K or Q5_K Q and K
// rows, Q6_K V rows; GQA: V narrower than Q), its fallbacks for widths that are not
// multiples of 256 (Q5_0 beside Q8_0, i.e. int8 in groups of 32; Q5_0, Q4_0 and Q8_0 as
// the mixed-QKV GGUF test stores them), three formats at once,
// int4 beside a block format, odd row counts. K must be a multiple of 256.
inline std::vector<std::vector<MixedPart>> mixed_cases() {
  return {
      {{QuantFormat::q4_k, 256, 96}, {QuantFormat::q6_k, 256, 32}},
      {{QuantFormat::q5_k, 256, 64}, {QuantFormat::q6_k, 256, 32}, {QuantFormat::q5_k, 256, 16}},
      {{QuantFormat::q5_0, 32, 40}, {QuantFormat::int8, 32, 24}},
      {{QuantFormat::q5_0, 32, 16}, {QuantFormat::q4_0, 32, 24}, {QuantFormat::int8, 32, 8}},
      {{QuantFormat::int4, 32, 17}, {QuantFormat::q3_k, 256, 5}, {QuantFormat::int8, 0, 9}},
      {{QuantFormat::iq4_xs, 256, 33}, {QuantFormat::q2_k, 256, 7}, {QuantFormat::q5_1, 32, 8}, {QuantFormat::iq4_nl, 32, 3}},
  };
}

}  // namespace kestrel::testing
