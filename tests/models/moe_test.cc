// Mixture-of-experts models end to end against transformers (fixtures made by
// tests/fixtures/make_tiny_moe.py and make_tiny_granite_qwen3_moe.py): Mixtral (6 experts,
// top-2 renormalized), Qwen2-MoE (top-2 not renormalized, a gated shared expert) and
// Qwen3-MoE (Qwen3's q / k head norms, top-2 renormalized, no shared expert) and GraniteMoE
// (Granite's multipliers, stacked experts in the Hugging Face files too), gpt-oss
// (make_tiny_gpt_oss.py: attention sinks, alternating sliding-window layers, YaRN, biased
// router and experts, the clamped SwiGLU), from
// safetensors and as llama.cpp's convert_hf_to_gguf.py writes them (gpt-oss's MXFP4 experts
// too), and a Qwen2-MoE whose
// dense and sparse layers mix (decoder_sparse_step, mlp_only_layers, norm_topk_prob). fp32 logits at every prompt
// position within 1e-4 (max abs), 20 greedy tokens identical alone, in one batch, and with
// chunked prefill and sequences joining. The fixtures record which experts transformers
// routed every prompt token to; the routing tests check from that record that a step
// exercises every expert, or leaves some without a token, before holding its logits to the
// reference. Also: weights quantized at load (experts included), the CUDA backend against
// the CPU (skips without a GPU), the sizing tool's expert count, and what is refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>
#include <map>
#include <set>

#include "models/architecture.h"
#include "reference_fixture.h"
#include "tools/sizing.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;
using testing::greedy_request;
using testing::load_reference;
using testing::ReferencePrompt;

constexpr float kLogitTolerance = 1e-4f;  // fp32 compute, max abs over all logits

// kLogitTolerance, or 2e-5 of the largest reference logit where that is more: these
// fixtures' logits reach 18, and the routing's weighted sums of expert outputs add rounding
// (the -O1 sanitizer build, which sums in another order than -O3, measured 1.6e-4 on
// tiny-qwen2-moe-mixed, 9e-6 of its largest logit).
float logit_tolerance(const std::vector<float>& reference) {
  float m = 0.0f;
  for (float v : reference) m = std::max(m, std::fabs(v));
  return std::max(kLogitTolerance, 2e-5f * m);
}

struct MoeCase {
  const char* name;
  const char* model;      // file or directory under tests/fixtures
  const char* reference;  // fixture directory with reference.json
  int expert_ffn = 32;    // the fixture's expert and shared-expert FFN sizes
  int shared_ffn = 48;
};

void PrintTo(const MoeCase& c, std::ostream* os) { *os << c.model; }

// The experts transformers chose for each token of each prompt: routing[prompt][layer] is
// the set of experts any token of the prompt went to.
using Routing = std::vector<std::map<int, std::set<int>>>;

Routing load_routing(const std::filesystem::path& dir) {
  std::ifstream in(dir / "reference.json");
  const nlohmann::json json = nlohmann::json::parse(in);
  Routing routing;
  for (const auto& prompt : json.at("prompts")) {
    std::map<int, std::set<int>> layers;
    for (const auto& [layer, tokens] : prompt.at("routing").items())
      for (const auto& experts : tokens)
        for (const auto& e : experts) layers[std::stoi(layer)].insert(e.get<int>());
    routing.push_back(layers);
  }
  return routing;
}

// Experts of `layer` that no token of `prompts` went to.
int idle_experts(const Routing& routing, const std::vector<size_t>& prompts, int layer, int num_experts) {
  std::set<int> used;
  for (size_t p : prompts) used.insert(routing[p].at(layer).begin(), routing[p].at(layer).end());
  return num_experts - static_cast<int>(used.size());
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float d = 0;
  for (size_t j = 0; j < a.size(); ++j) d = std::max(d, std::fabs(a[j] - b[j]));
  return d;
}

