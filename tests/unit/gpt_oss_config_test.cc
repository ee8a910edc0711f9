// The config audit (docs/MODELS.md) of GptOssConfig (the transformers version
// tests/fixtures/make_tiny_gpt_oss.py names): every key that changes the computation is read
// into the description or refused with an error naming it; the training-only keys change
// nothing. The configs are the fixture's config.json with one key changed.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "gguf_editor.h"
#include "kestrel/error.h"
#include "kestrel/model.h"
#include "models/architecture.h"
#include "models/rope.h"
#include "models/rope_scaling.h"
#include "config_audit_support.h"
#include "test_support.h"

namespace kestrel {
namespace {

using nlohmann::json;
using testing::describe;
using testing::describe_gguf;
using testing::expect_gguf_refused;
using testing::expect_refused;
using testing::fixture_config;

json config() { return fixture_config("tiny-gpt-oss"); }

std::vector<int> windows(const Architecture& arch) {
  std::vector<int> w;
  for (int l = 0; l < arch.config.num_layers; ++l) w.push_back(layer_sliding_window(arch.kinds, l));
  return w;
}

TEST(ConfigAuditGptOss, DescriptionFollowsTheConfig) {
  const Architecture arch = describe(config());
  EXPECT_EQ(arch.name, "gpt_oss");
  EXPECT_EQ(arch.config.architecture, "gpt_oss");
  EXPECT_EQ(arch.config.hidden_size, 32);
  EXPECT_EQ(arch.config.num_heads, 4);
  EXPECT_EQ(arch.config.num_kv_heads, 2);
  EXPECT_EQ(arch.config.head_dim, 16);
  EXPECT_FALSE(arch.config.tied_embeddings);
  EXPECT_FLOAT_EQ(arch.config.norm_eps, 1e-5f);
  EXPECT_EQ(arch.config.num_experts, 6);
  EXPECT_EQ(arch.config.experts_per_token, 2);
  EXPECT_EQ(arch.config.expert_ffn_size, 24);
  EXPECT_EQ(arch.config.shared_expert_ffn_size, 0);
  EXPECT_TRUE(arch.kinds.normalize_top_k);  // softmax over the top-k logits
  EXPECT_EQ(arch.kinds.sparse_layers, (std::vector<bool>{true, true}));
  EXPECT_TRUE(arch.kinds.attention_sinks);
  EXPECT_FLOAT_EQ(arch.kinds.swiglu_limit, 7.0f);
  EXPECT_FLOAT_EQ(arch.kinds.swiglu_alpha, 1.702f);
  EXPECT_EQ(arch.kinds.rotary_style, RotaryStyle::neox);
  EXPECT_EQ(windows(arch), (std::vector<int>{8, 0}));
  // YaRN: cos / sin scaled by 0.1 ln(256 / 64) + 1, folded into the softmax scale.
  EXPECT_NEAR(arch.kinds.rotary_attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-6);
  EXPECT_EQ(arch.config.max_positions, 256);
  EXPECT_EQ(arch.recipe(WeightSlot::attn_sinks, 1).sources.at(0), "model.layers.1.self_attn.sinks");
  EXPECT_EQ(arch.recipe(WeightSlot::router_weight, 1).sources.at(0), "model.layers.1.mlp.router.weight");
  EXPECT_EQ(arch.recipe(WeightSlot::router_bias, 1).sources.at(0), "model.layers.1.mlp.router.bias");
  EXPECT_EQ(arch.recipe(WeightSlot::qkv_bias, 0).sources.size(), 3u);
  EXPECT_EQ(arch.recipe(WeightSlot::out_bias, 0).sources.at(0), "model.layers.0.self_attn.o_proj.bias");
  EXPECT_TRUE(arch.recipe(WeightSlot::up_weight, 0).sources.empty());
  const WeightRecipe up = arch.expert_recipe(WeightSlot::expert_up_weight, 0, 5);
  EXPECT_EQ(up.sources, (std::vector<std::string>{"model.layers.0.mlp.experts.gate_up_proj#5"}));
  EXPECT_TRUE(up.transposed);
  EXPECT_EQ(up.interleaved_head_rows, 1);
  EXPECT_EQ(up.interleaved_parts, 2);
  EXPECT_EQ(arch.expert_recipe(WeightSlot::expert_up_bias, 0, 5).sources.at(0),
            "model.layers.0.mlp.experts.gate_up_proj_bias#5");
  EXPECT_TRUE(arch.expert_recipe(WeightSlot::expert_down_weight, 1, 0).transposed);
  EXPECT_EQ(arch.expert_recipe(WeightSlot::expert_down_bias, 1, 0).sources.at(0),
            "model.layers.1.mlp.experts.down_proj_bias#0");
}

// sliding_window and layer_types set each layer's window; num_local_experts,
// num_experts_per_tok, intermediate_size and head_dim are read; absent keys take
// GptOssConfig's defaults, a null head_dim or num_key_value_heads is derived as its __init__
// derives it.
TEST(ConfigAuditGptOss, KeysThatChangeTheComputation) {
  json c = config();
  c["sliding_window"] = 5;
  EXPECT_EQ(windows(describe(c)), (std::vector<int>{5, 0}));
  c["layer_types"] = json::array({"full_attention", "sliding_attention"});
  EXPECT_EQ(windows(describe(c)), (std::vector<int>{0, 5}));
  c.erase("layer_types");  // GptOssConfig's default: sliding on even layers (0-based)
  c["num_hidden_layers"] = 4;
  EXPECT_EQ(windows(describe(c)), (std::vector<int>{5, 0, 5, 0}));
  c = config();
  c["num_local_experts"] = 8;
  c["num_experts_per_tok"] = 4;
  c["intermediate_size"] = 40;
  c["head_dim"] = 8;
  const Architecture arch = describe(c);
  EXPECT_EQ(arch.config.num_experts, 8);
  EXPECT_EQ(arch.config.experts_per_token, 4);
  EXPECT_EQ(arch.config.expert_ffn_size, 40);
  EXPECT_EQ(arch.config.head_dim, 8);
  EXPECT_EQ(arch.kinds.rotary_inv_freq.size(), 4u);
  c = config();
  c["head_dim"] = nullptr;  // hidden / heads
  EXPECT_EQ(describe(c).config.head_dim, 8);
  c["num_key_value_heads"] = nullptr;  // the query heads
  EXPECT_EQ(describe(c).config.num_kv_heads, 4);
  c = config();
  for (const char* key : {"head_dim", "num_key_value_heads", "num_local_experts", "num_experts_per_tok",
                          "sliding_window", "layer_types", "rope_scaling", "rope_theta", "max_position_embeddings"})
    c.erase(key);
  c["num_attention_heads"] = 64;  // GptOssConfig's defaults, over hidden 32
  const Architecture defaults = describe(c);
  EXPECT_EQ(defaults.config.head_dim, 64);
  EXPECT_EQ(defaults.config.num_kv_heads, 8);
  EXPECT_EQ(defaults.config.num_experts, 128);
  EXPECT_EQ(defaults.config.experts_per_token, 4);
  EXPECT_EQ(defaults.config.max_positions, 131072);
  EXPECT_EQ(windows(defaults), (std::vector<int>{128, 0}));
  // No rope_scaling key: transformers' default dict is GptOssConfig's signature default,
  // which a config.json without the key also gets (yarn, factor 32 over 4096).
  EXPECT_NEAR(defaults.kinds.rotary_attention_factor, 0.1 * std::log(32.0) + 1.0, 1e-6);
}

// rope_scaling: YaRN with original_max_position_embeddings (the factor becomes
// max_position_embeddings / original, as transformers computes it), truncate, the betas;
// "default" or null leaves the plain table; rope_theta sets its base.
TEST(ConfigAuditGptOss, RopeScaling) {
  const Architecture base = describe(config());
  json c = config();
  c["rope_scaling"] = nullptr;
  const Architecture plain = describe(c);
  EXPECT_EQ(plain.kinds.rotary_inv_freq, rope_inv_freq(10000.0, 16));
  EXPECT_FLOAT_EQ(plain.kinds.rotary_attention_factor, 1.0f);
  EXPECT_NE(plain.kinds.rotary_inv_freq, base.kinds.rotary_inv_freq);
  c["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(describe(c).kinds.rotary_inv_freq, plain.kinds.rotary_inv_freq);
  c["rope_theta"] = 150000.0;
  EXPECT_EQ(describe(c).kinds.rotary_inv_freq, rope_inv_freq(150000.0, 16));
  c = config();
  c["rope_scaling"]["truncate"] = true;  // the ramp's ends rounded outwards to whole pairs
  EXPECT_NE(describe(c).kinds.rotary_inv_freq, base.kinds.rotary_inv_freq);
  c = config();
  // The ramp is measured over original_max_position_embeddings (else max_position_embeddings);
  // the attention factor comes from `factor` alone in transformers 4.57.6.
  c["rope_scaling"]["original_max_position_embeddings"] = 32;
  EXPECT_NEAR(describe(c).kinds.rotary_attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-6);
  EXPECT_NE(describe(c).kinds.rotary_inv_freq, base.kinds.rotary_inv_freq);
  c["rope_scaling"].erase("original_max_position_embeddings");
  EXPECT_NE(describe(c).kinds.rotary_inv_freq, base.kinds.rotary_inv_freq);
  c["rope_scaling"]["factor"] = 8.0;
  EXPECT_NEAR(describe(c).kinds.rotary_attention_factor, 0.1 * std::log(8.0) + 1.0, 1e-6);
  c = config();
  c["rope_scaling"]["beta_fast"] = 8.0;
  EXPECT_NE(describe(c).kinds.rotary_inv_freq, base.kinds.rotary_inv_freq);
  c = config();
  c["rope_scaling"]["attention_factor"] = 1.5;
  EXPECT_FLOAT_EQ(describe(c).kinds.rotary_attention_factor, 1.5f);
}

TEST(ConfigAuditGptOss, RefusedKeysAreNamed) {
  json c = config();
  c["quantization_config"] = {{"quant_method", "gptq"}};
  expect_refused(c, ErrorCategory::unsupported, {"quantization_config", "gptq"});
  c["quantization_config"] = {{"quant_method", "mxfp4"}};  // the released checkpoints: read
  ASSERT_TRUE(describe(c).mxfp4_paired_rows.has_value());
  EXPECT_EQ(*describe(c).mxfp4_paired_rows, std::vector<std::string>{"gate_up_proj"});
  EXPECT_FALSE(describe(config()).mxfp4_paired_rows.has_value());
  c = config();
  c["swiglu_limit"] = 5.0;  // transformers 4.57.6 clamps at 7 whatever it says
  expect_refused(c, ErrorCategory::unsupported, {"swiglu_limit"});
  c = config();
  c["hidden_act"] = "gelu";
  expect_refused(c, ErrorCategory::unsupported, {"hidden_act"});
  c = config();
  c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  expect_refused(c, ErrorCategory::unsupported, {"rope_scaling", "linear"});
  c = config();
  c["rope_scaling"]["mscale"] = 1.0;
  expect_refused(c, ErrorCategory::unsupported, {"mscale"});
  c = config();
  c["layer_types"] = json::array({"sliding_attention"});
  expect_refused(c, ErrorCategory::format, {"layer_types"});
  c = config();
  c["layer_types"] = json::array({"sliding_attention", "chunked_attention"});
  expect_refused(c, ErrorCategory::format, {"layer_types[1]", "chunked_attention"});
  c = config();
  c["sliding_window"] = 0;
  expect_refused(c, ErrorCategory::format, {"sliding_window"});
  c = config();
  c["rope_scaling"]["original_max_position_embeddings"] = -4;
  expect_refused(c, ErrorCategory::format, {"original_max_position_embeddings"});
  c = config();
  c["num_experts_per_tok"] = 7;
  expect_refused(c, ErrorCategory::format, {"experts_per_token"});
}

// Training-only keys leave the description as it is; so do attention_bias (GptOssConfig
// sets it true whatever config.json says) and swiglu_limit 7 (the constant).
TEST(ConfigAuditGptOss, MathNeutralKeys) {
  const Architecture base = describe(config());
  json c = config();
  c["initializer_range"] = 0.5;
  c["attention_dropout"] = 0.1;
  c["router_aux_loss_coef"] = 0.5;
  c["output_router_logits"] = true;
  c["use_cache"] = false;
  c["attention_bias"] = false;
  c["swiglu_limit"] = 7.0;
  const Architecture same = describe(c);
  EXPECT_EQ(same.recipe(WeightSlot::qkv_bias, 1).sources.size(), 3u);
  EXPECT_EQ(same.recipe(WeightSlot::out_bias, 1).sources.size(), 1u);
  EXPECT_EQ(same.kinds.rotary_inv_freq, base.kinds.rotary_inv_freq);
  EXPECT_EQ(windows(same), windows(base));
  EXPECT_EQ(same.config.num_experts, base.config.num_experts);
  EXPECT_EQ(same.kinds.swiglu_limit, base.kinds.swiglu_limit);
}

// llama.cpp's "gpt-oss" GGUF (make_gpt_oss_gguf.py: the converter's own output) describes
// the model config.json does: the same shapes, windows (gpt-oss.attention.sliding_window on
// the even layers), sinks, clamped SwiGLU and YaRN frequencies, which follow transformers
// (the ramp not truncated), and llama.cpp's tensor names with the biases.
TEST(GgufGptOss, MetadataMatchesTheHfDescription) {
  for (const char* name : {"tiny-gpt-oss", "tiny-gpt-oss-mxfp4"}) {
    SCOPED_TRACE(name);
    const Architecture gguf = describe_gguf(testing::fixture_dir() / (std::string(name) + ".gguf"));
    const Architecture hf = describe(fixture_config(name));
    EXPECT_EQ(gguf.name, "gpt_oss");
    EXPECT_EQ(gguf.config.architecture, "gpt_oss");
    for (auto field : {&ModelConfig::hidden_size, &ModelConfig::num_layers, &ModelConfig::num_heads,
                       &ModelConfig::num_kv_heads, &ModelConfig::head_dim, &ModelConfig::max_positions,
                       &ModelConfig::num_experts, &ModelConfig::experts_per_token, &ModelConfig::expert_ffn_size})
      EXPECT_EQ(gguf.config.*field, hf.config.*field);
    EXPECT_FALSE(gguf.config.tied_embeddings);
    EXPECT_TRUE(gguf.kinds.normalize_top_k);
    EXPECT_EQ(gguf.kinds.sparse_layers, hf.kinds.sparse_layers);
    EXPECT_TRUE(gguf.kinds.attention_sinks);
    EXPECT_EQ(gguf.kinds.swiglu_limit, hf.kinds.swiglu_limit);
    EXPECT_EQ(gguf.kinds.swiglu_alpha, hf.kinds.swiglu_alpha);
    EXPECT_EQ(gguf.kinds.rotary_style, RotaryStyle::neox);
    EXPECT_EQ(windows(gguf), (std::vector<int>{8, 0}));
    EXPECT_EQ(gguf.kinds.rotary_inv_freq, hf.kinds.rotary_inv_freq);
    EXPECT_FLOAT_EQ(gguf.kinds.rotary_attention_factor, hf.kinds.rotary_attention_factor);
    EXPECT_EQ(gguf.recipe(WeightSlot::attn_sinks, 1).sources.at(0), "blk.1.attn_sinks.weight");
    EXPECT_EQ(gguf.recipe(WeightSlot::ffn_norm_weight, 1).sources.at(0), "blk.1.post_attention_norm.weight");
    EXPECT_EQ(gguf.recipe(WeightSlot::router_bias, 1).sources.at(0), "blk.1.ffn_gate_inp.bias");
    EXPECT_EQ(gguf.recipe(WeightSlot::out_bias, 0).sources.at(0), "blk.0.attn_output.bias");
    EXPECT_EQ(gguf.expert_recipe(WeightSlot::expert_up_bias, 1, 5).sources,
              (std::vector<std::string>{"blk.1.ffn_gate_exps.bias#5", "blk.1.ffn_up_exps.bias#5"}));
    EXPECT_EQ(gguf.expert_recipe(WeightSlot::expert_down_bias, 0, 2).sources,
              std::vector<std::string>{"blk.0.ffn_down_exps.bias#2"});
  }
}

std::filesystem::path edited(testing::GgufEditor& editor, const std::string& name) {
  const std::filesystem::path path = testing::temp_dir("gpt_oss_config") / name;
  editor.write(path);
  return path;
}

// Truncating the ramp as ggml does would move the frequencies of the pairs inside it.
TEST(GgufGptOss, YarnIsNotTruncated) {
  LayerKinds truncated;
  truncated.rotary_inv_freq = rope_inv_freq(10000.0, 16);
  apply_yarn(10000.0, 4.0, 64, 32.0, 1.0, 1.0, truncated, /*truncate=*/true);
  EXPECT_NE(describe_gguf(testing::fixture_dir() / "tiny-gpt-oss.gguf").kinds.rotary_inv_freq,
            truncated.rotary_inv_freq);
}

TEST(GgufGptOss, BadMetadataIsNamed) {
  const std::filesystem::path fixture = testing::fixture_dir() / "tiny-gpt-oss.gguf";
  testing::GgufEditor window(fixture);
  window.erase("gpt-oss.attention.sliding_window");
  expect_gguf_refused(edited(window, "no_window.gguf"), ErrorCategory::format, {"gpt-oss.attention.sliding_window"});
  testing::GgufEditor zero(fixture);
  zero.set("gpt-oss.attention.sliding_window", uint32_t{0});
  expect_gguf_refused(edited(zero, "zero_window.gguf"), ErrorCategory::format, {"gpt-oss.attention.sliding_window"});
  testing::GgufEditor linear(fixture);
  linear.set("gpt-oss.rope.scaling.type", std::string("linear"));
  expect_gguf_refused(edited(linear, "linear.gguf"), ErrorCategory::unsupported, {"gpt-oss.rope.scaling.type", "linear"});
  testing::GgufEditor factor(fixture);
  factor.erase("gpt-oss.rope.scaling.factor");
  expect_gguf_refused(edited(factor, "no_factor.gguf"), ErrorCategory::format, {"gpt-oss.rope.scaling.factor"});
  testing::GgufEditor experts(fixture);
  experts.erase("gpt-oss.expert_used_count");
  expect_gguf_refused(edited(experts, "no_used.gguf"), ErrorCategory::format, {"gpt-oss.expert_used_count"});
}

// A stacked expert bias the file lacks is named when the model loads.
TEST(GgufGptOss, MissingExpertBiasIsNamedAtLoad) {
  testing::GgufEditor editor(testing::fixture_dir() / "tiny-gpt-oss.gguf");
  editor.drop_tensor("blk.1.ffn_up_exps.bias");
  const std::filesystem::path path = edited(editor, "no_up_bias.gguf");
  try {
    Model::load(path);
    ADD_FAILURE() << "loaded without blk.1.ffn_up_exps.bias";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::format) << e.what();
    EXPECT_NE(e.message().find("blk.1.ffn_up_exps.bias"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kestrel
