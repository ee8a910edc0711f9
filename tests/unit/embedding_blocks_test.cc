// Token embedding tables that a GGUF file stores in ggml blocks stay in those blocks, whole,
// on every rank that looks tokens up, whatever tp and pp, tied to the LM head or not
// (WeightStore::load, QuantizationSpec::for_embedding); --quant none keeps them dense. The
// lookup from the blocks gives bit for bit the dense table's rows (the dequantized values
// are the same), learned positions added; a model whose only quantized tensor is its table
// gives the dense table's logits bit for bit, its weights smaller by the table's saving.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include <kestrel/kestrel.h>

#include "gguf_editor.h"
#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "loaders/gguf_quant.h"
#include "models/weights.h"
#include "test_support.h"
#include "tools/held_weights.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;
using testing::fixture_dir;

// GGUF fixtures whose token_embd is in blocks: tied (tiny256-*, qwen2-q8_0 and
// qwen2-6heads-q8_0: 2 layers) and
// untied (llama.cpp's own Q8_0 / Q6_K files, tiny-llama.gguf, qwen2-untied-q8_0, the
// table-only files of make_embedding_blocks.py: GPT-2's learned positions, Gemma's scaled
// embedding).
const std::vector<std::string> kTables = {
    "kquant/tiny256-Q8_0.gguf",          "kquant/tiny256-Q4_0.gguf",         "kquant/tiny256-Q4_1.gguf",
    "kquant/tiny256-Q5_0.gguf",          "kquant/tiny256-Q5_1.gguf",         "kquant/tiny256-Q2_K.gguf",
    "kquant/tiny256-Q3_K.gguf",          "kquant/tiny256-Q4_K.gguf",         "kquant/tiny256-Q5_K.gguf",
    "kquant/tiny256-Q6_K.gguf",          "kquant/tiny256-IQ4_NL.gguf",       "kquant/tiny256-IQ4_XS.gguf",
    "kquant/tiny256-Q4_K_M.gguf",        "llamacpp-quants/q6_k.gguf",        "llamacpp-quants/q8_0.gguf",
    "tiny-llama.gguf",                   "embedding-blocks/qwen2-q8_0.gguf", "embedding-blocks/qwen2-untied-q8_0.gguf",
    "embedding-blocks/gpt2-table-q8_0.gguf",     "embedding-blocks/gemma2-table-q4_0.gguf",
    "embedding-blocks/qwen2-6heads-q8_0.gguf",
};

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

// A fresh seed per run, printed with any failure.
uint64_t fresh_seed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) | device();
}

std::vector<int32_t> random_ints(size_t count, int32_t limit, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> pick(0, limit - 1);
  std::vector<int32_t> v(count);
  for (int32_t& x : v) x = pick(rng);
  return v;
}

// The index of the first element whose bits differ, or a.size(). With `signed_zeros_equal`,
// -0 and +0 count as the same.
size_t first_difference(const std::vector<float>& a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return i;
  return a.size();
}

class EmbeddingBlocks : public ::testing::TestWithParam<std::string> {
 protected:
  fs::path path() const { return fixture_dir() / GetParam(); }
};

