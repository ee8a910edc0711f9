// The config audit (docs/MODELS.md) of Gemma2Config, Gemma3TextConfig and Qwen3Config, and
// their GGUF metadata: every key that changes the computation is read into the description
// or refused with an error naming it. The configs are the fixtures' config.json files
// (tests/fixtures/make_tiny_gemma.py) with one key changed; the GGUF files are the
// fixtures' with one metadata key edited.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gguf_editor.h"
#include "kestrel/error.h"
#include "kestrel/model.h"
#include "loaders/gguf.h"
#include "models/architecture.h"
#include "models/rope.h"
#include "config_audit_support.h"
#include "test_support.h"

namespace kestrel {
namespace {

using nlohmann::json;
using testing::describe;
using testing::fixture_config;
using testing::describe_gguf;
using testing::expect_gguf_refused;
using testing::expect_refused;

TEST(ConfigAuditGemma2, DescriptionFollowsTheConfig) {
  const Architecture arch = describe(fixture_config("tiny-gemma2"));
  EXPECT_EQ(arch.config.head_dim, 16);
  EXPECT_TRUE(arch.kinds.scale_embedding);
  EXPECT_TRUE(arch.kinds.post_norms);
  EXPECT_FALSE(arch.kinds.qk_norm);
  EXPECT_TRUE(arch.kinds.gated_ffn);
  EXPECT_EQ(arch.kinds.activation, Activation::gelu_tanh);
  EXPECT_FLOAT_EQ(arch.kinds.attn_logit_softcap, 5.0f);
  EXPECT_FLOAT_EQ(arch.kinds.final_logit_softcap, 10.0f);
  // Gemma 2: layer 0, 2, ... local (not layer_idx % 2), all with the one rope table.
  ASSERT_EQ(arch.kinds.layer_attention.size(), 3u);
  EXPECT_EQ(layer_sliding_window(arch.kinds, 0), 8);
  EXPECT_EQ(layer_sliding_window(arch.kinds, 1), 0);
  EXPECT_EQ(layer_sliding_window(arch.kinds, 2), 8);
  for (const auto& layer : arch.kinds.layer_attention) EXPECT_TRUE(layer.rotary_inv_freq.empty());
  // Norm weights are (1 + w): folded at load.
  EXPECT_FLOAT_EQ(arch.recipe(WeightSlot::post_ffn_norm_weight, 1).offset, 1.0f);
  EXPECT_EQ(arch.recipe(WeightSlot::post_ffn_norm_weight, 1).sources.at(0),
            "model.layers.1.post_feedforward_layernorm.weight");
  EXPECT_EQ(arch.recipe(WeightSlot::ffn_norm_weight, 0).sources.at(0), "model.layers.0.pre_feedforward_layernorm.weight");
}

TEST(ConfigAuditGemma2, QueryPreAttnScalarSetsTheSoftmaxScale) {
  json config = fixture_config("tiny-gemma2");  // head_dim 16, query_pre_attn_scalar 16
  EXPECT_FLOAT_EQ(attention_scale(describe(config), 0), 0.25f);
  config["query_pre_attn_scalar"] = 144;  // Gemma 2 27B: hidden / heads, not head_dim
  EXPECT_FLOAT_EQ(attention_scale(describe(config), 1), 1.0f / 12.0f);
  config.erase("query_pre_attn_scalar");
  expect_refused(config, ErrorCategory::format, {"query_pre_attn_scalar"});
}

TEST(ConfigAuditGemma2, SoftCappingDefaultsWhenAbsentAndIsOffWhenNull) {
  json config = fixture_config("tiny-gemma2");
  config.erase("attn_logit_softcapping");
  config.erase("final_logit_softcapping");
  EXPECT_FLOAT_EQ(describe(config).kinds.attn_logit_softcap, 50.0f);  // Gemma2Config's defaults
  EXPECT_FLOAT_EQ(describe(config).kinds.final_logit_softcap, 30.0f);
  config["attn_logit_softcapping"] = nullptr;
  config["final_logit_softcapping"] = nullptr;
  EXPECT_EQ(describe(config).kinds.attn_logit_softcap, 0.0f);
  EXPECT_EQ(describe(config).kinds.final_logit_softcap, 0.0f);
  config["final_logit_softcapping"] = -1.0;
  expect_refused(config, ErrorCategory::format, {"final_logit_softcapping"});
}

TEST(ConfigAuditGemma2, RefusedKeysAreNamed) {
  json config = fixture_config("tiny-gemma2");
  config["attention_bias"] = true;
  expect_refused(config, ErrorCategory::unsupported, {"attention_bias"});
  config = fixture_config("tiny-gemma2");
  config["hidden_activation"] = "gelu";  // erf GELU: not what the kernels' GeGLU computes here
  expect_refused(config, ErrorCategory::unsupported, {"hidden_activation", "'gelu'"});
  config["hidden_activation"] = "swish";
  expect_refused(config, ErrorCategory::unsupported, {"hidden_activation", "'swish'"});
  config = fixture_config("tiny-gemma2");
  config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling"});
  config = fixture_config("tiny-gemma2");
  config["sliding_window"] = 0;
  expect_refused(config, ErrorCategory::format, {"sliding_window"});
}

TEST(ConfigAuditGemma2, MathNeutralKeysAreAccepted) {
  json config = fixture_config("tiny-gemma2");
  config["cache_implementation"] = "hybrid";
  config["attention_dropout"] = 0.1;
  config["initializer_range"] = 0.5;
  config["use_cache"] = false;
  EXPECT_NO_THROW(describe(config));
}

TEST(ConfigAuditGemma3, LocalAndGlobalLayersHaveTheirOwnWindowAndRope) {
  const Architecture arch = describe(fixture_config("tiny-gemma3"));
  EXPECT_TRUE(arch.kinds.qk_norm);
  EXPECT_EQ(arch.kinds.attn_logit_softcap, 0.0f);
  EXPECT_EQ(arch.kinds.final_logit_softcap, 0.0f);
  EXPECT_FLOAT_EQ(arch.recipe(WeightSlot::q_norm_weight, 2).offset, 1.0f);
  EXPECT_EQ(arch.recipe(WeightSlot::k_norm_weight, 2).sources.at(0), "model.layers.2.self_attn.k_norm.weight");
  // sliding_window_pattern 6: layers 0-4 local (window 8, base 10000), layer 5 global
  // (rope_theta 1e6 with linear scaling 4).
  const std::vector<float> local = rope_inv_freq(10000.0, 16);
  std::vector<float> global = rope_inv_freq(1e6, 16);
  for (float& f : global) f /= 4.0f;
  for (int l = 0; l < 5; ++l) {
    EXPECT_EQ(layer_sliding_window(arch.kinds, l), 8) << l;
    EXPECT_EQ(arch.kinds.layer_attention[l].rotary_inv_freq, local) << l;
  }
  EXPECT_EQ(layer_sliding_window(arch.kinds, 5), 0);
  EXPECT_TRUE(arch.kinds.layer_attention[5].rotary_inv_freq.empty());
  EXPECT_EQ(arch.kinds.rotary_inv_freq, global);
}

TEST(ConfigAuditGemma3, PatternAndLocalBaseAreRead) {
  json config = fixture_config("tiny-gemma3");
  config["sliding_window_pattern"] = 2;
  config["rope_local_base_freq"] = 500.0;
  const Architecture arch = describe(config);
  EXPECT_EQ(layer_sliding_window(arch.kinds, 0), 8);
  EXPECT_EQ(layer_sliding_window(arch.kinds, 1), 0);
  EXPECT_EQ(layer_sliding_window(arch.kinds, 4), 8);
  EXPECT_EQ(layer_sliding_window(arch.kinds, 5), 0);
  EXPECT_EQ(arch.kinds.layer_attention[0].rotary_inv_freq, rope_inv_freq(500.0, 16));
  config["sliding_window_pattern"] = 0;
  expect_refused(config, ErrorCategory::format, {"sliding_window_pattern"});
}

TEST(ConfigAuditGemma3, RopeScalingTypesOutsideTheSupportedOnesAreRefusedByName) {
  json config = fixture_config("tiny-gemma3");
  config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 8.0}};
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling", "yarn"});
}

