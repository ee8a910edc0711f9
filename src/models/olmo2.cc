// OLMo 2 (allenai/OLMo-2-*, model_type olmo2): a Llama (rotary with NeoX pairs, SwiGLU, GQA)
// whose norms come after the blocks instead of before them: each layer computes
// h + post_attention_layernorm(attn(h)), then h' + post_feedforward_layernorm(mlp(h')),
// the blocks reading the residual itself (LayerKinds::pre_norms false, post_norms). Its q
// and k projections are RMSNormed before rotary, each over the whole projection of a token
// (q_norm [nh hd], k_norm [nkv hd]), not per head (LayerKinds::qk_norm_over_heads). That
// norm spans every head, so a rank holding only some of them cannot compute it: tp > 1 is
// refused at load. llama.cpp's converter writes "olmo2" with Hugging Face's Q / K row order
// (llama.cpp rotates OLMo 2 NeoX-style) and the norms as attn_post_norm / ffn_post_norm /
// attn_q_norm / attn_k_norm.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/llama_like.h"

namespace kestrel {

namespace {

// The Llama description with OLMo 2's norms: none before the blocks, the post-norms and
// the whole-projection q / k norms named `post_attn`, `post_ffn`, `q_norm`, `k_norm` under
// `layer_prefix` + N + ".".
Architecture with_olmo2_norms(Architecture arch, const std::string& layer_prefix, const std::string& post_attn,
                              const std::string& post_ffn, const std::string& q_norm, const std::string& k_norm) {
  arch.kinds.pre_norms = false;
  arch.kinds.post_norms = true;
  arch.kinds.qk_norm = true;
  arch.kinds.qk_norm_over_heads = true;
  arch.recipe = [base = arch.recipe, layer_prefix, post_attn, post_ffn, q_norm, k_norm](WeightSlot slot, int layer) {
    const std::string l = layer_prefix + std::to_string(layer) + ".";
    switch (slot) {
      case WeightSlot::attn_norm_weight:
      case WeightSlot::ffn_norm_weight: return WeightRecipe{};
      case WeightSlot::post_attn_norm_weight: return WeightRecipe{{l + post_attn}};
      case WeightSlot::post_ffn_norm_weight: return WeightRecipe{{l + post_ffn}};
      case WeightSlot::q_norm_weight: return WeightRecipe{{l + q_norm}};
      case WeightSlot::k_norm_weight: return WeightRecipe{{l + k_norm}};
      default: return base(slot, layer);
    }
  };
  return arch;
}

}  // namespace

// transformers 4.51.3's Olmo2Config: Llama's keys (hidden_act silu only, rms_norm_eps,
// rope_theta, rope_scaling as Llama's, attention_bias on q, k, v and o, tie_word_embeddings,
// head_dim where present as Olmo2Attention's getattr). Its MLP has no biases whatever the
// config says: mlp_bias true (a LlamaConfig key Olmo2Config does not read) and OLMo 1's
// clip_qkv (which Olmo2Config deletes) are refused by name rather than silently dropped.
Architecture olmo2_architecture(const nlohmann::json& json, const std::string& where) {
  if (json_bool(json, "mlp_bias", where).value_or(false))
    throw Error(ErrorCategory::unsupported, where + ": mlp_bias is not supported for olmo2 (transformers ignores it)");
  if (auto clip = json.find("clip_qkv"); clip != json.end() && !clip->is_null())
    throw Error(ErrorCategory::unsupported, where + ": clip_qkv is not supported for olmo2 (OLMo 1's setting)");
  Architecture arch = llama_architecture(json, where);
  arch.name = arch.config.architecture = "olmo2";
  return with_olmo2_norms(std::move(arch), "model.layers.", "post_attention_layernorm.weight",
                          "post_feedforward_layernorm.weight", "self_attn.q_norm.weight", "self_attn.k_norm.weight");
}

// llama.cpp's "olmo2": Llama's keys under olmo2., no rope scaling in its loader (a
// olmo2.rope.scaling.type other than none is refused by name).
Architecture olmo2_architecture_from_gguf(const GgufFile& file) {
  const std::string where = file.path().string();
  if (auto type = file.get_string("olmo2.rope.scaling.type"); type && *type != "none")
    throw Error(ErrorCategory::unsupported, where + ": olmo2.rope.scaling.type '" + *type + "' is not supported (none)");
  return with_olmo2_norms(llama_like_from_gguf(file, "olmo2", RotaryStyle::neox), "blk.", "post_attention_norm.weight",
                          "post_ffw_norm.weight", "attn_q_norm.weight", "attn_k_norm.weight");
}

}  // namespace kestrel
