// Tensor / pipeline parallel runs of weights kept in the file's blocks (part of
// kestrel_parallel_tests, started by mpirun as parallel_test.cc describes): embedding tables
// in blocks, an FFN split in whole blocks of its down projection, experts split in whole
// blocks, experts quantized at load and split, and a dense FFN that tp does not divide.
// Split and whole models run on the same inputs; logits agree within fp32 reduction-order
// tolerance and greedy tokens are identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <kestrel/kestrel.h>

#include "loaders/gguf_quant.h"
#include "models/model_state.h"
#include "models/quantize.h"
#include "parallel_support.h"
#include "reference_fixture.h"
#include "test_support.h"
#include "tools/held_weights.h"

namespace kestrel {
namespace {

using testing::fixture_dir;
using testing::load_reference;

// Token ids every rank draws alike (a fixed seed: the ranks must feed the same prompt).
std::vector<int32_t> random_ids(size_t length, uint64_t seed, int32_t vocab_size) {
  std::vector<int32_t> ids;
  for (float f : testing::random_floats(length, seed, 0.0f, static_cast<float>(vocab_size)))
    ids.push_back(std::min(static_cast<int32_t>(f), vocab_size - 1));
  return ids;
}

// On each prompt, logits agree with one process's as the float models' do (the all-reduce
// sums in another order) and 10 greedy tokens are the same.
void expect_split_matches_whole(const std::shared_ptr<const Model>& whole, const std::shared_ptr<const Model>& split,
                                const std::vector<std::vector<int32_t>>& prompts) {
  Session whole_session(whole, testing::f32_cache({.max_sequences = 1}));
  Session split_session(split, testing::f32_cache({.max_sequences = 1}));
  Decoder whole_decoder(whole_session), split_decoder(split_session);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_LE(max_abs_diff(whole_decoder.score(prompts[i]), split_decoder.score(prompts[i])), kSplitVsWholeTolerance)
        << "prompt " << i;
    GenerationRequest request;
    request.prompt_ids = prompts[i];
    request.stop = {.max_new_tokens = 10, .stop_at_eos = false};
    EXPECT_EQ(whole_decoder.generate(request).tokens, split_decoder.generate(request).tokens) << "prompt " << i;
  }
}

// --- embedding tables kept in the file's blocks ----------------------------------------

// GGUF files whose token embedding is stored in blocks (tests/fixtures/make_embedding_blocks.py):
// tied to its Q8_0 head (qwen2-q8_0; qwen2-6heads-q8_0, which tp = 2 and 3 split: at pp = 1
// the head is a view of the rank's whole table, padding rows included), untied from one
// (qwen2-untied-q8_0), or the only quantized tensor (gpt2-table-q8_0 with learned positions,
// gemma2-table-q4_0 with the scaled embedding). Split and whole run the file's blocks
// (--quant auto).
class BlockTables : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    path_ = fixture_dir() / GetParam();
    whole_ = load(Quantization::automatic, false);
    const ModelConfig& c = whole_->config();
    const int tp = g_split.tensor_parallel;
    if (g_split.pipeline_parallel > c.num_layers || c.num_heads % tp != 0 ||
        (c.num_kv_heads % tp != 0 && tp % c.num_kv_heads != 0))
      GTEST_SKIP() << GetParam() << " does not split " << tp << " x " << g_split.pipeline_parallel;
    split_ = load(Quantization::automatic, true);
  }

  std::shared_ptr<const Model> load(Quantization mode, bool split) const {
    ModelOptions options;
    options.num_threads = 1;
    options.quantization = mode;
    options.device = g_device;
    if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
    if (split) {
      options.parallel = g_split;
      options.parallel.timeout_seconds = 120;
    }
    return Model::load(path_, options);
  }

  // The bytes of the table in the file's blocks (its kept_layout).
  size_t table_block_bytes() const {
    const sizing::FileWeights file(path_);
    const SourceTensor* t = file.source().find("token_embd.weight");
    const KeptLayout layout = *kept_layout(*t->block_type);
    return quantized_weight_bytes(layout.format, whole_->config().vocab_size, whole_->config().hidden_size,
                                  layout.group_size);
  }

  std::filesystem::path path_;
  std::shared_ptr<const Model> whole_, split_;
};

