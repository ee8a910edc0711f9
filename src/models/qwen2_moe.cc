// Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): Qwen2 (q, k, v biases) whose sparse layers route
// each token to num_experts_per_tok of num_experts SwiGLU experts (softmax over all of
// them, the top-k weights renormalized only with norm_topk_prob) and add a shared expert
// scaled by sigmoid(shared_expert_gate . x). Layer l is sparse when it is not in
// mlp_only_layers and (l + 1) % decoder_sparse_step == 0; the others keep a dense FFN of
// intermediate_size. llama.cpp ("qwen2moe") has experts in every layer, a shared expert,
// and never renormalizes.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/llama_like.h"
#include "models/moe_family.h"

namespace kestrel {

MoeNames qwen_moe_hf_names(bool shared_expert) {
  MoeNames names;
  names.slot_recipe = [shared_expert](WeightSlot slot, int layer) -> WeightRecipe {
    const std::string m = "model.layers." + std::to_string(layer) + ".mlp.", s = m + "shared_expert.";
    if (slot == WeightSlot::router_weight) return {{m + "gate.weight"}};
    if (!shared_expert) return {};
    switch (slot) {
      case WeightSlot::shared_up_weight: return {{s + "gate_proj.weight", s + "up_proj.weight"}};
      case WeightSlot::shared_down_weight: return {{s + "down_proj.weight"}};
      case WeightSlot::shared_gate_weight: return {{m + "shared_expert_gate.weight"}};
      default: return {};
    }
  };
  names.expert_recipe = [](WeightSlot slot, int layer, int expert) -> WeightRecipe {
    const std::string e = "model.layers." + std::to_string(layer) + ".mlp.experts." + std::to_string(expert) + ".";
    if (slot == WeightSlot::expert_up_weight) return {{e + "gate_proj.weight", e + "up_proj.weight"}};
    if (slot == WeightSlot::expert_down_weight) return {{e + "down_proj.weight"}};
    return {};
  };
  return names;
}

std::vector<bool> qwen_moe_sparse_layers(const nlohmann::json& json, const ModelConfig& c, const std::string& where) {
  const int64_t step = json_int(json, {"decoder_sparse_step"}, where).value_or(1);
  if (step < 1) throw Error(ErrorCategory::format, where + ": decoder_sparse_step = " + std::to_string(step) + " (must be >= 1)");
  std::vector<bool> sparse(static_cast<size_t>(std::max(c.num_layers, 0)));
  for (size_t l = 0; l < sparse.size(); ++l) sparse[l] = c.num_experts > 0 && (l + 1) % step == 0;
  if (auto it = json.find("mlp_only_layers"); it != json.end() && !it->is_null()) {
    if (!it->is_array()) throw Error(ErrorCategory::format, where + ": mlp_only_layers must be a list of layer indices");
    for (const auto& layer : *it) {
      if (!layer.is_number_integer() || layer.get<int64_t>() < 0 || layer.get<int64_t>() >= c.num_layers)
        throw Error(ErrorCategory::format, where + ": mlp_only_layers holds " + layer.dump() +
                                               ", not a layer index in [0, num_hidden_layers)");
      sparse[layer.get<size_t>()] = false;
    }
  }
  return sparse;
}

// transformers 4.44.2's Qwen2MoeConfig: Qwen2's keys (use_sliding_window refused, as there)
// plus decoder_sparse_step, moe_intermediate_size, shared_expert_intermediate_size,
// num_experts_per_tok, num_experts, norm_topk_prob and mlp_only_layers, read here, and
// output_router_logits / router_aux_loss_coef, which only feed the training loss.
Architecture qwen2_moe_architecture(const nlohmann::json& json, const std::string& where) {
  if (json_bool(json, "use_sliding_window", where).value_or(false))
    throw Error(ErrorCategory::unsupported,
                where + ": use_sliding_window = true: sliding-window attention is not supported");
  if (auto it = json.find("rope_scaling"); it != json.end() && !it->is_null())
    throw Error(ErrorCategory::unsupported, where + ": rope_scaling is not supported for qwen2_moe");
  Architecture arch = llama_like_from_hf(json, where, "qwen2_moe", {.qkv = true});
  ModelConfig& c = arch.config;
  // Defaults as Qwen2MoeConfig's (Qwen1.5-MoE-A2.7B).
  c.num_experts = static_cast<int>(json_int(json, {"num_experts"}, where).value_or(60));
  c.experts_per_token = static_cast<int>(json_int(json, {"num_experts_per_tok"}, where).value_or(4));
  c.expert_ffn_size = static_cast<int>(json_int(json, {"moe_intermediate_size"}, where).value_or(1408));
  c.shared_expert_ffn_size =
      static_cast<int>(json_int(json, {"shared_expert_intermediate_size"}, where).value_or(5632));
  if (c.shared_expert_ffn_size <= 0)
    throw Error(ErrorCategory::format, where + ": shared_expert_intermediate_size must be positive");
  std::vector<bool> sparse = qwen_moe_sparse_layers(json, c, where);
  if (std::none_of(sparse.begin(), sparse.end(), [](bool s) { return s; })) {
    c.num_experts = c.experts_per_token = c.expert_ffn_size = c.shared_expert_ffn_size = 0;  // all dense
    return arch;
  }
  make_mixture_of_experts(arch, std::move(sparse), json_bool(json, "norm_topk_prob", where).value_or(false),
                          qwen_moe_hf_names(/*shared_expert=*/true));
  return arch;
}

Architecture qwen2_moe_architecture_from_gguf(const GgufFile& file) {
  const std::string where = file.path().string();
  if (auto type = file.get_string("qwen2moe.rope.scaling.type"); type && *type != "none")
    throw Error(ErrorCategory::unsupported,
                where + ": qwen2moe.rope.scaling.type '" + *type + "' is not supported (none)");
  Architecture arch = llama_like_from_gguf(file, "qwen2moe", RotaryStyle::neox);
  arch.name = arch.config.architecture = "qwen2_moe";
  gguf_mixture_of_experts(file, "qwen2moe", arch, /*normalize_top_k=*/false, /*shared_expert=*/true);
  return arch;
}

}  // namespace kestrel
