#include "models/rope_scaling.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/architecture.h"
#include "models/config_json.h"
#include "models/rope.h"

namespace kestrel {

namespace {

double positive(const nlohmann::json& scaling, const char* key, const std::string& where,
                std::optional<double> fallback = std::nullopt) {
  auto value = json_number(scaling, {key}, where);
  if (!value) value = fallback;
  if (!value) throw Error(ErrorCategory::format, where + ": rope_scaling." + key + " is missing");
  if (!(*value > 0) || !std::isfinite(*value))
    throw Error(ErrorCategory::format, where + ": rope_scaling." + key + " must be positive");
  return *value;
}

// _compute_dynamic_ntk_parameters: the base grows with the context n beyond `original`.
std::vector<float> dynamic_inv_freq(const RopeContextScaling& d, int rot, int context) {
  const double n = context;
  const double base = d.theta * std::pow(d.factor * n / d.original - (d.factor - 1.0),
                                         static_cast<double>(rot) / (rot - 2));
  return rope_inv_freq(base, rot);
}

// The context a scaling factor stretches `original` positions to (transformers sets no
// limit), within validate_config's range.
int stretched_context(int original, double factor) {
  return static_cast<int>(std::min(std::floor(original * factor), double{1 << 24}));
}

}  // namespace

std::vector<float> rotary_inv_freq_for_context(const LayerKinds& kinds, int context) {
  const RopeContextScaling& c = kinds.rotary_context;
  if (c.kind == RopeContextScaling::Kind::none || context <= c.original) return kinds.rotary_inv_freq;
  if (c.kind == RopeContextScaling::Kind::longrope) return c.long_inv_freq;
  return dynamic_inv_freq(c, kinds.rotary_dim, context);
}

double longrope_attention_factor(int max_positions, int original) {
  const double scale = static_cast<double>(max_positions) / original;
  return scale <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(scale) / std::log(static_cast<double>(original)));
}

void apply_longrope(const std::vector<float>& short_factor, const std::vector<float>& long_factor, int original,
                    double theta, double attention_factor, const std::string& where, LayerKinds& kinds) {
  const int rot = kinds.rotary_dim;
  // 1 / (factor[j] * theta^(2j / rot)) in f32, as transformers' Phi3LongRoPEScaledRotaryEmbedding.
  auto table = [&](const std::vector<float>& factors, const char* name) {
    if (factors.size() != static_cast<size_t>(rot / 2))
      throw Error(ErrorCategory::format, where + ": rope_scaling." + name + " has " +
                                             std::to_string(factors.size()) + " values, expected " +
                                             std::to_string(rot / 2) + " (rotary dimensions / 2)");
    std::vector<float> inv_freq(factors.size());
    for (size_t j = 0; j < factors.size(); ++j) {
      if (!(factors[j] > 0) || !std::isfinite(factors[j]))
        throw Error(ErrorCategory::format, where + ": rope_scaling." + name + " holds a non-positive factor");
      const float freq = static_cast<float>(std::pow(theta, static_cast<double>(static_cast<float>(2 * j) / rot)));
      inv_freq[j] = 1.0f / (factors[j] * freq);
    }
    return inv_freq;
  };
  if (original <= 0) throw Error(ErrorCategory::format, where + ": original_max_position_embeddings must be positive");
  kinds.rotary_inv_freq = table(short_factor, "short_factor");
  kinds.rotary_context.kind = RopeContextScaling::Kind::longrope;
  kinds.rotary_context.original = original;
  kinds.rotary_context.long_inv_freq = table(long_factor, "long_factor");
  kinds.rotary_attention_factor = static_cast<float>(attention_factor);
}

void apply_yarn(double theta, double factor, int original, double beta_fast, double beta_slow,
                double attention_factor, LayerKinds& kinds, bool truncate) {
  // _compute_yarn_parameters: the dimension at which a pair turns `rotations` times over
  // the original context, rounded outwards (with `truncate`) and clamped to [0, rot - 1].
  const int rot = kinds.rotary_dim;
  auto correction_dim = [&](double rotations) {
    return rot * std::log(original / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(theta));
  };
  const double low_dim = correction_dim(beta_fast), high_dim = correction_dim(beta_slow);
  const double low = std::max(truncate ? std::floor(low_dim) : low_dim, 0.0);
  double high = std::min(truncate ? std::ceil(high_dim) : high_dim, static_cast<double>(rot - 1));
  if (low == high) high += 0.001;  // as transformers, against a zero-width ramp
  std::vector<float>& inv_freq = kinds.rotary_inv_freq;
  for (size_t j = 0; j < inv_freq.size(); ++j) {
    const float ramp = std::clamp(static_cast<float>((static_cast<double>(j) - low) / (high - low)), 0.0f, 1.0f);
    const float extrapolation = 1.0f - ramp;  // weight of the unscaled frequency
    const float interpolated = inv_freq[j] / static_cast<float>(factor);
    inv_freq[j] = interpolated * (1.0f - extrapolation) + inv_freq[j] * extrapolation;
  }
  kinds.rotary_attention_factor = static_cast<float>(attention_factor);
}