class MoeReference : public ::testing::TestWithParam<MoeCase> {
 protected:
  void SetUp() override {
    model_ = Model::load(fixture_dir() / GetParam().model, {.quantization = Quantization::none});
    prompts_ = load_reference(fixture_dir() / GetParam().reference, model_->config().vocab_size);
    routing_ = load_routing(fixture_dir() / GetParam().reference);
    ASSERT_EQ(prompts_.size(), routing_.size());
    ASSERT_GE(prompts_.size(), 6u);
  }

  std::shared_ptr<const Model> model_;
  std::vector<ReferencePrompt> prompts_;
  Routing routing_;
};

TEST_P(MoeReference, ConfigNamesItsExperts) {
  const ModelConfig& c = model_->config();
  EXPECT_EQ(c.num_experts, 6);
  EXPECT_EQ(c.experts_per_token, 2);
  EXPECT_EQ(c.expert_ffn_size, GetParam().expert_ffn);
  EXPECT_EQ(c.shared_expert_ffn_size, GetParam().shared_ffn);
}

TEST_P(MoeReference, LogitsAtEveryPromptPositionMatch) {
  Session session(model_, testing::f32_cache());
  Decoder decoder(session);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    const auto& p = prompts_[i];
    std::vector<float> logits = decoder.score(p.ids);
    ASSERT_EQ(logits.size(), p.logits.size());
    EXPECT_LE(max_abs_diff(logits, p.logits), logit_tolerance(p.logits)) << "prompt " << i << " (" << p.ids.size() << " tokens)";
  }
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
}

// The longest prompt routes tokens to every expert of every sparse layer; the one-token
// prompt (two experts) leaves E - 2 idle in each; a multi-token prompt that uses more than
// two experts but not all of one layer's leaves the others idle beside busy ones. The
// routing record says which prompts these are; each is held to the reference logits.
TEST_P(MoeReference, StepsThatUseEveryExpertAndStepsThatLeaveSomeIdleMatch) {
  const int E = model_->config().num_experts;
  const size_t longest = prompts_.size() - 1;
  ASSERT_FALSE(routing_[longest].empty()) << "no sparse layer in the routing record";
  for (const auto& [layer, experts] : routing_[longest]) {
    EXPECT_EQ(idle_experts(routing_, {longest}, layer, E), 0) << "layer " << layer;
    EXPECT_EQ(idle_experts(routing_, {0}, layer, E), E - 2) << "layer " << layer;
  }
  Session session(model_, testing::f32_cache());
  Decoder decoder(session);
  for (size_t i : {longest, size_t{0}})
    EXPECT_LE(max_abs_diff(decoder.score(prompts_[i].ids), prompts_[i].logits), logit_tolerance(prompts_[i].logits)) << "prompt " << i;
  bool found = false;
  for (size_t i = 1; i < prompts_.size() && !found; ++i)
    for (const auto& [layer, experts] : routing_[i])
      if (static_cast<int>(experts.size()) < E && experts.size() > 2) {
        found = true;
        EXPECT_LE(max_abs_diff(decoder.score(prompts_[i].ids), prompts_[i].logits), logit_tolerance(prompts_[i].logits))
            << "prompt " << i << " leaves " << E - static_cast<int>(experts.size()) << " experts of layer " << layer
            << " idle";
        break;
      }
  // tiny-qwen2-moe-mixed routes even its 8-token prompt to all six experts of its one sparse
  // layer; the others must have such a prompt.
  if (std::string(GetParam().reference) != "tiny-qwen2-moe-mixed") {
    EXPECT_TRUE(found) << "no prompt of the fixture leaves an expert idle while using more than two";
  }
}

TEST_P(MoeReference, GreedyTokensMatchOneByOne) {
  Session session(model_, testing::f32_cache({.max_sequences = 1}));
  Decoder decoder(session);
  for (const auto& p : prompts_) {
    GenerationResult r = decoder.generate(greedy_request(p));
    EXPECT_EQ(r.tokens, p.greedy) << p.text;
  }
}

