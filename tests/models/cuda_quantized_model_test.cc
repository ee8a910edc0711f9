// Quantized models on the CUDA backend against the same quantized models on the CPU: the
// tiny Llama and GPT-2 with int8 (per channel) and int4 (groups of 32) weights, f32
// activations on both, so both hold the same quantized values (quantized on the host from
// the same f32 weights) and differ only in summation order: Decoder::score logits at every
// prompt position within 1e-3 absolute and greedy tokens identical (the prompts run the
// GEMV path for decode and the dequantize + cuBLAS path for prefill). Skips without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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
  Session cpu_session(cpu, testing::f32_cache()), gpu_session(gpu);
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

// GGUF files quantized by llama.cpp to Q4_K_M / Q5_K_M (tests/fixtures/kquant): the CUDA
// backend reads the K-quant super-blocks where they lie (GEMV, dequantized tiles, the tied
// Q6_K embedding, the QKV weight of Q4_K / Q5_K Q and K rows beside Q6_K V rows as one mixed
// weight), giving the CPU's logits of the same file dequantized at load (f32 activations on
// both) within 1e-4 of the logit scale, and its greedy tokens.
TEST(CudaKquantModel, MatchesTheDequantizedCpuModel) {
#ifndef KESTREL_WITH_CUDA
  GTEST_SKIP() << "no CUDA device: this build has no CUDA backend";
#else
  if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device: cuda_backend_available() is false";
#endif
  for (const char* file : {"tiny256-Q4_K_M.gguf", "tiny256-Q5_K_M.gguf"}) {
    SCOPED_TRACE(file);
    const auto path = testing::fixture_dir() / "kquant" / file;
    ModelOptions options;
    options.quantization = Quantization::none;
    auto cpu = Model::load(path, options);
    options.quantization = Quantization::automatic;
    options.device = Device::cuda(0);
    options.dtype = DType::f32;
    auto gpu = Model::load(path, options);
    EXPECT_NE(gpu->weight_formats().find("_k+q6_k x1"), std::string::npos) << gpu->weight_formats();
    EXPECT_EQ(gpu->weight_formats().find("f32"), std::string::npos) << gpu->weight_formats();
    Session cpu_session(cpu, testing::f32_cache()), gpu_session(gpu);
    Decoder cpu_decoder(cpu_session), gpu_decoder(gpu_session);
    std::vector<int32_t> ids;
    for (int i = 0; i < 20; ++i) ids.push_back((i * 397 + 11) % cpu->config().vocab_size);
    const std::vector<float> want = cpu_decoder.score(ids), got = gpu_decoder.score(ids);
    ASSERT_EQ(got.size(), want.size());
    float diff = 0.0f, scale = 0.0f;
    for (size_t i = 0; i < got.size(); ++i) {
      diff = std::max(diff, std::abs(got[i] - want[i]));
      scale = std::max(scale, std::abs(want[i]));
    }
    EXPECT_LE(diff, 1e-4f * scale);
    GenerationRequest r;
    r.prompt_ids = {ids.begin(), ids.begin() + 6};
    r.stop.max_new_tokens = 12;
    r.stop.stop_at_eos = false;
    EXPECT_EQ(gpu_decoder.generate(r).tokens, cpu_decoder.generate(r).tokens);
  }
}

// GGUF files whose only quantized tensor is the token embedding (tests/fixtures/
// embedding-blocks: GPT-2 Q8_0 with learned positions, Gemma 2 Q4_0 with the scaled
// embedding): on the GPU, in f32, the table in its blocks (--quant auto) gives the dense
// table's logits (--quant none) bit for bit, and the CPU's within 1e-4 of the logit scale.
TEST(CudaEmbeddingBlocks, TableOnlyInBlocksGivesTheDenseTablesLogits) {
#ifndef KESTREL_WITH_CUDA
  GTEST_SKIP() << "no CUDA device: this build has no CUDA backend";
#else
  if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device: cuda_backend_available() is false";
#endif
  for (const char* file : {"gpt2-table-q8_0.gguf", "gemma2-table-q4_0.gguf"}) {
    SCOPED_TRACE(file);
    const auto path = testing::fixture_dir() / "embedding-blocks" / file;
    ModelOptions options;
    options.quantization = Quantization::automatic;
    auto cpu = Model::load(path, options);
    options.device = Device::cuda(0);
    options.dtype = DType::f32;
    auto blocks = Model::load(path, options);
    options.quantization = Quantization::none;
    auto dense = Model::load(path, options);
    EXPECT_LT(blocks->weight_bytes(), dense->weight_bytes());
    Session cpu_session(cpu, testing::f32_cache()), blocks_session(blocks), dense_session(dense);
    Decoder cpu_decoder(cpu_session), blocks_decoder(blocks_session), dense_decoder(dense_session);
    const std::vector<float> ids_f = testing::random_floats(17, 41, 0.0f, static_cast<float>(cpu->config().vocab_size));
    std::vector<int32_t> ids;
    for (float f : ids_f) ids.push_back(std::min(static_cast<int32_t>(f), cpu->config().vocab_size - 1));
    const std::vector<float> got = blocks_decoder.score(ids), want = dense_decoder.score(ids), host = cpu_decoder.score(ids);
    ASSERT_EQ(got.size(), want.size());
    ASSERT_EQ(got.size(), host.size());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
    float diff = 0.0f, scale = 0.0f;
    for (size_t i = 0; i < got.size(); ++i) {
      diff = std::max(diff, std::abs(got[i] - host[i]));
      scale = std::max(scale, std::abs(host[i]));
    }
    EXPECT_LE(diff, 1e-4f * scale);
  }
}

}  // namespace
}  // namespace kestrel
