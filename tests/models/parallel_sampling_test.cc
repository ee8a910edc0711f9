// Parallel sampling (GenerationRequest.num_return_sequences with temperature > 0): n
// completions of one prompt sharing its KV blocks. Completion j is exactly the single
// request with seed + j; each streams its own tokens; the prompt is cached once.
#include <gtest/gtest.h>

#include <kestrel/kestrel.h>
#include <map>
#include <set>

#include "test_support.h"

namespace kestrel {
namespace {

std::shared_ptr<const Model> tiny_llama() {
  static auto model = Model::load(testing::fixture_dir() / "tiny-llama", {.num_threads = 2});
  return model;
}

GenerationRequest sampled(uint64_t seed, int n) {
  GenerationRequest r;
  r.prompt = "Once upon a time there was a river that ran past the mill";
  r.sampling = {.temperature = 0.9f, .top_k = 50, .repetition_penalty = 1.1f, .seed = seed};
  r.stop.max_new_tokens = 20;
  r.stop.stop_at_eos = false;
  r.num_return_sequences = n;
  return r;
}

TEST(ParallelSampling, CompletionJIsTheRequestWithSeedPlusJ) {
  // Blocks of 4 so the prompt's last block is partly filled and shared: copy-on-write.
  Session session(tiny_llama(), {.max_sequences = 6, .kv_block_size = 4});
  Decoder decoder(session);
  std::vector<GenerationRequest> requests = {sampled(10, 4), sampled(77, 2)};
  std::map<std::pair<size_t, int>, std::vector<int32_t>> streamed;
  const auto results = decoder.generate(requests, [&](const StreamEvent& e) {
    streamed[{e.request, e.sequence}].push_back(e.token);
    return true;
  });
  for (size_t r = 0; r < requests.size(); ++r) {
    const int n = requests[r].num_return_sequences;
    ASSERT_EQ(results[r].sequences.size(), static_cast<size_t>(n));
    EXPECT_EQ(results[r].sequences[0].tokens, results[r].tokens);
    std::set<std::vector<int32_t>> distinct;
    for (int j = 0; j < n; ++j) {
      const auto alone = decoder.generate(sampled(requests[r].sampling.seed + j, 1));
      EXPECT_EQ(results[r].sequences[j].tokens, alone.tokens) << "request " << r << " completion " << j;
      EXPECT_EQ(results[r].sequences[j].text, alone.text);
      EXPECT_EQ(results[r].sequences[j].finish, FinishReason::length);
      EXPECT_EQ((streamed[{r, j}]), alone.tokens) << "streamed tokens of completion " << j;
      distinct.insert(alone.tokens);
    }
    EXPECT_EQ(distinct.size(), static_cast<size_t>(n)) << "completions should differ";
  }
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks) << "blocks leaked";
}

TEST(ParallelSampling, ThePromptIsCachedOnce) {
  // 50 prompt tokens + 20 new in blocks of 4: one completion needs 18 blocks; 4 that each
  // copied the prompt would need 72, sharing it 12 + 4 * 6 = 36 (each copies the prompt's
  // last, half-full block when it first writes into it).
  Session session(tiny_llama(), {.max_sequences = 4, .max_sequence_tokens = 80, .kv_block_size = 4, .kv_blocks = 40});
  Decoder decoder(session);
  GenerationRequest r = sampled(5, 4);
  r.prompt_ids = tiny_llama()->tokenizer().encode(r.prompt + r.prompt + r.prompt);
  r.prompt_ids.resize(50);
  const auto result = decoder.generate(r);
  ASSERT_EQ(result.sequences.size(), 4u);
  for (const auto& seq : result.sequences) EXPECT_EQ(seq.finish, FinishReason::length);
  EXPECT_EQ(session.free_kv_blocks(), 40);
}

TEST(ParallelSampling, MoreCompletionsThanSequencesIsAClearError) {
  Session session(tiny_llama(), {.max_sequences = 2});
  Decoder decoder(session);
  try {
    decoder.generate(sampled(1, 3));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("num_return_sequences"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace kestrel