// All prompts in one batch: the first step prefills them together (127 tokens, every
// expert busy), the decode steps route six tokens at a time (12 choices over 6 experts).
TEST_P(MoeReference, GreedyTokensMatchInOneBatch) {
  const int E = model_->config().num_experts;
  std::vector<size_t> all(prompts_.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  for (const auto& [layer, experts] : routing_[0]) EXPECT_EQ(idle_experts(routing_, all, layer, E), 0);
  Session session(model_, testing::f32_cache({.max_sequences = static_cast<int>(prompts_.size())}));
  Decoder decoder(session);
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts_) requests.push_back(greedy_request(p));
  auto results = decoder.generate(requests);
  ASSERT_EQ(results.size(), prompts_.size());
  for (size_t i = 0; i < prompts_.size(); ++i) EXPECT_EQ(results[i].tokens, prompts_[i].greedy) << i;
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
}

// Two slots, prompts prefilled in chunks of 5 tokens beside decodes, KV blocks of 4.
TEST_P(MoeReference, GreedyTokensMatchWithChunkedPrefillAndJoiningRequests) {
  Session session(model_, testing::f32_cache({.max_sequences = 2, .max_step_tokens = 5, .kv_block_size = 4}));
  Decoder decoder(session);
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts_) requests.push_back(greedy_request(p));
  requests[1].stop.max_new_tokens = 7;
  auto results = decoder.generate(requests);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    std::vector<int32_t> want = prompts_[i].greedy;
    want.resize(requests[i].stop.max_new_tokens);
    EXPECT_EQ(results[i].tokens, want) << i;
  }
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
}

