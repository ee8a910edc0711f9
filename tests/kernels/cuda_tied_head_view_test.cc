// A tied LM head kept in blocks at tp > 1 with pp = 1 on the GPU: each rank's weights built
// by WeightStore::load on the CUDA backend (no MPI, one device) hold the table once (the
// plain layout: CUDA's prepare_quantized leaves it) with the last ranks' padding rows, and
// the head is a view of the rank's rows of it (tests/unit/tied_head_view_test.cc on the
// CPU). The view's quantized_linear on the device equals, bit for bit, that of a copy of the
// same rows on the device, and the double reference of the CPU's dequantized rows within
// the f32 tolerance; padding rows give 0. Skips with the reason where there is no GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cuda_test_util.h"
#include "models/quantize.h"
#include "models/weights.h"
#include "quant_test_util.h"
#include "test_support.h"
#include "tools/held_weights.h"

namespace kestrel {
namespace {

using testing::DeviceTensor;

TEST(CudaTiedHeadView, HeadViewOfTheTableComputesAsACopyOfItsRows) {
  const std::string why = testing::cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  std::unique_ptr<Backend> gpu = testing::make_test_cuda_backend();
  auto cpu = make_cpu_backend(1);
  for (const char* name : {"kquant/tiny256-Q8_0.gguf", "kquant/tiny256-Q4_1.gguf", "kquant/tiny256-Q4_K.gguf",
                           "embedding-blocks/qwen2-6heads-q8_0.gguf"}) {
    const sizing::FileWeights file(testing::fixture_dir() / name);
    const Architecture& arch = file.architecture();
    const ModelConfig& c = arch.config;
    const int64_t H = c.hidden_size;
    const QuantizationSpec spec{Quantization::automatic, 0};
    for (int tp : {2, 3}) {
      if (c.num_heads % tp != 0 || c.ffn_size % tp != 0) continue;
      for (int r = 0; r < tp; ++r) {
        SCOPED_TRACE(std::string(name) + " tp " + std::to_string(tp) + " rank " + std::to_string(r));
        const Shard shard = make_shard(c, tp, 1, r, 0, name);
        WeightStore store(*gpu, DType::f32, spec);
        const ModelWeights w = store.load(file.source(), arch, shard);
        ASSERT_TRUE(w.token_embedding.is_quantized() && w.lm_head.is_quantized());
        const QuantizedWeight &table = w.token_embedding.quantized, &head = w.lm_head.quantized;
        EXPECT_EQ(table.interleave, 0);
        EXPECT_EQ(table.rows, int64_t{tp} * shard.vocab);
        EXPECT_EQ(head.rows, shard.vocab);
        const auto* base = static_cast<const char*>(table.data.data);
        EXPECT_EQ(static_cast<const void*>(head.data.data),
                  static_cast<const void*>(base + shard.vocab_begin * table.data.row_size()));
        bool tied = false;
        EXPECT_EQ(file.held(shard, Quantization::automatic, 0, DType::f32, &tied).total(), store.bytes());

        // A copy of the same rows on the device, and on the host (plain) for the reference.
        const WeightRecipe recipe = arch.recipe(WeightSlot::lm_head, -1);
        const WeightSlice rows = shard_slices(shard, c, arch.kinds.gated_ffn).vocab;
        WeightStore copy_store(*gpu, DType::f32, spec), host_store(*cpu, DType::f32, spec);
        std::optional<QuantizedWeight> copy = keep_ggml_blocks(copy_store, file.source(), recipe, H, spec, "copy", rows);
        const std::optional<QuantizedWeight> host = keep_ggml_blocks(host_store, file.source(), recipe, H, spec, "host", rows);
        ASSERT_TRUE(copy && host);
        copy->precise_activations = true;
        gpu->prepare_quantized(*copy);
        std::vector<float> dequantized(static_cast<size_t>(host->rows * H));
        cpu::dequantize_weight(*host, dequantized.data());
        const std::vector<double> reference(dequantized.begin(), dequantized.end());

        const int64_t T = 3, M = head.rows;
        const std::vector<float> x = testing::random_floats(static_cast<size_t>(T * H), 77 + r, -2.0f, 2.0f);
        DeviceTensor x_d(*gpu, DType::f32, {T, H}), view_out(*gpu, DType::f32, {T, M}), copy_out(*gpu, DType::f32, {T, M});
        x_d.set(x);
        gpu->quantized_linear(x_d, head, nullptr, view_out);
        gpu->quantized_linear(x_d, *copy, nullptr, copy_out);
        const std::vector<float> got = view_out.floats(), want = copy_out.floats();
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
        std::vector<double> expected, magnitude;
        testing::reference_linear(x, reference, nullptr, T, M, H, expected, magnitude);
        EXPECT_LE(testing::worst_normalized_error(got, expected, magnitude), 1e-5);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t m = shard.vocab_valid; m < M; ++m) EXPECT_EQ(got[static_cast<size_t>(t * M + m)], 0.0f) << m;
      }
    }
  }
}

}  // namespace
}  // namespace kestrel
