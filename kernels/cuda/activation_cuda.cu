// kernels/cuda/activation_cuda.cu: bias + activation in place, gated activations (SwiGLU,
// gpt-oss's clamped SwiGLU),
// and the bias broadcast under linear's GEMM.
#include "cuda/cuda_common.cuh"

namespace kestrel::cuda {

namespace {

constexpr int kThreads = 256;

// fp32 activations (accurate libm versions, not the fast intrinsics).
__device__ __forceinline__ float activate(float x, Activation act) {
  switch (act) {
    case Activation::gelu_tanh: {
      // Hugging Face "gelu_new": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      constexpr float kSqrt2OverPi = 0.7978845608028654f;
      return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
    }
    case Activation::gelu_erf:
      return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case Activation::relu:
      return x > 0.0f ? x : 0.0f;
    case Activation::silu:
      return x / (1.0f + expf(-x));
  }
  return x;
}

// x: [T, M] in place; bias: [M] or null. One thread per element, grid-stride over T * M.
template <class E>
__global__ void __launch_bounds__(kThreads)
    bias_activation_kernel(E* x, const E* bias, int64_t n, int64_t M, Activation act) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = to_float(x[i]);
    if (bias) v += to_float(bias[i % M]);
    x[i] = from_float<E>(activate(v, act));
  }
}

// gate_up: [T, 2F] as [gate | up]; out: [T, F]. One thread per output element, grid-stride.
template <class E>
__global__ void __launch_bounds__(kThreads)
    gated_activation_kernel(const E* gate_up, E* out, int64_t n, int64_t F, Activation act) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / F, f = i % F;
    const E* row = gate_up + t * 2 * F;
    out[i] = from_float<E>(activate(to_float(row[f]), act) * to_float(row[F + f]));
  }
}

// gpt-oss's clamped SwiGLU (backend.h): gate_up [T, 2F] as [gate | up]; out: [T, F]. One
// thread per output element, grid-stride; in fp32 (accurate expf).
template <class E>
__global__ void __launch_bounds__(kThreads)
    clamped_swiglu_kernel(const E* gate_up, E* out, int64_t n, int64_t F, float alpha, float limit) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / F, f = i % F;
    const E* row = gate_up + t * 2 * F;
    const float g = fminf(to_float(row[f]), limit), u = fminf(fmaxf(to_float(row[F + f]), -limit), limit);
    out[i] = from_float<E>((u + 1.0f) * g / (1.0f + expf(-alpha * g)));
  }
}

// out[t, m] = bias[m]; one thread per element, grid-stride. Bias and out may differ in
// dtype (the LM head writes f32 logits from f16 weights).
template <class B, class O>
__global__ void __launch_bounds__(kThreads)
    broadcast_rows_kernel(const B* bias, O* out, int64_t n, int64_t M) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = from_float<O>(to_float(bias[i % M]));
}

}  // namespace

void bias_activation(const LaunchContext& ctx, TensorView x, const TensorView* bias,
                     Activation act) {
  const int64_t n = x.numel(), M = x.dim(-1);
  if (n == 0) return;
  dispatch_float(x.dtype, "bias_activation", [&]<class E>() {
    bias_activation_kernel<E><<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(
        static_cast<E*>(x.data), bias ? static_cast<const E*>(bias->data) : nullptr, n, M, act);
  });
  check_launch("bias_activation");
}

void gated_activation(const LaunchContext& ctx, const TensorView& gate_up, Activation act,
                      TensorView out) {
  const int64_t n = out.numel(), F = out.dim(-1);
  if (n == 0) return;
  dispatch_float(out.dtype, "gated_activation", [&]<class E>() {
    gated_activation_kernel<E><<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(
        static_cast<const E*>(gate_up.data), static_cast<E*>(out.data), n, F, act);
  });
  check_launch("gated_activation");
}

void clamped_swiglu(const LaunchContext& ctx, const TensorView& gate_up, float alpha, float limit,
                    TensorView out) {
  const int64_t n = out.numel(), F = out.dim(-1);
  if (n == 0) return;
  dispatch_float(out.dtype, "clamped_swiglu", [&]<class E>() {
    clamped_swiglu_kernel<E><<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(
        static_cast<const E*>(gate_up.data), static_cast<E*>(out.data), n, F, alpha, limit);
  });
  check_launch("clamped_swiglu");
}

void broadcast_rows(const LaunchContext& ctx, const TensorView& bias, TensorView out) {
  const int64_t n = out.numel(), M = out.dim(-1);
  if (n == 0) return;
  dispatch_float(bias.dtype, "linear", [&]<class B>() {
    dispatch_float(out.dtype, "linear", [&]<class O>() {
      broadcast_rows_kernel<B, O><<<grid_for(n, kThreads), kThreads, 0, ctx.stream>>>(
          static_cast<const B*>(bias.data), static_cast<O*>(out.data), n, M);
    });
  });
  check_launch("linear (bias)");
}

}  // namespace kestrel::cuda
