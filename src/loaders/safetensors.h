// loaders/safetensors.h: memory-mapped safetensors files, single or sharded.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "loaders/weight_source.h"

namespace kestrel {

// One .safetensors file: an 8-byte little-endian header length, a JSON header mapping
// names to {dtype, shape, data_offsets}, then the data. Every entry is checked against
// the file: dtype known, offsets inside the data, size equal to shape x dtype.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  const std::map<std::string, SourceTensor, std::less<>>& tensors() const { return tensors_; }

 private:
  MappedFile file_;
  std::map<std::string, SourceTensor, std::less<>> tensors_;
};

// All the safetensors of a model directory: model.safetensors, or the shards listed by
// model.safetensors.index.json (each shard must hold exactly the tensors the index names).
class SafetensorsSource : public WeightSource {
 public:
  explicit SafetensorsSource(const std::filesystem::path& dir);
  const SourceTensor* find(std::string_view name) const override;
  std::string describe() const override { return describe_; }
  void release(const SourceTensor& tensor) const override { release_mapped_pages(tensor.data, tensor.bytes); }
  static bool present(const std::filesystem::path& dir);
  // Every tensor of the model, by name.
  const std::map<std::string, const SourceTensor*, std::less<>>& tensors() const { return index_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SourceTensor*, std::less<>> index_;
  std::string describe_;
};

}  // namespace kestrel
