// kernels/cpu/sampling_candidates.h: the penalties and the candidate filters of sampling
// (top-k, top-p, min-p) over one row of logits, shared by the CPU sampler (sampling_cpu.cc, which draws
// from them) and speculative decoding's rejection rule (decoding/speculative.cc, which
// needs the whole filtered distribution), so both keep exactly the same tokens.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend.h"

namespace kestrel::cpu {

// Steps 1-2 of sampling, in place on one row: the repetition penalty over every distinct id
// of history[0, length), then presence + frequency x count over the generated part
// history[prompt_length, length). `scratch` is reused across calls.
inline void apply_penalties(float* l, const SamplingRow& r, const int32_t* history, int64_t length,
                            int64_t prompt_length, std::vector<int32_t>& scratch) {
  if (r.repetition_penalty != 1.0f && length > 0) {
    scratch.assign(history, history + length);
    std::sort(scratch.begin(), scratch.end());
    const auto end = std::unique(scratch.begin(), scratch.end());
    for (auto it = scratch.begin(); it != end; ++it) {
      float& x = l[*it];
      x = x > 0.0f ? x / r.repetition_penalty : x * r.repetition_penalty;
    }
  }
  if ((r.presence_penalty != 0.0f || r.frequency_penalty != 0.0f) && length > prompt_length) {
    scratch.assign(history + prompt_length, history + length);
    std::sort(scratch.begin(), scratch.end());
    for (size_t a = 0; a < scratch.size();) {
      size_t b = a;
      while (b < scratch.size() && scratch[b] == scratch[a]) ++b;
      l[scratch[a]] -= r.presence_penalty + r.frequency_penalty * static_cast<float>(b - a);
      a = b;
    }
  }
}

// The candidates of one row in sampling order (logit descending, lower id first on ties),
// sorted lazily: only the prefix the filters and the draw walk through gets sorted, which
// for a peaked distribution is a few hundred of the vocabulary. p(j) is the unnormalized
// probability exp(l - l_max) of the j-th candidate (so p(0) = 1 = p_max).
class Candidates {
 public:
  Candidates(const float* l, int64_t V, double max_logit, std::vector<int32_t>& order)
      : l_(l), V_(V), max_logit_(max_logit), order_(order) {
    order_.resize(static_cast<size_t>(V));
    for (int64_t j = 0; j < V; ++j) order_[j] = static_cast<int32_t>(j);
  }
  int32_t id(int64_t j) {
    sort_prefix(j + 1);
    return order_[j];
  }
  double p(int64_t j) { return std::exp(static_cast<double>(l_[id(j)]) - max_logit_); }

 private:
  // Makes order_[0, m) final: each call moves the next chunk of the unsorted rest into place;
  // chunks at least double, so a deep walk costs only a few passes over the vocabulary.
  void sort_prefix(int64_t m) {
    if (m <= sorted_) return;
    const int64_t to = std::min(V_, std::max({m, 2 * sorted_, int64_t{64}}));
    const float* l = l_;
    std::partial_sort(order_.begin() + sorted_, order_.begin() + to, order_.end(),
                      [l](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
    sorted_ = to;
  }

  const float* l_;
  int64_t V_;
  double max_logit_;
  std::vector<int32_t>& order_;
  int64_t sorted_ = 0;
};

// The candidates that top-k, top-p and min-p keep (in that order) of logits already
// divided by the temperature: c.id(0 .. n) with unnormalized probabilities c.p(j) summing
// to kept_sum. Only ratios of p are used, so the softmax normalizer over V never appears.
struct Kept {
  int64_t n;
  double kept_sum;
};
inline Kept keep_candidates(Candidates& c, const float* l, int64_t V, double max_logit, const SamplingRow& r) {
  int64_t n = V;        // candidates kept so far: always a prefix of the order
  double kept_sum = 0;  // sum of p over them
  if (r.top_k > 0 && r.top_k < V) {
    n = r.top_k;
    for (int64_t j = 0; j < n; ++j) kept_sum += c.p(j);
  } else {
    for (int64_t i = 0; i < V; ++i) kept_sum += std::exp(static_cast<double>(l[i]) - max_logit);
  }
  if (r.top_p < 1.0f) {
    const double target = static_cast<double>(r.top_p) * kept_sum;
    double cum = 0.0;
    int64_t m = 0;
    while (m < n) {
      cum += c.p(m++);
      if (cum >= target) break;
    }
    n = std::max<int64_t>(m, 1);
    kept_sum = cum;
  }
  if (r.min_p > 0.0f) {
    const double threshold = static_cast<double>(r.min_p);  // min_p * p_max, p_max = 1
    int64_t m = 1;
    double sum = 1.0;
    while (m < n) {
      const double pm = c.p(m);
      if (pm < threshold) break;
      sum += pm;
      ++m;
    }
    if (m < n) kept_sum = sum;
    n = m;
  }
  return {n, kept_sum};
}

}  // namespace kestrel::cpu
