// The CUDA backend's context_attention and masked_attention against the CPU reference on
// the same inputs, for f32, f16 and bf16: head sizes 64 / 80 / 128, GQA ratios 1, 2 and 8
// and MQA, rotary none / NeoX / GPT-J (also partial, with another theta and position
// scaling), a batch of sequences with mixed lengths over a shuffled paged cache, prefill in
// two chunks (nonzero n_past, a sequence with no new tokens), then generation steps that
// cross KV block boundaries; the generation kernel in one-block and multi-block mode.
// Every test skips without a GPU.
//
// Each step compares the attention output, the keys and values of every cached position so
// far (so a slot written wrong, or written where it should not be, shows) and, for the
// context phase, the processed q / k / v left in qkv. Unwritten cache slots hold NaN on
// both sides: a kernel that reads one poisons its output.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend.h"
#include "cuda_test_util.h"
#include "kernel_test_cases.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::close;
using testing::DeviceTensor;
using testing::host_view;
using testing::PagedLayout;
using testing::random_floats;
using testing::round_to;
using testing::tolerance;

constexpr int kBlockSize = 16;

struct AttnCase {
  const char* name;
  int nh, nkv, hd;
  RotaryStyle style;
  int rotary_dim;  // 0 = head size
  bool bias;
  float theta = 10000.0f;
  float position_scale = 1.0f;
  int window = 0;  // sliding window (0 = off)
  float softcap = 0.0f;  // attention logit soft-capping (0 = off)
  bool sinks = false;    // a random attention-sink logit per head (gpt-oss)

  int width() const { return (nh + 2 * nkv) * hd; }
  int rot() const { return style == RotaryStyle::none ? 0 : (rotary_dim ? rotary_dim : hd); }
  // The rotary inverse-frequency table a model would compute: [rot / 2], linear scaling
  // (position_scale) folded in.
  std::vector<float> inv_freq() const {
    std::vector<float> f(static_cast<size_t>(rot() / 2));
    for (int j = 0; j < rot() / 2; ++j)
      f[j] = static_cast<float>(std::pow(static_cast<double>(theta), -2.0 * j / rot()) * position_scale);
    return f;
  }
  // `table`: inv_freq(), `sinks`: [nh] or empty, on the device of the backend the call goes to.
  AttentionParams params(const TensorView& table, const TensorView& sinks) const {
    AttentionParams p;
    p.n_heads = nh;
    p.n_kv_heads = nkv;
    p.head_dim = hd;
    p.scale = static_cast<float>(1.0 / std::sqrt(hd));
    p.rotary = {style, rotary_dim, table};
    p.sliding_window = window;
    p.logit_softcap = softcap;
    p.sinks = sinks;
    return p;
  }
};

const AttnCase kCases[] = {
    {"gpt2_mha_hd64_bias", 4, 4, 64, RotaryStyle::none, 0, true},
    {"gqa2_hd80_neox", 8, 4, 80, RotaryStyle::neox, 0, false},
    {"gqa8_hd128_neox", 16, 2, 128, RotaryStyle::neox, 0, false},
    {"mqa_hd64_gptj_partial_bias", 8, 1, 64, RotaryStyle::gptj, 32, true},
    {"gqa2_hd128_neox_partial_scaled", 4, 2, 128, RotaryStyle::neox, 64, true, 5000.0f, 0.5f},
    {"mqa_hd64_neox_window13", 4, 1, 64, RotaryStyle::neox, 0, true, 10000.0f, 1.0f, 13},
    // Gemma's head size with a window and soft-capped scores (cap 0.5 bites on these inputs).
    {"gqa2_hd256_neox_window9_softcap", 4, 2, 256, RotaryStyle::neox, 0, false, 10000.0f, 1.0f, 9, 0.5f},
    // gpt-oss: attention sinks with q / k / v biases, over every position and in a window of 8.
    {"gqa2_hd64_neox_bias_sinks", 4, 2, 64, RotaryStyle::neox, 0, true, 10000.0f, 1.0f, 0, 0.0f, true},
    {"gqa2_hd64_neox_bias_window8_sinks", 4, 2, 64, RotaryStyle::neox, 0, true, 10000.0f, 1.0f, 8, 0.0f, true},
};

