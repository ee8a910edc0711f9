// The CUDA quantized_linear (GEMV path for up to 8 tokens, dequantize + cuBLAS for more)
// against the double-precision dequantize-then-multiply reference of quant_test_util.h, for
// f32, f16 and bf16 activations and f32 logits; the same shapes as the CPU test plus the
// GEMV / GEMM boundary. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "quant_test_util.h"

namespace kestrel {
namespace {

using testing::DeviceTensor;
using testing::QuantCase;

// Normalized error (by sum |x w|) allowed per activation dtype: x is rounded to the dtype
// in the reference too, so what remains is fp32 summation order, and for f16 / bf16 the
// weight rounded into the GEMM's scratch (many tokens) and the output rounding: at most
// a unit roundoff (2^-11 for f16, 2^-8 for bf16) each, with a factor 2 of room.
double quant_tolerance(DType dtype) {
  switch (dtype) {
    case DType::f16: return 2e-3;
    case DType::bf16: return 1.6e-2;
    default: return 1e-5;
  }
}

struct CudaQuantParam {
  QuantCase c;
  DType dtype;
  bool f32_out;
};

class CudaQuantizedLinear : public ::testing::TestWithParam<CudaQuantParam> {
 protected:
  void SetUp() override {
    const std::string why = testing::cuda_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    gpu = testing::make_test_cuda_backend();
  }
  std::unique_ptr<Backend> gpu;
};

TEST_P(CudaQuantizedLinear, MatchesDoubleReference) {
  const auto [c, dtype, f32_out] = GetParam();
  const uint64_t seed = 2000 + c.M * 31 + c.K * 7 + c.T;
  HostQuantizedWeight q = testing::random_quantized(c, seed);
  const std::vector<double> w = testing::reference_dequantize(q);
  std::vector<float> x = testing::round_to(dtype, testing::random_floats(c.T * c.K, seed + 1, -2.0f, 2.0f));
  std::vector<float> bias = testing::round_to(dtype, testing::random_floats(c.M, seed + 2));
  std::vector<double> expected, magnitude;
  testing::reference_linear(x, w, c.bias ? &bias : nullptr, c.T, c.M, c.K, expected, magnitude);

  const QuantizedWeight host = q.view();
  DeviceTensor data(*gpu, DType::i8, {host.data.dim(0), host.data.dim(1)});
  DeviceTensor scales(*gpu, host.scales.empty() ? DType::f32 : host.scales.dtype, {c.M, host.groups()});
  DeviceTensor mins(*gpu, DType::f16, {c.M, host.groups()});
  data.set_bytes(host.data.data);
  QuantizedWeight dev = host;
  dev.data = data;
  if (!host.scales.empty()) {  // K-quants keep theirs inside their blocks
    scales.set_bytes(host.scales.data);
    dev.scales = scales;
  }
  if (c.format == QuantFormat::int4) {
    mins.set_bytes(host.mins.data);
    dev.mins = mins;
  }
  DeviceTensor x_d(*gpu, dtype, {c.T, c.K}), bias_d(*gpu, dtype, {c.M});
  DeviceTensor out_d(*gpu, f32_out ? DType::f32 : dtype, {c.T, c.M});
  x_d.set(x);
  bias_d.set(bias);
  gpu->quantized_linear(x_d, dev, c.bias ? bias_d.ptr() : nullptr, out_d);
  // f32 out: no output rounding; long rows: fp32 summation error grows with K.
  const double tol = (f32_out ? quant_tolerance(dtype) / 2 : quant_tolerance(dtype)) *
                     std::max(1.0, static_cast<double>(c.K) / 1024.0);
  EXPECT_LE(testing::worst_normalized_error(out_d.floats(), expected, magnitude), tol);
}

std::vector<CudaQuantParam> params() {
  std::vector<QuantCase> cases = testing::quant_cases();
  // Both sides of the GEMV / GEMM switch (8 tokens), aligned and unaligned K.
  for (int64_t T : {8, 9})
    for (int64_t K : {256, 100}) {
      cases.push_back({QuantFormat::int8, 0, 40, K, T, true});
      cases.push_back({QuantFormat::int4, 64, 40, K, T, false});
    }
  for (QuantFormat format : testing::block_formats())
    for (int64_t T : {8, 9})
      cases.push_back({format, kquant::block_columns(format), 40, kquant::block_columns(format) == 32 ? 576 : 512, T,
                       T == 8});
  std::vector<CudaQuantParam> out;
  for (const QuantCase& c : cases)
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) out.push_back({c, dtype, false});
  out.push_back({{QuantFormat::int4, 32, 1000, 256, 3, false}, DType::f16, true});  // logits
  // Rows of 8192 f32 columns: the 32 MiB dequantization scratch holds 1024 of them, so the
  // GEMM path runs two tiles (the second partial).
  out.push_back({{QuantFormat::int8, 0, 1100, 8192, 9, true}, DType::f32, false});
  out.push_back({{QuantFormat::int8, 0, 1000, 256, 20, true}, DType::bf16, true});
  // int8 groups that do not start on a 16-column chunk: the GEMV's scalar path.
  out.push_back({{QuantFormat::int8, 48, 40, 96, 3, true}, DType::f16, false});
  out.push_back({{QuantFormat::int8, 24, 17, 120, 2, false}, DType::f32, false});
  // K = 896 in f16: 18688 rows per tile (rounded down to a multiple of 64, so the second
  // tile's output columns stay 16-byte aligned).
  out.push_back({{QuantFormat::int4, 32, 19000, 896, 9, true}, DType::f16, false});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaQuantizedLinear, ::testing::ValuesIn(params()), [](const auto& info) {
  return testing::quant_case_name(info.param.c) + "_" + to_string(info.param.dtype) +
         (info.param.f32_out ? "_f32out" : "");
});

}  // namespace
}  // namespace kestrel
