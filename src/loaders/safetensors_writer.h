// loaders/safetensors_writer.h: writes one .safetensors file (the layout SafetensorsFile
// reads: an 8-byte little-endian header length, a JSON header padded to 8 bytes, the data).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "kestrel/types.h"

namespace kestrel {

class SafetensorsWriter {
 public:
  // A tensor whose bytes the writer copies now. `dtype` is the safetensors name ("F32",
  // "I8", "F8_E4M3", ...); `bytes` must hold shape's product x the dtype's size.
  void add(const std::string& name, const std::string& dtype, std::vector<int64_t> shape, const void* data,
           size_t bytes);
  // Writes every tensor added, in name order, with `metadata` (string values) as __metadata__.
  // Throws Error(io) naming the file when it cannot be written.
  void write(const std::filesystem::path& path, const std::vector<std::pair<std::string, std::string>>& metadata) const;

 private:
  struct Entry {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Entry> entries_;
};

// The safetensors name of a DType ("F32", "F16", "BF16", "I8", "I32").
const char* safetensors_dtype_name(DType dtype) noexcept;

}  // namespace kestrel
