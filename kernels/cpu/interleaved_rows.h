// kernels/cpu/interleaved_rows.h: the CPU's decode layout of int4 and int8 weights
// (QuantizedWeight::interleave = 8), which the CPU backend's prepare_quantized makes once
// a weight is loaded.
//
// Rows are taken 8 at a time, and within each 32-column block of the 8 rows the weights are
// ordered so that one 32-bit lane of a vector holds a few columns of one row: an integer
// dot product of a chunk against the same few activations broadcast to every lane then
// advances all 8 rows at once (lane r: row r). A block of 8 rows costs a handful of dot
// products and one float multiply-add of 8 lanes, instead of a dot product, a horizontal
// sum and scalar scale arithmetic per row.
//   int4: per block, 4 chunks of 32 bytes: byte 4r + j of chunk v holds row r's column
//         4v + j in its low nibble and column 16 + 4v + j in its high nibble (128 bytes).
//   int8: per block, 16 chunks of 16 bytes: bytes 2r, 2r + 1 of chunk v hold row r's
//         columns 2v, 2v + 1 (256 bytes); sign-extended to 16 bits they meet activation
//         pairs (16-bit blocks as they are, 8-bit blocks widened) in vpmaddwd / vpdpwssd.
//   Q4_0, Q5_0, Q5_1, IQ4_NL (ggml blocks of 32 columns, kquant_blocks.h): per block of
//         the 8 rows, their 8 d (f16), Q5_1's 8 m, Q5's 8 qh words (rearranged: byte v
//         holds the fifth bits of columns 4v .. 4v + 3 in its low nibble and of 16 + 4v ..
//         in its high one, the columns of chunk v), then their nibbles as int4's (Q4_0:
//         144 bytes, the 8 rows' 18-byte blocks rearranged).
//   Q4_K, Q5_K: per super-block of the 8 rows, their d and dmin, their 6-bit scales and
//         mins repacked (same 96 bits) for vector decoding, Q5_K's qh as int4's chunks,
//         then per pair of sub-blocks their shared nibble bytes as int4's chunks.
//   IQ4_XS: per super-block of the 8 rows, their d, their 6-bit scales repacked (same 48
//         bits per row), then per sub-block the nibbles as int4's chunks.
//   Q2_K, Q3_K: per super-block of the 8 rows, their d (Q2_K: and dmin), their scales (Q3_K:
//         repacked, same bits), then per sub-block the 2-bit values in two vectors (columns
//         0-15, 16-31) and Q3_K's high-mask bits in a third.
//   Q6_K: per super-block of the 8 rows, their d, their scales by sub-block half, then per
//         sub-block the low 4 bits of the values as int4's chunks and the high 2 bits in
//         two vectors (interleaved_rows.cc, put_q6k).
// The blocks of row group i follow each other (an int4 weight's padded last group
// included, as in the plain layout), and the scales (and int4 mins) of group g of the 8
// rows are 8 consecutive values. Shapes and bytes are the plain layout's.
//
// llama.cpp repacks Q4_0 and IQ4_NL for the same reason (its "q4_0_8x8" and kin); this
// layout is Kestrel's own and covers every int4 and int8 weight (Q4_1, Q8_0, --quant int4
// / int8 at any group size, the 8-bit LM head) and the 32-column ggml formats (Q4_0, and
// Q5_0, Q5_1, IQ4_NL, which K-quant files use for matrices whose columns are not a
// multiple of 256).
#pragma once

#include <cstdint>
#include <vector>

#include "backend.h"
#include "cpu/quantized_q8_block.h"

