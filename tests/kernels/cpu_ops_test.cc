// The CPU reference backend's dense operations against naive loops written here:
// embedding, add_residual_norm, linear, activations, gather_rows, copy and the allocator.
// Attention and sampling have their own files (cpu_attention_test.cc, cpu_sampling_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <ostream>
#include <tuple>
#include <vector>

#include "backend.h"
#include "cpu_test_util.h"
#include "kestrel/error.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::all_near;
using testing::random_floats;
using testing::view;

constexpr double kTol = 1e-5;

class CpuOpsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend = make_cpu_backend(2);
};

double naive_activation(double x, Activation act) {
  switch (act) {
    case Activation::gelu_tanh:
      return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * std::pow(x, 3))));
    case Activation::gelu_erf:
      return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Activation::relu:
      return x > 0 ? x : 0.0;
    case Activation::silu:
      return x / (1.0 + std::exp(-x));
  }
  return 0.0;
}

TEST_F(CpuOpsTest, ReportsDeviceAndDtype) {
  EXPECT_EQ(backend->device(), Device::cpu());
  EXPECT_EQ(backend->compute_dtype(), DType::f32);
  EXPECT_EQ(backend->allocator().device(), Device::cpu());
  backend->synchronize();
  EXPECT_THROW(make_cpu_backend(-1), Error);
  EXPECT_NE(make_cpu_backend(0), nullptr);
}

TEST_F(CpuOpsTest, AllocatorIsAlignedAndNeverNull) {
  Allocator& alloc = backend->allocator();
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{63}, size_t{4096}, size_t{100003}}) {
    void* p = alloc.allocate(bytes, "test buffer");
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    alloc.deallocate(p);
  }
  try {
    alloc.allocate(size_t{1} << 62, "huge buffer");
    FAIL() << "a 4 EiB allocation succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::limit);
    EXPECT_NE(e.message().find("huge buffer"), std::string::npos);
  }
}

TEST_F(CpuOpsTest, CopyIsExactAndRejectsMismatches) {
  auto src = random_floats(77, 1);
  std::vector<float> dst(77, 0.0f);
  backend->copy(view(dst, {7, 11}), view(src, {7, 11}));
  EXPECT_EQ(dst, src);
  std::vector<float> small(10);
  EXPECT_THROW(backend->copy(view(small, {10}), view(src, {7, 11})), Error);
  TensorView on_gpu = view(dst, {7, 11});
  on_gpu.device = Device::cuda(0);
  EXPECT_THROW(backend->copy(on_gpu, view(src, {7, 11})), Error);
}

TEST_F(CpuOpsTest, CopyKvBlocksCopiesWholeBlocksAndChecksIds) {
  const int64_t blocks = 4, nkv = 2, bs = 3, hd = 5, per_block = nkv * bs * hd;
  auto k = random_floats(blocks * per_block, 2), v = random_floats(blocks * per_block, 3);
  const auto k0 = k, v0 = v;
  std::vector<int32_t> pairs = {1, 3, 1, 0};
  KvCacheLayer cache{view(k, {blocks, nkv, bs, hd}), view(v, {blocks, nkv, bs, hd}), static_cast<int>(bs)};
  backend->copy_kv_blocks(cache, view(pairs, {2, 2}));
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t i = 0; i < per_block; ++i) {
      const int64_t from = (b == 0 || b == 3 ? 1 : b) * per_block + i;
      ASSERT_EQ(k[b * per_block + i], k0[from]) << "block " << b;
      ASSERT_EQ(v[b * per_block + i], v0[from]) << "block " << b;
    }
  std::vector<int32_t> outside = {1, 4}, chained = {1, 2, 2, 3};
  EXPECT_THROW(backend->copy_kv_blocks(cache, view(outside, {1, 2})), Error);
  EXPECT_THROW(backend->copy_kv_blocks(cache, view(chained, {2, 2})), Error);
}

TEST_F(CpuOpsTest, EmbeddingWithAndWithoutPositions) {
  const int T = 5, V = 13, P = 9, H = 19;
  std::vector<int32_t> ids = {3, 0, 12, 3, 7};
  std::vector<int32_t> pos = {4, 5, 6, 0, 8};
  auto wte = random_floats(V * H, 2);
  auto wpe = random_floats(P * H, 3);
  std::vector<float> out(T * H, NAN);
  TensorView wpe_view = view(wpe, {P, H});

  backend->embedding(view(ids, {T}), view(pos, {T}), view(wte, {V, H}), nullptr, view(out, {T, H}));
  std::vector<double> expected(T * H);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < H; ++i) expected[t * H + i] = wte[ids[t] * H + i];
  EXPECT_TRUE(all_near(out, expected, 0.0));

  backend->embedding(view(ids, {T}), view(pos, {T}), view(wte, {V, H}), &wpe_view,
                     view(out, {T, H}));
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < H; ++i)
      expected[t * H + i] = static_cast<double>(wte[ids[t] * H + i]) + wpe[pos[t] * H + i];
  EXPECT_TRUE(all_near(out, expected, kTol));

  ids[2] = V;  // out of the vocabulary
  EXPECT_THROW(backend->embedding(view(ids, {T}), view(pos, {T}), view(wte, {V, H}), nullptr,
                                  view(out, {T, H})),
               Error);
}

