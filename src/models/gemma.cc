// Gemma 2 and Gemma 3 (text): a Llama-like decoder (RMSNorm, rotary, GQA, gated FFN) with
// - the token embedding scaled by sqrt(hidden_size), and a tied LM head;
// - RMSNorms that scale by (1 + w): folded into the weights at load from Hugging Face
//   checkpoints (llama.cpp's converter stores 1 + w already);
// - norms before and after each block (input_layernorm / post_attention_layernorm around the
//   attention, pre_ / post_feedforward_layernorm around the FFN);
// - GeGLU with tanh GELU (hidden_activation gelu_pytorch_tanh);
// - softmax scale query_pre_attn_scalar^-1/2;
// - local (sliding-window) layers between global ones: Gemma 2 every other layer from layer
//   0; Gemma 3 all but every sliding_window_pattern-th, the local layers with their own rope
//   base (rope_local_base_freq) and rope_scaling on the global layers only;
// - Gemma 2: soft-capping of the attention scores and of the final logits;
// - Gemma 3: per-head RMSNorm (1 + w) of q and k before rotary.
// Rotary pairs dimensions NeoX-style in both formats (llama.cpp keeps Hugging Face's Q / K
// row order for Gemma).
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/architecture.h"
#include "models/config_json.h"
#include "models/gguf_metadata.h"
#include "models/rope.h"

