// kernels/cpu/activation_cpu.cc: bias + activation in place, and gated activations (SwiGLU).
#include <algorithm>
#include <cmath>
#include <string>

#include "cpu/cpu_ops.h"
#include "cpu/thread_pool.h"

namespace kestrel::cpu {

namespace {

// Evaluated in double and rounded once, so the reference is as exact as f32 allows.
template <Activation A>
inline float activate(float xf) {
  const double x = xf;
  if constexpr (A == Activation::gelu_tanh) {
    // Hugging Face "gelu_new": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    constexpr double kSqrt2OverPi = 0.7978845608028654;
    return static_cast<float>(0.5 * x *
                              (1.0 + std::tanh(kSqrt2OverPi * (x + 0.044715 * x * x * x))));
  } else if constexpr (A == Activation::gelu_erf) {
    constexpr double kInvSqrt2 = 0.7071067811865476;
    return static_cast<float>(0.5 * x * (1.0 + std::erf(x * kInvSqrt2)));
  } else if constexpr (A == Activation::relu) {
    return xf > 0.0f ? xf : 0.0f;
  } else {
    return static_cast<float>(x / (1.0 + std::exp(-x)));  // silu
  }
}

template <Activation A>
void bias_activation_rows(float* x, const float* bias, int64_t T, int64_t M, int threads) {
  parallel_for(threads_for(T * M, threads), T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* row = x + t * M;
      for (int64_t m = 0; m < M; ++m) row[m] = activate<A>(bias ? row[m] + bias[m] : row[m]);
    }
  });
}

template <Activation A>
void gated_rows(const float* gate_up, float* out, int64_t T, int64_t F, int threads) {
  parallel_for(threads_for(T * F, threads), T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* gate = gate_up + t * 2 * F;
      const float* up = gate + F;
      float* o = out + t * F;
      for (int64_t f = 0; f < F; ++f) o[f] = activate<A>(gate[f]) * up[f];
    }
  });
}

// Calls fn.template operator()<A>() for the runtime activation `act`.
template <class Fn>
void dispatch(Activation act, const char* op, Fn&& fn) {
  switch (act) {
    case Activation::gelu_tanh:
      return fn.template operator()<Activation::gelu_tanh>();
    case Activation::gelu_erf:
      return fn.template operator()<Activation::gelu_erf>();
    case Activation::relu:
      return fn.template operator()<Activation::relu>();
    case Activation::silu:
      return fn.template operator()<Activation::silu>();
  }
  fail(op, "unknown activation " + std::to_string(static_cast<int>(act)));
}

}  // namespace

// x: [T, M] in place; bias: [M] or null.
void bias_activation(TensorView x, const TensorView* bias, Activation act, int threads) {
  const char* op = "bias_activation";
  expect_tensor(x, DType::f32, {-1, -1}, op, "x");
  const int64_t T = x.dim(0), M = x.dim(1);
  if (bias) expect_tensor(*bias, DType::f32, {M}, op, "bias");
  float* px = x.ptr<float>();
  const float* pb = bias ? bias->ptr<float>() : nullptr;
  dispatch(act, op, [&]<Activation A>() { bias_activation_rows<A>(px, pb, T, M, threads); });
}

// gate_up: [T, 2F] as [gate | up]; out: [T, F]; out = act(gate) * up.
void gated_activation(const TensorView& gate_up, Activation act, TensorView out, int threads) {
  const char* op = "gated_activation";
  expect_tensor(gate_up, DType::f32, {-1, -1}, op, "gate_up");
  const int64_t T = gate_up.dim(0);
  if (gate_up.dim(1) % 2 != 0)
    fail(op, "gate_up " + gate_up.shape_string() + " has an odd last dimension");
  const int64_t F = gate_up.dim(1) / 2;
  expect_tensor(out, DType::f32, {T, F}, op, "out");
  const float* pg = gate_up.ptr<float>();
  float* po = out.ptr<float>();
  dispatch(act, op, [&]<Activation A>() { gated_rows<A>(pg, po, T, F, threads); });
}

// gate_up: [T, 2F] as [gate | up]; out: [T, F]; gpt-oss's clamped SwiGLU (backend.h),
// evaluated in double and rounded once like the activations above.
void clamped_swiglu(const TensorView& gate_up, float alpha, float limit, TensorView out, int threads) {
  const char* op = "clamped_swiglu";
  expect_tensor(gate_up, DType::f32, {-1, -1}, op, "gate_up");
  const int64_t T = gate_up.dim(0);
  if (gate_up.dim(1) % 2 != 0)
    fail(op, "gate_up " + gate_up.shape_string() + " has an odd last dimension");
  const int64_t F = gate_up.dim(1) / 2;
  expect_tensor(out, DType::f32, {T, F}, op, "out");
  if (!(limit > 0.0f) || !std::isfinite(limit) || !std::isfinite(alpha))
    fail(op, "limit must be positive and finite and alpha finite, got limit " + std::to_string(limit) +
                 ", alpha " + std::to_string(alpha));
  const float* pg = gate_up.ptr<float>();
  float* po = out.ptr<float>();
  parallel_for(threads_for(T * F, threads), T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* gate = pg + t * 2 * F;
      const float* up = gate + F;
      float* o = po + t * F;
      for (int64_t f = 0; f < F; ++f) {
        const double g = std::min(gate[f], limit), u = std::clamp(up[f], -limit, limit);
        o[f] = static_cast<float>((u + 1.0) * g / (1.0 + std::exp(-static_cast<double>(alpha) * g)));
      }
    }
  });
}

}  // namespace kestrel::cpu
