#include "layers/blocks.h"

namespace kestrel {

namespace {
const TensorView* optional(const TensorView& t) { return t.empty() ? nullptr : &t; }
}  // namespace

void attention_block(Backend& backend, const LayerWeights& w, const AttentionParams& params,
                     const SequenceBatch& batch, const KvCacheLayer& cache, bool generation,
                     const TensorView& normed, TensorView qkv, TensorView attn, TensorView proj,
                     Communicator* tensor) {
  backend.linear(normed, w.qkv_weight, nullptr, qkv);
  // The QKV bias is added inside the attention kernel, fused with rotary and the cache write.
  if (generation)
    backend.masked_attention(qkv, optional(w.qkv_bias), params, batch, cache, attn);
  else
    backend.context_attention(qkv, optional(w.qkv_bias), params, batch, cache, attn);
  backend.linear(attn, w.out_weight, nullptr, proj);
  if (tensor) tensor->all_reduce_sum(proj);
}

void feed_forward_block(Backend& backend, const LayerWeights& w, const LayerKinds& kinds,
                        const TensorView& normed, TensorView ffn, TensorView ffn_act, TensorView proj,
                        Communicator* tensor) {
  if (kinds.gated_ffn) {
    backend.linear(normed, w.up_weight, optional(w.up_bias), ffn);
    backend.gated_activation(ffn, kinds.activation, ffn_act);
    backend.linear(ffn_act, w.down_weight, nullptr, proj);
  } else {
    backend.linear(normed, w.up_weight, nullptr, ffn);
    backend.bias_activation(ffn, optional(w.up_bias), kinds.activation);
    backend.linear(ffn, w.down_weight, nullptr, proj);
  }
  if (tensor) tensor->all_reduce_sum(proj);
}

}  // namespace kestrel
