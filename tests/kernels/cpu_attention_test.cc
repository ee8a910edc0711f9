// The CPU backend's context_attention and masked_attention against a naive attention over
// contiguous (non-paged) K/V written here, plus consistency between the two entry points.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "backend.h"
#include "core/half.h"
#include "cpu_test_util.h"
#include "kernel_test_cases.h"
#include "kestrel/error.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::all_near;
using testing::PagedLayout;
using testing::random_floats;
using testing::view;

constexpr int kBlockSize = 16;
constexpr double kTol = 1e-5;
// Against the naive attention over the same f16-rounded keys and values: the op rounds its
// own f32 k and v, which may land one f16 step from the naive model's double-derived ones.
constexpr double kTolF16Cache = 1e-3;

struct AttnConfig {
  int nh, nkv, hd;
  RotaryStyle style;
  int rotary_dim;  // 0 = head size
  bool bias;
  float theta = 10000.0f;
  float position_scale = 1.0f;  // linear rope scaling, folded into the table
  int window = 0;               // sliding window (0 = off)
  float softcap = 0.0f;         // attention logit soft-capping (0 = off)
  DType kv = DType::f32;        // the cache's element type: f32 or f16
  bool sinks = false;           // a random attention-sink logit per head (gpt-oss)

  int width() const { return (nh + 2 * nkv) * hd; }
  int rot() const { return style == RotaryStyle::none ? 0 : (rotary_dim ? rotary_dim : hd); }
  // The rotary inverse-frequency table a model would compute: [rot / 2].
  std::vector<float> inv_freq() const {
    std::vector<float> f(static_cast<size_t>(rot() / 2));
    for (int j = 0; j < rot() / 2; ++j)
      f[j] = static_cast<float>(std::pow(static_cast<double>(theta), -2.0 * j / rot()) * position_scale);
    return f;
  }
  // `table`: inv_freq(), `sinks`: [nh] or empty, kept alive by the caller.
  AttentionParams params(std::vector<float>& table, std::vector<float>& sinks) const {
    AttentionParams p;
    p.n_heads = nh;
    p.n_kv_heads = nkv;
    p.head_dim = hd;
    p.scale = static_cast<float>(1.0 / std::sqrt(hd));
    p.rotary = {style, rotary_dim, view(table, {static_cast<int64_t>(table.size())})};
    p.sliding_window = window;
    p.logit_softcap = softcap;
    if (!sinks.empty()) p.sinks = view(sinks, {nh});
    return p;
  }
};

std::string describe(const AttnConfig& c) {
  const char* style = c.style == RotaryStyle::none   ? "none"
                      : c.style == RotaryStyle::neox ? "neox"
                                                     : "gptj";
  return "nh" + std::to_string(c.nh) + "_nkv" + std::to_string(c.nkv) + "_hd" +
         std::to_string(c.hd) + "_" + style + std::to_string(c.rotary_dim) +
         (c.bias ? "_bias" : "") + (c.window ? "_window" + std::to_string(c.window) : "") +
         (c.softcap > 0 ? "_softcap" : "") + (c.sinks ? "_sinks" : "") + (c.kv == DType::f16 ? "_f16cache" : "");
}
std::string config_name(const ::testing::TestParamInfo<AttnConfig>& info) {
  return describe(info.param);
}
void PrintTo(const AttnConfig& c, std::ostream* os) { *os << describe(c); }

// The K or V pool of a paged cache in f32 or f16, NaN where nothing was written: reading
// such a slot poisons the output.
class CacheStore {
 public:
  CacheStore(DType dtype, size_t size) : dtype_(dtype) {
    if (dtype == DType::f16) f16_.assign(size, 0x7e00);  // an f16 NaN
    else f32_.assign(size, NAN);
  }
  // Stores x as the cache holds it (rounded to f16 in an f16 cache).
  void set(size_t i, double x) {
    if (dtype_ == DType::f16) f16_[i] = f32_to_f16(static_cast<float>(x));
    else f32_[i] = static_cast<float>(x);
  }
  float get(size_t i) const { return dtype_ == DType::f16 ? f16_to_f32(f16_[i]) : f32_[i]; }
  void* data() { return dtype_ == DType::f16 ? static_cast<void*>(f16_.data()) : f32_.data(); }
  // What the cache holds for x: x itself in f32 (the naive model keeps doubles), x rounded
  // to f16 in an f16 cache.
  double held(double x) const {
    return dtype_ == DType::f16 ? static_cast<double>(f16_to_f32(f32_to_f16(static_cast<float>(x)))) : x;
  }

