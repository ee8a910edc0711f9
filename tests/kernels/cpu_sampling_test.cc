// The CPU backend's sample(): greedy, determinism in (seed, step), the top-k / top-p / min-p
// filters, the empirical distribution and the penalties, against naive code written here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <set>
#include <vector>

#include "backend.h"
#include "cpu_test_util.h"
#include "kernel_test_cases.h"
#include "kestrel/error.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::random_floats;
using testing::view;

using testing::SampleCall;

SamplingRow sampling(float temperature, uint64_t seed, uint64_t step = 0) {
  SamplingRow r;
  r.temperature = temperature;
  r.seed = seed;
  r.step = step;
  return r;
}

int32_t sample_one(Backend& backend, const std::vector<float>& logits, const SamplingRow& r) {
  SampleCall call;
  call.add(logits, r);
  return call.run(backend)[0];
}

std::vector<double> softmax(const std::vector<float>& l, double temperature) {
  std::vector<double> p(l.size());
  const double m = *std::max_element(l.begin(), l.end());
  double sum = 0;
  for (size_t j = 0; j < l.size(); ++j) sum += (p[j] = std::exp((l[j] - m) / temperature));
  for (double& x : p) x /= sum;
  return p;
}

class CpuSamplingTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend = make_cpu_backend(2);
  std::vector<float> logits = random_floats(50, 7, -2.0f, 2.0f);
  int32_t argmax() const {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
};

TEST(SamplingUniform, DeterministicInRangeAndSpread) {
  double sum = 0;
  std::set<double> seen;
  for (uint64_t step = 0; step < 10000; ++step) {
    const double u = sampling_uniform(42, step);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    EXPECT_EQ(u, sampling_uniform(42, step));
    sum += u;
    seen.insert(u);
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.01);
  EXPECT_EQ(seen.size(), 10000u);
  EXPECT_NE(sampling_uniform(1, 0), sampling_uniform(0, 1));
  EXPECT_NE(sampling_uniform(1, 5), sampling_uniform(2, 5));
}

TEST_F(CpuSamplingTest, GreedyIsArgmaxWithLowestIdOnTies) {
  EXPECT_EQ(sample_one(*backend, logits, sampling(0.0f, 1)), argmax());
  std::vector<float> tied = {0.5f, 2.0f, -1.0f, 3.0f, 1.0f, 3.0f, 3.0f};
  EXPECT_EQ(sample_one(*backend, tied, sampling(0.0f, 1)), 3);
  EXPECT_EQ(sample_one(*backend, tied, sampling(-1.0f, 9)), 3);
}

TEST_F(CpuSamplingTest, SameSeedAndStepGiveTheSameTokenWhateverTheBatch) {
  std::set<int32_t> distinct;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const int32_t alone = sample_one(*backend, logits, sampling(2.0f, seed, 3));
    EXPECT_EQ(alone, sample_one(*backend, logits, sampling(2.0f, seed, 3)));
    SampleCall call;  // the same row between two unrelated ones
    call.add(random_floats(50, seed + 1000), sampling(1.0f, seed + 1));
    call.add(logits, sampling(2.0f, seed, 3));
    call.add(random_floats(50, seed + 2000), sampling(0.0f, 0));
    EXPECT_EQ(call.run(*backend)[1], alone);
    distinct.insert(alone);
  }
  EXPECT_GE(distinct.size(), 25u) << "different seeds should give different tokens";
}

TEST_F(CpuSamplingTest, TopKOfOneIsGreedy) {
  for (uint64_t seed = 0; seed < 100; ++seed) {
    SamplingRow r = sampling(1.5f, seed, seed * 7);
    r.top_k = 1;
    EXPECT_EQ(sample_one(*backend, logits, r), argmax());
  }
}

TEST_F(CpuSamplingTest, TopKOnlyReturnsTheKBest) {
  const int k = 5;
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const std::set<int32_t> best(order.begin(), order.begin() + k);
  std::set<int32_t> drawn;
  for (uint64_t seed = 0; seed < 500; ++seed) {
    SamplingRow r = sampling(5.0f, seed);  // hot: without top-k, others would show up
    r.top_k = k;
    const int32_t token = sample_one(*backend, logits, r);
    EXPECT_TRUE(best.count(token)) << "token " << token << " is outside the top " << k;
    drawn.insert(token);
  }
  EXPECT_EQ(drawn, best);
  // Ties at the cut: ids 1, 2, 4 share the second-largest logit; k = 2 keeps id 1 only.
  std::vector<float> tied = {0.0f, 1.0f, 1.0f, 3.0f, 1.0f};
  for (uint64_t seed = 0; seed < 200; ++seed) {
    SamplingRow r = sampling(100.0f, seed);
    r.top_k = 2;
    const int32_t token = sample_one(*backend, tied, r);
    EXPECT_TRUE(token == 3 || token == 1) << token;
  }
}

