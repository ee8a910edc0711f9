// The config audit (docs/MODELS.md) of Qwen3MoeConfig, GraniteConfig and GraniteMoeConfig
// (transformers 4.51.3), and of their GGUF metadata (llama.cpp's "qwen3moe", "granite" and
// "granitemoe"): every key that
// changes the computation is read into the description or refused with an error naming it;
// the training-only keys change nothing. The configs are the fixtures' config.json files
// (tests/fixtures/make_tiny_granite_qwen3_moe.py) with one key changed; the GGUF files are
// the fixtures' with one metadata key edited.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gguf_editor.h"
#include "kestrel/error.h"
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

std::filesystem::path edited(testing::GgufEditor& editor, const std::string& name) {
  const std::filesystem::path path = testing::temp_dir("granite_qwen3_moe_config") / name;
  editor.write(path);
  return path;
}

std::vector<bool> sparse_layers(const json& config) { return describe(config).kinds.sparse_layers; }

TEST(ConfigAuditQwen3Moe, DescriptionFollowsTheConfig) {
  const Architecture arch = describe(fixture_config("tiny-qwen3-moe"));
  EXPECT_EQ(arch.name, "qwen3_moe");
  EXPECT_EQ(arch.config.architecture, "qwen3_moe");
  EXPECT_EQ(arch.config.head_dim, 16);
  EXPECT_TRUE(arch.kinds.qk_norm);
  EXPECT_EQ(arch.config.num_experts, 6);
  EXPECT_EQ(arch.config.experts_per_token, 2);
  EXPECT_EQ(arch.config.expert_ffn_size, 24);
  EXPECT_EQ(arch.config.shared_expert_ffn_size, 0);
  EXPECT_TRUE(arch.kinds.normalize_top_k);
  EXPECT_EQ(arch.kinds.sparse_layers, (std::vector<bool>{true, true}));
  EXPECT_EQ(arch.recipe(WeightSlot::router_weight, 1).sources.at(0), "model.layers.1.mlp.gate.weight");
  EXPECT_TRUE(arch.recipe(WeightSlot::shared_up_weight, 1).sources.empty());
  EXPECT_TRUE(arch.recipe(WeightSlot::shared_gate_weight, 1).sources.empty());
  EXPECT_TRUE(arch.recipe(WeightSlot::up_weight, 1).sources.empty());
  EXPECT_EQ(arch.expert_recipe(WeightSlot::expert_up_weight, 0, 5).sources,
            (std::vector<std::string>{"model.layers.0.mlp.experts.5.gate_proj.weight",
                                      "model.layers.0.mlp.experts.5.up_proj.weight"}));
  EXPECT_EQ(arch.recipe(WeightSlot::k_norm_weight, 1).sources.at(0), "model.layers.1.self_attn.k_norm.weight");
  EXPECT_TRUE(arch.recipe(WeightSlot::qkv_bias, 0).sources.empty());
}

// decoder_sparse_step and mlp_only_layers pick the sparse layers as Qwen3MoeDecoderLayer
// does; a dense layer keeps its intermediate_size FFN; norm_topk_prob defaults to false.
TEST(ConfigAuditQwen3Moe, SparseLayersAndTopKNormalization) {
  json config = fixture_config("tiny-qwen3-moe");
  config["num_hidden_layers"] = 4;
  config["decoder_sparse_step"] = 2;
  EXPECT_EQ(sparse_layers(config), (std::vector<bool>{false, true, false, true}));
  config["mlp_only_layers"] = json::array({3});
  const Architecture arch = describe(config);
  EXPECT_EQ(arch.kinds.sparse_layers, (std::vector<bool>{false, true, false, false}));
  EXPECT_EQ(arch.recipe(WeightSlot::up_weight, 3).sources.at(0), "model.layers.3.mlp.gate_proj.weight");
  EXPECT_EQ(canonical_shape(arch, WeightSlot::down_weight), (std::vector<int64_t>{32, 48}));
  EXPECT_TRUE(arch.recipe(WeightSlot::router_weight, 3).sources.empty());
  config["mlp_only_layers"] = json::array({1, 3});  // no sparse layer left: a dense model
  const Architecture dense = describe(config);
  EXPECT_EQ(dense.config.num_experts, 0);
  EXPECT_TRUE(dense.kinds.sparse_layers.empty());
  config = fixture_config("tiny-qwen3-moe");
  config.erase("norm_topk_prob");
  EXPECT_FALSE(describe(config).kinds.normalize_top_k);
  config.erase("num_experts");  // Qwen3MoeConfig's defaults
  config.erase("num_experts_per_tok");
  config.erase("moe_intermediate_size");
  const Architecture defaults = describe(config);
  EXPECT_EQ(defaults.config.num_experts, 128);
  EXPECT_EQ(defaults.config.experts_per_token, 8);
  EXPECT_EQ(defaults.config.expert_ffn_size, 768);
}

