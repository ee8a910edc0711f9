// Quantized models on the CUDA backend against the same quantized models on the CPU: the
// tiny Llama and GPT-2 with int8 (per channel) and int4 (groups of 32) weights, f32
// activations on both, so both hold the same quantized values (quantized on the host from
// the same f32 weights) and differ only in summation order: Decoder::score logits at every
// prompt position within 1e-3 absolute and greedy tokens identical (the prompts run the
// GEMV path for decode and the dequantize + cuBLAS path for prefill). Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "backend.h"
#include "kestrel/kestrel.h"
#include "reference_fixture.h"
#include "test_support.h"

namespace kestrel {
namespace {

using Param = std::tuple<std::string, Quantization>;

class CudaQuantizedModel : public ::testing::TestWithParam<Param> {};

TEST_P(CudaQuantizedModel, MatchesTheCpuQuantizedModel) {
#ifndef KESTREL_WITH_CUDA
  GTEST_SKIP() << "no CUDA device: this build has no CUDA backend";
#else
  if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device: cuda_backend_available() is false";
#endif
  const auto& [name, mode] = GetParam();
  const auto dir = testing::fixture_dir() / name;
  ModelOptions options;
  options.quantization = mode;
  auto cpu = Model::load(dir, options);
  options.device = Device::cuda(0);
  options.dtype = DType::f32;
  auto gpu = Model::load(dir, options);
  EXPECT_EQ(gpu->weight_bytes(), cpu->weight_bytes());
  const auto prompts = testing::load_reference(dir, cpu->config().vocab_size);
  Session cpu_session(cpu), gpu_session(gpu);
  Decoder cpu_decoder(cpu_session), gpu_decoder(gpu_session);
  for (const auto& p : prompts) {
    const std::vector<float> want = cpu_decoder.score(p.ids), got = gpu_decoder.score(p.ids);
    ASSERT_EQ(got.size(), want.size());
    float diff = 0.0f;
    for (size_t i = 0; i < got.size(); ++i) diff = std::max(diff, std::abs(got[i] - want[i]));
    EXPECT_LE(diff, 1e-3f) << p.text;
    GenerationRequest r;
    r.prompt_ids = p.ids;
    r.stop.max_new_tokens = static_cast<int>(p.greedy.size());
    r.stop.stop_at_eos = false;
    EXPECT_EQ(gpu_decoder.generate(r).tokens, cpu_decoder.generate(r).tokens) << p.text;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaQuantizedModel,
                         ::testing::Combine(::testing::Values("tiny-gpt2", "tiny-llama"),
                                            ::testing::Values(Quantization::int8, Quantization::int4)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + to_string(std::get<1>(info.param));
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

}  // namespace
}  // namespace kestrel
