// models/row_view.h: a block of rows of a loaded quantized weight, without a copy.
#pragma once

#include <cstdint>

#include "backend.h"

namespace kestrel {

// Rows [begin, begin + count) of `w` as a weight of their own, its data, scales and mins
// views into w's (each [M, X] tensor of QuantizedWeight's layouts holds row m at row m, so
// the same row offsets serve all three: ggml block formats keep their scales inside the
// data; int4 / int8 have scales and mins of G groups per row). In the CPU's interleaved
// layout (interleave = 8: rows in groups of 8, each group's data, scales and mins
// consecutive at 8 times the plain row's offset) begin and count must be multiples of 8,
// which keeps every group whole, and the view is interleaved too. Flags are w's. Throws
// Error(internal) for rows out of range, an interleaved block that cuts a group, or a mixed
// weight (a tied embedding table is one source tensor: never mixed). Tied LM heads at
// tp > 1 are such views of the rank's embedding table (WeightStore::load).
QuantizedWeight quantized_row_view(const QuantizedWeight& w, int64_t begin, int64_t count);

}  // namespace kestrel
