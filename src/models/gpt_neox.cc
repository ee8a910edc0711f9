// GPT-NeoX / Pythia: LayerNorm with biases, GELU, rotary over the first rotary_pct of each
// head (NeoX pairing), parallel residual by default (use_parallel_residual) with separate
// norms, untied LM head (embed_out). Hugging Face fuses Q, K and V into query_key_value,
// head after head ([nh, 3, hd] rows); llama.cpp's converter regroups them as [q | k | v],
// so only the safetensors recipe gathers the heads.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/architecture.h"
#include "models/config_json.h"
#include "models/gguf_metadata.h"
#include "models/rope.h"
#include "models/rope_scaling.h"

namespace kestrel {

namespace {

LayerKinds neox_kinds(Activation activation, int rotary_dim, double theta, bool parallel_residual) {
  LayerKinds kinds;
  kinds.norm = NormKind::layer_norm;
  kinds.activation = activation;
  kinds.positions = PositionKind::rotary;
  kinds.rotary_style = RotaryStyle::neox;
  kinds.rotary_dim = rotary_dim;
  kinds.rotary_inv_freq = rope_inv_freq(theta, rotary_dim);
  kinds.parallel_residual = parallel_residual;
  return kinds;
}

}  // namespace

// transformers 4.44.2's GPTNeoXConfig. Math-neutral: the dropouts, classifier_dropout,
// initializer_range, use_cache, token ids.
Architecture gpt_neox_architecture(const nlohmann::json& json, const std::string& where) {
  Architecture arch;
  arch.name = "gpt_neox";
  ModelConfig& c = arch.config;
  c.architecture = "gpt_neox";
  c.vocab_size = static_cast<int>(json_required_int(json, {"vocab_size"}, where));
  c.hidden_size = static_cast<int>(json_required_int(json, {"hidden_size"}, where));
  c.num_layers = static_cast<int>(json_required_int(json, {"num_hidden_layers"}, where));
  c.num_heads = c.num_kv_heads = static_cast<int>(json_required_int(json, {"num_attention_heads"}, where));
  c.head_dim = c.num_heads > 0 ? c.hidden_size / c.num_heads : 0;
  c.ffn_size = static_cast<int>(json_required_int(json, {"intermediate_size"}, where));
  c.max_positions = static_cast<int>(json_int(json, {"max_position_embeddings"}, where).value_or(2048));
  c.norm_eps = static_cast<float>(json_number(json, {"layer_norm_eps"}, where).value_or(1e-5));
  c.tied_embeddings = json_bool(json, "tie_word_embeddings", where).value_or(false);
  if (c.num_heads > 0 && c.hidden_size % c.num_heads != 0)
    throw Error(ErrorCategory::format, where + ": hidden_size " + std::to_string(c.hidden_size) +
                                           " is not divisible by num_attention_heads " + std::to_string(c.num_heads));
  const double pct = json_number(json, {"rotary_pct"}, where).value_or(0.25);
  if (!(pct > 0 && pct <= 1)) throw Error(ErrorCategory::format, where + ": rotary_pct must be in (0, 1]");
  // int(head_size * rotary_pct) as transformers computes it; the kernels rotate pairs.
  const int rotary_dim = static_cast<int>(c.head_dim * pct);
  if (rotary_dim % 2 != 0)
    throw Error(ErrorCategory::unsupported,
                where + ": rotary_pct gives an odd number of rotary dimensions (" + std::to_string(rotary_dim) + ")");
  arch.kinds = neox_kinds(hf_activation(json_string(json, "hidden_act", where).value_or("gelu"), "hidden_act", where),
                          rotary_dim, json_number(json, {"rotary_emb_base"}, where).value_or(10000.0),
                          json_bool(json, "use_parallel_residual", where).value_or(true));
  // GPT-NeoX's rope_scaling uses the older "type" key (linear or dynamic).
  if (auto it = json.find("rope_scaling"); it != json.end()) {
    if (it->is_object() && json_string(*it, "type", where + ": rope_scaling") == "dynamic") {
      const auto factor = json_number(*it, {"factor"}, where + ": rope_scaling");
      if (!factor) throw Error(ErrorCategory::format, where + ": rope_scaling.factor is missing");
      apply_dynamic_ntk(json_number(json, {"rotary_emb_base"}, where).value_or(10000.0), *factor, where, arch.kinds,
                        c);
    } else {
      apply_hf_rope_scaling(*it, where, arch.kinds.rotary_inv_freq);
    }
  }

  const bool bias = json_bool(json, "attention_bias", where).value_or(true);
  const bool tied = c.tied_embeddings;
  const int hd = c.head_dim;
  arch.recipe = [bias, tied, hd](WeightSlot slot, int layer) -> WeightRecipe {
    const std::string l = "gpt_neox.layers." + std::to_string(layer) + ".";
    switch (slot) {
      case WeightSlot::token_embedding: return {{"gpt_neox.embed_in.weight"}};
      case WeightSlot::final_norm_weight: return {{"gpt_neox.final_layer_norm.weight"}};
      case WeightSlot::final_norm_bias: return {{"gpt_neox.final_layer_norm.bias"}};
      case WeightSlot::lm_head: return {{tied ? "gpt_neox.embed_in.weight" : "embed_out.weight"}};
      case WeightSlot::attn_norm_weight: return {{l + "input_layernorm.weight"}};
      case WeightSlot::attn_norm_bias: return {{l + "input_layernorm.bias"}};
      case WeightSlot::qkv_weight: return {{l + "attention.query_key_value.weight"}, false, hd};
      case WeightSlot::qkv_bias:
        return bias ? WeightRecipe{{l + "attention.query_key_value.bias"}, false, hd} : WeightRecipe{};
      case WeightSlot::out_weight: return {{l + "attention.dense.weight"}};
      case WeightSlot::out_bias: return bias ? WeightRecipe{{l + "attention.dense.bias"}} : WeightRecipe{};
      case WeightSlot::ffn_norm_weight: return {{l + "post_attention_layernorm.weight"}};
      case WeightSlot::ffn_norm_bias: return {{l + "post_attention_layernorm.bias"}};
      case WeightSlot::up_weight: return {{l + "mlp.dense_h_to_4h.weight"}};
      case WeightSlot::up_bias: return {{l + "mlp.dense_h_to_4h.bias"}};
      case WeightSlot::down_weight: return {{l + "mlp.dense_4h_to_h.weight"}};
      case WeightSlot::down_bias: return {{l + "mlp.dense_4h_to_h.bias"}};
      default: return {};  // no position embedding
    }
  };
  return arch;
}

// llama.cpp's "gptneox": its converter writes no rope base (llama.cpp uses 10000) and no
// activation. Pythia's hidden_act is "gelu" (erf), which is used here; llama.cpp runs its
// tanh approximation instead (a difference under 1e-3 per activation).
Architecture gpt_neox_architecture_from_gguf(const GgufFile& file) {
  const std::string where = file.path().string();
  Architecture arch;
  arch.name = "gptneox";
  arch.config = gguf_model_config(file, "gptneox");
  ModelConfig& c = arch.config;
  c.architecture = "gpt_neox";
  if (auto type = file.get_string("gptneox.rope.scaling.type"); type && *type != "none")
    throw Error(ErrorCategory::unsupported,
                where + ": gptneox.rope.scaling.type '" + *type + "' is not supported (none)");
  const std::optional<bool> parallel = file.get_bool("gptneox.use_parallel_residual");
  arch.kinds = neox_kinds(Activation::gelu_erf, gguf_dim(file, "gptneox.rope.dimension_count").value_or(c.head_dim),
                          file.get_float("gptneox.rope.freq_base").value_or(10000.0), parallel.value_or(true));
  const bool bias = file.find_tensor("blk.0.attn_qkv.bias") != nullptr;
  const bool tied = c.tied_embeddings;
  arch.recipe = [bias, tied](WeightSlot slot, int layer) -> WeightRecipe {
    const std::string b = "blk." + std::to_string(layer) + ".";
    switch (slot) {
      case WeightSlot::token_embedding: return {{"token_embd.weight"}};
      case WeightSlot::final_norm_weight: return {{"output_norm.weight"}};
      case WeightSlot::final_norm_bias: return {{"output_norm.bias"}};
      case WeightSlot::lm_head: return {{tied ? "token_embd.weight" : "output.weight"}};
      case WeightSlot::attn_norm_weight: return {{b + "attn_norm.weight"}};
      case WeightSlot::attn_norm_bias: return {{b + "attn_norm.bias"}};
      case WeightSlot::qkv_weight: return {{b + "attn_qkv.weight"}};
      case WeightSlot::qkv_bias: return bias ? WeightRecipe{{b + "attn_qkv.bias"}} : WeightRecipe{};
      case WeightSlot::out_weight: return {{b + "attn_output.weight"}};
      case WeightSlot::out_bias: return bias ? WeightRecipe{{b + "attn_output.bias"}} : WeightRecipe{};
      case WeightSlot::ffn_norm_weight: return {{b + "ffn_norm.weight"}};
      case WeightSlot::ffn_norm_bias: return {{b + "ffn_norm.bias"}};
      case WeightSlot::up_weight: return {{b + "ffn_up.weight"}};
      case WeightSlot::up_bias: return {{b + "ffn_up.bias"}};
      case WeightSlot::down_weight: return {{b + "ffn_down.weight"}};
      case WeightSlot::down_bias: return {{b + "ffn_down.bias"}};
      default: return {};  // no position embedding
    }
  };
  return arch;
}

}  // namespace kestrel
