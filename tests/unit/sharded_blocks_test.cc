// A tensor-parallel rank keeps a GGUF file's blocks as stored for the weights it holds
// whole rows of (WeightStore::load with a Shard, no MPI needed): on llama.cpp's Q4_K_M
// fixture (4 heads, 2 KV heads, FFN 512, vocabulary 1000, tied Q6_K embedding) split over
// tp = 2, each rank's QKV weight is a mixed weight (its Q and K heads' Q4_K rows, its V
// head's Q6_K rows), its [gate | up] rows Q4_K, its LM-head rows Q6_K (a view of the table's,
// tests/unit/tied_head_view_test.cc), its down projection's
// FFN columns (256 of 512: whole Q6_K super-blocks) Q6_K, each value bit for bit the
// single-process weight's; the output projection's 128 input columns of 256 cut Q4_K
// super-blocks, so it is materialized as before.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>
#include <vector>

#include "cpu/cpu_ops.h"
#include "loaders/gguf.h"
#include "loaders/gguf_source.h"
#include "models/architecture.h"
#include "models/quantize.h"
#include "models/weights.h"
#include "parallel/shard.h"
#include "test_support.h"

namespace kestrel {
namespace {

std::vector<float> dequantized(const QuantizedWeight& w) {
  std::vector<float> out(static_cast<size_t>(w.rows * w.cols));
  cpu::dequantize_weight(w, out.data());
  return out;
}

// Rows `ranges` ({begin, count}) of the [rows, cols] matrix m, stacked.
std::vector<float> rows_of(const std::vector<float>& m, int64_t cols,
                           const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  std::vector<float> out;
  for (const auto& [begin, count] : ranges)
    out.insert(out.end(), m.begin() + begin * cols, m.begin() + (begin + count) * cols);
  return out;
}

TEST(ShardedBlocks, TensorParallelRanksKeepTheirRowsOfBlocksAsStored) {
  const GgufFile file(testing::fixture_dir() / "kquant" / "tiny256-Q4_K_M.gguf");
  const GgufSource source(file);
  const Architecture arch = architecture_from_gguf(file);
  const ModelConfig& c = arch.config;
  ASSERT_EQ(c.num_heads, 4);
  ASSERT_EQ(c.num_kv_heads, 2);
  ASSERT_EQ(c.vocab_size, 1000);
  const int64_t hd = c.head_dim, nh = c.num_heads, nkv = c.num_kv_heads, F = c.ffn_size, H = c.hidden_size;
  auto backend = make_cpu_backend(1);
  const QuantizationSpec spec{Quantization::automatic, 0};
  WeightStore whole_store(*backend, DType::f32, spec);
  const ModelWeights whole = whole_store.load(source, arch, make_shard(c, 1, 1, 0, 0, "whole"));
  const LayerWeights& wl = whole.layers.at(0);
  ASSERT_EQ(wl.qkv_weight.quantized.format, QuantFormat::mixed);
  const std::vector<float> qkv = dequantized(wl.qkv_weight.quantized), up = dequantized(wl.up_weight.quantized),
                           head = dequantized(whole.lm_head.quantized),
                           down = dequantized(wl.down_weight.quantized);
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE(r);
    const Shard shard = make_shard(c, 2, 1, r, 0, "rank");
    WeightStore store(*backend, DType::f32, spec);
    const ModelWeights w = store.load(source, arch, shard);
    const LayerWeights& l = w.layers.at(0);
    // QKV: q heads [2r, 2r + 2), KV head r.
    const QuantizedWeight& q = l.qkv_weight.quantized;
    ASSERT_EQ(q.format, QuantFormat::mixed);
    ASSERT_EQ(q.parts.size(), 2u);
    EXPECT_EQ(q.parts[0].format, QuantFormat::q4_k);
    EXPECT_EQ(q.parts[0].rows, 3 * hd);  // 2 q heads and 1 k head
    EXPECT_EQ(q.parts[1].format, QuantFormat::q6_k);
    EXPECT_EQ(q.parts[1].rows, hd);
    EXPECT_EQ(dequantized(q), rows_of(qkv, H, {{r * 2 * hd, 2 * hd}, {(nh + r) * hd, hd}, {(nh + nkv + r) * hd, hd}}));
    // [gate | up]: FFN columns [r F / 2, (r + 1) F / 2) of each.
    const QuantizedWeight& u = l.up_weight.quantized;
    EXPECT_EQ(u.format, QuantFormat::q4_k);
    EXPECT_EQ(dequantized(u), rows_of(up, H, {{r * F / 2, F / 2}, {F + r * F / 2, F / 2}}));
    // LM head: vocabulary rows [504 r, 504 r + 504) of the tied Q6_K table (1000 / 2 rounded
    // up to a row group of 8; rank 1's last 8 are zero padding), precise activations.
    const QuantizedWeight& h = w.lm_head.quantized;
    EXPECT_EQ(h.format, QuantFormat::q6_k);
    EXPECT_TRUE(h.precise_activations);
    std::vector<float> want_head = rows_of(head, H, {{r * 504, r == 0 ? 504 : 496}});
    want_head.resize(504 * H, 0.0f);
    EXPECT_EQ(dequantized(h), want_head);
    // Down: FFN columns [256 r, 256 r + 256) of every row, Q6_K as stored.
    const QuantizedWeight& d = l.down_weight.quantized;
    EXPECT_EQ(d.format, QuantFormat::q6_k);
    ASSERT_EQ(d.cols, F / 2);
    const std::vector<float> rank_down = dequantized(d);
    for (int64_t row = 0; row < H; ++row)
      for (int64_t col = 0; col < F / 2; ++col)
        ASSERT_EQ(rank_down[row * (F / 2) + col], down[row * F + r * F / 2 + col]) << row << ", " << col;
    // Output projection: half a super-block of columns per rank, materialized in f32.
    EXPECT_FALSE(l.out_weight.is_quantized());
    EXPECT_EQ(l.out_weight.dense.dim(1), nh * hd / 2);
  }
}

// llama.cpp's Q4_K of a tiny Llama with FFN 768 (tests/fixtures/make_ffn768_gguf.py): down
// [256, 768] is 3 Q4_K super-blocks a row. The loader splits the FFN in whole blocks
// (ffn_split_alignment 256): at tp = 2 rank 0 takes columns [0, 512), rank 1 [512, 768), and
// each rank's down keeps its Q4_K blocks, every value the single-process weight's, as do its
// gate and up rows. The single-process model itself gives transformers' logits (the file's
// tensors dequantized by gguf-py) within 1e-4 of the logit scale.
TEST(ShardedBlocks, UnevenFfnSplitKeepsDownInWholeBlocks) {
  const auto path = testing::fixture_dir() / "kquant" / "ffn768-Q4_K.gguf";
  const GgufFile file(path);
  const GgufSource source(file);
  const Architecture arch = architecture_from_gguf(file);
  const ModelConfig& c = arch.config;
  ASSERT_EQ(c.ffn_size, 768);
  const int64_t F = c.ffn_size, H = c.hidden_size;
  auto backend = make_cpu_backend(1);
  const QuantizationSpec spec{Quantization::automatic, 0};
  const int align = ffn_split_alignment(source, arch, spec).dense;
  ASSERT_EQ(align, 256);
  EXPECT_EQ(ffn_split_alignment(source, arch, {Quantization::none, 0}).dense, 1);
  WeightStore whole_store(*backend, DType::f32, spec);
  const ModelWeights whole = whole_store.load(source, arch, make_shard(c, 1, 1, 0, 0, "whole", align));
  const LayerWeights& wl = whole.layers.at(0);
  ASSERT_EQ(wl.down_weight.quantized.format, QuantFormat::q4_k);
  const std::vector<float> down = dequantized(wl.down_weight.quantized), up = dequantized(wl.up_weight.quantized);
  const int64_t begin[] = {0, 512}, count[] = {512, 256};
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE(r);
    const Shard shard = make_shard(c, 2, 1, r, 0, "rank", align);
    ASSERT_EQ(shard.ffn_begin, begin[r]);
    ASSERT_EQ(shard.ffn, count[r]);
    WeightStore store(*backend, DType::f32, spec);
    const ModelWeights w = store.load(source, arch, shard);
    const LayerWeights& l = w.layers.at(0);
    const QuantizedWeight& d = l.down_weight.quantized;
    ASSERT_EQ(d.format, QuantFormat::q4_k);
    ASSERT_EQ(d.rows, H);
    ASSERT_EQ(d.cols, count[r]);
    const std::vector<float> rank_down = dequantized(d);
    for (int64_t row = 0; row < H; ++row)
      for (int64_t col = 0; col < count[r]; ++col)
        ASSERT_EQ(rank_down[row * count[r] + col], down[row * F + begin[r] + col]) << row << ", " << col;
    const QuantizedWeight& u = l.up_weight.quantized;
    EXPECT_EQ(u.format, QuantFormat::q4_k);
    EXPECT_EQ(dequantized(u), rows_of(up, H, {{begin[r], count[r]}, {F + begin[r], count[r]}}));
  }

