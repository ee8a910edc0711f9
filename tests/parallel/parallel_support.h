// What the parallel test files share (one binary, kestrel_parallel_tests, started by
// mpirun; main() in parallel_test.cc reads --tp / --pp / --device into the globals).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <kestrel/kestrel.h>
#include <vector>

namespace kestrel {

extern ParallelOptions g_split;  // from --tp / --pp
extern Device g_device;          // from --device (cuda runs in f32 on one GPU per rank)

// Summing partial products in another order moves fp32 logits by a few ulps of their
// magnitude (up to 3.3e-5 seen here): held to the 1e-4 (max abs) of HF's fp32 reference.
inline constexpr float kSplitVsWholeTolerance = 1e-4f;

inline float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float d = 0.0f;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

}  // namespace kestrel
