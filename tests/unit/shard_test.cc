// Which slice of a model each rank of a tp x pp grid holds (parallel/shard.h), and the
// errors for splits that do not fit the model.
#include <gtest/gtest.h>

#include <tuple>
#include <utility>
#include <vector>

#include "kestrel/error.h"
#include "parallel/shard.h"

namespace kestrel {
namespace {

ModelConfig config(int heads, int kv_heads, int layers) {
  ModelConfig c;
  c.vocab_size = 1200;
  c.hidden_size = 64;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = 16;
  c.ffn_size = 240;
  c.max_positions = 128;
  return c;
}

TEST(Shard, TensorRanksPartitionHeadsFfnAndVocabulary) {
  const ModelConfig c = config(8, 4, 5);
  for (int t = 0; t < 4; ++t) {
    Shard s = make_shard(c, 4, 1, t, 0, "m");
    EXPECT_EQ(s.n_heads, 2);
    EXPECT_EQ(s.q_head_begin, 2 * t);
    EXPECT_EQ(s.n_kv_heads, 1);
    EXPECT_EQ(s.kv_head_begin, t);  // query heads 2t, 2t+1 read KV head t
    EXPECT_EQ(s.ffn, 60);
    EXPECT_EQ(s.ffn_begin, 60 * t);
    EXPECT_EQ(s.vocab, 304);  // 1200 / 4 = 300 rounded up to a row group of 8
    EXPECT_EQ(s.vocab_begin, 304 * t);
    EXPECT_EQ(s.vocab_valid, t < 3 ? 304 : 1200 - 3 * 304);
    EXPECT_EQ(s.layer_begin, 0);
    EXPECT_EQ(s.layer_end, 5);
  }
}

// With an FFN alignment (the down projection's column blocks as loaded) that divides
// ffn_size / tp, the split is the even one, as without.
TEST(Shard, AnAlignmentThatDividesTheEvenSplitKeepsIt) {
  ModelConfig c = config(8, 8, 2);
  c.ffn_size = 11008 * 2;  // Llama-7B's FFN twice: 11008 = 43 super-blocks of 256 per rank
  for (int align : {1, 32, 256})
    for (int t = 0; t < 2; ++t) {
      const Shard even = make_shard(c, 2, 1, t, 0, "m"), aligned = make_shard(c, 2, 1, t, 0, "m", align);
      EXPECT_EQ(aligned.ffn, 11008) << align;
      EXPECT_EQ(aligned.ffn_begin, 11008 * t) << align;
      EXPECT_EQ(even.ffn, aligned.ffn);
      EXPECT_EQ(even.ffn_begin, aligned.ffn_begin);
    }
}

// Llama-7B's 11008 FFN columns are 43 K-quant super-blocks: tp = 2 gives 22 and 21 blocks
// (5632 + 5376 columns) instead of 5504 each, which would cut the 22nd block; 32-column
// blocks (Q8_0, Q4_0, ...) divide 5504 and keep the even split.
TEST(Shard, FfnSplitsInWholeBlocksFirstRanksOneMore) {
  ModelConfig c = config(8, 8, 2);
  c.ffn_size = 11008;
  const Shard a = make_shard(c, 2, 1, 0, 0, "m", 256), b = make_shard(c, 2, 1, 1, 0, "m", 256);
  EXPECT_EQ(a.ffn_begin, 0);
  EXPECT_EQ(a.ffn, 22 * 256);
  EXPECT_EQ(b.ffn_begin, 22 * 256);
  EXPECT_EQ(b.ffn, 21 * 256);
  EXPECT_EQ(make_shard(c, 2, 1, 1, 0, "m", 32).ffn_begin, 5504);
  // tp = 4: 43 = 11 + 11 + 11 + 10 blocks; every boundary on a block, the ranks tile the FFN.
  int begin = 0;
  for (int t = 0; t < 4; ++t) {
    const Shard s = make_shard(c, 4, 1, t, 0, "m", 256);
    EXPECT_EQ(s.ffn_begin, begin) << t;
    EXPECT_EQ(s.ffn, (t < 3 ? 11 : 10) * 256) << t;
    EXPECT_EQ(s.ffn_begin % 256, 0);
    begin += s.ffn;
  }
  EXPECT_EQ(begin, 11008);
  // Dense weights split by columns: 250 over 4 ranks is 63, 63, 62, 62.
  c.ffn_size = 250;
  const int want[] = {63, 63, 62, 62}, want_begin[] = {0, 63, 126, 188};
  for (int t = 0; t < 4; ++t) {
    const Shard s = make_shard(c, 4, 1, t, 0, "m");
    EXPECT_EQ(s.ffn, want[t]) << t;
    EXPECT_EQ(s.ffn_begin, want_begin[t]) << t;
  }
}

// The shard_slices of an uneven split: up's gate and up rows and down's columns are the
// rank's own FFN columns.
TEST(Shard, SlicesFollowTheRanksOwnFfnColumns) {
  ModelConfig c = config(8, 8, 2);
  c.ffn_size = 768;
  const Shard second = make_shard(c, 2, 1, 1, 0, "m", 256);
  const ShardSlices s = shard_slices(second, c, true);
  const std::vector<std::pair<int64_t, int64_t>> up = {{512, 256}, {768 + 512, 256}};
  EXPECT_EQ(s.up.row_ranges, up);
  EXPECT_EQ(s.down.col_begin, 512);
  EXPECT_EQ(s.down.col_count, 256);
}

TEST(Shard, AVocabularyThatTpDoesNotDivideIsPaddedOnTheLastRank) {
  ModelConfig c = config(8, 8, 2);
  c.vocab_size = 50257;  // GPT-2's
  Shard first = make_shard(c, 2, 1, 0, 0, "m"), second = make_shard(c, 2, 1, 1, 0, "m");
  EXPECT_EQ(first.vocab, 25136);  // ceil(50257 / 2) = 25129, rounded up to a row group of 8
  EXPECT_EQ(first.vocab_valid, 25136);
  EXPECT_EQ(second.vocab_begin, 25136);
  EXPECT_EQ(second.vocab, 25136);
  EXPECT_EQ(second.vocab_valid, 25121);  // 15 rows of padding
}

// Each rank's vocabulary rows start on a row group of kVocabRowAlignment (so a tied LM head
// can be a view of the CPU's interleaved table) unless rounding would leave the last rank
// without a real row; one rank holds the vocabulary as it is.
TEST(Shard, VocabularyRowsStartOnARowGroupWhenEveryRankKeepsARealRow) {
  ModelConfig c = config(12, 12, 2);  // heads and FFN split by 2, 3 and 4
  for (const auto& [vocab, tp, rows] : {std::tuple{49152, 3, 16384}, {1000, 3, 336}, {1002, 4, 256},
                                        {128256, 2, 64128}, {1001, 1, 1001}, {40, 4, 10}, {41, 4, 11}}) {
    SCOPED_TRACE(std::to_string(vocab) + " over " + std::to_string(tp));
    c.vocab_size = vocab;
    int covered = 0;
    for (int t = 0; t < tp; ++t) {
      const Shard s = make_shard(c, tp, 1, t, 0, "m");
      EXPECT_EQ(s.vocab, rows);
      EXPECT_EQ(s.vocab_begin, t * rows);
      EXPECT_GT(s.vocab_valid, 0);
      covered += s.vocab_valid;
    }
    EXPECT_EQ(covered, vocab);
  }
}

TEST(Shard, FewerKvHeadsThanRanksAreReplicatedWithinTheirGroup) {
  const ModelConfig c = config(8, 2, 2);  // query heads 0-3 read KV head 0, 4-7 read 1
  const int want[] = {0, 0, 1, 1};
  for (int t = 0; t < 4; ++t) {
    Shard s = make_shard(c, 4, 1, t, 0, "m");
    EXPECT_EQ(s.n_kv_heads, 1);
    EXPECT_EQ(s.kv_head_begin, want[t]) << t;
  }
  Shard mqa = make_shard(config(8, 1, 2), 8, 1, 5, 0, "m");
  EXPECT_EQ(mqa.n_kv_heads, 1);
  EXPECT_EQ(mqa.kv_head_begin, 0);
}

TEST(Shard, StagesTakeContiguousLayersFirstOnesOneMore) {
  const ModelConfig c = config(4, 4, 7);
  const int begin[] = {0, 3, 5}, end[] = {3, 5, 7};
  for (int p = 0; p < 3; ++p) {
    Shard s = make_shard(c, 1, 3, 0, p, "m");
    EXPECT_EQ(s.layer_begin, begin[p]);
    EXPECT_EQ(s.layer_end, end[p]);
    EXPECT_EQ(s.first_stage(), p == 0);
    EXPECT_EQ(s.last_stage(), p == 2);
  }
}

void expect_error(const ModelConfig& c, int tp, int pp, const std::string& text, int ffn_align = 1) {
  try {
    make_shard(c, tp, pp, 0, 0, "model.gguf", ffn_align);
    ADD_FAILURE() << "tp " << tp << " x pp " << pp << " was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    EXPECT_NE(e.message().find(text), std::string::npos) << e.message();
  }
}

TEST(Shard, SplitsThatDoNotFitNameTheDimension) {
  expect_error(config(9, 3, 4), 2, 1, "model.gguf: num_heads 9 is not divisible by ParallelOptions.tensor_parallel 2");
  ModelConfig ffn = config(8, 8, 4);
  ffn.ffn_size = 3;
  expect_error(ffn, 4, 1, "model.gguf: ffn_size 3 is smaller than ParallelOptions.tensor_parallel 4");
  ffn.ffn_size = 768;
  expect_error(ffn, 4, 1,
               "model.gguf: ffn_size 768 is 3 blocks of 256 columns in the down projection as loaded, fewer than "
               "ParallelOptions.tensor_parallel 4",
               256);
  ModelConfig vocab = config(8, 8, 4);
  vocab.vocab_size = 6;
  expect_error(vocab, 8, 1, "vocab_size 6 is too small to split over ParallelOptions.tensor_parallel 8");
  expect_error(config(12, 3, 4), 4, 1, "num_kv_heads 3 and ParallelOptions.tensor_parallel 4: one must divide the other");
  expect_error(config(4, 4, 3), 1, 4, "pipeline_parallel = 4 is more stages than the 3 layers");
  expect_error(config(4, 4, 3), 0, 1, "tensor_parallel = 0");
}

}  // namespace
}  // namespace kestrel
