// A tied LM head kept in a GGUF file's blocks is not held twice at tp > 1 with pp = 1: the
// rank holds the whole embedding table once, laid out for the head's kernels (the CPU's
// interleaved layout where the head's format takes it) and followed by the last ranks' zero
// padding rows, and its head is a view of its vocabulary rows of it (WeightStore::load,
// tied_head_doubles_as_embedding, quantized_row_view). Each rank's weights are built as the
// loader builds them (no MPI): the head's data, scales and mins point into the table's at
// the rank's first row, the rank holds the table's bytes and nothing more for its head
// (kestrel-size agrees), and the head's product on fresh random activations is bit for bit
// that of a separate copy of its rows prepared the same way (what tp > 1 held before), its
// padding rows' logits zero. Formats: Q8_0 (int8 groups, interleaved), Q4_1 (int4 groups
// with scales and mins), Q4_K (ggml super-blocks, scales inside), under --quant auto and
// the modes whose LM head keeps the blocks (int8 and int4 keep a Q8_0 head).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "cpu/interleaved_rows.h"
#include "kestrel/error.h"
#include "models/quantize.h"
#include "models/row_view.h"
#include "models/weights.h"
#include "test_support.h"
#include "tools/held_weights.h"

namespace kestrel {
namespace {

uint64_t fresh_seed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) | device();
}

// Rank r of tp x 1. Most fixtures have 4 heads, which tp = 3 does not split: there the rank
// holds every head and FFN column (its layers as one process's) and make_shard's vocabulary
// split of tp = 3, which is all the head and the table depend on.
Shard rank_shard(const ModelConfig& c, int tp, int r) {
  if (c.num_heads % tp == 0 && c.ffn_size % tp == 0) return make_shard(c, tp, 1, r, 0, "rank");
  ModelConfig splittable = c;
  splittable.num_heads = splittable.num_kv_heads = splittable.ffn_size = tp;
  const Shard vocab = make_shard(splittable, tp, 1, r, 0, "rank");
  Shard s = make_shard(c, 1, 1, 0, 0, "rank");
  s.tp = tp;
  s.tp_rank = r;
  s.vocab = vocab.vocab;
  s.vocab_begin = vocab.vocab_begin;
  s.vocab_valid = vocab.vocab_valid;
  return s;
}

// Bytes of one row of each of a weight's tensors.
size_t row_bytes(const TensorView& t) { return t.empty() ? 0 : static_cast<size_t>(t.row_size()) * dtype_size(t.dtype); }

struct Case {
  const char* file;
  Quantization mode;
  QuantFormat format;  // the table's held format
};

class TiedHeadView : public ::testing::TestWithParam<Case> {};

