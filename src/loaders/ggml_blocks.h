// loaders/ggml_blocks.h: dequantization of ggml's Q5, K-quant and IQ4 block formats (the
// layouts are described beside each function in ggml_blocks.cc); dequantize_row
// (gguf_quant.h) dispatches here. `blocks` consecutive blocks from `src` (no alignment
// needed) into 32 (Q5_0, Q5_1, IQ4_NL) or 256 (the rest) floats each.
#pragma once

#include <cstdint>

namespace kestrel::ggml {

void dequantize_q5_0(const uint8_t* src, float* dst, int64_t blocks);
void dequantize_q5_1(const uint8_t* src, float* dst, int64_t blocks);
void dequantize_q2_k(const uint8_t* src, float* dst, int64_t blocks);
void dequantize_q3_k(const uint8_t* src, float* dst, int64_t blocks);
void dequantize_q4_k(const uint8_t* src, float* dst, int64_t blocks);
void dequantize_q5_k(const uint8_t* src, float* dst, int64_t blocks);
void dequantize_q6_k(const uint8_t* src, float* dst, int64_t blocks);
void dequantize_iq4_nl(const uint8_t* src, float* dst, int64_t blocks);
void dequantize_iq4_xs(const uint8_t* src, float* dst, int64_t blocks);

}  // namespace kestrel::ggml
