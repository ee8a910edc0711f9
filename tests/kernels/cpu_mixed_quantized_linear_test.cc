// A fused weight whose row ranges are stored in different formats (QuantFormat::mixed:
// llama.cpp's Q4_K_M QKV with Q4_K Q and K rows and Q6_K V rows) on every CPU kernel path,
// instruction set and thread count: each output column is bit for bit what its part alone
// gives on the same path (the parts' own kernels are tested against the double reference
// in cpu_quantized_linear_test.cc), the f32 paths match the double reference of the whole
// weight, batch invariance holds, and malformed mixed weights are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/quantized_q8_cpu.h"
#include "kestrel/error.h"
#include "mixed_test_util.h"

namespace kestrel {
namespace {

using testing::MixedPart;
using testing::MixedWeight;
using testing::random_floats;

constexpr int64_t kCols = 512;

std::vector<float> run(const TensorView& x, const QuantizedWeight& w, const std::vector<float>* bias, int threads,
                       cpu::QuantKernel kernel) {
  const int64_t T = x.dim(0), M = w.rows;
  std::vector<float> out(static_cast<size_t>(T * M), NAN);
  const TensorView bias_view(const_cast<float*>(bias ? bias->data() : nullptr), DType::f32, {M});
  cpu::quantized_linear(x, w, bias ? &bias_view : nullptr, TensorView(out.data(), DType::f32, {T, M}), threads,
                        kernel);
  return out;
}

// The kernels a weight of these parts can take on this processor (the 8-bit-activation
// ones only where every part is eligible and the instruction set exists).
std::vector<cpu::QuantKernel> kernels_for(const QuantizedWeight& w) {
  std::vector<cpu::QuantKernel> kernels = {cpu::QuantKernel::automatic, cpu::QuantKernel::batch_invariant,
                                           cpu::QuantKernel::dot_simd, cpu::QuantKernel::dot_portable,
                                           cpu::QuantKernel::tiled_gemm};
  if (cpu::q8_eligible(w)) {
    kernels.push_back(cpu::QuantKernel::q8_portable);
    if (cpu::q8_isa_available(cpu::Q8Isa::avx2)) kernels.push_back(cpu::QuantKernel::q8_avx2);
    if (cpu::q8_isa_available(cpu::Q8Isa::avx512_vnni)) kernels.push_back(cpu::QuantKernel::q8_vnni);
  }
  return kernels;
}

class CpuMixedQuantizedLinear : public ::testing::TestWithParam<std::vector<MixedPart>> {};

TEST_P(CpuMixedQuantizedLinear, EachColumnIsItsPartsOwnProductOnEveryPath) {
  const MixedWeight mixed = testing::random_mixed(GetParam(), kCols, 77);
  for (bool precise : {false, true}) {
    QuantizedWeight w = mixed.view;
    w.precise_activations = precise;  // (the LM head's flag; a mixed weight passes it to its parts)
    for (int64_t T : {1, 3, 6, 7, 40}) {
      const std::vector<float> x = random_floats(static_cast<size_t>(T * kCols), 1000 + T, -2.0f, 2.0f);
      const std::vector<float> bias = random_floats(static_cast<size_t>(mixed.rows), 2000 + T);
      const TensorView xv(const_cast<float*>(x.data()), DType::f32, {T, kCols});
      for (cpu::QuantKernel kernel : kernels_for(w))
        for (int threads : {1, 3})
          for (bool with_bias : {false, true}) {
            SCOPED_TRACE(::testing::Message() << "kernel " << static_cast<int>(kernel) << ", T " << T << ", threads "
                                              << threads << (with_bias ? ", bias" : "") << (precise ? ", precise" : ""));
            const std::vector<float> out = run(xv, w, with_bias ? &bias : nullptr, threads, kernel);
            for (size_t i = 0; i < mixed.parts.size(); ++i) {
              QuantizedWeight part = mixed.view.parts[i];
              part.precise_activations = precise;
              const int64_t begin = mixed.row_begin(i), rows = part.rows;
              std::vector<float> part_bias(bias.begin() + begin, bias.begin() + begin + rows);
              const std::vector<float> alone = run(xv, part, with_bias ? &part_bias : nullptr, threads, kernel);
              for (int64_t t = 0; t < T; ++t)
                ASSERT_EQ(0, std::memcmp(&out[t * mixed.rows + begin], &alone[t * rows], rows * sizeof(float)))
                    << "part " << i << " (" << to_string(part.format) << "), token " << t;
            }
          }
    }
  }
}

// The f32-activation paths against the double product of the whole weight, dequantized from
// the documented layouts part by part: the columns land where they belong.
TEST_P(CpuMixedQuantizedLinear, F32PathsMatchTheDoubleReference) {
  const MixedWeight mixed = testing::random_mixed(GetParam(), kCols, 91);
  const int64_t T = 5;
  const std::vector<float> x = random_floats(static_cast<size_t>(T * kCols), 3, -2.0f, 2.0f);
  const std::vector<float> bias = random_floats(static_cast<size_t>(mixed.rows), 4);
  std::vector<double> expected, magnitude;
  testing::reference_linear(x, mixed.reference, &bias, T, mixed.rows, kCols, expected, magnitude);
  const TensorView xv(const_cast<float*>(x.data()), DType::f32, {T, kCols});
  for (cpu::QuantKernel kernel : {cpu::QuantKernel::dot_portable, cpu::QuantKernel::dot_simd,
                                  cpu::QuantKernel::tiled_gemm}) {
    const std::vector<float> out = run(xv, mixed.view, &bias, 2, kernel);
    EXPECT_LE(testing::worst_normalized_error(out, expected, magnitude), 2e-6) << "kernel " << static_cast<int>(kernel);
  }
  // The whole weight dequantized, as the tiles see it: each part's rows exactly as the part
  // alone dequantizes them, and within one f32 rounding of the reference.
  std::vector<float> dense(static_cast<size_t>(mixed.rows * kCols));
  cpu::dequantize_weight(mixed.view, dense.data());
  for (size_t p = 0; p < mixed.parts.size(); ++p) {
    std::vector<float> alone(static_cast<size_t>(mixed.parts[p].rows * kCols));
    cpu::dequantize_weight(mixed.view.parts[p], alone.data());
    ASSERT_EQ(0, std::memcmp(alone.data(), &dense[mixed.row_begin(p) * kCols], alone.size() * sizeof(float)))
        << "part " << p;
  }
  for (size_t i = 0; i < dense.size(); ++i)
    ASSERT_NEAR(dense[i], mixed.reference[i], 1e-6 * (std::abs(mixed.reference[i]) + 1.0)) << i;
  std::vector<float> rows(static_cast<size_t>(7 * kCols));  // rows straddling a part boundary
  const int64_t row0 = std::max<int64_t>(0, mixed.parts[0].rows - 3);
  const int64_t count = std::min<int64_t>(7, mixed.rows - row0);
  cpu::dequantize_weight_rows(mixed.view, row0, count, rows.data());
  for (int64_t i = 0; i < count * kCols; ++i) ASSERT_EQ(rows[i], dense[row0 * kCols + i]) << i;
}

// Batch invariance (ModelOptions::batch_invariant): a token's row does not depend on the
// tokens computed with it, on a mixed weight as on each format.
TEST_P(CpuMixedQuantizedLinear, BatchInvariantRowsDoNotDependOnTheBatch) {
  const MixedWeight mixed = testing::random_mixed(GetParam(), kCols, 5);
  const int64_t T = 9;
  const std::vector<float> x = random_floats(static_cast<size_t>(T * kCols), 6, -2.0f, 2.0f);
  const std::vector<float> all =
      run(TensorView(const_cast<float*>(x.data()), DType::f32, {T, kCols}), mixed.view, nullptr, 3,
          cpu::QuantKernel::batch_invariant);
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<float> one = run(TensorView(const_cast<float*>(x.data()) + t * kCols, DType::f32, {1, kCols}),
                                       mixed.view, nullptr, 1, cpu::QuantKernel::batch_invariant);
    ASSERT_EQ(0, std::memcmp(one.data(), &all[t * mixed.rows], mixed.rows * sizeof(float))) << "token " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(Parts, CpuMixedQuantizedLinear, ::testing::ValuesIn(testing::mixed_cases()),
                         [](const auto& info) { return testing::mixed_name(info.param); });

void expect_internal_error(const QuantizedWeight& w, const char* part) {
  std::vector<float> x(2 * kCols, 1.0f), out(static_cast<size_t>(2 * std::max<int64_t>(w.rows, 1)));
  try {
    cpu::quantized_linear(TensorView(x.data(), DType::f32, {2, kCols}), w, nullptr,
                          TensorView(out.data(), DType::f32, {2, w.rows}), 1);
    ADD_FAILURE() << "no error for " << part;
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::internal) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(CpuMixedQuantizedLinearChecks, MalformedMixedWeightsAreRefused) {
  const MixedWeight mixed = testing::random_mixed({{QuantFormat::q4_k, 256, 8}, {QuantFormat::q6_k, 256, 4}}, kCols, 1);
  QuantizedWeight w = mixed.view;
  w.rows = 13;  // the parts hold 12
  expect_internal_error(w, "hold 12 rows");
  w = mixed.view;
  w.parts.clear();
  expect_internal_error(w, "parts only");
  w = mixed.view;
  w.parts[1].cols = 256;
  expect_internal_error(w, "plain weight of its cols");
  w = mixed.view;
  w.parts[0] = mixed.view;  // nested
  w.rows = mixed.rows + mixed.parts[1].rows;
  expect_internal_error(w, "plain weight of its cols");
  w = mixed.view;
  w.int8_activations = true;
  expect_internal_error(w, "W8A8");
  QuantizedWeight plain = mixed.view.parts[0];
  plain.parts.push_back(mixed.view.parts[1]);
  expect_internal_error(plain, "only mixed has them");
  // A table of mixed formats cannot serve as a (tied) embedding.
  std::vector<int32_t> ids = {0, 1};
  std::vector<float> out(2 * kCols);
  try {
    cpu::embedding(TensorView(ids.data(), DType::i32, {2}), TensorView(), mixed.view, nullptr,
                   TensorView(out.data(), DType::f32, {2, kCols}), 1);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mixed"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kestrel
