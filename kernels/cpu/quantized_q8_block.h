// kernels/cpu/quantized_q8_block.h: 32 activations quantized to 8 bits (quantized_q8_cpu.h).
// Kept apart, with nothing inline, because the per-instruction-set files include it: an
// inline function compiled there with AVX-512 flags could be the copy the linker keeps.
#pragma once

#include <cstdint>

namespace kestrel::cpu {

struct Q8Block {
  float d;    // scale: x ~ d * q
  float sum;  // d * sum(q): the min term of int4 blocks
  int8_t q[32];
};

// 32 activations in 16 bits (d = max |x| / 32767): for weights whose activations must stay
// precise (the LM head), at nearly the speed of the 8-bit blocks.
struct Q16Block {
  float d;
  int16_t q[32];
};

// 8 interleaved rows of a ggml block format (interleaved_rows.h) against T tokens' blocks:
// q, n blocks (or super-blocks), token t's activation blocks at x + t * x_stride, its 8
// results into out[t * out_stride + r].
using Rows8Blocks = void (*)(const uint8_t* q, int64_t n, const Q8Block* x, int64_t x_stride, int64_t T, float* out,
                             int64_t out_stride);

}  // namespace kestrel::cpu
