// models/rope.h: a model's rotary inverse frequencies, computed once at load and uploaded
// for the attention kernels (RotaryParams::inv_freq), with any rope scaling folded in.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace kestrel {

// inv_freq[j] = float(theta^(-2j / rot)) for j < rot / 2 (transformers' default rope).
std::vector<float> rope_inv_freq(double theta, int rot);

// Applies config.json's `rope_scaling` object to `inv_freq` as transformers 4.44.2's
// ROPE_INIT_FUNCTIONS compute it: "linear" (inv_freq / factor) and "llama3" (factor,
// low_freq_factor, high_freq_factor, original_max_position_embeddings). Other types
// ("dynamic", "yarn", "longrope") throw Error(unsupported) naming rope_scaling's type; a
// missing or bad parameter throws Error(format) naming it. `where` names the file.
void apply_hf_rope_scaling(const nlohmann::json& rope_scaling, const std::string& where,
                           std::vector<float>& inv_freq);

// llama.cpp's per-pair frequency factors (a GGUF's rope_freqs.weight, written by its
// converter for Llama 3 rope scaling): pair j turns at inv_freq[j] / factors[j].
void apply_rope_freq_factors(const std::vector<float>& factors, const std::string& where,
                             std::vector<float>& inv_freq);

}  // namespace kestrel
