// loaders/gguf.h: a memory-mapped reader for GGUF files (llama.cpp's model format).
//
// A GGUF file (versions 2 and 3, little-endian) is:
//   header:   "GGUF", u32 version, u64 tensor_count, u64 metadata_count
//   metadata: metadata_count x (string key, u32 value_type, value)
//   tensors:  tensor_count x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type,
//             u64 offset)
//   padding up to `general.alignment` (default 32), then the data section; each tensor's
//   bytes start at data_section + offset. Strings are u64 length + UTF-8 bytes (no NUL);
//   arrays are u32 element_type + u64 count + elements.
//
// Everything is validated when the file is opened: every read is bounds-checked, counts
// and lengths are checked against the bytes left before anything is allocated, and every
// tensor's bytes lie inside the file. A malformed file throws Error(format) naming the
// file and the key or tensor at fault; version 1 and big-endian files throw
// Error(unsupported). Parsed metadata takes at most a few times the file's size in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "loaders/gguf_quant.h"

namespace kestrel {

// GGUF metadata value types; the values are the on-disk ids, and the same as the index of
// each alternative in GgufValue and GgufArray::Items.
enum class GgufValueType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

const char* to_string(GgufValueType type) noexcept;  // "u8", ..., "string", "array"

// A metadata array: its elements stored compactly by type (so an array of a million u8
// takes a megabyte). Nested arrays hold further GgufArrays.
struct GgufArray {
  using Items = std::variant<std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>,
                             std::vector<int16_t>, std::vector<uint32_t>, std::vector<int32_t>,
                             std::vector<float>, std::vector<bool>, std::vector<std::string>,
                             std::vector<GgufArray>, std::vector<uint64_t>, std::vector<int64_t>,
                             std::vector<double>>;
  Items items;

  GgufValueType element_type() const { return static_cast<GgufValueType>(items.index()); }
  size_t size() const;
};

// One metadata value; `value.index()` is its GgufValueType.
using GgufValue = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, GgufArray, uint64_t, int64_t, double>;

inline GgufValueType value_type(const GgufValue& value) {
  return static_cast<GgufValueType>(value.index());
}

struct GgufMetadataEntry {
  std::string key;
  GgufValue value;
};

// One tensor's description and a view of its bytes in the mapped file.
struct GgufTensor {
  std::string name;
  // ggml order: ne[0] is the innermost (contiguous) dimension. Empty for a scalar.
  std::vector<int64_t> ne;
  // The same dimensions row-major, outermost first: shape == reverse(ne).
  std::vector<int64_t> shape;
  GgmlType type = GgmlType::f32;
  int64_t element_count = 0;
  uint64_t offset = 0;     // from the start of the data section
  uint64_t byte_size = 0;  // element_count / block_size * block_bytes
  // Into the memory map, valid while the GgufFile lives. No alignment beyond what the
  // file's `general.alignment` gives; read it with memcpy or dequantize_row.
  const uint8_t* data = nullptr;

  // Elements of the innermost dimension (ne[0]; 1 for a scalar).
  int64_t row_length() const { return ne.empty() ? 1 : ne[0]; }
  std::span<const uint8_t> bytes() const { return {data, static_cast<size_t>(byte_size)}; }
};

class GgufFile {
 public:
  // Maps and parses the file. Throws Error(io) when it cannot be read, Error(format) when
  // it is malformed, Error(unsupported) for GGUF version 1 or a big-endian file.
  explicit GgufFile(const std::filesystem::path& path);
  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;

  const std::filesystem::path& path() const { return map_.path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  // Byte offset of the data section in the file (a multiple of alignment()).
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return map_.size(); }

  // --- metadata ------------------------------------------------------------------------
  // All entries in file order.
  const std::vector<GgufMetadataEntry>& metadata() const { return metadata_; }
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  // The raw value, or nullptr when the key is absent.
  const GgufValue* find(std::string_view key) const;
  const GgufArray* find_array(std::string_view key) const;

  // Typed getters: nullopt when the key is absent; Error(format) naming the key when it
  // holds another type or a value out of range.
  //   get_int: any integer type (a u64 above INT64_MAX is out of range).
  //   get_float: f32, f64 or any integer type.
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
  std::optional<std::vector<float>> get_float_array(std::string_view key) const;  // f32/f64
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;  // integers

  // --- tensors -------------------------------------------------------------------------
  // All tensors in file order.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  // nullptr when absent.
  const GgufTensor* find_tensor(std::string_view name) const;
  // Throws Error(format) naming the file and tensor when absent.
  const GgufTensor& tensor(std::string_view name) const;

  // The tensor's values as f32, element_count() of them in ggml order (ne[0] fastest,
  // which is row-major order over shape). Throws Error(format) naming the tensor when
  // its row length is not a multiple of its type's block size.
  std::vector<float> dequantize(const GgufTensor& tensor) const;
  // Same into `out`, which must hold exactly element_count floats (else invalid_argument).
  void dequantize(const GgufTensor& tensor, std::span<float> out) const;

 private:
  friend class GgufParser;

  [[noreturn]] void fail_key(std::string_view key, const std::string& what) const;

  MappedFile map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufMetadataEntry> metadata_;
  std::unordered_map<std::string_view, size_t> metadata_index_;  // keys view metadata_
  std::vector<GgufTensor> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;  // names view tensors_
};

}  // namespace kestrel
