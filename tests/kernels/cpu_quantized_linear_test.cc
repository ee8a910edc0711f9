// The CPU quantized_linear kernels (every path: SIMD and portable dot products, the
// dequantized-tile sgemm, and the automatic choice) against a double-precision
// dequantize-then-multiply reference; quantize / dequantize round-trip bounds; GGUF blocks
// kept exactly; and the checks on bad calls and options.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <tuple>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/quantized_q8_cpu.h"
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

// x with every block of 32 replaced by its 8-bit form d * q (cpu::quantize_row_q8, whose
// own contract QuantizeRowQ8 checks): what the 8-bit-activation kernels multiply.
std::vector<float> q8_dequantized(const std::vector<float>& x, int64_t T, int64_t K) {
  std::vector<float> out(x.size());
  std::vector<cpu::Q8Block> blocks(static_cast<size_t>(K / 32));
  for (int64_t t = 0; t < T; ++t) {
    cpu::quantize_row_q8(x.data() + t * K, K, blocks.data());
    for (int64_t k = 0; k < K; ++k) out[t * K + k] = blocks[k / 32].d * blocks[k / 32].q[k % 32];
  }
  return out;
}

// How far quantizing the activations (per block of 32, to `steps` levels each side of 0)
// can move output (t, m): each x by half a step, max |x| of its block / (2 steps), times |w|.
double activation_error_bound(const std::vector<float>& x, const std::vector<double>& w, int64_t t, int64_t m,
                              int64_t K, double steps) {
  double bound = 0.0;
  for (int64_t k0 = 0; k0 < K; k0 += 32) {
    float amax = 0.0f;
    for (int64_t k = k0; k < k0 + 32; ++k) amax = std::max(amax, std::abs(x[t * K + k]));
    for (int64_t k = k0; k < k0 + 32; ++k) bound += amax / (2 * steps) * std::abs(w[m * K + k]);
  }
  return bound;
}

bool is_q8_kernel(cpu::QuantKernel k) {
  return k == cpu::QuantKernel::q8_portable || k == cpu::QuantKernel::q8_avx2 || k == cpu::QuantKernel::q8_vnni;
}

class CpuQuantizedLinearTest : public ::testing::TestWithParam<QuantCase> {};

// Every kernel against the double reference of what it computes: the f32 activations, or
// for the 8-bit-activation kernels (and the automatic choice at decode sizes, which takes
// them where the layout allows) the activations in their 8-bit form.
TEST_P(CpuQuantizedLinearTest, EveryKernelMatchesDoubleReference) {
  const QuantCase c = GetParam();
  const uint64_t seed = 1000 + c.M * 31 + c.K * 7 + c.T;
  HostQuantizedWeight q = testing::random_quantized(c, seed);
  const std::vector<double> w = testing::reference_dequantize(q);
  std::vector<float> x = random_floats(static_cast<size_t>(c.T * c.K), seed + 1, -2.0f, 2.0f);
  std::vector<float> bias = random_floats(static_cast<size_t>(c.M), seed + 2);
  std::vector<double> expected, magnitude;
  testing::reference_linear(x, w, c.bias ? &bias : nullptr, c.T, c.M, c.K, expected, magnitude);
  const bool q8 = cpu::q8_eligible(q.view());
  std::vector<double> expected_q8, magnitude_q8;
  if (q8)
    testing::reference_linear(q8_dequantized(x, c.T, c.K), w, c.bias ? &bias : nullptr, c.T, c.M, c.K,
                              expected_q8, magnitude_q8);

  const TensorView bias_view(bias.data(), DType::f32, {c.M});
  for (auto kernel : {cpu::QuantKernel::automatic, cpu::QuantKernel::dot_simd, cpu::QuantKernel::dot_portable,
                      cpu::QuantKernel::tiled_gemm, cpu::QuantKernel::q8_portable, cpu::QuantKernel::q8_avx2,
                      cpu::QuantKernel::q8_vnni}) {
    const bool eight_bit = is_q8_kernel(kernel) || (kernel == cpu::QuantKernel::automatic && q8 && c.T <= 6);
    if (is_q8_kernel(kernel) &&
        (!q8 || !cpu::q8_isa_available(kernel == cpu::QuantKernel::q8_portable ? cpu::Q8Isa::portable
                                       : kernel == cpu::QuantKernel::q8_avx2   ? cpu::Q8Isa::avx2
                                                                               : cpu::Q8Isa::avx512_vnni)))
      continue;
    std::vector<float> out(static_cast<size_t>(c.T * c.M), NAN);
    cpu::quantized_linear(TensorView(x.data(), DType::f32, {c.T, c.K}), q.view(), c.bias ? &bias_view : nullptr,
                          TensorView(out.data(), DType::f32, {c.T, c.M}), 2, kernel);
    EXPECT_LE(testing::worst_normalized_error(out, eight_bit ? expected_q8 : expected,
                                              eight_bit ? magnitude_q8 : magnitude),
              kTol)
        << "kernel " << static_cast<int>(kernel);
    // 8-bit activations stay close to the f32 result: each x moves by at most half a step,
    // max |x| / 254 of its block, so an output moves by at most sum_k |w_k| of that.
    if (eight_bit) {
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t m = 0; m < c.M; ++m) {
          const double bound = activation_error_bound(x, w, t, m, c.K, 127);
          const size_t i = static_cast<size_t>(t * c.M + m);
          ASSERT_LE(std::abs(out[i] - expected[i]), bound * 1.001 + kTol * magnitude[i])
              << "kernel " << static_cast<int>(kernel) << " t " << t << " m " << m;
        }
    }
  }
}

