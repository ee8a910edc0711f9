// gpt-oss (openai/gpt-oss-20b, gpt-oss-120b): a Llama-like attention (RMSNorm pre-norms,
// GQA with biases on q, k, v and o, head_dim its own key, NeoX rotary pairs: transformers'
// _apply_rotary_emb rotates the first half of a head against the second) with three
// additions, over a mixture of experts in every layer:
//   - attention sinks: each query head has a learned logit `sinks` that joins the softmax
//     denominator without a value row (AttentionParams::sinks);
//   - layer_types alternating "sliding_attention" (the last sliding_window positions) and
//     "full_attention", each layer its own window (LayerKinds::layer_attention);
//   - YaRN rotary (rope_scaling type yarn, its ramp not truncated to whole pairs).
// The router is a linear layer with a bias; its top num_experts_per_tok logits are
// softmaxed among themselves (the top-k of a softmax renormalized). Each expert has biases
// and gpt-oss's clamped SwiGLU, (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha g) with
// g = min(gate, limit) (Backend::clamped_swiglu). The checkpoint stacks the experts as
// [E, H, 2F] gate_up_proj (stored [in, out], gate and up in alternate columns) and
// [E, F, H] down_proj, with [E, 2F] / [E, H] biases.
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/gguf_metadata.h"
#include "models/llama_like.h"
#include "models/moe_family.h"
#include "models/rope.h"
#include "models/rope_scaling.h"