// Every first-stage rank of tp 1 / 2 x pp 1 / 2, in every mode that keeps blocks: the table
// whole in the file's blocks (its kept_layout), looking up what the dense table of --quant
// none holds, bit for bit (signed zeros included), the position rows added.
// --quant none: the table dense.
TEST_P(EmbeddingBlocks, FirstStageHoldsTheWholeTableInBlocksAndLooksUpTheDenseRows) {
  const sizing::FileWeights file(path());
  const WeightSource& source = file.source();
  const Architecture& arch = file.architecture();
  const ModelConfig& c = arch.config;
  const SourceTensor* stored = source.find(arch.recipe(WeightSlot::token_embedding, -1).sources.at(0));
  ASSERT_TRUE(stored && stored->block_type);
  const std::optional<KeptLayout> layout = kept_layout(*stored->block_type);
  ASSERT_TRUE(layout);

  auto backend = make_cpu_backend(1);
  WeightStore dense_store(*backend, DType::f32, {Quantization::none, 0});
  const ModelWeights dense = dense_store.load(source, arch, make_shard(c, 1, 1, 0, 0, GetParam()));
  ASSERT_FALSE(dense.token_embedding.is_quantized());
  ASSERT_FALSE(dense.token_embedding.dense.empty());

  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t T = 37, H = c.hidden_size;
  std::vector<int32_t> ids = random_ints(T, c.vocab_size, rng), positions = random_ints(T, c.max_positions, rng);
  const TensorView ids_view(ids.data(), DType::i32, {T}, Device::cpu());
  const TensorView positions_view(positions.data(), DType::i32, {T}, Device::cpu());
  std::vector<float> want(static_cast<size_t>(T * H)), got(want.size());
  const TensorView* dense_wpe = dense.position_embedding.empty() ? nullptr : &dense.position_embedding;
  backend->embedding(ids_view, positions_view, dense.token_embedding.dense, dense_wpe,
                     TensorView(want.data(), DType::f32, {T, H}, Device::cpu()));

  int ranks = 0;
  for (const auto& [tp, pp] : {std::pair{1, 1}, {2, 1}, {1, 2}, {2, 2}}) {
    if (pp > c.num_layers || c.num_heads % tp != 0 || c.ffn_size % tp != 0 ||
        (c.num_kv_heads % tp != 0 && tp % c.num_kv_heads != 0))
      continue;
    for (int r = 0; r < tp; ++r)
      for (Quantization mode : {Quantization::automatic, Quantization::int8, Quantization::int4,
                                Quantization::w8a8, Quantization::none}) {
        SCOPED_TRACE("tp " + std::to_string(tp) + " rank " + std::to_string(r) + ", pp " + std::to_string(pp) + ", " +
                     to_string(mode));
        WeightStore store(*backend, DType::f32, {mode, 0});
        const ModelWeights w = store.load(source, arch, make_shard(c, tp, pp, r, 0, GetParam()));
        if (mode == Quantization::none) {
          EXPECT_FALSE(w.token_embedding.is_quantized());
          EXPECT_EQ(w.token_embedding.dense.dim(0), c.vocab_size);
          continue;
        }
        ASSERT_TRUE(w.token_embedding.is_quantized());
        const QuantizedWeight& table = w.token_embedding.quantized;
        const Shard shard = make_shard(c, tp, pp, r, 0, GetParam());
        // One copy: a tied head kept in the table's blocks at pp = 1 is a view of its rows
        // of the table (tests/unit/tied_head_view_test.cc), which at tp > 1 ends with the
        // heads' padding rows.
        const bool doubled = tied_head_doubles_as_embedding(arch, shard) && w.lm_head.is_quantized() &&
                             w.lm_head.quantized.format == layout->format;
        EXPECT_EQ(table.rows, doubled && tp > 1 ? int64_t{tp} * shard.vocab : int64_t{c.vocab_size});  // whole
        EXPECT_EQ(table.cols, H);
        EXPECT_EQ(table.format, layout->format);
        EXPECT_EQ(table.group_size, layout->group_size);
        const auto* row_begin = static_cast<const char*>(table.data.data) +
                                static_cast<size_t>(shard.vocab_begin * table.data.row_size());
        if (doubled)
          EXPECT_EQ(static_cast<const void*>(row_begin), w.lm_head.quantized.data.data);
        else
          EXPECT_NE(table.data.data, w.lm_head.quantized.data.data);
        const TensorView* wpe = w.position_embedding.empty() ? nullptr : &w.position_embedding;
        std::fill(got.begin(), got.end(), -1.0f);
        backend->embedding(ids_view, positions_view, table, wpe, TensorView(got.data(), DType::f32, {T, H}, Device::cpu()));
        // Signed zeros too: Q4_0's table is its own blocks, d (q - 8) as ggml computes it.
        const size_t first = first_difference(got, want);
        EXPECT_EQ(first, got.size()) << "token " << first / H << " (id " << ids[first / H] << ") column " << first % H
                                     << ": " << got[first] << " from the blocks, " << want[first] << " dense";
        ++ranks;
      }
  }
  EXPECT_GE(ranks, 4);
}

INSTANTIATE_TEST_SUITE_P(Gguf, EmbeddingBlocks, ::testing::ValuesIn(kTables), test_name);

