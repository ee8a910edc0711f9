// tools/smoothquant.h: SmoothQuant calibration and the W8A8 checkpoint (kestrel-quantize).
//
// W8A8 rounds each token's activations to 8 bits with one scale per token, so a few input
// channels with large values (the outliers of LLM activations) make every other channel
// of that token coarse. SmoothQuant (Xiao et al., 2023) moves that range into the
// weights: input channel j of a linear layer y = x W^T is divided by s_j and column j of
// W multiplied by s_j, which leaves y unchanged in exact arithmetic, with
//     s_j = max |x_j|^alpha / max_i |W_ij|^(1 - alpha)
// (max |x_j| over calibration text, alpha the migration strength). The 1 / s_j is folded
// into what produces x, so nothing is added at run time:
//   - the QKV input: the attention norm's weight (and bias);
//   - the FFN up (and gate) input: the FFN norm's weight (and bias);
//   - a gated FFN's down input act(gate) * up: the up rows (act(gate) * up / s = act(gate)
//     * (up / s)), and their bias;
//   - the attention output projection's input, softmax(q k^T) v per head: the V rows (and V
//     bias) of the QKV projection. Attention is linear in V, so dividing V's row d of KV
//     head g by s divides channel d of every query head that reads head g. The query heads
//     of one KV group therefore share one factor per channel, computed from the maxima
//     over the group (for GQA / MQA; one head each otherwise).
// A norm shared by the attention and the FFN (GPT-J's single ln_1) gets one factor for
// both, from the maxima over both weights.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kestrel/model.h"
#include "loaders/weight_source.h"

namespace kestrel::tools {

// The migration strength of each kind of smoothed input, where it differs from the
// model-wide alpha (a value < 0: use alpha).
struct InputAlphas {
  float qkv = -1.0f, attn_out = -1.0f, ffn_up = -1.0f, ffn_down = -1.0f;
  bool any() const { return qkv >= 0.0f || attn_out >= 0.0f || ffn_up >= 0.0f || ffn_down >= 0.0f; }
};

struct SmoothQuantOptions {
  float alpha = 0.5f;             // in [0, 1]: 0 leaves the activations, 1 moves all their range
  InputAlphas input_alpha;        // per kind of input, overriding alpha (a GPT-J shared norm uses qkv's)
  // Choose alpha per smoothed input instead (tools/smoothquant_search.h): each of
  // alpha_grid is tried on `search_rows` sampled calibration rows, and the one with the
  // smallest simulated W8A8 output error is kept.
  bool search_alpha = false;
  std::vector<float> alpha_grid = {0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f, 0.9f};
  int search_rows = 256;
  // Linear weights kept int8 weight-only, their activations in f32 (qkv_weight, out_weight,
  // up_weight, down_weight): recorded in the checkpoint, honoured at load.
  std::vector<std::string> float_activations;
  int calibration_tokens = 2048;  // tokens of the calibration text used (at most)
  int chunk_tokens = 512;         // tokens per forward pass (each chunk from an empty context)
};
void validate(const SmoothQuantOptions& options);  // Error(invalid_argument) naming the field

// The smoothing factors s of one layer; down_in is empty for a non-gated FFN.
struct LayerSmoothing {
  std::vector<float> attn_in;  // [H]
  std::vector<float> ffn_in;   // [H]
  std::vector<float> down_in;  // [F]
  std::vector<float> out_in;   // [num_kv_heads * head_dim]: channel d of KV head g
  // The alpha each was computed with (options.alpha, or the searched one).
  float attn_alpha = 0.0f, ffn_alpha = 0.0f, down_alpha = 0.0f, out_alpha = 0.0f;
};

struct Calibration {
  std::vector<LayerSmoothing> layers;
  int tokens = 0;  // calibration tokens that ran
};

// Runs `ids` (in chunks of options.chunk_tokens, up to options.calibration_tokens) through
// `model`, which must be a single-rank CPU model with dense (unquantized) weights, records
// max |x_j| of every smoothable input and returns the factors.
Calibration calibrate_smoothquant(const std::shared_ptr<const Model>& model, std::span<const int32_t> ids,
                                  const SmoothQuantOptions& options);

// What a checkpoint's config records of the smoothing: the alphas (one number, one per kind
// of input, or one object per layer when searched) and the inputs smoothed.
nlohmann::json alphas(const Calibration& calibration, const SmoothQuantOptions& options);
nlohmann::json smoothed_inputs(bool gated);

// Writes a W8A8 checkpoint of `model`, its smoothed tensors in F32 and the others as stored:
// - from a Hugging Face directory, the directory `out`: model.safetensors, config.json
//   with "kestrel_quantization" added, and the source directory's other files (tokenizer,
//   generation config) copied;
// - from a GGUF file, the GGUF file `out` with kestrel.quantization.* keys added.
// Either marks the checkpoint W8A8, which Quantization::automatic then loads as
// Quantization::w8a8 (docs/QUANTIZATION.md).
void write_smoothquant_checkpoint(const Model& model, const Calibration& calibration,
                                  const SmoothQuantOptions& options, const std::filesystem::path& out);

// The values of a source tensor of `model` after smoothing with `calibration`, in f32 (ggml
// blocks dequantized), or nullopt for a tensor the smoothing leaves as stored. Used by the
// quantized checkpoint writer (tools/quantized_checkpoint.h).
using SmoothedValues = std::function<std::optional<std::vector<float>>(const SourceTensor& tensor)>;
SmoothedValues smoothed_values(const Model& model, const Calibration& calibration);

}  // namespace kestrel::tools
