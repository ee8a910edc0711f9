// loaders/gguf_writer.h: a GGUF file read whole and written back with edits (metadata set or
// erased, tensors replaced), for tools that derive a model file from another
// (kestrel-quantize) and for tests that need a file with one thing wrong.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "loaders/gguf.h"

namespace kestrel {

class GgufWriter {
 public:
  // A copy of every key and tensor of `source` (tensor bytes copied into memory).
  explicit GgufWriter(const std::filesystem::path& source);

  // Replaces the value of `key`, or appends the key.
  GgufWriter& set(const std::string& key, GgufValue value);
  GgufWriter& erase(std::string_view key);
  GgufWriter& drop_tensor(std::string_view name);
  // Tensor `name` becomes `ne` (ggml order) of type `type` holding `bytes`; throws
  // Error(internal) when no tensor has that name or the size does not match.
  GgufWriter& replace_tensor(std::string_view name, GgmlType type, std::vector<int64_t> ne, std::string bytes);
  // An F32 tensor of values [rows, cols] row-major (ne = {cols, rows}).
  GgufWriter& replace_tensor_f32(std::string_view name, const std::vector<float>& values,
                                 const std::vector<int64_t>& ne);

  // Writes GGUF version 3 with the source's alignment.
  void write(const std::filesystem::path& path) const;

 protected:
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
    std::string bytes;
  };
  uint64_t alignment_ = 32;
  std::vector<GgufMetadataEntry> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace kestrel