// QuantKernel::batch_invariant (ModelOptions::batch_invariant): each row of a call with
// many tokens is bit-for-bit the row computed alone, with and without precise activations.
TEST_P(CpuQuantizedLinearTest, BatchInvariantRowsEqualEachRowAlone) {
  const QuantCase c = GetParam();
  HostQuantizedWeight q = testing::random_quantized(c, 77 + c.T);
  std::vector<float> x = random_floats(static_cast<size_t>(c.T * c.K), 78, -2.0f, 2.0f);
  for (bool precise : {false, true}) {
    QuantizedWeight w = q.view();
    w.precise_activations = precise;
    std::vector<float> all(static_cast<size_t>(c.T * c.M)), one(static_cast<size_t>(c.M));
    cpu::quantized_linear(TensorView(x.data(), DType::f32, {c.T, c.K}), w, nullptr,
                          TensorView(all.data(), DType::f32, {c.T, c.M}), 2, cpu::QuantKernel::batch_invariant);
    for (int64_t t = 0; t < c.T; ++t) {
      cpu::quantized_linear(TensorView(x.data() + t * c.K, DType::f32, {1, c.K}), w, nullptr,
                            TensorView(one.data(), DType::f32, {1, c.M}), 2, cpu::QuantKernel::batch_invariant);
      for (int64_t m = 0; m < c.M; ++m)
        ASSERT_EQ(all[static_cast<size_t>(t * c.M + m)], one[static_cast<size_t>(m)])
            << "precise " << precise << " t " << t << " m " << m;
    }
  }
}