namespace kestrel::cpu {

constexpr int kInterleaveRows = 8;

// Whether prepare_quantized interleaves w: int4, int8 or any ggml block format Kestrel
// keeps (Q4_0, Q5_0, Q5_1, IQ4_NL, IQ4_XS, Q2_K ... Q6_K), rows a multiple of 8, cols and group a
// multiple of 32, not yet interleaved; not with precise activations unless int8 (the
// others take the f32 row path then), nor W8A8 (oneDNN's GEMM reads the plain layout).
bool interleavable(const QuantizedWeight& w);

// Rewrites w's data, scales and mins in place into the interleaved layout (w must be
// interleavable; its tensors host memory) and sets w.interleave.
void interleave_rows(QuantizedWeight& w);

// The CPU backend's prepare_quantized: interleaves what interleavable accepts, the parts of
// a mixed weight one by one.
void prepare_quantized_cpu(QuantizedWeight& w);

// Row m of an interleavable weight in the plain layout: pointers into w, or, when w is
// interleaved, into `scratch`, where the row is gathered back (its data bytes; int4 and
// int8: G scales, f16 bits for int4, f32 for int8, and int4's G mins; the ggml formats
// hold theirs in their blocks).
struct PlainRow {
  const uint8_t* q;
  const void* scales;
  const uint16_t* mins;  // int4
};
struct PlainRowScratch {
  std::vector<uint8_t> q;
  std::vector<uint32_t> scales;  // f16 or f32 bits
  std::vector<uint16_t> mins;
};
PlainRow plain_row(const QuantizedWeight& w, int64_t m, PlainRowScratch& scratch);

// Row m of an interleaved int4, Q4_0, Q4_K, Q5_K or Q6_K weight dequantized into out[cols]
// straight from the layout (the prefill tiles), the plain layout's values bit for bit;
// false (nothing written) for the other weights, which plain_row gathers back.
bool dequantize_interleaved_row(const QuantizedWeight& w, int64_t m, float* out);

// The portable rows of the interleaved layouts, which the SIMD kernels
// (quantized_q8_simd.h) reproduce bit for bit: q, scales (and mins) at row group i (q +
// i * 8 * the plain row bytes, scales + i * 8 * G), its first nb blocks of 32 columns, bpg
// blocks per group; token t's 8 results into out[t * out_stride + r]. Per row and block,
// p the block's integer dot product:
//     int4: acc = fma(float(p), s * x.d, acc);  acc = fma(m, x.sum, acc)
//     int8: acc = fma(float(p), s * x.d, acc)
void rows8_int4_portable(const uint8_t* q, const uint16_t* scales, const uint16_t* mins, int64_t nb, int bpg,
                         const Q8Block* x, int64_t x_stride, int64_t T, float* out, int64_t out_stride);
// int8 rows against 16-bit activation blocks (Q16Block, or Q8Block widened by
// widen_q8_blocks: the same values).
void rows8_int8_portable(const int8_t* q, const float* scales, int64_t nb, int bpg, const Q16Block* x, int64_t x_stride,
                         int64_t T, float* out, int64_t out_stride);
void widen_q8_blocks(const Q8Block* x, int64_t n, Q16Block* out);
// The ggml block formats' rows: q at row group i (q + i * 8 * the plain row bytes), n
// blocks of 32 columns (Q4_0, Q5_0, Q5_1, IQ4_NL) or super-blocks of 256 (the others); x and out
// as above. Per row, for each block, or each 32-column sub-block of a super-block, or each
// 16-column half where the format scales halves (Q6_K, Q2_K, Q3_K), in column order, with p
// its integer dot product, scale and min the format's (products of the stored integers and
// f16 values, exact in f32):
//     acc = fma(float(p), scale * x.d, acc)
//   then for the formats with a min, the activation sum s = x.sum (Q2_K: the half's integer
//   sum times x.d, taken as fma(float(isum), min * x.d, acc)):
//     acc = fma(min, x.sum, acc)
// Q4_0 takes its nibbles unsigned with a min of -8 d, Q5_0 its 5-bit values with a min of
// -16 d; Q5_1, Q4_K, Q5_K, Q2_K their
// unsigned values and mins; IQ4_NL, IQ4_XS, Q3_K and Q6_K (minus 32) signed values.
void rows8_blocks_portable(QuantFormat f, const uint8_t* q, int64_t n, const Q8Block* x, int64_t x_stride, int64_t T,
                           float* out, int64_t out_stride);

}  // namespace kestrel::cpu
