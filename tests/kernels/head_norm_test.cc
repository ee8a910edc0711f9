// The operations Gemma and Qwen3 added to the backend: head_norm (per-head RMSNorm of the
// q and k heads of a fused QKV row, v untouched), scale and soft_cap. The CPU backend
// against naive double-precision loops on random inputs, its errors on bad arguments; the
// CUDA backend against the CPU for f32, f16 and bf16 (skipped without a GPU).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cpu_test_util.h"
#include "cuda_test_util.h"
#include "kestrel/error.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::all_near;
using testing::random_floats;
using testing::view;

constexpr double kTol = 1e-5;

struct HeadShape {
  int nh, nkv, hd;
  int64_t width() const { return static_cast<int64_t>(nh + 2 * nkv) * hd; }
};

// rms_norm(x_h) * gamma for every q head (q_gamma) and k head (k_gamma) of each row, in double.
std::vector<double> naive_head_norm(const std::vector<float>& x, const HeadShape& s, int64_t T,
                                    const std::vector<float>& q_gamma, const std::vector<float>& k_gamma,
                                    double eps) {
  std::vector<double> out(x.begin(), x.end());
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < s.nh + s.nkv; ++h) {
      double* head = &out[static_cast<size_t>(t * s.width() + static_cast<int64_t>(h) * s.hd)];
      const std::vector<float>& gamma = h < s.nh ? q_gamma : k_gamma;
      double sq = 0;
      for (int d = 0; d < s.hd; ++d) sq += head[d] * head[d];
      const double inv = 1.0 / std::sqrt(sq / s.hd + eps);
      for (int d = 0; d < s.hd; ++d) head[d] = head[d] * inv * gamma[d];
    }
  return out;
}

NormParams rms(TensorView gamma, float eps) {
  NormParams p;
  p.kind = NormKind::rms_norm;
  p.gamma = gamma;
  p.eps = eps;
  return p;
}

TEST(CpuHeadNorm, MatchesNaiveAndLeavesValuesAlone) {
  auto backend = make_cpu_backend(2);
  for (const HeadShape s : {HeadShape{4, 2, 16}, HeadShape{8, 1, 128}, HeadShape{2, 2, 256}}) {
    SCOPED_TRACE("nh " + std::to_string(s.nh) + " nkv " + std::to_string(s.nkv) + " hd " + std::to_string(s.hd));
    const int64_t T = 37;
    std::vector<float> x = random_floats(static_cast<size_t>(T * s.width()), 1, -3.0f, 3.0f);
    std::vector<float> qg = random_floats(s.hd, 2, 0.5f, 1.5f), kg = random_floats(s.hd, 3, -1.0f, 1.0f);
    const std::vector<double> want = naive_head_norm(x, s, T, qg, kg, 1e-6);
    backend->head_norm(view(x, {T, s.width()}), s.nh, s.nkv, s.hd, rms(view(qg, {s.hd}), 1e-6f),
                       rms(view(kg, {s.hd}), 1e-6f));
    EXPECT_TRUE(all_near(x, want, kTol));
  }
}

TEST(CpuHeadNorm, RejectsBadArguments) {
  auto backend = make_cpu_backend(1);
  std::vector<float> x(2 * 64), gamma(16), short_gamma(8);
  const TensorView qkv = view(x, {2, 64});  // (2 + 2 * 1) heads of 16
  EXPECT_THROW(backend->head_norm(qkv, 2, 1, 16, rms(view(short_gamma, {8}), 1e-6f), rms(view(gamma, {16}), 1e-6f)),
               Error);
  EXPECT_THROW(backend->head_norm(qkv, 3, 1, 16, rms(view(gamma, {16}), 1e-6f), rms(view(gamma, {16}), 1e-6f)),
               Error);  // the row is not (3 + 2) heads wide
  NormParams layer_norm = rms(view(gamma, {16}), 1e-6f);
  layer_norm.kind = NormKind::layer_norm;
  EXPECT_THROW(backend->head_norm(qkv, 2, 1, 16, layer_norm, rms(view(gamma, {16}), 1e-6f)), Error);
}