// The same sequences on both backends: host tables and caches for the CPU, device ones for
// the GPU, identical block tables. Raw qkv rows of every position are drawn up front.
class PagedPair {
 public:
  PagedPair(Backend& cpu, Backend& gpu, const AttnCase& c, DType dtype,
            std::vector<int> final_lengths, uint64_t seed)
      : cpu_(cpu),
        gpu_(gpu),
        c_(c),
        dtype_(dtype),
        lengths_(std::move(final_lengths)),
        n_past_(lengths_.size(), 0) {
    const int B = static_cast<int>(lengths_.size());
    bias_ = round_to(dtype, random_floats(c.width(), seed));
    if (c.sinks) sinks_ = round_to(dtype, random_floats(static_cast<size_t>(c.nh), seed + 1000, -3.0f, 3.0f));
    for (int i = 0; i < B; ++i)
      raw_.push_back(round_to(
          dtype, random_floats(static_cast<size_t>(lengths_[i]) * c.width(), seed + 1 + i)));
    const PagedLayout layout(lengths_, kBlockSize, /*spare=*/3, seed);
    tables_ = layout.tables;
    max_blocks_ = layout.max_blocks;
    num_blocks_ = layout.num_blocks;

    const size_t cache_size = static_cast<size_t>(num_blocks_) * c.nkv * kBlockSize * c.hd;
    kc_.assign(cache_size, NAN);
    vc_.assign(cache_size, NAN);
    const int64_t nb = num_blocks_, nkv = c.nkv, hd = c.hd;
    kd_ = std::make_unique<DeviceTensor>(gpu, dtype,
                                         std::initializer_list<int64_t>{nb, nkv, kBlockSize, hd});
    vd_ = std::make_unique<DeviceTensor>(gpu, dtype,
                                         std::initializer_list<int64_t>{nb, nkv, kBlockSize, hd});
    kd_->set(kc_);
    vd_->set(vc_);
  }

  // One step over the next n_new[i] tokens of each sequence, on both backends; compares
  // everything it can see.
  void step(const std::vector<int>& n_new, bool masked, const std::string& what) {
    SCOPED_TRACE(what);
    const int B = static_cast<int>(lengths_.size()), W = c_.width();
    const int64_t nh_hd = static_cast<int64_t>(c_.nh) * c_.hd;
    std::vector<int32_t> offsets(B + 1, 0), n_past(B);
    std::vector<float> qkv;
    int max_new = 0, max_total = 0;
    for (int i = 0; i < B; ++i) {
      ASSERT_LE(n_past_[i] + n_new[i], lengths_[i]) << "test bug: sequence " << i << " too long";
      offsets[i + 1] = offsets[i] + n_new[i];
      n_past[i] = n_past_[i];
      max_new = std::max(max_new, n_new[i]);
      max_total = std::max(max_total, n_past_[i] + n_new[i]);
      qkv.insert(qkv.end(), raw_[i].begin() + static_cast<size_t>(n_past_[i]) * W,
                 raw_[i].begin() + static_cast<size_t>(n_past_[i] + n_new[i]) * W);
    }
    const int T = offsets[B];
    std::vector<float> inv_freq = c_.inv_freq();
    const int64_t n_freq = static_cast<int64_t>(inv_freq.size());
    const int64_t n_sinks = static_cast<int64_t>(sinks_.size());
    const AttentionParams params =
        c_.params(host_view(inv_freq, {n_freq}), n_sinks ? host_view(sinks_, {n_sinks}) : TensorView{});

    // CPU.
    SequenceBatch hb;
    hb.n_seqs = B;
    hb.max_blocks_per_seq = max_blocks_;
    hb.max_new_tokens = max_new;
    hb.max_total_tokens = max_total;
    hb.token_offsets = host_view(offsets, {B + 1});
    hb.n_past = host_view(n_past, {B});
    hb.block_tables = host_view(tables_, {B, max_blocks_});
    const int64_t nb = num_blocks_;
    KvCacheLayer hcache{TensorView(kc_.data(), DType::f32, {nb, c_.nkv, kBlockSize, c_.hd}),
                        TensorView(vc_.data(), DType::f32, {nb, c_.nkv, kBlockSize, c_.hd}),
                        kBlockSize};
    std::vector<float> qkv_c = qkv, out_c(static_cast<size_t>(T) * nh_hd);
    TensorView bias_h = host_view(bias_, {W});
    if (masked)
      cpu_.masked_attention(host_view(qkv_c, {T, W}), c_.bias ? &bias_h : nullptr, params, hb,
                            hcache, host_view(out_c, {T, nh_hd}));
    else
      cpu_.context_attention(host_view(qkv_c, {T, W}), c_.bias ? &bias_h : nullptr, params, hb,
                             hcache, host_view(out_c, {T, nh_hd}));

    // GPU.
    DeviceTensor offsets_d(gpu_, DType::i32, {B + 1}), n_past_d(gpu_, DType::i32, {B});
    DeviceTensor tables_d(gpu_, DType::i32, {B, max_blocks_});
    DeviceTensor qkv_d(gpu_, dtype_, {std::max(T, 1), W}),
        out_d(gpu_, dtype_, {std::max(T, 1), nh_hd});
    DeviceTensor bias_d(gpu_, dtype_, {W});
    offsets_d.set(offsets);
    n_past_d.set(n_past);
    tables_d.set(tables_);
    if (T > 0) qkv_d.set(qkv);
    bias_d.set(bias_);
    SequenceBatch db = hb;
    db.token_offsets = offsets_d;
    db.n_past = n_past_d;
    db.block_tables = tables_d;
    DeviceTensor inv_freq_d(gpu_, DType::f32, {std::max<int64_t>(n_freq, 1)});
    inv_freq_d.set(inv_freq);
    DeviceTensor sinks_d(gpu_, dtype_, {std::max<int64_t>(n_sinks, 1)});
    if (n_sinks) sinks_d.set(sinks_);
    const AttentionParams dparams =
        c_.params(inv_freq_d.view().rows(0, n_freq), n_sinks ? sinks_d.view() : TensorView{});
    KvCacheLayer dcache{*kd_, *vd_, kBlockSize};
    TensorView qkv_v = qkv_d.view().rows(0, T), out_v = out_d.view().rows(0, T);
    if (masked)
      gpu_.masked_attention(qkv_v, c_.bias ? bias_d.ptr() : nullptr, dparams, db, dcache, out_v);
    else
      gpu_.context_attention(qkv_v, c_.bias ? bias_d.ptr() : nullptr, dparams, db, dcache, out_v);
    gpu_.synchronize();

    const double tol = tolerance(dtype_);
    if (T > 0) {
      std::vector<float> out_g = out_d.floats();
      out_g.resize(out_c.size());
      EXPECT_TRUE(close(out_g, out_c, tol, "attention output"));
      if (!masked) {  // the generation kernel leaves qkv as it was
        std::vector<float> qkv_g = qkv_d.floats();
        qkv_g.resize(qkv_c.size());
        EXPECT_TRUE(close(qkv_g, qkv_c, tol, "processed qkv"));
      }
    }
    for (int i = 0; i < B; ++i) n_past_[i] += n_new[i];
    compare_cache(tol);
  }