TEST(ConfigAuditQwen3Moe, RefusedKeysAreNamed) {
  json config = fixture_config("tiny-qwen3-moe");
  config["use_sliding_window"] = true;
  expect_refused(config, ErrorCategory::unsupported, {"use_sliding_window"});
  config = fixture_config("tiny-qwen3-moe");
  config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling", "yarn"});
  config = fixture_config("tiny-qwen3-moe");
  config["num_experts_per_tok"] = 7;
  expect_refused(config, ErrorCategory::format, {"experts_per_token"});
  config = fixture_config("tiny-qwen3-moe");
  config["mlp_only_layers"] = json::array({2});
  expect_refused(config, ErrorCategory::format, {"mlp_only_layers"});
  config = fixture_config("tiny-qwen3-moe");
  config["decoder_sparse_step"] = 0;
  expect_refused(config, ErrorCategory::format, {"decoder_sparse_step"});
  config = fixture_config("tiny-qwen3-moe");
  config["hidden_act"] = "gelu";
  expect_refused(config, ErrorCategory::unsupported, {"hidden_act"});
}

// Training-only keys (the router's auxiliary loss) and the window keys that only matter with
// use_sliding_window leave the description as it is; a linear rope scaling is Qwen3's.
TEST(ConfigAuditQwen3Moe, MathNeutralKeysAndRopeScaling) {
  const Architecture base = describe(fixture_config("tiny-qwen3-moe"));
  json config = fixture_config("tiny-qwen3-moe");
  config["router_aux_loss_coef"] = 0.5;
  config["output_router_logits"] = true;
  config["sliding_window"] = 4;
  config["max_window_layers"] = 1;
  const Architecture same = describe(config);
  EXPECT_EQ(same.kinds.sparse_layers, base.kinds.sparse_layers);
  EXPECT_EQ(same.kinds.rotary_inv_freq, base.kinds.rotary_inv_freq);
  EXPECT_EQ(layer_sliding_window(same.kinds, 1), 0);
  config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  std::vector<float> want = rope_inv_freq(1e6, 16);
  for (float& f : want) f /= 2.0f;
  EXPECT_EQ(describe(config).kinds.rotary_inv_freq, want);
}

TEST(GgufQwen3Moe, MetadataMatchesTheHfDescription) {
  const Architecture gguf = describe_gguf(testing::fixture_dir() / "tiny-qwen3-moe.gguf");
  const Architecture hf = describe(fixture_config("tiny-qwen3-moe"));
  EXPECT_EQ(gguf.name, "qwen3_moe");
  EXPECT_TRUE(gguf.kinds.qk_norm);
  EXPECT_EQ(gguf.config.head_dim, hf.config.head_dim);
  EXPECT_EQ(gguf.config.num_experts, hf.config.num_experts);
  EXPECT_EQ(gguf.config.experts_per_token, hf.config.experts_per_token);
  EXPECT_EQ(gguf.config.expert_ffn_size, hf.config.expert_ffn_size);
  EXPECT_EQ(gguf.config.shared_expert_ffn_size, 0);
  EXPECT_TRUE(gguf.kinds.normalize_top_k);  // llama.cpp's qwen3moe always renormalizes
  EXPECT_EQ(gguf.kinds.sparse_layers, hf.kinds.sparse_layers);
  EXPECT_EQ(gguf.kinds.rotary_style, RotaryStyle::neox);
  EXPECT_EQ(gguf.kinds.rotary_inv_freq, hf.kinds.rotary_inv_freq);
  EXPECT_TRUE(gguf.recipe(WeightSlot::shared_up_weight, 0).sources.empty());
}

