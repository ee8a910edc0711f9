// kestrel-size's weights of a model file from its stored formats (tools/held_weights.h)
// against what the loader really holds, on every GGUF fixture (one per ggml type llama.cpp
// writes, llama.cpp's Q4_K_M / Q5_K_M mixes, every family) and every Hugging Face fixture
// directory (f32, f16, sharded bf16; Conv1D and interleaved-QKV layouts; mixtures of
// experts): Model::weight_bytes() of the loaded model for tp = pp = 1, WeightStore::bytes()
// of each tensor-parallel rank (tp = 2, and 4 where the FFN slices cut super-blocks) and
// pipeline stage (pp = 2) loaded in-process, in every quantization mode, split as the loader
// splits (the FFN in whole blocks of the down projection as kept, models/quantize.h). Bad files are clear
// Errors; checkpoints of stored int8 weights are sized from their shape.
#include "tools/held_weights.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <numeric>
#include <set>

#include <kestrel/kestrel.h>

#include "gguf_editor.h"
#include "kestrel/error.h"
#include "models/weights.h"
#include "test_support.h"
#include "tools/quantized_checkpoint.h"

namespace kestrel {
namespace {

namespace fs = std::filesystem;
namespace sz = sizing;
using testing::fixture_dir;

// Every model among the GGUF fixtures (ModelFixtures.EveryOneIsListed keeps it complete).
const std::vector<std::string> kModels = {
    "kquant/tiny256-F16.gguf",    "kquant/tiny256-BF16.gguf",   "kquant/tiny256-Q8_0.gguf",
    "kquant/tiny256-Q4_0.gguf",   "kquant/tiny256-Q4_1.gguf",   "kquant/tiny256-Q5_0.gguf",
    "kquant/tiny256-Q5_1.gguf",   "kquant/tiny256-Q2_K.gguf",   "kquant/tiny256-Q3_K.gguf",
    "kquant/tiny256-Q4_K.gguf",   "kquant/tiny256-Q4_K_M.gguf", "kquant/tiny256-Q5_K.gguf",
    "kquant/tiny256-Q5_K_M.gguf", "kquant/tiny256-Q6_K.gguf",   "kquant/tiny256-IQ4_NL.gguf",
    "kquant/tiny256-IQ4_XS.gguf", "kquant/ffn768-Q4_K.gguf",    "llamacpp-quants/q6_k.gguf",
    "llamacpp-quants/q8_0.gguf",
    "spm-gemma.gguf",             "spm-llama.gguf",             "tiny-gemma2.gguf",
    "tiny-gemma3.gguf",           "tiny-gpt-neox.gguf",         "tiny-gpt2.gguf",
    "tiny-llama-yarn.gguf",       "tiny-llama.gguf",            "tiny-llama3.gguf",
    "tiny-mixtral-q8_0.gguf",     "tiny-mixtral.gguf",          "tiny-phi3.gguf",
    "tiny-qwen2-moe.gguf",        "tiny-qwen2.gguf",            "tiny-qwen3.gguf",
    "tiny-qwen3-moe.gguf",        "tiny-granite.gguf",          "tiny-granitemoe.gguf",
    "tiny-phi4-mini.gguf",        "tiny-olmo2.gguf",            "tiny-gpt-oss.gguf",
    "tiny-gpt-oss-mxfp4.gguf",
    "embedding-blocks/qwen2-q8_0.gguf", "embedding-blocks/qwen2-untied-q8_0.gguf",
    "embedding-blocks/gpt2-table-q8_0.gguf", "embedding-blocks/gemma2-table-q4_0.gguf",
    "embedding-blocks/qwen2-6heads-q8_0.gguf", "moe-blocks/qwen2-moe-q8_0.gguf",
};
// GGUF fixtures that are not models (the reader's own test file).
const std::set<std::string> kNotModels = {"gguf/tiny.gguf"};
// Every Hugging Face model directory among the fixtures (config.json and safetensors).
const std::vector<std::string> kDirectories = {
    "spm-llama",
    "tiny-gpt2",       "tiny-gpt2-f16",         "tiny-gpt2-bf16-sharded", "tiny-gpt2-unscaled",
    "tiny-llama",      "tiny-llama-yarn",       "tiny-llama-dynamic",     "tiny-llama3",
    "tiny-mistral",    "tiny-qwen2",            "tiny-qwen2-yarn",        "tiny-qwen3",
    "tiny-gpt-neox",   "tiny-gpt-neox-dynamic", "tiny-gptj",              "tiny-phi3",
    "tiny-gemma2",     "tiny-gemma3",           "tiny-mixtral",           "tiny-qwen2-moe",
    "tiny-qwen2-moe-mixed", "tiny-qwen3-moe", "tiny-granite", "tiny-granitemoe",
    "tiny-phi4-mini", "tiny-olmo2", "tiny-gpt-oss", "tiny-gpt-oss-mxfp4",
};

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

size_t formats_total(const sz::WeightBytes& w) {
  return std::accumulate(w.formats.begin(), w.formats.end(), size_t{0},
                         [](size_t sum, const auto& entry) { return sum + entry.second; });
}

TEST(ModelFixtures, EveryOneIsListed) {
  for (const auto& entry : fs::directory_iterator(fixture_dir())) {
    const fs::path& dir = entry.path();
    if (entry.is_directory() && fs::exists(dir / "config.json") &&
        (fs::exists(dir / "model.safetensors") || fs::exists(dir / "model.safetensors.index.json"))) {
      EXPECT_EQ(std::count(kDirectories.begin(), kDirectories.end(), dir.filename().string()), 1)
          << dir << ": a model directory held_weights_test does not size";
    }
  }
  for (const auto& entry : fs::recursive_directory_iterator(fixture_dir())) {
    if (entry.path().extension() != ".gguf") continue;
    const std::string name = fs::relative(entry.path(), fixture_dir()).generic_string();
    EXPECT_TRUE(std::count(kModels.begin(), kModels.end(), name) == 1 || kNotModels.count(name) == 1)
        << name << ": a GGUF fixture held_weights_test does not size";
  }
}

class HeldWeights : public ::testing::TestWithParam<std::string> {
 protected:
  fs::path path() const { return fixture_dir() / GetParam(); }
};

// tp = pp = 1 on the CPU: exactly the loaded model's weight bytes, by default (the file's
// blocks as stored) and with --quant none; the formats add up to the total.
TEST_P(HeldWeights, EqualTheLoadedModelsWeightBytes) {
  const sz::ModelShape shape = sz::read_model_shape(path());
  ASSERT_TRUE(shape.file);
  for (Quantization mode : {Quantization::automatic, Quantization::none}) {
    SCOPED_TRACE(to_string(mode));
    ModelOptions mo;
    mo.num_threads = 1;
    mo.quantization = mode;
    const auto model = Model::load(path(), mo);
    sz::SizingOptions o;
    o.dtype = model->dtype();
    o.quantization = mode;
    const sz::Sizing s = sz::compute(shape, o);
    const sz::WeightBytes& w = s.largest().weights;
    EXPECT_EQ(w.total(), model->weight_bytes()) << model->weight_formats();
    EXPECT_EQ(formats_total(w), w.total());
  }
}

// Every quantization mode, and tensor-parallel ranks and pipeline stages: each rank's bytes
// exactly WeightStore::bytes() of that rank's load (the loader's own code, in-process), in
// the CPU's f32 and a GPU's f16.
TEST_P(HeldWeights, EqualEachRanksLoadedBytes) {
  const sz::FileWeights file(path());
  const WeightSource& source = file.source();
  const Architecture& arch = file.architecture();
  const ModelConfig& c = arch.config;
  auto backend = make_cpu_backend(1);
  struct Case {
    int tp, pp;
    Quantization mode;
    int group;
  };
  std::vector<Case> cases = {{1, 1, Quantization::int8, 0}, {1, 1, Quantization::int4, 0},
                             {1, 1, Quantization::int4, 64}, {1, 1, Quantization::w8a8, 0},
                             {1, 1, Quantization::fp8, 0},  {1, 2, Quantization::automatic, 0},
                             {1, 2, Quantization::int4, 0}};
  // OLMo 2's q / k norms over every head refuse tp > 1 (weights.cc; parallel tests).
  for (int tp : {2, 3, 4})
    if (!arch.kinds.qk_norm_over_heads && c.num_heads % tp == 0 && c.ffn_size >= tp &&
        (c.num_kv_heads % tp == 0 || tp % c.num_kv_heads == 0))
      for (Quantization mode : {Quantization::automatic, Quantization::none, Quantization::int8})
        cases.push_back({tp, tp == 2 ? 2 : 1, mode, 0});
  int ranks_checked = 0;
  for (const Case& k : cases) {
    if (k.pp > c.num_layers) continue;
    ModelOptions mo;
    mo.quantization = k.mode;
    mo.quant_group_size = k.group;
    QuantizationSpec spec = quantization_spec(mo);
    if (spec.mode == Quantization::automatic) spec.mode = arch.checkpoint_quantization;
    // The FFN split Model::load makes: in whole blocks of the down projection as kept.
    const FfnAlignment ffn_align = file.ffn_alignment(k.mode, k.group);
    EXPECT_TRUE(ffn_align == ffn_split_alignment(source, arch, spec));
    // Fewer blocks than ranks in an FFN: refused by name (shard_test, parallel tests).
    if (c.ffn_size / ffn_align.dense < k.tp) continue;
    if (c.num_experts > 0 && c.expert_ffn_size / ffn_align.expert < k.tp) continue;
    if (c.shared_expert_ffn_size > 0 && c.shared_expert_ffn_size / ffn_align.shared < k.tp) continue;
    for (int stage = 0; stage < k.pp; ++stage)
      for (int r = 0; r < k.tp; ++r) {
        SCOPED_TRACE("tp " + std::to_string(k.tp) + " rank " + std::to_string(r) + ", pp " + std::to_string(k.pp) +
                     " stage " + std::to_string(stage) + ", " + to_string(k.mode) + " group " +
                     std::to_string(k.group));
        const Shard shard = make_shard(c, k.tp, k.pp, r, stage, GetParam(), ffn_align);
        // f16 too: what a GPU holds (the CPU backend only copies these weights, it never
        // computes with them here).
        for (DType dtype : {DType::f32, DType::f16}) {
          WeightStore store(*backend, dtype, spec);
          store.load(source, arch, shard);
          bool tied = false;
          const sz::WeightBytes w = file.held(shard, k.mode, k.group, dtype, &tied);
          EXPECT_EQ(w.total(), store.bytes()) << to_string(dtype);
          EXPECT_EQ(formats_total(w), w.total());
        }
        ++ranks_checked;
      }
  }
  EXPECT_GE(ranks_checked, 5);  // at least the single-rank cases
}

INSTANTIATE_TEST_SUITE_P(Gguf, HeldWeights, ::testing::ValuesIn(kModels), test_name);
INSTANTIATE_TEST_SUITE_P(Directories, HeldWeights, ::testing::ValuesIn(kDirectories), test_name);

// A checkpoint whose linear weights kestrel-quantize stored as int8 (I8 tensors and their
// scales, which only load_stored_quantized reads) is sized from its shape, not its tensors.
TEST(HeldWeightsStoredQuantized, SizedFromTheShape) {
  ModelOptions mo;
  mo.num_threads = 1;
  mo.quantization = Quantization::none;
  const auto model = Model::load(fixture_dir() / "tiny-llama", mo);
  const fs::path out = testing::temp_dir("held_weights_stored") / "w8a8";
  tools::write_quantized_checkpoint(*model, nullptr, {}, {tools::CheckpointWeights::int8}, out);
  const sz::FileWeights file(out);
  EXPECT_TRUE(file.stores_quantized_weights());
  const sz::ModelShape shape = sz::read_model_shape(out);
  EXPECT_FALSE(shape.file);
  EXPECT_EQ(shape.config.num_layers, model->config().num_layers);
  EXPECT_TRUE(sz::read_model_shape(fixture_dir() / "tiny-llama").file);
}

// By hand, llama.cpp's Q4_K_M of the tiny Llama (hidden 256, 4 heads of 64, 2 KV heads, FFN
// 512, vocabulary 1000, one layer, tied Q6_K embedding): Q and K rows Q4_K (144 bytes per
// 256 columns), V rows and down Q6_K (210 bytes), output projection and [gate | up] Q4_K,
// the embedding Q6_K doubling as the LM head, norms f32.
TEST(HeldWeightsByHand, Q4KMixTensorParallel) {
  const sz::ModelShape shape = sz::read_model_shape(fixture_dir() / "kquant" / "tiny256-Q4_K_M.gguf");
  const size_t H = 256, F = 512, V = 1000, kv = 128, q4k = 144, q6k = 210, f32 = 4;
  const size_t rotary = 32 * f32, norms = 3 * H * f32;
  sz::SizingOptions o;
  o.dtype = DType::f32;
  const sz::WeightBytes one = sz::compute(shape, o).largest().weights;
  // Q, K, output and [gate | up] in Q4_K; V, down and the embedding in Q6_K.
  EXPECT_EQ(one.formats.at("q4_k"), (H + kv + H + 2 * F) * q4k);
  EXPECT_EQ(one.formats.at("q6_k"), (kv + 2 * H + V) * q6k);  // down: 256 rows of 2 super-blocks
  EXPECT_EQ(one.formats.at("f32"), norms + rotary);
  EXPECT_EQ(one.lm_head, 0u);
  EXPECT_EQ(one.lm_head_view, one.token_embedding);

  // tp = 2: half of each split weight; the output projection's 128 of 256 input columns cut
  // its Q4_K super-blocks, so it is materialized in f32 ([256, 128]); down's 256 columns are
  // whole super-blocks. The tied head still doubles as the embedding: the table stays whole
  // in its Q6_K blocks (the lookup needs every row) with 8 zero rows after it (2 x 504 rows:
  // 1000 / 2 rounded up to a row group of 8), and the head is a view of its 504 rows.
  o.tp = 2;
  const sz::Sizing two = sz::compute(shape, o);
  const sz::WeightBytes& w = two.largest().weights;
  EXPECT_EQ(w.formats.at("f32 (from q4_k)"), H * 128 * f32);
  EXPECT_EQ(w.formats.count("f32 (from q6_k)"), 0u);
  EXPECT_EQ(w.formats.at("q4_k"), (128 + 64 + F) * q4k);  // 2 Q heads, 1 K head, 256 gate and 256 up rows
  EXPECT_EQ(w.formats.at("f32"), norms + rotary);
  // V head, down (1 super-block a row), the whole table and its padding rows
  EXPECT_EQ(w.formats.at("q6_k"), (64 + H + 1008) * q6k);
  EXPECT_EQ(w.token_embedding, 1008 * q6k);
  EXPECT_EQ(w.lm_head, 0u);
  EXPECT_EQ(w.lm_head_view, 504 * q6k);
  EXPECT_TRUE(two.largest().lm_head_tied_here);

  // pp = 2 would need two layers: qwen2-q8_0 and tiny-llama below. --quant none: dense.
  o.tp = 1;
  o.quantization = Quantization::none;
  EXPECT_EQ(sz::compute(shape, o).largest().weights.token_embedding, V * H * f32);
}

// llama.cpp's Q4_K of the tiny Llama with FFN 768 (tests/fixtures/make_ffn768_gguf.py:
// hidden 256, 4 heads of 64, 2 KV heads, vocabulary 1000, one layer, every matrix and the
// tied embedding Q4_K, 144 bytes per 256 columns). down [256, 768] is 3 super-blocks a row:
// at tp = 2 the FFN splits 512 + 256 so that each rank's down keeps its Q4_K blocks, where
// the even split (384 columns each) would cut the middle block and materialize down (as
// kestrel-size showed it before: f32 (from q4_k) on the CPU, 256 x 384 x 4 bytes a rank).
TEST(HeldWeightsByHand, UnevenFfnSplitKeepsDownInBlocks) {
  const fs::path path = fixture_dir() / "kquant" / "ffn768-Q4_K.gguf";
  const sz::ModelShape shape = sz::read_model_shape(path);
  ASSERT_TRUE(shape.file);
  const size_t H = 256, F = 768, q4k = 144, f32 = 4;
  const size_t norms = 3 * H * f32, rotary = 32 * f32;
  EXPECT_EQ(shape.file->ffn_alignment(Quantization::automatic, 0).dense, 256);
  EXPECT_EQ(shape.file->ffn_alignment(Quantization::int4, 0).dense, 256);  // int4 keeps every block format
  // Materialized (and requantized) from any columns: --quant none, int8 (Q4_K is not one it
  // keeps), a group size, w8a8, fp8.
  EXPECT_EQ(shape.file->ffn_alignment(Quantization::none, 0).dense, 1);
  EXPECT_EQ(shape.file->ffn_alignment(Quantization::int8, 0).dense, 1);
  EXPECT_EQ(shape.file->ffn_alignment(Quantization::int4, 64).dense, 1);
  EXPECT_EQ(shape.file->ffn_alignment(Quantization::w8a8, 0).dense, 1);
  EXPECT_EQ(shape.file->ffn_alignment(Quantization::fp8, 0).dense, 1);
  // A dense model has no experts to align.
  EXPECT_EQ(shape.file->ffn_alignment(Quantization::automatic, 0).expert, 1);

  sz::SizingOptions o;
  o.dtype = DType::f32;
  o.tp = 2;
  const sz::Sizing two = sz::compute(shape, o);
  const sz::StageSizing& big = two.largest();
  EXPECT_EQ(big.tp_rank, 0);  // 512 of the 768 FFN columns
  // Rank 0: its 2 Q heads, 1 K and 1 V head, 512 gate and 512 up rows, down's 2 super-blocks
  // a row and the whole table (the lookup needs every row; 2 x 504 rows with the padding,
  // the tied head a view of 504 of them) in Q4_K; the output projection's 128 of 256
  // columns cut a block: f32 (heads are not split in blocks).
  EXPECT_EQ(big.weights.formats.at("q4_k"), (128 + 64 + 64 + 2 * 512 + 2 * H + 1008) * q4k);
  EXPECT_EQ(big.weights.lm_head_view, 504 * q4k);
  EXPECT_EQ(big.weights.formats.at("f32 (from q4_k)"), H * 128 * f32);
  EXPECT_EQ(big.weights.formats.at("f32"), norms + rotary);
  EXPECT_EQ(big.weights.formats.size(), 3u);
  // Rank 1 holds 256 FFN columns: 512 gate / up rows and one super-block of down a row less.
  const sz::FileWeights file(path);
  bool tied = false;
  const sz::WeightBytes second = file.held(make_shard(shape.config, 2, 1, 1, 0, path.string(), 256),
                                           Quantization::automatic, 0, DType::f32, &tied);
  EXPECT_EQ(big.weights.total() - second.total(), (2 * 256 + H) * q4k);
  // The even split this replaces: each rank's down materialized in f32.
  const sz::WeightBytes even = file.held(make_shard(shape.config, 2, 1, 0, 0, path.string(), 1),
                                         Quantization::automatic, 0, DType::f32, &tied);
  EXPECT_EQ(even.formats.at("f32 (from q4_k)"), H * 128 * f32 + H * (F / 2) * f32);
}

// The first stage holds the table whole in the file's blocks at tp > 1 and pp > 1, tied
// (qwen2-q8_0: hidden 64, vocabulary 1000, 2 layers, token_embd Q8_0, held as int8 with an
// f32 scale per 32 columns: 36 bytes) or not (qwen2-untied-q8_0: output Q8_0 too;
// tiny-llama.gguf: output F32); the last stage its head's rows (504 at tp = 2, the last
// rank's 8 of them zero padding): Q8_0, or f16 of the F32. A tied head at pp = 1 is the
// table, or at tp = 2 a view of its rows of the table, which then holds the 8 padding rows
// too.
TEST(HeldWeightsByHand, TableInBlocksAtEveryTpAndPp) {
  const size_t H = 64, V = 1000, q8 = 36 * H / 32, f16 = 2;
  struct Case {
    const char* file;
    bool tied, head_q8;
  };
  for (const Case& k : {Case{"embedding-blocks/qwen2-q8_0.gguf", true, true},
                        Case{"embedding-blocks/qwen2-untied-q8_0.gguf", false, true},
                        Case{"tiny-llama.gguf", false, false}}) {
    const sz::ModelShape shape = sz::read_model_shape(fixture_dir() / k.file);
    for (const auto& [tp, pp] : {std::pair{1, 1}, {2, 1}, {1, 2}, {2, 2}}) {
      SCOPED_TRACE(std::string(k.file) + " tp " + std::to_string(tp) + " pp " + std::to_string(pp));
      sz::SizingOptions o;
      o.dtype = DType::f16;  // a GPU's: the table would be 125 KiB of f16, not 70 KiB of blocks
      o.tp = tp;
      o.pp = pp;
      const sz::Sizing s = sz::compute(shape, o);
      ASSERT_EQ(s.stages.size(), static_cast<size_t>(pp));
      const size_t rows = tp == 1 ? V : 504;  // the vocabulary rows of a rank
      const bool doubled = k.tied && pp == 1;
      EXPECT_EQ(s.stages.front().weights.token_embedding, (doubled ? tp * rows : V) * q8);
      const sz::WeightBytes& last = s.stages.back().weights;
      if (doubled) {
        EXPECT_EQ(last.lm_head, 0u);  // the table itself, or a view of its rows
        EXPECT_EQ(last.lm_head_view, rows * q8);
      } else {
        EXPECT_EQ(last.lm_head, rows * (k.head_q8 ? q8 : H * f16));
      }
    }
  }
}

// A GGUF that cannot be read is a clear Error naming the file and what is wrong: a header
// cut short, a tensor of a ggml type Kestrel does not know.
TEST(HeldWeightsBadFiles, TruncatedHeaderAndUnknownType) {
  const fs::path good = fixture_dir() / "tiny-llama.gguf";
  const std::string bytes = testing::read_file(good);
  const fs::path dir = testing::temp_dir("held_weights_bad");
  const fs::path cut = dir / "cut.gguf";
  testing::write_file(cut, bytes.substr(0, 600));
  try {
    sz::read_model_shape(cut);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::format);
    EXPECT_NE(e.message().find("cut.gguf"), std::string::npos) << e.message();
  }