namespace kestrel {

namespace {

// Hugging Face names of the sparse slots and the sinks, over the Llama-like ones. With
// `mxfp4` the expert weights are transformers' MXFP4 *_blocks / *_scales, which an
// Mxfp4Source presents per expert as [out, in] blocks, gate_up_proj's rows already
// gathered into [gate | up].
MoeNames gpt_oss_hf_names(bool mxfp4) {
  MoeNames names;
  names.slot_recipe = [](WeightSlot slot, int layer) -> WeightRecipe {
    const std::string m = "model.layers." + std::to_string(layer) + ".mlp.router.";
    if (slot == WeightSlot::router_weight) return {{m + "weight"}};
    if (slot == WeightSlot::router_bias) return {{m + "bias"}};
    return {};
  };
  names.expert_recipe = [mxfp4](WeightSlot slot, int layer, int expert) -> WeightRecipe {
    const std::string m = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    // Appended, not "#" + to_string: GCC 12 at -O3 warns (-Wrestrict, a false positive) on the latter.
    std::string e = "#";
    e += std::to_string(expert);
    switch (slot) {
      // Gate and up alternate along the output columns: rows 2i / 2i + 1 of the canonical
      // weight are gate / up column i (interleaved_head_rows 1 in 2 parts).
      case WeightSlot::expert_up_weight:
        if (mxfp4) return {{m + "gate_up_proj" + e}};
        return {.sources = {m + "gate_up_proj" + e}, .transposed = true, .interleaved_head_rows = 1, .interleaved_parts = 2};
      case WeightSlot::expert_up_bias:
        return {.sources = {m + "gate_up_proj_bias" + e}, .interleaved_head_rows = 1, .interleaved_parts = 2};
      case WeightSlot::expert_down_weight:
        if (mxfp4) return {{m + "down_proj" + e}};
        return {.sources = {m + "down_proj" + e}, .transposed = true};
      case WeightSlot::expert_down_bias: return {{m + "down_proj_bias" + e}};
      default: return {};
    }
  };
  return names;
}

// rope_scaling of a GptOssConfig: yarn, as transformers 4.57.6's _compute_yarn_parameters
// (the ramp measured over original_max_position_embeddings, else max_position_embeddings;
// the attention factor 0.1 ln(factor) + 1 unless given), or none. mscale / mscale_all_dim
// (DeepSeek's) are refused by name.
void gpt_oss_rope_scaling(const nlohmann::json& json, const std::string& where, Architecture& arch) {
  // Absent: GptOssConfig's default (the released models' YaRN); null: no scaling.
  static const nlohmann::json kDefault = {{"rope_type", "yarn"}, {"factor", 32.0}, {"beta_fast", 32.0},
                                          {"beta_slow", 1.0}, {"truncate", false},
                                          {"original_max_position_embeddings", 4096}};
  const auto it = json.find("rope_scaling");
  if (it != json.end() && it->is_null()) return;
  const nlohmann::json& s = it == json.end() ? kDefault : *it;
  const std::string what = where + ": rope_scaling";
  if (!s.is_object()) throw Error(ErrorCategory::format, what + " is not an object");
  auto type = json_string(s, "rope_type", what);
  if (!type) type = json_string(s, "type", what);
  if (type && *type == "default") return;
  if (type != "yarn")
    throw Error(ErrorCategory::unsupported, what + " type '" + type.value_or("") + "' is not supported (yarn, default)");
  for (const char* key : {"mscale", "mscale_all_dim"})
    if (s.contains(key) && !s[key].is_null()) throw Error(ErrorCategory::unsupported, what + "." + key + " is not supported");
  ModelConfig& c = arch.config;
  auto positive = [&](const char* key, std::optional<double> fallback) {
    const std::optional<double> v = json_number(s, {key}, what);
    if (!v && !fallback) throw Error(ErrorCategory::format, what + "." + key + " is missing");
    const double value = v.value_or(fallback.value_or(0.0));
    if (!(value > 0) || !std::isfinite(value))
      throw Error(ErrorCategory::format, what + "." + key + " = " + std::to_string(value) + " must be positive");
    return value;
  };
  const double factor = positive("factor", std::nullopt);
  // `or` in transformers: 0 falls back on max_position_embeddings too.
  const int64_t given = json_int(s, {"original_max_position_embeddings"}, what).value_or(0);
  const int64_t original = given != 0 ? given : c.max_positions;
  if (original <= 0 || original > (1 << 30))
    throw Error(ErrorCategory::format, what + ".original_max_position_embeddings = " + std::to_string(original) +
                                           " is out of range");
  const double attention = positive("attention_factor", factor <= 1.0 ? 1.0 : 0.1 * std::log(factor) + 1.0);
  // `or` in transformers: a 0 or null beta falls back on the default too.
  auto beta = [&](const char* key, double fallback) {
    const std::optional<double> v = json_number(s, {key}, what);
    return v && *v != 0 ? positive(key, fallback) : fallback;
  };
  const bool truncate = json_bool(s, "truncate", what).value_or(true);
  apply_yarn(json_number(json, {"rope_theta"}, where).value_or(150000.0), factor, static_cast<int>(original),
             beta("beta_fast", 32.0), beta("beta_slow", 1.0), attention, arch.kinds, truncate);
}

// Layer l sees the last `window` positions where sliding[l] (0: all of them), else all.
void set_layer_windows(const std::vector<bool>& sliding, int window, Architecture& arch) {
  arch.kinds.layer_attention.assign(sliding.size(), LayerAttention{});
  for (size_t l = 0; l < sliding.size(); ++l)
    if (sliding[l]) arch.kinds.layer_attention[l].sliding_window = window;
}

// The default layer_types: sliding, full, sliding, ... (even layers, 0-based, sliding).
std::vector<bool> alternating_sliding_layers(int layers) {
  std::vector<bool> sliding(static_cast<size_t>(std::max(layers, 0)));
  for (size_t l = 0; l < sliding.size(); ++l) sliding[l] = l % 2 == 0;
  return sliding;
}

// layer_types (default: sliding, full, sliding, ...) and sliding_window into per-layer windows.
void gpt_oss_layer_windows(const nlohmann::json& json, const std::string& where, Architecture& arch) {
  const int layers = arch.config.num_layers;
  int window = 128;
  if (auto w = json.find("sliding_window"); w != json.end() && !w->is_null()) {
    const auto v = json_int(json, {"sliding_window"}, where);
    if (!v || *v <= 0 || *v > (1 << 24))
      throw Error(ErrorCategory::format, where + ": sliding_window = " + w->dump() + " is out of range");
    window = static_cast<int>(*v);
  } else if (w != json.end()) {
    window = 0;  // null: the "sliding" layers see every position
  }
  std::vector<bool> sliding = alternating_sliding_layers(layers);
  if (auto types = json.find("layer_types"); types != json.end() && !types->is_null()) {
    if (!types->is_array() || types->size() != static_cast<size_t>(layers))
      throw Error(ErrorCategory::format, where + ": layer_types must list one type per layer (" +
                                             std::to_string(layers) + ")");
    for (int l = 0; l < layers; ++l) {
      const nlohmann::json& t = (*types)[static_cast<size_t>(l)];
      if (t == "sliding_attention") sliding[l] = true;
      else if (t == "full_attention") sliding[l] = false;
      else
        throw Error(ErrorCategory::format, where + ": layer_types[" + std::to_string(l) + "] = " + t.dump() +
                                               " (sliding_attention or full_attention)");
    }
  }
  set_layer_windows(sliding, window, arch);
}

// What both layouts share: GptOssExperts' clamped SwiGLU (limit 7, alpha 1.702: constants
// in transformers 4.57.6 and in llama.cpp's LLM_FFN_SWIGLU_OAI_MOE) and the sinks.
constexpr double kSwigluLimit = 7.0;
void set_gpt_oss_kinds(Architecture& arch) {
  arch.kinds.swiglu_limit = static_cast<float>(kSwigluLimit);
  arch.kinds.swiglu_alpha = 1.702f;
  arch.kinds.attention_sinks = true;
}

}  // namespace

// transformers 4.57.6's GptOssConfig, key by key: num_hidden_layers, vocab_size, hidden_size,
// num_attention_heads, intermediate_size, rms_norm_eps, tie_word_embeddings and hidden_act
// (silu; the experts do not use it) as a Llama's; num_key_value_heads (default 8, null: the
// query heads), head_dim (default 64, null: hidden / heads), max_position_embeddings,
// rope_theta, rope_scaling, sliding_window, layer_types, num_local_experts (each expert's
// width is intermediate_size) and num_experts_per_tok read here with GptOssConfig's
// defaults. attention_bias is ignored, as GptOssConfig sets it true whatever config.json
// says. swiglu_limit is not a GptOssConfig key: GptOssExperts clamps at the constant 7.0
// (alpha 1.702); the released config.json files say 7.0 and later transformers versions
// read it, so any other value is refused by name. initializer_range, attention_dropout,
// router_aux_loss_coef, output_router_logits and use_cache do not change inference.
// quantization_config quant_method "mxfp4" (the released checkpoints: the experts' weights
// as MXFP4 *_blocks / *_scales, everything else in bf16, as transformers' Mxfp4HfQuantizer
// writes and reads them) is read as MXFP4 blocks; any other quantization_config is refused
// by name.
Architecture gpt_oss_architecture(const nlohmann::json& json, const std::string& where) {
  bool mxfp4 = false;
  if (auto q = json.find("quantization_config"); q != json.end() && !q->is_null()) {
    const std::string method = q->is_object() && q->contains("quant_method") ? (*q)["quant_method"].dump() : q->dump();
    if (method != "\"mxfp4\"")
      throw Error(ErrorCategory::unsupported, where + ": quantization_config (quant_method " + method +
                                                  ") is not supported (mxfp4, the released checkpoints' experts)");
    mxfp4 = true;
  }
  Architecture arch = llama_like_from_hf(json, where, "gpt_oss", {.qkv = true, .out = true});
  ModelConfig& c = arch.config;
  // Defaults as GptOssConfig's where llama_like_from_hf's differ (absent: the default; null:
  // derived, as its __init__ does).
  auto present = [&](const char* key) { return json.contains(key) && !json[key].is_null(); };
  if (!json.contains("num_key_value_heads")) c.num_kv_heads = 8;
  c.head_dim = present("head_dim") ? static_cast<int>(*json_int(json, {"head_dim"}, where))
               : json.contains("head_dim") ? (c.num_heads > 0 ? c.hidden_size / c.num_heads : 0)
                                           : 64;
  c.max_positions = static_cast<int>(json_int(json, {"max_position_embeddings"}, where).value_or(131072));
  c.norm_eps = static_cast<float>(json_number(json, {"rms_norm_eps"}, where).value_or(1e-5));
  arch.kinds.rotary_dim = c.head_dim;
  arch.kinds.rotary_inv_freq = rope_inv_freq(json_number(json, {"rope_theta"}, where).value_or(150000.0), c.head_dim);
  gpt_oss_rope_scaling(json, where, arch);
  gpt_oss_layer_windows(json, where, arch);

  c.num_experts = static_cast<int>(json_int(json, {"num_local_experts"}, where).value_or(128));
  c.experts_per_token = static_cast<int>(json_int(json, {"num_experts_per_tok"}, where).value_or(4));
  c.expert_ffn_size = c.ffn_size;
  if (const double limit = json_number(json, {"swiglu_limit"}, where).value_or(kSwigluLimit); limit != kSwigluLimit)
    throw Error(ErrorCategory::unsupported, where + ": swiglu_limit = " + std::to_string(limit) +
                                                " is not supported (transformers 4.57.6 clamps at 7.0 whatever it says, "
                                                "later versions read it)");
  set_gpt_oss_kinds(arch);
  arch.recipe = [dense = arch.recipe](WeightSlot slot, int layer) {
    if (slot == WeightSlot::attn_sinks) return WeightRecipe{{"model.layers." + std::to_string(layer) + ".self_attn.sinks"}};
    return dense(slot, layer);
  };
  make_mixture_of_experts(arch, std::vector<bool>(static_cast<size_t>(std::max(c.num_layers, 0)), true),
                          /*normalize_top_k=*/true, gpt_oss_hf_names(mxfp4));
  if (mxfp4) arch.mxfp4_paired_rows = std::vector<std::string>{"gate_up_proj"};
  return arch;
}

// llama.cpp's "gpt-oss" as its converter writes it: Llama's names with q, k, v and o biases,
// blk.N.post_attention_norm (the FFN's pre-norm), blk.N.attn_sinks, the router
// blk.N.ffn_gate_inp with its bias, the stacked experts blk.N.ffn_{gate,up,down}_exps
// (gate_up_proj's alternating columns already split; MXFP4 blocks as the released files
// hold them) with their stacked biases [E, n]. gpt-oss.attention.sliding_window is the
// window of the even layers (llama.cpp's swa pattern 2: the file cannot say otherwise).
// YaRN from rope.scaling.{type, factor, original_context_length}, beta 32 / 1 as
// GptOssConfig's, its ramp not truncated: as transformers computes gpt-oss (ggml rounds the
// ramp's ends to whole pairs: over the released models' 32 pairs its ramp runs from pair 8 to
// 18, transformers' from 8.09 to 17.40).
Architecture gpt_oss_architecture_from_gguf(const GgufFile& file) {
  const std::string where = file.path().string(), p = "gpt-oss";
  Architecture arch = llama_like_from_gguf(file, p, RotaryStyle::neox);
  arch.name = arch.config.architecture = "gpt_oss";
  const auto type = file.get_string(p + ".rope.scaling.type");
  if (type == "yarn") {
    apply_gguf_yarn(file, p, file.get_float(p + ".rope.freq_base").value_or(10000.0), arch.kinds, arch.config,
                    /*truncate=*/false);
  } else if (type && *type != "none") {
    throw Error(ErrorCategory::unsupported,
                where + ": " + p + ".rope.scaling.type '" + *type + "' is not supported (yarn, none)");
  }
  const int window = gguf_required_dim(file, p + ".attention.sliding_window");
  if (window <= 0 || window > (1 << 24))
    throw Error(ErrorCategory::format, where + ": " + p + ".attention.sliding_window = " + std::to_string(window) +
                                           " is out of range");
  set_layer_windows(alternating_sliding_layers(arch.config.num_layers), window, arch);
  set_gpt_oss_kinds(arch);
  arch.recipe = [dense = arch.recipe](WeightSlot slot, int layer) {
    const std::string b = "blk." + std::to_string(layer) + ".";
    if (slot == WeightSlot::attn_sinks) return WeightRecipe{{b + "attn_sinks.weight"}};
    if (slot == WeightSlot::ffn_norm_weight) return WeightRecipe{{b + "post_attention_norm.weight"}};
    return dense(slot, layer);
  };
  gguf_mixture_of_experts(file, p, arch, /*normalize_top_k=*/true, /*shared_expert=*/false, /*biases=*/true);
  return arch;
}

}  // namespace kestrel