// Each rank's Model::weight_bytes() is kestrel-size's figure for it, whose table, on every
// rank of the first stage, is the whole table in the file's blocks (none elsewhere); a tied
// head at pp = 1 holds no bytes of its own (at tp > 1 the table holds its padding rows).
TEST_P(BlockTables, FirstStageHoldsTheWholeTableInBlocks) {
  const ParallelInfo& p = split_->parallel();
  const sizing::FileWeights file(path_);
  const Shard shard = make_shard(split_->config(), p.tensor_parallel, p.pipeline_parallel, p.tensor_rank, p.stage,
                                 path_.string(), file.ffn_alignment(Quantization::automatic, 0));
  bool tied = false;
  const sizing::WeightBytes held = file.held(shard, Quantization::automatic, 0, split_->dtype(), &tied);
  EXPECT_EQ(held.total(), split_->weight_bytes()) << split_->weight_formats();
  const ModelConfig& c = split_->config();
  const bool doubled = tied_head_doubles_as_embedding(file.architecture(), shard);
  const int64_t rows = doubled ? int64_t{shard.tp} * shard.vocab : c.vocab_size;
  EXPECT_EQ(held.token_embedding, p.stage == 0 ? table_block_bytes() / c.vocab_size * rows : 0u);
  if (doubled) {
    EXPECT_TRUE(tied);
    EXPECT_EQ(held.lm_head, 0u);
  }
}

// Logits agree with one process's as the float models' do (the all-reduce sums in another
// order), and greedy tokens are the same.
TEST_P(BlockTables, LogitsAndGreedyTokensMatchWholeModel) {
  const ModelConfig& c = whole_->config();
  const int64_t out_columns = int64_t{c.num_heads} * c.head_dim / g_split.tensor_parallel;
  if (std::string(GetParam()).find("-table-") == std::string::npos && out_columns % 32 != 0)
    GTEST_SKIP() << "the output projection's " << out_columns << " columns per rank cut its Q8_0 blocks: "
                 << "materialized, it computes otherwise than one process's blocks";
  expect_split_matches_whole(whole_, split_,
                             {random_ids(6, 21, c.vocab_size), random_ids(11, 22, c.vocab_size),
                              random_ids(16, 23, c.vocab_size)});
}

// Where the table is the only quantized tensor, the split model computes with it exactly what
// the same split with a dense table (--quant none) does: logits bit for bit, and each
// first-stage rank holds less by the table's saving.
TEST_P(BlockTables, TableOnlyInBlocksGivesTheDenseTablesLogits) {
  const std::string name = GetParam();
  if (name.find("-table-") == std::string::npos) GTEST_SKIP() << name << " has other quantized weights";
  const auto dense = load(Quantization::none, true);
  const ModelConfig& c = dense->config();
  const size_t table_f32 = static_cast<size_t>(c.vocab_size) * c.hidden_size * sizeof(float);
  EXPECT_EQ(dense->weight_bytes() - split_->weight_bytes(),
            split_->parallel().stage == 0 ? table_f32 - table_block_bytes() : 0u);
  Session dense_session(dense, {.max_sequences = 1}), blocks_session(split_, {.max_sequences = 1});
  Decoder dense_decoder(dense_session), blocks_decoder(blocks_session);
  for (uint64_t seed : {31u, 32u}) {
    const std::vector<int32_t> ids = random_ids(9 + 4 * (seed - 31), seed, c.vocab_size);
    const std::vector<float> a = dense_decoder.score(ids), b = blocks_decoder.score(ids);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << seed;
  }
}

