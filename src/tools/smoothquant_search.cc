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

std::vector<float> search_row_clip(const SampledRows& x, const TensorView& w, std::span<const float> grid) {
  const int64_t R = x.rows(), N = w.dim(0), K = w.dim(1);
  std::vector<float> best_ratio(static_cast<size_t>(N), 1.0f);
  if (R == 0 || grid.empty()) return best_ratio;
  // The f32 outputs [R, N], and the int8 inputs the kernels would multiply.
  std::vector<float> reference(static_cast<size_t>(R * N)), xq(x.values);
  product(x.values.data(), w.ptr<float>(), R, N, K, reference.data());
  fake_quantize_rows(xq, R, K);
  std::vector<double> best_error(static_cast<size_t>(N), std::numeric_limits<double>::infinity());
  std::vector<float> wc(static_cast<size_t>(N * K)), y(static_cast<size_t>(R * N)), ratio(static_cast<size_t>(N));
  for (float c : grid) {
    std::copy(w.ptr<float>(), w.ptr<float>() + N * K, wc.begin());
    std::fill(ratio.begin(), ratio.end(), c);
    clip_rows(wc.data(), N, K, ratio);
    fake_quantize_rows(wc, N, K);
    product(xq.data(), wc.data(), R, N, K, y.data());
    for (int64_t n = 0; n < N; ++n) {
      double e = 0.0;
      for (int64_t r = 0; r < R; ++r) {
        const double d = double{y[static_cast<size_t>(r * N + n)]} - reference[static_cast<size_t>(r * N + n)];
        e += d * d;
      }
      if (e < best_error[static_cast<size_t>(n)]) {
        best_error[static_cast<size_t>(n)] = e;
        best_ratio[static_cast<size_t>(n)] = c;
      }
    }
  }
  return best_ratio;
}

void clip_rows(float* w, int64_t N, int64_t K, std::span<const float> ratio) {
  for (int64_t n = 0; n < N; ++n) {
    float* row = w + n * K;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::abs(row[k]));
    const float bound = amax * ratio[static_cast<size_t>(n)];
    for (int64_t k = 0; k < K; ++k) row[k] = std::clamp(row[k], -bound, bound);
  }
}

}  // namespace kestrel::tools::search
