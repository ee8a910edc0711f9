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

}  // namespace kestrel::tools::search