 private:
  DType dtype_;
  std::vector<float> f32_;
  std::vector<uint16_t> f16_;
};

// Several sequences over one paged cache. All raw qkv rows (before bias and rotary) are drawn
// up front for every position a sequence will ever hold; the naive model keeps the processed
// q, k, v of every position contiguously in double.
class PagedAttentionRun {
 public:
  PagedAttentionRun(const AttnConfig& cfg, std::vector<int> final_lengths, uint64_t seed)
      : cfg_(cfg), inv_freq_(cfg.inv_freq()), lengths_(std::move(final_lengths)), n_past_(lengths_.size(), 0) {
    const int B = static_cast<int>(lengths_.size());
    bias_ = cfg.bias ? random_floats(cfg.width(), seed) : std::vector<float>(cfg.width(), 0.0f);
    // Sinks around the scores' range (|scale q.k| is a few units here), so that they sometimes
    // hold the max and sometimes not.
    if (cfg.sinks) sinks_ = random_floats(static_cast<size_t>(cfg.nh), seed + 1000, -3.0f, 3.0f);
    for (int i = 0; i < B; ++i) {
      raw_.push_back(random_floats(static_cast<size_t>(lengths_[i]) * cfg.width(), seed + 1 + i));
      processed_.push_back(naive_process(raw_[i], lengths_[i]));
    }
    // Shuffled, non-contiguous block tables with a few spare blocks; unused entries are -1.
    const PagedLayout layout(lengths_, kBlockSize, /*spare=*/3, seed);
    tables_ = layout.tables;
    max_blocks_ = layout.max_blocks;
    num_blocks_ = layout.num_blocks;
    const size_t cache_size = static_cast<size_t>(num_blocks_) * cfg.nkv * kBlockSize * cfg.hd;
    cache_k_ = std::make_unique<CacheStore>(cfg.kv, cache_size);
    cache_v_ = std::make_unique<CacheStore>(cfg.kv, cache_size);
  }

  // Writes positions [0, n_past[i]) of each sequence straight into the cache, as an earlier
  // step would have left them.
  void prefill(const std::vector<int>& n_past) {
    for (size_t i = 0; i < lengths_.size(); ++i) {
      for (int p = 0; p < n_past[i]; ++p)
        for (int g = 0; g < cfg_.nkv; ++g)
          for (int d = 0; d < cfg_.hd; ++d) {
            cache_k_->set(slot(i, p, g) + d, processed_[i][p * cfg_.width() + (cfg_.nh + g) * cfg_.hd + d]);
            cache_v_->set(slot(i, p, g) + d, processed_[i][p * cfg_.width() + (cfg_.nh + cfg_.nkv + g) * cfg_.hd + d]);
          }
      n_past_[i] = n_past[i];
    }
  }

  // Naive output for the next n_new[i] tokens of each sequence: [T, nh * hd], over the keys
  // and values as the cache holds them.
  std::vector<double> expected(const std::vector<int>& n_new) const {
    std::vector<double> out;
    const int hd = cfg_.hd, W = cfg_.width(), group = cfg_.nh / cfg_.nkv;
    for (size_t i = 0; i < lengths_.size(); ++i) {
      const std::vector<double>& x = processed_[i];
      for (int p = n_past_[i]; p < n_past_[i] + n_new[i]; ++p)
        for (int h = 0; h < cfg_.nh; ++h) {
          const int g = h / group;
          // Positions before the window get no weight.
          const int first = cfg_.window > 0 ? std::max(0, p - cfg_.window + 1) : 0;
          std::vector<double> scores(p + 1, -INFINITY);
          for (int j = first; j <= p; ++j) {
            double dot = 0;
            for (int d = 0; d < hd; ++d)
              dot += x[p * W + h * hd + d] * cache_k_->held(x[j * W + (cfg_.nh + g) * hd + d]);
            scores[j] = dot / std::sqrt(hd);
            if (cfg_.softcap > 0) scores[j] = std::tanh(scores[j] / cfg_.softcap) * cfg_.softcap;
          }
          // A sink is one more logit in the softmax, with no value row.
          const double sink = sinks_.empty() ? -INFINITY : sinks_[h];
          const double m = std::max(sink, *std::max_element(scores.begin(), scores.end()));
          double sum = sinks_.empty() ? 0.0 : std::exp(sink - m);
          for (double& s : scores) sum += (s = std::exp(s - m));
          for (int d = 0; d < hd; ++d) {
            double acc = 0;
            for (int j = 0; j <= p; ++j)
              acc += scores[j] / sum * cache_v_->held(x[j * W + (cfg_.nh + cfg_.nkv + g) * hd + d]);
            out.push_back(acc);
          }
        }
    }
    return out;
  }

