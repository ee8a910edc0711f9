// The CUDA backend's sample() against the CPU reference on the same logits and settings:
// greedy tokens (ties to the lowest id, penalties) identical, sampled tokens identical for
// the same seeds (temperature, top-k, top-p, min-p, penalties, ties on equal logits, a
// 151936-token vocabulary), the logits left in place bit-identical, non-finite logits,
// NaN and bad histories reported, and the device copy of sampling_uniform bit-exact.
// Every test skips without a GPU.
//
// The GPU sums probabilities as fixed-point integers and the CPU in double, so a token could
// differ only where a running total lands within ~1e-12 (relative) of a threshold; with
// the random logits here that has a probability around 1e-7 per draw.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda_test_util.h"
#include "kernel_test_cases.h"
#include "kestrel/error.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::DeviceTensor;
using testing::host_view;
using testing::random_floats;

using testing::SampleCall;

struct Outcome {
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // after the call (penalties and temperature applied in place)
};

SamplingRow sampling(float temperature, uint64_t seed, uint64_t step = 0) {
  SamplingRow r;
  r.temperature = temperature;
  r.seed = seed;
  r.step = step;
  return r;
}

class CudaSampling : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = testing::cuda_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    cpu = make_cpu_backend(0);
    gpu = make_cuda_backend(0);
  }

  Outcome run_cpu(const SampleCall& call) {
    Outcome out{{}, call.logits};
    out.tokens = call.run_on_host(*cpu, out.logits);
    return out;
  }

  // Enqueues the call on the GPU; results are read by `finish` (which may throw).
  struct GpuRun {
    std::unique_ptr<DeviceTensor> logits, rows, history, lengths, prompt_lengths, tokens;
  };
  GpuRun start_gpu(const SampleCall& call) {
    const int B = call.B(), V = call.V;
    std::vector<int32_t> history, lengths;
    const int64_t L = call.flatten(history, lengths);
    GpuRun run;
    run.logits =
        std::make_unique<DeviceTensor>(*gpu, DType::f32, std::initializer_list<int64_t>{B, V});
    run.rows = std::make_unique<DeviceTensor>(
        *gpu, DType::i8,
        std::initializer_list<int64_t>{static_cast<int64_t>(B * sizeof(SamplingRow))});
    run.history =
        std::make_unique<DeviceTensor>(*gpu, DType::i32, std::initializer_list<int64_t>{B, L});
    run.lengths =
        std::make_unique<DeviceTensor>(*gpu, DType::i32, std::initializer_list<int64_t>{B});
    run.prompt_lengths =
        std::make_unique<DeviceTensor>(*gpu, DType::i32, std::initializer_list<int64_t>{B});
    run.tokens =
        std::make_unique<DeviceTensor>(*gpu, DType::i32, std::initializer_list<int64_t>{B});
    run.logits->set(call.logits);
    run.rows->set_bytes(call.rows.data());
    run.history->set(history);
    run.lengths->set(lengths);
    run.prompt_lengths->set(call.prompt_lengths);
    SamplingBatch batch;
    batch.n_seqs = B;
    batch.rows = *run.rows;
    batch.history = *run.history;
    batch.history_lengths = *run.lengths;
    batch.prompt_lengths = *run.prompt_lengths;
    gpu->sample(*run.logits, batch, *run.tokens);
    return run;
  }
  static Outcome finish(const GpuRun& run) { return {run.tokens->ints(), run.logits->floats()}; }

  // Both backends on the same call: identical tokens and bit-identical logits afterwards.
  void expect_same(const SampleCall& call, const std::string& what) {
    SCOPED_TRACE(what);
    const Outcome c = run_cpu(call);
    const Outcome g = finish(start_gpu(call));
    EXPECT_EQ(g.tokens, c.tokens);
    ASSERT_EQ(g.logits.size(), c.logits.size());
    size_t differ = 0, first = 0;
    for (size_t i = 0; i < c.logits.size(); ++i)
      if (std::memcmp(&g.logits[i], &c.logits[i], sizeof(float)) != 0 && differ++ == 0) first = i;
    EXPECT_EQ(differ, 0u) << "logits left in place differ, first at " << first << ": "
                          << g.logits[first] << " vs " << c.logits[first];
  }

  std::unique_ptr<Backend> cpu, gpu;
};

