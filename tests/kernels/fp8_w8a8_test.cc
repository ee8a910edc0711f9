// W8A8's CUDA GEMM against the CPU's (the same integers), then FP8 E4M3 (core/fp8.h) and
// the fp8_e4m3 quantized linear: the codec against the format's
// definition (every code decoded by the formula written here; every float rounded to the
// nearest code found by brute force over the 256 codes, ties to the even code), and the
// CPU kernels (and the CUDA ones where a GPU runs them) against a double-precision
// reference: the activations rounded per token by that brute force, times the weights'
// E4M3 values and scales.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "core/fp8.h"
#include "cpu/cpu_ops.h"
#include "cuda_test_util.h"
#include "models/quantize.h"
#include "quant_test_util.h"

namespace kestrel {
namespace {

// The value of a code by the definition: bias 7, 3 mantissa bits, subnormals m 2^-9,
// S.1111.111 NaN.
double by_definition(uint8_t v) {
  const int e = (v >> 3) & 0xf, m = v & 7;
  const double sign = (v & 0x80) ? -1.0 : 1.0;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  return e == 0 ? sign * m * std::pow(2.0, -9) : sign * (1.0 + m / 8.0) * std::pow(2.0, e - 7);
}

// Nearest code by brute force: the smallest distance, ties to the even code (mantissa bit
// 0 clear), beyond 448 saturated; +0 for zero.
uint8_t nearest(double x) {
  if (std::abs(x) >= 448.0) return x < 0 ? 0xfe : 0x7e;
  int best = -1;
  double best_d = INFINITY;
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    const double v = by_definition(static_cast<uint8_t>(c));
    if ((c & 0x80) && v == 0.0) continue;  // -0
    if (std::signbit(v) != std::signbit(x) && v != 0.0) continue;
    const double d = std::abs(v - x);
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best_d = d;
      best = c;
    }
  }
  if (best == 0 && std::signbit(x)) best = 0x80;  // -0 keeps its sign
  return static_cast<uint8_t>(best);
}

TEST(Fp8E4m3, EveryCodeDecodesAsDefined) {
  for (int c = 0; c < 256; ++c) {
    const double want = by_definition(static_cast<uint8_t>(c));
    const float got = fp8_e4m3_to_f32(static_cast<uint8_t>(c));
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(got)) << c;
    else
      EXPECT_EQ(double{got}, want) << c;
  }
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_f32(0x38), 1.0f);
}

TEST(Fp8E4m3, EncodingIsTheNearestCodeTiesToEven) {
  // Every code and every midpoint between neighbours (the ties), then random floats over
  // the whole range and beyond it.
  std::vector<double> values;
  std::vector<double> finite;
  for (int c = 0; c < 128; ++c)
    if (c != 0x7f) finite.push_back(by_definition(static_cast<uint8_t>(c)));
  for (size_t i = 0; i < finite.size(); ++i) {
    values.push_back(finite[i]);
    values.push_back(-finite[i]);
    if (i + 1 < finite.size()) {
      const double mid = (finite[i] + finite[i + 1]) / 2;
      for (double v : {mid, -mid, std::nextafter(mid, 0.0), std::nextafter(mid, 1e9)}) values.push_back(v);
    }
  }
  for (float r : testing::random_floats(20000, 77, -9.0f, 9.0f)) values.push_back(std::ldexp(1.0, static_cast<int>(r)) * r);
  for (double v : {500.0, -1e6, 449.0, 464.0, 1e-30, -1e-30}) values.push_back(v);
  for (double v : values) {
    const auto f = static_cast<float>(v);
    EXPECT_EQ(f32_to_fp8_e4m3(f), nearest(f)) << "x = " << f;
  }
  EXPECT_EQ(f32_to_fp8_e4m3(INFINITY), 0x7e);
  EXPECT_EQ(f32_to_fp8_e4m3(-INFINITY), 0xfe);
  EXPECT_EQ(f32_to_fp8_e4m3(std::nanf("")) & 0x7f, 0x7f);
}