// A model whose only quantized tensor is its table (its LM head untied and float): the
// logits of fresh random prompts with the table in blocks are the dense table's, bit for bit
// (learned positions added, Gemma's sqrt(hidden) scale applied after the lookup), and the
// weights are smaller by the table's saving.
TEST(EmbeddingBlocksModel, TableOnlyInBlocksGivesTheDenseLogits) {
  for (const char* name : {"embedding-blocks/gpt2-table-q8_0.gguf", "embedding-blocks/gemma2-table-q4_0.gguf"}) {
    SCOPED_TRACE(name);
    ModelOptions options;
    options.num_threads = 1;
    options.quantization = Quantization::none;
    std::shared_ptr<const Model> dense = Model::load(fixture_dir() / name, options);
    options.quantization = Quantization::automatic;
    std::shared_ptr<const Model> blocks = Model::load(fixture_dir() / name, options);
    const ModelConfig& c = dense->config();

    const sizing::FileWeights file(fixture_dir() / name);
    const SourceTensor* stored = file.source().find("token_embd.weight");
    ASSERT_TRUE(stored && stored->block_type);
    const KeptLayout layout = *kept_layout(*stored->block_type);
    const size_t table_f32 = static_cast<size_t>(c.vocab_size) * c.hidden_size * sizeof(float);
    EXPECT_EQ(dense->weight_bytes() - blocks->weight_bytes(),
              table_f32 - quantized_weight_bytes(layout.format, c.vocab_size, c.hidden_size, layout.group_size));

    const uint64_t seed = fresh_seed();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    Session dense_session(dense), blocks_session(blocks);
    Decoder dense_decoder(dense_session), blocks_decoder(blocks_session);
    for (int prompt = 0; prompt < 3; ++prompt) {
      const std::vector<int32_t> ids = random_ints(5 + 7 * static_cast<size_t>(prompt), c.vocab_size, rng);
      const std::vector<float> want = dense_decoder.score(ids), got = blocks_decoder.score(ids);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(first_difference(got, want), got.size()) << "prompt " << prompt;
    }
  }
}

// A table in blocks whose rows are not the vocabulary (a tokenizer of 900 tokens beside a
// 1000-row token_embd, tied or not) is the loader's shape error naming the tensor on every
// rank that would hold it, and kestrel-size's too, never a table kept as it is.
TEST(EmbeddingBlocksBadFile, ATableOfTheWrongRowsIsAShapeError) {
  for (const char* name : {"embedding-blocks/qwen2-q8_0.gguf", "embedding-blocks/qwen2-untied-q8_0.gguf"}) {
    SCOPED_TRACE(name);
    GgufFile original(fixture_dir() / name);
    std::vector<std::string> tokens = *original.get_string_array("tokenizer.ggml.tokens");
    tokens.resize(900);
    const fs::path path = testing::temp_dir("embedding_blocks_bad") / "short_vocab.gguf";
    testing::GgufEditor(fixture_dir() / name)
        .set("tokenizer.ggml.tokens", GgufArray{tokens})
        .set("tokenizer.ggml.token_type", GgufArray{std::vector<int32_t>(900, 1)})
        .set("tokenizer.ggml.merges", GgufArray{std::vector<std::string>{}})
        .write(path);
    const sizing::FileWeights file(path);
    const ModelConfig& c = file.architecture().config;
    ASSERT_EQ(c.vocab_size, 900);
    auto backend = make_cpu_backend(1);
    for (const auto& [tp, pp] : {std::pair{1, 1}, {2, 1}, {1, 2}}) {
      SCOPED_TRACE("tp " + std::to_string(tp) + " pp " + std::to_string(pp));
      const Shard shard = make_shard(c, tp, pp, 0, 0, path.string());
      for (const bool sizing : {false, true}) {
        try {
          if (sizing) {
            bool tied = false;
            file.held(shard, Quantization::automatic, 0, DType::f32, &tied);
          } else {
            WeightStore store(*backend, DType::f32, {Quantization::automatic, 0});
            store.load(file.source(), file.architecture(), shard);
          }
          ADD_FAILURE() << (sizing ? "sized" : "loaded") << " without error";
        } catch (const Error& e) {
          EXPECT_EQ(e.category(), ErrorCategory::format) << e.what();
          EXPECT_NE(e.message().find("token_embd.weight"), std::string::npos) << e.what();
          EXPECT_NE(e.message().find("[900, 64]"), std::string::npos) << e.what();
        }
      }
    }
  }
}

}  // namespace
}  // namespace kestrel