TEST(GgufQwen3Moe, BadMetadataIsNamed) {
  testing::GgufEditor yarn(testing::fixture_dir() / "tiny-qwen3-moe.gguf");
  yarn.set("qwen3moe.rope.scaling.type", std::string("yarn"));
  expect_gguf_refused(edited(yarn, "yarn.gguf"), ErrorCategory::unsupported, {"qwen3moe.rope.scaling.type"});
  testing::GgufEditor used(testing::fixture_dir() / "tiny-qwen3-moe.gguf");
  used.erase("qwen3moe.expert_used_count");
  expect_gguf_refused(edited(used, "no_used.gguf"), ErrorCategory::format, {"qwen3moe.expert_used_count"});
}

TEST(ConfigAuditGranite, DescriptionFollowsTheConfig) {
  const Architecture arch = describe(fixture_config("tiny-granite"));
  EXPECT_EQ(arch.name, "granite");
  EXPECT_EQ(arch.config.head_dim, 8);
  EXPECT_TRUE(arch.config.tied_embeddings);
  EXPECT_FLOAT_EQ(arch.kinds.embedding_multiplier, 3.0f);
  EXPECT_FLOAT_EQ(arch.kinds.residual_multiplier, 0.7f);
  EXPECT_FLOAT_EQ(arch.kinds.attention_multiplier, 0.25f);
  EXPECT_FLOAT_EQ(arch.kinds.logits_scaling, 2.0f);
  EXPECT_FLOAT_EQ(attention_scale(arch, 1), 0.25f);  // in place of 8^-1/2
  // The biases of the block outputs join the residual scaled, the others as stored.
  EXPECT_FLOAT_EQ(arch.recipe(WeightSlot::out_bias, 1).scale, 0.7f);
  EXPECT_FLOAT_EQ(arch.recipe(WeightSlot::down_bias, 0).scale, 0.7f);
  EXPECT_FLOAT_EQ(arch.recipe(WeightSlot::qkv_bias, 0).scale, 1.0f);
  EXPECT_FLOAT_EQ(arch.recipe(WeightSlot::up_bias, 0).scale, 1.0f);
  EXPECT_FLOAT_EQ(arch.recipe(WeightSlot::out_weight, 0).scale, 1.0f);
  EXPECT_EQ(arch.recipe(WeightSlot::lm_head, -1).sources.at(0), "model.embed_tokens.weight");
  EXPECT_EQ(arch.recipe(WeightSlot::down_bias, 1).sources.at(0), "model.layers.1.mlp.down_proj.bias");
}

// GraniteConfig's defaults are all 1.0: attention_multiplier 1 is a softmax scale of 1.
TEST(ConfigAuditGranite, DefaultsAndLlamaKeys) {
  json config = fixture_config("tiny-granite");
  for (const char* key : {"embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling"})
    config.erase(key);
  config["attention_bias"] = false;
  config["mlp_bias"] = false;
  const Architecture arch = describe(config);
  EXPECT_FLOAT_EQ(arch.kinds.embedding_multiplier, 1.0f);
  EXPECT_FLOAT_EQ(arch.kinds.residual_multiplier, 1.0f);
  EXPECT_FLOAT_EQ(attention_scale(arch, 0), 1.0f);
  EXPECT_FLOAT_EQ(arch.kinds.logits_scaling, 1.0f);
  EXPECT_TRUE(arch.recipe(WeightSlot::out_bias, 0).sources.empty());
  EXPECT_TRUE(arch.recipe(WeightSlot::up_bias, 0).sources.empty());
  config = fixture_config("tiny-granite");
  config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 4.0}};
  std::vector<float> want = rope_inv_freq(10000.0, 8);
  for (float& f : want) f /= 4.0f;
  EXPECT_EQ(describe(config).kinds.rotary_inv_freq, want);
  config = fixture_config("tiny-granite");
  config["head_dim"] = 16;  // transformers' GraniteAttention honours it (getattr)
  EXPECT_EQ(describe(config).config.head_dim, 16);
}

