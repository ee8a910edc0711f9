// models/stored_quantized.h: linear weights a checkpoint stores already quantized
// (kestrel-quantize --weights int8 | fp8, tools/quantized_checkpoint.h), read as they are.
//
// Each such source tensor keeps its float tensor's name and shape but holds I8 (W8A8) or
// F8_E4M3 (FP8) values; beside it the F32 tensor `<name>_scale` holds one scale per output
// channel ([out, 1] or [out]), one for the whole tensor ([1] or []), or (I8 only, not
// transposed) one per group of in / G columns, G > 1 and in / G a multiple of 32 ([out, G]:
// a GGUF's Q8_0 LM head), w = scale * q. The
// parts of a fused weight (Q, K, V; gate, up) are gathered into the canonical [out, in]
// rows exactly as WeightStore gathers float parts, so the loaded integers are the stored
// ones, bit for bit.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "backend.h"
#include "loaders/weight_source.h"
#include "models/architecture.h"
#include "models/quantize.h"
#include "parallel/shard.h"

namespace kestrel {

class WeightStore;

// The canonical QuantizedWeight of `recipe` (canonical `shape` [out, in]) built from its
// stored quantized source tensors and scales, uploaded to `store`; nullopt when the sources
// hold floats or ggml blocks (or one is missing: the float path reports that). Throws
// Error naming the tensor when the stored data is inconsistent or hostile (a part stored
// as floats beside quantized ones, a wrong shape, a missing scale tensor, a scale of the
// wrong dtype or count, a negative or non-finite scale, an int8 of -128, an E4M3 NaN), when
// `spec` asks for another mode than the stored one (ModelOptions.quantization), and for a
// slice of the weight (tensor-parallel loads of stored quantized weights are not supported).
std::optional<QuantizedWeight> load_stored_quantized(WeightStore& store, const WeightSource& source,
                                                     const WeightRecipe& recipe, const std::vector<int64_t>& shape,
                                                     const WeightSlice& slice, const QuantizationSpec& spec,
                                                     const std::string& what);

// The mode a checkpoint's config.json "kestrel_quantization" block asks for (w8a8 or fp8),
// its keys checked: format ("w8a8" | "fp8"), weight_dtype (absent or "float32": floats
// quantized at load; "int8" with w8a8, "float8_e4m3fn" with fp8: stored quantized),
// weight_scale ("channel" | "tensor"), activation_scheme ("dynamic": one scale per token at
// run time). Anything else is refused naming the key (`what` names the block).
Quantization checkpoint_quantization(const nlohmann::json& block, const std::string& what);

// The name of the scale tensor of the stored quantized tensor `name`.
std::string stored_scale_name(const std::string& name);

}  // namespace kestrel