// An int8 weight with precise activations (the LM head) takes 16-bit activation blocks on
// every instruction set: within max |x| / 65534 of each x, so within that bound of the f32
// result, and the instruction sets agree with the portable loop.
TEST(QuantizedQ16, PreciseActivationsStayWithinTheirBound) {
  for (int group : {32, 0}) {
    const QuantCase c{QuantFormat::int8, group, 300, 576, 2, true};
    HostQuantizedWeight q = testing::random_quantized(c, 93);
    QuantizedWeight view = q.view();
    view.precise_activations = true;
    const std::vector<double> w = testing::reference_dequantize(q);
    std::vector<float> x = random_floats(static_cast<size_t>(c.T * c.K), 94, -2.0f, 2.0f);
    x[7] = 30.0f;  // an outlier in the first block
    std::vector<double> expected, magnitude;
    testing::reference_linear(x, w, nullptr, c.T, c.M, c.K, expected, magnitude);
    std::vector<float> portable(static_cast<size_t>(c.T * c.M));
    cpu::q8_dot_path(TensorView(x.data(), DType::f32, {c.T, c.K}), view, nullptr, portable.data(), 1,
                     cpu::Q8Isa::portable);
    for (cpu::Q8Isa isa : {cpu::Q8Isa::portable, cpu::Q8Isa::avx2, cpu::Q8Isa::avx512_vnni}) {
      if (!cpu::q8_isa_available(isa)) continue;
      std::vector<float> out(portable.size(), NAN);
      cpu::q8_dot_path(TensorView(x.data(), DType::f32, {c.T, c.K}), view, nullptr, out.data(), 2, isa);
      for (int64_t t = 0; t < c.T; ++t)
        for (int64_t m = 0; m < c.M; ++m) {
          const double bound = activation_error_bound(x, w, t, m, c.K, 32767);
          const size_t i = static_cast<size_t>(t * c.M + m);
          ASSERT_LE(std::abs(out[i] - expected[i]), bound * 1.001 + kTol * magnitude[i]) << cpu::to_string(isa);
          ASSERT_NEAR(out[i], portable[i], 1e-5f * (1.0f + std::abs(portable[i]))) << cpu::to_string(isa);
        }
    }
    // The automatic kernel takes the same path.
    std::vector<float> out(portable.size(), NAN);
    cpu::quantized_linear(TensorView(x.data(), DType::f32, {c.T, c.K}), view, nullptr,
                          TensorView(out.data(), DType::f32, {c.T, c.M}), 2);
    EXPECT_LE(testing::worst_normalized_error(out, expected, magnitude), 1e-4);
  }
}

// An embedding lookup in a quantized table gives exactly the dequantized rows (plus the
// position rows); a bad id is an error naming it.
TEST(QuantizedEmbedding, RowsAreTheDequantizedTableRows) {
  const int64_t V = 30, H = 64, T = 6, P = 10;
  std::vector<float> table = random_floats(V * H, 21, -1.0f, 1.0f), wpe = random_floats(P * H, 22);
  for (bool int4 : {false, true}) {
    HostQuantizedWeight q = int4 ? quantize_int4(table.data(), V, H, 32) : quantize_int8(table.data(), V, H, 32);
    std::vector<float> dense(V * H);
    cpu::dequantize_weight(q.view(), dense.data());
    std::vector<int32_t> ids = {0, 29, 7, 7, 3, 12}, pos = {0, 1, 2, 9, 4, 5};
    std::vector<float> out(T * H, NAN);
    const TensorView wpe_view(wpe.data(), DType::f32, {P, H});
    cpu::embedding(TensorView(ids.data(), DType::i32, {T}), TensorView(pos.data(), DType::i32, {T}), q.view(),
                   &wpe_view, TensorView(out.data(), DType::f32, {T, H}), 2);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < H; ++i)
        ASSERT_EQ(out[t * H + i], dense[ids[t] * H + i] + wpe[pos[t] * H + i]) << int4 << " " << t << " " << i;
    ids[3] = 30;
    expect_error([&] {
      cpu::embedding(TensorView(ids.data(), DType::i32, {T}), TensorView(pos.data(), DType::i32, {T}), q.view(),
                     nullptr, TensorView(out.data(), DType::f32, {T, H}), 2);
    }, ErrorCategory::internal, {"ids[3] = 30"});
  }
}

