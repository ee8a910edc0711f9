// The Engine (continuous batching while requests arrive from other threads) against
// Decoder::generate running each request alone: greedy and seeded sampled outputs must be
// identical whatever the batch they shared. Also cancellation (slot and blocks freed),
// the bounded queue's refusal, and validation errors at submit().
#include <gtest/gtest.h>

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

TEST(Engine, CancelFreesTheSlotAndBlocks) {
  auto model = tiny_llama();
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
  for (int i = 0; i < 8; ++i) {
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
