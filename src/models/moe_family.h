// models/moe_family.h: what the mixture-of-experts families (Mixtral, Qwen2-MoE) add to a
// Llama-like description: the expert counts, which layers are sparse, and where the router,
// expert and shared-expert weights come from. A sparse layer has no up / down slots; a
// dense layer of the same model keeps them (Qwen2-MoE's mlp_only_layers).
#pragma once

#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "models/architecture.h"

namespace kestrel {

class GgufFile;

// The tensor names of one family's sparse layers. `slot_recipe` gives the router and
// shared-expert slots of a sparse layer (empty for those it lacks), `expert_recipe` the
// expert_up / expert_down slots of one expert.
struct MoeNames {
  std::function<WeightRecipe(WeightSlot slot, int layer)> slot_recipe;
  std::function<WeightRecipe(WeightSlot slot, int layer, int expert)> expert_recipe;
};

// Makes `arch` (a dense Llama-like description, with config.num_experts and the other
// expert fields set) sparse in the layers `sparse` marks, top-k weights renormalized when
// `normalize_top_k`.
void make_mixture_of_experts(Architecture& arch, std::vector<bool> sparse, bool normalize_top_k, MoeNames names);

// llama.cpp's names of the sparse slots: blk.N.ffn_gate_inp (router), the stacked
// blk.N.ffn_{gate,up,down}_exps [E, rows, cols] and, when `shared_expert`, the shared
// expert's blk.N.ffn_{gate,up,down}_shexp and its gate vector blk.N.ffn_gate_inp_shexp [H].
// With `biases` (gpt-oss), the router's blk.N.ffn_gate_inp.bias [E] and the experts' stacked
// blk.N.ffn_{gate,up,down}_exps.bias [E, n] too.
MoeNames gguf_moe_names(bool shared_expert, bool biases = false);

// From "<prefix>.expert_count", "<prefix>.expert_used_count" and the expert FFN size
// ("<prefix>.expert_feed_forward_length", else the dense feed_forward_length, as llama.cpp
// writes Mixtral): sets the config of `arch`; a layer is sparse where the file has its
// router tensor. With `biases` its sparse layers need the router's and experts' biases.
void gguf_mixture_of_experts(const GgufFile& file, const std::string& prefix, Architecture& arch,
                             bool normalize_top_k, bool shared_expert, bool biases = false);

// The Hugging Face layout of the Qwen MoE families (Qwen2-MoE, Qwen3-MoE; models/qwen2_moe.cc):
// the router model.layers.N.mlp.gate, the experts mlp.experts.E.{gate,up,down}_proj and,
// when `shared_expert`, mlp.shared_expert.* behind mlp.shared_expert_gate.
MoeNames qwen_moe_hf_names(bool shared_expert);
// Which layers of a Qwen MoE config are sparse: layer l is when the model has experts, l is
// not in mlp_only_layers and (l + 1) % decoder_sparse_step == 0; Error(format) naming a bad
// key.
std::vector<bool> qwen_moe_sparse_layers(const nlohmann::json& config, const ModelConfig& c, const std::string& where);

// Whether the experts of `arch` have biases (gpt-oss).
bool has_expert_biases(const Architecture& arch);
// Throws Error(unsupported) naming `where` when `arch`'s experts have biases and tp > 1: each
// rank's MoE output is a partial sum over its expert columns, and an expert's down bias
// would be added by every rank.
void check_expert_biases_unsplit(const Architecture& arch, int tp, const std::string& where);

// Checks the expert fields of a sparse config; throws Error(format) naming `where` and the field.
void validate_moe_config(const ModelConfig& config, const std::string& where);

}  // namespace kestrel
