// Phi-3 / Phi-3.5 (model_type phi3): a Llama-like model (RMSNorm, SwiGLU, rotary, GQA, no
// biases) whose checkpoints fuse the projections: self_attn.qkv_proj holds [q | k | v] rows
// and mlp.gate_up_proj [gate | up], the canonical layouts, so each is one source tensor.
// Long-context variants (128k) use LongRoPE (models/rope_scaling.h): a short and a long
// set of per-pair frequency factors and an attention factor on cos and sin.
//
// Phi-4-mini (also model_type phi3) rotates the first partial_rotary_factor (0.75) of
// each head only, its LongRoPE factors and attention factor on those dims alone (transformers
// 4.51.3 scales the cos and sin of the rotated part; the rest of q and k passes unscaled),
// and ties its head to the embedding. llama.cpp's converter writes the rotated width as
// phi3.rope.dimension_count.
//
// sliding_window (2047 in Phi-3-mini-4k) is read by transformers 4.44.2 only in its
// flash-attention path (eager and sdpa attend to every position) and llama.cpp disables it
// for Phi-3 ("Phi SWA is currently disabled"); Kestrel follows both references and
// attends to every position. llama.cpp's converter keeps Hugging Face's row order, and
// llama.cpp rotates Phi-3 NeoX-style: a GGUF Phi-3 pairs rotary dimensions as the
// safetensors checkpoint does.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/gguf_metadata.h"
#include "models/llama_like.h"
#include "models/rope.h"
#include "models/rope_scaling.h"

