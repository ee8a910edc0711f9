// kernels/cuda/moe_cuda.cu: mixture-of-experts routing, grouping and combination
// (semantics in backend.h; kernels/cpu/moe_cpu.cc is the reference). The expert GEMMs
// themselves are the backend's linear / quantized_linear over each expert's rows.
#include "cuda/cuda_common.cuh"

namespace kestrel::cuda {

namespace {

constexpr int kThreads = 256;

// One thread per token: softmax over its E router logits in f32, then k passes of
// selection (the largest remaining probability, the lower expert among equals, as
// torch.topk). E is small (8 .. a few hundred), so a token's row stays in L1.
template <class T>
__global__ void __launch_bounds__(kThreads)
    moe_route_kernel(const T* logits, int64_t n_tokens, int E, int k, bool normalize, int32_t* ids, float* weights) {
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < n_tokens; t += int64_t{gridDim.x} * blockDim.x) {
    const T* x = logits + t * E;
    float max = -FLT_MAX;
    for (int e = 0; e < E; ++e) max = fmaxf(max, to_float(x[e]));
    float sum = 0.0f;
    for (int e = 0; e < E; ++e) sum += __expf(to_float(x[e]) - max);
    // Selection without a taken[] array: the j-th pick is the best (p, -e) strictly below
    // the previous pick in that order.
    float prev_p = FLT_MAX;
    int prev_e = -1;
    float chosen = 0.0f;
    for (int j = 0; j < k; ++j) {
      int best = -1;
      float best_p = -1.0f;
      for (int e = 0; e < E; ++e) {
        const float p = __expf(to_float(x[e]) - max) / sum;
        const bool below_prev = p < prev_p || (p == prev_p && e > prev_e);
        if (below_prev && p > best_p) {
          best = e;
          best_p = p;
        }
      }
      ids[t * k + j] = best;
      weights[t * k + j] = best_p;
      chosen += best_p;
      prev_p = best_p;
      prev_e = best;
    }
    if (normalize)
      for (int j = 0; j < k; ++j) weights[t * k + j] /= chosen;
  }
}

// One block. Thread e (striding over experts) counts the pairs of expert e, thread 0 turns
// the counts into offsets, then thread e walks the pairs in order again and hands out its
// expert's slots: token order within each expert without atomics, so the result is
// deterministic. An id outside [0, E) is reported and treated as expert 0.
__global__ void __launch_bounds__(kThreads)
    moe_group_kernel(const int32_t* ids, int64_t n, int k, int E, int32_t* offsets, int32_t* rows, int32_t* slot_of,
                     DeviceErrorRecord* errors) {
  extern __shared__ int32_t count[];  // [E + 1]
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    if (ids[i] < 0 || ids[i] >= E) report(errors, DeviceErrorCode::moe_expert, static_cast<int>(i));
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int32_t c = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int32_t id = ids[i] < 0 || ids[i] >= E ? 0 : ids[i];
      c += id == e;
    }
    count[e + 1] = c;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    count[0] = 0;
    for (int e = 0; e < E; ++e) count[e + 1] += count[e];
  }
  __syncthreads();
  for (int e = threadIdx.x; e <= E; e += blockDim.x) offsets[e] = count[e];
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    int32_t s = count[e];
    for (int64_t i = 0; i < n; ++i) {
      const int32_t id = ids[i] < 0 || ids[i] >= E ? 0 : ids[i];
      if (id != e) continue;
      rows[s] = static_cast<int32_t>(i / k);
      slot_of[i] = s++;
    }
  }
}

// One block per token, threads over the hidden dimension: the weighted sum of its k
// expert rows (in choice order, f32) plus the gated shared expert, rounded once.
template <class T>
__global__ void __launch_bounds__(kThreads)
    moe_combine_kernel(const T* expert_out, const int32_t* slot_of, const float* weights, const T* shared,
                       const T* shared_gate, T* out, int64_t n_tokens, int k, int64_t H) {
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    const float g = shared ? 1.0f / (1.0f + __expf(-to_float(shared_gate[t]))) : 0.0f;
    for (int64_t h = threadIdx.x; h < H; h += blockDim.x) {
      float acc = 0.0f;
      for (int j = 0; j < k; ++j)
        acc += weights[t * k + j] * to_float(expert_out[static_cast<int64_t>(slot_of[t * k + j]) * H + h]);
      if (shared) acc += g * to_float(shared[t * H + h]);
      out[t * H + h] = from_float<T>(acc);
    }
  }
}

}  // namespace

void moe_route(const LaunchContext& ctx, const TensorView& logits, bool normalize, TensorView ids,
               TensorView weights) {
  const int64_t T = logits.dim(0);
  if (T == 0) return;
  const int E = static_cast<int>(logits.dim(1)), k = static_cast<int>(ids.dim(1));
  dispatch_float(logits.dtype, "moe_route", [&]<class E_>() {
    moe_route_kernel<E_><<<grid_for(T, kThreads, 65535), kThreads, 0, ctx.stream>>>(
        static_cast<const E_*>(logits.data), T, E, k, normalize, ids.ptr<int32_t>(), weights.ptr<float>());
  });
  check_launch("moe_route");
}

void moe_group(const LaunchContext& ctx, const TensorView& ids, TensorView offsets, TensorView rows,
               TensorView slot_of) {
  const int64_t n = ids.numel();
  const int E = static_cast<int>(offsets.dim(0) - 1), k = static_cast<int>(ids.dim(1));
  moe_group_kernel<<<1, kThreads, static_cast<size_t>(E + 1) * sizeof(int32_t), ctx.stream>>>(
      ids.ptr<int32_t>(), n, k, E, offsets.ptr<int32_t>(), rows.ptr<int32_t>(), slot_of.ptr<int32_t>(), ctx.errors);
  check_launch("moe_group");
}

void moe_combine(const LaunchContext& ctx, const TensorView& expert_out, const TensorView& slot_of,
                 const TensorView& weights, const TensorView* shared, const TensorView* shared_gate, TensorView out) {
  const int64_t T = weights.dim(0), H = expert_out.dim(1);
  if (T == 0 || H == 0) return;
  const int k = static_cast<int>(weights.dim(1));
  dispatch_float(out.dtype, "moe_combine", [&]<class E_>() {
    moe_combine_kernel<E_><<<grid_for(T, 1, 65535), kThreads, 0, ctx.stream>>>(
        static_cast<const E_*>(expert_out.data), slot_of.ptr<int32_t>(), weights.ptr<float>(),
        shared ? static_cast<const E_*>(shared->data) : nullptr,
        shared ? static_cast<const E_*>(shared_gate->data) : nullptr, static_cast<E_*>(out.data), T, k, H);
  });
  check_launch("moe_combine");
}

}  // namespace kestrel::cuda
