// A GGUF file read whole and written back with edits, for tests that need a real model file
// with one thing wrong (a key changed or removed, a tensor missing or reshaped).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/half.h"
#include "loaders/gguf.h"
#include "loaders/gguf_quant.h"

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

  // Overwrites bytes [offset, offset + size) of tensor `name`'s data (corrupting a block).
  GgufEditor& patch_bytes(std::string_view name, size_t offset, std::string_view bytes) {
    for (auto& t : tensors_)
      if (t.name == name) t.bytes.replace(offset, bytes.size(), bytes);
    return *this;
  }

  // Re-encodes a 2-D tensor (F32 or any block type) as Q8_0, Q4_0 or Q4_1 blocks (ggml's
  // reference rounding); the values change by the quantization error.
  GgufEditor& requantize(std::string_view name, GgmlType type) {
    for (auto& t : tensors_) {
      if (t.name != name) continue;
      const int64_t n = t.ne.at(0) * t.ne.at(1);
      const auto from = ggml_type_from_raw(t.type);
      std::vector<float> values(static_cast<size_t>(n));
      if (from == GgmlType::f32) std::memcpy(values.data(), t.bytes.data(), values.size() * sizeof(float));
      else dequantize_row(*from, t.bytes.data(), values.data(), n);
      t.bytes = encode_blocks(values, type);
      t.type = static_cast<uint32_t>(type);
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

  static std::string encode_blocks(const std::vector<float>& x, GgmlType type) {
    std::string out;
    for (size_t b = 0; b + 32 <= x.size(); b += 32) {
      const float* v = x.data() + b;
      float lo = v[0], hi = v[0], amax = 0.0f, signed_max = 0.0f;
      for (int j = 0; j < 32; ++j) {
        lo = std::min(lo, v[j]);
        hi = std::max(hi, v[j]);
        if (std::abs(v[j]) > amax) amax = std::abs(v[j]), signed_max = v[j];
      }
      if (type == GgmlType::q8_0) {
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        put<uint16_t>(out, f32_to_f16(d));
        for (int j = 0; j < 32; ++j) put<int8_t>(out, static_cast<int8_t>(std::nearbyint(v[j] * id)));
      } else if (type == GgmlType::q4_0) {
        const float d = signed_max / -8.0f, id = d ? 1.0f / d : 0.0f;
        put<uint16_t>(out, f32_to_f16(d));
        auto q = [&](float f) { return static_cast<uint8_t>(std::min(15, static_cast<int>(f * id + 8.5f))); };
        for (int j = 0; j < 16; ++j) put<uint8_t>(out, static_cast<uint8_t>(q(v[j]) | (q(v[j + 16]) << 4)));
      } else {
        const float d = (hi - lo) / 15.0f, id = d ? 1.0f / d : 0.0f;
        put<uint16_t>(out, f32_to_f16(d));
        put<uint16_t>(out, f32_to_f16(lo));
        auto q = [&](float f) { return static_cast<uint8_t>(std::min(15, static_cast<int>((f - lo) * id + 0.5f))); };
        for (int j = 0; j < 16; ++j) put<uint8_t>(out, static_cast<uint8_t>(q(v[j]) | (q(v[j + 16]) << 4)));
      }
    }
    return out;
  }

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
