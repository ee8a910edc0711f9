// Speculative decoding through the public API: greedy output token for token the same as
// plain decoding (prompt lookup and a draft model, alone and batched, on every fixture and
// on the default model when present), streaming and stop strings unchanged, sampled output
// distributed exactly as the model's (chi-square against the exact distribution, over a
// fixed set of seeds, so the verdict never changes from run to run), and the host pieces
// (prompt lookup, the sampler's distribution, the rejection rule) on their own.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <ostream>
#include <kestrel/kestrel.h>

#include "decoding/speculative.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;

std::shared_ptr<const Model> load(const std::string& name, Quantization quantization = Quantization::none) {
  static std::map<std::pair<std::string, Quantization>, std::shared_ptr<const Model>> cache;
  auto& model = cache[{name, quantization}];
  if (!model) model = Model::load(fixture_dir() / name, {.num_threads = 2, .quantization = quantization});
  return model;
}

// Chi-square statistic of observed counts against expected probabilities; categories
// expected fewer than 5 times are pooled. Returns {statistic, degrees of freedom}.
std::pair<double, int> chi_square(const std::map<std::vector<int32_t>, int>& observed,
                                  const std::map<std::vector<int32_t>, double>& expected, int n) {
  double stat = 0.0, pooled_expected = 0.0;
  int pooled_observed = 0, categories = 0, seen = 0;
  for (const auto& [key, p] : expected) {
    const auto it = observed.find(key);
    const int o = it == observed.end() ? 0 : it->second;
    seen += o;
    if (p * n < 5.0) {
      pooled_expected += p * n;
      pooled_observed += o;
      continue;
    }
    stat += (o - p * n) * (o - p * n) / (p * n);
    ++categories;
  }
  // Outcomes the exact distribution gives no mass belong in the pool too.
  pooled_observed += n - seen;
  if (pooled_expected > 0.0) {
    stat += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / std::max(pooled_expected, 1e-9);
    ++categories;
  } else if (pooled_observed > 0) {
    stat = INFINITY;
  }
  return {stat, categories - 1};
}

// The chi-square value exceeded with probability 1e-6 (Wilson-Hilferty; z = 4.753).
double chi_square_bound(int df) {
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + 4.753 * std::sqrt(a), 3.0);
}

GenerationRequest greedy(std::vector<int32_t> prompt, int new_tokens) {
  GenerationRequest r;
  r.prompt_ids = std::move(prompt);
  r.stop.max_new_tokens = new_tokens;
  r.stop.stop_at_eos = false;
  return r;
}

std::vector<std::vector<int32_t>> prompts_for(const Model& model) {
  const Tokenizer& t = model.tokenizer();
  return {t.encode("The river ran past the mill, and the mill ran on the river. The river"),
          t.encode("1 2 3 4 5 6 7 8 9 10 11 12"),
          t.encode("Hello")};
}

// --- greedy: identical to plain decoding --------------------------------------------------

struct GreedyCase {
  const char* name;
  const char* model;
  const char* draft;  // for draft_model: the same model quantized (drafts well), or another one
  Quantization draft_quantization;
};

void PrintTo(const GreedyCase& c, std::ostream* os) { *os << c.model << " drafted by " << c.draft; }

class SpeculativeGreedy : public ::testing::TestWithParam<GreedyCase> {};

