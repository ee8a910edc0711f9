// loaders/ggml_blocks.h: dequantization of ggml's Q5, K-quant, IQ4 and MXFP4 block formats (the
// layouts are described beside each function in ggml_blocks.cc); dequantize_row
// (gguf_quant.h) dispatches here. `blocks` consecutive blocks from `src` (no alignment
// needed) into 32 (Q5_0, Q5_1, IQ4_NL, MXFP4) or 256 (the rest) floats each.
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
void dequantize_mxfp4(const uint8_t* src, float* dst, int64_t blocks);

// The integers and scales of one block, for formats that int8 holds exactly (x = scale * q):
// Q5_0 (32 values in [-16, 15], one scale) and Q6_K (256 values in [-32, 31], a scale per
// 16). dequantize_q5_0 / _q6_k compute scale * q from these.
void unpack_q5_0(const uint8_t* block, int8_t q[32], float* scale);
void unpack_q6_k(const uint8_t* block, int8_t q[256], float scales[16]);

}  // namespace kestrel::ggml
