// layers/moe.h: the mixture-of-experts feed-forward block (Mixtral, Qwen2-MoE, gpt-oss).
//
// Batched as vLLM and TensorRT-LLM do, not token by token: the router picks each token's
// top-k experts, the (token, choice) pairs are grouped by expert, the tokens are gathered
// in that order, each expert runs one GEMM pair over its own rows (an expert no token chose
// costs nothing), and the outputs are summed back per token with the routing weights.
#pragma once

#include "backend.h"
#include "core/session_state.h"
#include "models/architecture.h"
#include "models/moe_weights.h"
#include "parallel/communicator.h"

namespace kestrel {

// Scratch of one step's tokens (T of them, k experts each): shapes as in backend.h's
// moe_* operations. `up` and `act` are flat: the experts' [T k, 2 Fe] / [T k, Fe] and then
// the shared expert's [T, 2 Fs] / [T, Fs] are views of them.
struct MoeBuffers {
  TensorView logits;       // [T, E]
  TensorView ids;          // [T, k] i32
  TensorView weights;      // [T, k] f32
  TensorView offsets;      // [E + 1] i32
  TensorView rows;         // [T k] i32
  TensorView slot_of;      // [T k] i32
  TensorView x;            // [T k, H]
  TensorView up, act;      // flat
  TensorView out;          // [T k, H]
  TensorView shared;       // [T, H] (with a shared expert)
  TensorView shared_gate;  // [T, 1] (with a shared expert)
};

// The session's MoE buffers for the step rows [token_begin, token_begin + tokens).
MoeBuffers moe_buffers(const detail::SessionState& session, int64_t token_begin, int64_t tokens);

// proj = sum over the top-k experts e of token t of weight(t, e) * down_e(act(gate_e(x)) *
// up_e(x)), plus sigmoid(shared_gate . x) * shared(x) with a shared expert; x = normed.
// gpt-oss: the router and every expert's up and down projections add their biases, and the
// activation is Backend::clamped_swiglu (LayerKinds::swiglu_limit).
// Reads the experts' slot offsets back to the host once (the GEMM sizes).
// With `tensor` (tp > 1) each rank computes that sum over its columns of every expert
// (MoeWeights::expert_ffn, shared_ffn) and the block ends in one all-reduce of proj.
//   normed: [T, H]; proj: [T, H]
void moe_block(Backend& backend, const MoeWeights& w, const Architecture& arch, const TensorView& normed,
               const MoeBuffers& buffers, TensorView proj, Communicator* tensor = nullptr);

}  // namespace kestrel
