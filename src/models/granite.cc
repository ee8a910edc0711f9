// Granite 3.x (IBM's dense granite-3.x-*-instruct): a Llama (RMSNorm, rotary, SwiGLU, GQA,
// attention_bias on q, k, v and o, mlp_bias, rope scalings as Llama's) with four scalars:
// the embedding times embedding_multiplier, each block's output (its bias included) times
// residual_multiplier before the residual add, attention_multiplier as the softmax scale
// (in place of head_dim^-1/2) and the logits divided by logits_scaling. llama.cpp's
// converter writes it as "granite" (Q / K rows permuted for adjacent-pair rotary, as for
// Llama) with the scalars as granite.embedding_scale, .residual_scale, .attention.scale and
// .logit_scale. GraniteMoE (Granite 3.x MoE, "granitemoe") has the same layers with a
// mixture of experts in every one: top num_experts_per_tok of num_local_experts by router
// logit, their weights a softmax over those k (the top-k of a softmax renormalized), each
// expert a SwiGLU of intermediate_size stored stacked ([E, 2F, H] input_linear rows
// [gate | up], [E, H, F] output_linear).
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/llama_like.h"
#include "models/moe_family.h"

namespace kestrel {

namespace {

// A finite multiplier; positive where `positive` (a scale or divisor); Error(format) naming `key`.
float multiplier(std::optional<double> value, double fallback, const std::string& key, const std::string& where,
                 bool positive) {
  const double v = value.value_or(fallback);
  if (!std::isfinite(v) || (positive ? !(v > 0) : v == 0))
    throw Error(ErrorCategory::format, where + ": " + key + " = " + std::to_string(v) + " must be " +
                                           (positive ? "positive" : "finite and nonzero"));
  return static_cast<float>(v);
}

// The multipliers set, the biases of the block outputs (o_proj, down_proj) come scaled by
// residual_multiplier from the loader, as the layers scale the rest of the block output.
Architecture with_multipliers(Architecture arch, float embedding, float residual, float attention, float logits) {
  LayerKinds& k = arch.kinds;
  k.embedding_multiplier = embedding;
  k.residual_multiplier = residual;
  k.attention_multiplier = attention;
  k.logits_scaling = logits;
  if (residual != 1.0f)
    arch.recipe = [base = arch.recipe, residual](WeightSlot slot, int layer) {
      WeightRecipe r = base(slot, layer);
      if (slot == WeightSlot::out_bias || slot == WeightSlot::down_bias) r.scale = residual;
      return r;
    };
  return arch;
}

// The four multipliers from GGUF metadata under `prefix` (granite, granitemoe). llama.cpp
// reads them as required; absent here, each takes llama.cpp's meaning of 0 (no scaling; the
// attention scale head_dim^-1/2). <prefix>.rope.scaling.finetuned false (llama.cpp's switch
// for a model without rotary positions) is refused.
Architecture granite_like_from_gguf(const GgufFile& file, const std::string& prefix) {
  const std::string where = file.path().string(), p = prefix + ".";
  if (file.get_bool(p + "rope.scaling.finetuned") == false)
    throw Error(ErrorCategory::unsupported,
                where + ": " + p + "rope.scaling.finetuned = false (no rotary positions) is not supported");
  Architecture arch = llama_like_from_gguf(file, prefix, RotaryStyle::gptj);
  apply_gguf_llama_rope_scaling(file, prefix, arch);
  // `none` where the key is absent or 0.
  auto key = [&](const std::string& name, float none, bool positive) {
    const std::optional<double> v = file.get_float(name);
    return !v || *v == 0.0 ? none : multiplier(v, 1.0, name, where, positive);
  };
  return with_multipliers(std::move(arch), key(p + "embedding_scale", 1.0f, false), key(p + "residual_scale", 1.0f, false),
                          key(p + "attention.scale", 0.0f, true), key(p + "logit_scale", 1.0f, true));
}

}  // namespace

// transformers 4.51.3's GraniteConfig: LlamaConfig's keys (read by llama_architecture;
// head_dim, when present, is honoured as transformers' getattr does) plus
// embedding_multiplier, residual_multiplier, attention_multiplier and logits_scaling, each
// 1.0 by default (attention_multiplier 1.0 means a softmax scale of 1, not head_dim^-1/2).
Architecture granite_architecture(const nlohmann::json& json, const std::string& where) {
  Architecture arch = llama_architecture(json, where);
  arch.name = arch.config.architecture = "granite";
  auto key = [&](const char* name, bool positive) {
    return multiplier(json_number(json, {name}, where), 1.0, name, where, positive);
  };
  return with_multipliers(std::move(arch), key("embedding_multiplier", false), key("residual_multiplier", false),
                          key("attention_multiplier", true), key("logits_scaling", true));
}

Architecture granite_architecture_from_gguf(const GgufFile& file) { return granite_like_from_gguf(file, "granite"); }

// transformers 4.51.3's GraniteMoeConfig: GraniteConfig's keys except mlp_bias (its experts
// have no biases) and head_dim (GraniteMoeAttention always uses hidden_size /
// num_attention_heads), both ignored as transformers ignores them, plus num_local_experts,
// num_experts_per_tok (read here) and output_router_logits / router_aux_loss_coef (the
// training loss only).
Architecture granitemoe_architecture(const nlohmann::json& config, const std::string& where) {
  nlohmann::json json = config;
  json.erase("head_dim");
  json.erase("mlp_bias");
  Architecture arch = granite_architecture(json, where);
  arch.name = arch.config.architecture = "granitemoe";
  ModelConfig& c = arch.config;
  c.num_experts = static_cast<int>(json_int(json, {"num_local_experts"}, where).value_or(8));
  c.experts_per_token = static_cast<int>(json_int(json, {"num_experts_per_tok"}, where).value_or(2));
  c.expert_ffn_size = c.ffn_size;  // intermediate_size is each expert's
  MoeNames names;
  names.slot_recipe = [](WeightSlot slot, int layer) -> WeightRecipe {
    if (slot != WeightSlot::router_weight) return {};
    return {{"model.layers." + std::to_string(layer) + ".block_sparse_moe.router.layer.weight"}};
  };
  // Row block e of the stacked [E, rows, cols] tensors (models/expert_source.h).
  names.expert_recipe = [](WeightSlot slot, int layer, int expert) -> WeightRecipe {
    const std::string m = "model.layers." + std::to_string(layer) + ".block_sparse_moe.", e = ".weight#" + std::to_string(expert);
    if (slot == WeightSlot::expert_up_weight) return {{m + "input_linear" + e}};
    if (slot == WeightSlot::expert_down_weight) return {{m + "output_linear" + e}};
    return {};
  };
  make_mixture_of_experts(arch, std::vector<bool>(static_cast<size_t>(std::max(c.num_layers, 0)), true),
                          /*normalize_top_k=*/true, std::move(names));
  return arch;
}

// llama.cpp's granitemoe: experts as stacked ffn_{gate,up,down}_exps. A shared expert
// (GraniteMoeShared's expert_shared_feed_forward_length) is refused by name.
Architecture granitemoe_architecture_from_gguf(const GgufFile& file) {
  if (file.get_float("granitemoe.expert_shared_feed_forward_length"))
    throw Error(ErrorCategory::unsupported, file.path().string() +
                                                ": granitemoe.expert_shared_feed_forward_length: GraniteMoeShared's "
                                                "shared expert is not supported");
  Architecture arch = granite_like_from_gguf(file, "granitemoe");
  gguf_mixture_of_experts(file, "granitemoe", arch, /*normalize_top_k=*/true, /*shared_expert=*/false);
  return arch;
}

}  // namespace kestrel
