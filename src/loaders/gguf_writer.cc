#include "loaders/gguf_writer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <type_traits>

#include "kestrel/error.h"
#include "loaders/gguf_quant.h"

namespace kestrel {

namespace {

template <class T>
void put(std::string& out, T value) {
  char b[sizeof(T)];
  std::memcpy(b, &value, sizeof(T));
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_array(std::string& out, const GgufArray& a) {
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

void put_value(std::string& out, const GgufValue& v) {
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

}  // namespace

GgufWriter::GgufWriter(const std::filesystem::path& source) {
  GgufFile file(source);
  alignment_ = file.alignment();
  metadata_ = file.metadata();
  for (const GgufTensor& t : file.tensors())
    tensors_.push_back({t.name, t.ne, static_cast<uint32_t>(t.type),
                        std::string(reinterpret_cast<const char*>(t.data), t.byte_size)});
}

GgufWriter& GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& entry : metadata_)
    if (entry.key == key) return entry.value = std::move(value), *this;
  metadata_.push_back({key, std::move(value)});
  return *this;
}

GgufWriter& GgufWriter::erase(std::string_view key) {
  std::erase_if(metadata_, [&](const GgufMetadataEntry& e) { return e.key == key; });
  return *this;
}

GgufWriter& GgufWriter::drop_tensor(std::string_view name) {
  std::erase_if(tensors_, [&](const Tensor& t) { return t.name == name; });
  return *this;
}

GgufWriter& GgufWriter::replace_tensor(std::string_view name, GgmlType type, std::vector<int64_t> ne,
                                       std::string bytes) {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  const auto expected = ggml_row_bytes(type, n);
  if (!expected || *expected != bytes.size())
    throw Error(ErrorCategory::internal, "GgufWriter: " + std::string(name) + ": " + std::to_string(bytes.size()) +
                                             " bytes do not hold " + std::to_string(n) + " " + to_string(type) +
                                             " values");
  for (auto& t : tensors_) {
    if (t.name != name) continue;
    t.ne = std::move(ne);
    t.type = static_cast<uint32_t>(type);
    t.bytes = std::move(bytes);
    return *this;
  }
  throw Error(ErrorCategory::internal, "GgufWriter: no tensor '" + std::string(name) + "'");
}

GgufWriter& GgufWriter::replace_tensor_f32(std::string_view name, const std::vector<float>& values,
                                           const std::vector<int64_t>& ne) {
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return replace_tensor(name, GgmlType::f32, ne, std::move(bytes));
}

void GgufWriter::write(const std::filesystem::path& path) const {
  auto aligned = [&](uint64_t n) { return (n + alignment_ - 1) / alignment_ * alignment_; };
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
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) throw Error(ErrorCategory::io, path.string() + ": cannot write");
  file.write(out.data(), static_cast<std::streamsize>(out.size()));
  for (const auto& t : tensors_) {
    file.write(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
    const std::string pad(aligned(t.bytes.size()) - t.bytes.size(), '\0');
    file.write(pad.data(), static_cast<std::streamsize>(pad.size()));
  }
  if (!file) throw Error(ErrorCategory::io, path.string() + ": write failed");
}

}  // namespace kestrel