  const std::vector<int>& n_past() const { return n_past_; }

 private:
  // Keys and values of every position held so far, CPU vs GPU.
  void compare_cache(double tol) {
    const std::vector<float> kg = kd_->floats(), vg = vd_->floats();
    std::vector<float> want_k, want_v, got_k, got_v;
    for (size_t i = 0; i < lengths_.size(); ++i)
      for (int p = 0; p < n_past_[i]; ++p)
        for (int g = 0; g < c_.nkv; ++g) {
          const size_t block = tables_[i * max_blocks_ + p / kBlockSize];
          const size_t at = ((block * c_.nkv + g) * kBlockSize + p % kBlockSize) * c_.hd;
          want_k.insert(want_k.end(), kc_.begin() + at, kc_.begin() + at + c_.hd);
          want_v.insert(want_v.end(), vc_.begin() + at, vc_.begin() + at + c_.hd);
          got_k.insert(got_k.end(), kg.begin() + at, kg.begin() + at + c_.hd);
          got_v.insert(got_v.end(), vg.begin() + at, vg.begin() + at + c_.hd);
        }
    EXPECT_TRUE(close(got_k, want_k, tol, "cached keys"));
    EXPECT_TRUE(close(got_v, want_v, tol, "cached values"));
    // Slots of no position stay untouched (NaN) on the GPU.
    size_t written = 0;
    for (float x : kg) written += !std::isnan(x);
    EXPECT_EQ(written, want_k.size()) << "keys written outside the sequences' positions";
  }

  Backend& cpu_;
  Backend& gpu_;
  AttnCase c_;
  DType dtype_;
  std::vector<int> lengths_, n_past_;
  std::vector<float> bias_, sinks_;
  std::vector<std::vector<float>> raw_;
  int num_blocks_ = 0, max_blocks_ = 0;
  std::vector<int32_t> tables_;
  std::vector<float> kc_, vc_;
  std::unique_ptr<DeviceTensor> kd_, vd_;
};

// (case, dtype, masked_attention_partition of the GPU backend: 0 automatic, 16 / 48 always
// multi-block with partitions aligned / not aligned to the KV blocks).
using Param = std::tuple<AttnCase, DType, int>;

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto& [c, dtype, partition] = info.param;
  return std::string(c.name) + "_" + to_string(dtype) +
         (partition == 0 ? std::string() : "_split" + std::to_string(partition));
}

class CudaAttention : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    const std::string why = testing::cuda_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    cpu = make_cpu_backend(0);
    gpu = testing::make_test_cuda_backend(std::get<2>(GetParam()));
  }
  std::unique_ptr<Backend> cpu, gpu;
};

// Four sequences: prefill in two chunks (sequence 1 has nothing new in the second), then
// three generation steps; lengths cross the 16-position blocks at every phase.
TEST_P(CudaAttention, PrefillInChunksThenGenerate) {
  const auto& [c, dtype, partition] = GetParam();
  PagedPair pair(*cpu, *gpu, c, dtype, {19, 43, 24, 36}, 7);
  pair.step({13, 40, 1, 17}, false, "prefill chunk 1");
  pair.step({3, 0, 20, 16}, false, "prefill chunk 2 (n_past > 0)");
  for (int s = 0; s < 3; ++s) pair.step({1, 1, 1, 1}, true, "generation step " + std::to_string(s));
}