// K-quant tables (a tied LM head kept as a GGUF file stores it): the lookup gives exactly
// the GGUF loader's dequantized rows; a K-quant LM head with precise activations (f32, no
// 8-bit blocks) matches the double reference at f32 accuracy.
TEST(QuantizedEmbedding, KquantRowsAndPreciseHead) {
  for (QuantFormat format : testing::block_formats()) {
    const QuantCase c{format, kquant::block_columns(format), 40, 512, 3, false};
    HostQuantizedWeight q = testing::random_quantized(c, 31);
    const std::vector<double> w = testing::reference_dequantize(q);
    std::vector<int32_t> ids = {39, 0, 17};
    std::vector<float> out(static_cast<size_t>(3 * c.K), NAN);
    cpu::embedding(TensorView(ids.data(), DType::i32, {3}), TensorView(), q.view(), nullptr,
                   TensorView(out.data(), DType::f32, {3, c.K}), 2);
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t i = 0; i < c.K; ++i)
        ASSERT_EQ(out[t * c.K + i], static_cast<float>(w[ids[t] * c.K + i])) << to_string(format) << " " << t;
    QuantizedWeight head = q.view();
    head.precise_activations = true;
    std::vector<float> x = random_floats(static_cast<size_t>(c.T * c.K), 32, -2.0f, 2.0f);
    std::vector<double> expected, magnitude;
    testing::reference_linear(x, w, nullptr, c.T, c.M, c.K, expected, magnitude);
    std::vector<float> logits(static_cast<size_t>(c.T * c.M), NAN);
    cpu::quantized_linear(TensorView(x.data(), DType::f32, {c.T, c.K}), head, nullptr,
                          TensorView(logits.data(), DType::f32, {c.T, c.M}), 2);
    EXPECT_LE(testing::worst_normalized_error(logits, expected, magnitude), kTol) << to_string(format);
  }
}

// W8A8 prefill: activations quantized per token to int8 (their contract: |q| <= 127, the
// largest |x| of the row at 127, every x within half a step) and oneDNN's int8 GEMM, whose
// output is the double-precision product of the two dequantized operands up to fp32
// rounding, and within the activation rounding bound of the f32 product.
TEST(W8A8, Int8GemmMatchesTheDequantizedOperands) {
  if (std::string why; !cpu::w8a8_uses_onednn(&why)) std::cout << "[ note ] portable int8 GEMM: " << why << "\n";
  for (auto [M, K, T] : {std::tuple<int64_t, int64_t, int64_t>{40, 96, 9}, {300, 576, 33}, {7, 1536, 70}}) {
    const QuantCase c{QuantFormat::int8, 0, M, K, T, true};
    HostQuantizedWeight q = testing::random_quantized(c, 61 + M);
    QuantizedWeight view = q.view();
    view.int8_activations = true;
    ASSERT_TRUE(cpu::w8a8_eligible(view));
    const std::vector<double> w = testing::reference_dequantize(q);
    std::vector<float> x = random_floats(static_cast<size_t>(T * K), 62 + M, -2.0f, 2.0f);
    x[3] = 25.0f;  // an outlier in token 0
    std::vector<float> bias = random_floats(static_cast<size_t>(M), 63);
    std::vector<int8_t> xq(static_cast<size_t>(T * K));
    std::vector<float> xs(static_cast<size_t>(T));
    cpu::quantize_rows_int8(x.data(), T, K, xq.data(), xs.data(), 2);
    std::vector<float> x_dequantized(x.size());
    for (int64_t t = 0; t < T; ++t) {
      int peak = 0;
      for (int64_t k = 0; k < K; ++k) {
        const size_t i = static_cast<size_t>(t * K + k);
        x_dequantized[i] = xs[t] * xq[i];
        ASSERT_LE(std::abs(x[i] - x_dequantized[i]), 0.5f * xs[t] * (1 + 1e-5f)) << t << " " << k;
        peak = std::max(peak, std::abs(int{xq[i]}));
      }
      EXPECT_EQ(peak, 127) << t;
    }
    std::vector<double> expected, magnitude, exact, exact_magnitude;
    testing::reference_linear(x_dequantized, w, &bias, T, M, K, expected, magnitude);
    testing::reference_linear(x, w, &bias, T, M, K, exact, exact_magnitude);
    const TensorView bias_view(bias.data(), DType::f32, {M});
    for (auto kernel : {cpu::QuantKernel::int8_gemm, cpu::QuantKernel::automatic}) {
      std::vector<float> out(static_cast<size_t>(T * M), NAN);
      cpu::quantized_linear(TensorView(x.data(), DType::f32, {T, K}), view, &bias_view,
                            TensorView(out.data(), DType::f32, {T, M}), 2, kernel);
      EXPECT_LE(testing::worst_normalized_error(out, expected, magnitude), kTol) << M << "x" << K;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t m = 0; m < M; ++m) {
          double bound = 0.0;
          for (int64_t k = 0; k < K; ++k) bound += 0.5 * xs[t] * std::abs(w[m * K + k]);
          const size_t i = static_cast<size_t>(t * M + m);
          ASSERT_LE(std::abs(out[i] - exact[i]), bound * 1.001 + kTol * exact_magnitude[i]) << t << " " << m;
        }
    }
  }
  // Only int8 weights with one scale per row can take it.
  HostQuantizedWeight grouped = testing::random_quantized({QuantFormat::int8, 32, 4, 64, 8, false}, 64);
  std::vector<float> x(8 * 64, 1.0f), out(8 * 4);
  expect_error([&] {
    cpu::quantized_linear(TensorView(x.data(), DType::f32, {8, 64}), grouped.view(), nullptr,
                          TensorView(out.data(), DType::f32, {8, 4}), 2, cpu::QuantKernel::int8_gemm);
  }, ErrorCategory::internal, {"W8A8"});
}

