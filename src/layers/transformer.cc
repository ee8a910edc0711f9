#include "layers/transformer.h"

#include <cmath>

#include "layers/blocks.h"

namespace kestrel {

void forward_step(detail::SessionState& s, const StepShape& step) {
  using detail::Buf;
  const auto& m = s.m();
  const ModelConfig& c = m.arch.config;
  const ModelWeights& w = m.weights;
  Backend& backend = s.backend();
  const int64_t T = step.tokens, R = step.logit_rows;

  SequenceBatch batch;
  batch.n_seqs = step.sequences;
  batch.max_blocks_per_seq = s.max_blocks_per_seq;
  batch.max_new_tokens = step.max_new_tokens;
  batch.max_total_tokens = step.max_total_tokens;
  batch.token_offsets = s.buf(Buf::token_offsets).rows(0, step.sequences + 1);
  batch.n_past = s.buf(Buf::n_past).rows(0, step.sequences);
  batch.block_tables = s.buf(Buf::block_tables).rows(0, step.sequences);

  AttentionParams params;
  params.n_heads = c.num_heads;
  params.n_kv_heads = c.num_kv_heads;
  params.head_dim = c.head_dim;
  params.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  params.rotary = m.arch.kinds.rotary;

  TensorView hidden = s.buf(Buf::hidden).rows(0, T);
  TensorView normed = s.buf(Buf::normed).rows(0, T);
  TensorView qkv = s.buf(Buf::qkv).rows(0, T);
  TensorView attn = s.buf(Buf::attn).rows(0, T);
  TensorView proj = s.buf(Buf::proj).rows(0, T);
  TensorView ffn = s.buf(Buf::ffn).rows(0, T);
  TensorView ffn_act = m.arch.kinds.gated_ffn ? s.buf(Buf::ffn_act).rows(0, T) : TensorView{};

  backend.embedding(s.buf(Buf::ids).rows(0, T), s.buf(Buf::positions).rows(0, T), w.token_embedding,
                    w.position_embedding.empty() ? nullptr : &w.position_embedding, hidden);

  // Pre-norm residual stream. Each block's output projection (and its bias) is added to
  // the residual by the fused add+norm that feeds the next block.
  const TensorView* pending = nullptr;       // block output not yet added to the residual
  const TensorView* pending_bias = nullptr;  // its bias
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    backend.add_residual_norm(hidden, pending, pending_bias, lw.attn_norm, normed);
    attention_block(backend, lw, params, batch, s.kv->layer(l), step.generation, normed, qkv, attn, proj);
    backend.add_residual_norm(hidden, &proj, lw.out_bias.empty() ? nullptr : &lw.out_bias, lw.ffn_norm,
                              normed);
    feed_forward_block(backend, lw, m.arch.kinds, normed, ffn, ffn_act, proj);
    pending = &proj;
    pending_bias = lw.down_bias.empty() ? nullptr : &lw.down_bias;
  }
  if (R == 0) return;  // a prompt chunk that does not end its prompt needs no logits
  backend.add_residual_norm(hidden, pending, pending_bias, w.final_norm, normed);

  TensorView last = s.buf(Buf::last).rows(0, R);
  backend.gather_rows(normed, s.buf(Buf::logit_rows).rows(0, R), last);
  linear(backend, w.lm_head, last, nullptr, s.buf(Buf::logits).rows(0, R));
}

}  // namespace kestrel
