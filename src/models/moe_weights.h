// models/moe_weights.h: the weights of one sparse (mixture-of-experts) layer.
#pragma once

#include <vector>

#include "backend.h"
#include "core/tensor.h"

namespace kestrel {

// A linear layer's weight [out, in]: dense in the runtime dtype, or quantized (then
// `dense` is empty).
struct LinearWeight {
  TensorView dense;
  QuantizedWeight quantized;

  bool is_quantized() const { return !quantized.empty(); }
  bool empty() const { return dense.empty() && !is_quantized(); }
};

// Every expert is an ordinary linear weight, quantized or not as the model's other linear
// weights are (a GGUF file's stacked expert blocks are kept in place, one row block each).
// Under tensor parallelism a rank holds Fe of every expert's expert_ffn_size columns (and
// Fs of the shared expert's): its down outputs are partial sums, which the block's one
// all-reduce completes (layers/moe.h). The router and the shared gate are whole on every
// rank, so every rank routes every token alike.
struct MoeWeights {
  LinearWeight router;                    // [E, H]
  TensorView router_bias;                 // [E], or empty (gpt-oss has one)
  std::vector<LinearWeight> expert_up;    // E x [2 Fe, H] ([gate | up] rows)
  std::vector<LinearWeight> expert_down;  // E x [H, Fe]
  std::vector<TensorView> expert_up_bias;    // E x [2 Fe], or none (gpt-oss has them)
  std::vector<TensorView> expert_down_bias;  // E x [H], or none
  LinearWeight shared_up;                 // [2 Fs, H], empty without a shared expert
  LinearWeight shared_down;               // [H, Fs]
  TensorView shared_gate;                 // [1, H] dense
  int64_t expert_ffn = 0;                 // Fe: this rank's columns of each expert
  int64_t shared_ffn = 0;                 // Fs: this rank's columns of the shared expert

  bool empty() const { return expert_up.empty(); }
};

}  // namespace kestrel
