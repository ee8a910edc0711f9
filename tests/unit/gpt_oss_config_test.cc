// The config audit (docs/MODELS.md) of GptOssConfig (the transformers version
// tests/fixtures/make_tiny_gpt_oss.py names): every key that changes the computation is read
// into the description or refused with an error naming it; the training-only keys change
// nothing. The configs are the fixture's config.json with one key changed.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "models/architecture.h"
#include "models/rope.h"
#include "config_audit_support.h"
#include "test_support.h"

namespace kestrel {
namespace {

using nlohmann::json;
using testing::describe;
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

}  // namespace
}  // namespace kestrel