namespace kestrel {

namespace {

WeightRecipe phi3_hf_recipe(WeightSlot slot, int layer, bool tied) {
  const std::string l = "model.layers." + std::to_string(layer) + ".";
  switch (slot) {
    case WeightSlot::token_embedding: return {{"model.embed_tokens.weight"}};
    case WeightSlot::final_norm_weight: return {{"model.norm.weight"}};
    case WeightSlot::lm_head: return {{tied ? "model.embed_tokens.weight" : "lm_head.weight"}};
    case WeightSlot::attn_norm_weight: return {{l + "input_layernorm.weight"}};
    case WeightSlot::qkv_weight: return {{l + "self_attn.qkv_proj.weight"}};
    case WeightSlot::out_weight: return {{l + "self_attn.o_proj.weight"}};
    case WeightSlot::ffn_norm_weight: return {{l + "post_attention_layernorm.weight"}};
    case WeightSlot::up_weight: return {{l + "mlp.gate_up_proj.weight"}};
    case WeightSlot::down_weight: return {{l + "mlp.down_proj.weight"}};
    default: return {};  // no biases, no position embedding
  }
}

WeightRecipe phi3_gguf_recipe(WeightSlot slot, int layer, bool tied) {
  const std::string b = "blk." + std::to_string(layer) + ".";
  switch (slot) {
    case WeightSlot::token_embedding: return {{"token_embd.weight"}};
    case WeightSlot::final_norm_weight: return {{"output_norm.weight"}};
    case WeightSlot::lm_head: return {{tied ? "token_embd.weight" : "output.weight"}};
    case WeightSlot::attn_norm_weight: return {{b + "attn_norm.weight"}};
    case WeightSlot::qkv_weight: return {{b + "attn_qkv.weight"}};
    case WeightSlot::out_weight: return {{b + "attn_output.weight"}};
    case WeightSlot::ffn_norm_weight: return {{b + "ffn_norm.weight"}};
    case WeightSlot::up_weight: return {{b + "ffn_up.weight"}};  // [gate | up]
    case WeightSlot::down_weight: return {{b + "ffn_down.weight"}};
    default: return {};
  }
}

std::vector<float> factor_list(const nlohmann::json& scaling, const char* key, const std::string& where) {
  auto it = scaling.find(key);
  if (it == scaling.end() || !it->is_array())
    throw Error(ErrorCategory::format, where + ": rope_scaling." + key + " must be a list of numbers");
  std::vector<float> factors;
  for (const auto& value : *it) {
    if (!value.is_number())
      throw Error(ErrorCategory::format, where + ": rope_scaling." + key + " must be a list of numbers");
    factors.push_back(value.get<float>());
  }
  return factors;
}

}  // namespace

// transformers 4.44.2's Phi3Config: Llama's dimensions (head_dim is always hidden_size /
// num_attention_heads), hidden_act, rms_norm_eps, rope_theta, tie_word_embeddings,
// rope_scaling (longrope only) with original_max_position_embeddings, and sliding_window
// (see above); resid_pdrop, embd_pdrop and attention_dropout are inactive at inference.
// Keys of later versions that 4.44.2 would ignore but that change the computation are
// refused rather than dropped.
Architecture phi3_architecture(const nlohmann::json& json, const std::string& where) {
  const auto hidden = json_required_int(json, {"hidden_size"}, where);
  const auto heads = json_required_int(json, {"num_attention_heads"}, where);
  if (heads <= 0) throw Error(ErrorCategory::format, where + ": num_attention_heads must be positive");
  if (auto head_dim = json_int(json, {"head_dim"}, where); head_dim && *head_dim != hidden / heads)
    throw Error(ErrorCategory::unsupported, where + ": head_dim differs from hidden_size / num_attention_heads");
  for (const char* key : {"attention_bias", "mlp_bias", "lm_head_bias"})
    if (json_bool(json, key, where).value_or(false))
      throw Error(ErrorCategory::unsupported, where + ": " + key + " is not supported for phi3");
  Architecture arch = llama_like_from_hf(json, where, "phi3", {});
  // transformers 4.51.3: int(head_dim * partial_rotary_factor) leading dims rotate (the
  // first half of them paired with the second, NeoX-style, as for the whole head).
  const double fraction = json_number(json, {"partial_rotary_factor"}, where).value_or(1.0);
  const int rotary_dim = static_cast<int>(arch.config.head_dim * fraction);
  if (!(fraction > 0 && fraction <= 1) || rotary_dim < 2 || rotary_dim % 2 != 0)
    throw Error(ErrorCategory::format, where + ": partial_rotary_factor " + std::to_string(fraction) +
                                           " must give an even number of rotary dimensions within head_dim");
  arch.kinds.rotary_dim = rotary_dim;
  arch.kinds.rotary_inv_freq = rope_inv_freq(json_number(json, {"rope_theta"}, where).value_or(10000.0), rotary_dim);
  arch.config.norm_eps = static_cast<float>(json_number(json, {"rms_norm_eps"}, where).value_or(1e-5));
  arch.config.max_positions = static_cast<int>(json_int(json, {"max_position_embeddings"}, where).value_or(4096));
  const bool tied = arch.config.tied_embeddings;
  arch.recipe = [tied](WeightSlot slot, int layer) { return phi3_hf_recipe(slot, layer, tied); };

  auto it = json.find("rope_scaling");
  if (it == json.end() || it->is_null()) return arch;
  if (!it->is_object()) throw Error(ErrorCategory::format, where + ": rope_scaling is not an object");
  auto type = json_string(*it, "type", where + ": rope_scaling");
  if (!type) type = json_string(*it, "rope_type", where + ": rope_scaling");
  // "su" and "yarn" are older names of longrope (Phi3Config._rope_scaling_adjustment).
  if (type != "longrope" && type != "su" && type != "yarn")
    throw Error(ErrorCategory::unsupported,
                where + ": rope_scaling type '" + type.value_or("") + "' is not supported for phi3 (longrope, su)");
  // 4.44.2 rejects any other key; later versions read attention_factor and factor, which
  // would change the result: refused by name rather than ignored.
  for (const auto& [key, value] : it->items())
    if (key != "type" && key != "rope_type" && key != "short_factor" && key != "long_factor")
      throw Error(ErrorCategory::unsupported, where + ": rope_scaling." + key + " is not supported for phi3");
  const int original =
      static_cast<int>(json_int(json, {"original_max_position_embeddings"}, where).value_or(4096));
  apply_longrope(factor_list(*it, "short_factor", where), factor_list(*it, "long_factor", where), original,
                 json_number(json, {"rope_theta"}, where).value_or(10000.0),
                 longrope_attention_factor(arch.config.max_positions, original), where, arch.kinds);
  return arch;
}

// llama.cpp's "phi3": fused attn_qkv and ffn_up, LongRoPE as the tensors rope_factors_long
// / rope_factors_short with phi3.rope.scaling.original_context_length and .attn_factor.
Architecture phi3_architecture_from_gguf(const GgufFile& file) {
  const std::string where = file.path().string();
  Architecture arch = llama_like_from_gguf(file, "phi3", RotaryStyle::neox);
  const int rotary_dim = arch.kinds.rotary_dim;  // Phi-4-mini: 3/4 of the head
  if (rotary_dim < 2 || rotary_dim % 2 != 0 || rotary_dim > arch.config.head_dim)
    throw Error(ErrorCategory::format, where + ": phi3.rope.dimension_count " + std::to_string(rotary_dim) +
                                           " must be even and within the head size " +
                                           std::to_string(arch.config.head_dim));
  if (auto type = file.get_string("phi3.rope.scaling.type"); type && *type != "none")
    throw Error(ErrorCategory::unsupported,
                where + ": phi3.rope.scaling.type '" + *type + "' is not supported (rope factors only)");
  const bool tied = arch.config.tied_embeddings;
  arch.recipe = [tied](WeightSlot slot, int layer) { return phi3_gguf_recipe(slot, layer, tied); };

  const GgufTensor* long_factors = file.find_tensor("rope_factors_long.weight");
  const GgufTensor* short_factors = file.find_tensor("rope_factors_short.weight");
  if (!long_factors && !short_factors) return arch;
  if (!long_factors || !short_factors)
    throw Error(ErrorCategory::format, where + ": tensor '" +
                                           (long_factors ? "rope_factors_short" : "rope_factors_long") +
                                           ".weight' is missing (LongRoPE needs both)");
  // llama.cpp: the original context defaults to the training context.
  const int original = gguf_dim(file, "phi3.rope.scaling.original_context_length").value_or(arch.config.max_positions);
  const double attention = file.get_float("phi3.rope.scaling.attn_factor").value_or(1.0);
  if (!(attention > 0)) throw Error(ErrorCategory::format, where + ": phi3.rope.scaling.attn_factor must be positive");
  for (const GgufTensor* t : {short_factors, long_factors})
    if (t->element_count != arch.kinds.rotary_dim / 2)
      throw Error(ErrorCategory::format, where + ": tensor '" + t->name + "' has " + std::to_string(t->element_count) +
                                             " values, expected " + std::to_string(arch.kinds.rotary_dim / 2) +
                                             " (rotary dimensions / 2)");
  apply_longrope(file.dequantize(*short_factors), file.dequantize(*long_factors), original,
                 file.get_float("phi3.rope.freq_base").value_or(10000.0), attention, where, arch.kinds);
  return arch;
}

}  // namespace kestrel
