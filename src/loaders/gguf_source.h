// loaders/gguf_source.h: the tensors of a GGUF file as a WeightSource.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "loaders/gguf.h"
#include "core/mapped_file.h"
#include "loaders/weight_source.h"

namespace kestrel {

// Views every tensor of a parsed GGUF file. ggml's ne[0] is the innermost dimension, so
// shapes are reversed into row-major order: a GGUF linear weight (ne = [in, out]) has
// shape [out, in], the layout of a Hugging Face Linear. F32 / F16 / BF16 tensors carry
// their DType; Q8_0 / Q4_0 / Q4_1 tensors carry their ggml block type instead.
class GgufSource : public WeightSource {
 public:
  // `file` must outlive the source (the tensors point into its memory map).
  explicit GgufSource(const GgufFile& file);
  const SourceTensor* find(std::string_view name) const override;
  std::string describe() const override { return describe_; }
  void release(const SourceTensor& tensor) const override { release_mapped_pages(tensor.data, tensor.bytes); }

 private:
  std::map<std::string, SourceTensor, std::less<>> tensors_;
  std::string describe_;
};

// True when `path` is a regular file that starts with the GGUF magic ("GGUF").
bool is_gguf_file(const std::filesystem::path& path);

}  // namespace kestrel
