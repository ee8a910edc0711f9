// The Engine (continuous batching while requests arrive from other threads) against
// Decoder::generate running each request alone: greedy and seeded sampled outputs must be
// identical whatever the batch they shared. Also cancellation (slot and blocks freed),
// the bounded queue's refusal, and validation errors at submit().
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>
#include <kestrel/kestrel.h>

#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;

std::shared_ptr<const Model> tiny_llama() {
  ModelOptions options;
  options.num_threads = 1;
  return Model::load(fixture_dir() / "tiny-llama", options);
}

std::vector<GenerationRequest> mixed_requests() {
  static const char* const kPrompts[] = {"The quick brown fox", "Hello, world!", "Once upon a time",
                                         "12345 and 678", "caf\xc3\xa9 \xff bytes"};
  std::vector<GenerationRequest> out;
  for (int i = 0; i < 12; ++i) {
    GenerationRequest r;
    r.prompt = kPrompts[i % 5];
    r.stop.max_new_tokens = 6 + 3 * (i % 4);
    r.stop.stop_at_eos = false;
    if (i % 3 == 1) {  // seeded sampling; the others greedy
      r.sampling.temperature = 0.8f;
      r.sampling.top_k = 20;
      r.sampling.seed = 7 + static_cast<uint64_t>(i);
    }
    if (i % 5 == 4) {  // n completions sharing the prompt
      r.sampling.temperature = 0.9f;
      r.sampling.seed = 40;
      r.num_return_sequences = 2;
    }
    out.push_back(r);
  }
  return out;
}

TEST(Engine, ConcurrentSubmissionsMatchRequestsRunAlone) {
  auto model = tiny_llama();
  const std::vector<GenerationRequest> requests = mixed_requests();
  std::vector<GenerationResult> expected;
  {
    Session session(model, {.max_sequences = 2, .max_sequence_tokens = 64});
    Decoder decoder(session);
    for (const GenerationRequest& r : requests) expected.push_back(decoder.generate(r));
  }
  // Few slots and small steps: requests queue, join mid-run and prefill in chunks.
  Session session(model, {.max_sequences = 4, .max_sequence_tokens = 64, .max_step_tokens = 8});
  Engine engine(session);
  std::vector<GenerationResult> got(requests.size());
  std::vector<std::string> streamed(requests.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < requests.size(); ++i)
    clients.emplace_back([&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(3 * i));  // arrivals spread out
      auto handle = engine.submit(requests[i]);
      ASSERT_NE(handle, nullptr);
      std::vector<TokenEvent> events;
      while (handle->next(events, std::chrono::milliseconds(100))) {
      }
      for (const TokenEvent& e : events)
        if (e.sequence == 0) streamed[i] += e.text;
      got[i] = handle->wait();
    });
  for (auto& c : clients) c.join();
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(got[i].tokens, expected[i].tokens) << "request " << i;
    EXPECT_EQ(got[i].text, expected[i].text) << "request " << i;
    EXPECT_EQ(streamed[i], expected[i].text) << "request " << i;
    ASSERT_EQ(got[i].sequences.size(), expected[i].sequences.size()) << "request " << i;
    for (size_t j = 0; j < got[i].sequences.size(); ++j)
      EXPECT_EQ(got[i].sequences[j].tokens, expected[i].sequences[j].tokens) << "request " << i << " seq " << j;
  }
  const EngineStats stats = engine.stats();
  EXPECT_EQ(stats.submitted, requests.size());
  EXPECT_EQ(stats.finished, requests.size());
  EXPECT_EQ(stats.refused, 0u);
}

