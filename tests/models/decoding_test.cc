// Decoding behaviour through the public API on the tiny GPT-2 fixture: sampling
// reproducibility, stop tokens and stop strings (split across tokens, never streamed),
// cancellation, limits and KV-cache exhaustion, and buffer reuse across layers.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;

std::shared_ptr<const Model> tiny_model() {
  static std::shared_ptr<const Model> model = Model::load(fixture_dir() / "tiny-gpt2");
  return model;
}

GenerationRequest sampled_request(const std::string& prompt, uint64_t seed) {
  GenerationRequest r;
  r.prompt = prompt;
  r.sampling.temperature = 0.9f;
  r.sampling.top_k = 40;
  r.sampling.top_p = 0.95f;
  r.sampling.seed = seed;
  r.stop.max_new_tokens = 24;
  r.stop.stop_at_eos = false;
  return r;
}

TEST(Decoding, SameSeedSameTokensAloneOrBatched) {
  Session session(tiny_model(), {.max_sequences = 3});
  Decoder decoder(session);
  auto a = decoder.generate(sampled_request("The river", 7));
  auto b = decoder.generate(sampled_request("The river", 7));
  EXPECT_EQ(a.tokens, b.tokens);
  std::vector<GenerationRequest> batch = {sampled_request("Un café", 3), sampled_request("The river", 7),
                                          sampled_request("12345", 11)};
  auto results = decoder.generate(batch);
  EXPECT_EQ(results[1].tokens, a.tokens) << "a request's tokens must not depend on its batch";
}

TEST(Decoding, DifferentSeedsExploreDifferentTokens) {
  Session session(tiny_model());
  Decoder decoder(session);
  std::set<std::vector<int32_t>> distinct;
  for (uint64_t seed = 1; seed <= 6; ++seed) distinct.insert(decoder.generate(sampled_request("The river", seed)).tokens);
  EXPECT_GE(distinct.size(), 4u);
}

TEST(Decoding, TopKOneIsGreedy) {
  Session session(tiny_model());
  Decoder decoder(session);
  GenerationRequest greedy = sampled_request("Hello world", 5);
  greedy.sampling = {};
  GenerationRequest top1 = sampled_request("Hello world", 5);
  top1.sampling.top_k = 1;
  EXPECT_EQ(decoder.generate(greedy).tokens, decoder.generate(top1).tokens);
}

TEST(Decoding, RepetitionPenaltyChangesGreedyOutput) {
  Session session(tiny_model());
  Decoder decoder(session);
  GenerationRequest plain = sampled_request("the the the the", 1);
  plain.sampling = {};
  plain.stop.max_new_tokens = 32;
  GenerationRequest penalized = plain;
  penalized.sampling.repetition_penalty = 5.0f;
  auto a = decoder.generate(plain).tokens, b = decoder.generate(penalized).tokens;
  EXPECT_NE(a, b);
  std::set<int32_t> unique_b(b.begin(), b.end());
  std::set<int32_t> unique_a(a.begin(), a.end());
  EXPECT_GE(unique_b.size(), unique_a.size());
}

// The text of a greedy run, then a stop string taken from its middle: the run must end
// right before it, and no byte of it may have been streamed.
TEST(Decoding, StopStringIsCaughtAcrossTokensAndNeverStreamed) {
  Session session(tiny_model());
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt = "Once upon a time";
  r.stop.max_new_tokens = 40;
  r.stop.stop_at_eos = false;
  const std::string full = decoder.generate(r).text;
  ASSERT_GE(full.size(), 12u) << full;
  // Choose a stop string that starts mid-way and spans several tokens.
  const std::string stop = full.substr(full.size() / 2, 6);
  const size_t cut = full.find(stop);
  r.stop.stop_strings = {"never-appears-xyz", stop};
  std::string streamed;
  GenerationResult res = decoder.generate(r, [&](const StreamEvent& e) {
    streamed += e.text;
    return true;
  });
  EXPECT_EQ(res.finish, FinishReason::stop_string);
  EXPECT_EQ(res.text, full.substr(0, cut));
  EXPECT_EQ(streamed, res.text);
}

