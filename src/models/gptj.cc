// GPT-J: LayerNorm, GELU (tanh), rotary over the first rotary_dim dims of each head with
// GPT-J's adjacent pairs (rotate_every_two), attention and MLP in parallel off one
// LayerNorm (ln_1), q / k / v / out projections without bias, biased MLP, and an untied LM
// head with a bias. llama.cpp's converter has no GPT-J, so there is no GGUF description.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "models/architecture.h"
#include "models/config_json.h"
#include "models/rope.h"

namespace kestrel {

// transformers 4.44.2's GPTJConfig. Math-neutral: the dropouts, initializer_range,
// use_cache, token ids.
Architecture gptj_architecture(const nlohmann::json& json, const std::string& where) {
  Architecture arch;
  arch.name = "gptj";
  ModelConfig& c = arch.config;
  c.architecture = "gptj";
  c.vocab_size = static_cast<int>(json_required_int(json, {"vocab_size"}, where));
  c.hidden_size = static_cast<int>(json_required_int(json, {"n_embd"}, where));
  c.num_layers = static_cast<int>(json_required_int(json, {"n_layer"}, where));
  c.num_heads = c.num_kv_heads = static_cast<int>(json_required_int(json, {"n_head"}, where));
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  c.ffn_size = static_cast<int>(json_int(json, {"n_inner"}, where).value_or(4 * int64_t{c.hidden_size}));
  c.max_positions = static_cast<int>(json_required_int(json, {"n_positions"}, where));
  c.norm_eps = static_cast<float>(json_number(json, {"layer_norm_epsilon"}, where).value_or(1e-5));
  c.tied_embeddings = json_bool(json, "tie_word_embeddings", where).value_or(false);
  if (c.num_heads > 0 && c.hidden_size % c.num_heads != 0)
    throw Error(ErrorCategory::format, where + ": n_embd " + std::to_string(c.hidden_size) +
                                           " is not divisible by n_head " + std::to_string(c.num_heads));
  // null: the whole head rotates.
  const int rotary_dim = static_cast<int>(json_int(json, {"rotary_dim"}, where).value_or(c.head_dim));
  if (rotary_dim <= 0 || rotary_dim > c.head_dim || rotary_dim % 2 != 0)
    throw Error(ErrorCategory::format, where + ": rotary_dim " + std::to_string(rotary_dim) +
                                           " must be even and within the head size " + std::to_string(c.head_dim));

  LayerKinds& k = arch.kinds;
  k.norm = NormKind::layer_norm;
  k.activation = hf_activation(json_string(json, "activation_function", where).value_or("gelu_new"),
                               "activation_function", where);
  k.positions = PositionKind::rotary;
  k.rotary_style = RotaryStyle::gptj;
  k.rotary_dim = rotary_dim;
  k.rotary_inv_freq = rope_inv_freq(10000.0, rotary_dim);  // GPT-J's base is fixed
  k.parallel_residual = true;
  k.shared_norm = true;

  const bool tied = c.tied_embeddings;
  arch.recipe = [tied](WeightSlot slot, int layer) -> WeightRecipe {
    const std::string h = "transformer.h." + std::to_string(layer) + ".";
    switch (slot) {
      case WeightSlot::token_embedding: return {{"transformer.wte.weight"}};
      case WeightSlot::final_norm_weight: return {{"transformer.ln_f.weight"}};
      case WeightSlot::final_norm_bias: return {{"transformer.ln_f.bias"}};
      case WeightSlot::lm_head: return {{tied ? "transformer.wte.weight" : "lm_head.weight"}};
      case WeightSlot::lm_head_bias: return {{"lm_head.bias"}};
      case WeightSlot::attn_norm_weight:
      case WeightSlot::ffn_norm_weight: return {{h + "ln_1.weight"}};  // one norm for both
      case WeightSlot::attn_norm_bias:
      case WeightSlot::ffn_norm_bias: return {{h + "ln_1.bias"}};
      case WeightSlot::qkv_weight:
        return {{h + "attn.q_proj.weight", h + "attn.k_proj.weight", h + "attn.v_proj.weight"}};
      case WeightSlot::out_weight: return {{h + "attn.out_proj.weight"}};
      case WeightSlot::up_weight: return {{h + "mlp.fc_in.weight"}};
      case WeightSlot::up_bias: return {{h + "mlp.fc_in.bias"}};
      case WeightSlot::down_weight: return {{h + "mlp.fc_out.weight"}};
      case WeightSlot::down_bias: return {{h + "mlp.fc_out.bias"}};
      default: return {};  // no position embedding, no attention biases
    }
  };
  return arch;
}

}  // namespace kestrel
