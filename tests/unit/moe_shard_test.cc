// A mixture of experts split over tensor-parallel ranks, one rank at a time (WeightStore::load
// with each rank's Shard, no MPI needed): every rank holds the router and the shared
// expert's gate whole, and of every expert (and of the shared expert) the [gate | up] rows
// and down columns of its FFN columns, value for value the single-process weight's: dense
// (tiny-qwen2-moe, tiny-qwen3-moe at tp = 2 and 4), and kept in the file's Q8_0 blocks
// (moe-blocks/qwen2-moe-q8_0.gguf at tp = 2: one 32-column block of each expert's down a
// rank, the shared expert's 3 blocks split 2 + 1). The MoE block run on each rank's weights
// gives partial outputs whose sum is the single process's output (what the block's one
// all-reduce computes under MPI).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <kestrel/kestrel.h>
#include <vector>

#include "cpu/cpu_ops.h"
#include "layers/moe.h"
#include "models/quantize.h"
#include "models/weights.h"
#include "parallel/shard.h"
#include "test_support.h"
#include "tools/held_weights.h"

namespace kestrel {
namespace {

// A weight's values in f32, [rows, cols] row-major, dense or quantized.
std::vector<float> values(const LinearWeight& w) {
  if (w.is_quantized()) {
    std::vector<float> out(static_cast<size_t>(w.quantized.rows * w.quantized.cols));
    cpu::dequantize_weight(w.quantized, out.data());
    return out;
  }
  const float* p = w.dense.ptr<float>();
  return std::vector<float>(p, p + w.dense.numel());
}

int64_t cols_of(const LinearWeight& w) { return w.is_quantized() ? w.quantized.cols : w.dense.dim(1); }

// Rows `ranges` ({begin, count}) of the [rows, cols] matrix m, stacked.
std::vector<float> rows_of(const std::vector<float>& m, int64_t cols,
                           const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  std::vector<float> out;
  for (const auto& [begin, count] : ranges)
    out.insert(out.end(), m.begin() + begin * cols, m.begin() + (begin + count) * cols);
  return out;
}

// Columns [begin, begin + count) of every row of the [rows, cols] matrix m.
std::vector<float> cols_range(const std::vector<float>& m, int64_t cols, int64_t begin, int64_t count) {
  std::vector<float> out;
  for (size_t r = 0; r < m.size() / static_cast<size_t>(cols); ++r)
    out.insert(out.end(), m.begin() + r * cols + begin, m.begin() + r * cols + begin + count);
  return out;
}

struct Loaded {
  std::unique_ptr<WeightStore> store;
  ModelWeights weights;
};

Loaded load_rank(Backend& backend, const sizing::FileWeights& file, const QuantizationSpec& spec, int tp, int r) {
  const Architecture& arch = file.architecture();
  const FfnAlignment align = ffn_split_alignment(file.source(), arch, spec);
  Loaded l;
  l.store = std::make_unique<WeightStore>(backend, DType::f32, spec);
  l.weights = l.store->load(file.source(), arch, make_shard(arch.config, tp, 1, r, 0, "rank", align));
  return l;
}

struct SliceCase {
  const char* model;
  Quantization mode;
  int tp;
};

class MoeShard : public ::testing::TestWithParam<SliceCase> {};

TEST_P(MoeShard, RanksHoldTheirRowsAndColumnsOfEveryExpert) {
  const SliceCase& k = GetParam();
  const sizing::FileWeights file(testing::fixture_dir() / k.model);
  const Architecture& arch = file.architecture();
  const ModelConfig& c = arch.config;
  const int64_t Fe = c.expert_ffn_size, Fs = c.shared_expert_ffn_size;
  auto backend = make_cpu_backend(1);
  const QuantizationSpec spec{k.mode, 0};
  const Loaded whole = load_rank(*backend, file, spec, 1, 0);
  const FfnAlignment align = ffn_split_alignment(file.source(), arch, spec);
  int64_t expert_cols = 0, shared_cols = 0;
  for (int r = 0; r < k.tp; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    const Shard shard = make_shard(c, k.tp, 1, r, 0, "rank", align);
    EXPECT_EQ(shard.expert_ffn_begin, expert_cols);  // contiguous, in rank order
    EXPECT_EQ(shard.shared_ffn_begin, shared_cols);
    expert_cols += shard.expert_ffn;
    shared_cols += shard.shared_ffn;
    const Loaded rank = load_rank(*backend, file, spec, k.tp, r);
    const int64_t eb = shard.expert_ffn_begin, ef = shard.expert_ffn;
    for (size_t l = 0; l < whole.weights.layers.size(); ++l) {
      const MoeWeights &w = whole.weights.layers[l].moe, &s = rank.weights.layers[l].moe;
      ASSERT_EQ(w.empty(), s.empty());
      if (w.empty()) continue;
      EXPECT_EQ(s.expert_ffn, ef);
      EXPECT_EQ(values(s.router), values(w.router));  // replicated
      for (int e = 0; e < c.num_experts; ++e) {
        SCOPED_TRACE("layer " + std::to_string(l) + " expert " + std::to_string(e));
        EXPECT_EQ(s.expert_up[e].is_quantized(), w.expert_up[e].is_quantized());
        EXPECT_EQ(values(s.expert_up[e]), rows_of(values(w.expert_up[e]), c.hidden_size, {{eb, ef}, {Fe + eb, ef}}));
        ASSERT_EQ(cols_of(s.expert_down[e]), ef);
        EXPECT_EQ(values(s.expert_down[e]), cols_range(values(w.expert_down[e]), Fe, eb, ef));
      }
      if (Fs == 0) continue;
      const int64_t sb = shard.shared_ffn_begin, sf = shard.shared_ffn;
      EXPECT_EQ(s.shared_ffn, sf);
      EXPECT_EQ(values(s.shared_up), rows_of(values(w.shared_up), c.hidden_size, {{sb, sf}, {Fs + sb, sf}}));
      EXPECT_EQ(values(s.shared_down), cols_range(values(w.shared_down), Fs, sb, sf));
      const float* g = s.shared_gate.ptr<float>();
      const float* wg = w.shared_gate.ptr<float>();
      EXPECT_EQ(std::vector<float>(g, g + c.hidden_size), std::vector<float>(wg, wg + c.hidden_size));
    }
  }
  EXPECT_EQ(expert_cols, Fe);
  EXPECT_EQ(shared_cols, Fs);
}

INSTANTIATE_TEST_SUITE_P(
    Splits, MoeShard,
    ::testing::Values(SliceCase{"tiny-qwen2-moe", Quantization::none, 2}, SliceCase{"tiny-qwen2-moe", Quantization::none, 4},
                      SliceCase{"tiny-qwen3-moe", Quantization::none, 2}, SliceCase{"tiny-mixtral.gguf", Quantization::none, 4},
                      SliceCase{"tiny-granitemoe", Quantization::none, 2},
                      SliceCase{"moe-blocks/qwen2-moe-q8_0.gguf", Quantization::automatic, 2}),
    [](const ::testing::TestParamInfo<SliceCase>& info) {
      std::string name = std::string(info.param.model) + "_tp" + std::to_string(info.param.tp);
      for (char& ch : name)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return name;
    });

// The Q8_0 fixture's experts stay in their blocks on every rank, split on block boundaries:
// the shared expert's 96 columns go 64 + 32 (3 blocks, the first rank one more).
TEST(MoeShardBlocks, ExpertsKeepTheirQ8_0BlocksAndTheSharedExpertSplitsUnevenly) {
  const sizing::FileWeights file(testing::fixture_dir() / "moe-blocks" / "qwen2-moe-q8_0.gguf");
  const QuantizationSpec spec{Quantization::automatic, 0};
  const FfnAlignment align = ffn_split_alignment(file.source(), file.architecture(), spec);
  EXPECT_EQ(align, FfnAlignment(1, 32, 32));  // no dense layer; experts and shared expert Q8_0
  // Dequantized at load, nothing is kept: any column splits.
  EXPECT_EQ(ffn_split_alignment(file.source(), file.architecture(), {Quantization::none, 0}), FfnAlignment{});
  auto backend = make_cpu_backend(1);
  for (int r = 0; r < 2; ++r) {
    const Loaded rank = load_rank(*backend, file, spec, 2, r);
    const MoeWeights& m = rank.weights.layers.at(0).moe;
    EXPECT_EQ(m.expert_down.at(0).quantized.format, QuantFormat::int8);
    EXPECT_EQ(m.expert_down.at(0).quantized.group_size, 32);
    EXPECT_EQ(m.shared_down.quantized.cols, r == 0 ? 64 : 32);
  }
  // At tp = 4 the experts' 2 blocks cannot go to 4 ranks.
  try {
    make_shard(file.architecture().config, 4, 1, 0, 0, "qwen2-moe-q8_0.gguf", align);
    ADD_FAILURE() << "tp 4 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument);
    EXPECT_NE(e.message().find("expert_ffn_size 64 is 2 blocks of 32 columns"), std::string::npos) << e.message();
  }
}

// The sum of the ranks' partial MoE outputs is one process's output: the routed experts'
// down outputs weighted by the (replicated) routing weights, and the shared expert's
// partial output times its sigmoid gate, which every rank computes from the same input.
TEST(MoeShardBlock, RanksPartialOutputsSumToTheWholeBlock) {
  for (const char* model : {"tiny-qwen2-moe", "tiny-mixtral", "moe-blocks/qwen2-moe-q8_0.gguf"}) {
    SCOPED_TRACE(model);
    const sizing::FileWeights file(testing::fixture_dir() / model);
    const Architecture& arch = file.architecture();
    const ModelConfig& c = arch.config;
    const int64_t T = 7, H = c.hidden_size, k = c.experts_per_token, E = c.num_experts;
    const int64_t Fe = c.expert_ffn_size, Fs = c.shared_expert_ffn_size;
    auto backend = make_cpu_backend(1);
    const QuantizationSpec spec{Quantization::automatic, 0};
    std::vector<float> x = testing::random_floats(static_cast<size_t>(T * H), 77, -2.0f, 2.0f);
    // Scratch as Session lays it out (core/session_layout.cc), for the whole expert width.
    std::vector<float> logits(T * E), weights(T * k), xs(T * k * H), up(std::max(T * k * 2 * Fe, T * 2 * Fs)),
        act(std::max(T * k * Fe, T * Fs)), out(T * k * H), shared(T * H), gate(T);
    std::vector<int32_t> ids(T * k), offsets(E + 1), rows(T * k), slot_of(T * k);
    MoeBuffers b;
    b.logits = TensorView(logits.data(), DType::f32, {T, E});
    b.ids = TensorView(ids.data(), DType::i32, {T, k});
    b.weights = TensorView(weights.data(), DType::f32, {T, k});
    b.offsets = TensorView(offsets.data(), DType::i32, {E + 1});
    b.rows = TensorView(rows.data(), DType::i32, {T * k});
    b.slot_of = TensorView(slot_of.data(), DType::i32, {T * k});
    b.x = TensorView(xs.data(), DType::f32, {T * k, H});
    b.up = TensorView(up.data(), DType::f32, {static_cast<int64_t>(up.size())});
    b.act = TensorView(act.data(), DType::f32, {static_cast<int64_t>(act.size())});
    b.out = TensorView(out.data(), DType::f32, {T * k, H});
    if (Fs > 0) {
      b.shared = TensorView(shared.data(), DType::f32, {T, H});
      b.shared_gate = TensorView(gate.data(), DType::f32, {T, 1});
    }
    const TensorView normed(x.data(), DType::f32, {T, H});
    auto run = [&](const MoeWeights& w) {
      std::vector<float> proj(static_cast<size_t>(T * H));
      moe_block(*backend, w, arch, normed, b, TensorView(proj.data(), DType::f32, {T, H}));
      return proj;
    };
    const int layer = arch.kinds.is_sparse(0) ? 0 : 1;
    const std::vector<float> want = run(load_rank(*backend, file, spec, 1, 0).weights.layers.at(layer).moe);
    for (int tp : {2, 4}) {
      if (c.num_heads % tp != 0 || Fe / ffn_split_alignment(file.source(), arch, spec).expert < tp) continue;
      std::vector<float> sum(want.size(), 0.0f);
      for (int r = 0; r < tp; ++r) {
        const std::vector<float> part = run(load_rank(*backend, file, spec, tp, r).weights.layers.at(layer).moe);
        for (size_t i = 0; i < sum.size(); ++i) sum[i] += part[i];
      }
      float diff = 0.0f, scale = 0.0f;
      for (size_t i = 0; i < sum.size(); ++i) {
        diff = std::max(diff, std::fabs(sum[i] - want[i]));
        scale = std::max(scale, std::fabs(want[i]));
      }
      EXPECT_GT(scale, 0.1f);  // a real output, not zeros
      EXPECT_LE(diff, 1e-5f * std::max(1.0f, scale)) << "tp " << tp;
    }
  }
}

}  // namespace
}  // namespace kestrel
