#include "parallel/shard.h"

#include <algorithm>

#include "kestrel/error.h"

namespace kestrel {

namespace {

void require_divisible(int value, int parts, const char* what, const char* option, const std::string& where) {
  if (value % parts != 0)
    throw Error(ErrorCategory::invalid_argument,
                where + ": " + what + " " + std::to_string(value) + " is not divisible by " + option + " " +
                    std::to_string(parts));
}

struct FfnSplit {
  int count = 0, begin = 0;
};

// Tensor rank `tp_rank`'s columns of an FFN of `size` columns split in units of `align`:
// the first (size / align) % tp ranks take one unit more. `name` is the config key.
FfnSplit split_ffn(int size, int align, const char* name, int tp, int tp_rank, const std::string& where) {
  if (align < 1 || size % align != 0)
    throw Error(ErrorCategory::internal, where + ": FFN alignment " + std::to_string(align) + " does not divide " +
                                             name + " " + std::to_string(size));
  const int units = size / align;
  if (units < tp)
    throw Error(ErrorCategory::invalid_argument,
                where + ": " + name + " " + std::to_string(size) +
                    (align > 1 ? " is " + std::to_string(units) + (units == 1 ? " block of " : " blocks of ") +
                                     std::to_string(align) +
                                     " columns in the down projection as loaded, fewer than "
                               : " is smaller than ") +
                    "ParallelOptions.tensor_parallel " + std::to_string(tp) + " (each rank needs at least one" +
                    (align > 1 ? " whole block)" : " column)"));
  const int base = units / tp, extra = units % tp;
  return {(base + (tp_rank < extra ? 1 : 0)) * align, (tp_rank * base + std::min(tp_rank, extra)) * align};
}

}  // namespace

Shard make_shard(const ModelConfig& c, int tp, int pp, int tp_rank, int stage, const std::string& where,
                 FfnAlignment align) {
  if (tp < 1 || tp > 1024)
    throw Error(ErrorCategory::invalid_argument,
                "ParallelOptions.tensor_parallel = " + std::to_string(tp) + " (must be in [1, 1024])");
  if (pp < 1 || pp > 1024)
    throw Error(ErrorCategory::invalid_argument,
                "ParallelOptions.pipeline_parallel = " + std::to_string(pp) + " (must be in [1, 1024])");
  const char* tp_name = "ParallelOptions.tensor_parallel";
  require_divisible(c.num_heads, tp, "num_heads", tp_name, where);
  const FfnSplit dense = split_ffn(c.ffn_size, align.dense, "ffn_size", tp, tp_rank, where);
  FfnSplit expert, shared;
  if (c.num_experts > 0) expert = split_ffn(c.expert_ffn_size, align.expert, "expert_ffn_size", tp, tp_rank, where);
  if (c.shared_expert_ffn_size > 0)
    shared = split_ffn(c.shared_expert_ffn_size, align.shared, "shared_expert_ffn_size", tp, tp_rank, where);
  if (c.num_kv_heads % tp != 0 && tp % c.num_kv_heads != 0)
    throw Error(ErrorCategory::invalid_argument,
                where + ": num_kv_heads " + std::to_string(c.num_kv_heads) + " and " + tp_name + " " +
                    std::to_string(tp) + ": one must divide the other (KV heads are split or replicated)");
  const int vocab_per_rank = (c.vocab_size + tp - 1) / tp;
  if (static_cast<int64_t>(vocab_per_rank) * (tp - 1) >= c.vocab_size)
    throw Error(ErrorCategory::invalid_argument, where + ": vocab_size " + std::to_string(c.vocab_size) +
                                                     " is too small to split over " + tp_name + " " +
                                                     std::to_string(tp));
  if (pp > c.num_layers)
    throw Error(ErrorCategory::invalid_argument,
                "ParallelOptions.pipeline_parallel = " + std::to_string(pp) + " is more stages than the " +
                    std::to_string(c.num_layers) + " layers of " + where);

  Shard s;
  s.tp = tp;
  s.pp = pp;
  s.tp_rank = tp_rank;
  s.stage = stage;
  const int base = c.num_layers / pp, extra = c.num_layers % pp;
  s.layer_begin = stage * base + std::min(stage, extra);
  s.layer_end = s.layer_begin + base + (stage < extra ? 1 : 0);
  s.n_heads = c.num_heads / tp;
  s.q_head_begin = tp_rank * s.n_heads;
  if (c.num_kv_heads >= tp) {
    s.n_kv_heads = c.num_kv_heads / tp;
    s.kv_head_begin = tp_rank * s.n_kv_heads;
  } else {  // each rank's query heads fall inside one KV group: replicate that KV head
    s.n_kv_heads = 1;
    s.kv_head_begin = s.q_head_begin / (c.num_heads / c.num_kv_heads);
  }
  s.ffn = dense.count;
  s.ffn_begin = dense.begin;
  s.expert_ffn = expert.count;
  s.expert_ffn_begin = expert.begin;
  s.shared_ffn = shared.count;
  s.shared_ffn_begin = shared.begin;
  // Rounded up to a multiple of kVocabRowAlignment when every rank still keeps a real row,
  // so that each rank's rows start on a row group of the CPU's interleaved layout (a tied
  // LM head is then a view of the embedding table, WeightStore::load).
  const int aligned = (vocab_per_rank + kVocabRowAlignment - 1) / kVocabRowAlignment * kVocabRowAlignment;
  s.vocab = tp > 1 && static_cast<int64_t>(aligned) * (tp - 1) < c.vocab_size ? aligned : vocab_per_rank;
  s.vocab_begin = tp_rank * s.vocab;
  s.vocab_valid = std::max(0, std::min(s.vocab, c.vocab_size - s.vocab_begin));
  return s;
}

bool slice_served_by(const WeightSlice& wanted, const WeightSlice& loaded, bool matrix) {
  if (wanted == loaded) return true;
  if (!matrix || wanted.col_count >= 0 || loaded.col_count >= 0 || wanted.row_ranges.size() != 1) return false;
  if (loaded == WeightSlice{}) return wanted.pad_rows == 0;  // whole: any block of its rows
  // Rows [0, n) and padding rows after them (a tied table, tied_table_slice): a block of the
  // rows, or the last rows with no more padding rows than the table has.
  if (loaded.row_ranges.size() != 1 || loaded.row_ranges[0].first != 0) return false;
  const auto [begin, count] = wanted.row_ranges[0];
  return begin + count <= loaded.row_ranges[0].second &&
         (wanted.pad_rows == 0 || (begin + count == loaded.row_ranges[0].second && wanted.pad_rows <= loaded.pad_rows));
}

ShardSlices shard_slices(const Shard& shard, const ModelConfig& c, bool gated_ffn) {
  ShardSlices s;
  if (shard.tp == 1) return s;
  const int64_t hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads, F = c.ffn_size;
  s.qkv.row_ranges = {{shard.q_head_begin * hd, shard.n_heads * hd},
                      {(nh + shard.kv_head_begin) * hd, shard.n_kv_heads * hd},
                      {(nh + nkv + shard.kv_head_begin) * hd, shard.n_kv_heads * hd}};
  s.out.col_begin = shard.q_head_begin * hd;
  s.out.col_count = shard.n_heads * hd;
  s.up.row_ranges = {{shard.ffn_begin, shard.ffn}};
  if (gated_ffn) s.up.row_ranges.push_back({F + shard.ffn_begin, shard.ffn});
  s.down.col_begin = shard.ffn_begin;
  s.down.col_count = shard.ffn;
  // Every expert's (and the shared expert's) [gate | up] rows and down columns, as the
  // dense FFN's; the router and the shared expert's gate are replicated.
  const int64_t Fe = c.expert_ffn_size, Fs = c.shared_expert_ffn_size;
  if (c.num_experts > 0) {
    s.expert_up.row_ranges = {{shard.expert_ffn_begin, shard.expert_ffn},
                              {Fe + shard.expert_ffn_begin, shard.expert_ffn}};
    s.expert_down.col_begin = shard.expert_ffn_begin;
    s.expert_down.col_count = shard.expert_ffn;
  }
  if (Fs > 0) {
    s.shared_up.row_ranges = {{shard.shared_ffn_begin, shard.shared_ffn}, {Fs + shard.shared_ffn_begin, shard.shared_ffn}};
    s.shared_down.col_begin = shard.shared_ffn_begin;
    s.shared_down.col_count = shard.shared_ffn;
  }
  s.vocab.row_ranges = {{shard.vocab_begin, shard.vocab_valid}};
  s.vocab.pad_rows = shard.vocab - shard.vocab_valid;
  return s;
}

}  // namespace kestrel
