// kernels/cpu/quantized_q8_cpu.h: the decode path of quantized_linear with 8-bit
// activations, as llama.cpp computes it (its q8_0 / q8_1 dot products).
//
// Each token's activations are quantized per block of 32 columns: d = max |x| / 127,
// q = round(x / d) (ties to even), sum = d * sum(q). A weight block of 32 columns with
// scale s and min m (int8: m = 0) then contributes
//     s * d * sum_i qw_i q_i  +  m * sum
// where the inner sum is an integer dot product (AVX2 maddubs, or AVX-512 VNNI dpbusd),
// so a 32-column block of int4 weights costs a handful of instructions instead of the
// float path's dequantize-multiply-add per column. Every weight format plugs in as a way
// to unpack one 32-column block into 32 unsigned (int4) or signed (int8) bytes plus its
// scale and min: the structure the K-quants will share.
#pragma once

#include <cstdint>

#include "backend.h"
#include "cpu/quantized_q8_block.h"

namespace kestrel::cpu {

// Instruction sets of the integer dot products; `portable` is the reference the others are
// tested against (same integers, float sums in another order).
enum class Q8Isa : uint8_t { portable, avx2, avx512_vnni };
const char* to_string(Q8Isa isa);
bool q8_isa_available(Q8Isa isa);
Q8Isa best_q8_isa();  // what this processor runs best, decided once

// The weights this path takes: K and the group size multiples of 32 (blocks never straddle
// groups), both formats.
bool q8_eligible(const QuantizedWeight& w);

// x[0, K) quantized into K / 32 blocks.
void quantize_row_q8(const float* x, int64_t K, Q8Block* out);

// x[0, K) in 16-bit blocks (d = max |x| / 32767).
void quantize_row_q16(const float* x, int64_t K, Q16Block* out);

// out[t, m] = sum over blocks of row m of w with token t's blocks (+ bias[m]), for the
// T rows of x ([T, K] f32); threads over output rows. Each weight row meets up to 4 tokens
// at once (a block unpacked once for them); every (t, m) sum is taken in the order of a
// call with token t alone, so the result does not depend on T or the thread count. An int8 weight with
// precise_activations takes 16-bit activation blocks instead of 8-bit ones.
void q8_dot_path(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out, int threads,
                 Q8Isa isa);

}  // namespace kestrel::cpu
