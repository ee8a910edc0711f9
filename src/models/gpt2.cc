// GPT-2: learned positions, pre-LayerNorm, GELU (tanh), biases everywhere, tied LM head.
// Hugging Face stores its linear weights as Conv1D, i.e. [in, out]; llama.cpp's converter
// transposes them, so a GGUF GPT-2 stores [out, in] like any Linear.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/architecture.h"
#include "models/config_json.h"
#include "models/gguf_metadata.h"

namespace kestrel {

Architecture gpt2_architecture(const nlohmann::json& json, const std::string& where,
                               const std::function<bool(const std::string&)>& has_tensor) {
  Architecture arch;
  arch.name = "gpt2";
  ModelConfig& c = arch.config;
  c.architecture = "gpt2";
  c.vocab_size = static_cast<int>(json_required_int(json, {"vocab_size"}, where));
  c.hidden_size = static_cast<int>(json_required_int(json, {"n_embd", "hidden_size"}, where));
  c.num_layers = static_cast<int>(json_required_int(json, {"n_layer", "num_hidden_layers"}, where));
  c.num_heads = static_cast<int>(json_required_int(json, {"n_head", "num_attention_heads"}, where));
  c.num_kv_heads = c.num_heads;
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  c.ffn_size = static_cast<int>(json_int(json, {"n_inner"}, where).value_or(4 * c.hidden_size));
  c.max_positions = static_cast<int>(json_required_int(json, {"n_positions", "n_ctx"}, where));
  c.norm_eps = static_cast<float>(json_number(json, {"layer_norm_epsilon"}, where).value_or(1e-5));
  c.tied_embeddings = json_bool(json, "tie_word_embeddings", where).value_or(true);
  if (c.num_heads > 0 && c.hidden_size % c.num_heads != 0)
    throw Error(ErrorCategory::format, where + ": n_embd " + std::to_string(c.hidden_size) +
                                           " is not divisible by n_head " + std::to_string(c.num_heads));
  arch.kinds.norm = NormKind::layer_norm;
  arch.kinds.activation =
      hf_activation(json_string(json, "activation_function", where).value_or("gelu_new"), "activation_function", where);
  arch.kinds.positions = PositionKind::learned;
  arch.kinds.attn_scale_by_head_dim = json_bool(json, "scale_attn_weights", where).value_or(true);
  arch.kinds.attn_scale_by_inverse_layer =
      json_bool(json, "scale_attn_by_inverse_layer_idx", where).value_or(false);
  // reorder_and_upcast_attn only changes the precision of q k^T under fp16 autocast; in
  // fp32 it is the same computation, so it is accepted and ignored.

  // Checkpoints saved from GPT2LMHeadModel prefix names with "transformer."; the original
  // OpenAI conversions do not.
  const std::string p = has_tensor("transformer.wte.weight") ? "transformer." : "";
  const bool tied = c.tied_embeddings || !has_tensor("lm_head.weight");
  arch.recipe = [p, tied](WeightSlot slot, int layer) -> WeightRecipe {
    const std::string h = p + "h." + std::to_string(layer) + ".";
    switch (slot) {
      case WeightSlot::token_embedding: return {{p + "wte.weight"}};
      case WeightSlot::position_embedding: return {{p + "wpe.weight"}};
      case WeightSlot::final_norm_weight: return {{p + "ln_f.weight"}};
      case WeightSlot::final_norm_bias: return {{p + "ln_f.bias"}};
      case WeightSlot::lm_head: return {{tied ? p + "wte.weight" : "lm_head.weight"}};
      case WeightSlot::attn_norm_weight: return {{h + "ln_1.weight"}};
      case WeightSlot::attn_norm_bias: return {{h + "ln_1.bias"}};
      case WeightSlot::qkv_weight: return {{h + "attn.c_attn.weight"}, true};
      case WeightSlot::qkv_bias: return {{h + "attn.c_attn.bias"}};
      case WeightSlot::out_weight: return {{h + "attn.c_proj.weight"}, true};
      case WeightSlot::out_bias: return {{h + "attn.c_proj.bias"}};
      case WeightSlot::ffn_norm_weight: return {{h + "ln_2.weight"}};
      case WeightSlot::ffn_norm_bias: return {{h + "ln_2.bias"}};
      case WeightSlot::up_weight: return {{h + "mlp.c_fc.weight"}, true};
      case WeightSlot::up_bias: return {{h + "mlp.c_fc.bias"}};
      case WeightSlot::down_weight: return {{h + "mlp.c_proj.weight"}, true};
      case WeightSlot::down_bias: return {{h + "mlp.c_proj.bias"}};
      case WeightSlot::lm_head_bias: return {};
      default: return {};  // the slots of other families
    }
    return {};
  };
  return arch;
}

Architecture gpt2_architecture_from_gguf(const GgufFile& file) {
  Architecture arch;
  arch.name = "gpt2";
  arch.config = gguf_model_config(file, "gpt2", /*ffn_default_4h=*/true);
  ModelConfig& c = arch.config;
  c.architecture = "gpt2";
  arch.kinds.norm = NormKind::layer_norm;
  arch.kinds.activation = Activation::gelu_tanh;  // llama.cpp's ggml_gelu
  arch.kinds.positions = PositionKind::learned;

  const bool tied = c.tied_embeddings;
  arch.recipe = [tied](WeightSlot slot, int layer) -> WeightRecipe {
    const std::string b = "blk." + std::to_string(layer) + ".";
    switch (slot) {
      case WeightSlot::token_embedding: return {{"token_embd.weight"}};
      case WeightSlot::position_embedding: return {{"position_embd.weight"}};
      case WeightSlot::final_norm_weight: return {{"output_norm.weight"}};
      case WeightSlot::final_norm_bias: return {{"output_norm.bias"}};
      case WeightSlot::lm_head: return {{tied ? "token_embd.weight" : "output.weight"}};
      case WeightSlot::attn_norm_weight: return {{b + "attn_norm.weight"}};
      case WeightSlot::attn_norm_bias: return {{b + "attn_norm.bias"}};
      case WeightSlot::qkv_weight: return {{b + "attn_qkv.weight"}};
      case WeightSlot::qkv_bias: return {{b + "attn_qkv.bias"}};
      case WeightSlot::out_weight: return {{b + "attn_output.weight"}};
      case WeightSlot::out_bias: return {{b + "attn_output.bias"}};
      case WeightSlot::ffn_norm_weight: return {{b + "ffn_norm.weight"}};
      case WeightSlot::ffn_norm_bias: return {{b + "ffn_norm.bias"}};
      case WeightSlot::up_weight: return {{b + "ffn_up.weight"}};
      case WeightSlot::up_bias: return {{b + "ffn_up.bias"}};
      case WeightSlot::down_weight: return {{b + "ffn_down.weight"}};
      case WeightSlot::down_bias: return {{b + "ffn_down.bias"}};
      case WeightSlot::lm_head_bias: return {};
      default: return {};  // the slots of other families
    }
    return {};
  };
  return arch;
}

}  // namespace kestrel
