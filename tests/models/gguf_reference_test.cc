// GGUF files end to end through the public API against transformers (fixtures made by
// tests/fixtures/make_tiny_gguf.py):
//   tiny-llama.gguf: the tiny Llama converted as llama.cpp does (Q/K rows permuted for
//     adjacent-pair rope, so Kestrel must use GPT-J pairing), with Q8_0, Q4_0 and Q4_1
//     tensors; its reference is transformers on the dequantized weights.
//   tiny-gpt2.gguf: the f16 tiny GPT-2 (F16 matrices, Conv1D transposed, tied head); its
//     reference is tiny-gpt2-f16's, as every stored value is the same.
// fp32 logits within 1e-4 at every prompt position, 20 greedy tokens identical (alone and
// batched), the tokenizer read from GGUF metadata giving the reference's ids.
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

constexpr float kLogitTolerance = 1e-4f;  // fp32 compute on exactly dequantized weights

struct GgufCase {
  const char* name;
  const char* file;           // in tests/fixtures
  const char* reference_dir;  // in tests/fixtures
};

void PrintTo(const GgufCase& c, std::ostream* os) { *os << c.file; }

class GgufReference : public ::testing::TestWithParam<GgufCase> {
 protected:
  void SetUp() override {
    model_ = Model::load(fixture_dir() / GetParam().file);
    prompts_ = load_reference(fixture_dir() / GetParam().reference_dir, model_->config().vocab_size);
    ASSERT_GE(prompts_.size(), 4u);
  }

  GenerationRequest greedy_request(const ReferencePrompt& p) const {
    GenerationRequest r;
    r.prompt_ids = p.ids;
    r.stop.max_new_tokens = static_cast<int>(p.greedy.size());
    r.stop.stop_at_eos = false;  // the reference does not stop at EOS
    return r;
  }

  std::shared_ptr<const Model> model_;
  std::vector<ReferencePrompt> prompts_;
};

TEST_P(GgufReference, LogitsAtEveryPromptPositionMatch) {
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
}

TEST_P(GgufReference, TokenizerFromMetadataMatchesReferenceIds) {
  for (const auto& p : prompts_) EXPECT_EQ(model_->tokenizer().encode(p.text), p.ids) << p.text;
}

TEST_P(GgufReference, GreedyTokensMatchAloneAndBatched) {
  {
    Session session(model_, {.max_sequences = 1});
    Decoder decoder(session);
    for (const auto& p : prompts_) EXPECT_EQ(decoder.generate(greedy_request(p)).tokens, p.greedy) << p.text;
  }
  Session session(model_, {.max_sequences = 3, .max_step_tokens = 7});
  Decoder decoder(session);
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts_) requests.push_back(greedy_request(p));
  auto results = decoder.generate(requests);
  for (size_t i = 0; i < prompts_.size(); ++i) EXPECT_EQ(results[i].tokens, prompts_[i].greedy) << i;
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
}

INSTANTIATE_TEST_SUITE_P(Gguf, GgufReference,
                         ::testing::Values(GgufCase{"tiny_llama", "tiny-llama.gguf", "tiny-llama-gguf"},
                                           GgufCase{"tiny_gpt2", "tiny-gpt2.gguf", "tiny-gpt2-f16"}),
                         [](const ::testing::TestParamInfo<GgufCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace kestrel