  // Runs one step (context or masked) over the next n_new[i] tokens of each sequence and
  // returns its output; checks the q / k written in place and the cache slots it filled.
  std::vector<float> run(Backend& backend, const std::vector<int>& n_new, bool masked) {
    const int B = static_cast<int>(lengths_.size()), W = cfg_.width();
    std::vector<int32_t> offsets(B + 1, 0), n_past(B);
    std::vector<float> qkv;
    int max_new = 0, max_total = 0;
    for (int i = 0; i < B; ++i) {
      offsets[i + 1] = offsets[i] + n_new[i];
      n_past[i] = n_past_[i];
      max_new = std::max(max_new, n_new[i]);
      max_total = std::max(max_total, n_past_[i] + n_new[i]);
      qkv.insert(qkv.end(), raw_[i].begin() + static_cast<size_t>(n_past_[i]) * W,
                 raw_[i].begin() + static_cast<size_t>(n_past_[i] + n_new[i]) * W);
    }
    const int T = offsets[B];
    SequenceBatch batch;
    batch.n_seqs = B;
    batch.max_blocks_per_seq = max_blocks_;
    batch.max_new_tokens = max_new;
    batch.max_total_tokens = max_total;
    batch.token_offsets = view(offsets, {B + 1});
    batch.n_past = view(n_past, {B});
    batch.block_tables = view(tables_, {B, max_blocks_});
    std::vector<float> out(static_cast<size_t>(T) * cfg_.nh * cfg_.hd, NAN);
    TensorView bias = view(bias_, {W});
    const AttentionParams params = cfg_.params(inv_freq_, sinks_);
    if (masked)
      backend.masked_attention(view(qkv, {T, W}), cfg_.bias ? &bias : nullptr, params, batch,
                               cache(), view(out, {T, cfg_.nh * cfg_.hd}));
    else
      backend.context_attention(view(qkv, {T, W}), cfg_.bias ? &bias : nullptr, params, batch,
                                cache(), view(out, {T, cfg_.nh * cfg_.hd}));

    // q and k rotated (and biased) in place; the cache holds the new k and v.
    std::vector<float> got_q, got_k, got_v;
    std::vector<double> want_q, want_k, want_v;
    int t = 0;
    for (int i = 0; i < B; ++i)
      for (int p = n_past_[i]; p < n_past_[i] + n_new[i]; ++p, ++t) {
        for (int e = 0; e < (cfg_.nh + cfg_.nkv) * cfg_.hd; ++e) {
          got_q.push_back(qkv[t * W + e]);
          want_q.push_back(processed_[i][p * W + e]);
        }
        for (int g = 0; g < cfg_.nkv; ++g)
          for (int d = 0; d < cfg_.hd; ++d) {
            got_k.push_back(cache_k_->get(slot(i, p, g) + d));
            got_v.push_back(cache_v_->get(slot(i, p, g) + d));
            want_k.push_back(cache_k_->held(processed_[i][p * W + (cfg_.nh + g) * cfg_.hd + d]));
            want_v.push_back(cache_v_->held(processed_[i][p * W + (cfg_.nh + cfg_.nkv + g) * cfg_.hd + d]));
          }
      }
    EXPECT_TRUE(all_near(got_q, want_q, kTol)) << "q and k heads of qkv after the op";
    EXPECT_TRUE(all_near(got_k, want_k, output_tolerance())) << "keys in the cache";
    EXPECT_TRUE(all_near(got_v, want_v, output_tolerance())) << "values in the cache";
    // f16: rounded to nearest, all but the rare value whose f32 sits at an f16 rounding boundary
    // hold exactly the naive model's rounding.
    if (cfg_.kv == DType::f16) {
      size_t exact = 0;
      for (size_t e = 0; e < got_k.size(); ++e) exact += (got_k[e] == want_k[e]) + (got_v[e] == want_v[e]);
      EXPECT_GE(exact, 2 * got_k.size() * 99 / 100) << "cache entries equal to the naive model's";
    }
    for (int i = 0; i < B; ++i) n_past_[i] += n_new[i];
    return out;
  }

