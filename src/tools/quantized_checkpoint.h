// tools/quantized_checkpoint.h: a checkpoint of stored int8 (W8A8) or FP8 E4M3 weights
// with their scales (kestrel-quantize --weights int8 | fp8).
//
// From a Hugging Face directory, the directory `out`:
//   model.safetensors  every linear weight that W8A8 / FP8 quantize (QKV, attention output,
//                      FFN up / gate, FFN down of every layer) under its own name and shape as
//                      I8 or F8_E4M3, plus the F32 tensor `<name>_scale`: [out, 1] (one scale
//                      per output channel: max |w_row| / 127 or / 448) or [1] (FP8 per
//                      tensor); w = scale * q. The other tensors as the source stores them,
//                      those SmoothQuant changes (norms, biases) in F32. The LM head and
//                      embeddings stay float (Kestrel keeps the LM head int8 weight-only,
//                      quantized at load), but for a GGUF's Q8_0 head (below).
//   config.json        the source's, plus "kestrel_quantization" (docs/QUANTIZATION.md).
//   other files        copied (tokenizer, generation config).
// The integers are exactly those the load-time modes compute from the smoothed floats
// (models/quantize.h: quantize_int8 / quantize_fp8 per canonical row), so the checkpoint
// computes bit for bit what `--weights float` computes when loaded as w8a8 / fp8.
// From a GGUF file (Llama architecture, byte-level BPE tokenizer: tools/gguf_to_hf.h), the
// same directory with config.json, tokenizer.json and tokenizer_config.json rebuilt from
// its metadata, its tensors under their Hugging Face names (Q / K rows in Hugging Face's
// rotary order), a Q8_0 LM head as I8 with [out, in / 32] scales (its blocks exactly: what
// W8A8 / FP8 keep of the GGUF), other ggml blocks that stay float in F32.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "kestrel/model.h"
#include "tools/smoothquant.h"

namespace kestrel::tools {

enum class CheckpointWeights : uint8_t {
  float32,  // the smoothed floats (write_smoothquant_checkpoint): quantized at load
  int8,     // W8A8: I8 weights, one F32 scale per output channel
  fp8,      // FP8: F8_E4M3 weights, F32 scales per channel or per tensor
};
enum class ScaleGranularity : uint8_t { channel, tensor };

struct QuantizedCheckpointOptions {
  CheckpointWeights weights = CheckpointWeights::int8;
  ScaleGranularity fp8_scale = ScaleGranularity::channel;  // int8 weights are always per channel
};
// Parse "float" | "int8" | "fp8" and "channel" | "tensor"; Error(invalid_argument) naming `what`.
CheckpointWeights parse_checkpoint_weights(std::string_view text, std::string_view what = "--weights");
ScaleGranularity parse_scale_granularity(std::string_view text, std::string_view what = "--fp8-scale");

// Writes the checkpoint of `model` (loaded unquantized from a Hugging Face directory) with
// its weights smoothed by `calibration`, or not smoothed when `calibration` is null.
// options.weights == float32 needs a calibration and writes write_smoothquant_checkpoint's.
void write_quantized_checkpoint(const Model& model, const Calibration* calibration,
                                const SmoothQuantOptions& smoothing, const QuantizedCheckpointOptions& options,
                                const std::filesystem::path& out);

}  // namespace kestrel::tools
