// models/llama_like.h: the description shared by the Llama-like families (Llama, Mistral,
// Qwen2): RMSNorm, rotary positions, SwiGLU, grouped-query attention, optional biases.
// A family file reads its own keys and passes what differs here.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

#include "models/architecture.h"

namespace kestrel {

// Which optional biases a Llama-like model has: of the q, k, v projections, of the output
// projection, and of the gate, up and down projections.
struct LlamaBiases {
  bool qkv = false;
  bool out = false;
  bool mlp = false;
};

// From config.json: dimensions, hidden_act (silu only), rms_norm_eps, rope_theta and
// Hugging Face tensor names (model.layers.N.self_attn.q_proj ...). Rope scaling is left to
// the family. `name` becomes Architecture::name and ModelConfig::architecture.
Architecture llama_like_from_hf(const nlohmann::json& config, const std::string& where, const std::string& name,
                                LlamaBiases biases);

// From GGUF metadata "<prefix>.*" and llama.cpp's tensor names (blk.N.attn_q ...), biases
// when their tensors are present, rotary pairs as `style` (llama.cpp's converter permutes
// Llama's Q / K rows for adjacent pairs, not Qwen2's). Rope scaling is left to the family.
Architecture llama_like_from_gguf(const GgufFile& file, const std::string& prefix, RotaryStyle style);

// Llama's rope scalings in GGUF metadata under `prefix` (llama, granite): "<prefix>.rope.
// scaling.type" linear (or the older .rope.scale_linear) or yarn, and Llama 3's per-pair
// rope_freqs.weight; others are refused by name (models/llama.cc).
void apply_gguf_llama_rope_scaling(const GgufFile& file, const std::string& prefix, Architecture& arch);

// Qwen3's q / k head RMSNorms: the q_norm / k_norm slots of layer l named
// `layer_prefix` + l + "." + `q_norm` / `k_norm` (models/qwen3.cc).
Architecture with_qk_norm(Architecture arch, const std::string& layer_prefix, const std::string& q_norm,
                          const std::string& k_norm);
// Qwen3's attention from GGUF metadata under `prefix` (qwen3, qwen3moe): Llama-like, NeoX
// pairs, q / k norms; a rope scaling type other than none refused by name.
Architecture qwen3_like_from_gguf(const GgufFile& file, const std::string& prefix);

}  // namespace kestrel
