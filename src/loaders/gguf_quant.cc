#include "loaders/gguf_quant.h"

#include <cstring>
#include <limits>

#include "core/half.h"
#include "kestrel/error.h"

namespace kestrel {
namespace {

constexpr int64_t kQuantBlock = 32;

// Unaligned little-endian loads from the mapped file.
inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// ggml's type names by id, for messages about types Kestrel does not read. Ids that
// ggml has retired (4, 5, 31-33, 36-38) stay empty.
constexpr const char* kGgmlTypeNames[] = {
    "F32",     "F16",    "Q4_0",    "Q4_1",   "",        "",       "Q5_0",  "Q5_1",
    "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",   "Q4_K",    "Q5_K",   "Q6_K",  "Q8_K",
    "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",  "IQ4_NL",  "IQ3_S",  "IQ2_S", "IQ4_XS",
    "I8",      "I16",    "I32",     "I64",    "F64",     "IQ1_M",  "BF16",  "",
    "",        "",       "TQ1_0",   "TQ2_0",  "",        "",       "",      "MXFP4",
};

void dequantize_q8_0(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 34, dst += kQuantBlock) {
    const float d = f16_to_f32(load_u16(src));
    const auto* q = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < kQuantBlock; ++j) dst[j] = static_cast<float>(q[j]) * d;
  }
}

void dequantize_q4_0(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 18, dst += kQuantBlock) {
    const float d = f16_to_f32(load_u16(src));
    const uint8_t* qs = src + 2;
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      dst[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
      dst[j + kQuantBlock / 2] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const uint8_t* src, float* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += 20, dst += kQuantBlock) {
    const float d = f16_to_f32(load_u16(src));
    const float m = f16_to_f32(load_u16(src + 2));
    const uint8_t* qs = src + 4;
    for (int j = 0; j < kQuantBlock / 2; ++j) {
      dst[j] = static_cast<float>(qs[j] & 0x0f) * d + m;
      dst[j + kQuantBlock / 2] = static_cast<float>(qs[j] >> 4) * d + m;
    }
  }
}

}  // namespace

const char* to_string(GgmlType type) noexcept {
  switch (type) {
    case GgmlType::f32: return "F32";
    case GgmlType::f16: return "F16";
    case GgmlType::q4_0: return "Q4_0";
    case GgmlType::q4_1: return "Q4_1";
    case GgmlType::q8_0: return "Q8_0";
    case GgmlType::bf16: return "BF16";
  }
  return "?";
}

std::string ggml_type_name(uint32_t raw_type) {
  constexpr size_t n = sizeof(kGgmlTypeNames) / sizeof(kGgmlTypeNames[0]);
  const char* name = raw_type < n ? kGgmlTypeNames[raw_type] : "";
  return std::string(*name ? name : "unknown") + " (" + std::to_string(raw_type) + ")";
}

std::optional<GgmlType> ggml_type_from_raw(uint32_t raw_type) noexcept {
  switch (raw_type) {
    case 0: return GgmlType::f32;
    case 1: return GgmlType::f16;
    case 2: return GgmlType::q4_0;
    case 3: return GgmlType::q4_1;
    case 8: return GgmlType::q8_0;
    case 30: return GgmlType::bf16;
    default: return std::nullopt;
  }
}

std::optional<DType> ggml_type_to_dtype(GgmlType type) noexcept {
  switch (type) {
    case GgmlType::f32: return DType::f32;
    case GgmlType::f16: return DType::f16;
    case GgmlType::bf16: return DType::bf16;
    default: return std::nullopt;
  }
}

int64_t ggml_block_size(GgmlType type) noexcept { return ggml_is_quantized(type) ? kQuantBlock : 1; }

size_t ggml_block_bytes(GgmlType type) noexcept {
  switch (type) {
    case GgmlType::f32: return 4;
    case GgmlType::f16: return 2;
    case GgmlType::bf16: return 2;
    case GgmlType::q8_0: return 34;
    case GgmlType::q4_0: return 18;
    case GgmlType::q4_1: return 20;
  }
  return 0;
}

bool ggml_is_quantized(GgmlType type) noexcept {
  return type == GgmlType::q4_0 || type == GgmlType::q4_1 || type == GgmlType::q8_0;
}

std::optional<uint64_t> ggml_row_bytes(GgmlType type, int64_t count) noexcept {
  const int64_t block = ggml_block_size(type);
  if (count < 0 || count % block != 0) return std::nullopt;
  const uint64_t blocks = static_cast<uint64_t>(count / block);
  const uint64_t per_block = ggml_block_bytes(type);
  if (blocks > std::numeric_limits<uint64_t>::max() / per_block) return std::nullopt;
  return blocks * per_block;
}

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t count) {
  const int64_t block = ggml_block_size(type);
  if (count < 0 || count % block != 0) {
    throw Error(ErrorCategory::invalid_argument,
                std::string("dequantize_row: count ") + std::to_string(count) + " is not a multiple of the " +
                    to_string(type) + " block size " + std::to_string(block));
  }
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (type) {
    case GgmlType::f32:
      std::memcpy(dst, bytes, static_cast<size_t>(count) * sizeof(float));
      return;
    case GgmlType::f16:
      for (int64_t i = 0; i < count; ++i) dst[i] = f16_to_f32(load_u16(bytes + 2 * i));
      return;
    case GgmlType::bf16:
      for (int64_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(load_u16(bytes + 2 * i));
      return;
    case GgmlType::q8_0: dequantize_q8_0(bytes, dst, count / block); return;
    case GgmlType::q4_0: dequantize_q4_0(bytes, dst, count / block); return;
    case GgmlType::q4_1: dequantize_q4_1(bytes, dst, count / block); return;
  }
  throw Error(ErrorCategory::internal, "dequantize_row: bad GgmlType");
}

}  // namespace kestrel
