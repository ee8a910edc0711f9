// The CPU quantized_linear kernels (every path: SIMD and portable dot products, the
// dequantized-tile sgemm, and the automatic choice) against a double-precision
// dequantize-then-multiply reference; quantize / dequantize round-trip bounds; GGUF blocks
// kept exactly; and the checks on bad calls and options.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/cpu_ops.h"
#include "kestrel/error.h"
#include "loaders/gguf_quant.h"
#include "quant_test_util.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::QuantCase;
using testing::random_floats;

// fp32 accumulation of up to ~600 terms against double: a few ulps of the magnitude.
constexpr double kTol = 2e-6;

template <class F>
void expect_error(F&& f, ErrorCategory category, std::initializer_list<const char*> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), category) << e.what();
    for (const char* part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

class CpuQuantizedLinearTest : public ::testing::TestWithParam<QuantCase> {};

TEST_P(CpuQuantizedLinearTest, EveryKernelMatchesDoubleReference) {
  const QuantCase c = GetParam();
  const uint64_t seed = 1000 + c.M * 31 + c.K * 7 + c.T;
  HostQuantizedWeight q = testing::random_quantized(c, seed);
  const std::vector<double> w = testing::reference_dequantize(q);
  std::vector<float> x = random_floats(static_cast<size_t>(c.T * c.K), seed + 1, -2.0f, 2.0f);
  std::vector<float> bias = random_floats(static_cast<size_t>(c.M), seed + 2);
  std::vector<double> expected, magnitude;
  testing::reference_linear(x, w, c.bias ? &bias : nullptr, c.T, c.M, c.K, expected, magnitude);

  const TensorView bias_view(bias.data(), DType::f32, {c.M});
  for (auto kernel : {cpu::QuantKernel::automatic, cpu::QuantKernel::dot_simd, cpu::QuantKernel::dot_portable,
                      cpu::QuantKernel::tiled_gemm}) {
    std::vector<float> out(static_cast<size_t>(c.T * c.M), NAN);
    cpu::quantized_linear(TensorView(x.data(), DType::f32, {c.T, c.K}), q.view(), c.bias ? &bias_view : nullptr,
                          TensorView(out.data(), DType::f32, {c.T, c.M}), 2, kernel);
    EXPECT_LE(testing::worst_normalized_error(out, expected, magnitude), kTol)
        << "kernel " << static_cast<int>(kernel);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuQuantizedLinearTest, ::testing::ValuesIn(testing::quant_cases()),
                         [](const auto& info) { return testing::quant_case_name(info.param); });

// More output rows than one dequantized tile of the sgemm path (1024 rows), and a
// partial last tile.
TEST(CpuQuantizedLinearTiles, SeveralTilesMatchDoubleReference) {
  for (QuantFormat format : {QuantFormat::int8, QuantFormat::int4}) {
    const QuantCase c{format, format == QuantFormat::int8 ? 0 : 32, 2100, 96, 9, true};
    HostQuantizedWeight q = testing::random_quantized(c, 77);
    const std::vector<double> w = testing::reference_dequantize(q);
    std::vector<float> x = random_floats(static_cast<size_t>(c.T * c.K), 78, -2.0f, 2.0f);
    std::vector<float> bias = random_floats(static_cast<size_t>(c.M), 79);
    std::vector<double> expected, magnitude;
    testing::reference_linear(x, w, &bias, c.T, c.M, c.K, expected, magnitude);
    const TensorView bias_view(bias.data(), DType::f32, {c.M});
    std::vector<float> out(static_cast<size_t>(c.T * c.M), NAN);
    cpu::quantized_linear(TensorView(x.data(), DType::f32, {c.T, c.K}), q.view(), &bias_view,
                          TensorView(out.data(), DType::f32, {c.T, c.M}), 2, cpu::QuantKernel::automatic);
    EXPECT_LE(testing::worst_normalized_error(out, expected, magnitude), kTol) << testing::quant_case_name(c);
  }
}

TEST(QuantizeTest, Int8RoundTripWithinHalfAStep) {
  for (int group : {32, 100, 576}) {
    const int64_t M = 9, K = 300;
    std::vector<float> w = random_floats(M * K, 7 + group, -3.0f, 3.0f);
    HostQuantizedWeight q = quantize_int8(w.data(), M, K, group);
    std::vector<float> back(M * K);
    cpu::dequantize_weight(q.view(), back.data());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = k / group;
        float amax = 0.0f;
        for (int64_t j = g * group; j < std::min<int64_t>(K, (g + 1) * group); ++j)
          amax = std::max(amax, std::abs(w[m * K + j]));
        const double step = amax / 127.0;
        ASSERT_EQ(q.scales[m * q.groups() + g], static_cast<float>(amax / 127.0f));
        ASSERT_LE(std::abs(back[m * K + k] - w[m * K + k]), 0.5 * step * (1 + 1e-5) + 1e-12)
            << "group " << group << " row " << m << " col " << k;
      }
  }
}

TEST(QuantizeTest, Int4RoundTripWithinHalfAStep) {
  for (int group : {32, 64, 128}) {
    const int64_t M = 5, K = 200;  // a short last group for every size
    std::vector<float> w = random_floats(M * K, 11 + group, -1.0f, 2.0f);
    HostQuantizedWeight q = quantize_int4(w.data(), M, K, group);
    std::vector<float> back(M * K);
    cpu::dequantize_weight(q.view(), back.data());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = k / group;
        float lo = INFINITY, hi = -INFINITY;
        for (int64_t j = g * group; j < std::min<int64_t>(K, (g + 1) * group); ++j) {
          lo = std::min(lo, w[m * K + j]);
          hi = std::max(hi, w[m * K + j]);
        }
        // Half a step, plus what rounding the scale and min to f16 can add (2^-11 relative).
        const double bound = 0.5 * (hi - lo) / 15.0 + 2e-3 * std::max(std::abs(lo), std::abs(hi));
        ASSERT_LE(std::abs(back[m * K + k] - w[m * K + k]), bound) << "group " << group << " col " << k;
      }
  }
}

