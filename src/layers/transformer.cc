#include "layers/transformer.h"

#include <cmath>

#include "layers/blocks.h"

namespace kestrel {

void forward_step(detail::SessionState& s, const StepShape& step) {
  using detail::Buf;
  const auto& m = s.m();
  const ModelConfig& c = m.arch.config;
  const ModelWeights& w = m.weights;
  const Shard& shard = s.shard();
  ParallelContext& parallel = s.parallel();
  Communicator* tensor = shard.tp > 1 ? parallel.tensor.get() : nullptr;
  Backend& backend = s.backend();
  const int64_t R = step.logit_rows;

  AttentionParams params;
  params.n_heads = shard.n_heads;
  params.n_kv_heads = shard.n_kv_heads;
  params.head_dim = c.head_dim;
  params.rotary = {m.arch.kinds.rotary_style, m.arch.kinds.rotary_dim, s.rotary_inv_freq()};
  params.sliding_window = m.arch.kinds.sliding_window;

  for (size_t index = 0; index < step.micro_batches.size(); ++index) {
    const MicroBatch& mb = step.micro_batches[index];
    SequenceBatch batch;
    batch.n_seqs = mb.sequences;
    batch.max_blocks_per_seq = s.max_blocks_per_seq;
    batch.max_new_tokens = mb.max_new_tokens;
    batch.max_total_tokens = mb.max_total_tokens;
    batch.token_offsets = s.buf(Buf::token_offsets).rows(mb.seq_begin + static_cast<int64_t>(index), mb.sequences + 1);
    batch.n_past = s.buf(Buf::n_past).rows(mb.seq_begin, mb.sequences);
    batch.block_tables = s.buf(Buf::block_tables).rows(mb.seq_begin, mb.sequences);

    // The micro-batch's own rows of every buffer: a send of its hidden states may still
    // be in flight while the next micro-batch runs.
    auto rows = [&](Buf b) { return s.buf(b).rows(mb.token_begin, mb.tokens); };
    TensorView hidden = rows(Buf::hidden), normed = rows(Buf::normed), qkv = rows(Buf::qkv);
    TensorView attn = rows(Buf::attn), proj = rows(Buf::proj), ffn = rows(Buf::ffn);
    TensorView ffn_act = m.arch.kinds.gated_ffn ? rows(Buf::ffn_act) : TensorView{};

    const TensorView* wpe = w.position_embedding.empty() ? nullptr : &w.position_embedding;
    if (shard.first_stage() && w.token_embedding.is_quantized())
      backend.embedding(rows(Buf::ids), rows(Buf::positions), w.token_embedding.quantized, wpe, hidden);
    else if (shard.first_stage())
      backend.embedding(rows(Buf::ids), rows(Buf::positions), w.token_embedding.dense, wpe, hidden);
    else
      parallel.pipeline->recv(hidden, shard.stage - 1);

    // Pre-norm residual stream. Each block's output projection (and its bias) is added to
    // the residual by the fused add+norm that feeds the next block.
    const TensorView* pending = nullptr;       // block output not yet added to the residual
    const TensorView* pending_bias = nullptr;  // its bias
    for (int l = 0; l < shard.num_layers(); ++l) {
      const LayerWeights& lw = w.layers[l];
      params.scale = attention_scale(m.arch, shard.layer_begin + l);
      backend.add_residual_norm(hidden, pending, pending_bias, lw.attn_norm, normed);
      attention_block(backend, lw, params, batch, s.kv->layer(l), step.generation, normed, qkv, attn, proj,
                      tensor);
      const TensorView* out_bias = lw.out_bias.empty() ? nullptr : &lw.out_bias;
      if (!m.arch.kinds.parallel_residual) {
        backend.add_residual_norm(hidden, &proj, out_bias, lw.ffn_norm, normed);
        feed_forward_block(backend, lw, m.arch.kinds, normed, ffn, ffn_act, proj, tensor);
      } else {
        // h + attn(norm1(h)) + ffn(norm2(h)): norm2 of the same h, before the attention
        // output joins it (with one shared norm, `normed` already holds it). Once the up
        // projection has read `normed`, it is scratch for the norm the add computes.
        if (!m.arch.kinds.shared_norm) backend.add_residual_norm(hidden, nullptr, nullptr, lw.ffn_norm, normed);
        feed_forward_up(backend, lw, m.arch.kinds, normed, ffn, ffn_act);
        backend.add_residual_norm(hidden, &proj, out_bias, lw.ffn_norm, normed);
        feed_forward_down(backend, lw, m.arch.kinds, ffn, ffn_act, proj, tensor);
      }
      pending = &proj;
      pending_bias = lw.down_bias.empty() ? nullptr : &lw.down_bias;
    }
    if (shard.last_stage()) {
      // A prompt chunk that does not end its prompt needs no logits.
      if (R > 0) backend.add_residual_norm(hidden, pending, pending_bias, w.final_norm, normed);
    } else {
      // The next stage starts from the complete residual: add the last block's output here
      // (the norm it also computes is not used).
      backend.add_residual_norm(hidden, pending, pending_bias, w.layers.back().ffn_norm, normed);
      parallel.pipeline->send(hidden, shard.stage + 1);
    }
  }
  if (!shard.last_stage()) {
    parallel.pipeline->wait_sends();
    return;
  }
  if (R == 0) return;

  TensorView last = s.buf(Buf::last).rows(0, R);
  backend.gather_rows(s.buf(Buf::normed).rows(0, step.tokens), s.buf(Buf::logit_rows).rows(0, R), last);
  TensorView logits = s.buf(Buf::logits).rows(0, R);
  const TensorView* head_bias = w.lm_head_bias.empty() ? nullptr : &w.lm_head_bias;
  if (!tensor) {
    linear(backend, w.lm_head, last, head_bias, logits);
    return;
  }
  // Vocabulary-parallel LM head: each rank computes its rows, then all gather the columns.
  TensorView local = s.buf(Buf::logits_local).rows(0, R);
  linear(backend, w.lm_head, last, head_bias, local);
  tensor->all_gather_columns(local, logits, s.buf(Buf::gather_scratch).rows(0, shard.tp * R * shard.vocab));
}

}  // namespace kestrel