TEST(ConfigAuditGemma3, SoftCapsAreReadWhenSet) {
  json config = fixture_config("tiny-gemma3");
  config["attn_logit_softcapping"] = 20.0;
  config["final_logit_softcapping"] = 15.0;
  EXPECT_FLOAT_EQ(describe(config).kinds.attn_logit_softcap, 20.0f);
  EXPECT_FLOAT_EQ(describe(config).kinds.final_logit_softcap, 15.0f);
}

// A multimodal gemma3 checkpoint: the text_config (whose omitted keys take
// Gemma3TextConfig's defaults) and the language model's tensors under "language_model.".
TEST(ConfigAuditGemma3, MultimodalCheckpointReadsItsTextConfig) {
  json text = {{"model_type", "gemma3_text"}, {"hidden_size", 2560}, {"intermediate_size", 10240},
               {"num_hidden_layers", 34}, {"rope_scaling", {{"rope_type", "linear"}, {"factor", 8.0}}},
               {"sliding_window", 1024}};
  json config = {{"model_type", "gemma3"}, {"text_config", text}, {"vision_config", json::object()}};
  const Architecture arch = describe(config);
  EXPECT_EQ(arch.config.vocab_size, 262208);
  EXPECT_EQ(arch.config.num_heads, 8);
  EXPECT_EQ(arch.config.num_kv_heads, 4);
  EXPECT_EQ(arch.config.head_dim, 256);
  EXPECT_EQ(layer_sliding_window(arch.kinds, 4), 1024);
  EXPECT_EQ(layer_sliding_window(arch.kinds, 5), 0);
  EXPECT_FLOAT_EQ(attention_scale(arch, 0), 1.0f / 16.0f);  // query_pre_attn_scalar 256
  EXPECT_EQ(arch.recipe(WeightSlot::token_embedding, -1).sources.at(0), "language_model.model.embed_tokens.weight");
  EXPECT_EQ(arch.recipe(WeightSlot::lm_head, -1).sources.at(0), "language_model.model.embed_tokens.weight");
  config.erase("text_config");
  expect_refused(config, ErrorCategory::format, {"text_config"});
}