// On the default model (milliseconds per token, where the tiny fixtures take microseconds):
// a request cancelled after its first token is far from its 100th.
TEST(Engine, CancelFreesTheSlotAndBlocks) {
  const auto path = std::filesystem::path(KESTREL_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent: run scripts/fetch-default-model.sh";
  ModelOptions options;
  options.num_threads = 1;
  auto model = Model::load(path, options);
  Session session(model, {.max_sequences = 1, .max_sequence_tokens = 128});
  const int free_before = session.free_kv_blocks();
  Engine engine(session);
  GenerationRequest long_request;
  long_request.prompt = "Once upon a time";
  long_request.stop.max_new_tokens = 100;
  long_request.stop.stop_at_eos = false;
  auto first = engine.submit(long_request);
  GenerationRequest queued = long_request;
  queued.stop.max_new_tokens = 3;
  auto second = engine.submit(queued);  // waits for the only slot
  ASSERT_TRUE(first && second);
  std::vector<TokenEvent> events;
  while (events.empty()) ASSERT_TRUE(first->next(events, std::chrono::milliseconds(1000)));
  first->cancel();
  const GenerationResult cancelled = first->wait();
  EXPECT_EQ(cancelled.finish, FinishReason::cancelled);
  EXPECT_LT(cancelled.tokens.size(), 100u);
  // The slot went to the queued request, which runs to its end.
  const GenerationResult next = second->wait();
  EXPECT_EQ(next.finish, FinishReason::length);
  EXPECT_EQ(next.tokens.size(), 3u);
  // A request cancelled while queued never starts.
  auto third = engine.submit(long_request);
  auto fourth = engine.submit(queued);
  fourth->cancel();
  third->cancel();
  EXPECT_EQ(fourth->wait().finish, FinishReason::cancelled);
  EXPECT_EQ(third->wait().finish, FinishReason::cancelled);
  // Between steps every block is back in the pool.
  for (int i = 0; i < 100 && engine.stats().kv_blocks_used != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
  EXPECT_EQ(engine.stats().running, 0);
  EXPECT_EQ(session.free_kv_blocks(), free_before);
}

// SessionOptions::prefix_caching: a request whose prompt starts with an earlier request's
// prompt and output takes those blocks instead of computing them, with the same tokens as a
// session without the cache; so do parallel samples and requests that share a system prompt.
TEST(PrefixCache, ReusedBlocksGiveTheTokensOfRecomputedOnes) {
  auto model = tiny_llama();
  const SessionOptions plain{.max_sequences = 4, .max_sequence_tokens = 128, .max_step_tokens = 16};
  SessionOptions cached_options = plain;
  cached_options.prefix_caching = true;
  Session cached(model, cached_options), uncached(model, plain);
  Decoder with_cache(cached), without_cache(uncached);

  GenerationRequest first;
  first.prompt = "The quick brown fox jumps over the lazy dog. Once upon a time there was a cat";
  first.stop.max_new_tokens = 12;
  first.stop.stop_at_eos = false;
  const GenerationResult a = with_cache.generate(first);
  EXPECT_EQ(a.cached_prompt_tokens, 0);
  EXPECT_EQ(a.tokens, without_cache.generate(first).tokens);

  // The next turn: the whole history, then more.
  GenerationRequest next = first;
  next.prompt_ids = a.prompt_ids;
  next.prompt_ids.insert(next.prompt_ids.end(), a.tokens.begin(), a.tokens.end());
  next.prompt_ids.insert(next.prompt_ids.end(), a.prompt_ids.begin() + 1, a.prompt_ids.begin() + 6);
  const GenerationResult b = with_cache.generate(next);
  const int bs = cached.options().kv_block_size;
  // Every whole block of the first history is reused (its last token was never fed).
  const int history = static_cast<int>(a.prompt_ids.size() + a.tokens.size()) - 1;
  EXPECT_EQ(b.cached_prompt_tokens, history / bs * bs);
  EXPECT_GT(b.cached_prompt_tokens, 0);
  EXPECT_EQ(b.tokens, without_cache.generate(next).tokens);

  // Several requests at once sharing the first prompt, two of them sampling two
  // completions each.
  std::vector<GenerationRequest> batch(3, first);
  batch[1].sampling = {.temperature = 0.9f, .seed = 5};
  batch[1].num_return_sequences = 2;
  batch[2].prompt += " and a dog";
  const auto got = with_cache.generate(batch);
  const auto expected = without_cache.generate(batch);
  for (size_t i = 0; i < batch.size(); ++i) {
    EXPECT_GT(got[i].cached_prompt_tokens, 0) << "request " << i;
    EXPECT_EQ(got[i].tokens, expected[i].tokens) << "request " << i;
    ASSERT_EQ(got[i].sequences.size(), expected[i].sequences.size());
    for (size_t j = 0; j < got[i].sequences.size(); ++j)
      EXPECT_EQ(got[i].sequences[j].tokens, expected[i].sequences[j].tokens) << "request " << i << " seq " << j;
  }
  // Nothing is held once every request has ended; the cached blocks count as free.
  EXPECT_EQ(cached.free_kv_blocks(), uncached.free_kv_blocks());
}

TEST(Engine, FullQueueRefusesAndBadRequestsThrow) {
  auto model = tiny_llama();
  Session session(model, {.max_sequences = 1, .max_sequence_tokens = 64});
  Engine engine(session, {.max_queued = 2});
  GenerationRequest r;
  r.prompt = "Hello";
  r.stop.max_new_tokens = 40;
  r.stop.stop_at_eos = false;
  std::vector<std::shared_ptr<RequestHandle>> accepted;
  int refused = 0;
  for (int i = 0; i < 32; ++i) {  // far faster than the engine runs 40-token requests
    auto handle = engine.submit(r);
    if (handle)
      accepted.push_back(handle);
    else
      ++refused;
  }
  // One may run and two wait; at most a few more fit as the first ones finish.
  EXPECT_GE(refused, 1);
  EXPECT_EQ(engine.stats().refused, static_cast<uint64_t>(refused));
  for (auto& h : accepted) EXPECT_EQ(h->wait().tokens.size(), 40u);

  GenerationRequest too_long = r;
  too_long.stop.max_new_tokens = 1000;
  EXPECT_THROW(engine.submit(too_long), Error);
  GenerationRequest bad = r;
  bad.sampling.top_p = 2.0f;
  EXPECT_THROW(engine.submit(bad), Error);
  EXPECT_THROW(Engine(session, {.max_queued = 0}), Error);
}

}  // namespace
}  // namespace kestrel
