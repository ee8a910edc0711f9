// core/half.h: portable fp16 / bf16 <-> fp32 conversion on the host (bit-exact, RNE).
#pragma once

#include <cstdint>
#include <cstring>
#include <cstddef>

#include "kestrel/types.h"

namespace kestrel {

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts `count` elements between any two of f32/f16/bf16 on the host.
void convert_floats(const void* src, DType src_type, void* dst, DType dst_type, size_t count);

}  // namespace kestrel
