// The config audit (docs/MODELS.md): every key of a supported model_type's transformers
// config class that changes the computation is implemented or refused with an error naming
// it. One test per refused key, and the accepted keys' effect on the description. The
// configs are the fixtures' config.json files with one key changed.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "models/architecture.h"
#include "config_audit_support.h"
#include "test_support.h"

namespace kestrel {
namespace {

using nlohmann::json;
using testing::describe;
using testing::fixture_config;
using testing::expect_refused;

TEST(ConfigAuditGpt2, AttentionScaleFollowsScaleAttnWeightsAndInverseLayerIdx) {
  json config = fixture_config("tiny-gpt2");  // n_embd 64, n_head 4: head_dim 16
  EXPECT_FLOAT_EQ(attention_scale(describe(config), 0), 0.25f);
  EXPECT_FLOAT_EQ(attention_scale(describe(config), 2), 0.25f);
  config["scale_attn_weights"] = false;
  EXPECT_FLOAT_EQ(attention_scale(describe(config), 1), 1.0f);
  config["scale_attn_by_inverse_layer_idx"] = true;
  EXPECT_FLOAT_EQ(attention_scale(describe(config), 0), 1.0f);
  EXPECT_FLOAT_EQ(attention_scale(describe(config), 2), 1.0f / 3.0f);
  config["scale_attn_weights"] = true;
  EXPECT_FLOAT_EQ(attention_scale(describe(config), 3), 0.25f / 4.0f);
}

TEST(ConfigAuditGpt2, ReorderAndUpcastAttnOnlyChangesPrecisionAndIsAccepted) {
  json config = fixture_config("tiny-gpt2");
  config["reorder_and_upcast_attn"] = true;
  EXPECT_FLOAT_EQ(attention_scale(describe(config), 1), 0.25f);
}

TEST(ConfigAuditGpt2, UnknownActivationFunctionIsRefusedByName) {
  json config = fixture_config("tiny-gpt2");
  config["activation_function"] = "tanh";
  expect_refused(config, ErrorCategory::unsupported, {"activation_function", "'tanh'"});
}

TEST(ConfigAuditGpt2, AConfigKeyOfTheWrongTypeIsNamed) {
  json config = fixture_config("tiny-gpt2");
  config["scale_attn_weights"] = "no";
  expect_refused(config, ErrorCategory::format, {"scale_attn_weights"});
}

TEST(ConfigAuditLlama, HiddenActOtherThanSiluIsRefusedByName) {
  json config = fixture_config("tiny-llama");
  config["hidden_act"] = "gelu";
  expect_refused(config, ErrorCategory::unsupported, {"hidden_act", "'gelu'"});
}

// dynamic and yarn: tests/unit/rope_scaling_test.cc; longrope is Phi-3's (below).
TEST(ConfigAuditLlama, RopeScalingTypesOutsideLinearLlama3DynamicAndYarnAreRefusedByName) {
  for (const char* type : {"longrope", "su"}) {
    json config = fixture_config("tiny-llama");
    config["rope_scaling"] = {{"rope_type", type}, {"factor", 2.0}};
    expect_refused(config, ErrorCategory::unsupported, {"rope_scaling", std::string("'") + type + "'"});
  }
}

TEST(ConfigAuditLlama, Llama3RopeScalingWithoutItsParametersIsAFormatErrorNamingThem) {
  json config = fixture_config("tiny-llama");
  config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}};
  expect_refused(config, ErrorCategory::format, {"rope_scaling.original_max_position_embeddings"});
  config["rope_scaling"]["original_max_position_embeddings"] = 8192;
  config["rope_scaling"]["factor"] = -1.0;
  expect_refused(config, ErrorCategory::format, {"rope_scaling.factor"});
}