TEST_F(CpuSamplingTest, TinyTopPIsGreedy) {
  for (uint64_t seed = 0; seed < 100; ++seed) {
    SamplingRow r = sampling(1.0f, seed);
    r.top_p = 1e-6f;
    EXPECT_EQ(sample_one(*backend, logits, r), argmax());
  }
}

// Frequencies over 20000 (seed, step) draws against the naive filtered softmax.
void expect_frequencies(Backend& backend, const std::vector<float>& l, SamplingRow r,
                        const std::vector<double>& want) {
  const int draws = 20000;
  std::vector<int> counts(l.size(), 0);
  SampleCall call;
  for (int n = 0; n < draws; ++n) {
    r.seed = 1000 + n / 100;
    r.step = n % 100;
    call.add(l, r);
  }
  for (int32_t token : call.run(backend)) ++counts.at(token);
  for (size_t j = 0; j < l.size(); ++j)
    EXPECT_NEAR(counts[j] / static_cast<double>(draws), want[j], 0.015) << "token " << j;
}

TEST_F(CpuSamplingTest, FrequenciesMatchSoftmax) {
  const std::vector<float> l = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.2f};
  expect_frequencies(*backend, l, sampling(0.8f, 0), softmax(l, 0.8));
}

TEST_F(CpuSamplingTest, FrequenciesMatchFilteredSoftmax) {
  // Sorted: 3 (2.0), 5 (1.2), 0 (1.0), 1 (0.2), 4 (0.0), 2 (-0.5).
  const std::vector<float> l = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.2f};
  SamplingRow r = sampling(1.0f, 0);
  r.top_k = 4;      // drops 4 and 2
  r.top_p = 0.85f;  // over the renormalized top 4, not over all 6
  std::vector<double> p = softmax(l, 1.0);
  const double top4 = p[3] + p[5] + p[0] + p[1];
  ASSERT_LT((p[3] + p[5]) / top4, 0.85);         // two are not enough ...
  ASSERT_GE((p[3] + p[5] + p[0]) / top4, 0.85);  // ... three are: 1 is dropped
  ASSERT_LT(p[3] + p[5] + p[0], 0.85);           // (without renormalizing, 1 would stay)
  const double kept = p[3] + p[5] + p[0];
  expect_frequencies(*backend, l, r, {p[0] / kept, 0, 0, p[3] / kept, 0, p[5] / kept});

  r = sampling(1.0f, 0);
  r.min_p = 0.4f;  // keeps p >= 0.4 p_max: 3, 5 (e^-0.8 = 0.45) but not 0 (e^-1 = 0.37)
  expect_frequencies(*backend, l, r, {0, 0, 0, p[3] / (p[3] + p[5]), 0, p[5] / (p[3] + p[5])});
}

// The whole documented pipeline, written plainly: full sort, normalized probabilities.
int32_t naive_sample(const std::vector<float>& logits, const SamplingRow& r) {
  const int V = static_cast<int>(logits.size());
  std::vector<float> l(V);
  for (int j = 0; j < V; ++j) l[j] = logits[j] / r.temperature;
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  std::vector<double> p = softmax(l, 1.0), q(V);
  for (int j = 0; j < V; ++j) q[j] = p[order[j]];  // in sampling order
  int n = r.top_k > 0 ? std::min(r.top_k, V) : V;
  if (r.top_p < 1.0f) {
    const double mass = std::accumulate(q.begin(), q.begin() + n, 0.0);
    double cum = 0;
    for (int m = 0; m < n; ++m)
      if ((cum += q[m]) / mass >= r.top_p) {
        n = m + 1;
        break;
      }
  }
  if (r.min_p > 0.0f)
    for (int m = 1; m < n; ++m)
      if (q[m] < r.min_p * q[0]) {
        n = m;
        break;
      }
  const double z = std::accumulate(q.begin(), q.begin() + n, 0.0);
  const double u = sampling_uniform(r.seed, r.step);
  double cum = 0;
  for (int j = 0; j < n; ++j)
    if ((cum += q[j] / z) > u) return order[j];
  return order[n - 1];
}

