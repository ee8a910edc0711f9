// Mixtral: a Llama-like model (no biases) whose FFN is a mixture of experts in every layer:
// a router [E, H], softmax over the E experts, the top num_experts_per_tok of them
// renormalized to sum 1, each a SwiGLU FFN (w1 gate, w3 up, w2 down). llama.cpp's converter
// writes it as a GGUF "llama" with llama.expert_count (llama.cc reads that side).
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "models/config_json.h"
#include "models/llama_like.h"
#include "models/moe_family.h"

namespace kestrel {

namespace {

MoeNames hf_names() {
  MoeNames names;
  names.slot_recipe = [](WeightSlot slot, int layer) -> WeightRecipe {
    if (slot != WeightSlot::router_weight) return {};
    return {{"model.layers." + std::to_string(layer) + ".block_sparse_moe.gate.weight"}};
  };
  names.expert_recipe = [](WeightSlot slot, int layer, int expert) -> WeightRecipe {
    const std::string e =
        "model.layers." + std::to_string(layer) + ".block_sparse_moe.experts." + std::to_string(expert) + ".";
    if (slot == WeightSlot::expert_up_weight) return {{e + "w1.weight", e + "w3.weight"}};
    if (slot == WeightSlot::expert_down_weight) return {{e + "w2.weight"}};
    return {};
  };
  return names;
}

}  // namespace

// transformers 4.44.2's MixtralConfig: Mistral's keys plus num_local_experts,
// num_experts_per_tok, and three that do not change inference: output_router_logits (adds
// the router logits to the outputs, for the training loss), router_aux_loss_coef (that
// loss's weight) and router_jitter_noise (multiplicative noise on the router input applied
// only in training mode). sliding_window must be null: transformers 4.44.2 applies it only
// under flash attention, so its eager and sdpa results would not be the model's.
Architecture mixtral_architecture(const nlohmann::json& json, const std::string& where) {
  for (const char* key : {"rope_scaling", "attention_bias", "mlp_bias", "sliding_window"})
    if (auto it = json.find(key); it != json.end() && !it->is_null() && *it != false)
      throw Error(ErrorCategory::unsupported, where + ": " + key + " is not supported for mixtral");
  Architecture arch = llama_like_from_hf(json, where, "mixtral", {});
  ModelConfig& c = arch.config;
  c.num_experts = static_cast<int>(json_required_int(json, {"num_local_experts"}, where));
  c.experts_per_token = static_cast<int>(json_int(json, {"num_experts_per_tok"}, where).value_or(2));
  c.expert_ffn_size = c.ffn_size;  // intermediate_size is each expert's
  make_mixture_of_experts(arch, std::vector<bool>(static_cast<size_t>(std::max(c.num_layers, 0)), true),
                          /*normalize_top_k=*/true, hf_names());
  return arch;
}

}  // namespace kestrel
