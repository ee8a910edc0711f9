// Rope scalings whose table depends on the context, end to end against transformers
// (fixtures made by tests/fixtures/make_tiny_phi3.py), logits within 1e-4 at positions past
// the original context:
// - Phi-3 with LongRoPE (tiny-phi3, and Phi-4-mini's partial rotary with it: tiny-phi4-mini,
//   each from safetensors and from llama.cpp's converter): a
//   session allowing more than original_max_position_embeddings (16) positions rotates with
//   the long factors, as transformers does for a forward over more than 16 positions (and
//   llama.cpp for n_ctx > 16); a session of 16 with the short ones.
// - Llama and GPT-NeoX with dynamic NTK scaling (tiny-llama-dynamic, tiny-gpt-neox-dynamic):
//   a session of n positions uses the base of a sequence of n, as transformers' forward over
//   n positions from a fresh state.
// - Llama with YaRN from GGUF: llama.cpp's keys added to its converter's file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <kestrel/kestrel.h>

#include "loaders/gguf.h"
#include "loaders/gguf_writer.h"
#include "models/architecture.h"
#include "reference_fixture.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;
using testing::greedy_request;
using testing::load_reference;
using testing::ReferencePrompt;

constexpr float kLogitTolerance = 1e-4f;
constexpr int kOriginalContext = 16;  // the fixtures' original context

float max_logit_diff(Decoder& decoder, const ReferencePrompt& p) {
  std::vector<float> logits = decoder.score(p.ids);
  EXPECT_EQ(logits.size(), p.logits.size());
  float diff = 0;
  for (size_t j = 0; j < std::min(logits.size(), p.logits.size()); ++j)
    diff = std::max(diff, std::fabs(logits[j] - p.logits[j]));
  return diff;
}

bool is_long(const ReferencePrompt& p) { return static_cast<int>(p.ids.size()) > kOriginalContext; }

class Phi3Reference : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    model_ = Model::load(fixture_dir() / GetParam(), {.quantization = Quantization::none});
    std::string reference = GetParam();  // the folder of a file's reference: its name without .gguf
    if (reference.ends_with(".gguf")) reference.resize(reference.size() - 5);
    prompts_ = load_reference(fixture_dir() / reference, model_->config().vocab_size);
    ASSERT_EQ(model_->config().max_positions, 64);
    ASSERT_GE(std::count_if(prompts_.begin(), prompts_.end(), is_long), 3);
  }
  std::shared_ptr<const Model> model_;
  std::vector<ReferencePrompt> prompts_;
};

TEST_P(Phi3Reference, LongPromptsMatchInALongSessionAndShortOnesDoNot) {
  Session session(model_, testing::f32_cache());  // 64 positions per sequence: the long factors
  Decoder decoder(session);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    const float diff = max_logit_diff(decoder, prompts_[i]);
    if (is_long(prompts_[i])) {
      EXPECT_LE(diff, kLogitTolerance) << "prompt " << i;
    } else if (prompts_[i].ids.size() > 1) {  // one token sits at position 0, where no factor matters
      EXPECT_GT(diff, 1e-2f) << "prompt " << i << ": the short factors should differ";
    }
  }
}

TEST_P(Phi3Reference, ShortPromptsMatchInASessionOfTheOriginalContext) {
  Session session(model_, testing::f32_cache({.max_sequence_tokens = kOriginalContext}));  // the short factors
  Decoder decoder(session);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    if (!is_long(prompts_[i])) {
      EXPECT_LE(max_logit_diff(decoder, prompts_[i]), kLogitTolerance) << "prompt " << i;
    }
  }
}

// transformers' greedy loop of a long prompt uses the long factors at every step; so does a
// long session, alone, batched, and prefilled in chunks of 5 over KV blocks of 4.
TEST_P(Phi3Reference, GreedyTokensOfLongPromptsMatchAloneBatchedAndChunked) {
  std::vector<GenerationRequest> requests;
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : prompts_)
    if (is_long(p)) requests.push_back(greedy_request(p)), want.push_back(p.greedy);
  {
    Session session(model_, testing::f32_cache({.max_sequences = 1}));
    Decoder decoder(session);
    for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(decoder.generate(requests[i]).tokens, want[i]) << i;
  }
  for (SessionOptions options : {SessionOptions{.max_sequences = 4},
                                 SessionOptions{.max_sequences = 2, .max_step_tokens = 5, .kv_block_size = 4}}) {
    Session session(model_, testing::f32_cache(options));
    Decoder decoder(session);
    auto results = decoder.generate(requests);
    for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(results[i].tokens, want[i]) << i;
    EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
  }
}

TEST_P(Phi3Reference, TokenizerMatchesReferenceIds) {
  for (const auto& p : prompts_) EXPECT_EQ(model_->tokenizer().encode(p.text), p.ids) << p.text;
}