namespace kestrel {

namespace {

enum class GemmaVersion : uint8_t { gemma2, gemma3 };

// Hugging Face names; `prefix` is "" or "language_model." (a multimodal gemma3 checkpoint).
WeightRecipe hf_recipe(WeightSlot slot, int layer, bool tied, const std::string& prefix) {
  const std::string model = prefix + "model.";
  const std::string l = model + "layers." + std::to_string(layer) + ".";
  const std::string a = l + "self_attn.", m = l + "mlp.";
  auto norm = [](std::string name) { return WeightRecipe{.sources = {std::move(name)}, .offset = 1.0f}; };
  switch (slot) {
    case WeightSlot::token_embedding: return {{model + "embed_tokens.weight"}};
    case WeightSlot::final_norm_weight: return norm(model + "norm.weight");
    case WeightSlot::lm_head: return {{tied ? model + "embed_tokens.weight" : prefix + "lm_head.weight"}};
    case WeightSlot::attn_norm_weight: return norm(l + "input_layernorm.weight");
    case WeightSlot::qkv_weight: return {{a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"}};
    case WeightSlot::out_weight: return {{a + "o_proj.weight"}};
    case WeightSlot::post_attn_norm_weight: return norm(l + "post_attention_layernorm.weight");
    case WeightSlot::ffn_norm_weight: return norm(l + "pre_feedforward_layernorm.weight");
    case WeightSlot::up_weight: return {{m + "gate_proj.weight", m + "up_proj.weight"}};
    case WeightSlot::down_weight: return {{m + "down_proj.weight"}};
    case WeightSlot::post_ffn_norm_weight: return norm(l + "post_feedforward_layernorm.weight");
    case WeightSlot::q_norm_weight: return norm(a + "q_norm.weight");
    case WeightSlot::k_norm_weight: return norm(a + "k_norm.weight");
    default: return {};  // no biases, no position embedding
  }
}

// llama.cpp's names (norm weights stored as 1 + w).
WeightRecipe gguf_recipe(WeightSlot slot, int layer, bool tied) {
  const std::string b = "blk." + std::to_string(layer) + ".";
  switch (slot) {
    case WeightSlot::token_embedding: return {{"token_embd.weight"}};
    case WeightSlot::final_norm_weight: return {{"output_norm.weight"}};
    case WeightSlot::lm_head: return {{tied ? "token_embd.weight" : "output.weight"}};
    case WeightSlot::attn_norm_weight: return {{b + "attn_norm.weight"}};
    case WeightSlot::qkv_weight: return {{b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight"}};
    case WeightSlot::out_weight: return {{b + "attn_output.weight"}};
    case WeightSlot::post_attn_norm_weight: return {{b + "post_attention_norm.weight"}};
    case WeightSlot::ffn_norm_weight: return {{b + "ffn_norm.weight"}};
    case WeightSlot::up_weight: return {{b + "ffn_gate.weight", b + "ffn_up.weight"}};
    case WeightSlot::down_weight: return {{b + "ffn_down.weight"}};
    case WeightSlot::post_ffn_norm_weight: return {{b + "post_ffw_norm.weight"}};
    case WeightSlot::q_norm_weight: return {{b + "attn_q_norm.weight"}};
    case WeightSlot::k_norm_weight: return {{b + "attn_k_norm.weight"}};
    default: return {};
  }
}

// What distinguishes the two versions and their files, in one place.
struct GemmaSettings {
  GemmaVersion version = GemmaVersion::gemma2;
  int sliding_window = 0;
  int sliding_window_pattern = 2;  // Gemma 3: every pattern-th layer is global
  double rope_theta = 10000.0;      // global layers (all layers of Gemma 2)
  double rope_local_base = 10000.0;  // Gemma 3's local layers
};

bool is_local_layer(const GemmaSettings& g, int layer) {
  if (g.version == GemmaVersion::gemma2) return layer % 2 == 0;  // transformers: not layer_idx % 2
  return (layer + 1) % g.sliding_window_pattern != 0;
}

// The layer kinds common to both formats; `global_inv_freq` is the global layers' table
// (rope scaling folded in).
LayerKinds gemma_kinds(const ModelConfig& c, const GemmaSettings& g, std::vector<float> global_inv_freq) {
  LayerKinds kinds;
  kinds.norm = NormKind::rms_norm;
  kinds.activation = Activation::gelu_tanh;
  kinds.gated_ffn = true;
  kinds.positions = PositionKind::rotary;
  kinds.rotary_style = RotaryStyle::neox;
  kinds.rotary_dim = c.head_dim;
  kinds.rotary_inv_freq = std::move(global_inv_freq);
  kinds.scale_embedding = true;
  kinds.post_norms = true;
  kinds.qk_norm = g.version == GemmaVersion::gemma3;
  const std::vector<float> local_inv_freq =
      g.version == GemmaVersion::gemma3 ? rope_inv_freq(g.rope_local_base, c.head_dim) : std::vector<float>{};
  for (int l = 0; l < c.num_layers; ++l) {
    LayerAttention layer;
    if (is_local_layer(g, l)) {
      layer.sliding_window = g.sliding_window;
      layer.rotary_inv_freq = local_inv_freq;
    }
    kinds.layer_attention.push_back(std::move(layer));
  }
  return kinds;
}

// A soft-capping key: absent, the config class's default; null, off.
float softcap(const nlohmann::json& json, const char* key, double default_value, const std::string& where) {
  auto it = json.find(key);
  if (it == json.end()) return static_cast<float>(default_value);
  if (it->is_null()) return 0.0f;
  const double cap = json_number(json, {key}, where).value_or(0.0);
  if (!(cap > 0) || !std::isfinite(cap))
    throw Error(ErrorCategory::format, where + ": " + key + " must be positive or null");
  return static_cast<float>(cap);
}

int positive_window(int64_t window, const std::string& where, const std::string& key) {
  if (window <= 0 || window > (int64_t{1} << 30))
    throw Error(ErrorCategory::format, where + ": " + key + " = " + std::to_string(window) + " is out of range");
  return static_cast<int>(window);
}

// Gemma3TextConfig's (transformers 4.51.3) defaults for the keys a config.json may omit (a
// gemma3 checkpoint's text_config lists few). Gemma 2's dimensions and
// query_pre_attn_scalar must be present: Gemma2Config's defaults changed between
// transformers versions (query_pre_attn_scalar 224 in 4.44, 256 in 4.51); its other
// defaults (sliding_window 4096, rope_theta 10000, soft-caps 50 / 30) did not.
struct GemmaDefaults {
  int64_t vocab, hidden, ffn, layers, heads, kv_heads, head_dim, max_positions, window;
  double rope_theta, query_pre_attn_scalar, attn_softcap, final_softcap;
};
constexpr GemmaDefaults kGemma2Defaults{0, 0, 0, 0, 0, 0, 0, 8192, 4096, 10000.0, 0.0, 50.0, 30.0};
constexpr GemmaDefaults kGemma3Defaults{262208, 2304, 9216, 26, 8, 4, 256, 131072, 4096, 1000000.0, 256.0, 0.0, 0.0};

Architecture gemma_from_hf(const nlohmann::json& json, const std::string& where, GemmaVersion version,
                           const std::string& prefix) {
  const GemmaDefaults& d = version == GemmaVersion::gemma2 ? kGemma2Defaults : kGemma3Defaults;
  if (json_bool(json, "attention_bias", where).value_or(false))
    throw Error(ErrorCategory::unsupported, where + ": attention_bias = true is not supported for Gemma");
  // hf_activation refuses names it does not know; erf GELU and relu are refused here.
  if (auto act = json_string(json, "hidden_activation", where);
      act && hf_activation(*act, "hidden_activation", where) != Activation::gelu_tanh)
    throw Error(ErrorCategory::unsupported,
                where + ": hidden_activation '" + *act + "' is not supported for Gemma (gelu_pytorch_tanh)");

  Architecture arch;
  arch.name = version == GemmaVersion::gemma2 ? "gemma2" : "gemma3";
  ModelConfig& c = arch.config;
  c.architecture = arch.name;
  auto dim = [&](const char* key, int64_t fallback) {
    if (fallback == 0) return static_cast<int>(json_required_int(json, {key}, where));
    return static_cast<int>(json_int(json, {key}, where).value_or(fallback));
  };
  c.vocab_size = dim("vocab_size", d.vocab);
  c.hidden_size = dim("hidden_size", d.hidden);
  c.num_layers = dim("num_hidden_layers", d.layers);
  c.num_heads = dim("num_attention_heads", d.heads);
  c.num_kv_heads = dim("num_key_value_heads", d.kv_heads);
  c.head_dim = dim("head_dim", d.head_dim);
  c.ffn_size = dim("intermediate_size", d.ffn);
  c.max_positions = dim("max_position_embeddings", d.max_positions);
  c.norm_eps = static_cast<float>(json_number(json, {"rms_norm_eps"}, where).value_or(1e-6));
  c.tied_embeddings = json_bool(json, "tie_word_embeddings", where).value_or(true);
  validate_config(c, where);

  GemmaSettings g;
  g.version = version;
  g.sliding_window = positive_window(json_int(json, {"sliding_window"}, where).value_or(d.window), where, "sliding_window");
  g.rope_theta = json_number(json, {"rope_theta"}, where).value_or(d.rope_theta);
  std::vector<float> global = rope_inv_freq(g.rope_theta, c.head_dim);
  if (version == GemmaVersion::gemma3) {
    g.sliding_window_pattern = static_cast<int>(json_int(json, {"sliding_window_pattern"}, where).value_or(6));
    if (g.sliding_window_pattern <= 0)
      throw Error(ErrorCategory::format, where + ": sliding_window_pattern must be positive");
    g.rope_local_base = json_number(json, {"rope_local_base_freq"}, where).value_or(10000.0);
    if (auto it = json.find("rope_scaling"); it != json.end()) apply_hf_rope_scaling(*it, where, global);
  } else if (auto it = json.find("rope_scaling"); it != json.end() && !it->is_null()) {
    // Not a key of Gemma2Config in 4.44.2 (which ignores it); refused rather than dropped.
    throw Error(ErrorCategory::unsupported, where + ": rope_scaling is not supported for gemma2");
  }
  arch.kinds = gemma_kinds(c, g, std::move(global));
  const std::optional<double> scalar = json_number(json, {"query_pre_attn_scalar"}, where);
  if (!scalar && d.query_pre_attn_scalar == 0)
    throw Error(ErrorCategory::format, where + ": query_pre_attn_scalar is missing (Gemma2Config's default differs "
                                               "between transformers versions)");
  arch.kinds.query_pre_attn_scalar = scalar.value_or(d.query_pre_attn_scalar);
  if (!(arch.kinds.query_pre_attn_scalar > 0))
    throw Error(ErrorCategory::format, where + ": query_pre_attn_scalar must be positive");
  arch.kinds.attn_logit_softcap = softcap(json, "attn_logit_softcapping", d.attn_softcap, where);
  arch.kinds.final_logit_softcap = softcap(json, "final_logit_softcapping", d.final_softcap, where);
  const bool tied = c.tied_embeddings;
  arch.recipe = [tied, prefix](WeightSlot slot, int layer) { return hf_recipe(slot, layer, tied, prefix); };
  return arch;
}

}  // namespace

// transformers 4.44.2's Gemma2Config; docs/MODELS.md has the audit of its keys.
Architecture gemma2_architecture(const nlohmann::json& json, const std::string& where) {
  return gemma_from_hf(json, where, GemmaVersion::gemma2, "");
}

// transformers 4.51.3's Gemma3TextConfig ("gemma3_text"), or the text_config of a
// multimodal "gemma3" checkpoint (Gemma3ForConditionalGeneration), whose language model's
// tensors are named "language_model.model.*"; its vision tower is not loaded.
Architecture gemma3_architecture(const nlohmann::json& json, const std::string& where) {
  if (json.value("model_type", "") != "gemma3") return gemma_from_hf(json, where, GemmaVersion::gemma3, "");
  auto text = json.find("text_config");
  if (text == json.end() || !text->is_object())
    throw Error(ErrorCategory::format, where + ": a gemma3 config needs a text_config object");
  return gemma_from_hf(*text, where + ": text_config", GemmaVersion::gemma3, "language_model.");
}

Architecture gemma_architecture_from_gguf(const GgufFile& file) {
  const std::string where = file.path().string();
  const std::string prefix = file.get_string("general.architecture").value_or("");
  Architecture arch;
  arch.name = prefix;
  arch.config = gguf_model_config(file, prefix);
  ModelConfig& c = arch.config;
  c.architecture = prefix;
  GemmaSettings g;
  g.version = prefix == "gemma2" ? GemmaVersion::gemma2 : GemmaVersion::gemma3;
  // As llama.cpp reads them: Gemma 2's window defaults to 4096, Gemma 3's is required; the
  // pattern (2 / 6) and Gemma 3's local rope base (10000) are fixed, not stored.
  const std::string window_key = prefix + ".attention.sliding_window";
  std::optional<int> window = gguf_dim(file, window_key);
  if (!window && g.version == GemmaVersion::gemma3)
    throw Error(ErrorCategory::format, where + ": metadata key '" + window_key + "' is missing");
  g.sliding_window = positive_window(window.value_or(4096), where, window_key);
  g.sliding_window_pattern = g.version == GemmaVersion::gemma2 ? 2 : 6;
  g.rope_theta = file.get_float(prefix + ".rope.freq_base").value_or(g.version == GemmaVersion::gemma2 ? 10000.0 : 1e6);
  std::vector<float> global = rope_inv_freq(g.rope_theta, c.head_dim);
  if (auto type = file.get_string(prefix + ".rope.scaling.type"); type && *type != "none") {
    if (*type != "linear" || g.version == GemmaVersion::gemma2)
      throw Error(ErrorCategory::unsupported,
                  where + ": " + prefix + ".rope.scaling.type '" + *type + "' is not supported");
    const double factor = file.get_float(prefix + ".rope.scaling.factor").value_or(0.0);
    if (!(factor > 0))
      throw Error(ErrorCategory::format, where + ": " + prefix + ".rope.scaling.factor must be positive");
    for (float& f : global) f /= static_cast<float>(factor);  // global layers only
  }
  if (auto dims = gguf_dim(file, prefix + ".rope.dimension_count"); dims && *dims != c.head_dim)
    throw Error(ErrorCategory::unsupported, where + ": " + prefix + ".rope.dimension_count must equal the head size");
  arch.kinds = gemma_kinds(c, g, std::move(global));
  // llama.cpp's scale: head_dim^-1/2, except hidden / heads for the 27B models (46 / 62
  // layers), whose query_pre_attn_scalar that is.
  const bool is_27b = c.num_layers == (g.version == GemmaVersion::gemma2 ? 46 : 62);
  arch.kinds.query_pre_attn_scalar = is_27b ? c.hidden_size / c.num_heads : c.head_dim;
  if (g.version == GemmaVersion::gemma2) {  // llama.cpp caps Gemma 2 only, 50 / 30 when absent
    arch.kinds.attn_logit_softcap = static_cast<float>(file.get_float("gemma2.attn_logit_softcapping").value_or(50.0));
    arch.kinds.final_logit_softcap = static_cast<float>(file.get_float("gemma2.final_logit_softcapping").value_or(30.0));
    if (!(arch.kinds.attn_logit_softcap > 0) || !(arch.kinds.final_logit_softcap > 0))
      throw Error(ErrorCategory::format, where + ": the gemma2 soft-capping values must be positive");
  }
  const bool tied = c.tied_embeddings;
  arch.recipe = [tied](WeightSlot slot, int layer) { return gguf_recipe(slot, layer, tied); };
  return arch;
}

}  // namespace kestrel