  KvCacheLayer cache() {
    const int64_t nb = num_blocks_;
    return {TensorView(cache_k_->data(), cfg_.kv, {nb, cfg_.nkv, kBlockSize, cfg_.hd}),
            TensorView(cache_v_->data(), cfg_.kv, {nb, cfg_.nkv, kBlockSize, cfg_.hd}),
            kBlockSize};
  }

  // Of the op against expected(): the f32 cache's, or the f16 cache's (see kTolF16Cache).
  double output_tolerance() const { return cfg_.kv == DType::f16 ? kTolF16Cache : kTol; }

 private:
  // Offset of head g at position p of sequence i in the paged cache.
  size_t slot(size_t i, int p, int g) const {
    const int block = tables_[i * max_blocks_ + p / kBlockSize];
    return ((static_cast<size_t>(block) * cfg_.nkv + g) * kBlockSize + p % kBlockSize) * cfg_.hd;
  }

  // Bias, then rotary at each position on the q and k heads, in double.
  std::vector<double> naive_process(const std::vector<float>& raw, int length) const {
    const int W = cfg_.width(), hd = cfg_.hd;
    const int rot = cfg_.rot();
    std::vector<double> x(raw.size());
    for (size_t e = 0; e < raw.size(); ++e) x[e] = static_cast<double>(raw[e]) + bias_[e % W];
    for (int p = 0; p < length; ++p)
      for (int h = 0; h < cfg_.nh + cfg_.nkv; ++h) {
        double* head = &x[p * W + h * hd];
        for (int j = 0; j < rot / 2; ++j) {
          const double angle = p * static_cast<double>(inv_freq_[j]);
          const int a = cfg_.style == RotaryStyle::neox ? j : 2 * j;
          const int b = cfg_.style == RotaryStyle::neox ? j + rot / 2 : 2 * j + 1;
          const double x0 = head[a], x1 = head[b];
          head[a] = x0 * std::cos(angle) - x1 * std::sin(angle);
          head[b] = x1 * std::cos(angle) + x0 * std::sin(angle);
        }
      }
    return x;
  }

  AttnConfig cfg_;
  std::vector<float> inv_freq_;
  std::vector<int> lengths_, n_past_;
  std::vector<float> bias_, sinks_;
  std::vector<std::vector<float>> raw_;
  std::vector<std::vector<double>> processed_;
  std::vector<int32_t> tables_;
  int max_blocks_ = 0, num_blocks_ = 0;
  std::unique_ptr<CacheStore> cache_k_, cache_v_;
};

class CpuAttentionTest : public ::testing::TestWithParam<AttnConfig> {
 protected:
  std::unique_ptr<Backend> backend = make_cpu_backend(2);
};

// Three sequences with mixed lengths, a pre-filled cache and blocks crossed mid-step.
TEST_P(CpuAttentionTest, ContextMatchesNaiveOverPrefilledPagedCache) {
  const std::vector<int> n_past = {0, 21, 40}, n_new = {37, 14, 3};
  PagedAttentionRun run(GetParam(), {37, 35, 43}, 100);
  run.prefill(n_past);
  const std::vector<double> want = run.expected(n_new);
  EXPECT_TRUE(all_near(run.run(*backend, n_new, false), want, run.output_tolerance()));
}

