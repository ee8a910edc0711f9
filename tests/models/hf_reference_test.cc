// Hugging Face architectures end to end through the public API against transformers
// (fixtures made by tests/fixtures/make_tiny_gpt2.py and make_tiny_llama.py, one
// reference layout): fp32 logits at every prompt position within 1e-4 (max abs) and 20
// greedy tokens identical, alone, batched, chunked and with sequences joining mid-run.
// The same checks run on every fixture directory: GPT-2 with f32, f16 and bf16 (sharded)
// stored weights, and Llama (RMSNorm, rotary with rope_theta 5000, SwiGLU, GQA with
// 4 query and 2 KV heads, untied LM head) in f32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <kestrel/kestrel.h>

#include "reference_fixture.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;
using testing::load_reference;
using testing::ReferencePrompt;

constexpr float kLogitTolerance = 1e-4f;  // fp32 compute, max abs over all logits

class HfReference : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = fixture_dir() / GetParam();
    model_ = Model::load(dir_);
    prompts_ = load_reference(dir_, model_->config().vocab_size);
    ASSERT_GE(prompts_.size(), 4u);
  }

  GenerationRequest greedy_request(const ReferencePrompt& p) const {
    GenerationRequest r;
    r.prompt_ids = p.ids;
    r.stop.max_new_tokens = static_cast<int>(p.greedy.size());
    r.stop.stop_at_eos = false;  // the reference does not stop at EOS
    return r;
  }

  std::filesystem::path dir_;
  std::shared_ptr<const Model> model_;
  std::vector<ReferencePrompt> prompts_;
};

TEST_P(HfReference, LogitsAtEveryPromptPositionMatch) {
  Session session(model_);
  Decoder decoder(session);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    const auto& p = prompts_[i];
    std::vector<float> logits = decoder.score(p.ids);
    ASSERT_EQ(logits.size(), p.logits.size());
    float max_diff = 0;
    for (size_t j = 0; j < logits.size(); ++j) max_diff = std::max(max_diff, std::fabs(logits[j] - p.logits[j]));
    EXPECT_LE(max_diff, kLogitTolerance) << "prompt " << i << " (" << p.ids.size() << " tokens)";
  }
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks) << "score leaked KV blocks";
}

TEST_P(HfReference, TokenizerMatchesReferenceIds) {
  for (const auto& p : prompts_) EXPECT_EQ(model_->tokenizer().encode(p.text), p.ids) << p.text;
}

TEST_P(HfReference, GreedyTokensMatchOneByOne) {
  Session session(model_, {.max_sequences = 1});
  Decoder decoder(session);
  for (const auto& p : prompts_) {
    GenerationResult r = decoder.generate(greedy_request(p));
    EXPECT_EQ(r.tokens, p.greedy) << p.text;
    EXPECT_EQ(r.finish, FinishReason::length);
  }
}

TEST_P(HfReference, GreedyTokensMatchInOneBatch) {
  Session session(model_, {.max_sequences = static_cast<int>(prompts_.size())});
  Decoder decoder(session);
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts_) requests.push_back(greedy_request(p));
  auto results = decoder.generate(requests);
  ASSERT_EQ(results.size(), prompts_.size());
  for (size_t i = 0; i < prompts_.size(); ++i) EXPECT_EQ(results[i].tokens, prompts_[i].greedy) << i;
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
}

// Two slots for all prompts (requests join as others finish), prompts prefilled in chunks
// of 5 tokens, KV blocks of 4 positions: every code path of the scheduler at once.
TEST_P(HfReference, GreedyTokensMatchWithChunkedPrefillAndJoiningRequests) {
  Session session(model_, {.max_sequences = 2, .max_step_tokens = 5, .kv_block_size = 4});
  Decoder decoder(session);
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts_) requests.push_back(greedy_request(p));
  requests[1].stop.max_new_tokens = 7;  // finishes early, so a waiting request joins mid-run
  auto results = decoder.generate(requests);
  for (size_t i = 0; i < prompts_.size(); ++i) {
    std::vector<int32_t> want = prompts_[i].greedy;
    want.resize(requests[i].stop.max_new_tokens);
    EXPECT_EQ(results[i].tokens, want) << i;
  }
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
}

std::string fixture_test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

// GPT-2 in every stored precision of tests/fixtures/make_tiny_gpt2.py.
INSTANTIATE_TEST_SUITE_P(Gpt2, HfReference,
                         ::testing::Values("tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-bf16-sharded"),
                         fixture_test_name);

// Llama from tests/fixtures/make_tiny_llama.py.
INSTANTIATE_TEST_SUITE_P(Llama, HfReference, ::testing::Values("tiny-llama"), fixture_test_name);

}  // namespace
}  // namespace kestrel
