// models/architecture.h: a decoder-only transformer described as data.
//
// An architecture is a short description: which norm, activation and position scheme it
// uses, which biases it has, and where each canonical weight comes from in its files.
// Everything else (loading, layers, the forward pass) is shared.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "backend.h"
#include "kestrel/model.h"
#include "models/rope_scaling.h"

namespace kestrel {

enum class PositionKind : uint8_t { learned, rotary };

// How one layer's attention differs from the model-wide settings (Gemma 2 / 3: local
// sliding-window layers between global ones, each kind with its own rotary frequencies).
struct LayerAttention {
  int sliding_window = 0;              // > 0: this layer's window; 0: every earlier position
  std::vector<float> rotary_inv_freq;  // [rotary_dim / 2]; empty: LayerKinds::rotary_inv_freq
};

// The layer kinds a model composes.
struct LayerKinds {
  NormKind norm = NormKind::layer_norm;
  Activation activation = Activation::gelu_tanh;
  bool gated_ffn = false;  // SwiGLU-style [gate | up] projection
  PositionKind positions = PositionKind::learned;
  // Rotary positions: the pairing, the leading dims of each head that rotate, and their
  // inverse frequencies [rotary_dim / 2] with any rope scaling folded in (models/rope.h).
  RotaryStyle rotary_style = RotaryStyle::none;
  int rotary_dim = 0;
  std::vector<float> rotary_inv_freq;
  // A table that depends on the session's context (LongRoPE, dynamic NTK), and the factor
  // rope scaling puts on cos and sin (YaRN, LongRoPE): q . k scales by its square, folded
  // into attention_scale when rotary_dim == head_dim, else applied to cos and sin by the
  // attention kernels (rotary_cos_sin_scale). models/rope_scaling.h.
  RopeContextScaling rotary_context;
  float rotary_attention_factor = 1.0f;
  // The attention softmax scale of layer l (0-based) is 1/sqrt(head_dim), or 1 without
  // `attn_scale_by_head_dim` (GPT-2's scale_attn_weights: false), further divided by l + 1
  // with `attn_scale_by_inverse_layer` (GPT-2's scale_attn_by_inverse_layer_idx).
  bool attn_scale_by_head_dim = true;
  bool attn_scale_by_inverse_layer = false;
  // > 0: each token attends to the last `sliding_window` positions only (Mistral).
  int sliding_window = 0;
  // Parallel residual (GPT-NeoX's use_parallel_residual, GPT-J): a layer computes
  // h + attn(norm1(h)) + ffn(norm2(h)) instead of h' = h + attn(norm1(h)), h' + ffn(norm2(h')).
  // `shared_norm`: norm2 is norm1 (GPT-J's single ln_1; the ffn_norm slots then name the
  // same tensors as the attn_norm ones).
  bool parallel_residual = false;
  bool shared_norm = false;
  // Mixture of experts (ModelConfig::num_experts > 0): which layers are sparse, and
  // whether the top-k routing weights are renormalized to sum 1 (Mixtral; Qwen2-MoE's
  // norm_topk_prob). layers/moe.h has the block.
  std::vector<bool> sparse_layers;  // [num_layers]; empty for a dense model
  bool normalize_top_k = false;
  bool is_sparse(int layer) const {
    return layer >= 0 && static_cast<size_t>(layer) < sparse_layers.size() && sparse_layers[layer];
  }

