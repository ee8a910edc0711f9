// Log-probabilities (OutputOptions): every generated token's log-probability and top
// alternatives against an independent log_softmax (f64) of the logits that Decoder::score
// gives for the same history (teacher forcing, itself checked against transformers in
// hf_reference_test.cc), for requests batched in the Engine: greedy, sampled with penalties and
// filters (the reported distribution is the model's, before them), n completions, a stop
// string and prompt-lookup speculation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>
#include <kestrel/kestrel.h>

#include "test_support.h"

namespace kestrel {
namespace {

std::shared_ptr<const Model> tiny_llama() {
  ModelOptions options;
  options.num_threads = 1;
  return Model::load(testing::fixture_dir() / "tiny-llama", options);
}

// log_softmax of the logits after `history`, in f64.
std::vector<double> reference_logprobs(Decoder& scorer, const std::vector<int32_t>& history, int vocab) {
  const std::vector<float> logits = scorer.score(history);
  const float* row = logits.data() + (history.size() - 1) * static_cast<size_t>(vocab);
  const double max = *std::max_element(row, row + vocab);
  double sum = 0.0;
  for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
  std::vector<double> out(static_cast<size_t>(vocab));
  for (int v = 0; v < vocab; ++v) out[static_cast<size_t>(v)] = row[v] - max - std::log(sum);
  return out;
}

std::vector<GenerationRequest> requests() {
  std::vector<GenerationRequest> out;
  const char* prompts[] = {"The quick brown fox", "Once upon a time", "12345 and 678", "Hello, world!"};
  for (int i = 0; i < 8; ++i) {
    GenerationRequest r;
    r.prompt = prompts[i % 4];
    r.stop.max_new_tokens = 5 + 2 * i;
    r.stop.stop_at_eos = false;
    r.output = {.logprobs = true, .top_logprobs = i % 2 == 0 ? 5 : kMaxTopLogprobs};
    if (i == 1) r.output.top_logprobs = 0;
    if (i % 4 == 1) {
      r.sampling = {.temperature = 1.3f, .top_k = 7, .top_p = 0.9f, .repetition_penalty = 1.3f, .seed = 11u + i};
    }
    if (i == 3) {
      r.sampling = {.temperature = 0.9f, .seed = 5};
      r.num_return_sequences = 3;
    }
    if (i == 4) r.stop.stop_strings = {"e"};
    if (i == 6) r.speculative = {.method = SpeculativeMethod::prompt_lookup, .num_draft_tokens = 3};
    out.push_back(r);
  }
  return out;
}

// Checks one completion's log-probabilities against the reference at every position.
void expect_reference(Decoder& scorer, int vocab, const std::vector<int32_t>& prompt, const std::vector<int32_t>& tokens,
                      const std::vector<TokenLogprobs>& logprobs, const GenerationRequest& r, const std::string& what) {
  // Tolerance: the engine's batched steps and teacher forcing round f32 differently.
  constexpr double kTolerance = 2e-4;
  ASSERT_EQ(logprobs.size(), tokens.size()) << what;
  std::vector<int32_t> history = prompt;
  for (size_t j = 0; j < tokens.size(); ++j) {
    const std::vector<double> ref = reference_logprobs(scorer, history, vocab);
    const TokenLogprobs& got = logprobs[j];
    EXPECT_NEAR(got.logprob, ref[static_cast<size_t>(tokens[j])], kTolerance) << what << " token " << j;
    ASSERT_EQ(got.top.size(), static_cast<size_t>(r.output.top_logprobs)) << what;
    std::vector<double> sorted = ref;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    for (size_t k = 0; k < got.top.size(); ++k) {
      EXPECT_NEAR(got.top[k].logprob, sorted[k], kTolerance) << what << " token " << j << " top " << k;
      EXPECT_NEAR(got.top[k].logprob, ref[static_cast<size_t>(got.top[k].token)], kTolerance) << what;
      if (k > 0) {
        EXPECT_GE(got.top[k - 1].logprob, got.top[k].logprob) << what;
      }
    }
    // Greedy: the chosen token is the most likely one, to the bit.
    if (r.sampling.temperature == 0 && !got.top.empty()) {
      EXPECT_EQ(got.logprob, got.top[0].logprob) << what;
    }
    history.push_back(tokens[j]);
  }
}

TEST(Logprobs, EngineReportsTheModelsLogSoftmaxForEveryToken) {
  auto model = tiny_llama();
  const int vocab = model->config().vocab_size;
  const std::vector<GenerationRequest> reqs = requests();
  // An f32 cache: the engine's batched steps and the one-sequence scorer agree to fp32
  // rounding (an f16 cache may round a key one step apart between the two).
  Session session(model, testing::f32_cache({.max_sequences = 6, .max_sequence_tokens = 64, .max_step_tokens = 16}));
  Engine engine(session);
  std::vector<GenerationResult> got(reqs.size());
  std::vector<std::vector<TokenEvent>> streamed(reqs.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < reqs.size(); ++i)
    clients.emplace_back([&, i] {
      auto handle = engine.submit(reqs[i]);
      ASSERT_NE(handle, nullptr);
      while (handle->next(streamed[i], std::chrono::milliseconds(100))) {
      }
      got[i] = handle->wait();
    });
  for (auto& c : clients) c.join();

  Session scoring(model, testing::f32_cache({.max_sequences = 1, .max_sequence_tokens = 64}));
  Decoder scorer(scoring);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const GenerationResult& res = got[i];
    ASSERT_NE(res.finish, FinishReason::error) << res.error;
    const std::string what = "request " + std::to_string(i);
    if (res.sequences.empty()) {
      expect_reference(scorer, vocab, res.prompt_ids, res.tokens, res.logprobs, reqs[i], what);
    } else {
      for (size_t s = 0; s < res.sequences.size(); ++s)
        expect_reference(scorer, vocab, res.prompt_ids, res.sequences[s].tokens, res.sequences[s].logprobs, reqs[i],
                         what + " sequence " + std::to_string(s));
    }
    // Every streamed token carried the log-probabilities the result holds.
    std::vector<size_t> seen(std::max<size_t>(1, res.sequences.size()));
    for (const TokenEvent& e : streamed[i]) {
      ASSERT_TRUE(e.logprobs.has_value()) << what;
      const auto& all = res.sequences.empty() ? res.logprobs : res.sequences[static_cast<size_t>(e.sequence)].logprobs;
      const size_t j = seen[static_cast<size_t>(e.sequence)]++;
      ASSERT_LT(j, all.size()) << what;
      EXPECT_EQ(e.logprobs->logprob, all[j].logprob) << what;
      EXPECT_EQ(e.logprobs->top.size(), all[j].top.size()) << what;
    }
  }
  EXPECT_EQ(got[4].finish, FinishReason::stop_string);  // its tokens past the cut are still in the result
}

TEST(Logprobs, OffByDefaultAndChecked) {
  auto model = tiny_llama();
  Session session(model, {.max_sequences = 4, .max_sequence_tokens = 64});
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt = "Hello";
  r.stop.max_new_tokens = 3;
  r.stop.stop_at_eos = false;
  EXPECT_TRUE(decoder.generate(r).logprobs.empty());
  GenerationRequest bad = r;
  bad.output = {.logprobs = true, .top_logprobs = kMaxTopLogprobs + 1};
  EXPECT_THROW(decoder.generate(bad), Error);
  bad.output = {.logprobs = false, .top_logprobs = 2};
  EXPECT_THROW(decoder.generate(bad), Error);
  bad.output = {.logprobs = true, .top_logprobs = -1};
  EXPECT_THROW(decoder.generate(bad), Error);
  bad = r;
  bad.output.logprobs = true;
  bad.beam.num_beams = 2;
  EXPECT_THROW(decoder.generate(bad), Error);
  // Decoder::generate reports them too (one request alone).
  GenerationRequest on = r;
  on.output = {.logprobs = true, .top_logprobs = 3};
  const GenerationResult res = decoder.generate(on);
  ASSERT_EQ(res.logprobs.size(), res.tokens.size());
  for (const TokenLogprobs& lp : res.logprobs) {
    ASSERT_EQ(lp.top.size(), 3u);
    EXPECT_EQ(lp.logprob, lp.top[0].logprob);
    EXPECT_LE(lp.logprob, 0.0f);
  }
}

}  // namespace
}  // namespace kestrel
