// Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (q / k head RMSNorms before
// rotary, head_dim its own key, attention_bias) over Qwen2-MoE's sparse layers without the
// shared expert: softmax over num_experts, the top num_experts_per_tok, renormalized to sum
// 1 with norm_topk_prob (every released checkpoint sets it). Layer l is sparse when it is
// not in mlp_only_layers and (l + 1) % decoder_sparse_step == 0; the others keep a dense
// FFN of intermediate_size. llama.cpp ("qwen3moe") has experts in every layer and always
// renormalizes the top-k weights.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/llama_like.h"
#include "models/moe_family.h"

namespace kestrel {

// transformers 4.51.3's Qwen3MoeConfig: Qwen3Config's keys (read by qwen3_architecture:
// head_dim, attention_bias, rope_scaling, use_sliding_window refused; sliding_window and
// max_window_layers only matter with it) plus decoder_sparse_step, moe_intermediate_size,
// num_experts_per_tok, num_experts, norm_topk_prob and mlp_only_layers, read here, and
// output_router_logits / router_aux_loss_coef, which only feed the training loss.
Architecture qwen3_moe_architecture(const nlohmann::json& json, const std::string& where) {
  Architecture arch = qwen3_architecture(json, where);
  arch.name = arch.config.architecture = "qwen3_moe";
  ModelConfig& c = arch.config;
  // Defaults as Qwen3MoeConfig's.
  c.num_experts = static_cast<int>(json_int(json, {"num_experts"}, where).value_or(128));
  c.experts_per_token = static_cast<int>(json_int(json, {"num_experts_per_tok"}, where).value_or(8));
  c.expert_ffn_size = static_cast<int>(json_int(json, {"moe_intermediate_size"}, where).value_or(768));
  std::vector<bool> sparse = qwen_moe_sparse_layers(json, c, where);
  if (std::none_of(sparse.begin(), sparse.end(), [](bool s) { return s; })) {
    c.num_experts = c.experts_per_token = c.expert_ffn_size = 0;  // all dense
    return arch;
  }
  make_mixture_of_experts(arch, std::move(sparse), json_bool(json, "norm_topk_prob", where).value_or(false),
                          qwen_moe_hf_names(/*shared_expert=*/false));
  return arch;
}

Architecture qwen3_moe_architecture_from_gguf(const GgufFile& file) {
  Architecture arch = qwen3_like_from_gguf(file, "qwen3moe");
  arch.name = arch.config.architecture = "qwen3_moe";
  gguf_mixture_of_experts(file, "qwen3moe", arch, /*normalize_top_k=*/true, /*shared_expert=*/false);
  return arch;
}

}  // namespace kestrel
