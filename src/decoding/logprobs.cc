#include "decoding/logprobs.h"

#include <algorithm>
#include <cmath>

namespace kestrel {

RowLogprobs::RowLogprobs(std::span<const float> logits, int top_n) {
  float max = -INFINITY;
  for (float x : logits) max = std::max(max, x);
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  log_normalizer = static_cast<double>(max) + std::log(sum);

  // Candidates sorted by logit, descending; on equal logits the lower id (met first) stays ahead.
  const size_t n = std::min(static_cast<size_t>(std::max(top_n, 0)), logits.size());
  top.reserve(n);
  for (size_t i = 0; i < logits.size() && n > 0; ++i) {
    const float x = logits[i];
    if (top.size() == n && !(x > top.back().logprob)) continue;
    if (top.size() == n) top.pop_back();
    auto at = std::upper_bound(top.begin(), top.end(), x,
                               [](float v, const TokenLogprob& e) { return v > e.logprob; });
    top.insert(at, TokenLogprob{static_cast<int32_t>(i), x});
  }
  for (TokenLogprob& e : top) e.logprob = static_cast<float>(e.logprob - log_normalizer);
}

TokenLogprobs RowLogprobs::of(std::span<const float> logits, int32_t token) const {
  TokenLogprobs out;
  out.logprob = static_cast<float>(static_cast<double>(logits[static_cast<size_t>(token)]) - log_normalizer);
  out.top = top;
  return out;
}

}  // namespace kestrel
