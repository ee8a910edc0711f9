#include "decoding/speculative.h"

#include <algorithm>
#include <cmath>

#include "cpu/sampling_candidates.h"
#include "kestrel/error.h"

namespace kestrel {

std::vector<int32_t> prompt_lookup_draft(std::span<const int32_t> history, int ngram_min, int ngram_max,
                                         int max_tokens) {
  const int64_t L = static_cast<int64_t>(history.size());
  if (max_tokens <= 0) return {};
  for (int64_t n = std::min<int64_t>(ngram_max, L - 1); n >= std::max(ngram_min, 1); --n) {
    const auto suffix = history.subspan(static_cast<size_t>(L - n));
    // Latest occurrence first; one followed by a full draft beats a later, shorter one
    // (in a repeating run the latest match sits right before the end).
    int64_t best = -1;
    for (int64_t start = L - n - 1; start >= 0; --start) {
      if (!std::equal(suffix.begin(), suffix.end(), history.begin() + start)) continue;
      if (best < 0) best = start;
      if (L - (start + n) >= max_tokens) {
        best = start;
        break;
      }
    }
    if (best < 0) continue;
    const int64_t begin = best + n, count = std::min<int64_t>(max_tokens, L - begin);
    return {history.begin() + begin, history.begin() + begin + count};
  }
  return {};
}


void sampling_distribution(std::span<const float> logits, const SamplingRow& r, std::span<const int32_t> history,
                           int prompt_length, std::vector<double>& p) {
  const int64_t V = static_cast<int64_t>(logits.size());
  if (V == 0) throw Error(ErrorCategory::internal, "sampling_distribution: empty logits");
  std::vector<float> l(logits.begin(), logits.end());
  thread_local std::vector<int32_t> scratch;
  cpu::apply_penalties(l.data(), r, history.data(), static_cast<int64_t>(history.size()), prompt_length, scratch);
  p.assign(static_cast<size_t>(V), 0.0);
  const auto argmax = [&] {
    int64_t best = 0;
    for (int64_t j = 1; j < V; ++j)
      if (l[j] > l[best]) best = j;
    return best;
  };
  if (r.temperature <= 0.0f) {
    p[argmax()] = 1.0;
    return;
  }
  for (float& x : l) x /= r.temperature;
  const double max_logit = *std::max_element(l.begin(), l.end());
  if (!std::isfinite(max_logit)) {
    p[argmax()] = 1.0;
    return;
  }
  thread_local std::vector<int32_t> order;
  cpu::Candidates c(l.data(), V, max_logit, order);
  const auto [n, kept_sum] = cpu::keep_candidates(c, l.data(), V, max_logit, r);
  if (n == V) {  // nothing filtered: no need to order the candidates
    for (int64_t t = 0; t < V; ++t) p[t] = std::exp(static_cast<double>(l[t]) - max_logit) / kept_sum;
    return;
  }
  for (int64_t j = 0; j < n; ++j) p[c.id(j)] = c.p(j) / kept_sum;
}

int32_t draw_token(std::span<const double> p, double u) {
  double total = 0.0;
  for (double x : p) total += x;
  const double target = u * total;
  double cum = 0.0;
  int64_t last = -1;
  for (size_t t = 0; t < p.size(); ++t) {
    if (p[t] <= 0.0) continue;
    cum += p[t];
    last = static_cast<int64_t>(t);
    if (cum > target) return static_cast<int32_t>(t);
  }
  if (last < 0) throw Error(ErrorCategory::internal, "draw_token: the distribution is empty");
  return static_cast<int32_t>(last);  // rounding left u * total at the very top
}

double speculative_uniform(uint64_t seed, uint64_t step, SpeculativeDraw what) {
  // A different seed per stream: sampling_uniform mixes the seed fully, so streams of
  // nearby seeds are independent.
  return sampling_uniform(seed ^ (static_cast<uint64_t>(what) * 0xD1B54A32D192ED03ull), step);
}

Verdict verify_draft(std::span<const int32_t> drafted, std::span<const std::vector<double>> q,
                     std::span<const std::vector<double>> p, uint64_t seed, uint64_t step) {
  const size_t d = drafted.size();
  if (q.size() != d || p.size() != d + 1)
    throw Error(ErrorCategory::internal, "verify_draft: need d rows of q and d + 1 rows of p");
  std::vector<double> residual;
  for (size_t j = 0; j < d; ++j) {
    const int32_t x = drafted[j];
    const double px = p[j][x], qx = q[j][x];
    const double u = speculative_uniform(seed, step + j, SpeculativeDraw::accept);
    if (qx > 0.0 && u * qx < px) continue;  // u < min(1, px / qx)
    residual.resize(p[j].size());
    double total = 0.0;
    for (size_t t = 0; t < residual.size(); ++t) total += residual[t] = std::max(0.0, p[j][t] - q[j][t]);
    // p <= q everywhere only when p == q (up to rounding), where rejection has no mass.
    const std::span<const double> from = total > 0.0 ? std::span<const double>(residual) : std::span(p[j]);
    return {static_cast<int>(j), draw_token(from, speculative_uniform(seed, step + j, SpeculativeDraw::residual))};
  }
  return {static_cast<int>(d), draw_token(p[d], speculative_uniform(seed, step + d, SpeculativeDraw::residual))};
}

}  // namespace kestrel
