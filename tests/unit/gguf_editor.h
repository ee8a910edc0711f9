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
#include "loaders/gguf_writer.h"

namespace kestrel::testing {

// The library's GgufWriter plus what only tests do: re-encode a tensor into ggml blocks,
// zero-fill a replacement, corrupt bytes.
class GgufEditor : public GgufWriter {
 public:
  explicit GgufEditor(const std::filesystem::path& source) : GgufWriter(source) {}

  GgufEditor& set(const std::string& key, GgufValue value) {
    GgufWriter::set(key, std::move(value));
    return *this;
  }
  GgufEditor& erase(std::string_view key) {
    GgufWriter::erase(key);
    return *this;
  }
  GgufEditor& drop_tensor(std::string_view name) {
    GgufWriter::drop_tensor(name);
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

  // Re-encodes a 2-D tensor (F32 or any block type) as Q8_0, Q4_0, Q4_1 or Q5_0 blocks
  // (ggml's reference rounding); the values change by the quantization error.
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

 private:
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
      } else if (type == GgmlType::q5_0) {
        const float d = signed_max / -16.0f, id = d ? 1.0f / d : 0.0f;
        put<uint16_t>(out, f32_to_f16(d));
        uint32_t qh = 0;
        uint8_t qs[16];
        for (int j = 0; j < 16; ++j) {
          const int q0 = std::min(31, static_cast<int>(v[j] * id + 16.5f));
          const int q1 = std::min(31, static_cast<int>(v[j + 16] * id + 16.5f));
          qs[j] = static_cast<uint8_t>((q0 & 0xf) | ((q1 & 0xf) << 4));
          qh |= static_cast<uint32_t>(q0 >> 4) << j | static_cast<uint32_t>(q1 >> 4) << (j + 16);
        }
        put<uint32_t>(out, qh);
        for (uint8_t b : qs) put<uint8_t>(out, b);
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

  template <class T>
  static void put(std::string& out, T value) {
    char b[sizeof(T)];
    std::memcpy(b, &value, sizeof(T));
    out.append(b, sizeof(T));
  }
};

}  // namespace kestrel::testing