TEST(ConfigAuditGranite, RefusedKeysAreNamed) {
  for (const char* key : {"logits_scaling", "attention_multiplier"}) {
    json config = fixture_config("tiny-granite");
    config[key] = 0.0;
    expect_refused(config, ErrorCategory::format, {key});
    config[key] = -1.0;
    expect_refused(config, ErrorCategory::format, {key});
  }
  for (const char* key : {"embedding_multiplier", "residual_multiplier"}) {
    json config = fixture_config("tiny-granite");
    config[key] = 0.0;
    expect_refused(config, ErrorCategory::format, {key});
  }
  json config = fixture_config("tiny-granite");
  config["hidden_act"] = "gelu";
  expect_refused(config, ErrorCategory::unsupported, {"hidden_act"});
  config = fixture_config("tiny-granite");
  config["rope_scaling"] = {{"rope_type", "mrope"}, {"factor", 2.0}};
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling"});
}

TEST(GgufGranite, MetadataMatchesTheHfDescription) {
  const Architecture gguf = describe_gguf(testing::fixture_dir() / "tiny-granite.gguf");
  const Architecture hf = describe(fixture_config("tiny-granite"));
  EXPECT_EQ(gguf.name, "granite");
  EXPECT_EQ(gguf.kinds.rotary_style, RotaryStyle::gptj);  // Q / K rows permuted as for Llama
  EXPECT_EQ(gguf.kinds.rotary_inv_freq, hf.kinds.rotary_inv_freq);
  EXPECT_FLOAT_EQ(gguf.kinds.embedding_multiplier, hf.kinds.embedding_multiplier);
  EXPECT_FLOAT_EQ(gguf.kinds.residual_multiplier, hf.kinds.residual_multiplier);
  EXPECT_FLOAT_EQ(attention_scale(gguf, 0), attention_scale(hf, 0));
  EXPECT_FLOAT_EQ(gguf.kinds.logits_scaling, hf.kinds.logits_scaling);
  EXPECT_FLOAT_EQ(gguf.recipe(WeightSlot::out_bias, 0).scale, 0.7f);
  EXPECT_FLOAT_EQ(gguf.recipe(WeightSlot::down_bias, 1).scale, 0.7f);
  EXPECT_EQ(gguf.recipe(WeightSlot::lm_head, -1).sources.at(0), "token_embd.weight");
}

// llama.cpp's meaning of an absent (or 0) key: no scaling; the attention scale head_dim^-1/2.
TEST(GgufGranite, AbsentScalesMeanNone) {
  testing::GgufEditor editor(testing::fixture_dir() / "tiny-granite.gguf");
  for (const char* key : {"granite.embedding_scale", "granite.residual_scale", "granite.attention.scale"})
    editor.erase(key);
  editor.set("granite.logit_scale", 0.0f);
  const Architecture arch = describe_gguf(edited(editor, "no_scales.gguf"));
  EXPECT_FLOAT_EQ(arch.kinds.embedding_multiplier, 1.0f);
  EXPECT_FLOAT_EQ(arch.kinds.residual_multiplier, 1.0f);
  EXPECT_FLOAT_EQ(attention_scale(arch, 0), 1.0f / std::sqrt(8.0f));
  EXPECT_FLOAT_EQ(arch.kinds.logits_scaling, 1.0f);
  EXPECT_FLOAT_EQ(arch.recipe(WeightSlot::out_bias, 0).scale, 1.0f);
}

TEST(GgufGranite, BadMetadataIsNamed) {
  testing::GgufEditor logit(testing::fixture_dir() / "tiny-granite.gguf");
  logit.set("granite.logit_scale", -2.0f);
  expect_gguf_refused(edited(logit, "logit.gguf"), ErrorCategory::format, {"granite.logit_scale"});
  testing::GgufEditor rope(testing::fixture_dir() / "tiny-granite.gguf");
  rope.set("granite.rope.scaling.type", std::string("longrope"));
  expect_gguf_refused(edited(rope, "rope.gguf"), ErrorCategory::unsupported, {"granite.rope.scaling.type"});
  testing::GgufEditor norope(testing::fixture_dir() / "tiny-granite.gguf");
  norope.set("granite.rope.scaling.finetuned", false);
  expect_gguf_refused(edited(norope, "norope.gguf"), ErrorCategory::unsupported, {"granite.rope.scaling.finetuned"});
}

