// tools/smoothquant_search.h: SmoothQuant's migration strength chosen per smoothed input.
//
// One alpha for the whole model is a compromise: an input whose outliers are mild loses
// weight precision for nothing, one with large outliers keeps too much of them. The search
// tries each alpha of a grid on one smoothed input (all the weights it feeds), simulates
// W8A8 on sampled calibration rows (per-token int8 activations, per-channel int8 weights,
// as the kernels round them) and keeps the alpha with the smallest squared error of the
// outputs against the f32 products.
#pragma once

#include <span>
#include <vector>

#include "core/tensor.h"

namespace kestrel::tools::search {

// Calibration rows of one linear layer's input, [rows, cols] row-major.
struct SampledRows {
  int64_t cols = 0;
  std::vector<float> values;
  int64_t rows() const { return cols > 0 ? static_cast<int64_t>(values.size()) / cols : 0; }
};

// One weight fed by the smoothed input, with its sampled inputs: w is a dense f32 [N, K]
// host weight; x holds rows of K.
struct SmoothTarget {
  const SampledRows* x = nullptr;
  TensorView w;
};

// s_c = act_c^alpha / weight_c^(1 - alpha), 1 where a channel saw nothing.
std::vector<float> smoothing_factors(const std::vector<float>& act, const std::vector<float>& weight, float alpha);

// The alpha of `grid` whose factors give the smallest W8A8 output error over `targets`.
// Factors are per channel c; column j of every weight uses channel channel_of[j] (the
// identity, or the KV-head channel of the attention output's column). Returns the alpha;
// `factors` receives its factors [channels].
float search_alpha(std::span<const SmoothTarget> targets, const std::vector<float>& act_max,
                   const std::vector<float>& weight_max, const std::vector<int64_t>& channel_of,
                   std::span<const float> grid, std::vector<float>& factors);

// The weight side of the W8A8 error (the clipping search of AWQ, Lin et al., 2024): row n
// of a weight w [N, K] is quantized with one int8 scale, max |w_n| / 127 by default, so one
// large value makes the whole row coarse. Clipping the row to c * max |w_n| before rounding
// trades a larger error on the few largest values for a finer grid on the others. For each
// row this returns the ratio c of `grid` whose int8 row gives the smallest squared output
// error sum_r (q(x_r) . q_c(w_n) - x_r . w_n)^2 over the sampled input rows x (q(x_r): the
// per-token int8 rounding of the kernels), [N]. x and w are the smoothed values.
std::vector<float> search_row_clip(const SampledRows& x, const TensorView& w, std::span<const float> grid);

// Clamps row n of w [N, K] (row-major) to +-ratio[n] * max |w_n|, in place.
void clip_rows(float* w, int64_t N, int64_t K, std::span<const float> ratio);

}  // namespace kestrel::tools::search
