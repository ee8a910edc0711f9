#include "layers/transformer.h"

#include <cmath>

#include "core/half.h"
#include "layers/blocks.h"
#include "layers/moe.h"

namespace kestrel {

namespace {

// Gemma's embedding scale sqrt(H), rounded to the activation dtype as transformers casts it.
float embedding_scale(int hidden_size, DType dtype) {
  const float exact = std::sqrt(static_cast<float>(hidden_size));
  uint8_t stored[4];
  float rounded = 0.0f;
  convert_floats(&exact, DType::f32, stored, dtype, 1);
  convert_floats(stored, dtype, &rounded, DType::f32, 1);
  return rounded;
}

}  // namespace

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
  params.rotary = {m.arch.kinds.rotary_style, m.arch.kinds.rotary_dim, s.rotary_inv_freq(), rotary_cos_sin_scale(m.arch)};
  params.logit_softcap = m.arch.kinds.attn_logit_softcap;
  const LayerKinds& kinds = m.arch.kinds;

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
    if (shard.first_stage() && kinds.scale_embedding) backend.scale(hidden, embedding_scale(c.hidden_size, m.dtype));
    if (shard.first_stage() && kinds.embedding_multiplier != 1.0f) backend.scale(hidden, kinds.embedding_multiplier);

    // Pre-norm residual stream. Each block's output projection (and its bias) is added to
    // the residual by the fused add+norm that feeds the next block.
    const TensorView* pending = nullptr;       // block output not yet added to the residual
    const TensorView* pending_bias = nullptr;  // its bias
    for (int l = 0; l < shard.num_layers(); ++l) {
      const LayerWeights& lw = w.layers[l];
      const int layer = shard.layer_begin + l;
      params.scale = attention_scale(m.arch, layer);
      params.sliding_window = layer_sliding_window(kinds, layer);
      params.sinks = lw.attn_sinks;
      params.rotary.inv_freq = lw.rotary_inv_freq.empty() ? s.rotary_inv_freq() : lw.rotary_inv_freq;
      backend.add_residual_norm(hidden, pending, pending_bias, lw.attn_norm, normed);
      // Without pre-norms (OLMo 2) each block reads the residual; `normed` is then unused.
      const TensorView& block_in = kinds.pre_norms ? normed : hidden;
      attention_block(backend, lw, params, batch, s.kv->layer(l), step.generation, block_in, qkv, attn, proj,
                      tensor);
      // Granite: the block's output joins the residual scaled (its bias was scaled at load).
      if (kinds.residual_multiplier != 1.0f) backend.scale(proj, kinds.residual_multiplier);
      const TensorView* out_bias = lw.out_bias.empty() ? nullptr : &lw.out_bias;
      if (!kinds.parallel_residual) {
        // Post-norms (Gemma) normalize each block's whole output in place before it joins
        // the residual (the descriptions that use them have no output biases).
        if (kinds.post_norms) backend.add_residual_norm(proj, nullptr, nullptr, lw.post_attn_norm, proj);
        backend.add_residual_norm(hidden, &proj, out_bias, lw.ffn_norm, normed);
        if (!lw.moe.empty())
          moe_block(backend, lw.moe, m.arch, block_in, moe_buffers(s, mb.token_begin, mb.tokens), proj, tensor);
        else
          feed_forward_block(backend, lw, kinds, block_in, ffn, ffn_act, proj, tensor);
        if (kinds.residual_multiplier != 1.0f) backend.scale(proj, kinds.residual_multiplier);
        if (kinds.post_norms) backend.add_residual_norm(proj, nullptr, nullptr, lw.post_ffn_norm, proj);
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
  } else {
    // Vocabulary-parallel LM head: each rank computes its rows, then all gather the columns.
    TensorView local = s.buf(Buf::logits_local).rows(0, R);
    linear(backend, w.lm_head, last, head_bias, local);
    tensor->all_gather_columns(local, logits, s.buf(Buf::gather_scratch).rows(0, shard.tp * R * shard.vocab));
  }
  if (kinds.logits_scaling != 1.0f) backend.scale(logits, 1.0f / kinds.logits_scaling);
  if (kinds.final_logit_softcap > 0.0f) backend.soft_cap(logits, kinds.final_logit_softcap);
}

}  // namespace kestrel
