// Llama family (Llama 2/3/3.1/3.2, SmolLM2; Mistral and Qwen2 share llama_like_*): RMSNorm,
// rotary positions (rope scaling: linear, llama3, dynamic, yarn), SwiGLU, grouped-query
// attention, optional attention / MLP biases, tied or untied LM head.
//
// Rotary pairing differs by file format. Hugging Face checkpoints rotate dimension i with
// i + head_dim / 2 (NeoX, "rotate_half"). llama.cpp's converter permutes the rows of Q and
// K in every head (convert_hf_to_gguf.py LlamaModel.permute) so that its rope can rotate
// adjacent pairs (2i, 2i + 1) instead: a GGUF Llama is the same model with GPT-J pairing.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/architecture.h"
#include "models/config_json.h"
#include "models/gguf_metadata.h"
#include "models/llama_like.h"
#include "models/moe_family.h"
#include "models/rope.h"
#include "models/rope_scaling.h"

namespace kestrel {

namespace {

// Hugging Face names of the Llama-like slots.
WeightRecipe hf_recipe(WeightSlot slot, int layer, bool tied, LlamaBiases biases) {
  const std::string l = "model.layers." + std::to_string(layer) + ".";
  const std::string a = l + "self_attn.", m = l + "mlp.";
  switch (slot) {
    case WeightSlot::token_embedding: return {{"model.embed_tokens.weight"}};
    case WeightSlot::final_norm_weight: return {{"model.norm.weight"}};
    case WeightSlot::lm_head: return {{tied ? "model.embed_tokens.weight" : "lm_head.weight"}};
    case WeightSlot::attn_norm_weight: return {{l + "input_layernorm.weight"}};
    case WeightSlot::qkv_weight: return {{a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"}};
    case WeightSlot::qkv_bias:
      if (!biases.qkv) return {};
      return {{a + "q_proj.bias", a + "k_proj.bias", a + "v_proj.bias"}};
    case WeightSlot::out_weight: return {{a + "o_proj.weight"}};
    case WeightSlot::out_bias: return biases.out ? WeightRecipe{{a + "o_proj.bias"}} : WeightRecipe{};
    case WeightSlot::ffn_norm_weight: return {{l + "post_attention_layernorm.weight"}};
    case WeightSlot::up_weight: return {{m + "gate_proj.weight", m + "up_proj.weight"}};
    case WeightSlot::up_bias:
      return biases.mlp ? WeightRecipe{{m + "gate_proj.bias", m + "up_proj.bias"}} : WeightRecipe{};
    case WeightSlot::down_weight: return {{m + "down_proj.weight"}};
    case WeightSlot::down_bias: return biases.mlp ? WeightRecipe{{m + "down_proj.bias"}} : WeightRecipe{};
    default: return {};  // no position embedding, no norm biases
  }
}

// llama.cpp's names of the same slots.
WeightRecipe gguf_recipe(WeightSlot slot, int layer, bool tied, LlamaBiases biases) {
  const std::string b = "blk." + std::to_string(layer) + ".";
  switch (slot) {
    case WeightSlot::token_embedding: return {{"token_embd.weight"}};
    case WeightSlot::final_norm_weight: return {{"output_norm.weight"}};
    case WeightSlot::lm_head: return {{tied ? "token_embd.weight" : "output.weight"}};
    case WeightSlot::attn_norm_weight: return {{b + "attn_norm.weight"}};
    case WeightSlot::qkv_weight: return {{b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"}};
    case WeightSlot::qkv_bias:
      if (!biases.qkv) return {};
      return {{b + "attn_q.bias", b + "attn_k.bias", b + "attn_v.bias"}};
    case WeightSlot::out_weight: return {{b + "attn_output.weight"}};
    case WeightSlot::out_bias: return biases.out ? WeightRecipe{{b + "attn_output.bias"}} : WeightRecipe{};
    case WeightSlot::ffn_norm_weight: return {{b + "ffn_norm.weight"}};
    case WeightSlot::up_weight: return {{b + "ffn_gate.weight", b + "ffn_up.weight"}};
    case WeightSlot::up_bias:
      return biases.mlp ? WeightRecipe{{b + "ffn_gate.bias", b + "ffn_up.bias"}} : WeightRecipe{};
    case WeightSlot::down_weight: return {{b + "ffn_down.weight"}};
    case WeightSlot::down_bias: return biases.mlp ? WeightRecipe{{b + "ffn_down.bias"}} : WeightRecipe{};
    default: return {};  // no position embedding, no norm biases
  }
}

LayerKinds llama_kinds(RotaryStyle style, int rotary_dim, double theta) {
  LayerKinds kinds;
  kinds.norm = NormKind::rms_norm;
  kinds.activation = Activation::silu;
  kinds.gated_ffn = true;
  kinds.positions = PositionKind::rotary;
  kinds.rotary_style = style;
  kinds.rotary_dim = rotary_dim;
  kinds.rotary_inv_freq = rope_inv_freq(theta, rotary_dim);
  return kinds;
}

}  // namespace

Architecture llama_like_from_hf(const nlohmann::json& json, const std::string& where, const std::string& name,
                                LlamaBiases biases) {
  Architecture arch;
  arch.name = name;
  ModelConfig& c = arch.config;
  c.architecture = name;
  c.vocab_size = static_cast<int>(json_required_int(json, {"vocab_size"}, where));
  c.hidden_size = static_cast<int>(json_required_int(json, {"hidden_size"}, where));
  c.num_layers = static_cast<int>(json_required_int(json, {"num_hidden_layers"}, where));
  c.num_heads = static_cast<int>(json_required_int(json, {"num_attention_heads"}, where));
  c.num_kv_heads = static_cast<int>(json_int(json, {"num_key_value_heads"}, where).value_or(c.num_heads));
  // transformers 4.44.2's Llama always uses hidden_size / num_attention_heads; its Mistral,
  // later versions and llama.cpp's converter honour a head_dim key, as here.
  c.head_dim = static_cast<int>(
      json_int(json, {"head_dim"}, where).value_or(c.num_heads > 0 ? c.hidden_size / c.num_heads : 0));
  c.ffn_size = static_cast<int>(json_required_int(json, {"intermediate_size"}, where));
  c.max_positions = static_cast<int>(json_int(json, {"max_position_embeddings"}, where).value_or(2048));
  c.norm_eps = static_cast<float>(json_number(json, {"rms_norm_eps"}, where).value_or(1e-6));
  c.tied_embeddings = json_bool(json, "tie_word_embeddings", where).value_or(false);
  if (auto act = json_string(json, "hidden_act", where); act && *act != "silu")
    throw Error(ErrorCategory::unsupported, where + ": hidden_act '" + *act + "' is not supported (silu)");
  arch.kinds = llama_kinds(RotaryStyle::neox, c.head_dim, json_number(json, {"rope_theta"}, where).value_or(10000.0));
  const bool tied = c.tied_embeddings;
  arch.recipe = [tied, biases](WeightSlot slot, int layer) { return hf_recipe(slot, layer, tied, biases); };
  return arch;
}

Architecture llama_like_from_gguf(const GgufFile& file, const std::string& prefix, RotaryStyle style) {
  const std::string where = file.path().string();
  Architecture arch;
  arch.name = prefix;
  arch.config = gguf_model_config(file, prefix);
  ModelConfig& c = arch.config;
  c.architecture = prefix;
  // Experts are read by the families that have them (llama: Mixtral; qwen2moe; qwen3moe;
  // granitemoe; gpt-oss).
  if (gguf_dim(file, prefix + ".expert_count").value_or(0) > 0 && prefix != "llama" && prefix != "qwen2moe" &&
      prefix != "qwen3moe" && prefix != "granitemoe" && prefix != "gpt-oss")
    throw Error(ErrorCategory::unsupported,
                where + ": mixture of experts (" + prefix + ".expert_count) is not supported");
  // Biases as llama.cpp names them: present in every layer or in none.
  const LlamaBiases biases{.qkv = file.find_tensor("blk.0.attn_q.bias") != nullptr,
                           .out = file.find_tensor("blk.0.attn_output.bias") != nullptr,
                           .mlp = file.find_tensor("blk.0.ffn_up.bias") != nullptr};
  arch.kinds = llama_kinds(style, gguf_dim(file, prefix + ".rope.dimension_count").value_or(c.head_dim),
                           file.get_float(prefix + ".rope.freq_base").value_or(10000.0));
  const bool tied = c.tied_embeddings;
  arch.recipe = [tied, biases](WeightSlot slot, int layer) { return gguf_recipe(slot, layer, tied, biases); };
  return arch;
}

// The keys of transformers 4.44.2's LlamaConfig that change the computation are read here
// or in llama_like_from_hf; the rest (initializer_range, use_cache, token ids,
// attention_dropout at inference, pretraining_tp, which only splits the same matrix
// products into slices) do not. docs/MODELS.md has the audit.
Architecture llama_architecture(const nlohmann::json& json, const std::string& where) {
  const bool attention_bias = json_bool(json, "attention_bias", where).value_or(false);
  Architecture arch = llama_like_from_hf(json, where, "llama",
                                         {.qkv = attention_bias,
                                          .out = attention_bias,
                                          .mlp = json_bool(json, "mlp_bias", where).value_or(false)});
  if (auto it = json.find("rope_scaling"); it != json.end())
    apply_hf_llama_rope_scaling(*it, where, json_number(json, {"rope_theta"}, where).value_or(10000.0), arch.kinds,
                                arch.config);
  return arch;
}

void apply_gguf_llama_rope_scaling(const GgufFile& file, const std::string& prefix, Architecture& arch) {
  const std::string where = file.path().string(), p = prefix + ".";
  // Linear position interpolation: <prefix>.rope.scaling.type "linear" with .factor, or the
  // older <prefix>.rope.scale_linear.
  std::optional<double> factor = file.get_float(p + "rope.scale_linear");
  const auto type = file.get_string(p + "rope.scaling.type");
  if (type == "yarn") {
    factor.reset();
    apply_gguf_yarn(file, prefix, file.get_float(p + "rope.freq_base").value_or(10000.0), arch.kinds, arch.config);
  } else if (type && *type != "none") {
    if (*type != "linear")
      throw Error(ErrorCategory::unsupported,
                  where + ": " + p + "rope.scaling.type '" + *type + "' is not supported (none, linear, yarn)");
    factor = file.get_float(p + "rope.scaling.factor");
    if (!factor) throw Error(ErrorCategory::format, where + ": metadata key '" + p + "rope.scaling.factor' is missing");
  }
  if (factor) {
    if (!(*factor > 0)) throw Error(ErrorCategory::format, where + ": the rope scaling factor must be positive");
    for (float& f : arch.kinds.rotary_inv_freq) f /= static_cast<float>(*factor);
  }
  // Llama 3 rope scaling: llama.cpp's converter stores it as per-pair frequency factors.
  if (const GgufTensor* freqs = file.find_tensor("rope_freqs.weight"))
    apply_rope_freq_factors(file.dequantize(*freqs), where, arch.kinds.rotary_inv_freq);
}

Architecture llama_architecture_from_gguf(const GgufFile& file) {
  Architecture arch = llama_like_from_gguf(file, "llama", RotaryStyle::gptj);
  apply_gguf_llama_rope_scaling(file, "llama", arch);
  // Mixtral: llama.cpp renormalizes the top-k weights of a "llama" with experts.
  if (gguf_dim(file, "llama.expert_count").value_or(0) > 0)
    gguf_mixture_of_experts(file, "llama", arch, /*normalize_top_k=*/true, /*shared_expert=*/false);
  return arch;
}

}  // namespace kestrel