std::string case_name(const ::testing::TestParamInfo<MoeCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(
    Families, MoeReference,
    ::testing::Values(MoeCase{"tiny_mixtral", "tiny-mixtral", "tiny-mixtral", 32, 0},
                      MoeCase{"tiny_mixtral_gguf", "tiny-mixtral.gguf", "tiny-mixtral", 32, 0},
                      MoeCase{"tiny_qwen2_moe", "tiny-qwen2-moe", "tiny-qwen2-moe"},
                      MoeCase{"tiny_qwen2_moe_gguf", "tiny-qwen2-moe.gguf", "tiny-qwen2-moe"},
                      MoeCase{"tiny_qwen2_moe_mixed", "tiny-qwen2-moe-mixed", "tiny-qwen2-moe-mixed"},
                      // make_tiny_granite_qwen3_moe.py: Qwen3's attention over experts of 24
                      // (top-2 renormalized, no shared expert), and llama.cpp's qwen3moe GGUF
                      MoeCase{"tiny_qwen3_moe", "tiny-qwen3-moe", "tiny-qwen3-moe", 24, 0},
                      MoeCase{"tiny_qwen3_moe_gguf", "tiny-qwen3-moe.gguf", "tiny-qwen3-moe", 24, 0},
                      // GraniteMoE: Granite's multipliers over stacked experts of 24 (top-2 by
                      // router logit, softmaxed), from safetensors and llama.cpp's granitemoe GGUF
                      MoeCase{"tiny_granitemoe", "tiny-granitemoe", "tiny-granitemoe", 24, 0},
                      MoeCase{"tiny_granitemoe_gguf", "tiny-granitemoe.gguf", "tiny-granitemoe", 24, 0},
                      // make_tiny_gpt_oss.py: attention sinks, a window of 8 in layer 0, YaRN,
                      // biased router and experts of 24 with the clamped SwiGLU (top-2 of 6)
                      MoeCase{"tiny_gpt_oss", "tiny-gpt-oss", "tiny-gpt-oss", 24, 0},
                      // make_tiny_gpt_oss_mxfp4.py: the same with experts of 32 stored as the
                      // released checkpoints store them (transformers' MXFP4 blocks and
                      // scales), here dequantized at load
                      MoeCase{"tiny_gpt_oss_mxfp4", "tiny-gpt-oss-mxfp4", "tiny-gpt-oss-mxfp4", 32, 0},
                      // make_gpt_oss_gguf.py: both as llama.cpp's converter writes them
                      // ("gpt-oss"; the MXFP4 experts repacked by the converter itself)
                      MoeCase{"tiny_gpt_oss_gguf", "tiny-gpt-oss.gguf", "tiny-gpt-oss", 24, 0},
                      MoeCase{"tiny_gpt_oss_mxfp4_gguf", "tiny-gpt-oss-mxfp4.gguf", "tiny-gpt-oss-mxfp4", 32, 0}),
    case_name);

// Quantized at load, experts included: int8 (per channel) and int4 (groups of 32) weights
// take fewer bytes than f32 and keep the top-1 agreement quantized_model_test.cc asks of the
// dense fixtures (random tiny models are chaotic: int8 85%, int4 25%, chance 0.1%; measured
// here 91% and 34-40%).
TEST(MoeQuantized, ExpertsQuantizeWithTheOtherLinearWeights) {
  for (const char* name : {"tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen3-moe", "tiny-gpt-oss"}) {
    SCOPED_TRACE(name);
    auto f32 = Model::load(fixture_dir() / name, {.quantization = Quantization::none});
    const auto prompts = load_reference(fixture_dir() / name, f32->config().vocab_size);
    for (Quantization q : {Quantization::int8, Quantization::int4}) {
      ModelOptions options{.quantization = q};
      if (q == Quantization::int4) options.quant_group_size = 32;
      auto model = Model::load(fixture_dir() / name, options);
      EXPECT_LT(model->weight_bytes(), f32->weight_bytes() * 3 / 4);
      Session session(model, testing::f32_cache());
      Decoder decoder(session);
      int agree = 0, total = 0;
      for (const auto& p : prompts) {
        std::vector<float> logits = decoder.score(p.ids);
        const int64_t V = f32->config().vocab_size;
        for (size_t t = 0; t < p.ids.size(); ++t, ++total) {
          auto row = logits.begin() + static_cast<int64_t>(t) * V;
          auto ref = p.logits.begin() + static_cast<int64_t>(t) * V;
          agree += std::max_element(row, row + V) - row == std::max_element(ref, ref + V) - ref;
        }
      }
      EXPECT_GE(agree, total * (q == Quantization::int8 ? 85 : 25) / 100) << agree << " of " << total;
    }
  }
}

// Experts kept in their stored blocks follow the same file dequantized at load: an expert
// with at most 6 of a step's tokens multiplies them with 8-bit activations (as llama.cpp
// does), so even long prompts carry that rounding (measured on the Q8_0 experts: 3.2e-2 of
// the logit scale at worst; a wrong expert or offset moves logits by their scale), and the
// greedy tokens agree at 95% of positions or more.
void expect_follows_dequantized(const std::shared_ptr<const Model>& kept,
                                const std::shared_ptr<const Model>& dequantized,
                                const std::vector<ReferencePrompt>& prompts) {
  Session kept_session(kept, testing::f32_cache()), plain_session(dequantized, testing::f32_cache());
  Decoder kept_decoder(kept_session), plain_decoder(plain_session);
  int agree = 0, total = 0;
  for (const auto& p : prompts) {
    const std::vector<float> got = kept_decoder.score(p.ids), want = plain_decoder.score(p.ids);
    float scale = 1.0f;
    for (float w : want) scale = std::max(scale, std::fabs(w));
    EXPECT_LE(max_abs_diff(got, want) / scale, 5e-2f) << p.text;
    const int64_t V = kept->config().vocab_size;
    for (size_t t = 0; t < p.ids.size(); ++t) {
      auto g = got.begin() + static_cast<int64_t>(t) * V, w = want.begin() + static_cast<int64_t>(t) * V;
      ++total;
      agree += std::max_element(g, g + V) - g == std::max_element(w, w + V) - w;
    }
  }
  EXPECT_GE(agree, total * 95 / 100) << agree << " of " << total;
}

// tiny-mixtral-q8_0.gguf (llama.cpp's converter, --outtype q8_0): each expert is a row block
// of the stacked Q8_0 tensors, kept as stored and run by quantized_linear. It follows the
// same file dequantized at load (exact Q8_0 values in f32), and takes far fewer bytes.
TEST(MoeQuantized, StackedQ8_0ExpertsRunFromTheirBlocks) {
  const auto path = fixture_dir() / "tiny-mixtral-q8_0.gguf";
  auto kept = Model::load(path);
  auto dequantized = Model::load(path, {.quantization = Quantization::none});
  EXPECT_LT(kept->weight_bytes(), dequantized->weight_bytes() * 3 / 4);
  const auto prompts = load_reference(fixture_dir() / "tiny-mixtral", kept->config().vocab_size);
  expect_follows_dequantized(kept, dequantized, prompts);
}

// tiny-gpt-oss-mxfp4 (the released checkpoints' MXFP4 experts): by default every expert
// keeps its MXFP4 blocks (4.25 bits a weight) and runs from them; it follows the same
// checkpoint dequantized at load (which matches transformers within 1e-4, above) as the
// Q8_0 experts do, and a token's 8-bit activations are the only difference.
TEST(MoeQuantized, Mxfp4ExpertsRunFromTheirBlocks) {
  const auto path = fixture_dir() / "tiny-gpt-oss-mxfp4";
  auto kept = Model::load(path);
  auto dequantized = Model::load(path, {.quantization = Quantization::none});
  // 2 layers x 6 experts x (64 x 32 + 32 x 32) weights: 4 bytes each dequantized, 17 bytes
  // per 32 kept.
  const int64_t expert_weights = 2 * 6 * (64 * 32 + 32 * 32);
  EXPECT_EQ(dequantized->weight_bytes() - kept->weight_bytes(), expert_weights * 4 - expert_weights / 32 * 17);
  // Per layer a fused QKV, the output projection and the router stay f32; the 24 expert
  // matrices keep their blocks.
  EXPECT_EQ(kept->weight_formats(), "f32 x7 + mxfp4 x24");
  EXPECT_EQ(dequantized->weight_formats(), "f32 x31");
  const auto prompts = load_reference(path, kept->config().vocab_size);
  expect_follows_dequantized(kept, dequantized, prompts);
  // int8 mode quantizes the MXFP4 experts again, per channel, like any block format it does
  // not keep.
  auto int8 = Model::load(path, {.quantization = Quantization::int8});
  EXPECT_LT(int8->weight_bytes(), dequantized->weight_bytes());
}

// llama.cpp's converter repacks transformers' MXFP4 experts into ggml blocks itself: kept as
// stored, the GGUF's experts are the same blocks Mxfp4Source makes of the safetensors, so
// the two files give the same logits, bit for bit.
TEST(MoeQuantized, Mxfp4GgufHoldsTheSameBlocksAsTheCheckpoint) {
  auto gguf = Model::load(fixture_dir() / "tiny-gpt-oss-mxfp4.gguf");
  auto safetensors = Model::load(fixture_dir() / "tiny-gpt-oss-mxfp4");
  EXPECT_EQ(gguf->weight_formats(), "f32 x7 + mxfp4 x24");
  EXPECT_EQ(gguf->weight_bytes(), safetensors->weight_bytes());
  Session gguf_session(gguf, testing::f32_cache()), safetensors_session(safetensors, testing::f32_cache());
  Decoder gguf_decoder(gguf_session), safetensors_decoder(safetensors_session);
  for (const auto& p : load_reference(fixture_dir() / "tiny-gpt-oss-mxfp4", gguf->config().vocab_size))
    EXPECT_EQ(gguf_decoder.score(p.ids), safetensors_decoder.score(p.ids)) << p.text;
}

// The CUDA backend runs the same routing, grouping and expert GEMMs: its logits follow the
// CPU's and its greedy tokens in one batch are the reference's (f32).
TEST(MoeCuda, MatchesTheCpu) {
#ifndef KESTREL_WITH_CUDA
  GTEST_SKIP() << "no CUDA device: this build has no CUDA backend";
#else
  if (!cuda_backend_available()) GTEST_SKIP() << "no CUDA device: cuda_backend_available() is false";
  for (const char* name : {"tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen2-moe-mixed", "tiny-qwen3-moe",
                           "tiny-granitemoe", "tiny-gpt-oss", "tiny-gpt-oss-mxfp4"}) {
    SCOPED_TRACE(name);
    auto cpu = Model::load(fixture_dir() / name);
    for (DType dtype : {DType::f32, DType::f16}) {
      ModelOptions options;
      options.device = Device::cuda(0);
      options.dtype = dtype;
      auto gpu = Model::load(fixture_dir() / name, options);
      const auto prompts = load_reference(fixture_dir() / name, cpu->config().vocab_size);
      Session cpu_session(cpu, testing::f32_cache()), gpu_session(gpu);
      Decoder cpu_decoder(cpu_session), gpu_decoder(gpu_session);
      for (const auto& p : prompts) {
        const std::vector<float> want = cpu_decoder.score(p.ids), got = gpu_decoder.score(p.ids);
        float scale = 1.0f;
        for (float w : want) scale = std::max(scale, std::fabs(w));
        EXPECT_LE(max_abs_diff(got, want) / scale, dtype == DType::f32 ? 1e-4f : 2e-2f) << p.text;
      }
      if (dtype != DType::f32) continue;
      Session session(gpu, {.max_sequences = static_cast<int>(prompts.size())});
      Decoder decoder(session);
      std::vector<GenerationRequest> requests;
      for (const auto& p : prompts) requests.push_back(greedy_request(p));
      auto results = decoder.generate(requests);
      for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(results[i].tokens, prompts[i].greedy) << i;
    }
  }
#endif
}

// What is not implemented is refused by name.
TEST(MoeRefusals, NamesWhatIsNotSupported) {
  const auto config = [](const char* dir) {
    std::ifstream in(fixture_dir() / dir / "config.json");
    return nlohmann::json::parse(in);
  };
  auto refuses = [](const nlohmann::json& json, const std::string& word) {
    try {
      (void)architecture_from_hf_json(json, "config.json", [](const std::string&) { return true; });
    } catch (const Error& e) {
      return std::string(e.what()).find(word) != std::string::npos;
    }
    return false;
  };
  nlohmann::json mixtral = config("tiny-mixtral");
  EXPECT_FALSE(refuses(mixtral, "mixtral"));
  auto window = mixtral;
  window["sliding_window"] = 4096;
  EXPECT_TRUE(refuses(window, "sliding_window"));
  auto k = mixtral;
  k["num_experts_per_tok"] = 7;
  EXPECT_TRUE(refuses(k, "experts_per_token"));
  nlohmann::json qwen = config("tiny-qwen2-moe");
  auto swa = qwen;
  swa["use_sliding_window"] = true;
  EXPECT_TRUE(refuses(swa, "use_sliding_window"));
  auto mlp_only = qwen;
  mlp_only["mlp_only_layers"] = nlohmann::json::array({5});
  EXPECT_TRUE(refuses(mlp_only, "mlp_only_layers"));
  auto step = qwen;
  step["decoder_sparse_step"] = 0;
  EXPECT_TRUE(refuses(step, "decoder_sparse_step"));

  // Tensor parallelism splits every expert's columns (tests/parallel): an expert FFN
  // narrower than the ranks is refused by name, in kestrel-size as at load (make_shard).
  sizing::SizingOptions options;
  options.tp = 2;
  sizing::ModelShape shape = sizing::read_model_shape(fixture_dir() / "tiny-mixtral");
  EXPECT_GT(sizing::compute(shape, options).largest().weights.total(), 0u);
  shape.file = nullptr;
  shape.config.expert_ffn_size = 3;
  options.tp = 4;
  try {
    (void)sizing::compute(shape, options);
    ADD_FAILURE() << "4 ranks over 3 expert columns";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expert_ffn_size 3 is smaller than ParallelOptions.tensor_parallel 4"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace kestrel
