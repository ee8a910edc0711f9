#include "loaders/gguf_quant.h"

#include <cstring>
#include <limits>

#include "core/half.h"
#include "kestrel/error.h"
#include "loaders/ggml_blocks.h"

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
    case GgmlType::q5_0: return "Q5_0";
    case GgmlType::q5_1: return "Q5_1";
    case GgmlType::q8_0: return "Q8_0";
    case GgmlType::q2_k: return "Q2_K";
    case GgmlType::q3_k: return "Q3_K";
    case GgmlType::q4_k: return "Q4_K";
    case GgmlType::q5_k: return "Q5_K";
    case GgmlType::q6_k: return "Q6_K";
    case GgmlType::iq4_nl: return "IQ4_NL";
    case GgmlType::iq4_xs: return "IQ4_XS";
    case GgmlType::mxfp4: return "MXFP4";
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
    case 6: return GgmlType::q5_0;
    case 7: return GgmlType::q5_1;
    case 8: return GgmlType::q8_0;
    case 10: return GgmlType::q2_k;
    case 11: return GgmlType::q3_k;
    case 12: return GgmlType::q4_k;
    case 13: return GgmlType::q5_k;
    case 14: return GgmlType::q6_k;
    case 20: return GgmlType::iq4_nl;
    case 23: return GgmlType::iq4_xs;
    case 30: return GgmlType::bf16;
    case 39: return GgmlType::mxfp4;
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

int64_t ggml_block_size(GgmlType type) noexcept {
  switch (type) {
    case GgmlType::f32:
    case GgmlType::f16:
    case GgmlType::bf16: return 1;
    case GgmlType::q4_0:
    case GgmlType::q4_1:
    case GgmlType::q5_0:
    case GgmlType::q5_1:
    case GgmlType::q8_0:
    case GgmlType::iq4_nl:
    case GgmlType::mxfp4: return kQuantBlock;
    case GgmlType::q2_k:
    case GgmlType::q3_k:
    case GgmlType::q4_k:
    case GgmlType::q5_k:
    case GgmlType::q6_k:
    case GgmlType::iq4_xs: return 256;
  }
  return 1;
}

size_t ggml_block_bytes(GgmlType type) noexcept {
  switch (type) {
    case GgmlType::f32: return 4;
    case GgmlType::f16: return 2;
    case GgmlType::bf16: return 2;
    case GgmlType::q8_0: return 34;
    case GgmlType::q4_0: return 18;
    case GgmlType::q4_1: return 20;
    case GgmlType::q5_0: return 22;
    case GgmlType::q5_1: return 24;
    case GgmlType::q2_k: return 84;
    case GgmlType::q3_k: return 110;
    case GgmlType::q4_k: return 144;
    case GgmlType::q5_k: return 176;
    case GgmlType::q6_k: return 210;
    case GgmlType::iq4_nl: return 18;
    case GgmlType::iq4_xs: return 136;
    case GgmlType::mxfp4: return 17;
  }
  return 0;
}

bool ggml_is_quantized(GgmlType type) noexcept { return ggml_block_size(type) > 1; }

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
    case GgmlType::q5_0: ggml::dequantize_q5_0(bytes, dst, count / block); return;
    case GgmlType::q5_1: ggml::dequantize_q5_1(bytes, dst, count / block); return;
    case GgmlType::q2_k: ggml::dequantize_q2_k(bytes, dst, count / block); return;
    case GgmlType::q3_k: ggml::dequantize_q3_k(bytes, dst, count / block); return;
    case GgmlType::q4_k: ggml::dequantize_q4_k(bytes, dst, count / block); return;
    case GgmlType::q5_k: ggml::dequantize_q5_k(bytes, dst, count / block); return;
    case GgmlType::q6_k: ggml::dequantize_q6_k(bytes, dst, count / block); return;
    case GgmlType::iq4_nl: ggml::dequantize_iq4_nl(bytes, dst, count / block); return;
    case GgmlType::iq4_xs: ggml::dequantize_iq4_xs(bytes, dst, count / block); return;
    case GgmlType::mxfp4: ggml::dequantize_mxfp4(bytes, dst, count / block); return;
  }
  throw Error(ErrorCategory::internal, "dequantize_row: bad GgmlType");
}

}  // namespace kestrel
