// The sizing calculator (tools/sizing.h) against what a real Model and Session allocate,
// and its tensor / pipeline parallel and quantized arithmetic against first principles.
#include "tools/sizing.h"

#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include <kestrel/kestrel.h>

#include "kestrel/error.h"
#include "models/model_state.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::fixture_dir;
namespace sz = sizing;

struct SessionCase {
  int max_sequences, max_sequence_tokens, max_step_tokens, kv_block_size, kv_blocks;
};

class SizingMatchesSession : public ::testing::TestWithParam<std::string> {};

// Every fixture format (HF GPT-2 f32, f16 and sharded bf16, HF Llama, GGUF GPT-2 and
// Llama, and the families with attention / MLP biases): weights exactly Model::weight_bytes(), KV cache and activations exactly
// Session::memory(), at several session settings.
TEST_P(SizingMatchesSession, WeightsKvAndActivations) {
  const auto path = fixture_dir() / GetParam();
  ModelOptions mo;
  mo.num_threads = 1;
  mo.quantization = Quantization::none;  // the sizes of kestrel-size --quant none
  auto model = Model::load(path, mo);
  const sz::ModelShape shape = sz::read_model_shape(path);
  EXPECT_EQ(shape.config.num_layers, model->config().num_layers);
  EXPECT_EQ(shape.config.vocab_size, model->config().vocab_size);

  const int P = model->config().max_positions;
  // The KV cache's dtype: the CPU's default (f16), and each one it takes.
  const std::optional<DType> kv_dtypes[] = {std::nullopt, DType::f32, DType::f16, std::nullopt};
  int index = 0;
  for (const SessionCase& c : {SessionCase{1, 0, 512, 16, 0}, SessionCase{3, 37, 64, 8, 0},
                               SessionCase{8, P, 8, 16, 5}, SessionCase{5, P / 2, 100, 1, 0}}) {
    SessionOptions so;
    so.kv_dtype = kv_dtypes[index++];
    so.max_sequences = c.max_sequences;
    so.max_sequence_tokens = c.max_sequence_tokens;
    so.max_step_tokens = c.max_step_tokens;
    so.kv_block_size = c.kv_block_size;
    so.kv_blocks = c.kv_blocks;
    Session session(model, so);
    sz::SizingOptions options;
    options.device = model->device().kind;
    options.dtype = model->dtype();
    options.quantization = Quantization::none;
    options.session = so;
    const sz::Sizing s = sz::compute(shape, options);
    SCOPED_TRACE("max_sequences " + std::to_string(c.max_sequences) + ", block " + std::to_string(c.kv_block_size));
    ASSERT_EQ(s.stages.size(), 1u);
    EXPECT_EQ(s.largest().weights.total(), model->weight_bytes());
    EXPECT_EQ(s.largest().kv_cache_bytes, session.memory().kv_cache_bytes);
    EXPECT_EQ(s.largest().activation_bytes, session.memory().activation_bytes);
    EXPECT_EQ(s.session.kv_blocks, session.options().kv_blocks);
    EXPECT_EQ(s.session.max_sequence_tokens, session.options().max_sequence_tokens);
    EXPECT_EQ(s.session.kv_dtype, session.options().kv_dtype);
    EXPECT_EQ(session.options().kv_dtype, so.kv_dtype.value_or(DType::f16));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SizingMatchesSession,
                         ::testing::Values("tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-bf16-sharded", "tiny-llama",
                                           "tiny-gpt2.gguf", "tiny-llama.gguf", "tiny-gpt2-unscaled", "tiny-llama3",
                                           "tiny-llama3.gguf", "tiny-qwen2", "tiny-qwen2.gguf",
                                           "tiny-mistral", "tiny-gpt-neox", "tiny-gpt-neox.gguf",
                                           "tiny-gptj", "tiny-granite", "tiny-granite.gguf", "tiny-phi4-mini",
                                           "tiny-phi4-mini.gguf", "tiny-olmo2", "tiny-olmo2.gguf"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

// Mixtures of experts (tests/fixtures/make_tiny_moe.py): every expert, router and shared
// expert counted, and the MoE scratch buffers in the activations.
INSTANTIATE_TEST_SUITE_P(MixtureOfExperts, SizingMatchesSession,
                         ::testing::Values("tiny-mixtral", "tiny-mixtral.gguf", "tiny-qwen2-moe",
                                           "tiny-qwen2-moe.gguf", "tiny-qwen2-moe-mixed", "tiny-qwen3-moe",
                                           "tiny-qwen3-moe.gguf", "tiny-granitemoe", "tiny-granitemoe.gguf",
                                           "tiny-gpt-oss", "tiny-gpt-oss-mxfp4"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& ch : name)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

// A shape (no files) quantized as the loader quantizes a float checkpoint: exactly the
// weight bytes of a model of that shape with random float weights loaded in each mode
// (GPT-2: tied LM head and biases; Llama: untied, GQA), the LM head in int8 for int4 /
// w8a8 / fp8 and a tied one a quantized copy beside the embedding.
TEST(Sizing, QuantizedShapesMatchTheLoader) {
  for (const char* fixture : {"tiny-gpt2", "tiny-llama"}) {
    const ModelConfig config = sz::read_model_shape(fixture_dir() / fixture).config;
    for (const auto& [mode, group] : {std::pair{Quantization::none, 0}, {Quantization::int8, 0}, {Quantization::int8, 32},
                                      {Quantization::int4, 0}, {Quantization::int4, 64}, {Quantization::w8a8, 0},
                                      {Quantization::fp8, 0}}) {
      SCOPED_TRACE(std::string(fixture) + " " + to_string(mode) + " group " + std::to_string(group));
      ModelOptions mo;
      mo.num_threads = 1;
      mo.quantization = mode;
      mo.quant_group_size = group;
      const auto model = Model::random(config, mo, 7);
      sz::SizingOptions o;
      o.dtype = DType::f32;
      o.quantization = mode;
      o.group_size = group;
      const sz::ModelShape shape = sz::shape_of(model->state().arch);
      ASSERT_FALSE(shape.file);
      EXPECT_EQ(sz::compute(shape, o).largest().weights.total(), model->weight_bytes()) << model->weight_formats();
    }
  }
}

// The same shape sized by its arithmetic alone (as presets and shapes from flags are).
sz::ModelShape without_file(sz::ModelShape shape) {
  shape.file = nullptr;
  return shape;
}

// f32 on the CPU, quantized at load in `mode`, on a tp x pp grid.
sz::SizingOptions cpu_f32_grid(Quantization mode, int tp, int pp) {
  sz::SizingOptions o;
  o.dtype = DType::f32;
  o.device = DeviceKind::cpu;
  o.quantization = mode;
  o.tp = tp;
  o.pp = pp;
  return o;
}

// The shape's arithmetic (presets, shapes from flags, stored quantized checkpoints) against
// the file's tensor table on every family's safetensors fixture: post-norms (Gemma), q / k
// head norms (Qwen3, Gemma 3), OLMo 2's post-norms without pre-norms and q / k norms over
// every head (refused at tp > 1) and per-layer rotary tables (Gemma's local and global
// layers) included, whole and at tp 2 x pp 2.
TEST(Sizing, ShapeArithmeticMatchesTheFileOnEveryFamily) {
  for (const char* fixture : {"tiny-gpt2", "tiny-llama", "tiny-llama3", "tiny-qwen2", "tiny-mistral", "tiny-gpt-neox",
                              "tiny-gptj", "tiny-granite", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3",
                              "tiny-llama-yarn", "tiny-phi4-mini", "tiny-olmo2"}) {
    const sz::ModelShape from_file = sz::read_model_shape(fixture_dir() / fixture);
    ASSERT_TRUE(from_file.file) << fixture;
    const sz::ModelShape from_shape = without_file(from_file);
    for (const auto& [tp, pp] : {std::pair{1, 1}, {2, 2}}) {
      for (Quantization mode : {Quantization::none, Quantization::int8}) {
        SCOPED_TRACE(std::string(fixture) + " tp " + std::to_string(tp) + " pp " + std::to_string(pp) + " " +
                     to_string(mode));
        const sz::SizingOptions o = cpu_f32_grid(mode, tp, pp);
        if (from_file.qk_norm_over_heads && tp > 1) {  // OLMo 2: refused as the loader refuses it
          EXPECT_THROW(sz::compute(from_file, o), Error);
          EXPECT_THROW(sz::compute(from_shape, o), Error);
          continue;
        }
        const sz::Sizing a = sz::compute(from_file, o), b = sz::compute(from_shape, o);
        ASSERT_EQ(a.stages.size(), b.stages.size());
        for (size_t st = 0; st < a.stages.size(); ++st) {
          EXPECT_EQ(a.stages[st].weights.layers, b.stages[st].weights.layers) << "stage " << st;
          EXPECT_EQ(a.stages[st].weights.rotary_table, b.stages[st].weights.rotary_table) << "stage " << st;
          EXPECT_EQ(a.stages[st].weights.total(), b.stages[st].weights.total()) << "stage " << st;
        }
      }
    }
  }
}

// gpt-oss: the sinks and the router's and experts' biases counted from the shape as the
// file's tensor table holds them, whole and by pipeline stages; tp > 1 refused by name, as
// Model::load refuses it (the experts' down biases would be added by every rank).
TEST(Sizing, GptOssShapeArithmeticMatchesTheFile) {
  const sz::ModelShape from_file = sz::read_model_shape(fixture_dir() / "tiny-gpt-oss");
  ASSERT_TRUE(from_file.file);
  EXPECT_TRUE(from_file.attention_sinks);
  EXPECT_TRUE(from_file.moe_biases);
  const sz::ModelShape from_shape = without_file(from_file);
  for (int pp : {1, 2}) {
    for (Quantization mode : {Quantization::none, Quantization::int8}) {
      SCOPED_TRACE("pp " + std::to_string(pp) + " " + to_string(mode));
      const sz::SizingOptions o = cpu_f32_grid(mode, 1, pp);
      const sz::Sizing a = sz::compute(from_file, o), b = sz::compute(from_shape, o);
      ASSERT_EQ(a.stages.size(), b.stages.size());
      for (size_t st = 0; st < a.stages.size(); ++st)
        EXPECT_EQ(a.stages[st].weights.total(), b.stages[st].weights.total()) << "stage " << st;
    }
  }
  try {
    (void)sz::compute(from_file, cpu_f32_grid(Quantization::none, 2, 1));
    ADD_FAILURE() << "tp 2 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("biases"), std::string::npos) << e.what();
  }
}

// Mixtures of experts at tp = 2 and 4 (and tp 2 x pp 2): each rank holds its columns of
// every expert and of the shared expert, the router whole. The figures from the file's
// tensor table (each rank's bytes exactly WeightStore::load's: held_weights_test.cc) and the
// shape's arithmetic agree, in f32 and quantized at load; the activations shrink with the
// experts' scratch, and a rank holds less than one process by about the experts' (tp - 1) / tp.
TEST(Sizing, MixtureOfExpertsTensorParallel) {
  for (const char* fixture : {"tiny-mixtral", "tiny-qwen2-moe", "tiny-qwen2-moe-mixed", "tiny-qwen3-moe", "tiny-granitemoe"}) {
    const sz::ModelShape from_file = sz::read_model_shape(fixture_dir() / fixture);
    ASSERT_TRUE(from_file.file) << fixture;
    const sz::ModelShape from_shape = without_file(from_file);
    const ModelConfig& c = from_file.config;
    for (const auto& [tp, pp] : {std::pair{2, 1}, {4, 1}, {2, 2}}) {
      for (Quantization mode : {Quantization::none, Quantization::int8}) {
        SCOPED_TRACE(std::string(fixture) + " tp " + std::to_string(tp) + " pp " + std::to_string(pp) + " " +
                     to_string(mode));
        const sz::SizingOptions o = cpu_f32_grid(mode, tp, pp);
        const sz::Sizing a = sz::compute(from_file, o), b = sz::compute(from_shape, o);
        ASSERT_EQ(a.stages.size(), static_cast<size_t>(pp));
        for (size_t s = 0; s < a.stages.size(); ++s) {
          EXPECT_EQ(a.stages[s].expert_ffn, c.expert_ffn_size / tp);  // the fixtures' widths divide
          EXPECT_EQ(a.stages[s].shared_expert_ffn, c.shared_expert_ffn_size / tp);
          EXPECT_EQ(a.stages[s].weights.total(), b.stages[s].weights.total()) << "stage " << s;
          EXPECT_EQ(a.stages[s].activation_bytes, b.stages[s].activation_bytes) << "stage " << s;
        }
        if (mode != Quantization::none || pp != 1) continue;
        sz::SizingOptions one = o;
        one.tp = 1;
        const sz::Sizing whole = sz::compute(from_file, one);
        // Every expert's [gate | up] and down: 3 x Fe x H a layer and expert, split tp ways.
        const size_t experts = static_cast<size_t>(c.num_layers) * c.num_experts * 3 * c.expert_ffn_size *
                               c.hidden_size * sizeof(float);
        EXPECT_LT(a.largest().weights.total(), whole.largest().weights.total() - experts * (tp - 1) / tp + 1);
        EXPECT_LT(a.largest().activation_bytes, whole.largest().activation_bytes);
      }
    }
  }
}

// The largest max_sequences that fits is the boundary: it fits, one more does not.
TEST(Sizing, MaxSequencesThatFitIsTheBoundary) {
  const sz::ModelShape shape = sz::read_model_shape(fixture_dir() / "tiny-llama");
  sz::SizingOptions o;
  o.dtype = DType::f32;
  o.session.max_sequences = 2;
  o.session.max_sequence_tokens = 64;
  o.memory_bytes = 3 << 20;
  const sz::Sizing s = sz::compute(shape, o);
  ASSERT_GT(s.max_sequences_that_fit, 1);
  auto total = [&](int b) {
    sz::SizingOptions t = o;
    t.memory_bytes = 0;
    t.session.max_sequences = b;
    t.session.max_step_tokens = std::max(512, b);
    return sz::compute(shape, t).largest().total();
  };
  EXPECT_LE(total(s.max_sequences_that_fit), o.memory_bytes);
  EXPECT_GT(total(s.max_sequences_that_fit + 1), o.memory_bytes);
  EXPECT_TRUE(s.fits);
  o.memory_bytes = 1 << 20;
  EXPECT_FALSE(sz::compute(shape, o).fits);
}

// GPT-3 175B in f16: the well-known 174.6 B parameters and 350 GB of weights; with tp = 8
// each rank holds 1/8 of the layer matrices plus the replicated embeddings and norms (the
// token embedding with the tied LM head's padding rows: 8 x 6288 rows, ceil(V / 8) = 6283
// rounded up to a row group of 8).
TEST(Sizing, Gpt3TensorParallel) {
  const sz::ModelShape shape = sz::preset_shape("gpt3-175b");
  sz::SizingOptions o;
  const sz::Sizing one = sz::compute(shape, o);
  EXPECT_NEAR(one.parameters / 1e9, 174.6, 0.1);
  EXPECT_EQ(one.largest().weights.total(), 2 * one.parameters);  // f16, tied LM head
  o.tp = 8;
  const sz::Sizing eight = sz::compute(shape, o);
  const size_t H = 12288, L = 96, V = 50257, P = 2048;
  const size_t matrices = L * (3 * H * H + H * H + 2 * 4 * H * H);  // qkv, out, up, down
  const size_t replicated = L * (4 * H + 2 * H) + 2 * H;               // norms, out/down biases, final norm
  const size_t split_bias = L * (3 * H + 4 * H);                       // qkv, up biases
  const size_t table_rows = 8 * 6288;
  ASSERT_GE(table_rows, V);
  EXPECT_EQ(eight.largest().weights.total(), 2 * (table_rows * H + P * H + matrices / 8 + split_bias / 8 + replicated));
  EXPECT_EQ(eight.kv_bytes_per_token, L * 2 * (96 / 8) * 128 * 2);
}

// Pipeline stages split the layers contiguously, first stages take the remainder; the
// embedding sits on the first, the final norm and (untied) LM head on the last.
TEST(Sizing, PipelineStages) {
  sz::ModelShape shape = sz::preset_shape("tinyllama-1.1b");  // 22 layers, untied
  sz::SizingOptions o;
  o.pp = 4;
  const sz::Sizing s = sz::compute(shape, o);
  ASSERT_EQ(s.stages.size(), 4u);
  const int layers[] = {6, 6, 5, 5};
  size_t layer_bytes = 0;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(s.stages[i].num_layers, layers[i]);
    layer_bytes += s.stages[i].weights.layers;
    EXPECT_EQ(s.stages[i].weights.token_embedding > 0, i == 0);
    EXPECT_EQ(s.stages[i].weights.lm_head > 0, i == 3);
  }
  o.pp = 1;
  EXPECT_EQ(layer_bytes, sz::compute(shape, o).largest().weights.layers);
  EXPECT_EQ(s.stages[2].first_layer, 12);
}

// int8: one byte per weight and an f32 scale per row; int4: half a byte per weight (groups
// padded to group_size) and an f16 scale and min per row and group (backend.h layouts).
TEST(Sizing, QuantizedLayerBytes) {
  sz::ModelShape shape = sz::preset_shape("llama2-7b");
  sz::SizingOptions o;
  const size_t H = 4096, F = 11008, L = 32;
  const size_t norms = 2 * H * 2;
  o.quantization = Quantization::int8;
  const size_t rows8 = 3 * H + H + 2 * F + H;  // qkv, out, up, down rows
  const size_t weights = 3 * H * H + H * H + 2 * F * H + H * F;
  EXPECT_EQ(sz::compute(shape, o).largest().weights.layers, L * (weights + 4 * rows8 + norms));
  o.quantization = Quantization::int4;
  o.group_size = 128;
  // Groups per row: H / 128 = 32 for qkv, out, up; F / 128 = 86 for down.
  const size_t groups = 3 * H * 32 + H * 32 + 2 * F * 32 + H * 86;
  EXPECT_EQ(sz::compute(shape, o).largest().weights.layers, L * (groups * 64 + groups * 4 + norms));
}

// A generation step reads every weight once except the embedding tables (a tied LM head
// reads the token embedding as its matrix), and the KV cache of every sequence; it does
// 2 FLOPs per matrix weight and token, plus 4 per cached position and head dimension.
TEST(Sizing, DecodeStepCost) {
  const sz::ModelShape shape = sz::preset_shape("gpt2");  // tied, learned positions
  sz::SizingOptions o;
  const sz::Sizing s = sz::compute(shape, o);
  const double H = 768, V = 50257, P = 1024, L = 12, F = 3072;
  const sz::StepCost empty = sz::decode_step_cost(shape, o, s.largest(), 1, 0.0);
  EXPECT_DOUBLE_EQ(empty.bytes, static_cast<double>(s.largest().weights.total()) - 2 * P * H);
  const double matrices = L * (3 * H * H + H * H + 2 * H * F) + V * H;
  EXPECT_DOUBLE_EQ(empty.flops, 2 * matrices);
  const sz::StepCost busy = sz::decode_step_cost(shape, o, s.largest(), 4, 100.0);
  EXPECT_DOUBLE_EQ(busy.bytes - empty.bytes, L * 4 * 100 * 2 * H * 2);      // K and V, f16
  EXPECT_DOUBLE_EQ(busy.flops, 4 * empty.flops + L * 4 * 4.0 * 100 * H);    // QK^T and PV
  // With tp = 4 a rank reads a quarter of the LM head (ceil(V / 4) = 12565 rows, rounded up
  // to a row group of 8), not the whole replicated embedding.
  o.tp = 4;
  const sz::Sizing t = sz::compute(shape, o);
  EXPECT_EQ(t.largest().weights.lm_head_view, size_t{12568} * 768 * 2);
}

TEST(Sizing, BadOptionsNameTheField) {
  const sz::ModelShape shape = sz::preset_shape("gpt2");
  sz::SizingOptions o;
  o.tp = 5;
  try {
    sz::compute(shape, o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    EXPECT_NE(e.message().find("not divisible by ParallelOptions.tensor_parallel 5"), std::string::npos) << e.message();
  }
  o.tp = 1;
  o.pp = 13;
  EXPECT_THROW(sz::compute(shape, o), Error);
  o.pp = 1;
  o.session.max_sequence_tokens = 5000;
  EXPECT_THROW(sz::compute(shape, o), Error);
  EXPECT_THROW(sz::preset_shape("gpt5"), Error);
  EXPECT_DOUBLE_EQ(sz::parse_bytes("80GiB", "m"), 80.0 * (1ull << 30));
  EXPECT_DOUBLE_EQ(sz::parse_bytes("80 GB", "m"), 80e9);
  EXPECT_DOUBLE_EQ(sz::parse_rate("3.35TB/s", "b"), 3.35e12);
  EXPECT_DOUBLE_EQ(sz::parse_rate("989T", "f"), 989e12);
  EXPECT_THROW(sz::parse_bytes("lots", "--memory"), Error);
  EXPECT_THROW(sz::parse_bytes("-1GB", "--memory"), Error);
}

}  // namespace
}  // namespace kestrel
