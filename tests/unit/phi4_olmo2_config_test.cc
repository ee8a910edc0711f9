// The config audit (docs/MODELS.md) of Phi-4-mini's Phi3Config (partial_rotary_factor with
// LongRoPE, tied head) and of Olmo2Config (transformers 4.51.3), and of their GGUF metadata
// (llama.cpp's "phi3" with phi3.rope.dimension_count, "olmo2"): every key that changes the
// computation is read into the description or refused with an error naming it. The configs
// are the fixtures' config.json files (tests/fixtures/make_tiny_phi4_olmo2.py) with one key
// changed; the GGUF files are the fixtures' with one metadata key edited.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "config_audit_support.h"
#include "gguf_editor.h"
#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "models/architecture.h"
#include "models/rope.h"
#include "test_support.h"

namespace kestrel {
namespace {

using nlohmann::json;
using testing::describe;
using testing::describe_gguf;
using testing::expect_gguf_refused;
using testing::expect_refused;
using testing::fixture_config;

std::filesystem::path edited(testing::GgufEditor& editor, const std::string& name) {
  const std::filesystem::path path = testing::temp_dir("phi4_olmo2_config") / name;
  editor.write(path);
  return path;
}

// LongRoPE's attention factor of the fixture: max 64 over an original 16 positions.
const float kAttentionFactor = static_cast<float>(std::sqrt(1.0 + std::log(4.0) / std::log(16.0)));

// partial_rotary_factor 0.75 of head_dim 16: 12 dims (6 pairs) rotate with rope_theta's
// frequencies over 12 dims, the short / long factors divide them; the attention factor goes
// to the cos and sin of those dims, not to the softmax scale; the head is tied.
TEST(ConfigAuditPhi4Mini, PartialRotaryLongRopeAndTiedHead) {
  const Architecture arch = describe(fixture_config("tiny-phi4-mini"));
  EXPECT_EQ(arch.name, "phi3");
  EXPECT_EQ(arch.config.head_dim, 16);
  EXPECT_EQ(arch.kinds.rotary_dim, 12);
  EXPECT_EQ(arch.kinds.rotary_style, RotaryStyle::neox);
  const std::vector<float> plain = rope_inv_freq(10000.0, 12);
  ASSERT_EQ(arch.kinds.rotary_inv_freq.size(), 6u);
  ASSERT_EQ(arch.kinds.rotary_context.long_inv_freq.size(), 6u);
  for (size_t j = 0; j < 6; ++j) {  // short_factor[j] = 1 + 0.25 j, long_factor[j] = 1 + 1.5 j
    EXPECT_NEAR(arch.kinds.rotary_inv_freq[j], plain[j] / (1.0f + 0.25f * j), 1e-6f * plain[j]) << j;
    EXPECT_NEAR(arch.kinds.rotary_context.long_inv_freq[j], plain[j] / (1.0f + 1.5f * j), 1e-6f * plain[j]) << j;
  }
  EXPECT_EQ(arch.kinds.rotary_context.original, 16);
  EXPECT_NEAR(rotary_cos_sin_scale(arch), kAttentionFactor, 1e-6f);
  EXPECT_FLOAT_EQ(attention_scale(arch, 0), 0.25f);  // 16^-1/2, the factor not folded in
  EXPECT_TRUE(arch.config.tied_embeddings);
  EXPECT_EQ(arch.recipe(WeightSlot::lm_head, -1).sources.at(0), "model.embed_tokens.weight");
  // The whole head rotating (Phi-3): the factor is folded into the softmax scale instead.
  json full = fixture_config("tiny-phi3");
  const Architecture phi3 = describe(full);
  EXPECT_FLOAT_EQ(rotary_cos_sin_scale(phi3), 1.0f);
  EXPECT_NEAR(attention_scale(phi3, 0), 0.25f * kAttentionFactor * kAttentionFactor, 1e-6f);
}

TEST(ConfigAuditPhi4Mini, RefusedKeysAreNamed) {
  json config = fixture_config("tiny-phi4-mini");
  config["partial_rotary_factor"] = 0.3125;  // 5 dims: no whole pairs
  expect_refused(config, ErrorCategory::format, {"partial_rotary_factor"});
  config["partial_rotary_factor"] = 1.5;
  expect_refused(config, ErrorCategory::format, {"partial_rotary_factor"});
  config = fixture_config("tiny-phi4-mini");
  config["lm_head_bias"] = true;
  expect_refused(config, ErrorCategory::unsupported, {"lm_head_bias"});
  config = fixture_config("tiny-phi4-mini");
  config["rope_scaling"]["short_factor"].push_back(1.0);  // 7 factors for 6 pairs
  expect_refused(config, ErrorCategory::format, {"short_factor", "rotary dimensions / 2"});
  config = fixture_config("tiny-phi4-mini");
  config["rope_scaling"]["attention_factor"] = 1.5;  // read by later versions only
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling.attention_factor"});
}

// llama.cpp's converter: phi3.rope.dimension_count 12, the factors as rope_factors_short /
// _long of 6 values, attn_factor, no output.weight (tied): the same description.
TEST(ConfigAuditPhi4Mini, GgufMatchesTheConfig) {
  const Architecture hf = describe(fixture_config("tiny-phi4-mini"));
  const Architecture gguf = describe_gguf(testing::fixture_dir() / "tiny-phi4-mini.gguf");
  EXPECT_EQ(gguf.kinds.rotary_dim, 12);
  ASSERT_EQ(gguf.kinds.rotary_inv_freq.size(), 6u);
  for (size_t j = 0; j < 6; ++j) {
    EXPECT_NEAR(gguf.kinds.rotary_inv_freq[j], hf.kinds.rotary_inv_freq[j], 1e-6f * hf.kinds.rotary_inv_freq[j]);
    EXPECT_NEAR(gguf.kinds.rotary_context.long_inv_freq[j], hf.kinds.rotary_context.long_inv_freq[j],
                1e-6f * hf.kinds.rotary_context.long_inv_freq[j]);
  }
  EXPECT_NEAR(rotary_cos_sin_scale(gguf), kAttentionFactor, 1e-6f);
  EXPECT_TRUE(gguf.config.tied_embeddings);
  testing::GgufEditor odd(testing::fixture_dir() / "tiny-phi4-mini.gguf");
  odd.set("phi3.rope.dimension_count", uint32_t{18});
  expect_gguf_refused(edited(odd, "wide.gguf"), ErrorCategory::format, {"phi3.rope.dimension_count"});
}

TEST(ConfigAuditOlmo2, DescriptionFollowsTheConfig) {
  const Architecture arch = describe(fixture_config("tiny-olmo2"));
  EXPECT_EQ(arch.name, "olmo2");
  EXPECT_EQ(arch.config.architecture, "olmo2");
  EXPECT_FALSE(arch.kinds.pre_norms);
  EXPECT_TRUE(arch.kinds.post_norms);
  EXPECT_TRUE(arch.kinds.qk_norm);
  EXPECT_TRUE(arch.kinds.qk_norm_over_heads);
  EXPECT_EQ(arch.kinds.norm, NormKind::rms_norm);
  EXPECT_EQ(arch.kinds.rotary_style, RotaryStyle::neox);
  EXPECT_EQ(arch.kinds.rotary_dim, 8);
  EXPECT_FLOAT_EQ(arch.config.norm_eps, 1e-6f);
  EXPECT_FALSE(arch.config.tied_embeddings);
  EXPECT_EQ(canonical_shape(arch, WeightSlot::q_norm_weight), (std::vector<int64_t>{32}));  // 4 heads x 8
  EXPECT_EQ(canonical_shape(arch, WeightSlot::k_norm_weight), (std::vector<int64_t>{16}));  // 2 KV heads x 8
  EXPECT_TRUE(arch.recipe(WeightSlot::attn_norm_weight, 1).sources.empty());
  EXPECT_TRUE(arch.recipe(WeightSlot::ffn_norm_weight, 1).sources.empty());
  EXPECT_EQ(arch.recipe(WeightSlot::post_attn_norm_weight, 1).sources.at(0),
            "model.layers.1.post_attention_layernorm.weight");
  EXPECT_EQ(arch.recipe(WeightSlot::post_ffn_norm_weight, 1).sources.at(0),
            "model.layers.1.post_feedforward_layernorm.weight");
  EXPECT_EQ(arch.recipe(WeightSlot::q_norm_weight, 0).sources.at(0), "model.layers.0.self_attn.q_norm.weight");
  EXPECT_EQ(arch.recipe(WeightSlot::k_norm_weight, 0).sources.at(0), "model.layers.0.self_attn.k_norm.weight");
  EXPECT_TRUE(arch.recipe(WeightSlot::qkv_bias, 0).sources.empty());
  EXPECT_EQ(arch.recipe(WeightSlot::lm_head, -1).sources.at(0), "lm_head.weight");
  // Llama's keys: attention_bias, tie_word_embeddings, rope_scaling.
  json config = fixture_config("tiny-olmo2");
  config["attention_bias"] = true;
  config["tie_word_embeddings"] = true;
  config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  const Architecture variant = describe(config);
  EXPECT_EQ(variant.recipe(WeightSlot::qkv_bias, 0).sources.size(), 3u);
  EXPECT_EQ(variant.recipe(WeightSlot::out_bias, 0).sources.at(0), "model.layers.0.self_attn.o_proj.bias");
  EXPECT_EQ(variant.recipe(WeightSlot::lm_head, -1).sources.at(0), "model.embed_tokens.weight");
  EXPECT_FLOAT_EQ(variant.kinds.rotary_inv_freq.at(1), arch.kinds.rotary_inv_freq.at(1) / 2.0f);
}

TEST(ConfigAuditOlmo2, RefusedKeysAreNamed) {
  json config = fixture_config("tiny-olmo2");
  config["mlp_bias"] = true;
  expect_refused(config, ErrorCategory::unsupported, {"mlp_bias"});
  config = fixture_config("tiny-olmo2");
  config["clip_qkv"] = 8.0;
  expect_refused(config, ErrorCategory::unsupported, {"clip_qkv"});
  config = fixture_config("tiny-olmo2");
  config["hidden_act"] = "gelu";
  expect_refused(config, ErrorCategory::unsupported, {"hidden_act"});
  config = fixture_config("tiny-olmo2");
  config["rope_scaling"] = {{"rope_type", "longrope"}};
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling", "longrope"});
}

TEST(ConfigAuditOlmo2, GgufMatchesTheConfig) {
  const Architecture hf = describe(fixture_config("tiny-olmo2"));
  const Architecture gguf = describe_gguf(testing::fixture_dir() / "tiny-olmo2.gguf");
  EXPECT_EQ(gguf.name, "olmo2");
  EXPECT_FALSE(gguf.kinds.pre_norms);
  EXPECT_TRUE(gguf.kinds.qk_norm_over_heads);
  EXPECT_EQ(gguf.kinds.rotary_style, RotaryStyle::neox);
  EXPECT_EQ(gguf.kinds.rotary_inv_freq, hf.kinds.rotary_inv_freq);
  EXPECT_FLOAT_EQ(gguf.config.norm_eps, hf.config.norm_eps);
  EXPECT_EQ(gguf.config.num_kv_heads, 2);
  EXPECT_EQ(gguf.recipe(WeightSlot::post_attn_norm_weight, 1).sources.at(0), "blk.1.post_attention_norm.weight");
  EXPECT_EQ(gguf.recipe(WeightSlot::post_ffn_norm_weight, 1).sources.at(0), "blk.1.post_ffw_norm.weight");
  EXPECT_EQ(gguf.recipe(WeightSlot::q_norm_weight, 1).sources.at(0), "blk.1.attn_q_norm.weight");
  EXPECT_TRUE(gguf.recipe(WeightSlot::attn_norm_weight, 1).sources.empty());
  testing::GgufEditor rope(testing::fixture_dir() / "tiny-olmo2.gguf");
  rope.set("olmo2.rope.scaling.type", std::string("yarn"));
  expect_gguf_refused(edited(rope, "yarn.gguf"), ErrorCategory::unsupported, {"olmo2.rope.scaling.type"});
}

}  // namespace
}  // namespace kestrel