  // The type field of token_embd.weight's tensor info: after its name, n_dims and the dims.
  const std::string name = "token_embd.weight";
  std::string patched = bytes;
  uint64_t length = name.size();
  const size_t at = patched.find(std::string(reinterpret_cast<const char*>(&length), 8) + name);
  ASSERT_NE(at, std::string::npos);
  uint32_t dims = 0;
  std::memcpy(&dims, patched.data() + at + 8 + name.size(), 4);
  const size_t type_at = at + 8 + name.size() + 4 + 8 * dims;
  const uint32_t unknown = 99;
  std::memcpy(patched.data() + type_at, &unknown, 4);
  const fs::path odd = dir / "odd.gguf";
  testing::write_file(odd, patched);
  try {
    sz::read_model_shape(odd);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("odd.gguf"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find(name), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("99"), std::string::npos) << e.message();
  }
}

// A tensor missing or of the wrong shape: sizing refuses the file as Model::load does, naming
// the tensor, instead of sizing weights the loader would never hold.
TEST(HeldWeightsBadFiles, MissingOrMisshapenTensor) {
  const fs::path dir = testing::temp_dir("held_weights_tensors");
  struct Case {
    const char* file;
    std::function<void(testing::GgufEditor&)> edit;
    const char* expected;
  };
  const Case cases[] = {
      {"missing.gguf", [](testing::GgufEditor& e) { e.drop_tensor("blk.1.ffn_down.weight"); },
       "tensor 'blk.1.ffn_down.weight' is missing (needed for layer 1 down_weight)"},
      {"reshaped.gguf", [](testing::GgufEditor& e) { e.replace_tensor("blk.0.attn_v.weight", {32, 48}); },
       "tensor 'blk.0.attn_v.weight' has shape [32, 48] but layer 0 qkv_weight needs parts of [128, 64]"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    testing::GgufEditor editor(fixture_dir() / "tiny-llama.gguf");
    c.edit(editor);
    editor.write(dir / c.file);
    ModelOptions mo;
    mo.num_threads = 1;
    EXPECT_THROW(Model::load(dir / c.file, mo), Error);
    sz::SizingOptions o;
    o.dtype = DType::f32;
    try {
      sz::compute(sz::read_model_shape(dir / c.file), o);
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::format);
      EXPECT_NE(e.message().find(c.expected), std::string::npos) << e.message();
    }
  }
}

}  // namespace
}  // namespace kestrel
