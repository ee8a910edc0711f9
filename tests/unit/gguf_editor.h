// A GGUF file read whole and written back with edits, for tests that need a real model file
// with one thing wrong (a key changed or removed, a tensor missing or reshaped).
#pragma once

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "loaders/gguf.h"

namespace kestrel::testing {

class GgufEditor {
 public:
  explicit GgufEditor(const std::filesystem::path& source) : alignment_(32) {
    GgufFile file(source);
    alignment_ = file.alignment();
    metadata_ = file.metadata();
    for (const GgufTensor& t : file.tensors())
      tensors_.push_back({t.name, t.ne, static_cast<uint32_t>(t.type),
                          std::string(reinterpret_cast<const char*>(t.data), t.byte_size)});
  }

  // Replaces the value of `key`, or appends the key.
  GgufEditor& set(const std::string& key, GgufValue value) {
    for (auto& entry : metadata_)
      if (entry.key == key) return entry.value = std::move(value), *this;
    metadata_.push_back({key, std::move(value)});
    return *this;
  }
  GgufEditor& erase(std::string_view key) {
    std::erase_if(metadata_, [&](const GgufMetadataEntry& e) { return e.key == key; });
    return *this;
  }
  GgufEditor& drop_tensor(std::string_view name) {
    std::erase_if(tensors_, [&](const Tensor& t) { return t.name == name; });
    return *this;
  }
  // An F32 tensor of row-major `shape`, zero-filled, in place of `name`.
  GgufEditor& replace_tensor(std::string_view name, const std::vector<int64_t>& shape) {
    for (auto& t : tensors_) {
      if (t.name != name) continue;
      t.ne.assign(shape.rbegin(), shape.rend());
      t.type = static_cast<uint32_t>(GgmlType::f32);
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      t.bytes.assign(static_cast<size_t>(n) * sizeof(float), '\0');
    }
    return *this;
  }

  void write(const std::filesystem::path& path) const {
    std::string out = "GGUF";
    put<uint32_t>(out, 3);
    put<uint64_t>(out, tensors_.size());
    put<uint64_t>(out, metadata_.size());
    for (const auto& entry : metadata_) {
      put_string(out, entry.key);
      put<uint32_t>(out, static_cast<uint32_t>(value_type(entry.value)));
      put_value(out, entry.value);
    }
    uint64_t offset = 0;
    for (const auto& t : tensors_) {
      put_string(out, t.name);
      put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
      for (int64_t d : t.ne) put<uint64_t>(out, static_cast<uint64_t>(d));
      put<uint32_t>(out, t.type);
      put<uint64_t>(out, offset);
      offset = aligned(offset + t.bytes.size());
    }
    out.resize(aligned(out.size()), '\0');
    for (const auto& t : tensors_) {
      out += t.bytes;
      out.resize(aligned(out.size()), '\0');
    }
    std::ofstream(path, std::ios::binary).write(out.data(), static_cast<std::streamsize>(out.size()));
  }

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> ne;
    uint32_t type;
    std::string bytes;
  };

  uint64_t aligned(uint64_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }

  template <class T>
  static void put(std::string& out, T value) {
    char b[sizeof(T)];
    std::memcpy(b, &value, sizeof(T));
    out.append(b, sizeof(T));
  }
  static void put_string(std::string& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out += s;
  }
  static void put_array(std::string& out, const GgufArray& a) {
    put<uint32_t>(out, static_cast<uint32_t>(a.element_type()));
    put<uint64_t>(out, a.size());
    std::visit(
        [&](const auto& items) {
          using E = typename std::decay_t<decltype(items)>::value_type;
          for (const auto& item : items) {
            if constexpr (std::is_same_v<E, bool>) put<uint8_t>(out, item ? 1 : 0);
            else if constexpr (std::is_same_v<E, std::string>) put_string(out, item);
            else if constexpr (std::is_same_v<E, GgufArray>) put_array(out, item);
            else put<E>(out, item);
          }
        },
        a.items);
  }
  static void put_value(std::string& out, const GgufValue& v) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, bool>) put<uint8_t>(out, x ? 1 : 0);
          else if constexpr (std::is_same_v<T, std::string>) put_string(out, x);
          else if constexpr (std::is_same_v<T, GgufArray>) put_array(out, x);
          else put<T>(out, x);
        },
        v);
  }

  uint64_t alignment_;
  std::vector<GgufMetadataEntry> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace kestrel::testing
