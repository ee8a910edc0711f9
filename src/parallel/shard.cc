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

}  // namespace

Shard make_shard(const ModelConfig& c, int tp, int pp, int tp_rank, int stage, const std::string& where,
                 int ffn_align) {
  if (tp < 1 || tp > 1024)
    throw Error(ErrorCategory::invalid_argument,
                "ParallelOptions.tensor_parallel = " + std::to_string(tp) + " (must be in [1, 1024])");
  if (pp < 1 || pp > 1024)
    throw Error(ErrorCategory::invalid_argument,
                "ParallelOptions.pipeline_parallel = " + std::to_string(pp) + " (must be in [1, 1024])");
  const char* tp_name = "ParallelOptions.tensor_parallel";
  require_divisible(c.num_heads, tp, "num_heads", tp_name, where);
  if (ffn_align < 1 || c.ffn_size % ffn_align != 0)
    throw Error(ErrorCategory::internal, where + ": FFN alignment " + std::to_string(ffn_align) +
                                             " does not divide ffn_size " + std::to_string(c.ffn_size));
  const int ffn_units = c.ffn_size / ffn_align;
  if (ffn_units < tp)
    throw Error(ErrorCategory::invalid_argument,
                where + ": ffn_size " + std::to_string(c.ffn_size) +
                    (ffn_align > 1 ? " is " + std::to_string(ffn_units) + " blocks of " + std::to_string(ffn_align) +
                                         " columns in the down projection as loaded, fewer than "
                                   : " is smaller than ") +
                    tp_name + " " + std::to_string(tp) + " (each rank needs at least one" +
                    (ffn_align > 1 ? " whole block)" : " column)"));
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
  // Units of ffn_align columns: the first ffn_units % tp ranks take one more.
  const int unit_base = ffn_units / tp, unit_extra = ffn_units % tp;
  s.ffn = (unit_base + (tp_rank < unit_extra ? 1 : 0)) * ffn_align;
  s.ffn_begin = (tp_rank * unit_base + std::min(tp_rank, unit_extra)) * ffn_align;
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
  s.vocab.row_ranges = {{shard.vocab_begin, shard.vocab_valid}};
  s.vocab.pad_rows = shard.vocab - shard.vocab_valid;
  return s;
}

}  // namespace kestrel