// quantize_row_q8's contract: |q| <= 127 with the largest |x| of a block at 127, every
// x within half a step of d * q, sum = d * sum(q), zeros where the block is zero.
TEST(QuantizeRowQ8, BlocksHoldTheirValuesWithinHalfAStep) {
  std::vector<float> x = random_floats(32 * 6, 5, -3.0f, 3.0f);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // one block of zeros
  x[100] = 40.0f;                                   // an outlier
  std::vector<cpu::Q8Block> blocks(6);
  cpu::quantize_row_q8(x.data(), static_cast<int64_t>(x.size()), blocks.data());
  for (int b = 0; b < 6; ++b) {
    int peak = 0, sum = 0;
    for (int j = 0; j < 32; ++j) {
      const float v = x[32 * b + j];
      EXPECT_LE(std::abs(v - blocks[b].d * blocks[b].q[j]), 0.5f * blocks[b].d * (1 + 1e-5f) + 1e-12f) << b << " " << j;
      peak = std::max(peak, std::abs(int{blocks[b].q[j]}));
      sum += blocks[b].q[j];
    }
    EXPECT_EQ(peak, b == 2 ? 0 : 127) << b;
    EXPECT_FLOAT_EQ(blocks[b].sum, blocks[b].d * static_cast<float>(sum)) << b;
  }
  EXPECT_EQ(blocks[2].d, 0.0f);
}

// The instruction sets give the same results (the same integer products; only the float
// sums' order differs) on a row long enough to use every unrolled path, groups of 32 and
// per channel.
TEST(QuantizedQ8Isa, EveryInstructionSetAgreesWithThePortableLoop) {
  std::vector<QuantFormat> formats = {QuantFormat::int4, QuantFormat::int8};
  for (QuantFormat f : testing::block_formats()) formats.push_back(f);
  for (QuantFormat format : formats) {
    for (int group : {32, 0}) {
      if (format != QuantFormat::int8 && group == 0) continue;
      const QuantCase c{format, kquant::is_block_format(format) ? kquant::block_columns(format) : group, 37, 1536, 2,
                        false};
      HostQuantizedWeight q = testing::random_quantized(c, 91);
      std::vector<float> x = random_floats(static_cast<size_t>(c.T * c.K), 92, -2.0f, 2.0f);
      std::vector<float> ref(static_cast<size_t>(c.T * c.M));
      cpu::q8_dot_path(TensorView(x.data(), DType::f32, {c.T, c.K}), q.view(), nullptr, ref.data(), 1,
                       cpu::Q8Isa::portable);
      for (cpu::Q8Isa isa : {cpu::Q8Isa::avx2, cpu::Q8Isa::avx512_vnni}) {
        if (!cpu::q8_isa_available(isa)) {
          std::cout << "[ note ] " << cpu::to_string(isa) << " not on this processor\n";
          continue;
        }
        std::vector<float> out(ref.size(), NAN);
        cpu::q8_dot_path(TensorView(x.data(), DType::f32, {c.T, c.K}), q.view(), nullptr, out.data(), 2, isa);
        for (size_t i = 0; i < out.size(); ++i)
          EXPECT_NEAR(out[i], ref[i], 1e-5f * (1.0f + std::abs(ref[i])))
              << to_string(format) << " " << cpu::to_string(isa) << " " << i;
      }
    }
  }
}

