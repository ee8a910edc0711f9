// Several threads, each with its own Session and Decoder over one shared Model, generating
// at once (greedy and seeded sampling, on the tiny GPT-2 and tiny Llama fixtures): every
// output must equal the same request run alone, one after another. A Model is immutable
// and shared; everything mutable lives in the Session. The `tsan` preset runs this test
// under ThreadSanitizer. The models use one CPU thread each (ModelOptions::num_threads =
// 1), so OpenMP regions run on the calling thread: libgomp's own synchronization is not
// instrumented and would make TSan report false races otherwise.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>
#include <kestrel/kestrel.h>

#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;

constexpr int kThreads = 4;
constexpr int kRequestsPerThread = 4;

std::vector<GenerationRequest> requests_for(int thread) {
  static const char* const kPrompts[] = {"The quick brown fox", "Hello, world!", "Once upon a time",
                                         "12345 and 678", "caf\xc3\xa9 \xff bytes"};
  std::vector<GenerationRequest> out;
  for (int i = 0; i < kRequestsPerThread; ++i) {
    GenerationRequest r;
    r.prompt = kPrompts[(thread + i) % 5];
    r.stop.max_new_tokens = 16 + 2 * thread;
    r.stop.stop_at_eos = false;
    if ((thread + i) % 2 == 1) {  // seeded sampling; the others greedy
      r.sampling.temperature = 0.9f;
      r.sampling.top_k = 20;
      r.sampling.top_p = 0.9f;
      r.sampling.repetition_penalty = 1.1f;
      r.sampling.seed = 100 + static_cast<uint64_t>(thread * kRequestsPerThread + i);
    }
    out.push_back(r);
  }
  return out;
}

// One session per call: its requests one at a time.
std::vector<std::vector<int32_t>> run_alone(const std::shared_ptr<const Model>& model, int thread) {
  Session session(model, {.max_sequences = 2, .max_sequence_tokens = 64});
  Decoder decoder(session);
  std::vector<std::vector<int32_t>> tokens;
  for (const GenerationRequest& r : requests_for(thread)) tokens.push_back(decoder.generate(r).tokens);
  return tokens;
}

void expect_concurrent_equals_sequential(const std::string& fixture) {
  ModelOptions options;
  options.num_threads = 1;
  std::shared_ptr<const Model> model = Model::load(fixture_dir() / fixture, options);

  std::vector<std::vector<std::vector<int32_t>>> expected;
  for (int t = 0; t < kThreads; ++t) expected.push_back(run_alone(model, t));

  std::vector<std::vector<std::vector<int32_t>>> got(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        got[t] = run_alone(model, t);
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(errors[t], "") << "thread " << t;
    ASSERT_EQ(got[t].size(), expected[t].size()) << "thread " << t;
    for (size_t i = 0; i < got[t].size(); ++i) {
      EXPECT_FALSE(expected[t][i].empty());
      EXPECT_EQ(got[t][i], expected[t][i]) << fixture << ": thread " << t << ", request " << i;
    }
  }
}

TEST(Concurrency, SessionsOverOneGpt2ModelMatchSequentialRuns) {
  expect_concurrent_equals_sequential("tiny-gpt2");
}

TEST(Concurrency, SessionsOverOneLlamaModelMatchSequentialRuns) {
  expect_concurrent_equals_sequential("tiny-llama");
}

}  // namespace
}  // namespace kestrel