// The reference: x rounded per token through `nearest`, times the E4M3 weights, in double.
void fp8_reference(const std::vector<float>& x, const HostQuantizedWeight& q, const std::vector<float>* bias,
                   int64_t T, std::vector<double>& out, std::vector<double>& magnitude) {
  const int64_t M = q.rows, K = q.cols;
  std::vector<float> xr(x.size());
  for (int64_t t = 0; t < T; ++t) {
    double amax = 0.0;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::abs(double{x[t * K + k]}));
    const double scale = amax / 448.0;
    for (int64_t k = 0; k < K; ++k)
      xr[t * K + k] = amax > 0 ? static_cast<float>(by_definition(nearest(x[t * K + k] / scale)) * scale) : 0.0f;
  }
  std::vector<double> w(static_cast<size_t>(M * K));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k)
      w[m * K + k] = double{q.scales[m]} * by_definition(static_cast<uint8_t>(q.data[m * K + k]));
  testing::reference_linear(xr, w, bias, T, M, K, out, magnitude);
}

TEST(Fp8Linear, QuantizedWeightsAreTheNearestCodesOfEachRow) {
  const int64_t M = 9, K = 70;
  std::vector<float> w = testing::random_floats(M * K, 5, -0.3f, 0.3f);
  w[3 * K + 5] = 4.0f;  // an outlier sets its row's scale
  const HostQuantizedWeight q = quantize_fp8(w.data(), M, K);
  ASSERT_EQ(q.format, QuantFormat::fp8_e4m3);
  ASSERT_EQ(q.group_size, K);
  for (int64_t m = 0; m < M; ++m) {
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::abs(w[m * K + k]));
    EXPECT_FLOAT_EQ(q.scales[m], amax / 448.0f);
    for (int64_t k = 0; k < K; ++k)
      EXPECT_EQ(static_cast<uint8_t>(q.data[m * K + k]), nearest(w[m * K + k] * (448.0f / amax))) << m << "," << k;
  }
  std::vector<float> bad = w;
  bad[2] = NAN;
  EXPECT_THROW(quantize_fp8(bad.data(), M, K, "layer 0 qkv"), Error);
}

TEST(Fp8Linear, EveryCpuPathMatchesTheDoubleReference) {
  for (int64_t T : {1, 3, 40}) {
    for (auto [M, K] : std::vector<std::pair<int64_t, int64_t>>{{1, 32}, {17, 200}, {130, 576}}) {
      SCOPED_TRACE("T " + std::to_string(T) + " M " + std::to_string(M) + " K " + std::to_string(K));
      std::vector<float> w = testing::random_floats(M * K, 11 + M, -0.5f, 0.5f);
      HostQuantizedWeight q = quantize_fp8(w.data(), M, K);
      std::vector<float> x = testing::random_floats(T * K, 12 + K, -2.0f, 2.0f);
      x[0] = 30.0f;  // an outlier in the first token
      std::vector<float> bias = testing::random_floats(M, 13);
      std::vector<double> expected, magnitude;
      fp8_reference(x, q, &bias, T, expected, magnitude);
      for (cpu::QuantKernel kernel : {cpu::QuantKernel::automatic, cpu::QuantKernel::batch_invariant,
                                      cpu::QuantKernel::dot_portable, cpu::QuantKernel::tiled_gemm}) {
        std::vector<float> out(static_cast<size_t>(T * M));
        TensorView xv(x.data(), DType::f32, {T, K}), bv(bias.data(), DType::f32, {M}), ov(out.data(), DType::f32, {T, M});
        cpu::quantized_linear(xv, q.view(), &bv, ov, 2, kernel);
        EXPECT_LE(testing::worst_normalized_error(out, expected, magnitude), 1e-5) << static_cast<int>(kernel);
      }
      // x is left as it was (the rounding works on a copy).
      EXPECT_EQ(x[0], 30.0f);
    }
  }
  // The integer-activation kernels are refused by name for FP8 weights.
  std::vector<float> w = testing::random_floats(64, 3), x = testing::random_floats(32, 4), out(2);
  HostQuantizedWeight q = quantize_fp8(w.data(), 2, 32);
  TensorView xv(x.data(), DType::f32, {1, 32}), ov(out.data(), DType::f32, {1, 2});
  EXPECT_THROW(cpu::quantized_linear(xv, q.view(), nullptr, ov, 1, cpu::QuantKernel::q8_portable), Error);
}

