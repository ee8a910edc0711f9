// loaders/mxfp4_source.h: transformers' MXFP4 checkpoints (gpt-oss's released experts) read
// as ggml's MXFP4 blocks.
//
// transformers stores an MXFP4 matrix NAME [..., rows, cols] as two U8 tensors:
//   NAME_blocks [..., rows, cols / 32, 16]: per 32 columns, 16 bytes of E2M1 nibbles, byte j
//     holding column 2j in its low nibble and column 2j + 1 in its high one;
//   NAME_scales [..., rows, cols / 32]: the E8M0 exponent of each 32 columns (2^(e - 127)).
// (transformers' convert_moe_packed_tensors reads them so, then transposes the matrix to
// its [in, out] parameter.) An Mxfp4Source presents "NAME#i", the rows of leading index i
// (an expert), as a 2-D tensor [rows, cols] of GgmlType::mxfp4 blocks (17 bytes: the E8M0
// byte, then column j < 16 in the low nibble of byte j and column j + 16 in the high one),
// repacked into memory it holds until the tensor is released. Where NAME ends in one of
// `paired_rows`, its rows alternate two matrices (gpt-oss's gate_up_proj: gate, up, gate,
// ...): they are presented as [the even rows | the odd rows]. Every other name is the inner
// source's tensor.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loaders/weight_source.h"

namespace kestrel {

class Mxfp4Source final : public WeightSource {
 public:
  Mxfp4Source(std::unique_ptr<WeightSource> inner, std::vector<std::string> paired_rows);

  // Throws Error(format) naming the tensors when NAME_blocks and NAME_scales disagree or
  // are not U8 of the shapes above, or the index is out of range.
  const SourceTensor* find(std::string_view name) const override;
  std::string describe() const override { return inner_->describe(); }
  void release(const SourceTensor& tensor) const override;

 private:
  struct Packed {
    SourceTensor tensor;
    std::vector<uint8_t> bytes;
  };
  std::unique_ptr<WeightSource> inner_;
  std::vector<std::string> paired_rows_;
  mutable std::map<std::string, Packed, std::less<>> packed_;
};

}  // namespace kestrel
