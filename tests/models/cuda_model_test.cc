// Whole models on the CUDA backend against the same models on the CPU backend, through the
// public API: Decoder::score logits at every prompt position (f32: max abs 1e-3; f16 and
// bf16: normalized error, see below), greedy tokens identical in f32 (alone, and batched
// with chunked prefill over small KV blocks, so the context kernel runs with n_past > 0 and
// the generation kernel crosses blocks), and seeded sampling reproducible on the device.
// Fixtures: the tiny GPT-2 (LayerNorm, GELU, learned positions, biases) and the tiny Llama
// (RMSNorm, rotary with theta 5000, SwiGLU, GQA). Every test skips without a GPU.
#include <gtest/gtest.h>
#include <kestrel/kestrel.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "backend.h"
#include "reference_fixture.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;
using testing::load_reference;
using testing::ReferencePrompt;

// f32: both backends accumulate in fp32; 1e-3 absolute covers summation order through a few
// layers. f16 / bf16: weights and activations are rounded (11- / 8-bit significands) at every
// layer, so logits move by a few units of the last place of their largest values; the error
// is normalized by max(1, max |logit|).
constexpr float kF32AbsTolerance = 1e-3f;
double normalized_tolerance(DType dtype) { return dtype == DType::bf16 ? 8e-2 : 2e-2; }

using Param = std::tuple<std::string, DType>;

class CudaModel : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
#ifndef KESTREL_WITH_CUDA
    GTEST_SKIP() << "no CUDA device: this build has no CUDA backend";
#else
    if (!cuda_backend_available())
      GTEST_SKIP() << "no CUDA device: cuda_backend_available() is false";
#endif
    const auto& [name, dtype] = GetParam();
    dir_ = fixture_dir() / name;
    if (!std::filesystem::exists(dir_ / "config.json"))
      GTEST_SKIP() << "fixture " << dir_ << " is missing";
    dtype_ = dtype;
    cpu_ = Model::load(dir_);
    ModelOptions options;
    options.device = Device::cuda(0);
    options.dtype = dtype;
    gpu_ = Model::load(dir_, options);
    prompts_ = load_reference(dir_, cpu_->config().vocab_size);
    ASSERT_FALSE(prompts_.empty());
  }

  static GenerationRequest request(const ReferencePrompt& p, int new_tokens) {
    GenerationRequest r;
    r.prompt_ids = p.ids;
    r.stop.max_new_tokens = new_tokens;
    r.stop.stop_at_eos = false;
    return r;
  }

  std::filesystem::path dir_;
  DType dtype_ = DType::f32;
  std::shared_ptr<const Model> cpu_, gpu_;
  std::vector<ReferencePrompt> prompts_;
};

TEST_P(CudaModel, LoadsOnTheDevice) {
  EXPECT_EQ(gpu_->device(), Device::cuda(0));
  EXPECT_EQ(gpu_->dtype(), dtype_);
  EXPECT_GT(gpu_->weight_bytes(), 0u);
}

TEST_P(CudaModel, ScoreLogitsMatchCpu) {
  Session cpu_session(cpu_, testing::f32_cache()), gpu_session(gpu_);
  Decoder cpu_decoder(cpu_session), gpu_decoder(gpu_session);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    const std::vector<float> want = cpu_decoder.score(prompts_[i].ids);
    const std::vector<float> got = gpu_decoder.score(prompts_[i].ids);
    ASSERT_EQ(got.size(), want.size());
    double max_diff = 0.0, scale = 1.0;
    for (size_t j = 0; j < want.size(); ++j) {
      const double d = std::fabs(static_cast<double>(got[j]) - want[j]);
      max_diff = std::isnan(d) ? INFINITY : std::max(max_diff, d);
      scale = std::max(scale, static_cast<double>(std::fabs(want[j])));
    }
    if (dtype_ == DType::f32)
      EXPECT_LE(max_diff, kF32AbsTolerance)
          << "prompt " << i << " (" << prompts_[i].ids.size() << " tokens)";
    else
      EXPECT_LE(max_diff / scale, normalized_tolerance(dtype_))
          << "prompt " << i << ": max diff " << max_diff << ", scale " << scale;
  }
  EXPECT_EQ(gpu_session.free_kv_blocks(), gpu_session.options().kv_blocks);
}

TEST_P(CudaModel, GreedyTokensMatchCpuInF32) {
  if (dtype_ != DType::f32) GTEST_SKIP() << "greedy identity is checked in f32 only";
  Session cpu_session(cpu_, testing::f32_cache({.max_sequences = 1})), gpu_session(gpu_, {.max_sequences = 1});
  Decoder cpu_decoder(cpu_session), gpu_decoder(gpu_session);
  for (const auto& p : prompts_) {
    const auto want = cpu_decoder.generate(request(p, 20)).tokens;
    EXPECT_EQ(gpu_decoder.generate(request(p, 20)).tokens, want) << p.text;
  }
}