TEST_P(TiedHeadView, HeadIsAViewOfTheTableAndComputesAsACopyOfItsRows) {
  const Case k = GetParam();
  const sizing::FileWeights file(testing::fixture_dir() / k.file);
  const WeightSource& source = file.source();
  const Architecture& arch = file.architecture();
  const ModelConfig& c = arch.config;
  const int64_t V = c.vocab_size, H = c.hidden_size;
  const QuantizationSpec spec{k.mode, 0};
  const WeightRecipe head_recipe = arch.recipe(WeightSlot::lm_head, -1);
  ASSERT_EQ(head_recipe.sources, arch.recipe(WeightSlot::token_embedding, -1).sources) << "a tied fixture";
  auto backend = make_cpu_backend(2);

  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);

  for (int tp : {2, 3}) {
    for (int r = 0; r < tp; ++r) {
      SCOPED_TRACE("tp " + std::to_string(tp) + " rank " + std::to_string(r));
      const Shard shard = rank_shard(c, tp, r);
      ASSERT_EQ(shard.vocab % kVocabRowAlignment, 0);
      ASSERT_TRUE(tied_head_doubles_as_embedding(arch, shard));
      const int64_t rows = int64_t{tp} * shard.vocab;  // the table with the padding rows
      ASSERT_GE(rows, V);
      ASSERT_LT(rows - V, int64_t{tp} * (kVocabRowAlignment + 1));  // ceil, then at most 7 more a rank
      WeightStore store(*backend, DType::f32, spec);
      const ModelWeights w = store.load(source, arch, shard);

      // One table of every row and the padding, the head its rows.
      ASSERT_TRUE(w.token_embedding.is_quantized());
      ASSERT_TRUE(w.lm_head.is_quantized());
      const QuantizedWeight &table = w.token_embedding.quantized, &head = w.lm_head.quantized;
      EXPECT_EQ(table.format, k.format);
      EXPECT_EQ(table.rows, rows);
      EXPECT_EQ(head.format, table.format);
      EXPECT_EQ(head.rows, shard.vocab);
      EXPECT_EQ(head.cols, H);
      EXPECT_TRUE(head.precise_activations);
      EXPECT_EQ(head.interleave, table.interleave);
      EXPECT_EQ(head.interleave, k.format == QuantFormat::int8 ? cpu::kInterleaveRows : 0) << "the head's kernels";
      auto at_row = [&](const TensorView& t) {
        return t.empty() ? nullptr
                         : static_cast<const void*>(static_cast<const char*>(t.data) + shard.vocab_begin * row_bytes(t));
      };
      EXPECT_EQ(static_cast<const void*>(head.data.data), at_row(table.data));
      EXPECT_EQ(static_cast<const void*>(head.scales.data), at_row(table.scales));
      EXPECT_EQ(static_cast<const void*>(head.mins.data), at_row(table.mins));
      EXPECT_EQ(head.scales.empty(), k.format != QuantFormat::int8 && k.format != QuantFormat::int4);
      EXPECT_EQ(head.mins.empty(), k.format != QuantFormat::int4);

      // The rank's bytes: kestrel-size's figure, the head none of its own.
      bool tied = false;
      const sizing::WeightBytes held = file.held(shard, k.mode, 0, DType::f32, &tied);
      EXPECT_TRUE(tied);
      EXPECT_EQ(held.total(), store.bytes());
      EXPECT_EQ(held.lm_head, 0u);
      EXPECT_EQ(held.token_embedding,
                quantized_weight_bytes(table.format, rows, H, table.group_size));
      EXPECT_EQ(held.lm_head_view, quantized_weight_bytes(table.format, shard.vocab, H, table.group_size));

      // What the rank held before: a copy of its rows (and zero padding rows), the head's
      // flags, laid out by the backend.
      WeightStore copy_store(*backend, DType::f32, spec);
      std::optional<QuantizedWeight> copy = keep_ggml_blocks(copy_store, source, head_recipe, H, spec.for_lm_head(),
                                                             "copy", shard_slices(shard, c, arch.kinds.gated_ffn).vocab);
      ASSERT_TRUE(copy);
      copy->precise_activations = true;
      backend->prepare_quantized(*copy);
      ASSERT_EQ(copy->rows, head.rows);
      EXPECT_EQ(copy->interleave, head.interleave);

      for (int64_t T : {1, 5}) {  // a decode step's GEMV, a prompt's rows
        std::vector<float> x(static_cast<size_t>(T * H));
        for (float& v : x) v = uniform(rng);
        std::vector<float> got(static_cast<size_t>(T * head.rows), -1.0f), want(got.size(), -2.0f);
        const TensorView xv(x.data(), DType::f32, {T, H}, Device::cpu());
        backend->quantized_linear(xv, head, nullptr, TensorView(got.data(), DType::f32, {T, head.rows}, Device::cpu()));
        backend->quantized_linear(xv, *copy, nullptr, TensorView(want.data(), DType::f32, {T, head.rows}, Device::cpu()));
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << T << " tokens";
        for (int64_t t = 0; t < T; ++t)
          for (int64_t m = shard.vocab_valid; m < shard.vocab; ++m)
            EXPECT_EQ(got[static_cast<size_t>(t * head.rows + m)], 0.0f) << "padding row " << m;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Gguf, TiedHeadView,
    ::testing::Values(Case{"kquant/tiny256-Q8_0.gguf", Quantization::automatic, QuantFormat::int8},
                      Case{"kquant/tiny256-Q8_0.gguf", Quantization::int8, QuantFormat::int8},
                      Case{"kquant/tiny256-Q8_0.gguf", Quantization::int4, QuantFormat::int8},
                      Case{"kquant/tiny256-Q4_1.gguf", Quantization::automatic, QuantFormat::int4},
                      Case{"kquant/tiny256-Q4_K.gguf", Quantization::automatic, QuantFormat::q4_k},
                      Case{"kquant/tiny256-Q6_K.gguf", Quantization::int8, QuantFormat::q6_k},
                      Case{"embedding-blocks/qwen2-q8_0.gguf", Quantization::automatic, QuantFormat::int8},
                      Case{"embedding-blocks/qwen2-6heads-q8_0.gguf", Quantization::automatic, QuantFormat::int8}),
    [](const ::testing::TestParamInfo<Case>& info) {
      std::string name = std::string(info.param.file) + "_" + to_string(info.param.mode);
      for (char& ch : name)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return name;
    });

// Where the head's format is not kept in blocks (--quant int4 asks for an int8 head: Q4_1
// is requantized) the table is held on its own in its blocks and the head is a copy, as before.
TEST(TiedHeadViewNot, AHeadQuantizedAtLoadIsACopyBesideTheTable) {
  const sizing::FileWeights file(testing::fixture_dir() / "kquant/tiny256-Q4_1.gguf");
  const ModelConfig& c = file.architecture().config;
  auto backend = make_cpu_backend(1);
  const Shard shard = make_shard(c, 2, 1, 1, 0, "rank");
  WeightStore store(*backend, DType::f32, {Quantization::int4, 0});
  const ModelWeights w = store.load(file.source(), file.architecture(), shard);
  ASSERT_TRUE(w.token_embedding.is_quantized());
  EXPECT_EQ(w.token_embedding.quantized.rows, c.vocab_size);
  EXPECT_EQ(w.token_embedding.quantized.format, QuantFormat::int4);
  ASSERT_TRUE(w.lm_head.is_quantized());
  EXPECT_EQ(w.lm_head.quantized.format, QuantFormat::int8);
  EXPECT_EQ(w.lm_head.quantized.rows, shard.vocab);
  bool tied = true;
  const sizing::WeightBytes held = file.held(shard, Quantization::int4, 0, DType::f32, &tied);
  EXPECT_FALSE(tied);
  EXPECT_EQ(held.total(), store.bytes());
  EXPECT_GT(held.lm_head, 0u);
}

// quantized_row_view keeps the interleaved groups whole and refuses what it cannot view.
TEST(QuantizedRowView, RefusesRowsOutOfRangeAndCutGroups) {
  std::vector<int8_t> data(16 * 32);
  std::vector<float> scales(16);
  QuantizedWeight w;
  w.format = QuantFormat::int8;
  w.rows = 16;
  w.cols = 32;
  w.group_size = 32;
  w.data = TensorView(data.data(), DType::i8, {16, 32}, Device::cpu());
  w.scales = TensorView(scales.data(), DType::f32, {16, 1}, Device::cpu());
  const QuantizedWeight v = quantized_row_view(w, 3, 5);
  EXPECT_EQ(v.rows, 5);
  EXPECT_EQ(v.data.data, data.data() + 3 * 32);
  EXPECT_EQ(v.scales.data, scales.data() + 3);
  EXPECT_THROW(quantized_row_view(w, 12, 5), Error);
  EXPECT_THROW(quantized_row_view(w, -1, 2), Error);
  w.interleave = 8;
  EXPECT_EQ(quantized_row_view(w, 8, 8).data.data, data.data() + 8 * 32);
  EXPECT_THROW(quantized_row_view(w, 4, 8), Error);
  EXPECT_THROW(quantized_row_view(w, 0, 12), Error);
}

}  // namespace
}  // namespace kestrel