struct NormCase {
  NormKind kind;
  bool with_delta;
  bool with_delta_bias;
  bool with_beta;
};

void PrintTo(const NormCase& c, std::ostream* os) {
  *os << (c.kind == NormKind::layer_norm ? "layer_norm" : "rms_norm")
      << (c.with_delta ? " +delta" : "") << (c.with_delta_bias ? " +delta_bias" : "")
      << (c.with_beta ? " +beta" : "");
}

class CpuNormTest : public CpuOpsTest, public ::testing::WithParamInterface<NormCase> {
 protected:
  void check(int T, int H);
};

// The large shape runs on several OpenMP threads, the small one on one.
TEST_P(CpuNormTest, MatchesNaive) {
  for (auto [T, H] : {std::pair{4, 67}, std::pair{40, 1030}}) check(T, H);
}

void CpuNormTest::check(int T, int H) {
  const NormCase c = GetParam();
  auto residual = random_floats(T * H, 10, -3.0f, 5.0f);  // nonzero mean on purpose
  auto delta = random_floats(T * H, 11);
  auto delta_bias = random_floats(H, 12);
  auto gamma = random_floats(H, 13, 0.5f, 1.5f);
  auto beta = random_floats(H, 14);
  std::vector<float> out(T * H, NAN);

  // Naive: the residual update in f32 (as documented), statistics in double.
  std::vector<float> new_residual = residual;
  std::vector<double> expected(T * H);
  const double eps = 1e-5;
  for (int t = 0; t < T; ++t) {
    float* r = &new_residual[t * H];
    for (int i = 0; i < H; ++i)
      r[i] += (c.with_delta ? delta[t * H + i] : 0.0f) + (c.with_delta_bias ? delta_bias[i] : 0.0f);
    double mean = 0, sq = 0;
    for (int i = 0; i < H; ++i) mean += r[i];
    mean = c.kind == NormKind::layer_norm ? mean / H : 0.0;
    for (int i = 0; i < H; ++i) sq += (r[i] - mean) * (r[i] - mean);
    const double rstd = 1.0 / std::sqrt(sq / H + eps);
    for (int i = 0; i < H; ++i)
      expected[t * H + i] = (r[i] - mean) * rstd * gamma[i] + (c.with_beta ? beta[i] : 0.0);
  }

  NormParams norm;
  norm.kind = c.kind;
  norm.gamma = view(gamma, {H});
  if (c.with_beta) norm.beta = view(beta, {H});
  norm.eps = 1e-5f;
  TensorView delta_view = view(delta, {T, H}), bias_view = view(delta_bias, {H});
  backend->add_residual_norm(view(residual, {T, H}), c.with_delta ? &delta_view : nullptr,
                             c.with_delta_bias ? &bias_view : nullptr, norm, view(out, {T, H}));
  EXPECT_TRUE(
      all_near(residual, std::vector<double>(new_residual.begin(), new_residual.end()), 0.0));
  EXPECT_TRUE(all_near(out, expected, kTol)) << T << "x" << H;
}

INSTANTIATE_TEST_SUITE_P(Kinds, CpuNormTest,
                         ::testing::Values(NormCase{NormKind::layer_norm, true, true, true},
                                           NormCase{NormKind::layer_norm, true, false, true},
                                           NormCase{NormKind::layer_norm, false, false, true},
                                           NormCase{NormKind::layer_norm, true, true, false},
                                           NormCase{NormKind::rms_norm, true, false, false},
                                           NormCase{NormKind::rms_norm, true, true, false},
                                           NormCase{NormKind::rms_norm, false, false, false}));

TEST_F(CpuOpsTest, RmsNormRejectsBetaAndBadShapes) {
  const int T = 2, H = 8;
  auto residual = random_floats(T * H, 20);
  auto gamma = random_floats(H, 21);
  std::vector<float> out(T * H);
  NormParams norm;
  norm.kind = NormKind::rms_norm;
  norm.gamma = view(gamma, {H});
  norm.beta = view(gamma, {H});
  EXPECT_THROW(
      backend->add_residual_norm(view(residual, {T, H}), nullptr, nullptr, norm, view(out, {T, H})),
      Error);
  norm.beta = TensorView();
  try {
    backend->add_residual_norm(view(residual, {T, H}), nullptr, nullptr, norm, view(out, {H, T}));
    FAIL() << "a transposed out was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::internal);
    EXPECT_NE(e.message().find("add_residual_norm"), std::string::npos);
    EXPECT_NE(e.message().find("out"), std::string::npos);
  }
}

