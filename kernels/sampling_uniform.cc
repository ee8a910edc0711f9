// kernels/sampling_uniform.cc: the counter-based uniform draw behind sampling.
//
// u(seed, step) is output number `step` of a SplitMix64 generator whose state starts at
// mix(seed + golden): x = mix(mix(seed + golden) + (step + 1) * golden), then the top 53
// bits of x scaled by 2^-53. It needs only 64-bit adds, multiplies, shifts and xors, so a
// CUDA kernel reproduces it bit for bit; no state is carried between steps, so a token's
// draw depends on nothing but its sequence's seed and its index.
#include <cstdint>

#include "backend.h"

namespace kestrel {

namespace {
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// The SplitMix64 output function (Steele, Lea, Flood 2014), a bijection on 64 bits.
constexpr uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

double sampling_uniform(uint64_t seed, uint64_t step) {
  const uint64_t x = mix(mix(seed + kGolden) + (step + 1) * kGolden);
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

}  // namespace kestrel