  // The fixture against transformers: the top 8 logits of every position.
  std::ifstream in(testing::fixture_dir() / "kquant" / "ffn768-Q4_K.json");
  ASSERT_TRUE(in) << "tests/fixtures/kquant/ffn768-Q4_K.json";
  const nlohmann::json reference = nlohmann::json::parse(in);
  const std::vector<int32_t> ids = reference.at("ids").get<std::vector<int32_t>>();
  ModelOptions options;
  options.num_threads = 1;
  auto model = Model::load(path, options);
  Session session(model, testing::f32_cache({.max_sequences = 1}));
  Decoder decoder(session);
  const std::vector<float> logits = decoder.score(ids);
  const size_t V = static_cast<size_t>(c.vocab_size);
  ASSERT_EQ(logits.size(), ids.size() * V);
  const nlohmann::json& positions = reference.at("transformers");
  ASSERT_EQ(positions.size(), ids.size());
  for (size_t p = 0; p < ids.size(); ++p) {
    const std::vector<int> top = positions.at(p).at("ids").get<std::vector<int>>();
    const std::vector<float> want = positions.at(p).at("logits").get<std::vector<float>>();
    for (size_t j = 0; j < top.size(); ++j)
      EXPECT_NEAR(logits[p * V + top[j]], want[j], 1e-4f * std::abs(want.front())) << p << " " << top[j];
  }
}

}  // namespace
}  // namespace kestrel
