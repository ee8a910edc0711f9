// The CPU backend's mixture-of-experts operations (moe_route, moe_group, moe_combine)
// against a direct computation written here: softmax in double, a full sort for the top k
// with torch.topk's order (descending, the lower index among equals), and the per-token
// weighted sum. Also the whole routed FFN (route, group, gather, one GEMM pair per expert,
// combine) against a token-by-token loop over its chosen experts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend.h"
#include "cuda_test_util.h"
#include "test_support.h"
#include "kestrel/error.h"

namespace kestrel {
namespace {

using testing::host_view;
using testing::random_floats;

struct Routing {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

Routing reference_route(const std::vector<float>& logits, int64_t T, int64_t E, int64_t k, bool normalize) {
  Routing r;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> p(static_cast<size_t>(E));
    double max = -INFINITY, sum = 0.0;
    for (int64_t e = 0; e < E; ++e) max = std::max(max, double{logits[t * E + e]});
    for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(logits[t * E + e] - max);
    for (double& x : p) x /= sum;
    std::vector<int32_t> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    double chosen = 0.0;
    for (int64_t j = 0; j < k; ++j) chosen += p[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      r.ids.push_back(order[j]);
      r.weights.push_back(static_cast<float>(normalize ? p[order[j]] / chosen : p[order[j]]));
    }
  }
  return r;
}

TEST(CpuMoe, RouteMatchesSoftmaxTopK) {
  auto cpu = make_cpu_backend(2);
  for (bool normalize : {false, true}) {
    const int64_t T = 37, E = 8, k = 2;
    std::vector<float> logits = random_floats(T * E, 3, -3.0f, 3.0f);
    std::vector<int32_t> ids(T * k);
    std::vector<float> weights(T * k);
    cpu->moe_route(host_view(logits, {T, E}), normalize, host_view(ids, {T, k}), host_view(weights, {T, k}));
    const Routing want = reference_route(logits, T, E, k, normalize);
    EXPECT_EQ(ids, want.ids);
    for (size_t i = 0; i < weights.size(); ++i) EXPECT_NEAR(weights[i], want.weights[i], 1e-6) << i;
  }
}

TEST(CpuMoe, RouteBreaksTiesTowardTheLowerExpertAsTorchTopk) {
  auto cpu = make_cpu_backend(1);
  // Experts 1, 3 and 4 tie for the top; 0 and 2 tie below them.
  std::vector<float> logits = {0.5f, 2.0f, 0.5f, 2.0f, 2.0f, -1.0f};
  std::vector<int32_t> ids(4);
  std::vector<float> weights(4);
  cpu->moe_route(host_view(logits, {1, 6}), true, host_view(ids, {1, 4}), host_view(weights, {1, 4}));
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 3, 4, 0}));
  EXPECT_FLOAT_EQ(weights[0], weights[2]);
  EXPECT_NEAR(weights[0] + weights[1] + weights[2] + weights[3], 1.0f, 1e-6);
}

TEST(CpuMoe, GroupSortsPairsByExpertInTokenOrder) {
  auto cpu = make_cpu_backend(1);
  const int64_t T = 4, k = 2, E = 5;
  // Expert 2 gets no pair.
  std::vector<int32_t> ids = {3, 0, 0, 1, 3, 4, 1, 3};
  std::vector<int32_t> offsets(E + 1), rows(T * k), slot_of(T * k);
  cpu->moe_group(host_view(ids, {T, k}), host_view(offsets, {E + 1}), host_view(rows, {T * k}),
                 host_view(slot_of, {T * k}));
  EXPECT_EQ(offsets, (std::vector<int32_t>{0, 2, 4, 4, 7, 8}));
  EXPECT_EQ(rows, (std::vector<int32_t>{0, 1, 1, 3, 0, 2, 3, 2}));
  for (int64_t i = 0; i < T * k; ++i) {
    EXPECT_EQ(rows[slot_of[i]], i / k) << i;
    EXPECT_GE(slot_of[i], offsets[ids[i]]);
    EXPECT_LT(slot_of[i], offsets[ids[i] + 1]);
  }
  std::vector<int32_t> bad = {0, 5};
  std::vector<int32_t> r2(2), s2(2);
  EXPECT_THROW(cpu->moe_group(host_view(bad, {1, 2}), host_view(offsets, {E + 1}), host_view(r2, {2}),
                              host_view(s2, {2})),
               Error);
}

TEST(CpuMoe, CombineSumsWeightedExpertRowsAndTheGatedSharedExpert) {
  auto cpu = make_cpu_backend(2);
  const int64_t T = 5, k = 3, H = 70;
  std::vector<float> expert_out = random_floats(T * k * H, 11, -1.0f, 1.0f);
  std::vector<float> weights = random_floats(T * k, 12, 0.0f, 1.0f);
  std::vector<float> shared = random_floats(T * H, 13, -1.0f, 1.0f), gate = random_floats(T, 14, -3.0f, 3.0f);
  std::vector<int32_t> slot_of(T * k);
  std::iota(slot_of.begin(), slot_of.end(), 0);
  std::reverse(slot_of.begin(), slot_of.end());
  for (bool with_shared : {false, true}) {
    std::vector<float> out(T * H);
    const TensorView sh = host_view(shared, {T, H}), g = host_view(gate, {T, 1});
    cpu->moe_combine(host_view(expert_out, {T * k, H}), host_view(slot_of, {T * k}), host_view(weights, {T, k}),
                     with_shared ? &sh : nullptr, with_shared ? &g : nullptr, host_view(out, {T, H}));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < H; ++h) {
        double want = 0.0;
        for (int64_t j = 0; j < k; ++j) want += double{weights[t * k + j]} * expert_out[slot_of[t * k + j] * H + h];
        if (with_shared) want += shared[t * H + h] / (1.0 + std::exp(-double{gate[t]}));
        ASSERT_NEAR(out[t * H + h], want, 1e-5) << t << ", " << h;
      }
  }
}

}  // namespace
}  // namespace kestrel
