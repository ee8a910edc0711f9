// models/rope_scaling.h: rope scalings beyond a fixed rescaling of the frequencies:
// YaRN (a static blend plus an attention factor), LongRoPE (Phi-3: per-pair factors, a
// short and a long set) and dynamic NTK (a base that grows with the context).
//
// The KV cache holds keys already rotated, so a rotation that changed with a sequence's
// length (as transformers recomputes it at every forward call) would leave earlier keys
// rotated differently from later ones, and would make a sequence's numbers depend on how
// its prompt was chunked and batched. Kestrel instead fixes the table once per session
// from the longest sequence the session allows (SessionOptions::max_sequence_tokens), as
// llama.cpp fixes it from its context size n_ctx: the result equals transformers' forward
// over a whole sequence of that length, and, for LongRoPE, every shorter one on the same
// side of original_max_position_embeddings. docs/MODELS.md ("Rope scaling") has the
// details and where the references differ.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace kestrel {

struct LayerKinds;
struct ModelConfig;

// A rotary table that depends on the session's context (its max_sequence_tokens).
struct RopeContextScaling {
  enum class Kind : uint8_t {
    none,     // LayerKinds::rotary_inv_freq whatever the context
    longrope, // rotary_inv_freq up to `original` positions, `long_inv_freq` beyond
    dynamic,  // dynamic NTK: the base theta * (factor * n / original - (factor - 1))^(rot / (rot - 2))
              // for a context of n > original positions
  };
  Kind kind = Kind::none;
  int original = 0;
  std::vector<float> long_inv_freq;  // longrope
  double theta = 0.0;                // dynamic
  double factor = 1.0;               // dynamic
};

// The inverse frequencies [rotary_dim / 2] a session allowing `context` positions per
// sequence rotates with.
std::vector<float> rotary_inv_freq_for_context(const LayerKinds& kinds, int context);

// config.json's rope_scaling for a Llama-family model, as transformers 4.44.2's
// ROPE_INIT_FUNCTIONS compute it: what apply_hf_rope_scaling handles (linear, llama3) plus
// "dynamic" (factor) and "yarn" (factor, attention_factor, beta_fast, beta_slow), for both
// of which the model's max_positions becomes max_position_embeddings * factor (the context
// the factor stretches the trained one to; transformers sets no limit). `theta`: rope_theta.
void apply_hf_llama_rope_scaling(const nlohmann::json& rope_scaling, const std::string& where, double theta,
                                 LayerKinds& kinds, ModelConfig& config);

// Dynamic NTK from its parameters: `theta` is the base up to the model's max_positions
// (the original context), which becomes max_positions x factor.
void apply_dynamic_ntk(double theta, double factor, const std::string& where, LayerKinds& kinds,
                       ModelConfig& config);

// Phi-3's "longrope" (older configs: "su"): short_factor / long_factor [rotary_dim / 2],
// original_max_position_embeddings, and the attention factor
// sqrt(1 + ln(s) / ln(original)), s = max_position_embeddings / original, when s > 1.
// `where` names the file in errors (a factor that is not positive).
void apply_longrope(const std::vector<float>& short_factor, const std::vector<float>& long_factor, int original,
                    double theta, double attention_factor, const std::string& where, LayerKinds& kinds);
// transformers' LongRoPE attention factor for a model of `max_positions` trained at `original`.
double longrope_attention_factor(int max_positions, int original);

// YaRN from its parameters: frequencies blended between inv_freq (pairs that turn more
// than beta_fast times over `original` positions) and inv_freq / factor (fewer than
// beta_slow times) with a linear ramp, and cos / sin scaled by `attention_factor`. The
// ramp's ends are rounded outwards to whole pairs unless `truncate` is false (transformers
// >= 4.55's rope_scaling.truncate, false for gpt-oss).
void apply_yarn(double theta, double factor, int original, double beta_fast, double beta_slow,
                double attention_factor, LayerKinds& kinds, bool truncate = true);

class GgufFile;
// llama.cpp's YaRN keys "<prefix>.rope.scaling.*" (type "yarn"): factor,
// original_context_length (else the context length) and attn_factor (else 1), which
// multiplies ggml's own 1 + 0.1 ln(factor); beta_fast / beta_slow are llama.cpp's 32 / 1.
// `theta`: the file's rope.freq_base. max_positions becomes at least original x factor.
// ggml rounds the ramp's ends to whole pairs for every model; `truncate` false keeps them
// as transformers does for a model defined that way (gpt-oss).
void apply_gguf_yarn(const GgufFile& file, const std::string& prefix, double theta, LayerKinds& kinds,
                     ModelConfig& config, bool truncate = true);

}  // namespace kestrel
