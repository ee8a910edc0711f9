// The CUDA quantized_linear on a mixed-format fused weight (QuantFormat::mixed: llama.cpp's
// Q4_K_M QKV with Q4_K Q and K rows and Q6_K V rows), on both paths: the GEMV (each part's
// rows written into its columns of out with out's row stride) and the dequantize-tile +
// cuBLAS GEMM (each part's tiles into its columns, ldc = M). Against the double reference of
// the whole weight in f32 / f16 activations, with and without bias; on the GEMV path each
// column must also equal the part's own product bit for bit. Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "mixed_test_util.h"

namespace kestrel {
namespace {

using testing::DeviceTensor;
using testing::MixedWeight;

constexpr int64_t kCols = 512;

// A host weight of one format copied to the device; the tensors live as long as this.
struct DevicePart {
  std::unique_ptr<DeviceTensor> data, scales, mins;
  QuantizedWeight weight;
};

DevicePart upload(Backend& gpu, const QuantizedWeight& host) {
  DevicePart d;
  d.weight = host;
  d.data = std::make_unique<DeviceTensor>(gpu, DType::i8, std::initializer_list<int64_t>{host.data.dim(0), host.data.dim(1)});
  d.data->set_bytes(host.data.data);
  d.weight.data = *d.data;
  if (!host.scales.empty()) {
    d.scales = std::make_unique<DeviceTensor>(gpu, host.scales.dtype,
                                              std::initializer_list<int64_t>{host.scales.dim(0), host.scales.dim(1)});
    d.scales->set_bytes(host.scales.data);
    d.weight.scales = *d.scales;
  }
  if (!host.mins.empty()) {
    d.mins = std::make_unique<DeviceTensor>(gpu, host.mins.dtype,
                                            std::initializer_list<int64_t>{host.mins.dim(0), host.mins.dim(1)});
    d.mins->set_bytes(host.mins.data);
    d.weight.mins = *d.mins;
  }
  return d;
}

class CudaMixedQuantizedLinear : public ::testing::TestWithParam<std::vector<testing::MixedPart>> {
 protected:
  void SetUp() override {
    const std::string why = testing::cuda_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    gpu = testing::make_test_cuda_backend();
  }
  std::unique_ptr<Backend> gpu;
};

TEST_P(CudaMixedQuantizedLinear, MatchesTheDoubleReferenceAndEachPartAlone) {
  const MixedWeight mixed = testing::random_mixed(GetParam(), kCols, 123);
  std::vector<DevicePart> parts;
  QuantizedWeight dev;
  dev.format = QuantFormat::mixed;
  dev.rows = mixed.rows;
  dev.cols = kCols;
  for (const QuantizedWeight& part : mixed.view.parts) {
    parts.push_back(upload(*gpu, part));
    dev.parts.push_back(parts.back().weight);
  }
  const int64_t M = mixed.rows;
  for (DType dtype : {DType::f32, DType::f16})
    for (int64_t T : {1, 5, 8, 9, 40})
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(::testing::Message() << to_string(dtype) << ", T " << T << (with_bias ? ", bias" : ""));
        const std::vector<float> x =
            testing::round_to(dtype, testing::random_floats(static_cast<size_t>(T * kCols), 7 + T, -2.0f, 2.0f));
        const std::vector<float> bias = testing::round_to(dtype, testing::random_floats(static_cast<size_t>(M), 9));
        std::vector<double> expected, magnitude;
        testing::reference_linear(x, mixed.reference, with_bias ? &bias : nullptr, T, M, kCols, expected, magnitude);
        DeviceTensor x_d(*gpu, dtype, {T, kCols}), bias_d(*gpu, dtype, {M}), out_d(*gpu, dtype, {T, M});
        x_d.set(x);
        bias_d.set(bias);
        gpu->quantized_linear(x_d, dev, with_bias ? bias_d.ptr() : nullptr, out_d);
        const std::vector<float> out = out_d.floats();
        // As cuda_quantized_linear_test.cc: fp32 summation order, and for f16 the weight
        // rounded into the GEMM's scratch and the output rounding.
        EXPECT_LE(testing::worst_normalized_error(out, expected, magnitude), dtype == DType::f16 ? 2e-3 : 1e-5);
        if (T > 8) continue;  // cuBLAS may pick another algorithm for another shape
        for (size_t i = 0; i < parts.size(); ++i) {
          const int64_t begin = mixed.row_begin(i), rows = parts[i].weight.rows;
          std::vector<float> part_bias(bias.begin() + begin, bias.begin() + begin + rows);
          DeviceTensor pb_d(*gpu, dtype, {rows}), po_d(*gpu, dtype, {T, rows});
          pb_d.set(part_bias);
          gpu->quantized_linear(x_d, parts[i].weight, with_bias ? pb_d.ptr() : nullptr, po_d);
          const std::vector<float> alone = po_d.floats();
          for (int64_t t = 0; t < T; ++t)
            for (int64_t r = 0; r < rows; ++r)
              ASSERT_EQ(out[t * M + begin + r], alone[t * rows + r]) << "part " << i << " token " << t << " row " << r;
        }
      }
}

INSTANTIATE_TEST_SUITE_P(Parts, CudaMixedQuantizedLinear, ::testing::ValuesIn(testing::mixed_cases()),
                         [](const auto& info) { return testing::mixed_name(info.param); });

}  // namespace
}  // namespace kestrel