TEST(ConfigAuditQwen3, HeadDimQkNormsAndBiases) {
  json config = fixture_config("tiny-qwen3");  // hidden 32, 4 heads, head_dim 16
  Architecture arch = describe(config);
  EXPECT_EQ(arch.config.head_dim, 16);
  EXPECT_TRUE(arch.kinds.qk_norm);
  EXPECT_FALSE(arch.kinds.post_norms);
  EXPECT_EQ(arch.recipe(WeightSlot::q_norm_weight, 1).sources.at(0), "model.layers.1.self_attn.q_norm.weight");
  EXPECT_EQ(arch.recipe(WeightSlot::q_norm_weight, 1).offset, 0.0f);  // plain RMSNorm
  EXPECT_TRUE(arch.recipe(WeightSlot::qkv_bias, 0).sources.empty());
  config.erase("head_dim");  // Qwen3Config's default is 128, not hidden / heads
  EXPECT_EQ(describe(config).config.head_dim, 128);
  config = fixture_config("tiny-qwen3");
  config["attention_bias"] = true;
  arch = describe(config);
  EXPECT_EQ(arch.recipe(WeightSlot::qkv_bias, 0).sources.size(), 3u);
  EXPECT_EQ(arch.recipe(WeightSlot::out_bias, 0).sources.size(), 1u);
}

TEST(ConfigAuditQwen3, RefusedKeysAreNamed) {
  json config = fixture_config("tiny-qwen3");
  config["use_sliding_window"] = true;
  expect_refused(config, ErrorCategory::unsupported, {"use_sliding_window"});
  config = fixture_config("tiny-qwen3");
  config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling", "yarn"});
  config = fixture_config("tiny-qwen3");
  config["hidden_act"] = "gelu";
  expect_refused(config, ErrorCategory::unsupported, {"hidden_act"});
}

TEST(ConfigAuditQwen3, RopeScalingLinearAndMathNeutralKeys) {
  json config = fixture_config("tiny-qwen3");
  config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  config["sliding_window"] = 4;  // used only with use_sliding_window
  config["max_window_layers"] = 1;
  std::vector<float> want = rope_inv_freq(1e6, 16);
  for (float& f : want) f /= 2.0f;
  EXPECT_EQ(describe(config).kinds.rotary_inv_freq, want);
}

