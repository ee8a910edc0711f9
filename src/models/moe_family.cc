#include "models/moe_family.h"

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/gguf_metadata.h"

namespace kestrel {

namespace {

// The router, expert and shared-expert slots (the norms listed after them in WeightSlot are not).
bool is_moe_slot(WeightSlot slot) {
  return (slot >= WeightSlot::router_weight && slot <= WeightSlot::shared_gate_weight) ||
         slot == WeightSlot::router_bias;
}

bool is_dense_ffn_slot(WeightSlot slot) {
  return slot == WeightSlot::up_weight || slot == WeightSlot::up_bias || slot == WeightSlot::down_weight ||
         slot == WeightSlot::down_bias;
}

}  // namespace

void make_mixture_of_experts(Architecture& arch, std::vector<bool> sparse, bool normalize_top_k, MoeNames names) {
  arch.kinds.sparse_layers = sparse;
  arch.kinds.normalize_top_k = normalize_top_k;
  auto dense = arch.recipe;
  arch.recipe = [dense, sparse = std::move(sparse), slots = names.slot_recipe](WeightSlot slot, int layer) {
    const bool is_sparse = layer >= 0 && static_cast<size_t>(layer) < sparse.size() && sparse[layer];
    if (is_moe_slot(slot)) return is_sparse ? slots(slot, layer) : WeightRecipe{};
    if (is_sparse && is_dense_ffn_slot(slot)) return WeightRecipe{};
    return dense(slot, layer);
  };
  arch.expert_recipe = std::move(names.expert_recipe);
}

MoeNames gguf_moe_names(bool shared_expert, bool biases) {
  MoeNames names;
  names.slot_recipe = [shared_expert, biases](WeightSlot slot, int layer) -> WeightRecipe {
    const std::string b = "blk." + std::to_string(layer) + ".";
    if (slot == WeightSlot::router_weight) return {{b + "ffn_gate_inp.weight"}};
    if (slot == WeightSlot::router_bias) return biases ? WeightRecipe{{b + "ffn_gate_inp.bias"}} : WeightRecipe{};
    if (!shared_expert) return {};
    switch (slot) {
      case WeightSlot::shared_up_weight: return {{b + "ffn_gate_shexp.weight", b + "ffn_up_shexp.weight"}};
      case WeightSlot::shared_down_weight: return {{b + "ffn_down_shexp.weight"}};
      case WeightSlot::shared_gate_weight: return {{b + "ffn_gate_inp_shexp.weight#row"}};
      default: return {};
    }
  };
  names.expert_recipe = [biases](WeightSlot slot, int layer, int expert) -> WeightRecipe {
    const std::string b = "blk." + std::to_string(layer) + ".";
    std::string e = "#";  // appended: GCC 12 at -O3 warns (-Wrestrict, a false positive) on "#" + ...
    e += std::to_string(expert);
    switch (slot) {
      case WeightSlot::expert_up_weight: return {{b + "ffn_gate_exps.weight" + e, b + "ffn_up_exps.weight" + e}};
      case WeightSlot::expert_down_weight: return {{b + "ffn_down_exps.weight" + e}};
      case WeightSlot::expert_up_bias:
        if (!biases) return {};
        return {{b + "ffn_gate_exps.bias" + e, b + "ffn_up_exps.bias" + e}};
      case WeightSlot::expert_down_bias:
        if (!biases) return {};
        return {{b + "ffn_down_exps.bias" + e}};
      default: return {};
    }
  };
  return names;
}

void gguf_mixture_of_experts(const GgufFile& file, const std::string& prefix, Architecture& arch,
                             bool normalize_top_k, bool shared_expert, bool biases) {
  ModelConfig& c = arch.config;
  c.num_experts = gguf_required_dim(file, prefix + ".expert_count");
  c.experts_per_token = gguf_required_dim(file, prefix + ".expert_used_count");
  c.expert_ffn_size = gguf_dim(file, prefix + ".expert_feed_forward_length").value_or(c.ffn_size);
  if (shared_expert)
    c.shared_expert_ffn_size = gguf_required_dim(file, prefix + ".expert_shared_feed_forward_length");
  std::vector<bool> sparse(static_cast<size_t>(std::max(c.num_layers, 0)));
  for (size_t l = 0; l < sparse.size(); ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    sparse[l] = file.find_tensor(b + "ffn_gate_inp.weight") != nullptr;
    // llama-cpp-python 0.3.16's converter names Mixtral's router ffn_gate (llama.cpp then
    // refuses the file too): name the missing router rather than the dense FFN.
    if (!sparse[l] && file.find_tensor(b + "ffn_gate_exps.weight"))
      throw Error(ErrorCategory::format, file.path().string() + ": tensor '" + b +
                                             "ffn_gate_inp.weight' (the router of the layer's experts) is missing");
  }
  make_mixture_of_experts(arch, std::move(sparse), normalize_top_k, gguf_moe_names(shared_expert, biases));
}

bool has_expert_biases(const Architecture& arch) {
  if (!arch.expert_recipe) return false;
  for (size_t l = 0; l < arch.kinds.sparse_layers.size(); ++l)
    if (arch.kinds.sparse_layers[l])
      return !arch.expert_recipe(WeightSlot::expert_up_bias, static_cast<int>(l), 0).sources.empty() ||
             !arch.expert_recipe(WeightSlot::expert_down_bias, static_cast<int>(l), 0).sources.empty();
  return false;
}

void check_expert_biases_unsplit(const Architecture& arch, int tp, const std::string& where) {
  if (tp > 1 && has_expert_biases(arch))
    throw Error(ErrorCategory::unsupported, where + ": " + arch.name +
                                                "'s experts have biases, which tensor parallelism does not split yet "
                                                "(tp = " + std::to_string(tp) + "; pipeline parallelism works)");
}

void validate_moe_config(const ModelConfig& c, const std::string& where) {
  auto fail = [&](const std::string& message) { throw Error(ErrorCategory::format, where + ": " + message); };
  if (c.num_experts > 4096) fail("num_experts = " + std::to_string(c.num_experts) + " is out of range (at most 4096)");
  if (c.experts_per_token < 1 || c.experts_per_token > c.num_experts)
    fail("experts_per_token = " + std::to_string(c.experts_per_token) + " must be in [1, num_experts = " +
         std::to_string(c.num_experts) + "]");
  if (c.expert_ffn_size <= 0 || c.expert_ffn_size > (1 << 24))
    fail("expert_ffn_size = " + std::to_string(c.expert_ffn_size) + " is out of range");
  if (c.shared_expert_ffn_size < 0 || c.shared_expert_ffn_size > (1 << 24))
    fail("shared_expert_ffn_size = " + std::to_string(c.shared_expert_ffn_size) + " is out of range");
}

}  // namespace kestrel
