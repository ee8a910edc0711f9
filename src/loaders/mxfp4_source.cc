#include "loaders/mxfp4_source.h"

#include "kestrel/error.h"

namespace kestrel {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

[[noreturn]] void refuse(const SourceTensor& t, const std::string& what) {
  throw Error(ErrorCategory::format, t.file + ": tensor '" + t.name + "' " + what);
}

// One row's G blocks from transformers' layout (16 nibble bytes per block, the scales
// apart) into ggml's 17-byte blocks.
void repack_row(const uint8_t* nibbles, const uint8_t* scales, int64_t groups, uint8_t* out) {
  for (int64_t g = 0; g < groups; ++g, nibbles += 16, out += 17) {
    out[0] = scales[g];
    uint8_t column[32];
    for (int j = 0; j < 16; ++j) {
      column[2 * j] = nibbles[j] & 0x0f;
      column[2 * j + 1] = nibbles[j] >> 4;
    }
    for (int j = 0; j < 16; ++j) out[1 + j] = static_cast<uint8_t>(column[j] | (column[j + 16] << 4));
  }
}

}  // namespace

Mxfp4Source::Mxfp4Source(std::unique_ptr<WeightSource> inner, std::vector<std::string> paired_rows)
    : inner_(std::move(inner)), paired_rows_(std::move(paired_rows)) {}

const SourceTensor* Mxfp4Source::find(std::string_view name) const {
  if (const SourceTensor* t = inner_->find(name)) return t;
  if (auto it = packed_.find(name); it != packed_.end()) return &it->second.tensor;
  const size_t hash = name.rfind('#');
  const std::string base(name.substr(0, hash));
  const SourceTensor* blocks = inner_->find(base + "_blocks");
  const SourceTensor* scales = inner_->find(base + "_scales");
  if (!blocks || !scales) return nullptr;
  for (const SourceTensor* t : {blocks, scales})
    if (!t->u8) refuse(*t, "has dtype " + std::string(to_string(t->dtype)) + "; MXFP4 blocks and scales are U8");
  // [lead?, rows, G, 16] and [lead?, rows, G]: one leading index with "#i", none without.
  const size_t lead = hash == std::string_view::npos ? 0 : 1;
  const std::vector<int64_t>& bs = blocks->shape;
  if (bs.size() != 3 + lead || bs.back() != 16)
    refuse(*blocks, "has shape " + blocks->shape_string() + "; MXFP4 blocks [" + (lead ? "E, " : "") +
                        "rows, cols / 32, 16] expected");
  if (scales->shape != std::vector<int64_t>(bs.begin(), bs.end() - 1))
    refuse(*scales, "has shape " + scales->shape_string() + " but '" + blocks->name + "' has " +
                        blocks->shape_string() + " (the scales are its shape without the last 16)");
  int64_t index = 0;
  if (lead) {
    const std::string digits(name.substr(hash + 1));
    size_t used = 0;
    try {
      index = std::stoll(digits, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != digits.size() || digits.empty() || index < 0 || index >= bs[0])
      refuse(*blocks, "holds " + std::to_string(bs[0]) + " matrices; '" + std::string(name) + "' is not one of them");
  }
  const int64_t rows = bs[lead], groups = bs[lead + 1];
  bool paired = false;
  for (const std::string& suffix : paired_rows_) paired = paired || ends_with(base, suffix);
  if (paired && rows % 2 != 0)
    refuse(*blocks, "alternates the rows of two matrices but has " + std::to_string(rows) + " rows");
  Packed p;
  p.bytes.resize(static_cast<size_t>(rows * groups * 17));
  const auto* nibbles = static_cast<const uint8_t*>(blocks->data) + index * rows * groups * 16;
  const auto* exponents = static_cast<const uint8_t*>(scales->data) + index * rows * groups;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t to = paired ? (r % 2) * (rows / 2) + r / 2 : r;
    repack_row(nibbles + r * groups * 16, exponents + r * groups, groups, p.bytes.data() + to * groups * 17);
  }
  p.tensor.name = std::string(name);
  p.tensor.dtype = DType::i8;
  p.tensor.block_type = GgmlType::mxfp4;
  p.tensor.shape = {rows, groups * 32};
  p.tensor.data = p.bytes.data();
  p.tensor.bytes = p.bytes.size();
  p.tensor.file = blocks->file;
  inner_->release(*blocks);
  inner_->release(*scales);
  return &packed_.emplace(std::string(name), std::move(p)).first->second.tensor;
}

void Mxfp4Source::release(const SourceTensor& tensor) const {
  if (auto it = packed_.find(tensor.name); it != packed_.end() && &it->second.tensor == &tensor) {
    packed_.erase(it);
    return;
  }
  inner_->release(tensor);
}

}  // namespace kestrel
