// Helpers for the CPU backend tests: views over std::vector buffers and tolerant comparisons.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace kestrel::testing {

inline TensorView view(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  TensorView t(v.data(), DType::f32, shape);
  EXPECT_EQ(static_cast<size_t>(t.numel()), v.size()) << "test buffer does not match its view";
  return t;
}

inline TensorView view(std::vector<int32_t>& v, std::initializer_list<int64_t> shape) {
  TensorView t(v.data(), DType::i32, shape);
  EXPECT_EQ(static_cast<size_t>(t.numel()), v.size()) << "test buffer does not match its view";
  return t;
}

// Passes when |actual - expected| <= tol * max(1, |expected|) everywhere (absolute for small
// values, relative for large ones); reports the worst element otherwise.
inline ::testing::AssertionResult all_near(const std::vector<float>& actual,
                                           const std::vector<double>& expected, double tol) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure()
           << "sizes differ: " << actual.size() << " vs " << expected.size();
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double err = std::abs(actual[i] - expected[i]) / std::max(1.0, std::abs(expected[i]));
    if (!(err <= worst)) {  // also catches NaN
      worst = err;
      at = i;
    }
  }
  if (worst <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "element " << at << ": got " << actual[at] << ", expected " << expected[at]
         << " (error " << worst << " > " << tol << ")";
}

inline ::testing::AssertionResult all_near(const std::vector<float>& actual,
                                           const std::vector<float>& expected, double tol) {
  return all_near(actual, std::vector<double>(expected.begin(), expected.end()), tol);
}

}  // namespace kestrel::testing