// A vocabulary large enough that the backend sorts its candidates in several chunks.
TEST_F(CpuSamplingTest, MatchesNaiveSamplerOnLargeVocabulary) {
  const std::vector<float> big = random_floats(3000, 8, -4.0f, 4.0f);
  std::vector<SamplingRow> settings(5, sampling(1.0f, 0));
  settings[1].temperature = 0.7f;
  settings[1].top_p = 0.9f;
  settings[2].temperature = 1.3f;
  settings[2].top_k = 500;
  settings[2].top_p = 0.97f;
  settings[3].min_p = 0.05f;
  settings[4].temperature = 2.0f;
  settings[4].top_k = 100;
  settings[4].min_p = 0.2f;
  for (size_t s = 0; s < settings.size(); ++s) {
    SampleCall call;
    std::vector<int32_t> want;
    for (uint64_t seed = 0; seed < 100; ++seed) {
      SamplingRow r = settings[s];
      r.seed = seed;
      r.step = seed % 7;
      call.add(big, r);
      want.push_back(naive_sample(big, r));
    }
    EXPECT_EQ(call.run(*backend), want) << "settings " << s;
  }
}

TEST_F(CpuSamplingTest, PenaltiesChangeLogitsExactlyAsSpecified) {
  const int V = 12;
  const std::vector<float> l = random_floats(V, 77, -3.0f, 3.0f);
  // Prompt: 1 2 2 5; generated: 5 7 7 7 9.
  const std::vector<int32_t> history = {1, 2, 2, 5, 5, 7, 7, 7, 9};
  SamplingRow r = sampling(0.0f, 0);
  r.repetition_penalty = 1.3f;
  r.presence_penalty = 0.25f;
  r.frequency_penalty = 0.5f;

  std::vector<float> want = l;
  for (int t : {1, 2, 5, 7, 9}) want[t] = want[t] > 0 ? want[t] / 1.3f : want[t] * 1.3f;
  for (auto [t, c] : {std::pair{5, 1}, std::pair{7, 3}, std::pair{9, 1}})
    want[t] -= 0.25f + 0.5f * static_cast<float>(c);

  SampleCall call;
  call.add(l, r, history, 4);
  const int32_t token = call.run(*backend)[0];
  for (int j = 0; j < V; ++j) EXPECT_FLOAT_EQ(call.logits[j], want[j]) << "token " << j;
  EXPECT_EQ(token, std::max_element(want.begin(), want.end()) - want.begin());

  // With a temperature the written-back logits are also divided by it.
  SampleCall hot;
  r.temperature = 0.7f;
  hot.add(l, r, history, 4);
  hot.run(*backend);
  for (int j = 0; j < V; ++j) EXPECT_FLOAT_EQ(hot.logits[j], want[j] / 0.7f) << "token " << j;

  // A penalty that flips the argmax: token 3 is best until it has been generated.
  std::vector<float> close = {0.0f, 0.0f, 1.0f, 1.1f};
  SamplingRow f = sampling(0.0f, 0);
  f.frequency_penalty = 0.2f;
  SampleCall flip;
  flip.add(close, f, {2, 3}, 1);
  EXPECT_EQ(flip.run(*backend)[0], 2);
}

TEST_F(CpuSamplingTest, RejectsBadInputs) {
  SampleCall bad_history;
  bad_history.add(logits, sampling(1.0f, 0), {3, 50}, 1);  // 50 is outside V = 50
  EXPECT_THROW(bad_history.run(*backend), Error);
  SampleCall bad_prompt;
  bad_prompt.add(logits, sampling(1.0f, 0), {3, 4}, 3);
  EXPECT_THROW(bad_prompt.run(*backend), Error);
  SamplingRow r = sampling(1.0f, 0);
  r.repetition_penalty = 0.0f;
  SampleCall bad_penalty;
  bad_penalty.add(logits, r);
  EXPECT_THROW(bad_penalty.run(*backend), Error);
  std::vector<float> nan_logits = logits;
  nan_logits[4] = NAN;
  SampleCall nan_call;
  nan_call.add(nan_logits, sampling(1.0f, 0));
  EXPECT_THROW(nan_call.run(*backend), Error);
}

}  // namespace
}  // namespace kestrel