// The multi-token rows (a weight block unpacked once for up to 4 tokens): on every
// instruction set, format and thread count, a call with T tokens gives each token the bits
// of a call with that token alone (T covers whole groups of 4 and every remainder).
TEST(QuantizedQ8Isa, ManyTokensGiveTheBitsOfOneTokenCalls) {
  for (QuantFormat format :
       {QuantFormat::int4, QuantFormat::int8, QuantFormat::q4_k, QuantFormat::q5_k, QuantFormat::q6_k,
        QuantFormat::q4_0, QuantFormat::q5_0, QuantFormat::q5_1, QuantFormat::iq4_nl, QuantFormat::iq4_xs,
        QuantFormat::q2_k, QuantFormat::q3_k, QuantFormat::mxfp4}) {
    const bool blocks = kquant::is_block_format(format);
    for (int group : {32, 64, 0}) {
      if ((format != QuantFormat::int8 && group == 0) || (blocks && group != 32)) continue;
      for (bool precise : {false, true}) {
        if (precise && format != QuantFormat::int8) continue;  // 16-bit blocks: int8 only
        const int64_t K = blocks ? 512 : 576;
        const QuantCase c{format, blocks ? kquant::block_columns(format) : group, 29, K, 11, false};
        HostQuantizedWeight q = testing::random_quantized(c, 300 + group);
        QuantizedWeight w = q.view();
        w.precise_activations = precise;
        std::vector<float> bias = random_floats(static_cast<size_t>(c.M), 302, -1.0f, 1.0f);
        for (cpu::Q8Isa isa : {cpu::Q8Isa::portable, cpu::Q8Isa::avx2, cpu::Q8Isa::avx512_vnni}) {
          if (!cpu::q8_isa_available(isa)) {
            std::cout << "[ note ] " << cpu::to_string(isa) << " not on this processor\n";
            continue;
          }
          for (int64_t T : {1, 2, 3, 4, 5, 7, 8, 11}) {
            std::vector<float> x = random_floats(static_cast<size_t>(T * c.K), 301 + T, -2.0f, 2.0f);
            std::vector<float> one(static_cast<size_t>(c.M));
            std::vector<std::vector<float>> alone;
            for (int64_t t = 0; t < T; ++t) {
              cpu::q8_dot_path(TensorView(x.data() + t * c.K, DType::f32, {1, c.K}), w, bias.data(), one.data(), 1, isa);
              alone.push_back(one);
            }
            for (int threads : {1, 2, 3}) {
              std::vector<float> all(static_cast<size_t>(T * c.M), NAN);
              cpu::q8_dot_path(TensorView(x.data(), DType::f32, {T, c.K}), w, bias.data(), all.data(), threads, isa);
              for (int64_t t = 0; t < T; ++t)
                for (int64_t m = 0; m < c.M; ++m)
                  ASSERT_EQ(all[static_cast<size_t>(t * c.M + m)], alone[static_cast<size_t>(t)][static_cast<size_t>(m)])
                      << to_string(format) << " group " << group << " precise " << precise << " "
                      << cpu::to_string(isa) << " T " << T << " threads " << threads << " t " << t << " m " << m;
            }
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuQuantizedLinearTest, ::testing::ValuesIn(testing::quant_cases()),
                         [](const auto& info) { return testing::quant_case_name(info.param); });

// More output rows than one dequantized tile of the sgemm path (1024 rows), and a
// partial last tile.
TEST(CpuQuantizedLinearTiles, SeveralTilesMatchDoubleReference) {
  for (QuantFormat format : {QuantFormat::int8, QuantFormat::int4, QuantFormat::q5_k}) {
    const bool k = kquant::is_block_format(format);
    const QuantCase c{format, k ? 256 : format == QuantFormat::int8 ? 0 : 32, 2100, k ? 256 : 96, 9, true};
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

// Random ggml blocks of each kept type: the weight they become (int8, int4 or the blocks
// themselves) dequantizes to exactly what the GGUF loader's dequantize_row gives; Q4_0 both
// as its own blocks (the default) and as int4 (Quantization::int4 asks for it).
TEST(QuantizeTest, GgmlBlocksAreKeptExactly) {
  struct Case {
    GgmlType type;
    Quantization mode;
  };
  std::vector<Case> cases;
  for (GgmlType type : {GgmlType::q8_0, GgmlType::q4_0, GgmlType::q4_1, GgmlType::q5_0, GgmlType::q5_1,
                        GgmlType::iq4_nl, GgmlType::iq4_xs, GgmlType::q2_k, GgmlType::q3_k, GgmlType::q4_k,
                        GgmlType::q5_k, GgmlType::q6_k, GgmlType::mxfp4})
    cases.push_back({type, Quantization::automatic});
  cases.push_back({GgmlType::q4_0, Quantization::int4});
  for (const auto [type, mode] : cases) {
    const int64_t block = ggml_block_size(type), M = 6, K = block == 256 ? 512 : 96;
    std::vector<uint8_t> blocks(M * (K / block) * ggml_block_bytes(type));
    uint64_t state = 12345 + static_cast<int>(type);
    for (auto& b : blocks) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      b = static_cast<uint8_t>(state >> 56);
    }
    // Sane f16 scales (and mins) so that no block holds inf or NaN; MXFP4's E8M0 bytes are
    // every value from 0 (subnormal products) to 254.
    const size_t bb = ggml_block_bytes(type);
    for (size_t i = 0; i < blocks.size(); i += bb) {
      if (type == GgmlType::mxfp4) {
        blocks[i] = static_cast<uint8_t>((i / bb) * 37 % 255);
        continue;
      }
      const float d = 0.001f * static_cast<float>(1 + (i / bb) % 50);
      const uint16_t d16 = f32_to_f16(d), m16 = f32_to_f16(-0.3f + d);
      const int d_at = type == GgmlType::q6_k ? 208 : type == GgmlType::q2_k ? 80 : type == GgmlType::q3_k ? 108 : 0;
      std::memcpy(&blocks[i + d_at], &d16, 2);
      if (type == GgmlType::q4_1 || type == GgmlType::q5_1 || type == GgmlType::q4_k || type == GgmlType::q5_k ||
          type == GgmlType::q2_k)
        std::memcpy(&blocks[i + d_at + 2], &m16, 2);  // the min or dmin after d
    }
    std::vector<float> expected(M * K);
    dequantize_row(type, blocks.data(), expected.data(), M * K);
    HostQuantizedWeight q;
    append_ggml_rows(q, type, blocks.data(), 2, K, mode);  // two parts, as a fused weight has
    append_ggml_rows(q, type, blocks.data() + 2 * (K / block) * bb, M - 2, K, mode);
    ASSERT_EQ(q.rows, M);
    EXPECT_EQ(q.group_size, block == 256 ? 256 : 32);
    if (type == GgmlType::q4_0) {
      EXPECT_EQ(q.format, mode == Quantization::int4 ? QuantFormat::int4 : QuantFormat::q4_0);
    }
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