INSTANTIATE_TEST_SUITE_P(Gguf, BlockTables,
                         ::testing::Values("embedding-blocks/qwen2-q8_0.gguf", "embedding-blocks/qwen2-untied-q8_0.gguf",
                                           "embedding-blocks/gpt2-table-q8_0.gguf",
                                           "embedding-blocks/gemma2-table-q4_0.gguf",
                                           "embedding-blocks/qwen2-6heads-q8_0.gguf"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = std::filesystem::path(info.param).stem().string();
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// --- an FFN split in whole blocks of the down projection -----------------------------

// llama.cpp's Q4_K of a tiny Llama with FFN 768 (tests/fixtures/make_ffn768_gguf.py: hidden
// 256, 4 heads, 2 KV heads, one layer, every matrix Q4_K): down is 3 super-blocks of 256
// columns a row. At tp = 2 the ranks hold 512 and 256 FFN columns, each rank's down in its
// Q4_K blocks (an even split would cut the middle block); logits agree with one process's
// as the float models' do, greedy tokens are the same, and kestrel-size's figures for each
// rank are the rank's loaded weights and session memory. At tp = 4 the 3 blocks cannot go
// to 4 ranks: every rank refuses by name.
// The output projection's 128 columns per rank still cut its blocks (head cuts are not
// split in blocks): materialized, it computes a step of up to 6 tokens with exact
// activations where one process's blocks take 8-bit ones (cpu quantized_linear), so logits
// are compared on prompts of 7 tokens or more, where both compute with the dequantized
// values; the greedy steps (one token each) give the same tokens all the same here. Down's
// 8-bit activation blocks are the same 256 columns split or whole.
TEST(UnevenFfnSplit, RanksKeepWholeBlocksAndMatchWholeModel) {
  const auto path = fixture_dir() / "kquant" / "ffn768-Q4_K.gguf";
  const int tp = g_split.tensor_parallel;
  if (g_split.pipeline_parallel != 1 || (tp != 2 && tp != 4))
    GTEST_SKIP() << "runs with --tp 2 or 4, --pp 1 (the fixture has one layer)";
  ModelOptions options;
  options.num_threads = 1;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  const auto whole = Model::load(path, options);
  options.parallel = g_split;
  options.parallel.timeout_seconds = 120;
  if (tp == 4) {
    try {
      Model::load(path, options);
      ADD_FAILURE() << "tp 4 was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
      EXPECT_NE(e.message().find("ffn_size 768 is 3 blocks of 256 columns in the down projection as loaded, fewer "
                                 "than ParallelOptions.tensor_parallel 4"),
                std::string::npos)
          << e.message();
    }
    return;
  }
  const auto split = Model::load(path, options);
  const ParallelInfo& p = split->parallel();
  EXPECT_EQ(p.ffn_size, p.tensor_rank == 0 ? 512 : 256);
  const std::string formats = split->weight_formats();
  const QuantizedWeight& down = split->state().weights.layers.at(0).down_weight.quantized;
  EXPECT_EQ(down.format, QuantFormat::q4_k) << formats;
  EXPECT_EQ(down.cols, p.ffn_size);

  // kestrel-size: this rank's weights from the file's tensor table, and its session memory.
  const SessionOptions session_options = testing::f32_cache({.max_sequences = 2, .max_sequence_tokens = 64});
  Session session(split, session_options);
  const sizing::ModelShape shape = sizing::read_model_shape(path);
  sizing::SizingOptions so;
  so.device = split->device().kind;
  so.dtype = split->dtype();
  so.tp = 2;
  so.session = session_options;
  const sizing::Sizing sized = sizing::compute(shape, so);
  const sizing::FileWeights file(path);
  bool tied = false;
  const Shard shard = make_shard(split->config(), 2, 1, p.tensor_rank, 0, path.string(),
                                 file.ffn_alignment(Quantization::automatic, 0));
  const sizing::WeightBytes held = file.held(shard, Quantization::automatic, 0, split->dtype(), &tied);
  EXPECT_EQ(held.total(), split->weight_bytes()) << formats;
  if (p.tensor_rank == 0) {  // the largest rank, the one kestrel-size reports
    EXPECT_EQ(sized.largest().tp_rank, 0);
    EXPECT_EQ(sized.largest().weights.total(), split->weight_bytes());
    EXPECT_EQ(sized.largest().kv_cache_bytes, session.memory().kv_cache_bytes);
    EXPECT_EQ(sized.largest().activation_bytes, session.memory().activation_bytes);
  } else {
    EXPECT_LT(split->weight_bytes(), sized.largest().weights.total());
    EXPECT_LT(session.memory().activation_bytes, sized.largest().activation_bytes);
  }

  expect_split_matches_whole(whole, split, {random_ids(7, 41, 999), random_ids(13, 42, 999), random_ids(19, 43, 999)});
}

// --- experts split in whole blocks of their down projections ------------------------

// moe-blocks/qwen2-moe-q8_0.gguf (tests/fixtures/make_moe_blocks.py: tiny-qwen2-moe with
// experts of 64 columns and a shared expert of 96, stored in Q8_0): at tp = 2 every rank
// keeps each expert's gate / up rows and down columns in the file's blocks (one 32-column
// block of each down row) and the shared expert splits 64 + 32 (whole blocks, rank 0 one
// more); logits agree with one process's as the float models' do (the same blocks and the
// same 8-bit activation blocks, summed in another order), greedy tokens are the same, and
// kestrel-size's figure for each rank is its loaded weights. At tp = 4 the experts' 2
// blocks cannot go to 4 ranks: every rank refuses by name, as it does tiny-mixtral-q8_0's
// one block at tp = 2 (--quant none splits those by columns, materialized).
TEST(MoeBlocksSplit, ExpertsKeepWholeBlocksAndMatchWholeModel) {
  const auto path = fixture_dir() / "moe-blocks" / "qwen2-moe-q8_0.gguf";
  const int tp = g_split.tensor_parallel;
  if (tp == 1) GTEST_SKIP() << "runs with --tp 2 or more";
  ModelOptions options;
  options.num_threads = 1;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  const auto whole = Model::load(path, options);
  options.parallel = g_split;
  options.parallel.timeout_seconds = 120;
  auto expect_refused = [&](const std::filesystem::path& file, const std::string& what) {
    try {
      Model::load(file, options);
      ADD_FAILURE() << file << " was accepted at tp " << tp;
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
      EXPECT_NE(e.message().find(what), std::string::npos) << e.message();
    }
  };
  expect_refused(fixture_dir() / "tiny-mixtral-q8_0.gguf",
                 "expert_ffn_size 32 is 1 block of 32 columns in the down projection as loaded, fewer than "
                 "ParallelOptions.tensor_parallel " + std::to_string(tp));
  if (tp > 2) {
    expect_refused(path, "expert_ffn_size 64 is 2 blocks of 32 columns in the down projection as loaded, fewer than "
                         "ParallelOptions.tensor_parallel " + std::to_string(tp));
    return;
  }
  const auto split = Model::load(path, options);
  const ParallelInfo& p = split->parallel();
  EXPECT_EQ(p.expert_ffn_size, 32);
  EXPECT_EQ(p.shared_expert_ffn_size, p.tensor_rank == 0 ? 64 : 32);
  for (const LayerWeights& layer : split->state().weights.layers) {
    for (int e = 0; e < split->config().num_experts; ++e) {
      const QuantizedWeight &up = layer.moe.expert_up.at(e).quantized, &down = layer.moe.expert_down.at(e).quantized;
      EXPECT_EQ(up.format, QuantFormat::int8);  // Q8_0 kept as stored
      EXPECT_EQ(up.rows, 64);
      EXPECT_EQ(down.format, QuantFormat::int8);
      EXPECT_EQ(down.cols, 32);
    }
    EXPECT_EQ(layer.moe.shared_down.quantized.format, QuantFormat::int8);
    EXPECT_EQ(layer.moe.shared_down.quantized.cols, p.shared_expert_ffn_size);
  }
  const sizing::FileWeights file(path);
  const Shard shard = make_shard(split->config(), p.tensor_parallel, p.pipeline_parallel, p.tensor_rank, p.stage,
                                 path.string(), file.ffn_alignment(Quantization::automatic, 0));
  bool tied = false;
  EXPECT_EQ(file.held(shard, Quantization::automatic, 0, split->dtype(), &tied).total(), split->weight_bytes())
      << split->weight_formats();

  expect_split_matches_whole(whole, split, {random_ids(3, 51, 999), random_ids(10, 52, 999), random_ids(17, 53, 999)});
}

// Experts quantized at load, split: every rank quantizes its own rows and columns of each
// expert (int8 per channel, int4 in groups of 32: at tp = 2 one group of 16 columns in each
// rank's down of tiny-mixtral), and the split model keeps the top-1 agreement with HF that
// tests/models/moe_test.cc asks of one process (int8 85%, int4 25%; chance 0.1%).
TEST(QuantizedMoeSplit, ExpertsQuantizedAtLoadKeepTopOneAgreement) {
  if (g_split.tensor_parallel == 1) GTEST_SKIP() << "runs with --tp 2 or more";
  for (const char* name : {"tiny-mixtral", "tiny-qwen2-moe"}) {
    for (Quantization q : {Quantization::int8, Quantization::int4}) {
      SCOPED_TRACE(std::string(name) + " " + to_string(q));
      ModelOptions options;
      options.num_threads = 1;
      options.device = g_device;
      options.quantization = q;
      if (q == Quantization::int4) options.quant_group_size = 32;
      if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
      options.parallel = g_split;
      options.parallel.timeout_seconds = 120;
      const auto split = Model::load(fixture_dir() / name, options);
      const ModelConfig& c = split->config();
      for (const LayerWeights& layer : split->state().weights.layers) {
        if (layer.moe.empty()) continue;
        const QuantizedWeight& down = layer.moe.expert_down.at(0).quantized;
        EXPECT_EQ(down.format, q == Quantization::int8 ? QuantFormat::int8 : QuantFormat::int4);
        EXPECT_EQ(down.cols, c.expert_ffn_size / g_split.tensor_parallel);
      }
      const auto prompts = load_reference(fixture_dir() / name, c.vocab_size);
      Session session(split, testing::f32_cache());
      Decoder decoder(session);
      int agree = 0, total = 0;
      const int64_t V = c.vocab_size;
      for (const auto& p : prompts) {
        const std::vector<float> got = decoder.score(p.ids);
        for (size_t t = 0; t < p.ids.size(); ++t, ++total) {
          const float *row = got.data() + t * V, *ref = p.logits.data() + t * V;
          agree += std::max_element(row, row + V) - row == std::max_element(ref, ref + V) - ref;
        }
      }
      EXPECT_GE(agree, total * (q == Quantization::int8 ? 85 : 25) / 100) << agree << " of " << total;
    }
  }
}

// Dense weights split by single columns, so tp need not divide the FFN: a random Llama with
// FFN 251 (tp 2: 126 + 125 columns; tp 4: 63, 63, 63, 62) gives one process's logits and
// greedy tokens, at every --tp / --pp of the jobs.
TEST(UnevenFfnSplit, DenseFfnThatTpDoesNotDivide) {
  if (g_split.tensor_parallel == 1) GTEST_SKIP() << "runs with --tp 2 or more";
  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.ffn_size = 251;
  c.max_positions = 64;
  ModelOptions options;
  options.num_threads = 1;
  options.device = g_device;
  if (g_device.kind == DeviceKind::cuda) options.dtype = DType::f32;
  const auto whole = Model::random(c, options, 11);
  options.parallel = g_split;
  options.parallel.timeout_seconds = 120;
  const auto split = Model::random(c, options, 11);
  const ParallelInfo& p = split->parallel();
  const int tp = p.tensor_parallel, base = 251 / tp;
  EXPECT_EQ(p.ffn_size, base + (p.tensor_rank < 251 % tp ? 1 : 0));
  Session whole_session(whole, testing::f32_cache({.max_sequences = 1}));
  Session split_session(split, testing::f32_cache({.max_sequences = 1}));
  Decoder whole_decoder(whole_session), split_decoder(split_session);
  const std::vector<int32_t> ids = {5, 77, 123, 299, 0, 42, 180, 9, 250};
  const std::vector<float> a = whole_decoder.score(ids), b = split_decoder.score(ids);
  float scale = 0.0f;
  for (float v : a) scale = std::max(scale, std::fabs(v));
  ASSERT_GT(scale, 0.05f);  // logits that a wrong FFN split would move by far more than the tolerance
  EXPECT_LE(max_abs_diff(a, b), kSplitVsWholeTolerance);
  GenerationRequest request;
  request.prompt_ids = ids;
  request.stop = {.max_new_tokens = 10, .stop_at_eos = false};
  EXPECT_EQ(whole_decoder.generate(request).tokens, split_decoder.generate(request).tokens);
}

}  // namespace
}  // namespace kestrel
