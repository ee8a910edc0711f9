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

void convert_floats(const void* src, DType src_type, void* dst, DType dst_type, size_t count) {
  auto load = [&](size_t i) -> float {
    switch (src_type) {
      case DType::f32: return static_cast<const float*>(src)[i];
      case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      default: throw Error(ErrorCategory::internal, "convert_floats: source is not a float type");
    }
  };
  for (size_t i = 0; i < count; ++i) {
    float v = load(i);
    switch (dst_type) {
      case DType::f32: static_cast<float*>(dst)[i] = v; break;
      case DType::f16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(v); break;
      case DType::bf16: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(v); break;
      default: throw Error(ErrorCategory::internal, "convert_floats: target is not a float type");
    }
  }
}

}  // namespace kestrel