TEST_P(SpeculativeGreedy, SameTokensAsPlainDecodingAloneAndBatched) {
  auto model = load(GetParam().model);
  auto draft_model = load(GetParam().draft, GetParam().draft_quantization);
  const SessionOptions options{.max_sequences = 3, .max_step_tokens = 64};
  Session session(model, options), draft_session(draft_model, options);
  Decoder plain(session), speculative(session, draft_session);

  std::vector<GenerationRequest> requests;
  for (auto& prompt : prompts_for(*model)) requests.push_back(greedy(prompt, 48));
  const auto expected = plain.generate(requests);

  for (auto method : {SpeculativeMethod::prompt_lookup, SpeculativeMethod::draft_model})
    for (int k : {1, 4, 7}) {
      SCOPED_TRACE(std::string(to_string(method)) + " k = " + std::to_string(k));
      auto spec = requests;
      for (auto& r : spec) r.speculative = {.method = method, .num_draft_tokens = k};
      const auto batched = speculative.generate(spec);
      int drafted = 0, accepted = 0;
      for (size_t i = 0; i < spec.size(); ++i) {
        EXPECT_EQ(batched[i].tokens, expected[i].tokens) << "request " << i << " batched";
        EXPECT_EQ(batched[i].text, expected[i].text);
        EXPECT_EQ(speculative.generate(spec[i]).tokens, expected[i].tokens) << "request " << i << " alone";
        drafted += batched[i].drafted_tokens;
        accepted += batched[i].accepted_tokens;
      }
      EXPECT_GT(drafted, 0) << "nothing drafted: the test checks nothing";
      EXPECT_LE(accepted, drafted);
      if (method == SpeculativeMethod::draft_model && GetParam().draft_quantization != Quantization::none) {
        EXPECT_GT(accepted, 0) << "the quantized model drafting for itself had nothing accepted";
      }
    }
  EXPECT_EQ(session.free_kv_blocks(), session.options().kv_blocks) << "blocks leaked";
  EXPECT_EQ(draft_session.free_kv_blocks(), draft_session.options().kv_blocks) << "draft blocks leaked";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SpeculativeGreedy,
                         ::testing::Values(GreedyCase{"tiny_gpt2", "tiny-gpt2", "tiny-gpt2", Quantization::int8},
                                           GreedyCase{"tiny_llama", "tiny-llama", "tiny-llama", Quantization::int4},
                                           GreedyCase{"tiny_llama_gguf", "tiny-llama.gguf", "tiny-gpt2", Quantization::none},
                                           // gpt-oss: attention sinks and a window of 8 in the verification slices
                                           GreedyCase{"tiny_gpt_oss", "tiny-gpt-oss", "tiny-gpt-oss", Quantization::int8}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Speculative, DefaultModelGreedyIsUnchanged) {
  const auto path = std::filesystem::path(KESTREL_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " is absent: run scripts/fetch-default-model.sh";
  // Batch invariant: a verification step of 2 x 5 tokens would otherwise take the prefill
  // kernels (f32 activations) where plain decoding takes the 8-bit-activation ones, and a
  // near-tie may then go either way (ModelOptions::batch_invariant).
  auto model = Model::load(path, {.num_threads = 2, .batch_invariant = true});
  const SessionOptions options{.max_sequences = 2, .max_sequence_tokens = 256};
  Session session(model, options), draft_session(model, options);  // the model drafts for itself
  Decoder plain(session), speculative(session, draft_session);
  const std::string quote =
      "Summarize, quoting the text: The quick brown fox jumps over the lazy dog. The quick brown fox";
  std::vector<GenerationRequest> requests = {greedy(model->tokenizer().encode(quote), 24),
                                             greedy(model->tokenizer().encode("What is the capital of France?"), 12)};
  const auto expected = plain.generate(requests);
  for (auto method : {SpeculativeMethod::prompt_lookup, SpeculativeMethod::draft_model}) {
    auto spec = requests;
    for (auto& r : spec) r.speculative = {.method = method, .num_draft_tokens = 4};
    const auto got = speculative.generate(spec);
    for (size_t i = 0; i < spec.size(); ++i) EXPECT_EQ(got[i].tokens, expected[i].tokens) << to_string(method);
    EXPECT_GT(got[0].accepted_tokens, 0) << to_string(method);
  }
}

// --- streaming, stop strings, limits ---------------------------------------------------------

TEST(Speculative, StreamsEveryTokenOnceAndStopsWhereItShould) {
  auto model = load("tiny-llama");
  Session session(model, {.max_sequences = 2});
  Decoder decoder(session);
  const auto prompt = prompts_for(*model)[0];
  const auto plain = decoder.generate(greedy(prompt, 40));
  ASSERT_GE(plain.text.size(), 12u);
  // A stop string from the middle of the plain output, and a max_new_tokens that ends
  // inside a verification step.
  GenerationRequest stopped = greedy(prompt, 40);
  stopped.stop.stop_strings = {plain.text.substr(plain.text.size() / 2, 3)};
  GenerationRequest short_one = greedy(prompt, 7);
  std::vector<GenerationRequest> requests = {stopped, short_one};
  const auto expected = decoder.generate(requests);
  for (auto& r : requests) r.speculative = {.method = SpeculativeMethod::prompt_lookup, .num_draft_tokens = 5};
  std::vector<std::string> streamed(2);
  std::vector<std::vector<int32_t>> tokens(2);
  const auto got = decoder.generate(requests, [&](const StreamEvent& e) {
    streamed[e.request] += e.text;
    tokens[e.request].push_back(e.token);
    return true;
  });
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i].tokens, expected[i].tokens);
    EXPECT_EQ(got[i].finish, expected[i].finish);
    EXPECT_EQ(got[i].text, expected[i].text);
    EXPECT_EQ(streamed[i], got[i].text) << "streamed text differs from the result";
    EXPECT_EQ(tokens[i], got[i].tokens) << "a token streamed twice or not at all";
  }
  EXPECT_EQ(got[0].finish, FinishReason::stop_string);
  EXPECT_EQ(got[1].tokens.size(), 7u);
}

