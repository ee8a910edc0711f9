#include "models/architecture.h"

#include <sstream>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/moe_family.h"
#include "models/stored_quantized.h"

namespace kestrel {

const char* to_string(WeightSlot slot) {
  switch (slot) {
    case WeightSlot::token_embedding: return "token_embedding";
    case WeightSlot::position_embedding: return "position_embedding";
    case WeightSlot::final_norm_weight: return "final_norm_weight";
    case WeightSlot::final_norm_bias: return "final_norm_bias";
    case WeightSlot::lm_head: return "lm_head";
    case WeightSlot::lm_head_bias: return "lm_head_bias";
    case WeightSlot::attn_norm_weight: return "attn_norm_weight";
    case WeightSlot::attn_norm_bias: return "attn_norm_bias";
    case WeightSlot::qkv_weight: return "qkv_weight";
    case WeightSlot::qkv_bias: return "qkv_bias";
    case WeightSlot::out_weight: return "out_weight";
    case WeightSlot::out_bias: return "out_bias";
    case WeightSlot::ffn_norm_weight: return "ffn_norm_weight";
    case WeightSlot::ffn_norm_bias: return "ffn_norm_bias";
    case WeightSlot::up_weight: return "up_weight";
    case WeightSlot::up_bias: return "up_bias";
    case WeightSlot::down_weight: return "down_weight";
    case WeightSlot::down_bias: return "down_bias";
    case WeightSlot::router_weight: return "router_weight";
    case WeightSlot::expert_up_weight: return "expert_up_weight";
    case WeightSlot::expert_down_weight: return "expert_down_weight";
    case WeightSlot::shared_up_weight: return "shared_up_weight";
    case WeightSlot::shared_down_weight: return "shared_down_weight";
    case WeightSlot::shared_gate_weight: return "shared_gate_weight";
    case WeightSlot::post_attn_norm_weight: return "post_attn_norm_weight";
    case WeightSlot::post_ffn_norm_weight: return "post_ffn_norm_weight";
    case WeightSlot::q_norm_weight: return "q_norm_weight";
    case WeightSlot::k_norm_weight: return "k_norm_weight";
    case WeightSlot::attn_sinks: return "attn_sinks";
    case WeightSlot::router_bias: return "router_bias";
    case WeightSlot::expert_up_bias: return "expert_up_bias";
    case WeightSlot::expert_down_bias: return "expert_down_bias";
  }
  return "?";
}

void validate_config(const ModelConfig& c, const std::string& where) {
  auto positive = [&](int value, const char* field) {
    if (value <= 0 || value > (1 << 24))
      throw Error(ErrorCategory::format, where + ": " + field + " = " + std::to_string(value) +
                                             " is out of range");
  };
  positive(c.vocab_size, "vocab_size");
  positive(c.hidden_size, "hidden_size");
  positive(c.num_layers, "num_layers");
  positive(c.num_heads, "num_heads");
  positive(c.num_kv_heads, "num_kv_heads");
  positive(c.head_dim, "head_dim");
  positive(c.ffn_size, "ffn_size");
  positive(c.max_positions, "max_positions");
  if (c.num_heads % c.num_kv_heads != 0)
    throw Error(ErrorCategory::format, where + ": num_heads " + std::to_string(c.num_heads) +
                                           " is not a multiple of num_kv_heads " +
                                           std::to_string(c.num_kv_heads));
  if (!(c.norm_eps > 0.0f)) throw Error(ErrorCategory::format, where + ": norm epsilon must be positive");
  if (c.num_experts > 0) validate_moe_config(c, where);
}

Activation hf_activation(const std::string& name, const char* key, const std::string& where) {
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::gelu_tanh;
  if (name == "gelu") return Activation::gelu_erf;
  if (name == "relu") return Activation::relu;
  throw Error(ErrorCategory::unsupported,
              where + ": " + key + " '" + name + "' is not supported (gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, relu)");
}

float attention_scale(const Architecture& arch, int layer) {
  float scale = arch.kinds.attn_scale_by_head_dim ? 1.0f / std::sqrt(static_cast<float>(arch.config.head_dim)) : 1.0f;
  // transformers: query_pre_attn_scalar ** -0.5 in Python (double), applied as an f32.
  if (arch.kinds.query_pre_attn_scalar > 0) scale = static_cast<float>(1.0 / std::sqrt(arch.kinds.query_pre_attn_scalar));
  if (arch.kinds.attention_multiplier > 0) scale = arch.kinds.attention_multiplier;
  if (arch.kinds.attn_scale_by_inverse_layer) scale /= static_cast<float>(layer + 1);
  // cos and sin scaled by m scale every rotated q and k by m: with all of them rotating,
  // q . k scales by m^2 (partial rotary: rotary_cos_sin_scale instead).
  const float m = arch.kinds.rotary_attention_factor;
  if (m != 1.0f && arch.kinds.rotary_dim == arch.config.head_dim) scale *= m * m;
  return scale;
}

float rotary_cos_sin_scale(const Architecture& arch) {
  return arch.kinds.rotary_dim == arch.config.head_dim ? 1.0f : arch.kinds.rotary_attention_factor;
}

int layer_sliding_window(const LayerKinds& kinds, int layer) {
  if (kinds.layer_attention.empty()) return kinds.sliding_window;
  return kinds.layer_attention.at(static_cast<size_t>(layer)).sliding_window;
}

Architecture architecture_from_hf_config(const std::filesystem::path& config_path,
                                         const std::function<bool(const std::string&)>& has_tensor) {
  std::ifstream in(config_path);
  if (!in) throw Error(ErrorCategory::io, config_path.string() + ": cannot open");
  nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return architecture_from_hf_json(json, config_path.string(), has_tensor);
}

Architecture architecture_from_hf_json(const nlohmann::json& json, const std::string& where,
                                       const std::function<bool(const std::string&)>& has_tensor) {
  if (!json.is_object()) throw Error(ErrorCategory::format, where + ": not a JSON object");
  auto model_type = json_string(json, "model_type", where);
  if (!model_type) throw Error(ErrorCategory::format, where + ": missing field 'model_type'");

  Architecture arch;
  if (*model_type == "gpt2") {
    arch = gpt2_architecture(json, where, has_tensor);
  } else if (*model_type == "llama") {
    arch = llama_architecture(json, where);
  } else if (*model_type == "mistral") {
    arch = mistral_architecture(json, where);
  } else if (*model_type == "qwen2") {
    arch = qwen2_architecture(json, where);
  } else if (*model_type == "gpt_neox") {
    arch = gpt_neox_architecture(json, where);
  } else if (*model_type == "gptj") {
    arch = gptj_architecture(json, where);
  } else if (*model_type == "mixtral") {
    arch = mixtral_architecture(json, where);
  } else if (*model_type == "qwen2_moe") {
    arch = qwen2_moe_architecture(json, where);
  } else if (*model_type == "gemma2") {
    arch = gemma2_architecture(json, where);
  } else if (*model_type == "gemma3_text" || *model_type == "gemma3") {
    arch = gemma3_architecture(json, where);
  } else if (*model_type == "qwen3") {
    arch = qwen3_architecture(json, where);
  } else if (*model_type == "phi3") {
    arch = phi3_architecture(json, where);
  } else if (*model_type == "qwen3_moe") {
    arch = qwen3_moe_architecture(json, where);
  } else if (*model_type == "granite") {
    arch = granite_architecture(json, where);
  } else if (*model_type == "granitemoe") {
    arch = granitemoe_architecture(json, where);
  } else if (*model_type == "olmo2") {
    arch = olmo2_architecture(json, where);
  } else if (*model_type == "gpt_oss") {
    arch = gpt_oss_architecture(json, where);
  } else {
    throw Error(ErrorCategory::unsupported,
                where + ": model_type '" + *model_type +
                    "' is not supported (gpt2, llama, mistral, qwen2, qwen3, gpt_neox, gptj, gemma2, gemma3_text, "
                    "mixtral, qwen2_moe, qwen3_moe, phi3, granite, granitemoe, olmo2, gpt_oss)");
  }
  validate_config(arch.config, where);
  if (auto q = json.find("kestrel_quantization"); q != json.end() && !q->is_null()) {
    const std::string what = where + ": kestrel_quantization";
    if (!q->is_object()) throw Error(ErrorCategory::format, what + " must be an object");
    arch.checkpoint_quantization = checkpoint_quantization(*q, what);
    if (auto f = q->find("float_activations"); f != q->end()) {
      if (!f->is_array()) throw Error(ErrorCategory::format, what + ".float_activations must be a list of weight names");
      std::vector<std::string> names;
      for (const auto& n : *f) {
        if (!n.is_string()) throw Error(ErrorCategory::format, what + ".float_activations must be a list of weight names");
        names.push_back(n.get<std::string>());
      }
      arch.w8a8_float_activations = parse_float_activations(names, what + ".float_activations");
    }
  }
  return arch;
}

std::vector<int64_t> canonical_shape(const Architecture& arch, WeightSlot slot) {
  const ModelConfig& c = arch.config;
  const int64_t H = c.hidden_size, V = c.vocab_size, hd = c.head_dim, F = c.ffn_size;
  const int64_t qkv_rows = (c.num_heads + 2 * int64_t{c.num_kv_heads}) * hd;
  const int64_t up_rows = (arch.kinds.gated_ffn ? 2 : 1) * F;
  switch (slot) {
    case WeightSlot::token_embedding: return {V, H};
    case WeightSlot::position_embedding:
      if (arch.kinds.positions != PositionKind::learned) return {};
      return {c.max_positions, H};
    case WeightSlot::lm_head: return {V, H};
    case WeightSlot::lm_head_bias: return {V};
    case WeightSlot::qkv_weight: return {qkv_rows, H};
    case WeightSlot::qkv_bias: return {qkv_rows};
    case WeightSlot::out_weight: return {H, c.num_heads * hd};
    case WeightSlot::up_weight: return {up_rows, H};
    case WeightSlot::up_bias: return {up_rows};
    case WeightSlot::down_weight: return {H, F};
    case WeightSlot::final_norm_weight:
    case WeightSlot::final_norm_bias:
    case WeightSlot::attn_norm_weight:
    case WeightSlot::attn_norm_bias:
    case WeightSlot::out_bias:
    case WeightSlot::ffn_norm_weight:
    case WeightSlot::ffn_norm_bias:
    case WeightSlot::down_bias:
    case WeightSlot::post_attn_norm_weight:
    case WeightSlot::post_ffn_norm_weight: return {H};
    case WeightSlot::q_norm_weight: return {arch.kinds.qk_norm_over_heads ? c.num_heads * hd : hd};
    case WeightSlot::k_norm_weight: return {arch.kinds.qk_norm_over_heads ? c.num_kv_heads * hd : hd};
    case WeightSlot::router_weight: return {c.num_experts, H};
    case WeightSlot::expert_up_weight: return {2 * int64_t{c.expert_ffn_size}, H};
    case WeightSlot::expert_down_weight: return {H, c.expert_ffn_size};
    case WeightSlot::shared_up_weight: return {2 * int64_t{c.shared_expert_ffn_size}, H};
    case WeightSlot::shared_down_weight: return {H, c.shared_expert_ffn_size};
    case WeightSlot::shared_gate_weight: return {1, H};
    case WeightSlot::attn_sinks: return {c.num_heads};
    case WeightSlot::router_bias: return {c.num_experts};
    case WeightSlot::expert_up_bias: return {2 * int64_t{c.expert_ffn_size}};
    case WeightSlot::expert_down_bias: return {H};
  }
  return {};
}

std::vector<int64_t> source_rows(const Architecture& arch, WeightSlot slot, size_t parts) {
  const ModelConfig& c = arch.config;
  const int64_t rows = canonical_shape(arch, slot).at(0);
  if (parts == 1) return {rows};
  const bool qkv = slot == WeightSlot::qkv_weight || slot == WeightSlot::qkv_bias;
  const bool up = slot == WeightSlot::up_weight || slot == WeightSlot::up_bias;
  if (parts == 2 && (slot == WeightSlot::expert_up_weight || slot == WeightSlot::expert_up_bias ||
                     slot == WeightSlot::shared_up_weight))
    return {rows / 2, rows / 2};
  if (qkv && parts == 3) {
    const int64_t kv = int64_t{c.num_kv_heads} * c.head_dim;
    return {int64_t{c.num_heads} * c.head_dim, kv, kv};
  }
  if (up && parts == 2 && arch.kinds.gated_ffn) return {c.ffn_size, c.ffn_size};
  throw Error(ErrorCategory::internal, std::string(to_string(slot)) + ": no split of its rows into " +
                                           std::to_string(parts) + " source tensors");
}

Architecture architecture_from_gguf(const GgufFile& file) {
  const std::string where = file.path().string();
  std::optional<std::string> name = file.get_string("general.architecture");
  if (!name) throw Error(ErrorCategory::format, where + ": metadata key 'general.architecture' is missing");
  Architecture arch;
  if (*name == "llama") {
    arch = llama_architecture_from_gguf(file);
  } else if (*name == "gpt2") {
    arch = gpt2_architecture_from_gguf(file);
  } else if (*name == "qwen2") {
    arch = qwen2_architecture_from_gguf(file);
  } else if (*name == "gptneox") {
    arch = gpt_neox_architecture_from_gguf(file);
  } else if (*name == "qwen2moe") {
    arch = qwen2_moe_architecture_from_gguf(file);
  } else if (*name == "gemma2" || *name == "gemma3") {
    arch = gemma_architecture_from_gguf(file);
  } else if (*name == "qwen3") {
    arch = qwen3_architecture_from_gguf(file);
  } else if (*name == "phi3") {
    arch = phi3_architecture_from_gguf(file);
  } else if (*name == "qwen3moe") {
    arch = qwen3_moe_architecture_from_gguf(file);
  } else if (*name == "granite") {
    arch = granite_architecture_from_gguf(file);
  } else if (*name == "granitemoe") {
    arch = granitemoe_architecture_from_gguf(file);
  } else if (*name == "olmo2") {
    arch = olmo2_architecture_from_gguf(file);
  } else if (*name == "gpt-oss") {
    arch = gpt_oss_architecture_from_gguf(file);
  } else {
    throw Error(ErrorCategory::unsupported,
                where + ": general.architecture '" + *name +
                    "' is not supported (gpt2, llama, qwen2, qwen3, gptneox, gemma2, gemma3, qwen2moe, qwen3moe, phi3, "
                    "granite, granitemoe, olmo2, gpt-oss)");
  }
  validate_config(arch.config, where);
  if (auto format = file.get_string("kestrel.quantization.format")) {  // written by kestrel-quantize
    if (*format != "w8a8")
      throw Error(ErrorCategory::unsupported,
                  where + ": kestrel.quantization.format = '" + *format + "' (this Kestrel reads w8a8)");
    arch.checkpoint_quantization = Quantization::w8a8;
    if (auto list = file.get_string("kestrel.quantization.float_activations")) {
      std::vector<std::string> names;
      std::string name;
      for (std::istringstream in(*list); std::getline(in, name, ',');) names.push_back(name);
      arch.w8a8_float_activations = parse_float_activations(names, where + ": kestrel.quantization.float_activations");
    }
  }
  return arch;
}

std::vector<WeightSlot> parse_float_activations(const std::vector<std::string>& names, const std::string& key) {
  std::vector<WeightSlot> slots;
  for (const std::string& n : names) {
    bool found = false;
    for (WeightSlot slot : {WeightSlot::qkv_weight, WeightSlot::out_weight, WeightSlot::up_weight, WeightSlot::down_weight})
      if (n == to_string(slot)) {
        slots.push_back(slot);
        found = true;
      }
    if (!found)
      throw Error(ErrorCategory::format,
                  key + " has '" + n + "' (expected qkv_weight, out_weight, up_weight or down_weight)");
  }
  return slots;
}

}  // namespace kestrel