TEST(Decoding, StreamedTextEqualsResultText) {
  Session session(tiny_model());
  Decoder decoder(session);
  GenerationRequest r = sampled_request("Über 東京 🙂", 21);
  std::string streamed;
  size_t events = 0;
  auto res = decoder.generate(r, [&](const StreamEvent& e) {
    streamed += e.text;
    ++events;
    return true;
  });
  EXPECT_EQ(streamed, res.text);
  EXPECT_EQ(events, res.tokens.size());
  EXPECT_EQ(res.text, tiny_model()->tokenizer().decode(res.tokens));
}

TEST(Decoding, CallbackCancelsOnlyItsRequest) {
  Session session(tiny_model(), {.max_sequences = 2});
  Decoder decoder(session);
  std::vector<GenerationRequest> reqs = {sampled_request("a", 1), sampled_request("b", 2)};
  auto results = decoder.generate(reqs, [](const StreamEvent& e) { return !(e.request == 0); });
  EXPECT_EQ(results[0].finish, FinishReason::cancelled);
  EXPECT_EQ(results[0].tokens.size(), 1u);
  EXPECT_EQ(results[1].finish, FinishReason::length);
  EXPECT_EQ(results[1].tokens.size(), 24u);
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
}

TEST(Decoding, StopTokenEndsTheRequest) {
  Session session(tiny_model());
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt = "Once upon a time";
  r.stop.max_new_tokens = 20;
  auto full = decoder.generate(r).tokens;
  r.stop.stop_token_ids = {full[5]};
  auto res = decoder.generate(r);
  EXPECT_EQ(res.finish, FinishReason::stop_token);
  auto first = std::find(full.begin(), full.end(), full[5]);
  EXPECT_EQ(res.tokens, std::vector<int32_t>(full.begin(), first + 1));
}

TEST(Decoding, PromptOverTheSessionLimitIsAClearError) {
  Session session(tiny_model(), {.max_sequence_tokens = 16});
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt_ids.assign(12, 5);
  r.stop.max_new_tokens = 8;
  try {
    decoder.generate(r);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::limit);
    EXPECT_NE(std::string(e.what()).find("max_sequence_tokens 16"), std::string::npos) << e.what();
  }
}

TEST(Decoding, PromptBytesThatAreNotUtf8AreKept) {
  // kestrel-generate --chat off --prompt $'\xff\xfe' once found "the prompt is empty".
  Session session(tiny_model());
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt = "\xff\xfe x\xc3 \x80\xed\xa0\x80";
  r.stop.max_new_tokens = 2;
  GenerationResult result = decoder.generate(r);
  EXPECT_EQ(tiny_model()->tokenizer().decode(result.prompt_ids), r.prompt);
  EXPECT_EQ(result.tokens.size(), 2u);
}

