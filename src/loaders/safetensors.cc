#include "loaders/safetensors.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kestrel/error.h"

namespace kestrel {

using nlohmann::json;

int64_t SourceTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string SourceTensor::shape_string() const {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the format's own limit is 100 MB

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw Error(ErrorCategory::format, path.string() + ": " + what);
}

// F8_E4M3 (kestrel-quantize's FP8 weights) is read as bytes (DType::i8) marked fp8_e4m3,
// U8 (MXFP4 blocks and scales) as bytes marked u8.
bool parse_dtype(const std::string& name, DType* out, bool* fp8_e4m3, bool* u8) {
  *fp8_e4m3 = name == "F8_E4M3";
  *u8 = name == "U8";
  if (name == "F32") *out = DType::f32;
  else if (name == "F16") *out = DType::f16;
  else if (name == "BF16") *out = DType::bf16;
  else if (name == "I8") *out = DType::i8;
  else if (name == "I32") *out = DType::i32;
  else if (name == "F8_E4M3" || name == "U8") *out = DType::i8;
  else return false;
  return true;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
  if (file_.size() < 8) fail(path, "truncated: " + std::to_string(file_.size()) + " bytes, no header");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_.data(), 8);  // little-endian hosts only (x86-64, aarch64)
  if (header_len > kMaxHeaderBytes || header_len > file_.size() - 8)
    fail(path, "header length " + std::to_string(header_len) + " exceeds the file size " +
                   std::to_string(file_.size()) + " (truncated or not a safetensors file)");
  const char* header = reinterpret_cast<const char*>(file_.data() + 8);
  json doc = json::parse(header, header + header_len, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) fail(path, "header is not a JSON object");

  const uint8_t* base = file_.data() + 8 + header_len;
  const uint64_t data_size = file_.size() - 8 - header_len;
  for (const auto& [name, entry] : doc.items()) {
    if (name == "__metadata__") continue;
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      fail(path, where + ": entry needs dtype, shape and data_offsets");
    SourceTensor t;
    t.name = name;
    t.file = path.string();
    const auto& dtype = entry["dtype"];
    if (!dtype.is_string()) fail(path, where + ": dtype is not a string");
    if (!parse_dtype(dtype.get<std::string>(), &t.dtype, &t.fp8_e4m3, &t.u8))
      throw Error(ErrorCategory::unsupported,
                  path.string() + ": " + where + ": dtype " + dtype.get<std::string>() +
                      " is not supported (F32, F16, BF16, I8, I32, F8_E4M3, U8)");
    const auto& shape = entry["shape"];
    if (!shape.is_array() || shape.size() > 8) fail(path, where + ": shape must be an array of <= 8 dims");
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) fail(path, where + ": shape has a negative or non-integer dim");
      uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > std::numeric_limits<uint32_t>::max() * 64ull / v)
        fail(path, where + ": shape " + shape.dump() + " is too large");
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    const auto& offs = entry["data_offsets"];
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() ||
        !offs[1].is_number_unsigned())
      fail(path, where + ": data_offsets must be [begin, end]");
    uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    if (begin > end || end > data_size)
      fail(path, where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                     ") lie outside the " + std::to_string(data_size) +
                     " data bytes (file truncated or header wrong)");
    uint64_t expected = numel * dtype_size(t.dtype);
    if (end - begin != expected)
      fail(path, where + ": " + std::to_string(end - begin) + " bytes stored but shape " +
                     shape.dump() + " of " + dtype.get<std::string>() + " needs " +
                     std::to_string(expected));
    t.data = base + begin;
    t.bytes = expected;
    tensors_.emplace(name, std::move(t));
  }
}

bool SafetensorsSource::present(const std::filesystem::path& dir) {
  return std::filesystem::exists(dir / "model.safetensors") ||
         std::filesystem::exists(dir / "model.safetensors.index.json");
}

SafetensorsSource::SafetensorsSource(const std::filesystem::path& dir) {
  const auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index_path)) {
    std::ifstream in(index_path);
    json index = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw Error(ErrorCategory::format, index_path.string() + ": no weight_map object");
    std::map<std::string, std::vector<std::string>> by_file;
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string())
        throw Error(ErrorCategory::format, index_path.string() + ": weight_map['" + name + "'] is not a file name");
      auto shard = file.get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        throw Error(ErrorCategory::format, index_path.string() + ": shard name '" + shard + "' leaves the model directory");
      by_file[shard].push_back(name);
    }
    for (const auto& [shard, names] : by_file) {
      files_.push_back(std::make_unique<SafetensorsFile>(dir / shard));
      const auto& tensors = files_.back()->tensors();
      for (const auto& name : names) {
        auto it = tensors.find(name);
        if (it == tensors.end())
          throw Error(ErrorCategory::format, (dir / shard).string() + ": tensor '" + name +
                                                 "' listed in " + index_path.filename().string() +
                                                 " is missing");
        index_.emplace(name, &it->second);
      }
    }
    describe_ = index_path.string();
  } else {
    const auto path = dir / "model.safetensors";
    if (!std::filesystem::exists(path))
      throw Error(ErrorCategory::io, dir.string() + ": no model.safetensors or model.safetensors.index.json");
    files_.push_back(std::make_unique<SafetensorsFile>(path));
    for (const auto& [name, t] : files_.back()->tensors()) index_.emplace(name, &t);
    describe_ = path.string();
  }
}

const SourceTensor* SafetensorsSource::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

}  // namespace kestrel
