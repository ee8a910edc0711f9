// Qwen2 / Qwen2.5: a Llama-like model with biases on the q, k and v projections (none on
// the output projection or the MLP), and Llama's rope scalings (YaRN for long contexts).
// Sliding-window attention is off unless use_sliding_window is set, which is refused. llama.cpp's converter keeps Hugging Face's
// Q / K row order for Qwen2 (llama.cpp rotates it NeoX-style), so a GGUF Qwen2 pairs
// rotary dimensions as the safetensors checkpoint does.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/config_json.h"
#include "models/llama_like.h"
#include "models/rope_scaling.h"

namespace kestrel {

// transformers 4.44.2's Qwen2Config: its keys are Llama's less attention_bias / mlp_bias /
// pretraining_tp, plus use_sliding_window, sliding_window and
// max_window_layers (which only matter with use_sliding_window).
Architecture qwen2_architecture(const nlohmann::json& json, const std::string& where) {
  if (json_bool(json, "use_sliding_window", where).value_or(false))
    throw Error(ErrorCategory::unsupported,
                where + ": use_sliding_window = true: sliding-window attention is not supported");
  Architecture arch = llama_like_from_hf(json, where, "qwen2", {.qkv = true});
  // Not read by transformers 4.44.2's Qwen2 (which ignores it); later versions apply
  // Llama's rope functions to it (Qwen2.5's YaRN for long contexts), as here.
  if (auto it = json.find("rope_scaling"); it != json.end())
    apply_hf_llama_rope_scaling(*it, where, json_number(json, {"rope_theta"}, where).value_or(10000.0), arch.kinds,
                                arch.config);
  return arch;
}

Architecture qwen2_architecture_from_gguf(const GgufFile& file) {
  const std::string where = file.path().string();
  Architecture arch = llama_like_from_gguf(file, "qwen2", RotaryStyle::neox);
  // llama.cpp's converter writes Qwen2.5's YaRN (rope_scaling type "yarn") with its keys.
  if (auto type = file.get_string("qwen2.rope.scaling.type"); type == "yarn")
    apply_gguf_yarn(file, "qwen2", file.get_float("qwen2.rope.freq_base").value_or(10000.0), arch.kinds,
                    arch.config);
  else if (type && *type != "none")
    throw Error(ErrorCategory::unsupported,
                where + ": qwen2.rope.scaling.type '" + *type + "' is not supported (none, yarn)");
  if (arch.recipe(WeightSlot::qkv_bias, 0).sources.empty())
    throw Error(ErrorCategory::format, where + ": tensor 'blk.0.attn_q.bias' is missing (Qwen2 has q, k, v biases)");
  return arch;
}

}  // namespace kestrel
