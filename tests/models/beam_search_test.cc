// Beam search against Hugging Face transformers: generate(num_beams, do_sample=False,
// length_penalty, early_stopping, num_return_sequences) on the tiny fixtures, recorded by
// tests/fixtures/make_beam_reference.py in beam_reference.json: the same sequences, best
// first, and scores within 1e-4 (as sums of log-probs). Also: beams share the prompt's KV blocks (copy-on-write),
// give back every block, and bad options name their field.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;

std::shared_ptr<const Model> load(const std::string& name) {
  static std::map<std::string, std::shared_ptr<const Model>> cache;
  auto& model = cache[name];
  // f32 weights (a GGUF's blocks dequantized exactly): the reference is transformers'
  // search on those values, held to 1e-4.
  if (!model) model = Model::load(fixture_dir() / name, {.num_threads = 2, .quantization = Quantization::none});
  return model;
}

EarlyStopping early_stopping(const nlohmann::json& j) {
  if (j.is_string()) return EarlyStopping::never;
  return j.get<bool>() ? EarlyStopping::enough : EarlyStopping::heuristic;
}

TEST(BeamSearch, MatchesTransformers) {
  std::ifstream in(fixture_dir() / "beam_reference.json");
  ASSERT_TRUE(in) << "tests/fixtures/beam_reference.json is missing";
  const auto reference = nlohmann::json::parse(in);
  int cases = 0;
  for (const auto& c : reference["cases"]) {
    const std::string model_name = c["model"];
    SCOPED_TRACE(model_name + " beams " + std::to_string(c["num_beams"].get<int>()) + " length_penalty " +
                 std::to_string(c["length_penalty"].get<double>()) + " early_stopping " + c["early_stopping"].dump() +
                 " prompt of " + std::to_string(c["prompt_ids"].size()));
    auto model = load(model_name);
    Session session(model, testing::f32_cache({.max_sequences = 5, .kv_block_size = 4}));
    Decoder decoder(session);
    GenerationRequest r;
    r.prompt_ids = c["prompt_ids"].get<std::vector<int32_t>>();
    r.beam.num_beams = c["num_beams"];
    r.beam.length_penalty = c["length_penalty"];
    r.beam.early_stopping = early_stopping(c["early_stopping"]);
    r.num_return_sequences = c["num_return_sequences"];
    r.stop.max_new_tokens = c["max_new_tokens"];
    r.stop.stop_at_eos = false;
    r.stop.stop_token_ids = {c["eos_token_id"].get<int32_t>()};
    const GenerationResult result = decoder.generate(r);
    const auto& want = c["sequences"];
    ASSERT_EQ(result.sequences.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(result.sequences[i].tokens, want[i].get<std::vector<int32_t>>()) << "sequence " << i;
      // The score is the sum of log-probs over length ^ length_penalty: within 1e-4 of
      // transformers' as a sum (the logits differ by about 1e-5 each), so a negative
      // penalty, which multiplies the sum by the length, widens the bound by as much.
      const double scale = std::max(1.0, std::pow(static_cast<double>(want[i].size()), -r.beam.length_penalty));
      EXPECT_NEAR(result.sequences[i].score, c["scores"][i].get<double>(), 1e-4 * scale) << "sequence " << i;
    }
    EXPECT_EQ(result.tokens, result.sequences[0].tokens);
    EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks) << "blocks leaked";
    ++cases;
  }
  EXPECT_EQ(cases, 24);
}

TEST(BeamSearch, BeamsShareThePromptBlocks) {
  // A 40-token prompt in blocks of 4 (10 blocks) and 4 beams of 6 new tokens: sharing
  // needs about 10 + 4 * 3 blocks, copies of the prompt 4 * 12. A pool of 26 only fits
  // the first.
  auto model = load("tiny-llama");
  Session session(model, {.max_sequences = 4, .max_sequence_tokens = 64, .kv_block_size = 4, .kv_blocks = 26});
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt_ids.resize(40);
  for (int i = 0; i < 40; ++i) r.prompt_ids[i] = 10 + 7 * i;
  r.beam.num_beams = 4;
  r.num_return_sequences = 4;
  r.stop.max_new_tokens = 6;
  r.stop.stop_at_eos = false;
  std::string streamed;
  std::vector<int32_t> streamed_tokens;
  const GenerationResult result = decoder.generate(r, [&](const StreamEvent& e) {
    streamed += e.text;
    streamed_tokens.push_back(e.token);
    return true;
  });
  ASSERT_EQ(result.finish, FinishReason::length) << result.error;
  EXPECT_EQ(result.sequences.size(), 4u);
  for (size_t i = 1; i < result.sequences.size(); ++i)
    EXPECT_GE(result.sequences[i - 1].score, result.sequences[i].score) << "best first";
  EXPECT_EQ(streamed_tokens, result.tokens) << "the best sequence streams once search ends";
  EXPECT_EQ(streamed, result.text);
  EXPECT_EQ(session.free_kv_blocks(), 26);

  // num_beams = 1 beam search is greedy decoding.
  GenerationRequest greedy = r;
  greedy.beam.num_beams = 1;
  greedy.num_return_sequences = 1;
  GenerationRequest two = r;
  two.beam.num_beams = 2;
  two.num_return_sequences = 1;
  two.beam.early_stopping = EarlyStopping::never;
  EXPECT_NO_THROW(decoder.generate(two));
  EXPECT_EQ(decoder.generate(greedy).tokens.size(), 6u);
}

TEST(BeamSearch, BadOptionsNameTheField) {
  auto model = load("tiny-gpt2");
  Session session(model, {.max_sequences = 4});
  Decoder decoder(session);
  auto expect_error = [&](GenerationRequest r, const std::string& field) {
    r.prompt_ids = {1, 2, 3};
    try {
      decoder.generate(r);
      ADD_FAILURE() << "no error for " << field;
    } catch (const Error& e) {
      EXPECT_NE(e.message().find(field), std::string::npos) << e.message();
    }
  };
  GenerationRequest r;
  r.beam.num_beams = 5;
  expect_error(r, "SessionOptions.max_sequences");
  r.beam.num_beams = 3;
  r.num_return_sequences = 4;
  expect_error(r, "num_return_sequences");
  r.num_return_sequences = 1;
  r.sampling.temperature = 0.5f;
  expect_error(r, "SamplingOptions.temperature");
  r.sampling.temperature = 0;
  r.stop.stop_strings = {"x"};
  expect_error(r, "StopOptions.stop_strings");
  GenerationRequest greedy_n;
  greedy_n.num_return_sequences = 2;
  expect_error(greedy_n, "num_return_sequences");
}

}  // namespace
}  // namespace kestrel
