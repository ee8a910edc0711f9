// Qwen3 (dense): a Llama-like model (Qwen2's layout without its q, k, v biases unless
// attention_bias) whose q and k heads are RMSNormed over head_dim (q_norm / k_norm) before
// rotary. head_dim is its own key (128 when absent, transformers' default, not hidden /
// heads). llama.cpp's converter keeps Hugging Face's Q / K row order (NeoX pairs), as for Qwen2.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/llama_like.h"
#include "models/rope.h"

namespace kestrel {

Architecture with_qk_norm(Architecture arch, const std::string& layer_prefix, const std::string& q_norm,
                          const std::string& k_norm) {
  arch.kinds.qk_norm = true;
  arch.recipe = [base = arch.recipe, layer_prefix, q_norm, k_norm](WeightSlot slot, int layer) {
    const std::string l = layer_prefix + std::to_string(layer) + ".";
    if (slot == WeightSlot::q_norm_weight) return WeightRecipe{{l + q_norm}};
    if (slot == WeightSlot::k_norm_weight) return WeightRecipe{{l + k_norm}};
    return base(slot, layer);
  };
  return arch;
}

// transformers 4.51.3's Qwen3Config: Llama's keys (attention_bias covers q, k, v and o;
// rope_scaling as Llama's) plus head_dim, use_sliding_window / sliding_window /
// max_window_layers (refused when the window is on) and the q / k norms.
Architecture qwen3_architecture(const nlohmann::json& config, const std::string& where) {
  if (json_bool(config, "use_sliding_window", where).value_or(false))
    throw Error(ErrorCategory::unsupported,
                where + ": use_sliding_window = true: Qwen3's sliding-window layers are not supported");
  nlohmann::json json = config;
  if (!json.contains("head_dim") || json["head_dim"].is_null()) json["head_dim"] = 128;
  const bool bias = json_bool(json, "attention_bias", where).value_or(false);
  Architecture arch = llama_like_from_hf(json, where, "qwen3", {.qkv = bias, .out = bias});
  if (auto it = json.find("rope_scaling"); it != json.end())
    apply_hf_rope_scaling(*it, where, arch.kinds.rotary_inv_freq);
  return with_qk_norm(std::move(arch), "model.layers.", "self_attn.q_norm.weight", "self_attn.k_norm.weight");
}

Architecture qwen3_like_from_gguf(const GgufFile& file, const std::string& prefix) {
  const std::string where = file.path().string();
  if (auto type = file.get_string(prefix + ".rope.scaling.type"); type && *type != "none")
    throw Error(ErrorCategory::unsupported,
                where + ": " + prefix + ".rope.scaling.type '" + *type + "' is not supported (none)");
  return with_qk_norm(llama_like_from_gguf(file, prefix, RotaryStyle::neox), "blk.", "attn_q_norm.weight",
                      "attn_k_norm.weight");
}

Architecture qwen3_architecture_from_gguf(const GgufFile& file) { return qwen3_like_from_gguf(file, "qwen3"); }

}  // namespace kestrel