TEST(Speculative, CancelStopsAtTheCancelledToken) {
  auto model = load("tiny-llama");
  Session session(model);
  Decoder decoder(session);
  GenerationRequest r = greedy(prompts_for(*model)[1], 40);
  r.speculative = {.method = SpeculativeMethod::prompt_lookup, .num_draft_tokens = 6};
  int seen = 0;
  const auto result = decoder.generate(std::span(&r, 1), [&](const StreamEvent&) { return ++seen < 5; });
  EXPECT_EQ(result[0].finish, FinishReason::cancelled);
  EXPECT_EQ(result[0].tokens.size(), 5u);
  EXPECT_EQ(seen, 5);
}

TEST(Speculative, BadOptionsNameTheField) {
  auto model = load("tiny-gpt2");
  Session session(model);
  Decoder decoder(session);
  auto expect_error = [&](SpeculativeOptions o, const std::string& field) {
    GenerationRequest r = greedy({1, 2, 3}, 4);
    r.speculative = o;
    try {
      decoder.generate(r);
      ADD_FAILURE() << "no error for " << field;
    } catch (const Error& e) {
      EXPECT_NE(e.message().find(field), std::string::npos) << e.message();
    }
  };
  expect_error({.method = SpeculativeMethod::prompt_lookup, .num_draft_tokens = 0}, "num_draft_tokens");
  expect_error({.method = SpeculativeMethod::prompt_lookup, .ngram_min = 0}, "ngram_min");
  expect_error({.method = SpeculativeMethod::prompt_lookup, .ngram_min = 3, .ngram_max = 2}, "ngram_max");
  expect_error({.method = SpeculativeMethod::draft_model}, "draft");
  EXPECT_THROW(parse_speculative_method("medusa", "--speculative"), Error);

  Session other(load("tiny-gpt2"), {.max_sequences = 1});
  EXPECT_THROW(Decoder(session, other), Error) << "a draft session with fewer sequences";
  EXPECT_THROW(Decoder(session, session), Error);
}

// --- sampling: exactly the model's distribution ---------------------------------------------

TEST(Speculative, PromptLookupSamplingGivesPlainSamplingTokens) {
  // With a point-mass draft the rejection rule is "keep x while the model's own draw is x",
  // and the model draws with plain decoding's (seed, step): the same tokens for each seed.
  auto model = load("tiny-gpt2");
  Session session(model, {.max_sequences = 4});
  Decoder decoder(session);
  std::vector<GenerationRequest> plain, spec;
  for (uint64_t seed = 1; seed <= 24; ++seed) {
    GenerationRequest r = greedy(prompts_for(*model)[seed % 2], 32);
    r.sampling = {.temperature = 0.7f, .top_k = 20, .top_p = 0.95f, .repetition_penalty = 1.1f, .seed = seed};
    plain.push_back(r);
    r.speculative = {.method = SpeculativeMethod::prompt_lookup, .num_draft_tokens = 4};
    spec.push_back(r);
  }
  const auto a = decoder.generate(plain), b = decoder.generate(spec);
  int accepted = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i].tokens, a[i].tokens) << "seed " << i + 1;
    accepted += b[i].accepted_tokens;
  }
  EXPECT_GT(accepted, 0);
}

