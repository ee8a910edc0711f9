// The CUDA backend's mixture-of-experts operations against the CPU reference on the same
// inputs, for f32, f16 and bf16 router logits / activations: routing (ids exactly, weights
// to 1e-6), grouping (exactly, an expert with no pair included) and the weighted combination
// with and without the shared expert. Every test skips without a GPU.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda_test_util.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::close;
using testing::DeviceTensor;
using testing::host_view;
using testing::random_floats;
using testing::random_ints;
using testing::round_to;
using testing::tolerance;

class CudaMoe : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    const std::string why = testing::cuda_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    cpu = make_cpu_backend(0);
    gpu = testing::make_test_cuda_backend();
  }
  DType dt() const { return GetParam(); }
  std::unique_ptr<Backend> cpu, gpu;
};

TEST_P(CudaMoe, RouteMatchesTheCpu) {
  for (int64_t E : {8, 60}) {
    for (int64_t k : {1, 2, 4}) {
      for (bool normalize : {false, true}) {
        SCOPED_TRACE("E " + std::to_string(E) + " k " + std::to_string(k) + (normalize ? " normalized" : ""));
        const int64_t T = 45;
        std::vector<float> logits = round_to(dt(), random_floats(T * E, 7 + E + k, -4.0f, 4.0f));
        std::vector<int32_t> ids(T * k);
        std::vector<float> weights(T * k);
        cpu->moe_route(host_view(logits, {T, E}), normalize, host_view(ids, {T, k}), host_view(weights, {T, k}));
        DeviceTensor logits_d(*gpu, dt(), {T, E}), ids_d(*gpu, DType::i32, {T, k}), w_d(*gpu, DType::f32, {T, k});
        logits_d.set(logits);
        gpu->moe_route(logits_d, normalize, ids_d, w_d);
        EXPECT_EQ(ids_d.ints(), ids);
        EXPECT_TRUE(close(w_d.floats(), weights, 1e-6, "moe_route weights"));
      }
    }
  }
}

TEST_P(CudaMoe, GroupMatchesTheCpuExactly) {
  const int64_t T = 300, k = 2, E = 9;
  std::vector<int32_t> ids = random_ints(T * k, 5, 0, E - 1);  // expert E - 1 gets nothing
  std::vector<int32_t> offsets(E + 1), rows(T * k), slot_of(T * k);
  cpu->moe_group(host_view(ids, {T, k}), host_view(offsets, {E + 1}), host_view(rows, {T * k}),
                 host_view(slot_of, {T * k}));
  DeviceTensor ids_d(*gpu, DType::i32, {T, k}), off_d(*gpu, DType::i32, {E + 1}), rows_d(*gpu, DType::i32, {T * k}),
      slot_d(*gpu, DType::i32, {T * k});
  ids_d.set(ids);
  gpu->moe_group(ids_d, off_d, rows_d, slot_d);
  EXPECT_EQ(off_d.ints(), offsets);
  EXPECT_EQ(offsets[E], offsets[E - 1]);
  EXPECT_EQ(rows_d.ints(), rows);
  EXPECT_EQ(slot_d.ints(), slot_of);
}

TEST_P(CudaMoe, CombineMatchesTheCpu) {
  const int64_t T = 33, k = 4, H = 136;
  std::vector<float> expert_out = round_to(dt(), random_floats(T * k * H, 21, -1.0f, 1.0f));
  std::vector<float> weights = random_floats(T * k, 22, 0.0f, 1.0f);
  std::vector<float> shared = round_to(dt(), random_floats(T * H, 23, -1.0f, 1.0f));
  std::vector<float> gate = round_to(dt(), random_floats(T, 24, -3.0f, 3.0f));
  std::vector<int32_t> slot_of = random_ints(T * k, 25, 0, static_cast<int32_t>(T * k));
  DeviceTensor out_d(*gpu, dt(), {T * k, H}), slot_d(*gpu, DType::i32, {T * k}), w_d(*gpu, DType::f32, {T, k}),
      sh_d(*gpu, dt(), {T, H}), g_d(*gpu, dt(), {T, 1}), y_d(*gpu, dt(), {T, H});
  out_d.set(expert_out);
  slot_d.set(slot_of);
  w_d.set(weights);
  sh_d.set(shared);
  g_d.set(gate);
  for (bool with_shared : {false, true}) {
    std::vector<float> want(T * H);
    const TensorView sh = host_view(shared, {T, H}), g = host_view(gate, {T, 1});
    cpu->moe_combine(host_view(expert_out, {T * k, H}), host_view(slot_of, {T * k}), host_view(weights, {T, k}),
                     with_shared ? &sh : nullptr, with_shared ? &g : nullptr, host_view(want, {T, H}));
    gpu->moe_combine(out_d, slot_d, w_d, with_shared ? sh_d.ptr() : nullptr, with_shared ? g_d.ptr() : nullptr, y_d);
    EXPECT_TRUE(close(y_d.floats(), want, tolerance(dt()), "moe_combine"));
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaMoe, ::testing::Values(DType::f32, DType::f16, DType::bf16),
                         [](const ::testing::TestParamInfo<DType>& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace kestrel
