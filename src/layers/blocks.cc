#include "layers/blocks.h"

namespace kestrel {

namespace {
const TensorView* optional(const TensorView& t) { return t.empty() ? nullptr : &t; }
}  // namespace

void linear(Backend& backend, const LinearWeight& w, const TensorView& x, const TensorView* bias,
            TensorView out) {
  if (w.is_quantized())
    backend.quantized_linear(x, w.quantized, bias, out);
  else
    backend.linear(x, w.dense, bias, out);
}

void attention_block(Backend& backend, const LayerWeights& w, const AttentionParams& params,
                     const SequenceBatch& batch, const KvCacheLayer& cache, bool generation,
                     const TensorView& normed, TensorView qkv, TensorView attn, TensorView proj,
                     Communicator* tensor) {
  // The QKV bias is added inside the attention kernel, fused with rotary and the cache write,
  // unless the q / k heads are normed first (Qwen3, Gemma 3): then the bias comes with the
  // projection and the norm precedes the attention (and so its rotary).
  const TensorView* bias = optional(w.qkv_bias);
  if (!w.q_norm.gamma.empty()) {
    linear(backend, w.qkv_weight, normed, bias, qkv);
    backend.head_norm(qkv, params.n_heads, params.n_kv_heads, params.head_dim, w.q_norm, w.k_norm);
    bias = nullptr;
  } else {
    linear(backend, w.qkv_weight, normed, nullptr, qkv);
  }
  if (generation)
    backend.masked_attention(qkv, bias, params, batch, cache, attn);
  else
    backend.context_attention(qkv, bias, params, batch, cache, attn);
  linear(backend, w.out_weight, attn, nullptr, proj);
  if (tensor) tensor->all_reduce_sum(proj);
}

void feed_forward_up(Backend& backend, const LayerWeights& w, const LayerKinds& kinds, const TensorView& normed,
                     TensorView ffn, TensorView ffn_act) {
  if (kinds.gated_ffn) {
    linear(backend, w.up_weight, normed, optional(w.up_bias), ffn);
    backend.gated_activation(ffn, kinds.activation, ffn_act);
  } else {
    linear(backend, w.up_weight, normed, nullptr, ffn);
    backend.bias_activation(ffn, optional(w.up_bias), kinds.activation);
  }
}

void feed_forward_down(Backend& backend, const LayerWeights& w, const LayerKinds& kinds, TensorView ffn,
                       TensorView ffn_act, TensorView proj, Communicator* tensor) {
  linear(backend, w.down_weight, kinds.gated_ffn ? ffn_act : ffn, nullptr, proj);
  if (tensor) tensor->all_reduce_sum(proj);
}

void feed_forward_block(Backend& backend, const LayerWeights& w, const LayerKinds& kinds,
                        const TensorView& normed, TensorView ffn, TensorView ffn_act, TensorView proj,
                        Communicator* tensor) {
  feed_forward_up(backend, w, kinds, normed, ffn, ffn_act);
  feed_forward_down(backend, w, kinds, ffn, ffn_act, proj, tensor);
}

}  // namespace kestrel
