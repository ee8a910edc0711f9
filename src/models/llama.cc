// Llama family (Llama 2/3, SmolLM2, Mistral without sliding window): RMSNorm, rotary
// positions (NeoX pairing in Hugging Face checkpoints), SwiGLU, grouped-query attention,
// no biases, tied or untied LM head.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "models/architecture.h"
#include "models/config_json.h"

namespace kestrel {

Architecture llama_architecture(const nlohmann::json& json, const std::string& where) {
  Architecture arch;
  arch.name = "llama";
  ModelConfig& c = arch.config;
  c.architecture = "llama";
  c.vocab_size = static_cast<int>(json_required_int(json, {"vocab_size"}, where));
  c.hidden_size = static_cast<int>(json_required_int(json, {"hidden_size"}, where));
  c.num_layers = static_cast<int>(json_required_int(json, {"num_hidden_layers"}, where));
  c.num_heads = static_cast<int>(json_required_int(json, {"num_attention_heads"}, where));
  c.num_kv_heads = static_cast<int>(json_int(json, {"num_key_value_heads"}, where).value_or(c.num_heads));
  c.head_dim = static_cast<int>(
      json_int(json, {"head_dim"}, where).value_or(c.num_heads > 0 ? c.hidden_size / c.num_heads : 0));
  c.ffn_size = static_cast<int>(json_required_int(json, {"intermediate_size"}, where));
  c.max_positions = static_cast<int>(json_int(json, {"max_position_embeddings"}, where).value_or(2048));
  c.norm_eps = static_cast<float>(json_number(json, {"rms_norm_eps"}, where).value_or(1e-6));
  c.tied_embeddings = json_bool(json, "tie_word_embeddings", where).value_or(false);
  if (auto act = json_string(json, "hidden_act", where); act && *act != "silu")
    throw Error(ErrorCategory::unsupported, where + ": hidden_act '" + *act + "' is not supported (silu)");
  if (json_bool(json, "attention_bias", where).value_or(false) || json_bool(json, "mlp_bias", where).value_or(false))
    throw Error(ErrorCategory::unsupported, where + ": attention_bias / mlp_bias are not supported");

  arch.kinds.norm = NormKind::rms_norm;
  arch.kinds.activation = Activation::silu;
  arch.kinds.gated_ffn = true;
  arch.kinds.positions = PositionKind::rotary;
  arch.kinds.rotary.style = RotaryStyle::neox;
  arch.kinds.rotary.rotary_dim = c.head_dim;
  arch.kinds.rotary.theta = static_cast<float>(json_number(json, {"rope_theta"}, where).value_or(10000.0));
  if (auto it = json.find("rope_scaling"); it != json.end() && !it->is_null()) {
    auto type = json_string(*it, "type", where + ": rope_scaling")
                    .value_or(json_string(*it, "rope_type", where + ": rope_scaling").value_or(""));
    if (type != "linear")
      throw Error(ErrorCategory::unsupported, where + ": rope_scaling type '" + type + "' is not supported (linear)");
    auto factor = json_number(*it, {"factor"}, where + ": rope_scaling").value_or(1.0);
    if (factor <= 0) throw Error(ErrorCategory::format, where + ": rope_scaling.factor must be positive");
    arch.kinds.rotary.position_scale = static_cast<float>(1.0 / factor);
  }

  const bool tied = c.tied_embeddings;
  arch.recipe = [tied](WeightSlot slot, int layer) -> WeightRecipe {
    const std::string l = "model.layers." + std::to_string(layer) + ".";
    switch (slot) {
      case WeightSlot::token_embedding: return {{"model.embed_tokens.weight"}};
      case WeightSlot::final_norm_weight: return {{"model.norm.weight"}};
      case WeightSlot::lm_head: return {{tied ? "model.embed_tokens.weight" : "lm_head.weight"}};
      case WeightSlot::attn_norm_weight: return {{l + "input_layernorm.weight"}};
      case WeightSlot::qkv_weight:
        return {{l + "self_attn.q_proj.weight", l + "self_attn.k_proj.weight", l + "self_attn.v_proj.weight"}};
      case WeightSlot::out_weight: return {{l + "self_attn.o_proj.weight"}};
      case WeightSlot::ffn_norm_weight: return {{l + "post_attention_layernorm.weight"}};
      case WeightSlot::up_weight: return {{l + "mlp.gate_proj.weight", l + "mlp.up_proj.weight"}};
      case WeightSlot::down_weight: return {{l + "mlp.down_proj.weight"}};
      default: return {};  // no position embedding, no biases
    }
  };
  return arch;
}

}  // namespace kestrel