// GraniteMoeConfig: Granite's multipliers, every layer sparse with top-k renormalized,
// experts as row blocks of the stacked input_linear / output_linear; head_dim and mlp_bias
// ignored as GraniteMoeAttention and its bias-free experts ignore them.
TEST(ConfigAuditGraniteMoe, DescriptionFollowsTheConfig) {
  json config = fixture_config("tiny-granitemoe");
  const Architecture arch = describe(config);
  EXPECT_EQ(arch.name, "granitemoe");
  EXPECT_EQ(arch.config.num_experts, 6);
  EXPECT_EQ(arch.config.experts_per_token, 2);
  EXPECT_EQ(arch.config.expert_ffn_size, 24);
  EXPECT_TRUE(arch.kinds.normalize_top_k);
  EXPECT_EQ(arch.kinds.sparse_layers, (std::vector<bool>{true, true}));
  EXPECT_FLOAT_EQ(arch.kinds.residual_multiplier, 0.7f);
  EXPECT_FLOAT_EQ(attention_scale(arch, 0), 0.25f);
  EXPECT_FLOAT_EQ(arch.recipe(WeightSlot::out_bias, 1).scale, 0.7f);
  EXPECT_EQ(arch.recipe(WeightSlot::router_weight, 1).sources.at(0), "model.layers.1.block_sparse_moe.router.layer.weight");
  EXPECT_EQ(arch.expert_recipe(WeightSlot::expert_up_weight, 0, 4).sources,
            (std::vector<std::string>{"model.layers.0.block_sparse_moe.input_linear.weight#4"}));
  EXPECT_EQ(arch.expert_recipe(WeightSlot::expert_down_weight, 1, 0).sources,
            (std::vector<std::string>{"model.layers.1.block_sparse_moe.output_linear.weight#0"}));
  config["head_dim"] = 16;
  config["mlp_bias"] = true;
  const Architecture ignored = describe(config);
  EXPECT_EQ(ignored.config.head_dim, 8);
  EXPECT_TRUE(ignored.recipe(WeightSlot::down_bias, 0).sources.empty());
  config = fixture_config("tiny-granitemoe");
  config["num_experts_per_tok"] = 7;
  expect_refused(config, ErrorCategory::format, {"experts_per_token"});
  config = fixture_config("tiny-granitemoe");
  config["logits_scaling"] = 0.0;
  expect_refused(config, ErrorCategory::format, {"logits_scaling"});
}

TEST(GgufGraniteMoe, MetadataMatchesTheHfDescription) {
  const Architecture gguf = describe_gguf(testing::fixture_dir() / "tiny-granitemoe.gguf");
  const Architecture hf = describe(fixture_config("tiny-granitemoe"));
  EXPECT_EQ(gguf.name, "granitemoe");
  EXPECT_EQ(gguf.config.num_experts, hf.config.num_experts);
  EXPECT_EQ(gguf.config.experts_per_token, hf.config.experts_per_token);
  EXPECT_EQ(gguf.config.expert_ffn_size, hf.config.expert_ffn_size);
  EXPECT_TRUE(gguf.kinds.normalize_top_k);
  EXPECT_EQ(gguf.kinds.sparse_layers, hf.kinds.sparse_layers);
  EXPECT_FLOAT_EQ(gguf.kinds.embedding_multiplier, hf.kinds.embedding_multiplier);
  EXPECT_FLOAT_EQ(attention_scale(gguf, 1), attention_scale(hf, 1));
  EXPECT_FLOAT_EQ(gguf.kinds.logits_scaling, hf.kinds.logits_scaling);
  EXPECT_FLOAT_EQ(gguf.recipe(WeightSlot::out_bias, 0).scale, 0.7f);
  testing::GgufEditor shared(testing::fixture_dir() / "tiny-granitemoe.gguf");
  shared.set("granitemoe.expert_shared_feed_forward_length", uint32_t{48});
  expect_gguf_refused(edited(shared, "shared.gguf"), ErrorCategory::unsupported,
                      {"granitemoe.expert_shared_feed_forward_length"});
  testing::GgufEditor logit(testing::fixture_dir() / "tiny-granitemoe.gguf");
  logit.set("granitemoe.logit_scale", -1.0f);
  expect_gguf_refused(edited(logit, "moe_logit.gguf"), ErrorCategory::format, {"granitemoe.logit_scale"});
}

}  // namespace
}  // namespace kestrel
