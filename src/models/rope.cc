#include "models/rope.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "kestrel/error.h"
#include "models/config_json.h"

namespace kestrel {

std::vector<float> rope_inv_freq(double theta, int rot) {
  std::vector<float> inv_freq(static_cast<size_t>(rot / 2));
  for (int j = 0; j < rot / 2; ++j) inv_freq[j] = static_cast<float>(std::pow(theta, -2.0 * j / rot));
  return inv_freq;
}

namespace {

double required(const nlohmann::json& scaling, const char* key, const std::string& where) {
  auto value = json_number(scaling, {key}, where);
  if (!value) throw Error(ErrorCategory::format, where + ": rope_scaling." + key + " is missing");
  if (!(*value > 0) || !std::isfinite(*value))
    throw Error(ErrorCategory::format, where + ": rope_scaling." + key + " must be positive");
  return *value;
}

// _compute_llama3_parameters: pairs whose wavelength exceeds original / low_freq_factor
// turn `factor` times slower, those under original / high_freq_factor are kept, and those
// in between are interpolated. In f32 like transformers' tensors.
void llama3_scaling(const nlohmann::json& scaling, const std::string& where, std::vector<float>& inv_freq) {
  const float factor = static_cast<float>(required(scaling, "factor", where));
  const float low = static_cast<float>(required(scaling, "low_freq_factor", where));
  const float high = static_cast<float>(required(scaling, "high_freq_factor", where));
  const float original = static_cast<float>(required(scaling, "original_max_position_embeddings", where));
  if (!(high > low))
    throw Error(ErrorCategory::format, where + ": rope_scaling.high_freq_factor must exceed low_freq_factor");
  const float low_freq_wavelen = original / low, high_freq_wavelen = original / high;
  for (float& f : inv_freq) {
    const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
    if (wavelen > low_freq_wavelen) {
      f = f / factor;
    } else if (!(wavelen < high_freq_wavelen)) {
      const float smooth = (original / wavelen - low) / (high - low);
      f = (1.0f - smooth) * f / factor + smooth * f;
    }
  }
}

}  // namespace

void apply_hf_rope_scaling(const nlohmann::json& scaling, const std::string& where, std::vector<float>& inv_freq) {
  if (scaling.is_null()) return;
  if (!scaling.is_object()) throw Error(ErrorCategory::format, where + ": rope_scaling is not an object");
  // transformers 4.44.2 reads "rope_type", falling back on the older "type".
  auto type = json_string(scaling, "rope_type", where + ": rope_scaling");
  if (!type) type = json_string(scaling, "type", where + ": rope_scaling");
  if (!type) throw Error(ErrorCategory::format, where + ": rope_scaling has no rope_type");
  if (*type == "default") return;
  if (*type == "linear") {
    const float factor = static_cast<float>(required(scaling, "factor", where));
    for (float& f : inv_freq) f /= factor;
  } else if (*type == "llama3") {
    llama3_scaling(scaling, where, inv_freq);
  } else {
    throw Error(ErrorCategory::unsupported,
                where + ": rope_scaling type '" + *type + "' is not supported (default, linear, llama3)");
  }
}

void apply_rope_freq_factors(const std::vector<float>& factors, const std::string& where,
                             std::vector<float>& inv_freq) {
  if (factors.size() != inv_freq.size())
    throw Error(ErrorCategory::format, where + ": tensor 'rope_freqs.weight' has " + std::to_string(factors.size()) +
                                           " values, expected " + std::to_string(inv_freq.size()) +
                                           " (rotary dimensions / 2)");
  for (size_t j = 0; j < factors.size(); ++j) {
    if (!(factors[j] > 0) || !std::isfinite(factors[j]))
      throw Error(ErrorCategory::format, where + ": tensor 'rope_freqs.weight' holds a non-positive factor");
    inv_freq[j] /= factors[j];
  }
}

}  // namespace kestrel
