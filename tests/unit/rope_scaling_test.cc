// Rope scalings of models/rope_scaling.h from config.json: YaRN's ramp and attention factor,
// dynamic NTK's context-dependent base, and the keys they refuse by name. The tables are
// held to transformers end to end by tests/models (tiny-llama-yarn, tiny-llama-dynamic);
// these pin the formulas on the same fixtures.
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

// rope_theta 10, head_dim 16, 16 positions, factor 4: a pair turns 16 / (2 pi 10^(2j/16))
// times over the original context; beta_slow = 1 turn falls at dimension 3.25 (ceil 4),
// beta_fast = 32 below 0: pair j keeps (4 - j) / 4 of its own frequency and takes the rest
// from the interpolated one (frequency / 4).
TEST(RopeScalingYarn, RampBlendsThePairsBetweenTheBetasAndScalesCosSin) {
  json config = fixture_config("tiny-llama-yarn");
  const Architecture arch = describe(config);
  EXPECT_EQ(arch.config.max_positions, 64);
  ASSERT_EQ(arch.kinds.rotary_inv_freq.size(), 8u);
  for (int j = 0; j < 8; ++j) {
    const double base = std::pow(10.0, -j / 8.0);
    const double keep = std::clamp((4.0 - j) / 4.0, 0.0, 1.0);
    EXPECT_NEAR(arch.kinds.rotary_inv_freq[j], keep * base + (1 - keep) * base / 4, 1e-6 * base) << j;
  }
  const double m = 1 + 0.1 * std::log(4.0);
  EXPECT_NEAR(arch.kinds.rotary_attention_factor, m, 1e-6);
  EXPECT_NEAR(attention_scale(arch, 1), m * m / 4, 1e-6);
  config["rope_scaling"]["attention_factor"] = 2.0;
  EXPECT_FLOAT_EQ(describe(config).kinds.rotary_attention_factor, 2.0f);
}

TEST(RopeScalingYarn, OriginalContextOtherThanMaxPositionEmbeddingsIsRefusedByName) {
  json config = fixture_config("tiny-llama-yarn");
  config["rope_scaling"]["original_max_position_embeddings"] = 8;
  try {
    describe(config);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::unsupported);
    EXPECT_NE(e.message().find("rope_scaling.original_max_position_embeddings"), std::string::npos) << e.what();
  }
  config["rope_scaling"]["original_max_position_embeddings"] = 16;
  EXPECT_NO_THROW(describe(config));
  config["rope_scaling"].erase("original_max_position_embeddings");
  config["rope_scaling"].erase("factor");
  EXPECT_THROW(describe(config), Error);
}

// Up to the original 16 positions the base is rope_theta; a context of n > 16 takes
// theta (4 n / 16 - 3)^(16 / 14).
TEST(RopeScalingDynamic, TheBaseGrowsWithTheSessionsContext) {
  const Architecture arch = describe(fixture_config("tiny-llama-dynamic"));
  EXPECT_EQ(arch.config.max_positions, 64);
  EXPECT_EQ(arch.kinds.rotary_context.kind, RopeContextScaling::Kind::dynamic);
  EXPECT_EQ(rotary_inv_freq_for_context(arch.kinds, 16), arch.kinds.rotary_inv_freq);
  for (int n : {17, 40, 64}) {
    const std::vector<float> table = rotary_inv_freq_for_context(arch.kinds, n);
    const double base = 10000.0 * std::pow(4.0 * n / 16 - 3, 16.0 / 14);
    for (int j = 0; j < 8; ++j) EXPECT_NEAR(table[j], std::pow(base, -j / 8.0), 1e-6 * table[j]) << n << " " << j;
  }
  EXPECT_FLOAT_EQ(arch.kinds.rotary_attention_factor, 1.0f);
}

}  // namespace
}  // namespace kestrel