TEST_P(CpuAttentionTest, MaskedEqualsLastRowOfContext) {
  const std::vector<int> lengths = {18, 33, 5};
  PagedAttentionRun whole(GetParam(), lengths, 200), split(GetParam(), lengths, 200);
  const std::vector<float> full = whole.run(*backend, lengths, false);
  split.run(*backend, {17, 32, 4}, false);
  const std::vector<double> want = split.expected({1, 1, 1});
  const std::vector<float> last = split.run(*backend, {1, 1, 1}, true);
  EXPECT_TRUE(all_near(last, want, split.output_tolerance()));
  const int row = GetParam().nh * GetParam().hd;
  std::vector<float> last_rows;
  for (int end : {18, 18 + 33, 18 + 33 + 5})
    last_rows.insert(last_rows.end(), full.begin() + (end - 1) * row, full.begin() + end * row);
  EXPECT_TRUE(all_near(last, last_rows, kTol));
}

TEST_P(CpuAttentionTest, ContextThenMaskedStepsEqualOneContextPass) {
  const std::vector<int> lengths = {20, 35, 9}, prefix = {14, 29, 3};
  PagedAttentionRun whole(GetParam(), lengths, 300), steps(GetParam(), lengths, 300);
  const std::vector<float> full = whole.run(*backend, lengths, false);
  std::vector<std::vector<float>> rows_of(3);  // per sequence, in position order
  const int row = GetParam().nh * GetParam().hd;
  std::vector<float> first = steps.run(*backend, prefix, false);
  for (int i = 0, t = 0; i < 3; t += prefix[i], ++i)
    rows_of[i].assign(first.begin() + t * row, first.begin() + (t + prefix[i]) * row);
  for (int s = 0; s < 6; ++s) {
    std::vector<float> step = steps.run(*backend, {1, 1, 1}, true);
    for (int i = 0; i < 3; ++i)
      rows_of[i].insert(rows_of[i].end(), step.begin() + i * row, step.begin() + (i + 1) * row);
  }
  std::vector<float> stitched;
  for (auto& r : rows_of) stitched.insert(stitched.end(), r.begin(), r.end());
  EXPECT_TRUE(all_near(stitched, full, kTol));
}

// Every shape with an f32 cache, and again with an f16 one.
std::vector<AttnConfig> shapes(DType kv) {
  std::vector<AttnConfig> configs = {AttnConfig{4, 4, 64, RotaryStyle::none, 0, true},
                                           AttnConfig{4, 2, 64, RotaryStyle::neox, 0, false},
                                           AttnConfig{6, 3, 80, RotaryStyle::neox, 32, true},
                                           AttnConfig{4, 1, 128, RotaryStyle::gptj, 64, true},
                                           AttnConfig{8, 1, 64, RotaryStyle::gptj, 0, false},
                                           AttnConfig{2, 2, 80, RotaryStyle::gptj, 0, true},
                                           AttnConfig{4, 2, 128, RotaryStyle::neox, 0, false,
                                                      500000.0f, 0.25f},
                                           AttnConfig{4, 2, 64, RotaryStyle::neox, 0, true, 10000.0f, 1.0f, 5},
                                           AttnConfig{2, 1, 80, RotaryStyle::gptj, 0, false, 10000.0f, 1.0f, 19},
                                           AttnConfig{4, 2, 64, RotaryStyle::neox, 0, false, 10000.0f, 1.0f, 7,
                                                      0.5f},
                                           // gpt-oss: sinks with biases, and with a window
                                           AttnConfig{4, 2, 64, RotaryStyle::neox, 0, true, 10000.0f, 1.0f, 0, 0.0f,
                                                      DType::f32, true},
                                           AttnConfig{4, 2, 64, RotaryStyle::neox, 0, true, 10000.0f, 1.0f, 8, 0.0f,
                                                      DType::f32, true}};
  for (AttnConfig& c : configs) c.kv = kv;
  return configs;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuAttentionTest, ::testing::ValuesIn(shapes(DType::f32)), config_name);
INSTANTIATE_TEST_SUITE_P(ShapesF16Cache, CpuAttentionTest, ::testing::ValuesIn(shapes(DType::f16)), config_name);

