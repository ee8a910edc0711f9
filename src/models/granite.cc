// Granite 3.x (IBM's dense granite-3.x-*-instruct): a Llama (RMSNorm, rotary, SwiGLU, GQA,
// attention_bias on q, k, v and o, mlp_bias, rope scalings as Llama's) with four scalars:
// the embedding times embedding_multiplier, each block's output (its bias included) times
// residual_multiplier before the residual add, attention_multiplier as the softmax scale
// (in place of head_dim^-1/2) and the logits divided by logits_scaling. llama.cpp's
// converter writes it as "granite" (Q / K rows permuted for adjacent-pair rotary, as for
// Llama) with the scalars as granite.embedding_scale, .residual_scale, .attention.scale and
// .logit_scale.
#include <cmath>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/llama_like.h"

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

// llama.cpp reads the four keys as required; absent here, each takes llama.cpp's meaning of
// 0 (no scaling; the attention scale head_dim^-1/2). granite.rope.scaling.finetuned false
// (llama.cpp's switch for a model without rotary positions) is refused.
Architecture granite_architecture_from_gguf(const GgufFile& file) {
  const std::string where = file.path().string();
  if (file.get_bool("granite.rope.scaling.finetuned") == false)
    throw Error(ErrorCategory::unsupported,
                where + ": granite.rope.scaling.finetuned = false (no rotary positions) is not supported");
  Architecture arch = llama_like_from_gguf(file, "granite", RotaryStyle::gptj);
  apply_gguf_llama_rope_scaling(file, "granite", arch);
  // `none` where the key is absent or 0.
  auto key = [&](const char* name, float none, bool positive) {
    const std::optional<double> v = file.get_float(name);
    return !v || *v == 0.0 ? none : multiplier(v, 1.0, name, where, positive);
  };
  return with_multipliers(std::move(arch), key("granite.embedding_scale", 1.0f, false),
                          key("granite.residual_scale", 1.0f, false), key("granite.attention.scale", 0.0f, true),
                          key("granite.logit_scale", 1.0f, true));
}

}  // namespace kestrel
