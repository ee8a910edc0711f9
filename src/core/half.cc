#include "core/half.h"

#include "kestrel/error.h"

namespace kestrel {

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint32_t sign = (bits >> 16) & 0x8000u;
  uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {  // result is subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
    // value = mant24 * 2^(exp - 150) and one f16 subnormal step is 2^-24, so the f16
    // mantissa is mant24 >> (126 - exp), rounded to nearest even.
    uint32_t exp = abs >> 23;
    uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    uint32_t drop = 126 - exp;  // 14 .. 24
    uint32_t kept = mant >> drop;
    uint32_t rem = mant & ((1u << drop) - 1);
    uint32_t half = 1u << (drop - 1);
    if (rem > half || (rem == half && (kept & 1u))) ++kept;
    return static_cast<uint16_t>(sign | kept);
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);  // round to nearest even
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

// Elements are read and written with memcpy: safetensors data may start at any byte offset
// (a valid file need not align its tensors), so a cast pointer could be misaligned.
void convert_floats(const void* src, DType src_type, void* dst, DType dst_type, size_t count) {
  auto is_float = [](DType d) { return d == DType::f32 || d == DType::f16 || d == DType::bf16; };
  if (!is_float(src_type)) throw Error(ErrorCategory::internal, "convert_floats: source is not a float type");
  if (!is_float(dst_type)) throw Error(ErrorCategory::internal, "convert_floats: target is not a float type");
  if (src_type == dst_type) {
    if (count) std::memcpy(dst, src, count * dtype_size(src_type));
    return;
  }
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (size_t i = 0; i < count; ++i) {
    float v;
    uint16_t h;
    if (src_type == DType::f32) {
      std::memcpy(&v, in + 4 * i, 4);
    } else {
      std::memcpy(&h, in + 2 * i, 2);
      v = src_type == DType::f16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    if (dst_type == DType::f32) {
      std::memcpy(out + 4 * i, &v, 4);
    } else {
      h = dst_type == DType::f16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
}

}  // namespace kestrel
