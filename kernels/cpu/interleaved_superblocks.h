// kernels/cpu/interleaved_superblocks.h: the interleaved layouts of the 256-column ggml
// formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) for interleaved_rows.cc, which owns the
// layout as a whole (interleaved_rows.h); internal to the two files and their tests.
#pragma once

#include <cstdint>

#include "backend.h"
#include "cpu/interleaved_rows.h"
#include "cpu/quantized_q8_block.h"

namespace kestrel::cpu::interleave_detail {

constexpr int kRows = kInterleaveRows;

// One format's interleaving: a row's 32-column block is block_bytes in the plain layout,
// cut into runs of lane_bytes; run v of row r goes to lane r of chunk v (8 lanes) in the 8
// rows' interleaved block. int4: runs of 4 bytes (columns 4v .. 4v + 3 and 16 + 4v ..);
// int8: runs of 2 (columns 2v, 2v + 1).
struct Layout {
  int block_bytes;  // per row
  int lane_bytes;
  int runs() const { return block_bytes / lane_bytes; }
  // Offset of row r's run v in the interleaved block.
  int position(int r, int v) const { return (v * kRows + r) * lane_bytes; }
};
constexpr Layout kInt4{16, 4};
constexpr Layout kInt8{32, 2};

// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS.
bool superblock_format(QuantFormat f);
// Row r's plain super-block `plain` into / out of the 8 rows' interleaved one `group`.
void put_superblock(QuantFormat f, int r, const uint8_t* plain, uint8_t* group);
void get_superblock(QuantFormat f, int r, const uint8_t* group, uint8_t* plain);
// rows8_blocks_portable (interleaved_rows.h) for these formats; nsb super-blocks.
void rows8_superblocks_portable(QuantFormat f, const uint8_t* q, int64_t nsb, const Q8Block* x, int64_t x_stride,
                                int64_t T, float* out, int64_t out_stride);
// dequantize_interleaved_row (interleaved_rows.h) for Q4_K, Q5_K, Q6_K; false for the others.
bool dequantize_superblock_row(const QuantizedWeight& w, int64_t m, float* out);

}  // namespace kestrel::cpu::interleave_detail