// All prompts batched in two slots, prefill in chunks of 5 tokens, KV blocks of 4.
TEST_P(CudaModel, BatchedChunkedGreedyMatchesCpuInF32) {
  if (dtype_ != DType::f32) GTEST_SKIP() << "greedy identity is checked in f32 only";
  const SessionOptions options{.max_sequences = 2, .max_step_tokens = 5, .kv_block_size = 4};
  Session cpu_session(cpu_, testing::f32_cache(options)), gpu_session(gpu_, options);
  Decoder cpu_decoder(cpu_session), gpu_decoder(gpu_session);
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts_) requests.push_back(request(p, 16));
  const auto want = cpu_decoder.generate(requests);
  const auto got = gpu_decoder.generate(requests);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(got[i].tokens, want[i].tokens) << "request " << i;
  EXPECT_EQ(gpu_session.free_kv_blocks(), gpu_session.options().kv_blocks);
}

// Seeded sampling on the device is deterministic and independent of the batch: the same
// request gives the same tokens alone, again, and in the middle of a batch. (Identity with
// the CPU is checked per kernel on identical logits; across whole models the logits differ
// in the last bits, and near-tied candidates may then swap places in the sorted order.)
TEST_P(CudaModel, SampledTokensAreReproducibleAndBatchIndependent) {
  Session session(gpu_, {.max_sequences = 3});
  Decoder decoder(session);
  auto sampled = [&](size_t i, uint64_t seed) {
    GenerationRequest r = request(prompts_[i % prompts_.size()], 24);
    r.sampling.temperature = 0.9f;
    r.sampling.top_k = 40;
    r.sampling.top_p = 0.95f;
    r.sampling.min_p = 0.02f;
    r.sampling.repetition_penalty = 1.1f;
    r.sampling.frequency_penalty = 0.2f;
    r.sampling.seed = seed;
    return r;
  };
  const auto alone = decoder.generate(sampled(0, 7)).tokens;
  EXPECT_EQ(alone.size(), 24u);
  EXPECT_EQ(decoder.generate(sampled(0, 7)).tokens, alone);
  std::vector<GenerationRequest> batch = {sampled(1, 3), sampled(0, 7), sampled(2, 11)};
  const auto results = decoder.generate(batch);
  EXPECT_EQ(results[1].tokens, alone) << "a request's tokens must not depend on its batch";
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  std::string name = std::get<0>(info.param) + "_" + to_string(std::get<1>(info.param));
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaModel,
                         ::testing::Combine(::testing::Values("tiny-gpt2", "tiny-llama"),
                                            ::testing::Values(DType::f32, DType::f16, DType::bf16)),
                         param_name);

// Gemma 2 (soft-capped attention and logits, local / global layers, post-norms, the scaled
// embedding), Gemma 3 (q / k head norms, per-layer rope tables) and Qwen3
// (tests/fixtures/make_tiny_gemma.py): the operations these added, whole, on the device.
INSTANTIATE_TEST_SUITE_P(GemmaQwen3, CudaModel,
                         ::testing::Combine(::testing::Values("tiny-gemma2", "tiny-gemma3", "tiny-qwen3"),
                                            ::testing::Values(DType::f32, DType::f16, DType::bf16)),
                         param_name);

// Granite (make_tiny_granite_qwen3_moe.py): the embedding, block-output and logit
// multipliers through the backend's scale, attention_multiplier as the softmax scale.
INSTANTIATE_TEST_SUITE_P(Granite, CudaModel,
                         ::testing::Combine(::testing::Values("tiny-granite"),
                                            ::testing::Values(DType::f32, DType::f16, DType::bf16)),
                         param_name);

// Rope scalings (make_tiny_phi3.py): LongRoPE and dynamic NTK through the session's own
// rotary table uploaded to the device, YaRN's and LongRoPE's attention factor in the scale.
INSTANTIATE_TEST_SUITE_P(RopeScaling, CudaModel,
                         ::testing::Combine(::testing::Values("tiny-phi3", "tiny-llama-yarn", "tiny-llama-dynamic"),
                                            ::testing::Values(DType::f32, DType::bf16)),
                         param_name);

// Phi-4-mini and OLMo 2 (make_tiny_phi4_olmo2.py): LongRoPE's attention factor on the cos
// and sin of a partial rotary (3/4 of each head), and q / k norms over each token's whole
// q / k projection after norm-free block inputs.
INSTANTIATE_TEST_SUITE_P(Phi4Olmo2, CudaModel,
                         ::testing::Combine(::testing::Values("tiny-phi4-mini", "tiny-olmo2"),
                                            ::testing::Values(DType::f32, DType::bf16)),
                         param_name);

}  // namespace
}  // namespace kestrel