TEST(QuantizeTest, ConstantAndZeroRowsAreExact) {
  std::vector<float> w(2 * 64, 0.0f);
  for (int k = 0; k < 64; ++k) w[64 + k] = 0.25f;
  for (bool int4 : {false, true}) {
    HostQuantizedWeight q = int4 ? quantize_int4(w.data(), 2, 64, 32) : quantize_int8(w.data(), 2, 64, 64);
    std::vector<float> back(w.size());
    cpu::dequantize_weight(q.view(), back.data());
    for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(back[i], w[i]) << (int4 ? "int4" : "int8") << " at " << i;
  }
}

TEST(QuantizeTest, RejectsNonFiniteWeights) {
  std::vector<float> w(64, 1.0f);
  w[5] = NAN;
  EXPECT_THROW(quantize_int8(w.data(), 1, 64, 64, "layer 0 qkv_weight"), Error);
  EXPECT_THROW(quantize_int4(w.data(), 1, 64, 32, "layer 0 qkv_weight"), Error);
}

// Random ggml blocks of each kept type: the int8 / int4 weight they become dequantizes to
// exactly what the GGUF loader's dequantize_row gives.
TEST(QuantizeTest, GgmlBlocksAreKeptExactly) {
  for (GgmlType type : {GgmlType::q8_0, GgmlType::q4_0, GgmlType::q4_1}) {
    const int64_t M = 6, K = 96;
    std::vector<uint8_t> blocks(M * (K / 32) * ggml_block_bytes(type));
    uint64_t state = 12345 + static_cast<int>(type);
    for (auto& b : blocks) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      b = static_cast<uint8_t>(state >> 56);
    }
    // Sane f16 scales (and mins) so that no block holds inf or NaN.
    const size_t bb = ggml_block_bytes(type);
    for (size_t i = 0; i < blocks.size(); i += bb) {
      const float d = 0.001f * static_cast<float>(1 + (i / bb) % 50);
      const uint16_t d16 = f32_to_f16(d), m16 = f32_to_f16(-0.3f + d);
      std::memcpy(&blocks[i], &d16, 2);
      if (type == GgmlType::q4_1) std::memcpy(&blocks[i + 2], &m16, 2);
    }
    std::vector<float> expected(M * K);
    dequantize_row(type, blocks.data(), expected.data(), M * K);
    HostQuantizedWeight q;
    append_ggml_rows(q, type, blocks.data(), 2, K);  // two parts, as a fused weight has
    append_ggml_rows(q, type, blocks.data() + 2 * (K / 32) * bb, M - 2, K);
    ASSERT_EQ(q.rows, M);
    std::vector<float> back(M * K);
    cpu::dequantize_weight(q.view(), back.data());
    for (size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i], expected[i]) << to_string(type) << " at " << i;
  }
}

TEST(QuantizeTest, RejectsBadCallsAndOptions) {
  HostQuantizedWeight q = testing::random_quantized({QuantFormat::int4, 32, 4, 64, 1, false}, 3);
  std::vector<float> x(2 * 64, 1.0f), out(2 * 4);
  QuantizedWeight w = q.view();
  // x with the wrong K
  EXPECT_THROW(cpu::quantized_linear(TensorView(x.data(), DType::f32, {2, 63}), w, nullptr,
                                     TensorView(out.data(), DType::f32, {2, 4}), 1),
               Error);
  w.group_size = 48;  // int4 groups must be a multiple of 32
  EXPECT_THROW(cpu::quantized_linear(TensorView(x.data(), DType::f32, {2, 64}), w, nullptr,
                                     TensorView(out.data(), DType::f32, {2, 4}), 1),
               Error);

  ModelOptions options;
  options.quantization = Quantization::int4;
  options.quant_group_size = 48;
  expect_error([&] { quantization_spec(options); }, ErrorCategory::invalid_argument,
                        {"ModelOptions.quant_group_size", "48"});
  options.quantization = Quantization::none;
  options.quant_group_size = 64;
  expect_error([&] { quantization_spec(options); }, ErrorCategory::invalid_argument,
                        {"ModelOptions.quant_group_size", "none"});
  expect_error([&] { parse_quantization("int3", "--quant"); }, ErrorCategory::invalid_argument,
                        {"--quant", "int3"});
  EXPECT_EQ(parse_quantization("int8"), Quantization::int8);
}

}  // namespace
}  // namespace kestrel
