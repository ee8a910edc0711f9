// kernels/cpu/norm_cpu.cc: residual add fused with LayerNorm / RMSNorm.
#include <cmath>

#include "cpu/cpu_ops.h"
#include "cpu/thread_pool.h"

namespace kestrel::cpu {

// residual: [T, H] in/out; delta: [T, H] or null; delta_bias: [H] or null;
// gamma, beta: [H] (beta empty for RMSNorm or a LayerNorm without bias); out: [T, H].
// One row per iteration. The updated residual is rounded to f32 first (it is what the
// next layer adds to), then the statistics of that f32 row are taken in double with a
// two-pass mean / variance, so the result does not depend on the row's offset.
void add_residual_norm(TensorView residual, const TensorView* delta, const TensorView* delta_bias,
                       const NormParams& norm, TensorView out, int threads) {
  const char* op = "add_residual_norm";
  expect_tensor(residual, DType::f32, {-1, -1}, op, "residual");
  const int64_t T = residual.dim(0), H = residual.dim(1);
  expect_tensor(out, DType::f32, {T, H}, op, "out");
  if (delta) expect_tensor(*delta, DType::f32, {T, H}, op, "delta");
  if (delta_bias) expect_tensor(*delta_bias, DType::f32, {H}, op, "delta_bias");
  expect_tensor(norm.gamma, DType::f32, {H}, op, "gamma");
  const bool has_beta = !norm.beta.empty();
  if (has_beta) {
    if (norm.kind == NormKind::rms_norm) fail(op, "RMSNorm takes no beta");
    expect_tensor(norm.beta, DType::f32, {H}, op, "beta");
  }
  if (!(norm.eps >= 0.0f)) fail(op, "eps must be >= 0, got " + std::to_string(norm.eps));

  float* res = residual.ptr<float>();
  float* o = out.ptr<float>();
  const float* d = delta ? delta->ptr<float>() : nullptr;
  const float* db = delta_bias ? delta_bias->ptr<float>() : nullptr;
  const float* gamma = norm.gamma.ptr<float>();
  const float* beta = has_beta ? norm.beta.ptr<float>() : nullptr;
  const bool rms = norm.kind == NormKind::rms_norm;
  const double eps = norm.eps;

  parallel_for(threads_for(T * H, threads), T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* r = res + t * H;
      if (d || db) {
        const float* dr = d ? d + t * H : nullptr;
        for (int64_t i = 0; i < H; ++i) r[i] += (dr ? dr[i] : 0.0f) + (db ? db[i] : 0.0f);
      }
      double mean = 0.0;
      if (!rms) {
        for (int64_t i = 0; i < H; ++i) mean += r[i];
        mean /= static_cast<double>(H);
      }
      double var = 0.0;
      for (int64_t i = 0; i < H; ++i) {
        const double c = r[i] - mean;
        var += c * c;
      }
      var /= static_cast<double>(H);
      const double inv = 1.0 / std::sqrt(var + eps);
      float* dst = o + t * H;
      for (int64_t i = 0; i < H; ++i) {
        const double y = (r[i] - mean) * inv * gamma[i] + (beta ? beta[i] : 0.0f);
        dst[i] = static_cast<float>(y);
      }
    }
  });
}

}  // namespace kestrel::cpu