TEST(Decoding, InvalidOptionsNameTheField) {
  Session session(tiny_model());
  Decoder decoder(session);
  auto expect_error = [&](GenerationRequest r, const std::string& field) {
    try {
      decoder.generate(r);
      ADD_FAILURE() << "no error for " << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  GenerationRequest base;
  base.prompt = "hi";
  auto r = base; r.sampling.top_p = 0; expect_error(r, "top_p");
  r = base; r.sampling.temperature = -1; expect_error(r, "temperature");
  r = base; r.sampling.top_k = -3; expect_error(r, "top_k");
  r = base; r.stop.max_new_tokens = 0; expect_error(r, "max_new_tokens");
  r = base; r.prompt = ""; expect_error(r, "prompt is empty");
  r = base; r.prompt_ids = {1, 999999}; expect_error(r, "999999");
  r = base; r.stop.stop_strings = {""}; expect_error(r, "stop_strings");
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks);
}

TEST(Decoding, KvCacheExhaustionFailsOnlyThatRequest) {
  // 6 blocks of 4 positions = 24 positions in all; two requests of 4 + 16 need 40.
  Session session(tiny_model(), {.max_sequences = 2, .kv_block_size = 4, .kv_blocks = 6});
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt_ids = {10, 11, 12, 13};
  r.stop.max_new_tokens = 16;
  r.stop.stop_at_eos = false;
  auto results = decoder.generate(std::vector<GenerationRequest>{r, r});
  int errors = 0;
  for (const auto& res : results) {
    if (res.finish == FinishReason::error) {
      ++errors;
      EXPECT_NE(res.error.find("KV cache exhausted"), std::string::npos) << res.error;
    }
  }
  EXPECT_GE(errors, 1);
  EXPECT_EQ(session.free_kv_blocks(), 6);
  // A single request that cannot fit throws.
  Session tiny(tiny_model(), {.max_sequences = 1, .kv_block_size = 4, .kv_blocks = 2});
  Decoder d2(tiny);
  EXPECT_THROW(d2.generate(r), Error);
  EXPECT_EQ(tiny.free_kv_blocks(), 2);
}

TEST(Decoding, InvalidSessionOptionsNameTheField) {
  auto expect_field = [](SessionOptions o, const std::string& field) {
    try {
      Session s(tiny_model(), o);
      ADD_FAILURE() << "no error for " << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  expect_field({.max_sequences = 0}, "max_sequences");
  expect_field({.max_sequence_tokens = 100000}, "max_sequence_tokens");
  expect_field({.max_sequences = 8, .max_step_tokens = 4}, "max_step_tokens");
  expect_field({.kv_block_size = 0}, "kv_block_size");
  expect_field({.kv_blocks = -1}, "kv_blocks");
}

// The CPU's KV cache is f16 unless asked for f32 (half the bytes); other types are refused
// by name, and the cache a session resolved is what it reports.
TEST(Decoding, KvCacheDtypeIsF16OnTheCpuUnlessAskedAndOthersAreRefused) {
  const auto model = tiny_model();
  Session f16(model, {.max_sequences = 2}), f32(model, {.max_sequences = 2, .kv_dtype = DType::f32});
  EXPECT_EQ(f16.options().kv_dtype, DType::f16);
  EXPECT_EQ(f32.options().kv_dtype, DType::f32);
  EXPECT_EQ(f32.memory().kv_cache_bytes, 2 * f16.memory().kv_cache_bytes);
  for (DType bad : {DType::bf16, DType::i8, DType::i32}) {
    try {
      Session s(model, {.kv_dtype = bad});
      ADD_FAILURE() << "no error for kv_dtype " << to_string(bad);
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::unsupported);
      EXPECT_NE(std::string(e.what()).find(std::string("SessionOptions.kv_dtype = ") + to_string(bad)),
                std::string::npos)
          << e.what();
    }
  }
}

// The activation pool is sized by the step, not the depth: a 1-layer and a 3-layer model
// with the same widths get the same activation bytes, while the KV cache grows.
TEST(Decoding, ActivationMemoryDoesNotGrowWithLayers) {
  const auto src = fixture_dir() / "tiny-gpt2";
  const auto dir = testing::temp_dir("one-layer");
  nlohmann::json config = nlohmann::json::parse(testing::read_file(src / "config.json"));
  config["n_layer"] = 1;
  testing::write_file(dir / "config.json", config.dump());
  for (const char* f : {"model.safetensors", "tokenizer.json"})
    std::filesystem::copy_file(src / f, dir / f);
  auto one = Model::load(dir);
  Session s1(one), s3(tiny_model());
  EXPECT_EQ(s1.memory().activation_bytes, s3.memory().activation_bytes);
  EXPECT_EQ(s3.memory().kv_cache_bytes, 3 * s1.memory().kv_cache_bytes);
  EXPECT_GT(s1.memory().activation_bytes, 0u);
}

}  // namespace
}  // namespace kestrel