TEST_F(CudaSampling, GreedyMatchesCpu) {
  SampleCall call;
  const int V = 1000;
  std::vector<float> l = random_floats(V, 1, -5.0f, 5.0f);
  call.add(l, sampling(0.0f, 0));
  std::vector<float> tied = l;
  tied[503] = tied[17] = 9.0f;  // two maxima: the lower id wins
  call.add(tied, sampling(0.0f, 0));
  // A repetition penalty that pushes the argmax down (once, though it repeats).
  SamplingRow rep = sampling(0.0f, 0);
  rep.repetition_penalty = 50.0f;
  call.add(tied, rep, {17, 17, 503, 3, 999}, 2);
  SamplingRow pf = sampling(-1.0f, 0);
  pf.presence_penalty = 2.0f;
  pf.frequency_penalty = 3.5f;
  call.add(tied, pf, {503, 17, 17, 17, 4}, 1);
  std::vector<float> neg(V, -INFINITY);
  call.add(neg, sampling(0.0f, 0));
  std::vector<float> inf = l;
  inf[700] = inf[9] = INFINITY;
  call.add(inf, sampling(0.0f, 0));
  expect_same(call, "V 1000");

  SampleCall large;
  for (int i = 0; i < 3; ++i)
    large.add(random_floats(151936, 10 + i, -8.0f, 8.0f), sampling(0.0f, 0));
  expect_same(large, "V 151936");
}

// Every combination of the filters and penalties over random logits, many seeds.
TEST_F(CudaSampling, SampledTokensMatchCpu) {
  const int V = 1000;
  SampleCall call;
  int row = 0;
  for (float temperature : {0.6f, 1.0f, 1.7f})
    for (int top_k : {0, 1, 40, V + 5})
      for (float top_p : {1.0f, 0.9f, 0.3f})
        for (float min_p : {0.0f, 0.05f}) {
          SamplingRow r = sampling(temperature, 1000 + row * 7, row % 5);
          r.top_k = top_k;
          r.top_p = top_p;
          r.min_p = min_p;
          std::vector<int32_t> history;
          if (row % 3 == 0) {
            r.repetition_penalty = 1.3f;
            r.presence_penalty = 0.5f;
            r.frequency_penalty = 0.25f;
            history = {1, 2, 3, 3, 500, 2, 2, 999};
          }
          const int prompt_length = history.empty() ? 0 : 3;
          call.add(random_floats(V, 100 + row, -4.0f, 4.0f), r, history, prompt_length);
          ++row;
        }
  expect_same(call, "filter grid");
}

TEST_F(CudaSampling, LargeVocabularyMatchesCpu) {
  const int V = 151936;
  SampleCall call;
  SamplingRow pure = sampling(0.8f, 5, 3);
  call.add(random_floats(V, 200, -6.0f, 6.0f), pure);
  SamplingRow typical = sampling(0.7f, 6, 11);
  typical.top_k = 50;
  typical.top_p = 0.95f;
  call.add(random_floats(V, 201, -6.0f, 6.0f), typical);
  SamplingRow nucleus = sampling(1.0f, 7, 0);
  nucleus.top_p = 0.9f;
  call.add(random_floats(V, 202, -6.0f, 6.0f), nucleus);
  SamplingRow hot = sampling(1.5f, 8, 2);
  hot.min_p = 0.1f;
  hot.repetition_penalty = 1.2f;
  call.add(random_floats(V, 203, -6.0f, 6.0f), hot, {5, 6, 7, 150000, 7, 151935}, 4);
  for (uint64_t seed = 0; seed < 4; ++seed) {
    for (auto& r : call.rows) r.seed = seed * 1000 + r.seed % 1000;
    expect_same(call, "seeds " + std::to_string(seed));
  }
}

// Logits with many exact ties (quarter steps): the order among equal logits is by id, and
// top-k / top-p cut through groups of ties.
TEST_F(CudaSampling, TiesFollowTheCpuOrder) {
  const int V = 300;
  std::vector<float> l = random_floats(V, 300, -3.0f, 3.0f);
  for (float& x : l) x = std::round(x * 4.0f) / 4.0f;
  SampleCall call;
  for (uint64_t seed = 0; seed < 32; ++seed) {
    SamplingRow r = sampling(1.0f, seed, seed);
    r.top_k = seed % 2 ? 7 : 0;
    r.top_p = seed % 3 == 0 ? 0.5f : 1.0f;
    call.add(l, r);
  }
  expect_same(call, "quantized logits");
}

