// kernels/cpu/head_norm_cpu.cc: RMSNorm of the q and k heads of a fused QKV row, per head
// (Qwen3's and Gemma 3's q_norm / k_norm) or over all q / all k heads at once (OLMo 2's),
// and the elementwise scale and soft-cap.
#include <cmath>

#include "cpu/cpu_ops.h"
#include "cpu/thread_pool.h"

namespace kestrel::cpu {

namespace {

// RMSNorm of hd floats in place, statistics in double as add_residual_norm takes them.
void rms_norm_head(float* x, const float* gamma, int hd, double eps) {
  double sq = 0.0;
  for (int d = 0; d < hd; ++d) sq += static_cast<double>(x[d]) * x[d];
  const double inv = 1.0 / std::sqrt(sq / hd + eps);
  for (int d = 0; d < hd; ++d) x[d] = static_cast<float>(x[d] * inv * gamma[d]);
}

// The width each RMSNorm spans: one head (gamma [hd]) or all `heads` of them (gamma [heads hd]).
int expect_norm(const NormParams& norm, int hd, int heads, const char* op, const char* name) {
  if (norm.kind != NormKind::rms_norm || !norm.beta.empty()) fail(op, std::string(name) + " must be an RMSNorm");
  const int span = !norm.gamma.empty() && norm.gamma.dim(0) == int64_t{heads} * hd ? heads * hd : hd;
  expect_tensor(norm.gamma, DType::f32, {span}, op, name);
  if (!(norm.eps >= 0.0f)) fail(op, std::string(name) + ": eps must be >= 0");
  return span;
}

}  // namespace

// qkv: [T, (nh + 2 nkv) hd]; one token per iteration.
void head_norm(TensorView qkv, int nh, int nkv, int hd, const NormParams& q_norm, const NormParams& k_norm,
               int threads) {
  const char* op = "head_norm";
  if (nh <= 0 || nkv <= 0 || hd <= 0) fail(op, "bad head counts");
  const int64_t width = static_cast<int64_t>(nh + 2 * nkv) * hd;
  expect_tensor(qkv, DType::f32, {-1, width}, op, "qkv");
  const int q_span = expect_norm(q_norm, hd, nh, op, "q_norm");
  const int k_span = expect_norm(k_norm, hd, nkv, op, "k_norm");
  const int64_t T = qkv.dim(0);
  float* x = qkv.ptr<float>();
  const float* qg = q_norm.gamma.ptr<float>();
  const float* kg = k_norm.gamma.ptr<float>();
  parallel_for(threads_for(T * width, threads), T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* row = x + t * width;
      for (int64_t q = 0; q < int64_t{nh} * hd; q += q_span) rms_norm_head(row + q, qg, q_span, q_norm.eps);
      for (int64_t k = 0; k < int64_t{nkv} * hd; k += k_span)
        rms_norm_head(row + int64_t{nh} * hd + k, kg, k_span, k_norm.eps);
    }
  });
}

// x: [..] f32, in place.
void scale(TensorView x, float factor, int threads) {
  const char* op = "scale";
  expect_tensor(x, DType::f32, {-1, -1}, op, "x");
  float* p = x.ptr<float>();
  const int64_t n = x.numel();
  parallel_for(threads_for(n, threads), n, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) p[i] *= factor;
  });
}

// x: [..] f32, in place; tanh in double, rounded once.
void soft_cap(TensorView x, float cap, int threads) {
  const char* op = "soft_cap";
  expect_tensor(x, DType::f32, {-1, -1}, op, "x");
  if (!(cap > 0.0f) || !std::isfinite(cap)) fail(op, "cap must be positive and finite, got " + std::to_string(cap));
  float* p = x.ptr<float>();
  const int64_t n = x.numel();
  parallel_for(threads_for(n, threads), n, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) p[i] = static_cast<float>(std::tanh(static_cast<double>(p[i]) / cap) * cap);
  });
}

}  // namespace kestrel::cpu