TEST(CpuAttentionErrors, RejectsMalformedBatches) {
  auto backend = make_cpu_backend(1);
  const AttnConfig cfg{2, 1, 8, RotaryStyle::neox, 0, false};
  PagedAttentionRun two_tokens(cfg, {2}, 1);
  EXPECT_THROW(two_tokens.run(*backend, {2}, /*masked=*/true), Error);

  // A block id outside the cache.
  std::vector<float> qkv = random_floats(cfg.width(), 2), out(cfg.nh * cfg.hd);
  std::vector<float> k(2 * cfg.nkv * kBlockSize * cfg.hd), v = k;
  std::vector<int32_t> offsets = {0, 1}, n_past = {0}, tables = {2};
  SequenceBatch batch{1, 1, 1, 1, view(offsets, {2}), view(n_past, {1}), view(tables, {1, 1})};
  KvCacheLayer cache{TensorView(k.data(), DType::f32, {2, cfg.nkv, kBlockSize, cfg.hd}),
                     TensorView(v.data(), DType::f32, {2, cfg.nkv, kBlockSize, cfg.hd}),
                     kBlockSize};
  std::vector<float> inv_freq = cfg.inv_freq(), no_sinks;
  const AttentionParams params = cfg.params(inv_freq, no_sinks);
  EXPECT_THROW(backend->context_attention(view(qkv, {1, cfg.width()}), nullptr, params, batch,
                                          cache, view(out, {1, cfg.nh * cfg.hd})),
               Error);
  tables[0] = 1;
  backend->context_attention(view(qkv, {1, cfg.width()}), nullptr, params, batch, cache,
                             view(out, {1, cfg.nh * cfg.hd}));
  // Positions beyond max_total_tokens, a wrong qkv width, a missing scale.
  n_past[0] = 5;
  EXPECT_THROW(backend->context_attention(view(qkv, {1, cfg.width()}), nullptr, params, batch,
                                          cache, view(out, {1, cfg.nh * cfg.hd})),
               Error);
  n_past[0] = 0;
  EXPECT_THROW(backend->context_attention(view(qkv, {2, cfg.width() / 2}), nullptr, params, batch,
                                          cache, view(out, {1, cfg.nh * cfg.hd})),
               Error);
  AttentionParams unscaled = params;
  unscaled.scale = 0.0f;
  EXPECT_THROW(backend->context_attention(view(qkv, {1, cfg.width()}), nullptr, unscaled, batch,
                                          cache, view(out, {1, cfg.nh * cfg.hd})),
               Error);
  // A cache in a type the CPU has no kernels for (bf16).
  std::vector<uint16_t> k16(k.size()), v16(k.size());
  const KvCacheLayer bf16_cache{TensorView(k16.data(), DType::bf16, {2, cfg.nkv, kBlockSize, cfg.hd}),
                                TensorView(v16.data(), DType::bf16, {2, cfg.nkv, kBlockSize, cfg.hd}), kBlockSize};
  try {
    backend->context_attention(view(qkv, {1, cfg.width()}), nullptr, params, batch, bf16_cache,
                               view(out, {1, cfg.nh * cfg.hd}));
    ADD_FAILURE() << "a bf16 cache was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cache.k is bf16"), std::string::npos) << e.what();
  }
  // Sinks that are not [nh].
  std::vector<float> sinks = random_floats(static_cast<size_t>(cfg.nh) + 1, 3);
  AttentionParams long_sinks = params;
  long_sinks.sinks = view(sinks, {cfg.nh + 1});
  EXPECT_THROW(backend->context_attention(view(qkv, {1, cfg.width()}), nullptr, long_sinks, batch,
                                          cache, view(out, {1, cfg.nh * cfg.hd})),
               Error);
  // A rotary table that is not [rot / 2].
  AttentionParams short_table = params;
  short_table.rotary.inv_freq = TensorView(inv_freq.data(), DType::f32, {static_cast<int64_t>(inv_freq.size()) - 1});
  EXPECT_THROW(backend->context_attention(view(qkv, {1, cfg.width()}), nullptr, short_table, batch,
                                          cache, view(out, {1, cfg.nh * cfg.hd})),
               Error);
}

}  // namespace
}  // namespace kestrel