// rope_theta 5000, head_dim 16: inv_freq[j] = 5000^(-j / 8); "linear" divides it by factor,
// "type" being the older spelling of "rope_type".
TEST(ConfigAuditLlama, RotaryFrequenciesFoldInLinearScaling) {
  json config = fixture_config("tiny-llama");
  const std::vector<float> base = describe(config).kinds.rotary_inv_freq;
  ASSERT_EQ(base.size(), 8u);
  for (size_t j = 0; j < base.size(); ++j) EXPECT_FLOAT_EQ(base[j], std::pow(5000.0, -(j / 8.0)));
  config["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  const std::vector<float> scaled = describe(config).kinds.rotary_inv_freq;
  for (size_t j = 0; j < base.size(); ++j) EXPECT_FLOAT_EQ(scaled[j], base[j] / 4.0f);
}

// Llama 3.1's rope scaling on rope_theta 10000, head_dim 16 (original context 8192, low /
// high frequency factors 1 / 4): wavelengths 2 pi 10000^(j / 8) under 2048 keep their
// frequency (j <= 5), those over 8192 turn 8 times slower (j = 7), j = 6 (6283) is
// interpolated with smooth = (8192 / 6283 - 1) / 3.
TEST(ConfigAuditLlama, Llama3RopeScalingKeepsInterpolatesAndDividesByBand) {
  json config = fixture_config("tiny-llama");
  config["rope_theta"] = 10000.0;
  const std::vector<float> base = describe(config).kinds.rotary_inv_freq;
  config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const std::vector<float> scaled = describe(config).kinds.rotary_inv_freq;
  for (int j = 0; j <= 5; ++j) EXPECT_EQ(scaled[j], base[j]) << j;
  const double smooth = (8192.0 * base[6] / (2 * M_PI) - 1.0) / 3.0;
  EXPECT_NEAR(scaled[6], (1 - smooth) * base[6] / 8 + smooth * base[6], 1e-6 * base[6]);
  EXPECT_FLOAT_EQ(scaled[7], base[7] / 8.0f);
}

TEST(ConfigAuditLlama, AttentionAndMlpBiasesAddTheirWeights) {
  json config = fixture_config("tiny-llama");
  EXPECT_TRUE(describe(config).recipe(WeightSlot::qkv_bias, 0).sources.empty());
  config["attention_bias"] = true;
  Architecture arch = describe(config);
  EXPECT_EQ(arch.recipe(WeightSlot::qkv_bias, 1).sources,
            (std::vector<std::string>{"model.layers.1.self_attn.q_proj.bias", "model.layers.1.self_attn.k_proj.bias",
                                      "model.layers.1.self_attn.v_proj.bias"}));
  EXPECT_EQ(arch.recipe(WeightSlot::out_bias, 0).sources,
            std::vector<std::string>{"model.layers.0.self_attn.o_proj.bias"});
  EXPECT_TRUE(arch.recipe(WeightSlot::up_bias, 0).sources.empty());
  config["mlp_bias"] = true;
  arch = describe(config);
  EXPECT_EQ(arch.recipe(WeightSlot::up_bias, 0).sources,
            (std::vector<std::string>{"model.layers.0.mlp.gate_proj.bias", "model.layers.0.mlp.up_proj.bias"}));
  EXPECT_EQ(arch.recipe(WeightSlot::down_bias, 2).sources,
            std::vector<std::string>{"model.layers.2.mlp.down_proj.bias"});
}

TEST(ConfigAuditLlama, MathNeutralKeysAreAccepted) {
  json config = fixture_config("tiny-llama");
  config["pretraining_tp"] = 2;  // the same products computed in slices
  config["attention_dropout"] = 0.1;  // inactive at inference
  config["max_position_embeddings"] = 4096;
  EXPECT_NO_THROW(describe(config));
}

TEST(ConfigAuditMistral, SlidingWindowIsRead) {
  json config = fixture_config("tiny-mistral");
  EXPECT_EQ(describe(config).kinds.sliding_window, 8);
  config["sliding_window"] = nullptr;  // Mistral v0.2 and later: full attention
  EXPECT_EQ(describe(config).kinds.sliding_window, 0);
  config["sliding_window"] = 0;
  expect_refused(config, ErrorCategory::format, {"sliding_window"});
}

TEST(ConfigAuditMistral, KeysOutsideMistralConfigAreRefusedByName) {
  for (const char* key : {"rope_scaling", "attention_bias", "mlp_bias"}) {
    json config = fixture_config("tiny-mistral");
    config[key] = std::string(key) == "rope_scaling" ? json{{"rope_type", "linear"}, {"factor", 2.0}} : json(true);
    expect_refused(config, ErrorCategory::unsupported, {key});
  }
}

TEST(ConfigAuditQwen2, QkvBiasesAndNoOthers) {
  const Architecture arch = describe(fixture_config("tiny-qwen2"));
  EXPECT_EQ(arch.recipe(WeightSlot::qkv_bias, 0).sources.size(), 3u);
  EXPECT_TRUE(arch.recipe(WeightSlot::out_bias, 0).sources.empty());
  EXPECT_TRUE(arch.recipe(WeightSlot::up_bias, 0).sources.empty());
  EXPECT_TRUE(arch.recipe(WeightSlot::down_bias, 0).sources.empty());
  EXPECT_EQ(arch.recipe(WeightSlot::lm_head, -1).sources, std::vector<std::string>{"model.embed_tokens.weight"});
}

TEST(ConfigAuditQwen2, UseSlidingWindowIsRefusedByName) {
  json config = fixture_config("tiny-qwen2");
  config["use_sliding_window"] = true;
  config["sliding_window"] = 32;
  expect_refused(config, ErrorCategory::unsupported, {"use_sliding_window"});
  config["use_sliding_window"] = false;  // sliding_window is then unused, as in transformers
  EXPECT_NO_THROW(describe(config));
}

// Not read by transformers 4.44.2's Qwen2; later versions apply Llama's rope functions,
// as Kestrel does (fixture tiny-qwen2-yarn): a YaRN over another original context than
// max_position_embeddings and Phi-3's longrope are refused by name.
TEST(ConfigAuditQwen2, RopeScalingIsLlamasAndRefusedWhereAmbiguous) {
  json config = fixture_config("tiny-qwen2");
  config["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 32768}};
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling.original_max_position_embeddings"});
  config["rope_scaling"]["original_max_position_embeddings"] = 128;
  EXPECT_EQ(describe(config).config.max_positions, 512);
  config["rope_scaling"] = {{"type", "longrope"}, {"factor", 4.0}};
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling", "'longrope'"});
}

TEST(ConfigAuditQwen2, HiddenActOtherThanSiluIsRefusedByName) {
  json config = fixture_config("tiny-qwen2");
  config["hidden_act"] = "gelu";
  expect_refused(config, ErrorCategory::unsupported, {"hidden_act"});
}

TEST(ConfigAuditGptNeox, RotaryPctParallelResidualAndInterleavedQkv) {
  json config = fixture_config("tiny-gpt-neox");  // head_dim 16, rotary_pct 0.5
  Architecture arch = describe(config);
  EXPECT_EQ(arch.kinds.rotary_dim, 8);
  EXPECT_EQ(arch.kinds.rotary_inv_freq.size(), 4u);
  EXPECT_TRUE(arch.kinds.parallel_residual);
  EXPECT_FALSE(arch.kinds.shared_norm);
  EXPECT_EQ(arch.kinds.activation, Activation::gelu_erf);
  EXPECT_EQ(arch.recipe(WeightSlot::qkv_weight, 0).interleaved_head_rows, 16);
  config["use_parallel_residual"] = false;
  EXPECT_FALSE(describe(config).kinds.parallel_residual);
  config["attention_bias"] = false;
  EXPECT_TRUE(describe(config).recipe(WeightSlot::qkv_bias, 0).sources.empty());
}

TEST(ConfigAuditGptNeox, RefusedKeysAreNamed) {
  json config = fixture_config("tiny-gpt-neox");
  config["rotary_pct"] = 0.3125;  // int(16 * 0.3125) = 5 rotary dims: no whole pairs
  expect_refused(config, ErrorCategory::unsupported, {"rotary_pct"});
  config = fixture_config("tiny-gpt-neox");
  config["hidden_act"] = "silu";
  expect_refused(config, ErrorCategory::unsupported, {"hidden_act", "'silu'"});
  config = fixture_config("tiny-gpt-neox");
  config["rope_scaling"] = {{"type", "yarn"}, {"factor", 2.0}};  // not in 4.44.2's GPT-NeoX
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling", "'yarn'"});
}

// Dynamic NTK over the partial rotary dimensions (tiny-gpt-neox-dynamic: tests/models).
TEST(ConfigAuditGptNeox, DynamicRopeScalingStretchesTheContext) {
  json config = fixture_config("tiny-gpt-neox");  // 128 positions, 8 rotary dims of 16
  config["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  const Architecture arch = describe(config);
  EXPECT_EQ(arch.config.max_positions, 256);
  EXPECT_EQ(arch.kinds.rotary_context.kind, RopeContextScaling::Kind::dynamic);
  const double base = 10000.0 * std::pow(2.0 * 200 / 128 - 1, 8.0 / 6);
  EXPECT_NEAR(rotary_inv_freq_for_context(arch.kinds, 200)[1], std::pow(base, -2.0 / 8), 1e-7);
}

TEST(ConfigAuditGptj, OneNormParallelBlockAndLmHeadBias) {
  json config = fixture_config("tiny-gptj");
  const Architecture arch = describe(config);
  EXPECT_TRUE(arch.kinds.parallel_residual);
  EXPECT_TRUE(arch.kinds.shared_norm);
  EXPECT_EQ(arch.kinds.rotary_style, RotaryStyle::gptj);
  EXPECT_EQ(arch.kinds.rotary_dim, 8);
  EXPECT_EQ(arch.recipe(WeightSlot::ffn_norm_weight, 1).sources, arch.recipe(WeightSlot::attn_norm_weight, 1).sources);
  EXPECT_EQ(arch.recipe(WeightSlot::lm_head_bias, -1).sources, std::vector<std::string>{"lm_head.bias"});
  config["rotary_dim"] = nullptr;  // the whole head
  EXPECT_EQ(describe(config).kinds.rotary_dim, 16);
  config["rotary_dim"] = 7;
  expect_refused(config, ErrorCategory::format, {"rotary_dim"});
  config["rotary_dim"] = 8;
  config["activation_function"] = "swish";
  expect_refused(config, ErrorCategory::unsupported, {"activation_function", "'swish'"});
}

// Phi-3 (transformers 4.44.2's Phi3Config), on tests/fixtures/tiny-phi3 (hidden 64, 4 heads
// of 16, LongRoPE over an original context of 16 and 64 positions).
TEST(ConfigAuditPhi3, FusedWeightsLongRopeAndItsAttentionFactor) {
  const Architecture arch = describe(fixture_config("tiny-phi3"));
  EXPECT_EQ(arch.recipe(WeightSlot::qkv_weight, 1).sources,
            std::vector<std::string>{"model.layers.1.self_attn.qkv_proj.weight"});
  EXPECT_EQ(arch.recipe(WeightSlot::up_weight, 0).sources,
            std::vector<std::string>{"model.layers.0.mlp.gate_up_proj.weight"});
  EXPECT_TRUE(arch.recipe(WeightSlot::qkv_bias, 0).sources.empty());
  EXPECT_EQ(arch.kinds.sliding_window, 0);  // eager attention in transformers 4.44.2 ignores it
  EXPECT_EQ(arch.config.max_positions, 64);
  EXPECT_EQ(arch.kinds.rotary_context.kind, RopeContextScaling::Kind::longrope);
  EXPECT_EQ(arch.kinds.rotary_context.original, 16);
  // short_factor[j] = 1 + 0.25 j, long_factor[j] = 1 + 1.5 j (make_tiny_phi3.py).
  for (int j = 0; j < 8; ++j) {
    const double base = std::pow(10000.0, -j / 8.0);
    EXPECT_NEAR(arch.kinds.rotary_inv_freq[j], base / (1 + 0.25 * j), 1e-6 * base) << j;
    EXPECT_NEAR(arch.kinds.rotary_context.long_inv_freq[j], base / (1 + 1.5 * j), 1e-6 * base) << j;
  }
  EXPECT_EQ(rotary_inv_freq_for_context(arch.kinds, 16), arch.kinds.rotary_inv_freq);
  EXPECT_EQ(rotary_inv_freq_for_context(arch.kinds, 17), arch.kinds.rotary_context.long_inv_freq);
  // cos, sin x sqrt(1 + ln 4 / ln 16) = sqrt(1.5): q . k x 1.5.
  EXPECT_NEAR(arch.kinds.rotary_attention_factor, std::sqrt(1.5), 1e-6);
  EXPECT_NEAR(attention_scale(arch, 0), 1.5 / 4.0, 1e-6);
}

TEST(ConfigAuditPhi3, SuIsLongRopeAndNoScalingHasNoAttentionFactor) {
  json config = fixture_config("tiny-phi3");
  config["rope_scaling"]["type"] = "su";
  EXPECT_EQ(describe(config).kinds.rotary_context.kind, RopeContextScaling::Kind::longrope);
  config["rope_scaling"] = nullptr;
  const Architecture plain = describe(config);
  EXPECT_EQ(plain.kinds.rotary_context.kind, RopeContextScaling::Kind::none);
  EXPECT_FLOAT_EQ(attention_scale(plain, 0), 0.25f);
}

TEST(ConfigAuditPhi3, RefusedKeysAreNamed) {
  const std::vector<std::pair<const char*, json>> refused = {
      {"lm_head_bias", true}, {"head_dim", 32}, {"attention_bias", true}, {"hidden_act", "gelu"}};
  for (const auto& [key, value] : refused) {
    json config = fixture_config("tiny-phi3");
    config[key] = value;
    expect_refused(config, ErrorCategory::unsupported, {key});
  }
  // Phi-4-mini's partial rotary is read (phi4_olmo2_config_test.cc): 12 of 16 dims leave
  // tiny-phi3's 8 factor pairs the wrong length, an error naming them.
  json config = fixture_config("tiny-phi3");
  config["partial_rotary_factor"] = 0.75;
  expect_refused(config, ErrorCategory::format, {"rope_scaling.short_factor", "expected 6"});
  config = fixture_config("tiny-phi3");
  config["rope_scaling"]["type"] = "dynamic";
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling", "'dynamic'"});
  config = fixture_config("tiny-phi3");
  config["rope_scaling"]["long_factor"] = {1.0, 2.0};
  expect_refused(config, ErrorCategory::format, {"rope_scaling.long_factor", "expected 8"});
  config = fixture_config("tiny-phi3");
  config["rope_scaling"]["attention_factor"] = 1.0;
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling.attention_factor"});
  config = fixture_config("tiny-phi3");
  config["rope_scaling"].erase("short_factor");
  expect_refused(config, ErrorCategory::format, {"rope_scaling.short_factor"});
}

TEST(ConfigAudit, UnknownModelTypeIsRefusedByName) {
  json config = fixture_config("tiny-llama");
  config["model_type"] = "mamba";
  expect_refused(config, ErrorCategory::unsupported, {"model_type", "'mamba'"});
}


// --- mixture of experts (tests/fixtures/make_tiny_moe.py; docs/MODELS.md) ---------------

TEST(ConfigAuditMixtral, ExpertCountsAreReadAndEveryLayerIsSparseWithRenormalizedTopK) {
  json config = fixture_config("tiny-mixtral");
  Architecture arch = describe(config);
  EXPECT_EQ(arch.config.num_experts, 6);
  EXPECT_EQ(arch.config.experts_per_token, 2);
  EXPECT_EQ(arch.config.expert_ffn_size, 32);  // intermediate_size is each expert's
  EXPECT_EQ(arch.config.shared_expert_ffn_size, 0);
  EXPECT_TRUE(arch.kinds.normalize_top_k);
  EXPECT_TRUE(arch.kinds.is_sparse(0) && arch.kinds.is_sparse(1));
  EXPECT_TRUE(arch.recipe(WeightSlot::up_weight, 0).sources.empty());
  EXPECT_EQ(arch.expert_recipe(WeightSlot::expert_up_weight, 1, 5).sources,
            (std::vector<std::string>{"model.layers.1.block_sparse_moe.experts.5.w1.weight",
                                      "model.layers.1.block_sparse_moe.experts.5.w3.weight"}));
  config["num_experts_per_tok"] = 3;
  EXPECT_EQ(describe(config).config.experts_per_token, 3);
}

TEST(ConfigAuditMixtral, TrainingOnlyKeysAreAccepted) {
  json config = fixture_config("tiny-mixtral");
  config["output_router_logits"] = true;  // adds router logits to the outputs (aux loss)
  config["router_aux_loss_coef"] = 0.5;   // weight of that loss
  config["router_jitter_noise"] = 0.1;    // applied only in training mode
  EXPECT_EQ(describe(config).config.num_experts, 6);
}

TEST(ConfigAuditMixtral, SlidingWindowIsRefusedByName) {
  json config = fixture_config("tiny-mixtral");
  config["sliding_window"] = 4096;
  expect_refused(config, ErrorCategory::unsupported, {"sliding_window"});
}

TEST(ConfigAuditMixtral, TopKOutsideTheExpertsIsRefusedByName) {
  json config = fixture_config("tiny-mixtral");
  config["num_experts_per_tok"] = 7;
  expect_refused(config, ErrorCategory::format, {"experts_per_token", "7"});
  config = fixture_config("tiny-mixtral");
  config.erase("num_local_experts");
  expect_refused(config, ErrorCategory::format, {"num_local_experts"});
}

TEST(ConfigAuditMixtral, RopeScalingAndBiasesAreRefusedByName) {
  for (const char* key : {"rope_scaling", "attention_bias", "mlp_bias"}) {
    json config = fixture_config("tiny-mixtral");
    config[key] = key == std::string("rope_scaling") ? json{{"rope_type", "linear"}, {"factor", 2.0}} : json(true);
    expect_refused(config, ErrorCategory::unsupported, {key});
  }
}

TEST(ConfigAuditQwen2Moe, SparseLayersFollowDecoderSparseStepAndMlpOnlyLayers) {
  json config = fixture_config("tiny-qwen2-moe-mixed");  // 4 layers, step 2, mlp_only_layers [3]
  Architecture arch = describe(config);
  EXPECT_EQ(arch.kinds.sparse_layers, (std::vector<bool>{false, true, false, false}));
  EXPECT_TRUE(arch.kinds.normalize_top_k);
  EXPECT_EQ(arch.config.shared_expert_ffn_size, 48);
  EXPECT_EQ(arch.config.ffn_size, 96);  // intermediate_size: the dense layers'
  EXPECT_FALSE(arch.recipe(WeightSlot::up_weight, 0).sources.empty());
  EXPECT_TRUE(arch.recipe(WeightSlot::up_weight, 1).sources.empty());
  EXPECT_EQ(arch.recipe(WeightSlot::shared_gate_weight, 1).sources,
            (std::vector<std::string>{"model.layers.1.mlp.shared_expert_gate.weight"}));
  config["decoder_sparse_step"] = 1;
  config["mlp_only_layers"] = json::array();
  EXPECT_EQ(describe(config).kinds.sparse_layers, (std::vector<bool>{true, true, true, true}));
  config["norm_topk_prob"] = false;
  EXPECT_FALSE(describe(config).kinds.normalize_top_k);
  config["mlp_only_layers"] = {0, 1, 2, 3};  // no sparse layer left: a dense model
  EXPECT_EQ(describe(config).config.num_experts, 0);
}

TEST(ConfigAuditQwen2Moe, BadSparseLayoutKeysAreRefusedByName) {
  json config = fixture_config("tiny-qwen2-moe");
  config["mlp_only_layers"] = json::array({2});
  expect_refused(config, ErrorCategory::format, {"mlp_only_layers", "2"});
  config = fixture_config("tiny-qwen2-moe");
  config["decoder_sparse_step"] = 0;
  expect_refused(config, ErrorCategory::format, {"decoder_sparse_step"});
  config = fixture_config("tiny-qwen2-moe");
  config["shared_expert_intermediate_size"] = 0;
  expect_refused(config, ErrorCategory::format, {"shared_expert_intermediate_size"});
}

TEST(ConfigAuditQwen2Moe, UseSlidingWindowAndRopeScalingAreRefusedByName) {
  json config = fixture_config("tiny-qwen2-moe");
  config["use_sliding_window"] = true;
  expect_refused(config, ErrorCategory::unsupported, {"use_sliding_window"});
  config = fixture_config("tiny-qwen2-moe");
  config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expect_refused(config, ErrorCategory::unsupported, {"rope_scaling"});
}

TEST(ConfigAuditQwen2Moe, TrainingOnlyKeysAreAccepted) {
  json config = fixture_config("tiny-qwen2-moe");
  config["output_router_logits"] = true;
  config["router_aux_loss_coef"] = 0.5;
  EXPECT_EQ(describe(config).config.num_experts, 6);
}

}  // namespace
}  // namespace kestrel