void apply_gguf_yarn(const GgufFile& file, const std::string& prefix, double theta, LayerKinds& kinds,
                     ModelConfig& config, bool truncate) {
  const std::string where = file.path().string(), key = prefix + ".rope.scaling.";
  auto read = [&](const char* name, std::optional<double> fallback) {
    std::optional<double> value = file.get_float(key + name);
    if (!value) value = fallback;
    if (!value) throw Error(ErrorCategory::format, where + ": metadata key '" + key + name + "' is missing");
    if (!(*value > 0) || !std::isfinite(*value))
      throw Error(ErrorCategory::format, where + ": metadata key '" + key + name + "' must be positive");
    return *value;
  };
  // ggml scales the attention factor by yarn_log_multiplier only for DeepSeek 2.
  if (file.get_float(key + "yarn_log_multiplier").value_or(0.0) != 0.0)
    throw Error(ErrorCategory::unsupported, where + ": metadata key '" + key + "yarn_log_multiplier' is not supported");
  const double factor = read("factor", std::nullopt);
  const double original = read("original_context_length", config.max_positions);
  const double attention = read("attn_factor", 1.0) * (1.0 + 0.1 * std::log(factor));
  apply_yarn(theta, factor, static_cast<int>(original), 32.0, 1.0, attention, kinds, truncate);
  config.max_positions = std::max(config.max_positions, stretched_context(static_cast<int>(original), factor));
}

void apply_dynamic_ntk(double theta, double factor, const std::string& where, LayerKinds& kinds,
                       ModelConfig& config) {
  if (factor < 1.0) throw Error(ErrorCategory::format, where + ": rope_scaling.factor must be at least 1 for dynamic");
  kinds.rotary_context.kind = RopeContextScaling::Kind::dynamic;
  kinds.rotary_context.original = config.max_positions;
  kinds.rotary_context.theta = theta;
  kinds.rotary_context.factor = factor;
  config.max_positions = stretched_context(config.max_positions, factor);
}

void apply_hf_llama_rope_scaling(const nlohmann::json& scaling, const std::string& where, double theta,
                                 LayerKinds& kinds, ModelConfig& config) {
  if (scaling.is_null()) return;
  if (!scaling.is_object()) throw Error(ErrorCategory::format, where + ": rope_scaling is not an object");
  auto type = json_string(scaling, "rope_type", where + ": rope_scaling");
  if (!type) type = json_string(scaling, "type", where + ": rope_scaling");
  if (type == "dynamic") {
    apply_dynamic_ntk(theta, positive(scaling, "factor", where), where, kinds, config);
  } else if (type == "yarn") {
    // transformers 4.44.2 measures YaRN's ramp over max_position_embeddings; later versions
    // read rope_scaling.original_max_position_embeddings: refused where the two differ.
    if (auto original = json_int(scaling, {"original_max_position_embeddings"}, where);
        original && *original != config.max_positions)
      throw Error(ErrorCategory::unsupported,
                  where + ": rope_scaling.original_max_position_embeddings differs from max_position_embeddings "
                          "(transformers 4.44.2 ignores it, later versions do not)");
    const double factor = positive(scaling, "factor", where);
    const double attention = positive(scaling, "attention_factor", where, 0.1 * std::log(factor) + 1.0);
    // `or` in transformers: a 0 or null beta falls back on the default too.
    auto beta = [&](const char* key, double fallback) {
      auto value = json_number(scaling, {key}, where);
      return value && *value != 0 ? positive(scaling, key, where) : fallback;
    };
    apply_yarn(theta, factor, config.max_positions, beta("beta_fast", 32.0), beta("beta_slow", 1.0), attention, kinds);
    config.max_positions = stretched_context(config.max_positions, factor);
  } else if (!type || type == "default" || type == "linear" || type == "llama3") {
    apply_hf_rope_scaling(scaling, where, kinds.rotary_inv_freq);
  } else {
    throw Error(ErrorCategory::unsupported, where + ": rope_scaling type '" + *type +
                                                "' is not supported (default, linear, llama3, dynamic, yarn)");
  }
}

}  // namespace kestrel