TEST_F(CpuOpsTest, LinearOnOddSizesWithAndWithoutBias) {
  for (auto [T, K, M] : {std::tuple{3, 37, 19}, std::tuple{1, 64, 7}, std::tuple{17, 5, 33},
                         std::tuple{64, 40, 1100}}) {
    auto x = random_floats(T * K, 30 + T);
    auto w = random_floats(M * K, 31 + K);
    auto bias = random_floats(M, 32 + M);
    std::vector<double> expected(T * M);
    for (int t = 0; t < T; ++t)
      for (int m = 0; m < M; ++m) {
        double acc = 0;
        for (int k = 0; k < K; ++k) acc += static_cast<double>(x[t * K + k]) * w[m * K + k];
        expected[t * M + m] = acc;
      }
    std::vector<float> out(T * M, NAN);
    backend->linear(view(x, {T, K}), view(w, {M, K}), nullptr, view(out, {T, M}));
    EXPECT_TRUE(all_near(out, expected, kTol)) << T << "x" << K << "x" << M;

    TensorView bias_view = view(bias, {M});
    backend->linear(view(x, {T, K}), view(w, {M, K}), &bias_view, view(out, {T, M}));
    for (int t = 0; t < T; ++t)
      for (int m = 0; m < M; ++m) expected[t * M + m] += bias[m];
    EXPECT_TRUE(all_near(out, expected, kTol)) << T << "x" << K << "x" << M << " with bias";
  }
  std::vector<float> x(6), w(6), out(4);
  EXPECT_THROW(backend->linear(view(x, {2, 3}), view(w, {3, 2}), nullptr, view(out, {2, 2})),
               Error);
}

class CpuActivationTest : public CpuOpsTest, public ::testing::WithParamInterface<Activation> {};

TEST_P(CpuActivationTest, BiasActivationMatchesNaive) {
  const Activation act = GetParam();
  for (auto [T, M] : {std::pair{5, 41}, std::pair{37, 1029}})
    for (bool with_bias : {false, true}) {
      auto x = random_floats(T * M, 40, -6.0f, 6.0f);
      auto bias = random_floats(M, 41);
      TensorView bias_view = view(bias, {M});
      std::vector<float> y = x;
      std::vector<double> expected(T * M);
      for (int t = 0; t < T; ++t)
        for (int m = 0; m < M; ++m)
          expected[t * M + m] = naive_activation(x[t * M + m] + (with_bias ? bias[m] : 0.0f), act);
      backend->bias_activation(view(y, {T, M}), with_bias ? &bias_view : nullptr, act);
      EXPECT_TRUE(all_near(y, expected, kTol)) << T << "x" << M << " bias " << with_bias;
    }
}

TEST_P(CpuActivationTest, GatedActivationMatchesNaive) {
  const Activation act = GetParam();
  for (auto [T, F] : {std::pair{3, 29}, std::pair{33, 1001}}) {
    auto gate_up = random_floats(T * 2 * F, 50, -5.0f, 5.0f);
    std::vector<float> out(T * F, NAN);
    backend->gated_activation(view(gate_up, {T, 2 * F}), act, view(out, {T, F}));
    std::vector<double> expected(T * F);
    for (int t = 0; t < T; ++t)
      for (int f = 0; f < F; ++f)
        expected[t * F + f] =
            naive_activation(gate_up[t * 2 * F + f], act) * gate_up[t * 2 * F + F + f];
    EXPECT_TRUE(all_near(out, expected, kTol)) << T << "x" << F;
  }
  std::vector<float> odd(2 * 7), small(2 * 3);
  EXPECT_THROW(backend->gated_activation(view(odd, {2, 7}), act, view(small, {2, 3})), Error);
}

INSTANTIATE_TEST_SUITE_P(All, CpuActivationTest,
                         ::testing::Values(Activation::gelu_tanh, Activation::gelu_erf,
                                           Activation::relu, Activation::silu));

