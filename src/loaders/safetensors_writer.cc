#include "loaders/safetensors_writer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"

namespace kestrel {

const char* safetensors_dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::i8: return "I8";
    case DType::i32: return "I32";
  }
  return "?";
}

void SafetensorsWriter::add(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                            const void* data, size_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  entries_.push_back({name, dtype, std::move(shape), std::vector<uint8_t>(p, p + bytes)});
}

void SafetensorsWriter::write(const std::filesystem::path& path,
                              const std::vector<std::pair<std::string, std::string>>& metadata) const {
  std::vector<const Entry*> order;
  for (const Entry& e : entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) { return a->name < b->name; });
  nlohmann::json header = nlohmann::json::object();
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [key, value] : metadata) meta[key] = value;
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (const Entry* e : order) {
    header[e->name] = {{"dtype", e->dtype}, {"shape", e->shape}, {"data_offsets", {offset, offset + e->bytes.size()}}};
    offset += e->bytes.size();
  }
  std::string head = header.dump();
  head.append((8 - head.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Error(ErrorCategory::io, path.string() + ": cannot write");
  const uint64_t n = head.size();
  out.write(reinterpret_cast<const char*>(&n), sizeof n);
  out.write(head.data(), static_cast<std::streamsize>(head.size()));
  for (const Entry* e : order)
    out.write(reinterpret_cast<const char*>(e->bytes.data()), static_cast<std::streamsize>(e->bytes.size()));
  if (!out) throw Error(ErrorCategory::io, path.string() + ": write failed");
}

}  // namespace kestrel
