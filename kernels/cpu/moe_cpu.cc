// kernels/cpu/moe_cpu.cc: the mixture-of-experts routing, grouping and combination (the
// reference for moe_cuda.cu; semantics in backend.h).
#include <cmath>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/thread_pool.h"
#include "moe_checks.h"

namespace kestrel::cpu {

void moe_route(const TensorView& logits, bool normalize, TensorView ids, TensorView weights, int threads) {
  check_moe_route(Device::cpu(), DType::f32, logits, ids, weights);
  const int64_t T = logits.dim(0), E = logits.dim(1), k = ids.dim(1);
  const float* in = logits.ptr<float>();
  int32_t* out_ids = ids.ptr<int32_t>();
  float* out_w = weights.ptr<float>();
  parallel_for(threads_for(T * E, threads), T, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> p(static_cast<size_t>(E));
    std::vector<char> taken(static_cast<size_t>(E));
    for (int64_t t = t0; t < t1; ++t) {
      const float* x = in + t * E;
      float max = x[0];
      for (int64_t e = 1; e < E; ++e) max = std::max(max, x[e]);
      float sum = 0.0f;
      for (int64_t e = 0; e < E; ++e) sum += p[e] = std::exp(x[e] - max);
      for (int64_t e = 0; e < E; ++e) p[e] /= sum;
      // k passes of selection: the largest remaining p, the lowest index among equals.
      std::fill(taken.begin(), taken.end(), 0);
      float chosen = 0.0f;
      for (int64_t j = 0; j < k; ++j) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; ++e)
          if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
        taken[best] = 1;
        out_ids[t * k + j] = static_cast<int32_t>(best);
        out_w[t * k + j] = p[best];
        chosen += p[best];
      }
      if (normalize)
        for (int64_t j = 0; j < k; ++j) out_w[t * k + j] /= chosen;
    }
  });
}

void moe_group(const TensorView& ids, TensorView offsets, TensorView rows, TensorView slot_of) {
  check_moe_group(Device::cpu(), ids, offsets, rows, slot_of);
  const int64_t n = ids.numel(), k = ids.dim(1), E = offsets.dim(0) - 1;
  const int32_t* id = ids.ptr<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    if (id[i] < 0 || id[i] >= E)
      fail("moe_group", "ids[" + std::to_string(i) + "] = " + std::to_string(id[i]) + " is outside [0, " +
                            std::to_string(E) + ")");
  int32_t* off = offsets.ptr<int32_t>();
  std::fill(off, off + E + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++off[id[i] + 1];
  for (int64_t e = 0; e < E; ++e) off[e + 1] += off[e];
  std::vector<int32_t> next(off, off + E);
  int32_t* row = rows.ptr<int32_t>();
  int32_t* slot = slot_of.ptr<int32_t>();
  for (int64_t i = 0; i < n; ++i) {  // pairs in (token, choice) order: token order per expert
    const int32_t s = next[id[i]]++;
    row[s] = static_cast<int32_t>(i / k);
    slot[i] = s;
  }
}

void moe_combine(const TensorView& expert_out, const TensorView& slot_of, const TensorView& weights,
                 const TensorView* shared, const TensorView* shared_gate, TensorView out, int threads) {
  check_moe_combine(Device::cpu(), DType::f32, expert_out, slot_of, weights, shared, shared_gate, out);
  const int64_t T = weights.dim(0), k = weights.dim(1), H = expert_out.dim(1);
  const int32_t* slot = slot_of.ptr<int32_t>();
  for (int64_t i = 0; i < T * k; ++i)
    if (slot[i] < 0 || slot[i] >= T * k)
      fail("moe_combine", "slot_of[" + std::to_string(i) + "] = " + std::to_string(slot[i]) + " is outside [0, " +
                              std::to_string(T * k) + ")");
  const float* x = expert_out.ptr<float>();
  const float* w = weights.ptr<float>();
  const float* sh = shared ? shared->ptr<float>() : nullptr;
  const float* gate = shared ? shared_gate->ptr<float>() : nullptr;
  float* y = out.ptr<float>();
  parallel_for(threads_for(T * k * H, threads), T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* dst = y + t * H;
      for (int64_t h = 0; h < H; ++h) dst[h] = 0.0f;
      for (int64_t j = 0; j < k; ++j) {
        const float* src = x + static_cast<int64_t>(slot[t * k + j]) * H;
        const float wj = w[t * k + j];
        for (int64_t h = 0; h < H; ++h) dst[h] += wj * src[h];
      }
      if (sh) {
        const float g = 1.0f / (1.0f + std::exp(-gate[t]));
        for (int64_t h = 0; h < H; ++h) dst[h] += g * sh[t * H + h];
      }
    }
  });
}

}  // namespace kestrel::cpu
