#include "core/fp8.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace kestrel {

namespace {

float decode(uint8_t v) {
  const int exponent = (v >> 3) & 0xf, mantissa = v & 0x7;
  const float sign = (v & 0x80) ? -1.0f : 1.0f;
  if (exponent == 0xf && mantissa == 0x7) return std::nanf("");
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);  // subnormal: m 2^-9
  return sign * std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
}

const std::array<float, 256>& table() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> a{};
    for (int i = 0; i < 256; ++i) a[static_cast<size_t>(i)] = decode(static_cast<uint8_t>(i));
    return a;
  }();
  return t;
}

}  // namespace

float fp8_e4m3_to_f32(uint8_t v) { return table()[v]; }

uint8_t f32_to_fp8_e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  const float a = std::fabs(f);
  if (a >= kFp8E4m3Max) return sign | 0x7e;
  if (a < 0x1p-6f) {
    // Subnormals m 2^-9 (m = 8 is the smallest normal, whose code is 8 as well); a 2^9 is
    // exact, and nearbyint rounds ties to even.
    return sign | static_cast<uint8_t>(std::nearbyint(a * 512.0f));
  }
  int e = 0;
  const float fraction = std::frexp(a, &e);  // a = fraction 2^e, fraction in [0.5, 1)
  int exponent = e - 1 + 7;                  // a = (2 fraction) 2^(e - 1)
  auto mantissa = static_cast<int>(std::nearbyint((2.0f * fraction - 1.0f) * 8.0f));  // exact before rounding
  if (mantissa == 8) {
    mantissa = 0;
    ++exponent;
  }
  if (exponent > 15 || (exponent == 15 && mantissa == 7)) return sign | 0x7e;  // past 448: saturate
  return sign | static_cast<uint8_t>(exponent << 3 | mantissa);
}

void fake_quantize_rows_fp8(float* x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* p = x + r * cols;
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(p[c]));
    if (!(amax > 0.0f) || !std::isfinite(amax)) continue;
    const float scale = amax / kFp8E4m3Max, inv = kFp8E4m3Max / amax;
    for (int64_t c = 0; c < cols; ++c) p[c] = fp8_e4m3_to_f32(f32_to_fp8_e4m3(p[c] * inv)) * scale;
  }
}

}  // namespace kestrel