// Filters that keep only the first candidate make sampling greedy.
TEST_F(CudaSampling, FiltersKeepingOneTokenAreGreedy) {
  const int V = 5000;
  std::vector<float> l = random_floats(V, 400, -4.0f, 4.0f);
  SampleCall call;
  call.add(l, sampling(0.0f, 0));
  SamplingRow k1 = sampling(1.0f, 1);
  k1.top_k = 1;
  call.add(l, k1);
  SamplingRow p0 = sampling(1.0f, 2);
  p0.top_p = 1e-6f;
  call.add(l, p0);
  SamplingRow m1 = sampling(1.0f, 3);
  m1.min_p = 1.0f;
  call.add(l, m1);
  const Outcome g = finish(start_gpu(call));
  for (int i = 1; i < 4; ++i) EXPECT_EQ(g.tokens[i], g.tokens[0]) << "row " << i;
  expect_same(call, "one-token filters");
}

TEST_F(CudaSampling, NonFiniteLogits) {
  const int V = 64;
  SampleCall call;
  call.add(std::vector<float>(V, -INFINITY), sampling(1.0f, 1));
  std::vector<float> inf = random_floats(V, 500);
  inf[9] = inf[5] = INFINITY;
  call.add(inf, sampling(1.0f, 2));
  std::vector<float> some = random_floats(V, 501);
  for (int i = 0; i < V; i += 2) some[i] = -INFINITY;
  for (uint64_t seed = 0; seed < 8; ++seed) call.add(some, sampling(1.0f, seed));
  expect_same(call, "non-finite");
}

TEST_F(CudaSampling, NanLogitsAndBadHistoriesThrow) {
  const int V = 64;
  {
    SampleCall call;
    call.add(random_floats(V, 600), sampling(1.0f, 1));
    std::vector<float> nan = random_floats(V, 601);
    nan[33] = NAN;
    call.add(nan, sampling(1.0f, 1));
    GpuRun run = start_gpu(call);
    try {
      finish(run);
      ADD_FAILURE() << "NaN logits were not reported";
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::internal) << e.what();
      EXPECT_NE(e.message().find("row 1"), std::string::npos) << e.what();
      EXPECT_NE(e.message().find("NaN"), std::string::npos) << e.what();
    }
  }
  {
    SampleCall call;
    call.add(random_floats(V, 602), sampling(1.0f, 1), {3, V});
    GpuRun run = start_gpu(call);
    EXPECT_THROW(finish(run), Error);
  }
  SampleCall ok;  // the backend stays usable
  ok.add(random_floats(V, 603), sampling(1.0f, 1));
  expect_same(ok, "after errors");
}

#ifdef KESTREL_WITH_CUDA
TEST_F(CudaSampling, DeviceUniformIsBitIdenticalToHost) {
  std::vector<uint64_t> seeds, steps;
  for (uint64_t seed : {uint64_t{0}, uint64_t{1}, uint64_t{42}, uint64_t{1} << 63,
                        std::numeric_limits<uint64_t>::max()})
    for (uint64_t step : {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{1000},
                          std::numeric_limits<uint64_t>::max() - 1}) {
      seeds.push_back(seed);
      steps.push_back(step);
    }
  for (uint64_t i = 0; i < 1000; ++i) {
    seeds.push_back(i * 0x9E3779B97F4A7C15ull);
    steps.push_back(i % 17);
  }
  const std::vector<double> got = cuda::device_sampling_uniform(0, seeds, steps);
  ASSERT_EQ(got.size(), seeds.size());
  for (size_t i = 0; i < seeds.size(); ++i) {
    const double want = sampling_uniform(seeds[i], steps[i]);
    EXPECT_EQ(std::memcmp(&got[i], &want, sizeof(double)), 0)
        << "seed " << seeds[i] << " step " << steps[i] << ": " << got[i] << " vs " << want;
  }
}
#endif

}  // namespace
}  // namespace kestrel