// gpt-oss's clamped SwiGLU against the formula of transformers' GptOssExperts, with a
// limit the random inputs cross on both sides, and at a few points evaluated in Python
// float64 (alpha 1.702, limit 7: each clamp and neither).
TEST_F(CpuOpsTest, ClampedSwigluMatchesGptOssExperts) {
  for (auto [T, F] : {std::pair{3, 29}, std::pair{33, 1001}}) {
    const float alpha = 1.702f, limit = 2.5f;
    auto gate_up = random_floats(T * 2 * F, 51, -5.0f, 5.0f);
    std::vector<float> out(T * F, NAN);
    backend->clamped_swiglu(view(gate_up, {T, 2 * F}), alpha, limit, view(out, {T, F}));
    std::vector<double> expected(T * F);
    for (int t = 0; t < T; ++t)
      for (int f = 0; f < F; ++f) {
        const double g = std::min<double>(gate_up[t * 2 * F + f], limit);
        const double u = std::clamp<double>(gate_up[t * 2 * F + F + f], -limit, limit);
        expected[t * F + f] = (u + 1.0) * g * (1.0 / (1.0 + std::exp(-static_cast<double>(alpha) * g)));
      }
    EXPECT_TRUE(all_near(out, expected, kTol)) << T << "x" << F;
  }
  // [gate | up] of one row: gates -9, -1, 0.3, 2.5, 7.5, 12; ups 0.5, -8, 2, -0.7, 9, -12.
  std::vector<float> row = {-9.0f, -1.0f, 0.3f, 2.5f, 7.5f, 12.0f, 0.5f, -8.0f, 2.0f, -0.7f, 9.0f, -12.0f};
  const std::vector<double> python = {-3.004766979837765e-06, 0.9252254044030722, 0.562452406144775,
                                      0.7395041504854292,     55.99962502642654,  -41.99971876981991};
  std::vector<float> got(6, NAN);
  backend->clamped_swiglu(view(row, {1, 12}), 1.702f, 7.0f, view(got, {1, 6}));
  EXPECT_TRUE(all_near(got, python, 1e-6));
  std::vector<float> odd(2 * 7), small(2 * 3);
  EXPECT_THROW(backend->clamped_swiglu(view(odd, {2, 7}), 1.702f, 7.0f, view(small, {2, 3})), Error);
  EXPECT_THROW(backend->clamped_swiglu(view(row, {1, 12}), 1.702f, 0.0f, view(got, {1, 6})), Error);
}

TEST_F(CpuOpsTest, GeluTanhIsHuggingFaceGeluNew) {
  // transformers' NewGELUActivation formula evaluated in Python float64 at a few points.
  std::vector<float> x = {-3.0f, -1.0f, -0.5f, 0.5f, 1.0f, 2.5f};
  const std::vector<double> expected = {-0.0036373920817729943, -0.15880800939172324,
                                        -0.15428599017485606,   0.34571400982514394,
                                        0.8411919906082768,     2.484915733910001};
  backend->bias_activation(view(x, {1, 6}), nullptr, Activation::gelu_tanh);
  EXPECT_TRUE(all_near(x, expected, 1e-6));
}

TEST_F(CpuOpsTest, LargeEmbeddingAndGatherRunThreaded) {
  const int T = 70, V = 100, P = 80, H = 1000, B = 40;
  std::vector<int32_t> ids(T), pos(T), rows(B);
  for (int t = 0; t < T; ++t) {
    ids[t] = (t * 37 + 11) % V;
    pos[t] = (t * 13 + 5) % P;
  }
  for (int b = 0; b < B; ++b) rows[b] = (b * 7 + 3) % T;
  auto wte = random_floats(V * H, 70);
  auto wpe = random_floats(P * H, 71);
  TensorView wpe_view = view(wpe, {P, H});
  std::vector<float> emb(T * H, NAN), gathered(B * H, NAN);
  backend->embedding(view(ids, {T}), view(pos, {T}), view(wte, {V, H}), &wpe_view,
                     view(emb, {T, H}));
  backend->gather_rows(view(emb, {T, H}), view(rows, {B}), view(gathered, {B, H}));
  std::vector<double> want_emb(T * H), want_gathered(B * H);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < H; ++i)
      want_emb[t * H + i] = static_cast<double>(wte[ids[t] * H + i]) + wpe[pos[t] * H + i];
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < H; ++i) want_gathered[b * H + i] = want_emb[rows[b] * H + i];
  EXPECT_TRUE(all_near(emb, want_emb, kTol));
  EXPECT_TRUE(all_near(gathered, want_gathered, kTol));
}

TEST_F(CpuOpsTest, GatherRows) {
  const int T = 6, H = 11, B = 4;
  auto x = random_floats(T * H, 60);
  std::vector<int32_t> rows = {5, 0, 5, 2};
  std::vector<float> out(B * H, NAN);
  backend->gather_rows(view(x, {T, H}), view(rows, {B}), view(out, {B, H}));
  std::vector<double> expected(B * H);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < H; ++i) expected[b * H + i] = x[rows[b] * H + i];
  EXPECT_TRUE(all_near(out, expected, 0.0));
  rows[1] = -1;
  EXPECT_THROW(backend->gather_rows(view(x, {T, H}), view(rows, {B}), view(out, {B, H})), Error);
}

}  // namespace
}  // namespace kestrel
