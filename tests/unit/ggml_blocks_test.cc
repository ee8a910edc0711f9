// Every ggml block format Kestrel reads, dequantized bit-exactly as gguf-py (llama.cpp's
// Python reference) does, on random blocks (tests/fixtures/make_ggml_block_vectors.py), by
// the loader and by the kernels' own reading of the formats they keep as blocks
// (kernels/kquant_blocks.h); and the sizes each format declares.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kquant_blocks.h"
#include "loaders/gguf_quant.h"
#include "models/quantize.h"
#include "test_support.h"

namespace kestrel {
namespace {

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> bytes(hex.size() / 2);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return bytes;
}

TEST(GgmlBlocks, EveryFormatMatchesGgufPyBitForBit) {
  std::ifstream in(testing::fixture_dir() / "gguf" / "ggml_blocks.json");
  ASSERT_TRUE(in) << "tests/fixtures/gguf/ggml_blocks.json is missing";
  const nlohmann::json doc = nlohmann::json::parse(in);
  int formats = 0, kernel_formats = 0;
  for (const auto& item : doc["formats"].items()) {
    const std::string& name = item.key();  // not a structured binding: clang 14 cannot capture those
    const nlohmann::json& f = item.value();
    const auto type = ggml_type_from_raw(f["type"].get<uint32_t>());
    ASSERT_TRUE(type.has_value()) << name << " is not read";
    EXPECT_EQ(to_string(*type), name);
    const std::vector<uint8_t> blocks = from_hex(f["blocks"].get<std::string>());
    const std::vector<uint8_t> want_bytes = from_hex(f["values"].get<std::string>());
    const int64_t n = f["elements"].get<int64_t>();
    ASSERT_EQ(static_cast<int64_t>(want_bytes.size()), 4 * n) << name;
    EXPECT_EQ(ggml_row_bytes(*type, n), blocks.size()) << name;
    // At an odd address: blocks in a mapped file need no alignment.
    std::vector<uint8_t> shifted(blocks.size() + 1);
    std::memcpy(shifted.data() + 1, blocks.data(), blocks.size());
    std::vector<float> got(static_cast<size_t>(n));
    dequantize_row(*type, shifted.data() + 1, got.data(), n);
    auto expect_bits = [&](const std::vector<float>& values, const char* who) {
      for (int64_t i = 0; i < n; ++i) {
        float want;
        std::memcpy(&want, want_bytes.data() + 4 * i, 4);
        uint32_t a, b;
        std::memcpy(&a, &values[i], 4);
        std::memcpy(&b, &want, 4);
        ASSERT_EQ(a, b) << name << " (" << who << ") element " << i << ": " << values[i] << " vs gguf-py " << want;
      }
    };
    expect_bits(got, "loader");
    if (const auto layout = kept_layout(*type); layout && kquant::is_block_format(layout->format)) {
      const int cols = kquant::block_columns(layout->format), bytes = kquant::block_bytes(layout->format);
      std::vector<float> kernel(static_cast<size_t>(n));
      for (int64_t b = 0; b < n / cols; ++b)
        kquant::dequantize_block(layout->format, blocks.data() + b * bytes, kernel.data() + b * cols);
      expect_bits(kernel, "kernels");
      ++kernel_formats;
    }
    ++formats;
  }
  EXPECT_EQ(formats, 13);
  EXPECT_EQ(kernel_formats, 11);  // Q4_0, Q5_0, Q5_1, IQ4_NL, IQ4_XS, MXFP4 and the five K-quants
}

TEST(GgmlBlocks, SizesAndRowsOfTheBlockFormats) {
  EXPECT_EQ(ggml_block_size(GgmlType::q4_k), 256);
  EXPECT_EQ(ggml_block_size(GgmlType::iq4_nl), 32);
  EXPECT_EQ(ggml_row_bytes(GgmlType::q6_k, 512), 420u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::q5_0, 64), 44u);
  EXPECT_FALSE(ggml_row_bytes(GgmlType::q4_k, 576).has_value());  // not whole super-blocks
  EXPECT_TRUE(ggml_is_quantized(GgmlType::iq4_xs));
  EXPECT_FALSE(ggml_is_quantized(GgmlType::bf16));
  EXPECT_EQ(ggml_type_name(12), "Q4_K (12)");
  EXPECT_FALSE(ggml_type_from_raw(16).has_value());  // IQ2_XXS: not read
}

}  // namespace
}  // namespace kestrel