// GGUF metadata as llama.cpp's converter writes it for the fixtures, and edits of it.
std::filesystem::path edited(testing::GgufEditor& editor, const std::string& name) {
  const std::filesystem::path path = testing::temp_dir("gemma_config") / name;
  editor.write(path);
  return path;
}

TEST(GgufGemma, Gemma2MetadataMatchesTheHfDescription) {
  const Architecture gguf = describe_gguf(testing::fixture_dir() / "tiny-gemma2.gguf");
  const Architecture hf = describe(fixture_config("tiny-gemma2"));
  EXPECT_EQ(gguf.name, "gemma2");
  EXPECT_FLOAT_EQ(gguf.kinds.attn_logit_softcap, hf.kinds.attn_logit_softcap);
  EXPECT_FLOAT_EQ(gguf.kinds.final_logit_softcap, hf.kinds.final_logit_softcap);
  EXPECT_FLOAT_EQ(attention_scale(gguf, 0), attention_scale(hf, 0));
  for (int l = 0; l < 3; ++l) EXPECT_EQ(layer_sliding_window(gguf.kinds, l), layer_sliding_window(hf.kinds, l));
  EXPECT_EQ(gguf.recipe(WeightSlot::post_ffn_norm_weight, 2).sources.at(0), "blk.2.post_ffw_norm.weight");
  EXPECT_EQ(gguf.recipe(WeightSlot::attn_norm_weight, 0).offset, 0.0f);  // the converter stored 1 + w
}

TEST(GgufGemma, Gemma3MetadataMatchesTheHfDescription) {
  const Architecture gguf = describe_gguf(testing::fixture_dir() / "tiny-gemma3.gguf");
  const Architecture hf = describe(fixture_config("tiny-gemma3"));
  EXPECT_TRUE(gguf.kinds.qk_norm);
  EXPECT_EQ(gguf.kinds.rotary_inv_freq, hf.kinds.rotary_inv_freq);  // global: base 1e6, linear 4
  for (int l = 0; l < 6; ++l) {
    EXPECT_EQ(layer_sliding_window(gguf.kinds, l), layer_sliding_window(hf.kinds, l)) << l;
    EXPECT_EQ(gguf.kinds.layer_attention[l].rotary_inv_freq, hf.kinds.layer_attention[l].rotary_inv_freq) << l;
  }
}

TEST(GgufGemma, BadMetadataIsNamed) {
  testing::GgufEditor no_window(testing::fixture_dir() / "tiny-gemma3.gguf");
  no_window.erase("gemma3.attention.sliding_window");
  expect_gguf_refused(edited(no_window, "no_window.gguf"), ErrorCategory::format, {"gemma3.attention.sliding_window"});
  testing::GgufEditor yarn(testing::fixture_dir() / "tiny-gemma3.gguf");
  yarn.set("gemma3.rope.scaling.type", std::string("yarn"));
  expect_gguf_refused(edited(yarn, "yarn.gguf"), ErrorCategory::unsupported, {"gemma3.rope.scaling.type", "yarn"});
  testing::GgufEditor cap(testing::fixture_dir() / "tiny-gemma2.gguf");
  cap.set("gemma2.final_logit_softcapping", -1.0f);
  expect_gguf_refused(edited(cap, "cap.gguf"), ErrorCategory::format, {"soft-capping"});
  testing::GgufEditor qwen3(testing::fixture_dir() / "tiny-qwen3.gguf");
  qwen3.set("qwen3.rope.scaling.type", std::string("yarn"));
  expect_gguf_refused(edited(qwen3, "qwen3_yarn.gguf"), ErrorCategory::unsupported, {"qwen3.rope.scaling.type"});
}

TEST(GgufGemma, MissingQkNormTensorIsNamedAtLoad) {
  testing::GgufEditor editor(testing::fixture_dir() / "tiny-qwen3.gguf");
  editor.drop_tensor("blk.1.attn_k_norm.weight");
  const std::filesystem::path path = edited(editor, "no_k_norm.gguf");
  try {
    Model::load(path);
    ADD_FAILURE() << "loaded without blk.1.attn_k_norm.weight";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::format) << e.what();
    EXPECT_NE(e.message().find("blk.1.attn_k_norm.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kestrel
