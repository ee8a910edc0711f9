// Mistral: a Llama-like model (no biases) whose attention may look back only
// `sliding_window` positions (Mistral 7B v0.1: 4096; v0.2 and later: null, full attention).
// The KV cache keeps every position; the attention kernels skip keys outside the window.
// llama.cpp's converter writes a Mistral checkpoint as a GGUF "llama" without the window
// (llama.cpp then attends to everything), so a GGUF file carries no window to read.
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "models/config_json.h"
#include "models/llama_like.h"

namespace kestrel {

// transformers 4.44.2's MistralConfig: Llama's dimensions, hidden_act, rms_norm_eps,
// rope_theta, tie_word_embeddings and head_dim, plus sliding_window; no rope_scaling and no
// biases (keys transformers would ignore are refused rather than dropped).
Architecture mistral_architecture(const nlohmann::json& json, const std::string& where) {
  for (const char* key : {"rope_scaling", "attention_bias", "mlp_bias"})
    if (auto it = json.find(key); it != json.end() && !it->is_null() && *it != false)
      throw Error(ErrorCategory::unsupported, where + ": " + key + " is not supported for mistral");
  Architecture arch = llama_like_from_hf(json, where, "mistral", {});
  if (auto window = json_int(json, {"sliding_window"}, where)) {
    if (*window <= 0 || *window > (int64_t{1} << 30))
      throw Error(ErrorCategory::format, where + ": sliding_window = " + std::to_string(*window) + " is out of range");
    arch.kinds.sliding_window = static_cast<int>(*window);
  }
  return arch;
}

}  // namespace kestrel
