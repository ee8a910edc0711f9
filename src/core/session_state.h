// core/session_state.h: what a Session holds (internal).
#pragma once

#include <memory>

#include "core/activation_pool.h"
#include "core/paged_kv_cache.h"
#include "kestrel/session.h"
#include "models/model_state.h"

namespace kestrel::detail {

// The buffers of the activation pool, in pool order. T = max_step_tokens,
// B = max_sequences, R = logit_rows, L = max_sequence_tokens. Widths are this rank's
// (parallel/shard.h): nh, nkv, F and V / tp are its heads, FFN columns and vocabulary rows.
enum class Buf : size_t {
  ids,              // [T] i32 token ids of the step
  positions,        // [T] i32 their positions
  token_offsets,    // [2B] i32: each micro-batch's offsets from 0 (B + 1 when it is one)
  n_past,           // [B] i32
  block_tables,     // [B, max_blocks_per_seq] i32
  logit_rows,       // [R] i32 rows of the step whose logits are wanted
  hidden,           // [T, H] residual stream
  normed,           // [T, H] normed residual, input of attention / FFN
  qkv,              // [T, (nh + 2 nkv) hd]
  attn,             // [T, nh hd]
  proj,             // [T, H] output projection of attention / FFN
  ffn,              // [T, F or 2F]
  ffn_act,          // [T, F] (gated FFN only; 1 element otherwise)
  last,             // [R, H] rows gathered for the LM head
  logits,           // [R, V] f32 (the whole vocabulary, gathered from the tp ranks)
  logits_local,     // [R, V / tp] f32 this rank's LM-head rows (tp > 1; 1 element otherwise)
  gather_scratch,   // [tp, R, V / tp] f32 the flat gather of logits_local (tp > 1)
  sampling_rows,    // [B * sizeof(SamplingRow)] i8
  history,          // [B, L] i32 prompt + generated tokens
  history_lengths,  // [B] i32
  prompt_lengths,   // [B] i32
  sampled,          // [B] i32 chosen tokens
  kv_copies,        // [B, 2] i32 (shared block, its copy) pairs of a step's copy-on-write
  // Mixture of experts (layers/moe.h; E experts, k per token, Fe / Fs the expert and shared
  // expert FFN sizes; 1 element each in a dense model).
  moe_logits,       // [T, E] router logits
  moe_ids,          // [T, k] i32 chosen experts
  moe_weights,      // [T, k] f32 their routing weights
  moe_offsets,      // [E + 1] i32 slots of each expert
  moe_rows,         // [T k] i32 token of each slot
  moe_slot_of,      // [T k] i32 slot of each (token, choice)
  moe_x,            // [T k, H] the tokens gathered in slot order
  moe_up,           // [T k, 2 Fe] (also [T, 2 Fs] for the shared expert)
  moe_act,          // [T k, Fe] (also [T, Fs])
  moe_out,          // [T k, H] expert outputs in slot order
  moe_shared,       // [T, H] shared expert output
  moe_shared_gate,  // [T, 1] its gate logit
  count
};

struct SessionState {
  std::shared_ptr<const Model> model;
  SessionOptions options;
  int logit_rows = 0;
  int max_blocks_per_seq = 0;
  std::unique_ptr<PagedKvCache> kv;
  std::unique_ptr<ActivationPool> pool;
  // The rotary table of this session's context when the model's depends on it (LongRoPE,
  // dynamic NTK: models/rope_scaling.h); otherwise null and the model's table is used.
  std::unique_ptr<ActivationPool> rotary;

  const ModelState& m() const { return model->state(); }
  ParallelContext& parallel() const { return *model->state().parallel; }
  const Shard& shard() const { return model->state().parallel->shard; }
  Backend& backend() const { return *model->state().backend; }
  TensorView buf(Buf b) const { return pool->view(static_cast<size_t>(b)); }
  TensorView rotary_inv_freq() const { return rotary ? rotary->view(0) : m().weights.rotary_inv_freq; }
};

}  // namespace kestrel::detail
