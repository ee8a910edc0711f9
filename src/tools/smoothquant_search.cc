#include "tools/smoothquant_search.h"

#include <algorithm>
#include <cblas.h>
#include <cmath>
#include <limits>

namespace kestrel::tools::search {

std::vector<float> smoothing_factors(const std::vector<float>& act, const std::vector<float>& weight, float alpha) {
  std::vector<float> s(act.size(), 1.0f);
  for (size_t j = 0; j < act.size(); ++j) {
    if (!(act[j] > 0.0f) || !(weight[j] > 0.0f)) continue;
    const double v = std::pow(double{act[j]}, alpha) / std::pow(double{weight[j]}, 1.0 - alpha);
    s[j] = static_cast<float>(std::clamp(v, 1e-5, 1e5));
  }
  return s;
}

namespace {

// Rounds each row of m [rows, cols] to int8 with one scale per row (max |row| / 127,
// nearest even), in place, back to float: what the W8A8 kernels compute with.
void fake_quantize_rows(std::vector<float>& m, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* p = m.data() + r * cols;
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::abs(p[c]));
    if (amax == 0.0f) continue;
    const float scale = amax / 127.0f, inv = 127.0f / amax;
    for (int64_t c = 0; c < cols; ++c) p[c] = std::clamp(std::nearbyint(p[c] * inv), -127.0f, 127.0f) * scale;
  }
}

// out [R, N] = x [R, K] w^T (w [N, K]).
void product(const float* x, const float* w, int64_t R, int64_t N, int64_t K, float* out) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(R), static_cast<blasint>(N),
              static_cast<blasint>(K), 1.0f, x, static_cast<blasint>(K), w, static_cast<blasint>(K), 0.0f, out,
              static_cast<blasint>(N));
}

}  // namespace

float search_alpha(std::span<const SmoothTarget> targets, const std::vector<float>& act_max,
                   const std::vector<float>& weight_max, const std::vector<int64_t>& channel_of,
                   std::span<const float> grid, std::vector<float>& factors) {
  // The f32 outputs, once.
  std::vector<std::vector<float>> reference;
  for (const SmoothTarget& t : targets) {
    const int64_t R = t.x->rows(), N = t.w.dim(0), K = t.w.dim(1);
    reference.emplace_back(static_cast<size_t>(R * N));
    if (R > 0) product(t.x->values.data(), t.w.ptr<float>(), R, N, K, reference.back().data());
  }
  float best_alpha = grid.front();
  double best_error = std::numeric_limits<double>::infinity();
  std::vector<float> x, w, y;
  for (float alpha : grid) {
    const std::vector<float> s = smoothing_factors(act_max, weight_max, alpha);
    double error = 0.0;
    for (size_t i = 0; i < targets.size(); ++i) {
      const SmoothTarget& t = targets[i];
      const int64_t R = t.x->rows(), N = t.w.dim(0), K = t.w.dim(1);
      if (R == 0) continue;
      x.assign(t.x->values.begin(), t.x->values.end());
      for (int64_t r = 0; r < R; ++r)
        for (int64_t k = 0; k < K; ++k) x[static_cast<size_t>(r * K + k)] /= s[static_cast<size_t>(channel_of[k])];
      const float* wp = t.w.ptr<float>();
      w.resize(static_cast<size_t>(N * K));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
          w[static_cast<size_t>(n * K + k)] = wp[n * K + k] * s[static_cast<size_t>(channel_of[k])];
      fake_quantize_rows(x, R, K);
      fake_quantize_rows(w, N, K);
      y.resize(static_cast<size_t>(R * N));
      product(x.data(), w.data(), R, N, K, y.data());
      for (size_t j = 0; j < y.size(); ++j) {
        const double d = double{y[j]} - reference[i][j];
        error += d * d;
      }
    }
    if (error < best_error) {
      best_error = error;
      best_alpha = alpha;
      factors = s;
    }
  }
  return best_alpha;
}

}  // namespace kestrel::tools::search
