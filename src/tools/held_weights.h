// tools/held_weights.h: the weight bytes one rank of Kestrel would hold for a GGUF file or
// a Hugging Face model directory, from the tensor table alone (each tensor's stored ggml
// type or dtype and its shape, from the GGUF header or the safetensors headers; no tensor
// data is read), by the loader's own rules (WeightStore::load in models/weights.cc):
//   - a linear weight whose source tensors hold blocks the quantization keeps
//     (plan_kept_blocks, the decision keep_ggml_blocks takes) is held in kept_layout's
//     layout: Q8_0 as int8 with an f32 scale per 32 columns (36 bytes per 32 weights),
//     Q4_1 (and Q4_0 under --quant int4) as int4 with an f16 scale and min per 32 (20
//     bytes), the other block formats, Q4_0 included, as stored (kquant::block_bytes: 18
//     bytes per 32 for Q4_0); a fused weight whose parts differ is the sum
//     of its parts (QuantFormat::mixed);
//   - a tensor-parallel slice keeps blocks only when its columns start and end on block
//     boundaries, else that weight is materialized (down's always do when the shard was
//     made with ffn_alignment, as Model::load makes it; the output projection's may not);
//     its padding rows (the last ranks' LM head rows past the vocabulary) are zero rows of
//     the same layout;
//   - every other weight (norms, biases, F16 / F32 tensors, the dense fallback) is
//     materialized in the compute dtype, and quantized at load when the mode asks
//     (int8 / int4 / w8a8 / fp8: QuantizationSpec::requantized_format, the LM head as
//     QuantizationSpec::for_lm_head), the float copy then freed unless it is the token
//     embedding;
//   - a tied LM head kept in blocks doubles as the token embedding on a rank of pp = 1
//     (tied_head_doubles_as_embedding): at tp > 1 the whole table plus tied_table_slice's
//     zero rows, the head a view of its rows (lm_head_view); elsewhere a token embedding stored in
//     kept blocks is held whole in them on the first stage (QuantizationSpec::for_embedding:
//     in every mode but none), tied or not; a dense tied head is a view of the dense
//     embedding (slice_served_by, WeightStore::materialize's reuse of a loaded weight),
//     which at tp > 1 with pp = 1 holds the head's padding rows too (tied_table_slice);
//   - the rotary inverse frequencies are f32 on every rank.
// Checkpoints that store quantized weights (kestrel-quantize's I8 / F8_E4M3 tensors with
// their scales, models/stored_quantized.h) are not sized this way (stores_quantized_weights:
// read_model_shape sizes them from their shape).
// The test (tests/unit/held_weights_test.cc) holds it to WeightStore::bytes() of real loads
// on every GGUF fixture and model directory, per rank for tp = 2, 4 and per stage for pp = 2.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "models/architecture.h"
#include "models/quantize.h"
#include "parallel/shard.h"
#include "tools/sizing.h"

namespace kestrel {
class GgufFile;
class WeightSource;
}  // namespace kestrel

namespace kestrel::sizing {

class FileWeights {
 public:
  // A GGUF file: opens and parses its header, metadata and tensor table (memory-mapped).
  // Throws as GgufFile does (Error(format) naming the file and the tensor for a truncated
  // header, an unknown ggml type or a tensor past the end of the file) and as
  // architecture_from_gguf (an unknown architecture, missing keys). A directory: its
  // config.json and safetensors headers, errors as Model::load's.
  explicit FileWeights(const std::filesystem::path& path);
  ~FileWeights();
  FileWeights(const FileWeights&) = delete;
  FileWeights& operator=(const FileWeights&) = delete;

  const Architecture& architecture() const { return arch_; }
  // The tensors, as WeightStore::load reads them.
  const WeightSource& source() const { return *source_; }
  // Whether a tensor holds quantized values that only load_stored_quantized reads (I8, or
  // F8_E4M3): such checkpoints are not sized from their tensors.
  bool stores_quantized_weights() const { return stores_quantized_; }

  // The weights `shard` holds once Model::load has converted them with `quantization`
  // (ModelOptions.quantization; automatic: the file's blocks as stored) and
  // `group_size` (ModelOptions.quant_group_size) in the compute dtype `dtype`, by part
  // (WeightBytes, with `formats` filled) ; `*tied_here` says whether the LM head reads this
  // rank's token embedding. Throws Error(invalid_argument) for options Model::load refuses
  // and Error(format) naming a tensor the loader would find missing or misshapen.
  WeightBytes held(const Shard& shard, Quantization quantization, int group_size, DType dtype, bool* tied_here) const;
  // The FFN alignment Model::load splits this model's FFN by under these options
  // (ffn_split_alignment, models/quantize.h): make_shard's ffn_align.
  FfnAlignment ffn_alignment(Quantization quantization, int group_size) const;

 private:
  // The loader's spec for these options (automatic resolved as Model::load does).
  QuantizationSpec loader_spec(Quantization quantization, int group_size) const;

  std::unique_ptr<GgufFile> file_;  // a GGUF file's map, which source_ points into
  std::unique_ptr<WeightSource> source_;
  Architecture arch_;
  bool stores_quantized_ = false;
};

}  // namespace kestrel::sizing
