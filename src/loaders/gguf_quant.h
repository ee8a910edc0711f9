// loaders/gguf_quant.h: ggml tensor element types and their dequantization to f32.
//
// ggml stores quantized tensors as a sequence of fixed-size blocks along the innermost
// dimension (ne[0]). The layouts Kestrel reads (all little-endian, no padding):
//   Q8_0: 34 bytes per 32 elements: f16 d, int8 q[32];            x[j] = d * q[j]
//   Q4_0: 18 bytes per 32 elements: f16 d, uint8 qs[16];
//         x[j] = d * ((qs[j] & 0xf) - 8), x[j + 16] = d * ((qs[j] >> 4) - 8), j < 16
//   Q4_1: 20 bytes per 32 elements: f16 d, f16 m, uint8 qs[16];
//         x[j] = d * (qs[j] & 0xf) + m,   x[j + 16] = d * (qs[j] >> 4) + m,   j < 16
// (ggml-quants.c dequantize_row_q8_0 / _q4_0 / _q4_1; gguf-py quants.py agrees.)
// Q5_0 / Q5_1, the K-quants Q2_K .. Q6_K (blocks of 256), IQ4_NL / IQ4_XS and MXFP4 are
// read too and dequantized at load (ggml_blocks.h, bit-exact with gguf-py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "kestrel/types.h"

namespace kestrel {

// The ggml tensor types Kestrel can read; the values are ggml's `enum ggml_type`.
enum class GgmlType : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  iq4_nl = 20,
  iq4_xs = 23,
  bf16 = 30,
  mxfp4 = 39,
};

// "F32", "Q4_0", ... (ggml's spelling).
const char* to_string(GgmlType type) noexcept;
// The name of any raw ggml type id for messages: "Q4_K (12)", or "unknown (99)".
std::string ggml_type_name(uint32_t raw_type);
// The GgmlType for a raw id, or nullopt when Kestrel does not read that type.
std::optional<GgmlType> ggml_type_from_raw(uint32_t raw_type) noexcept;
// The DType holding the same values unchanged (F32/F16/BF16), or nullopt for block types.
std::optional<DType> ggml_type_to_dtype(GgmlType type) noexcept;

// Elements per block (1 for F32/F16/BF16, 32 for Q4_0 .. Q8_0, IQ4_NL and MXFP4, 256 for the
// K-quants and IQ4_XS).
int64_t ggml_block_size(GgmlType type) noexcept;
// Bytes per block.
size_t ggml_block_bytes(GgmlType type) noexcept;
bool ggml_is_quantized(GgmlType type) noexcept;

// Bytes taken by `count` consecutive elements; nullopt when `count` is negative, not a
// multiple of the block size, or the byte count overflows.
std::optional<uint64_t> ggml_row_bytes(GgmlType type, int64_t count) noexcept;

// Converts `count` consecutive elements of `type` at `src` to f32 at `dst`. `src` needs
// no alignment (it may point anywhere into a memory-mapped file). Throws
// Error(invalid_argument) when `count` is negative or not a multiple of the block size.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t count);

}  // namespace kestrel
