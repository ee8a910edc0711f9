// core/session_state.h: what a Session holds (internal).
#pragma once

#include <memory>

#include "core/activation_pool.h"
#include "core/paged_kv_cache.h"
#include "kestrel/session.h"
#include "models/model_state.h"

namespace kestrel::detail {

// The buffers of the activation pool, in pool order. T = max_step_tokens,
// B = max_sequences, R = logit_rows, L = max_sequence_tokens.
enum class Buf : size_t {
  ids,              // [T] i32 token ids of the step
  positions,        // [T] i32 their positions
  token_offsets,    // [B + 1] i32
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
  logits,           // [R, V] f32
  sampling_rows,    // [B * sizeof(SamplingRow)] i8
  history,          // [B, L] i32 prompt + generated tokens
  history_lengths,  // [B] i32
  prompt_lengths,   // [B] i32
  sampled,          // [B] i32 chosen tokens
  count
};

struct SessionState {
  std::shared_ptr<const Model> model;
  SessionOptions options;
  int logit_rows = 0;
  int max_blocks_per_seq = 0;
  std::unique_ptr<PagedKvCache> kv;
  std::unique_ptr<ActivationPool> pool;

  const ModelState& m() const { return model->state(); }
  Backend& backend() const { return *model->state().backend; }
  TensorView buf(Buf b) const { return pool->view(static_cast<size_t>(b)); }
};

}  // namespace kestrel::detail
