// loaders/weight_source.h: named tensors read from a model's files, whatever the format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/types.h"
#include "loaders/gguf_quant.h"

namespace kestrel {

// A tensor as stored in a file: row-major dims (outermost first), bytes in the mapping.
struct SourceTensor {
  std::string name;
  DType dtype = DType::f32;
  // Set when the bytes are ggml blocks (Q8_0, Q4_0, Q4_1) that no DType describes; `dtype`
  // is then meaningless. Blocks run along the innermost dimension (shape.back()).
  std::optional<GgmlType> block_type;
  // Set when the bytes are OCP FP8 E4M3 values (safetensors "F8_E4M3", core/fp8.h); `dtype`
  // is then i8 (one byte each).
  bool fp8_e4m3 = false;
  // Set when the bytes are unsigned (safetensors "U8"): only ever parts of another format
  // (transformers' MXFP4 blocks and scales, loaders/mxfp4_source.h); `dtype` is then i8.
  bool u8 = false;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t bytes = 0;
  std::string file;  // for error messages

  int64_t numel() const;
  std::string shape_string() const;  // "[768, 2304]"
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // nullptr when absent.
  virtual const SourceTensor* find(std::string_view name) const = 0;
  // Where the weights come from, for error messages.
  virtual std::string describe() const = 0;
  // The loader is done with this tensor's bytes for now: a mapped source drops its pages
  // from the resident set (they are read from the file again if the tensor is used again).
  virtual void release(const SourceTensor& /*tensor*/) const {}
};

}  // namespace kestrel