TEST(CpuElementwise, ScaleAndSoftCapMatchNaive) {
  auto backend = make_cpu_backend(2);
  std::vector<float> x = random_floats(300 * 257, 4, -60.0f, 60.0f), y = x;
  std::vector<double> scaled, capped;
  for (float v : x) scaled.push_back(static_cast<float>(v * 5.656854249f));
  for (float v : x) capped.push_back(std::tanh(v / 30.0) * 30.0);
  backend->scale(view(x, {300, 257}), 5.656854249f);
  backend->soft_cap(view(y, {300, 257}), 30.0f);
  EXPECT_TRUE(all_near(x, scaled, kTol));
  EXPECT_TRUE(all_near(y, capped, kTol));
  EXPECT_THROW(backend->soft_cap(view(y, {300, 257}), 0.0f), Error);
  EXPECT_THROW(backend->soft_cap(view(y, {300, 257}), -1.0f), Error);
}

class CudaHeadNorm : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    const std::string why = testing::cuda_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    cpu = make_cpu_backend(0);
    gpu = testing::make_test_cuda_backend();
  }
  std::vector<float> input(size_t n, uint64_t seed, float lo, float hi) const {
    return testing::round_to(GetParam(), random_floats(n, seed, lo, hi));
  }
  std::unique_ptr<Backend> cpu, gpu;
};

TEST_P(CudaHeadNorm, HeadNormMatchesCpu) {
  using testing::DeviceTensor;
  const DType dt = GetParam();
  for (const HeadShape s : {HeadShape{4, 2, 16}, HeadShape{8, 1, 128}, HeadShape{2, 2, 256}}) {
    SCOPED_TRACE("hd " + std::to_string(s.hd));
    const int64_t T = 29;
    std::vector<float> x = input(static_cast<size_t>(T * s.width()), 5, -3.0f, 3.0f);
    std::vector<float> qg = input(s.hd, 6, 0.5f, 1.5f), kg = input(s.hd, 7, -1.0f, 1.0f);
    DeviceTensor x_d(*gpu, dt, {T, s.width()}), qg_d(*gpu, dt, {s.hd}), kg_d(*gpu, dt, {s.hd});
    x_d.set(x);
    qg_d.set(qg);
    kg_d.set(kg);
    cpu->head_norm(view(x, {T, s.width()}), s.nh, s.nkv, s.hd, rms(view(qg, {s.hd}), 1e-6f),
                   rms(view(kg, {s.hd}), 1e-6f));
    gpu->head_norm(x_d, s.nh, s.nkv, s.hd, rms(qg_d, 1e-6f), rms(kg_d, 1e-6f));
    EXPECT_TRUE(testing::close(x_d.floats(), x, testing::tolerance(dt), "head_norm"));
  }
}

TEST_P(CudaHeadNorm, ScaleAndSoftCapMatchCpu) {
  using testing::DeviceTensor;
  const DType dt = GetParam();
  const int64_t R = 7, V = 1003;
  std::vector<float> x = input(static_cast<size_t>(R * V), 8, -60.0f, 60.0f), y = x;
  DeviceTensor x_d(*gpu, dt, {R, V}), y_d(*gpu, dt, {R, V});
  x_d.set(x);
  y_d.set(y);
  cpu->scale(view(x, {R, V}), 5.65625f);
  gpu->scale(x_d, 5.65625f);
  cpu->soft_cap(view(y, {R, V}), 30.0f);
  gpu->soft_cap(y_d, 30.0f);
  EXPECT_TRUE(testing::close(x_d.floats(), x, testing::tolerance(dt), "scale"));
  EXPECT_TRUE(testing::close(y_d.floats(), y, testing::tolerance(dt), "soft_cap"));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaHeadNorm, ::testing::Values(DType::f32, DType::f16, DType::bf16),
                         [](const ::testing::TestParamInfo<DType>& info) { return to_string(info.param); });

}  // namespace
}  // namespace kestrel
