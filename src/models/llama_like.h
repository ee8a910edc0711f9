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

}  // namespace kestrel