// The first three tokens of tiny-llama at temperature 1, top-k 3, with tiny-gpt2 drafting
// two tokens (which it mostly gets wrong: many rejections and residual draws), against
// their exact distribution from the model's logits.
TEST(Speculative, DraftModelSamplingFollowsTheModelsDistribution) {
  auto model = load("tiny-llama");
  auto draft_model = load("tiny-llama", Quantization::int4);
  const std::vector<int32_t> prompt = model->tokenizer().encode("Once upon a time");
  const SamplingOptions sampling{.temperature = 1.0f, .top_k = 3};
  const int V = model->config().vocab_size;

  // Exact: P(t1, t2, t3) = p(t1 | prompt) p(t2 | prompt t1) p(t3 | prompt t1 t2), each
  // a softmax over the 3 largest logits.
  Session scorer(model);
  Decoder score(scorer);
  auto top3 = [&](std::vector<int32_t> ids) {
    const auto logits = score.score(ids);
    const float* l = logits.data() + (ids.size() - 1) * V;
    std::vector<int32_t> order(V);
    for (int i = 0; i < V; ++i) order[i] = i;
    std::partial_sort(order.begin(), order.begin() + 3, order.end(),
                      [&](int a, int b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    std::vector<std::pair<int32_t, double>> out;
    double z = 0;
    for (int j = 0; j < 3; ++j) z += std::exp(static_cast<double>(l[order[j]]) - l[order[0]]);
    for (int j = 0; j < 3; ++j) out.emplace_back(order[j], std::exp(static_cast<double>(l[order[j]]) - l[order[0]]) / z);
    return out;
  };
  std::map<std::vector<int32_t>, double> expected;
  for (auto [a, pa] : top3(prompt)) {
    auto p1 = prompt;
    p1.push_back(a);
    for (auto [b, pb] : top3(p1)) {
      auto p2 = p1;
      p2.push_back(b);
      for (auto [c, pc] : top3(p2)) expected[{a, b, c}] = pa * pb * pc;
    }
  }

  const int n = 3000;
  std::vector<GenerationRequest> plain(n), spec(n);
  for (int i = 0; i < n; ++i) {
    plain[i] = greedy(prompt, 4);
    plain[i].sampling = sampling;
    plain[i].sampling.seed = 1000 + i;
    spec[i] = plain[i];
    spec[i].speculative = {.method = SpeculativeMethod::draft_model, .num_draft_tokens = 2};
  }
  const SessionOptions options{.max_sequences = 16};
  Session session(model, options), draft_session(draft_model, options);
  Decoder decoder(session, draft_session);
  int drafted = 0, accepted = 0;
  for (const auto* requests : {&plain, &spec}) {
    std::map<std::vector<int32_t>, int> observed;
    for (const auto& r : decoder.generate(*requests)) {
      observed[{r.tokens[0], r.tokens[1], r.tokens[2]}] += 1;
      drafted += r.drafted_tokens;
      accepted += r.accepted_tokens;
    }
    const auto [stat, df] = chi_square(observed, expected, n);
    EXPECT_LT(stat, chi_square_bound(df)) << (requests == &plain ? "plain" : "speculative") << " sampling, " << df
                                          << " degrees of freedom";
  }
  EXPECT_GT(drafted - accepted, n / 10) << "too few rejections to test the residual draw";
  EXPECT_GT(accepted, n / 10) << "too few acceptances to test the acceptance rule";
}

// --- the host pieces -------------------------------------------------------------------------

TEST(Speculative, PromptLookupFindsTheLongestLatestMatch) {
  //                              0  1  2  3  4  5  6  7  8  9
  const std::vector<int32_t> h = {5, 6, 7, 8, 9, 5, 6, 1, 5, 6};
  EXPECT_EQ(prompt_lookup_draft(h, 1, 3, 2), (std::vector<int32_t>{1, 5})) << "bigram 5 6 at 5, then 7";
  EXPECT_EQ(prompt_lookup_draft(h, 1, 3, 4), (std::vector<int32_t>{7, 8, 9, 5})) << "a full draft beats a later short one";
  EXPECT_EQ(prompt_lookup_draft(h, 3, 3, 4), std::vector<int32_t>{}) << "no trigram 1 5 6 earlier";
  EXPECT_EQ(prompt_lookup_draft(std::vector<int32_t>{4}, 1, 3, 4), std::vector<int32_t>{});
}

TEST(Speculative, SamplingDistributionMatchesTheSampler) {
  // Draw 20000 times with the CPU sampler (a different step each time) and compare with
  // the dense distribution, penalties and every filter on.
  auto backend = make_cpu_backend(1);
  const int V = 12;
  const std::vector<float> logits = testing::random_floats(V, 3, -2.0f, 2.0f);
  const std::vector<int32_t> history = {1, 4, 4, 7};
  SamplingRow row;
  row.temperature = 0.8f;
  row.top_k = 9;
  row.top_p = 0.9f;
  row.min_p = 0.05f;
  row.repetition_penalty = 1.3f;
  row.presence_penalty = 0.2f;
  row.frequency_penalty = 0.1f;
  row.seed = 42;
  std::vector<double> p;
  sampling_distribution(logits, row, history, 2, p);
  double total = 0;
  for (double x : p) total += x;
  EXPECT_NEAR(total, 1.0, 1e-12);

  const int n = 20000;
  std::map<std::vector<int32_t>, int> observed;
  std::vector<float> l(V);
  int32_t token = 0, hist_len = 4, prompt_len = 2;
  for (int i = 0; i < n; ++i) {
    l = logits;
    row.step = i;
    SamplingBatch batch;
    batch.n_seqs = 1;
    batch.rows = TensorView(&row, DType::i8, {static_cast<int64_t>(sizeof(SamplingRow))});
    batch.history = TensorView(const_cast<int32_t*>(history.data()), DType::i32, {1, 4});
    batch.history_lengths = TensorView(&hist_len, DType::i32, {1});
    batch.prompt_lengths = TensorView(&prompt_len, DType::i32, {1});
    backend->sample(TensorView(l.data(), DType::f32, {1, V}), batch, TensorView(&token, DType::i32, {1}));
    observed[{token}] += 1;
  }
  std::map<std::vector<int32_t>, double> expected;
  for (int t = 0; t < V; ++t)
    if (p[t] > 0) expected[{t}] = p[t];
  const auto [stat, df] = chi_square(observed, expected, n);
  EXPECT_LT(stat, chi_square_bound(df));
  row.temperature = 0;
  sampling_distribution(logits, row, history, 2, p);
  EXPECT_EQ(std::count(p.begin(), p.end(), 1.0), 1) << "greedy is a point mass";
}

TEST(Speculative, RejectionRuleKeepsTheTargetDistribution) {
  // Two positions over 5 tokens; the draft is drawn from q, the verdict's tokens must
  // follow p: the first output token is x_0 if accepted, else the residual draw.
  const std::vector<std::vector<double>> p = {{0.1, 0.4, 0.2, 0.3, 0.0}, {0.25, 0.25, 0.25, 0.25, 0.0},
                                              {0.6, 0.1, 0.1, 0.1, 0.1}};
  const std::vector<std::vector<double>> q = {{0.5, 0.1, 0.1, 0.1, 0.2}, {0.0, 0.0, 1.0, 0.0, 0.0}};
  const int n = 40000;
  std::map<std::vector<int32_t>, int> first, second;
  int second_n = 0;
  for (int i = 0; i < n; ++i) {
    const uint64_t seed = 7000 + i;
    const std::vector<int32_t> drafted = {draw_token(q[0], speculative_uniform(seed, 0, SpeculativeDraw::draft)),
                                          draw_token(q[1], speculative_uniform(seed, 1, SpeculativeDraw::draft))};
    const Verdict v = verify_draft(drafted, q, p, seed, 0);
    const int32_t t0 = v.accepted >= 1 ? drafted[0] : v.next;
    first[{t0}] += 1;
    if (v.accepted >= 1) {  // the second token, given the first was accepted (p[1] does not depend on it here)
      second[{v.accepted >= 2 ? drafted[1] : v.next}] += 1;
      ++second_n;
    }
  }
  std::map<std::vector<int32_t>, double> e0, e1;
  for (int t = 0; t < 5; ++t) {
    if (p[0][t] > 0) e0[{t}] = p[0][t];
    if (p[1][t] > 0) e1[{t}] = p[1][t];
  }
  auto [s0, df0] = chi_square(first, e0, n);
  EXPECT_LT(s0, chi_square_bound(df0));
  auto [s1, df1] = chi_square(second, e1, second_n);
  EXPECT_LT(s1, chi_square_bound(df1));
}

}  // namespace
}  // namespace kestrel