INSTANTIATE_TEST_SUITE_P(Phi3, Phi3Reference,
                         ::testing::Values("tiny-phi3", "tiny-phi3.gguf", "tiny-phi4-mini", "tiny-phi4-mini.gguf"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

// A Phi-3 GGUF missing one LongRoPE table, or whose tables do not match its rotary width, is
// refused by name.
TEST(Phi3Gguf, HalfOfLongRopeOrPartialRotaryIsRefusedByName) {
  const auto dir = testing::temp_dir("rope_context");
  auto expect_refused = [&](GgufWriter& edited, ErrorCategory category, const std::string& part) {
    edited.write(dir / "edited.gguf");
    try {
      Model::load(dir / "edited.gguf");
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), category) << e.what();
      EXPECT_NE(e.message().find(part), std::string::npos) << e.what();
    }
  };
  GgufWriter no_short(fixture_dir() / "tiny-phi3.gguf");
  no_short.drop_tensor("rope_factors_short.weight");
  expect_refused(no_short, ErrorCategory::format, "rope_factors_short.weight");
  GgufWriter partial(fixture_dir() / "tiny-phi3.gguf");
  partial.set("phi3.rope.dimension_count", uint32_t{8});  // 4 pairs; the tables hold 8
  expect_refused(partial, ErrorCategory::format, "rotary dimensions / 2");
  GgufWriter odd(fixture_dir() / "tiny-phi4-mini.gguf");
  odd.set("phi3.rope.dimension_count", uint32_t{11});
  expect_refused(odd, ErrorCategory::format, "phi3.rope.dimension_count");
}

// The reference of each prompt is transformers' forward over exactly its tokens: a session
// of that many positions matches it, one of the whole 64 does not (its base is larger).
// Llama, and GPT-NeoX (partial rotary: the exponent uses its 8 rotary dimensions).
class DynamicNtkReference : public ::testing::TestWithParam<const char*> {};

TEST_P(DynamicNtkReference, ASessionOfThePromptsLengthMatchesTransformers) {
  auto model = Model::load(fixture_dir() / GetParam());
  EXPECT_EQ(model->config().max_positions, 64);  // 16 x factor 4
  const auto prompts = load_reference(fixture_dir() / GetParam(), model->config().vocab_size);
  int long_prompts = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int n = static_cast<int>(prompts[i].ids.size());
    Session session(model, testing::f32_cache({.max_sequences = 1, .max_sequence_tokens = n}));
    Decoder decoder(session);
    EXPECT_LE(max_logit_diff(decoder, prompts[i]), kLogitTolerance) << "prompt " << i;
    if (n <= kOriginalContext) continue;
    ++long_prompts;
    Session whole(model, testing::f32_cache({.max_sequences = 1}));
    Decoder whole_decoder(whole);
    EXPECT_GT(max_logit_diff(whole_decoder, prompts[i]), 1e-2f) << "prompt " << i;
  }
  EXPECT_GE(long_prompts, 3);
}

INSTANTIATE_TEST_SUITE_P(Dynamic, DynamicNtkReference, ::testing::Values("tiny-llama-dynamic", "tiny-gpt-neox-dynamic"),
                         [](const auto& info) {
                           return std::string(info.param) == "tiny-llama-dynamic" ? "llama" : "gpt_neox";
                         });

// llama.cpp's converter writes Llama without its YaRN keys; with those llama.cpp reads
// (type, factor, original context; attn_factor 1 and betas 32 / 1 by default) the file is
// transformers' YaRN model: logits and greedy tokens to 60 positions, 4 x the original 16.
TEST(YarnGgufReference, LlamaCppKeysGiveTransformersYarn) {
  const auto path = testing::temp_dir("rope_context") / "tiny-llama-yarn.gguf";
  GgufWriter(fixture_dir() / "tiny-llama-yarn.gguf")
      .set("llama.rope.scaling.type", std::string("yarn"))
      .set("llama.rope.scaling.factor", 4.0f)
      .set("llama.rope.scaling.original_context_length", uint32_t{16})
      .write(path);
  auto model = Model::load(path, {.quantization = Quantization::none});
  EXPECT_EQ(model->config().max_positions, 64);
  const auto prompts = load_reference(fixture_dir() / "tiny-llama-yarn", model->config().vocab_size);
  Session session(model, testing::f32_cache({.max_sequences = static_cast<int>(prompts.size())}));
  Decoder decoder(session);
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_LE(max_logit_diff(decoder, prompts[i]), kLogitTolerance) << "prompt " << i;
    requests.push_back(greedy_request(prompts[i]));
  }
  auto results = decoder.generate(requests);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(results[i].tokens, prompts[i].greedy) << i;
}

// YaRN's attention factor with part of each head rotating: the cos and sin of the rotated
// dims carry it (as ggml's rope does), the softmax scale does not.
TEST(YarnGgufReference, PartialRotaryCarriesTheAttentionFactorOnCosAndSin) {
  const auto path = testing::temp_dir("rope_context") / "partial-yarn.gguf";
  GgufWriter(fixture_dir() / "tiny-llama-yarn.gguf")
      .set("llama.rope.scaling.type", std::string("yarn"))
      .set("llama.rope.scaling.factor", 4.0f)
      .set("llama.rope.dimension_count", uint32_t{8})
      .write(path);
  const Architecture arch = architecture_from_gguf(GgufFile(path));
  const float m = static_cast<float>(1.0 + 0.1 * std::log(4.0));  // ggml's YaRN attention factor
  ASSERT_EQ(arch.kinds.rotary_dim, 8);
  EXPECT_NEAR(rotary_cos_sin_scale(arch), m, 1e-6f);
  EXPECT_FLOAT_EQ(attention_scale(arch, 0), 1.0f / std::sqrt(static_cast<float>(arch.config.head_dim)));
}

}  // namespace
}  // namespace kestrel