  // Gemma: the token embedding is multiplied by sqrt(hidden_size), that factor first
  // rounded to the activation dtype (transformers casts its normalizer to the model dtype).
  bool scale_embedding = false;
  // Gemma 2 / 3: each block's output is normed (post_attn_norm / post_ffn_norm slots) before
  // it joins the residual; the attn_norm / ffn_norm slots stay the pre-norms.
  bool post_norms = false;
  // Qwen3, Gemma 3: every q and k head is RMSNormed over head_dim (q_norm / k_norm slots)
  // before rotary.
  bool qk_norm = false;
  // OLMo 2: the q_norm / k_norm slots norm each token's whole q / k projection ([nh hd] /
  // [nkv hd]) instead of each head.
  bool qk_norm_over_heads = false;
  // false (OLMo 2): no norm before the blocks, which read the residual itself; post_norms
  // then normalize their outputs, and the attn_norm / ffn_norm slots are absent.
  bool pre_norms = true;
  // > 0: the softmax scale is query_pre_attn_scalar^-1/2 instead of head_dim^-1/2 (Gemma).
  double query_pre_attn_scalar = 0.0;
  // > 0: soft-capping tanh(x / cap) * cap of the attention scores (before the softmax) and
  // of the final logits (Gemma 2).
  float attn_logit_softcap = 0.0f;
  float final_logit_softcap = 0.0f;
  // Empty, or one entry per layer that replaces sliding_window and rotary_inv_freq for it.
  std::vector<LayerAttention> layer_attention;
  // Granite's multipliers (1 / 0: none). The token embedding is multiplied by
  // `embedding_multiplier`; each block's output, bias included, by `residual_multiplier`
  // before it joins the residual (the biases come scaled from the loader, WeightRecipe::
  // scale; the sequential residual only, not with parallel_residual); `attention_multiplier` > 0 is the softmax scale itself, in place of
  // head_dim^-1/2; the logits are divided by `logits_scaling`.
  float embedding_multiplier = 1.0f;
  float residual_multiplier = 1.0f;
  float attention_multiplier = 0.0f;
  float logits_scaling = 1.0f;
  // gpt-oss: every query head has an attention sink (attn_sinks slot, AttentionParams::
  // sinks), and the experts' activation is its clamped SwiGLU (Backend::clamped_swiglu) when
  // swiglu_limit > 0, with swiglu_alpha.
  bool attention_sinks = false;
  float swiglu_limit = 0.0f;
  float swiglu_alpha = 0.0f;
};

// The weights the shared layers read, in one canonical layout for every architecture:
// linear weights are [out_features, in_features]; fused QKV rows are [q | k | v];
// a gated FFN's up projection rows are [gate | up].
enum class WeightSlot : uint8_t {
  token_embedding,     // [V, H]
  position_embedding,  // [P, H]
  final_norm_weight,   // [H]
  final_norm_bias,     // [H]
  lm_head,             // [V, H]
  lm_head_bias,        // [V] (GPT-J)
  attn_norm_weight,    // [H]
  attn_norm_bias,      // [H]
  qkv_weight,          // [(nh + 2 nkv) hd, H]
  qkv_bias,            // [(nh + 2 nkv) hd]
  out_weight,          // [H, nh hd]
  out_bias,            // [H]
  ffn_norm_weight,     // [H]
  ffn_norm_bias,       // [H]
  up_weight,           // [F or 2F, H]
  up_bias,             // [F or 2F]
  down_weight,         // [H, F]
  down_bias,           // [H]
  // Sparse (mixture-of-experts) layers, in place of up / down (ModelConfig: E experts,
  // Fe = expert_ffn_size, Fs = shared_expert_ffn_size). Expert slots are read per expert
  // through Architecture::expert_recipe.
  router_weight,       // [E, H]
  expert_up_weight,    // [2 Fe, H] ([gate | up]) of one expert
  expert_down_weight,  // [H, Fe] of one expert
  shared_up_weight,    // [2 Fs, H] ([gate | up]) of the shared expert
  shared_down_weight,  // [H, Fs]
  shared_gate_weight,  // [1, H]: sigmoid(x . w) scales the shared expert's output
  post_attn_norm_weight,  // [H] (LayerKinds::post_norms)
  post_ffn_norm_weight,   // [H]
  q_norm_weight,          // [hd] (LayerKinds::qk_norm); [nh hd] with qk_norm_over_heads
  k_norm_weight,          // [hd]; [nkv hd] with qk_norm_over_heads
  // gpt-oss (LayerKinds::attention_sinks; biases of the router and of each expert, read
  // through Architecture::expert_recipe like the expert weights).
  attn_sinks,             // [nh]
  router_bias,            // [E]
  expert_up_bias,         // [2 Fe] ([gate | up]) of one expert
  expert_down_bias,       // [H] of one expert
};
const char* to_string(WeightSlot slot);

// Where one canonical weight comes from: source tensors concatenated along the output
// dimension, each stored as [out, in] or, when `transposed`, as [in, out] (GPT-2's Conv1D).
struct WeightRecipe {
  std::vector<std::string> sources;  // empty: the model has no such weight
  bool transposed = false;
  // > 0: a single source holds the rows of a QKV weight or bias head after head, each head
  // as [q | k | v] blocks of this many rows (GPT-NeoX's query_key_value, viewed as
  // [nh, 3, hd, H]); they are gathered into the canonical [q heads | k heads | v heads].
  // With `interleaved_parts` 2 the blocks are [gate | up] instead (gpt-oss's experts
  // alternate gate and up columns: interleaved_head_rows 1), gathered into [gate | up].
  int interleaved_head_rows = 0;
  int interleaved_parts = 3;
  // Added to every value at load: Gemma's RMSNorm scales by (1 + w), folded into its weight
  // (llama.cpp's converter folds it into the GGUF file already).
  float offset = 0.0f;
  // Multiplies every value at load, after the offset: Granite's residual_multiplier folded
  // into the biases of the blocks' output projections (float sources only).
  float scale = 1.0f;
};

struct Architecture {
  std::string name;
  ModelConfig config;
  LayerKinds kinds;
  // Source tensors of a slot; `layer` is -1 for the model-level slots.
  std::function<WeightRecipe(WeightSlot slot, int layer)> recipe;
  // Source tensors of expert `expert`'s expert_up_weight / expert_down_weight in `layer`
  // (mixture-of-experts models only). A source named "NAME#e" is row block e of the 3-D
  // tensor NAME [E, rows, cols] (llama.cpp's stacked *_exps); "NAME#row" the 1-D tensor
  // NAME [n] read as [1, n] (models/moe_family.h).
  std::function<WeightRecipe(WeightSlot slot, int layer, int expert)> expert_recipe;
  // A checkpoint written by kestrel-quantize (config.json "kestrel_quantization": {"format":
  // "w8a8" | "fp8"}, or GGUF kestrel.quantization.format): Quantization::automatic loads it
  // in this mode (w8a8 or fp8); automatic when the checkpoint declares none.
  Quantization checkpoint_quantization = Quantization::automatic;
  // The linear weights such a checkpoint keeps int8 weight-only, their activations in f32
  // (its "float_activations": qkv_weight, out_weight, up_weight, down_weight): the
  // products measured to lose the most when their activations are rounded to int8.
  std::vector<WeightSlot> w8a8_float_activations;
  // Set for a checkpoint whose expert weights transformers stores as MXFP4 (NAME_blocks /
  // NAME_scales; gpt-oss's quantization_config quant_method "mxfp4"): its files are read
  // through an Mxfp4Source (loaders/mxfp4_source.h) with these names' rows de-interleaved.
  std::optional<std::vector<std::string>> mxfp4_paired_rows;
};

// The slots named in a checkpoint's float_activations (each of qkv_weight, out_weight,
// up_weight, down_weight); others throw Error(format) naming `key`.
std::vector<WeightSlot> parse_float_activations(const std::vector<std::string>& names, const std::string& key);

// Reads config.json of a Hugging Face model directory and returns the description of its
// architecture; throws Error(unsupported) naming an unknown model_type. `has_tensor` lets
// a description adapt to naming variants in the weight files.
Architecture architecture_from_hf_config(const std::filesystem::path& config_path,
                                         const std::function<bool(const std::string&)>& has_tensor);
// The same from a parsed config.json; `where` names it in errors.
Architecture architecture_from_hf_json(const nlohmann::json& config, const std::string& where,
                                       const std::function<bool(const std::string&)>& has_tensor);

class GgufFile;

// Reads the metadata of a GGUF file (general.architecture and its "<arch>." keys) and
// returns the description of its architecture, with llama.cpp's tensor names; throws
// Error(unsupported) naming an unknown general.architecture.
Architecture architecture_from_gguf(const GgufFile& file);

// One pair of entries per architecture file (models/gpt2.cc, llama.cc, qwen2.cc): the
// description from a Hugging Face config.json, and from GGUF metadata (mistral.cc: config.json
// only, llama.cpp writes Mistral as "llama").
Architecture gpt2_architecture(const nlohmann::json& config, const std::string& where,
                               const std::function<bool(const std::string&)>& has_tensor);
Architecture gpt2_architecture_from_gguf(const GgufFile& file);
Architecture llama_architecture(const nlohmann::json& config, const std::string& where);
Architecture llama_architecture_from_gguf(const GgufFile& file);
Architecture mistral_architecture(const nlohmann::json& config, const std::string& where);
Architecture gpt_neox_architecture(const nlohmann::json& config, const std::string& where);
Architecture gpt_neox_architecture_from_gguf(const GgufFile& file);
Architecture gptj_architecture(const nlohmann::json& config, const std::string& where);
Architecture qwen2_architecture(const nlohmann::json& config, const std::string& where);
Architecture qwen2_architecture_from_gguf(const GgufFile& file);
Architecture mixtral_architecture(const nlohmann::json& config, const std::string& where);
Architecture qwen2_moe_architecture(const nlohmann::json& config, const std::string& where);
Architecture qwen2_moe_architecture_from_gguf(const GgufFile& file);
// models/gemma.cc: Gemma 2 ("gemma2") and Gemma 3 text ("gemma3_text", and the language
// model of a "gemma3" checkpoint); models/qwen3.cc: Qwen3.
Architecture gemma2_architecture(const nlohmann::json& config, const std::string& where);
Architecture gemma3_architecture(const nlohmann::json& config, const std::string& where);
Architecture gemma_architecture_from_gguf(const GgufFile& file);
Architecture qwen3_architecture(const nlohmann::json& config, const std::string& where);
Architecture qwen3_architecture_from_gguf(const GgufFile& file);
Architecture phi3_architecture(const nlohmann::json& config, const std::string& where);
Architecture phi3_architecture_from_gguf(const GgufFile& file);
// models/qwen3_moe.cc: Qwen3-MoE; models/granite.cc: Granite 3.x, dense and GraniteMoE.
Architecture qwen3_moe_architecture(const nlohmann::json& config, const std::string& where);
Architecture qwen3_moe_architecture_from_gguf(const GgufFile& file);
Architecture granite_architecture(const nlohmann::json& config, const std::string& where);
Architecture granite_architecture_from_gguf(const GgufFile& file);
Architecture granitemoe_architecture(const nlohmann::json& config, const std::string& where);
Architecture granitemoe_architecture_from_gguf(const GgufFile& file);
// models/olmo2.cc: OLMo 2.
Architecture olmo2_architecture(const nlohmann::json& config, const std::string& where);
Architecture olmo2_architecture_from_gguf(const GgufFile& file);
// models/gpt_oss.cc: gpt-oss (attention sinks, alternating sliding windows, biased experts).
Architecture gpt_oss_architecture(const nlohmann::json& config, const std::string& where);
// llama.cpp's "gpt-oss" (convert_hf_to_gguf.py's GptOssModel; models/gpt_oss.cc).
Architecture gpt_oss_architecture_from_gguf(const GgufFile& file);

// The canonical shape of a slot's whole weight ([out, in] for a matrix, [n] for a vector;
// empty when the architecture has no such weight), and the rows each of its recipe's source
// tensors contributes: [q, k, v] rows for a three-part QKV, [gate, up] for a two-part FFN.
std::vector<int64_t> canonical_shape(const Architecture& arch, WeightSlot slot);
std::vector<int64_t> source_rows(const Architecture& arch, WeightSlot slot, size_t parts);

// transformers' ACT2FN name of a non-gated activation (gelu_new, gelu_pytorch_tanh,
// gelu_fast: tanh GELU; gelu: erf GELU; relu); others throw Error(unsupported) naming `key`.
Activation hf_activation(const std::string& name, const char* key, const std::string& where);

// The softmax scale of the attention of `layer` (0-based, counted over the whole model).
float attention_scale(const Architecture& arch, int layer);
// RotaryParams::cos_sin_scale: the rope attention factor where only part of each head
// rotates (attention_scale folds it in when every dim does), else 1.
float rotary_cos_sin_scale(const Architecture& arch);
// The sliding window of `layer` (0: none), from layer_attention or the model-wide setting.
int layer_sliding_window(const LayerKinds& kinds, int layer);

// Checks the dimensions of a description; throws Error(format) naming `where` and the field.
void validate_config(const ModelConfig& config, const std::string& where);

}  // namespace kestrel