// Context attention over a single token, and generation from an empty cache (position 0).
TEST_P(CudaAttention, SingleTokenSteps) {
  const auto& [c, dtype, partition] = GetParam();
  PagedPair pair(*cpu, *gpu, c, dtype, {3, 2}, 11);
  pair.step({1, 0}, false, "context, one token");
  pair.step({1, 1}, true, "generation at positions 1 and 0");
  pair.step({1, 1}, true, "generation at positions 2 and 1");
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaAttention,
                         ::testing::Combine(::testing::ValuesIn(kCases),
                                            ::testing::Values(DType::f32, DType::f16, DType::bf16),
                                            ::testing::Values(0)),
                         param_name);
INSTANTIATE_TEST_SUITE_P(MultiBlock, CudaAttention,
                         ::testing::Combine(::testing::Values(kCases[1], kCases[3], kCases[5], kCases[6]),
                                            ::testing::Values(DType::f32, DType::f16),
                                            ::testing::Values(16, 48)),
                         param_name);

// Long sequences with few heads: the automatic policy takes the multi-block path; the same
// steps with multi-block off run the one-block kernel over many key chunks.
class CudaLongAttention : public ::testing::TestWithParam<std::tuple<DType, int>> {
 protected:
  void SetUp() override {
    const std::string why = testing::cuda_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    cpu = make_cpu_backend(0);
    gpu = testing::make_test_cuda_backend(std::get<1>(GetParam()));
  }
  std::unique_ptr<Backend> cpu, gpu;
};

TEST_P(CudaLongAttention, LongSequencesMatchCpu) {
  const auto& [dtype, partition] = GetParam();
  const AttnCase c{"long_gqa4_hd128", 8, 2, 128, RotaryStyle::neox, 0, false};
  PagedPair pair(*cpu, *gpu, c, dtype, {1203, 700}, 21);
  pair.step({1100, 650}, false, "prefill");
  for (int s = 0; s < 3; ++s) pair.step({1, 1}, true, "generation step " + std::to_string(s));
}

// A sliding window of 100 over the same long sequences: most partitions of the multi-block
// path fall entirely before the window.
TEST_P(CudaLongAttention, LongSequencesWithASlidingWindowMatchCpu) {
  const auto& [dtype, partition] = GetParam();
  const AttnCase c{"long_window100", 8, 2, 128, RotaryStyle::neox, 0, false, 10000.0f, 1.0f, 100};
  PagedPair pair(*cpu, *gpu, c, dtype, {1203, 700}, 22);
  pair.step({1100, 650}, false, "prefill");
  for (int s = 0; s < 3; ++s) pair.step({1, 1}, true, "generation step " + std::to_string(s));
}

// Gemma 2's local layers: a window of 100 and scores soft-capped at 2.
TEST_P(CudaLongAttention, LongSequencesWithWindowAndSoftcapMatchCpu) {
  const auto& [dtype, partition] = GetParam();
  const AttnCase c{"long_window100_softcap", 8, 4, 128, RotaryStyle::neox, 0, false, 10000.0f, 1.0f, 100, 2.0f};
  PagedPair pair(*cpu, *gpu, c, dtype, {1203, 700}, 23);
  pair.step({1100, 650}, false, "prefill");
  for (int s = 0; s < 3; ++s) pair.step({1, 1}, true, "generation step " + std::to_string(s));
}

// gpt-oss's attention sinks over long sequences: the multi-block path merges the partitions
// before the sink joins the denominator.
TEST_P(CudaLongAttention, LongSequencesWithSinksMatchCpu) {
  const auto& [dtype, partition] = GetParam();
  const AttnCase c{"long_sinks", 8, 2, 64, RotaryStyle::neox, 0, true, 10000.0f, 1.0f, 0, 0.0f, true};
  PagedPair pair(*cpu, *gpu, c, dtype, {1203, 700}, 24);
  pair.step({1100, 650}, false, "prefill");
  for (int s = 0; s < 3; ++s) pair.step({1, 1}, true, "generation step " + std::to_string(s));
}

INSTANTIATE_TEST_SUITE_P(Modes, CudaLongAttention,
                         ::testing::Combine(::testing::Values(DType::f32, DType::f16, DType::bf16),
                                            ::testing::Values(0, -1)),
                         [](const ::testing::TestParamInfo<std::tuple<DType, int>>& info) {
                           return std::string(to_string(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) == 0 ? "_auto" : "_single_block");
                         });

}  // namespace
}  // namespace kestrel
