// parallel/shard.h: which slice of a model one rank of a tp x pp grid holds.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kestrel/model.h"

namespace kestrel {

// Megatron-style tensor parallel inside a stage, contiguous layers per pipeline stage.
// Tensor rank t of tp holds query heads [q_head_begin, +n_heads), the KV heads they read
// [kv_head_begin, +n_kv_heads) (whole groups when num_kv_heads >= tp; one KV head shared
// with the other ranks of its group when num_kv_heads < tp), FFN columns [ffn_begin, +ffn)
// (split in units of the FFN alignment, see make_shard: the same count on every rank when
// the units divide evenly, else one unit more on the first ranks) and LM-head rows
// [vocab_begin, +vocab): ceil(V / tp) rows each, rounded up to a multiple
// of kVocabRowAlignment when that leaves every rank a real row, of which the first
// vocab_valid are real and the rest (on the last ranks, when tp x vocab exceeds V) zero
// padding that never reaches the gathered logits. Stage s of pp holds layers
// [layer_begin, layer_end): the first stages take one extra layer when pp does not divide
// num_layers. A mixture of experts splits each expert's columns (expert_ffn_size) and the
// shared expert's (shared_expert_ffn_size) the same way as the dense FFN, in their own
// units: every rank holds its slice of every expert, and the router is replicated.
// The row group of the CPU's interleaved weight layout (kernels/cpu/interleaved_rows.h): a
// rank's vocabulary rows start on one, so that its LM-head rows can be a view of a whole
// table laid out that way (tied_head_doubles_as_embedding, models/quantize.h).
constexpr int kVocabRowAlignment = 8;

struct Shard {
  int tp = 1, pp = 1;
  int tp_rank = 0, stage = 0;
  int layer_begin = 0, layer_end = 0;
  int n_heads = 0, q_head_begin = 0;
  int n_kv_heads = 0, kv_head_begin = 0;
  int ffn = 0, ffn_begin = 0;
  int expert_ffn = 0, expert_ffn_begin = 0;  // of every routed expert (0 for a dense model)
  int shared_ffn = 0, shared_ffn_begin = 0;  // of the shared expert (0 without one)
  int vocab = 0, vocab_begin = 0, vocab_valid = 0;

  int num_layers() const { return layer_end - layer_begin; }
  bool first_stage() const { return stage == 0; }
  bool last_stage() const { return stage == pp - 1; }
};

// The number of FFN columns no rank's slice may cut (ffn_split_alignment in
// models/quantize.h): the column block of a down projection as the loader keeps it (256
// for K-quants, 32 for Q8_0, 1 for weights held dense), for the dense FFN, the routed
// experts and the shared expert. An int converts to the dense FFN's alone.
struct FfnAlignment {
  int dense = 1, expert = 1, shared = 1;
  FfnAlignment(int dense_align = 1, int expert_align = 1, int shared_align = 1)  // NOLINT: implicit from int
      : dense(dense_align), expert(expert_align), shared(shared_align) {}
  bool operator==(const FfnAlignment&) const = default;
};

// The shard of rank (stage, tp_rank); throws Error(invalid_argument) naming the dimension
// that tp or pp does not fit (heads, KV heads, fewer FFN units than ranks: ffn_size,
// expert_ffn_size or shared_expert_ffn_size; more stages than layers), `where` being the
// model path.
// Each FFN's size / align units go to the ranks in order, size / align / tp each and one
// more to each of the first (size / align) % tp ranks, so that every rank's down projection
// keeps the file's blocks; when align divides size / tp this is the even split.
Shard make_shard(const ModelConfig& config, int tp, int pp, int tp_rank, int stage,
                 const std::string& where, FfnAlignment align = {});

// Which part of a canonical [rows, cols] weight a rank keeps: the rows of `row_ranges`
// ({begin, count} in canonical row order, concatenated), then `pad_rows` rows of zeros,
// and columns [col_begin, col_begin + col_count). Empty row_ranges and col_count < 0 mean
// all of them.
struct WeightSlice {
  std::vector<std::pair<int64_t, int64_t>> row_ranges;
  int64_t pad_rows = 0;
  int64_t col_begin = 0;
  int64_t col_count = -1;
  bool operator==(const WeightSlice&) const = default;
};

// Whether a weight loaded as slice `loaded` of the same source tensors serves `wanted` as
// it is: the same slice, or (a matrix loaded with every column) one block of its rows, such
// as a tied LM head's vocabulary rows on a rank that holds the whole embedding; when
// `loaded` is rows [0, n) followed by zero padding rows (a tied table, tied_table_slice),
// `wanted`'s padding rows too, when they follow its last rows.
bool slice_served_by(const WeightSlice& wanted, const WeightSlice& loaded, bool matrix);

// The part of each weight tensor parallelism splits that `shard` holds (all of each when
// tp = 1): the fused QKV rows of its query heads and of the KV heads they read; the
// matching input columns of the output projection; its FFN rows of [gate | up] (of up
// alone when the FFN is not gated) and the matching input columns of down; its vocabulary
// rows of the LM head, zero rows padding them to ceil(V / tp); of a mixture of experts,
// every expert's [gate | up] rows and down columns of its expert FFN columns, and the
// shared expert's of its shared FFN columns (MoE experts are always gated).
struct ShardSlices {
  WeightSlice qkv, out, up, down, vocab;
  WeightSlice expert_up, expert_down, shared_up, shared_down;
};
ShardSlices shard_slices(const Shard& shard, const ModelConfig& config, bool gated_ffn);

}  // namespace kestrel