// CUDA: the GEMV (few tokens) and dequantize + cuBLAS (many) on activations rounded by
// round_rows_fp8, for f32 / f16 / bf16 activations, against the same reference with x
// rounded to the activation dtype first. Skips without a GPU.
TEST(Fp8Linear, CudaMatchesTheDoubleReference) {
  const std::string why = testing::cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  auto gpu = testing::make_test_cuda_backend();
  for (DType dtype : {DType::f32, DType::f16, DType::bf16})
    for (int64_t T : {1, 8, 9, 64}) {
      const int64_t M = 130, K = 576;
      SCOPED_TRACE(std::string(to_string(dtype)) + " T " + std::to_string(T));
      std::vector<float> w = testing::random_floats(M * K, 21, -0.5f, 0.5f);
      HostQuantizedWeight q = quantize_fp8(w.data(), M, K);
      std::vector<float> x = testing::round_to(dtype, testing::random_floats(T * K, 22 + T, -2.0f, 2.0f));
      std::vector<float> bias = testing::round_to(dtype, testing::random_floats(M, 23));
      std::vector<double> expected, magnitude;
      fp8_reference(x, q, &bias, T, expected, magnitude);
      const QuantizedWeight host = q.view();
      testing::DeviceTensor data(*gpu, DType::i8, {M, K}), scales(*gpu, DType::f32, {M, 1});
      data.set_bytes(host.data.data);
      scales.set_bytes(host.scales.data);
      QuantizedWeight dev = host;
      dev.data = data;
      dev.scales = scales;
      testing::DeviceTensor x_d(*gpu, dtype, {T, K}), bias_d(*gpu, dtype, {M}), out_d(*gpu, DType::f32, {T, M});
      x_d.set(x);
      bias_d.set(bias);
      gpu->quantized_linear(x_d, dev, bias_d.ptr(), out_d);
      // The rounded activations are stored in the activation dtype before the product.
      const double tol = dtype == DType::f32 ? 1e-5 : dtype == DType::f16 ? 2e-3 : 1.6e-2;
      EXPECT_LE(testing::worst_normalized_error(out_d.floats(), expected, magnitude), tol);
    }
}

// W8A8 on CUDA with many tokens (int8 activations per token, cublasGemmEx in int32)
// computes the integers the CPU's int8 GEMM computes: the outputs agree to float rounding
// of the scales. Skips without a GPU.
TEST(W8A8Cuda, ManyTokenGemmMatchesTheCpuInt8Gemm) {
  const std::string why = testing::cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  auto gpu = testing::make_test_cuda_backend();
  for (DType dtype : {DType::f32, DType::f16, DType::bf16})
    for (auto [M, K, T] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{130, 576, 40}, {17, 200, 9}, {5, 66, 12}}) {
      SCOPED_TRACE(std::string(to_string(dtype)) + " M " + std::to_string(M) + " K " + std::to_string(K));
      std::vector<float> w = testing::random_floats(M * K, 31, -0.5f, 0.5f);
      HostQuantizedWeight q = quantize_int8(w.data(), M, K, static_cast<int>(K));
      QuantizedWeight host = q.view();
      host.int8_activations = true;
      std::vector<float> x = testing::round_to(dtype, testing::random_floats(T * K, 32, -2.0f, 2.0f));
      std::vector<float> bias = testing::round_to(dtype, testing::random_floats(M, 33));
      std::vector<float> want(static_cast<size_t>(T * M));
      TensorView xv(x.data(), DType::f32, {T, K}), bv(bias.data(), DType::f32, {M}), wv(want.data(), DType::f32, {T, M});
      cpu::quantized_linear(xv, host, &bv, wv, 1, cpu::QuantKernel::int8_gemm);
      testing::DeviceTensor data(*gpu, DType::i8, {M, K}), scales(*gpu, DType::f32, {M, 1});
      data.set_bytes(host.data.data);
      scales.set_bytes(host.scales.data);
      QuantizedWeight dev = host;
      dev.data = data;
      dev.scales = scales;
      testing::DeviceTensor x_d(*gpu, dtype, {T, K}), bias_d(*gpu, dtype, {M}), out_d(*gpu, DType::f32, {T, M});
      x_d.set(x);
      bias_d.set(bias);
      gpu->quantized_linear(x_d, dev, bias_d.ptr(), out_d);
      const std::vector<float> got = out_d.floats();
      for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4f * (1.0f + std::abs(want[i]))) << i;
    }
}

}  // namespace
}  // namespace kestrel
