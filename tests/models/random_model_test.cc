// Model::random: models of a named shape with random weights (kestrel-bench --synthetic,
// the GPU check). The weights must have the shapes and statistics promised, depend on the
// seed alone, load through the same path as files (quantized too) and decode.
#include <gtest/gtest.h>

#include <cmath>
#include <kestrel/kestrel.h>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "models/random_model.h"
#include "test_support.h"
#include "tools/sizing.h"

namespace kestrel {
namespace {

ModelConfig small_llama() {
  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.ffn_size = 96;
  c.max_positions = 128;
  c.tied_embeddings = false;
  return c;
}

ModelConfig small_gpt2() {
  ModelConfig c;
  c.architecture = "gpt2";
  c.vocab_size = 200;
  c.hidden_size = 48;
  c.num_layers = 2;
  c.num_heads = 3;
  c.ffn_size = 192;
  c.max_positions = 64;
  return c;
}

std::vector<int32_t> ids(int n, int vocab) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back((37 * i + 11) % vocab);
  return v;
}

std::vector<float> logits(const std::shared_ptr<const Model>& model, int n) {
  Session session(model);
  Decoder decoder(session);
  return decoder.score(ids(n, model->config().vocab_size));
}

TEST(RandomModel, SameSeedSameLogitsOtherSeedOthers) {
  for (const ModelConfig& config : {small_llama(), small_gpt2()}) {
    auto a = Model::random(config, {}, 5);
    auto b = Model::random(config, {}, 5);
    auto c = Model::random(config, {}, 6);
    EXPECT_EQ(a->config().hidden_size, config.hidden_size);
    EXPECT_EQ(a->tokenizer().vocab_size(), config.vocab_size);
    const auto la = logits(a, 9), lb = logits(b, 9), lc = logits(c, 9);
    ASSERT_EQ(la.size(), static_cast<size_t>(9 * config.vocab_size));
    EXPECT_EQ(la, lb) << config.architecture;
    EXPECT_NE(la, lc) << config.architecture;
    for (float x : la) ASSERT_TRUE(std::isfinite(x)) << config.architecture;
    EXPECT_NE(a->path().string().find("random " + config.architecture), std::string::npos);
  }
}

TEST(RandomModel, WeightsHaveTheirShapesAndStatistics) {
  const ModelConfig config = small_llama();
  Architecture arch = architecture_from_hf_json(random_model_hf_config(config), "test",
                                                [](const std::string&) { return false; });
  RandomWeightSource source(arch, DType::f16, 3);
  const SourceTensor* k = source.find("model.layers.1.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{2 * 16, 64}));
  EXPECT_EQ(k->dtype, DType::f16);
  EXPECT_EQ(source.find("model.layers.0.mlp.gate_proj.weight")->shape, (std::vector<int64_t>{96, 64}));
  EXPECT_EQ(source.find("lm_head.weight")->shape, (std::vector<int64_t>{300, 64}));
  EXPECT_EQ(source.find("model.layers.2.mlp.up_proj.weight"), nullptr);  // only 2 layers

  auto floats = [](const SourceTensor* t) {
    std::vector<float> v(static_cast<size_t>(t->numel()));
    convert_floats(t->data, t->dtype, v.data(), DType::f32, v.size());
    return v;
  };
  const std::vector<float> e = floats(source.find("model.embed_tokens.weight"));
  double sum = 0, sq = 0;
  for (float x : e) {
    sum += x;
    sq += double{x} * x;
  }
  const double mean = sum / e.size(), sd = std::sqrt(sq / e.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(sd, 0.02, 0.002);
  for (float x : floats(source.find("model.norm.weight"))) {
    EXPECT_GE(x, 0.9f);
    EXPECT_LE(x, 1.1f);
  }
}

TEST(RandomModel, DecodesAndQuantizes) {
  auto model = Model::random(small_llama(), {.quantization = Quantization::int8});
  Session session(model);
  Decoder decoder(session);
  GenerationRequest r;
  r.prompt_ids = ids(12, 300);
  r.stop.max_new_tokens = 6;
  const GenerationResult result = decoder.generate(r);
  EXPECT_EQ(result.tokens.size(), 6u);
  EXPECT_EQ(result.finish, FinishReason::length);
}

TEST(RandomModel, PresetsLoad) {
  // The presets kestrel-bench --synthetic offers describe models Model::random can make;
  // their dimensions are checked without making the (large) weights.
  for (const std::string& name : sizing::preset_names()) {
    const ModelConfig config = sizing::preset_shape(name).config;
    Architecture arch = architecture_from_hf_json(random_model_hf_config(config), name,
                                                  [](const std::string&) { return false; });
    EXPECT_EQ(arch.config.num_heads, config.num_heads) << name;
    EXPECT_EQ(arch.config.num_kv_heads, config.num_kv_heads) << name;
    EXPECT_EQ(arch.config.head_dim, config.head_dim) << name;
    EXPECT_EQ(arch.config.ffn_size, config.ffn_size) << name;
    EXPECT_EQ(arch.config.tied_embeddings, config.tied_embeddings) << name;
    EXPECT_EQ(sizing::shape_of(arch).config.vocab_size, config.vocab_size) << name;
  }
}

TEST(RandomModel, ShapesTheArchitectureCannotHaveAreRefused) {
  ModelConfig gqa_gpt2 = small_gpt2();
  gqa_gpt2.num_kv_heads = 1;
  ModelConfig unknown = small_llama();
  unknown.architecture = "mamba";
  ModelConfig bad_dims = small_llama();
  bad_dims.num_kv_heads = 3;  // 4 heads are not a multiple of 3
  for (const auto& [config, needle, category] :
       {std::tuple{gqa_gpt2, "num_kv_heads", ErrorCategory::invalid_argument},
        std::tuple{unknown, "mamba", ErrorCategory::invalid_argument},
        std::tuple{bad_dims, "num_kv_heads", ErrorCategory::format}}) {
    try {
      Model::random(config);
      ADD_FAILURE() << "expected an error naming " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), category) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kestrel
