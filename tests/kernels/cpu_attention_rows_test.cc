// The attention row loops (kernels/cpu/attention_rows.h): the AVX2 kernels against a
// double-precision reference and the portable loops on random data, every head size kind
// (multiples of 64, of 8, and not of 8) and run length; and the property the attention relies
// on: a row's result does not depend on how its keys are split into runs. The f16 cache's
// loops against the f32 ones on the widened values, and its rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "cpu/attention_rows.h"

namespace kestrel::cpu {
namespace {

std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Kernels {
  std::string name;
  const AttentionRowKernels* k;
};

std::vector<Kernels> all_kernels() {
  std::vector<Kernels> out{{"portable", &attention_rows_portable()}};
  if (const AttentionRowKernels* avx2 = attention_rows_avx2()) out.push_back({"avx2", avx2});
  return out;
}

const int kHeadDims[] = {1, 4, 7, 8, 12, 60, 64, 72, 80, 96, 128, 200, 256};
const int kCounts[] = {1, 3, 7, 8, 9, 15, 16, 17, 33};

TEST(AttentionRows, ScoresMatchDoubleReference) {
  std::mt19937 rng(11);
  for (const Kernels& kern : all_kernels())
    for (int hd : kHeadDims)
      for (int count : kCounts) {
        const auto q = random_floats(hd, rng), k = random_floats(static_cast<size_t>(count) * hd, rng);
        std::vector<float> out(count, NAN);
        kern.k->scores(q.data(), k.data(), count, hd, out.data());
        for (int i = 0; i < count; ++i) {
          double ref = 0.0, mag = 0.0;
          for (int d = 0; d < hd; ++d) {
            ref += static_cast<double>(q[d]) * k[static_cast<size_t>(i) * hd + d];
            mag += std::fabs(static_cast<double>(q[d]) * k[static_cast<size_t>(i) * hd + d]);
          }
          // f32 summation of hd products: a few ulps of the magnitude sum.
          EXPECT_NEAR(out[i], ref, 1e-6 * mag + 1e-7)
              << kern.name << " hd " << hd << " count " << count << " key " << i;
        }
      }
}

TEST(AttentionRows, AccumulateMatchesDoubleReference) {
  std::mt19937 rng(12);
  for (const Kernels& kern : all_kernels())
    for (int hd : kHeadDims)
      for (int count : kCounts) {
        const auto w = random_floats(count, rng), v = random_floats(static_cast<size_t>(count) * hd, rng);
        auto acc = random_floats(hd, rng);
        const auto acc0 = acc;
        kern.k->accumulate(w.data(), v.data(), count, hd, acc.data());
        for (int d = 0; d < hd; ++d) {
          double ref = acc0[d], mag = std::fabs(acc0[d]);
          for (int i = 0; i < count; ++i) {
            ref += static_cast<double>(w[i]) * v[static_cast<size_t>(i) * hd + d];
            mag += std::fabs(static_cast<double>(w[i]) * v[static_cast<size_t>(i) * hd + d]);
          }
          EXPECT_NEAR(acc[d], ref, 1e-6 * mag + 1e-7) << kern.name << " hd " << hd << " count " << count << " dim " << d;
        }
      }
}

// Each key's score is the same bits whether it is computed in a run of 33, alone, or at any
// offset of a run; each accumulated element the same whether the values come in one run or
// in several (positions ascending).
TEST(AttentionRows, ResultsDoNotDependOnHowRunsAreSplit) {
  std::mt19937 rng(13);
  for (const Kernels& kern : all_kernels())
    for (int hd : kHeadDims) {
      const int count = 33;
      const auto q = random_floats(hd, rng), k = random_floats(static_cast<size_t>(count) * hd, rng);
      std::vector<float> whole(count), alone(count), split(count);
      kern.k->scores(q.data(), k.data(), count, hd, whole.data());
      for (int i = 0; i < count; ++i) kern.k->scores(q.data(), k.data() + static_cast<size_t>(i) * hd, 1, hd, &alone[i]);
      for (int i0 = 0; i0 < count;) {  // runs of 5, 11, 5, 11, ... as block boundaries cut them
        const int n = std::min(count - i0, i0 % 2 ? 11 : 5);
        kern.k->scores(q.data(), k.data() + static_cast<size_t>(i0) * hd, n, hd, &split[i0]);
        i0 += n;
      }
      EXPECT_EQ(0, std::memcmp(whole.data(), alone.data(), count * sizeof(float))) << kern.name << " hd " << hd;
      EXPECT_EQ(0, std::memcmp(whole.data(), split.data(), count * sizeof(float))) << kern.name << " hd " << hd;

      const auto w = random_floats(count, rng), v = random_floats(static_cast<size_t>(count) * hd, rng);
      std::vector<float> a(hd, 0.0f), b(hd, 0.0f);
      kern.k->accumulate(w.data(), v.data(), count, hd, a.data());
      for (int i0 = 0; i0 < count; i0 += 7)
        kern.k->accumulate(w.data() + i0, v.data() + static_cast<size_t>(i0) * hd, std::min(7, count - i0), hd, b.data());
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), hd * sizeof(float))) << kern.name << " hd " << hd;
    }
}

// f16 rows of random values (normal, large, tiny, subnormal in f16) as the cache holds them.
std::vector<uint16_t> random_f16(size_t n, std::mt19937& rng) {
  std::vector<uint16_t> out(n);
  std::uniform_int_distribution<int> kind(0, 9);
  for (uint16_t& h : out) {
    const int k = kind(rng);
    const float scale = k == 0 ? 3e-6f : k == 1 ? 2000.0f : 1.0f;
    h = f32_to_f16(random_floats(1, rng, scale)[0]);
  }
  return out;
}

std::vector<float> widen(const std::vector<uint16_t>& h) {
  std::vector<float> out(h.size());
  for (size_t i = 0; i < h.size(); ++i) out[i] = f16_to_f32(h[i]);
  return out;
}

// The f16 loops compute, bit for bit, what the same kernel's f32 loops compute on the rows
// widened to f32: one arithmetic, whatever the cache holds.
TEST(AttentionRows, F16RowsAreTheF32RowsOfTheWidenedValues) {
  std::mt19937 rng(14);
  for (const Kernels& kern : all_kernels())
    for (int hd : kHeadDims)
      for (int count : kCounts) {
        const auto q = random_floats(hd, rng);
        const auto k = random_f16(static_cast<size_t>(count) * hd, rng), v = random_f16(k.size(), rng);
        const auto k32 = widen(k), v32 = widen(v), w = random_floats(count, rng);
        std::vector<float> s16(count, NAN), s32(count, NAN);
        kern.k->scores_f16(q.data(), k.data(), count, hd, s16.data());
        kern.k->scores(q.data(), k32.data(), count, hd, s32.data());
        EXPECT_EQ(0, std::memcmp(s16.data(), s32.data(), count * sizeof(float)))
            << kern.name << " scores, hd " << hd << " count " << count;
        auto a16 = random_floats(hd, rng);
        auto a32 = a16;
        kern.k->accumulate_f16(w.data(), v.data(), count, hd, a16.data());
        kern.k->accumulate(w.data(), v32.data(), count, hd, a32.data());
        EXPECT_EQ(0, std::memcmp(a16.data(), a32.data(), hd * sizeof(float)))
            << kern.name << " accumulate, hd " << hd << " count " << count;
      }
}

// Writing rounds to nearest even as f32_to_f16 does (core/half.h), every kernel bit for bit:
// normal values, ties, values past the f16 range, f16 subnormals, zeros and infinities.
TEST(AttentionRows, ToF16RoundsToNearestEven) {
  std::mt19937 rng(15);
  std::vector<float> src = random_floats(1000, rng);
  for (float scale : {1e-7f, 3e-5f, 100.0f, 7e4f}) {
    const auto more = random_floats(200, rng, scale);
    src.insert(src.end(), more.begin(), more.end());
  }
  const size_t special = src.size();
  // Exact ties between two f16 values (1 + 2^-11 lies halfway between 1 and 1 + 2^-10),
  // the largest f16 and the first value that rounds past it.
  for (float x : {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, -(2.0f + 0x1p-10f), 65504.0f, 65520.0f, 65519.0f, 0.0f, -0.0f,
                  INFINITY, -INFINITY, 0x1p-25f, 0x1p-24f, 3 * 0x1p-26f})
    src.push_back(x);
  std::vector<uint16_t> want(src.size());
  for (size_t i = 0; i < src.size(); ++i) want[i] = f32_to_f16(src[i]);
  EXPECT_EQ(want[special], 0x3c00) << "1 + 2^-11 ties to even (1.0)";
  EXPECT_EQ(want[special + 1], 0x3c02) << "1 + 3 * 2^-11 ties to even (1 + 2^-9)";
  EXPECT_EQ(want[special + 4], 0x7c00) << "65520 rounds to infinity";
  for (const Kernels& kern : all_kernels())
    for (int n : {1, 7, 8, 9, 64, static_cast<int>(src.size())}) {
      std::vector<uint16_t> got(static_cast<size_t>(n), 0xffff);
      kern.k->to_f16(src.data() + src.size() - n, n, got.data());
      EXPECT_EQ(0, std::memcmp(got.data(), want.data() + want.size() - n, n * sizeof(uint16_t)))
          << kern.name << " n " << n;
    }
}

// The softmax numerators against std::exp in double: within a few ulps where e^x is a normal
// float, at most e^-87 below; the sum within the f32 values' rounding; a NaN stays NaN.
TEST(AttentionRows, ExpSumMatchesStdExp) {
  std::mt19937 rng(16);
  for (const Kernels& kern : all_kernels())
    for (int n : {1, 5, 8, 9, 16, 23, 64, 555}) {
      std::vector<float> s = random_floats(static_cast<size_t>(n), rng, 6.0f);
      if (n > 20) s[3] = -95.0f, s[11] = -86.0f, s[17] = -20.0f;  // past and near the underflow clamp
      const float max = *std::max_element(s.begin(), s.end());
      std::vector<float> got = s;
      const double sum = kern.k->exp_sum(got.data(), n, max);
      double want_sum = 0.0;
      for (int i = 0; i < n; ++i) {
        const float x = s[i] - max;  // the kernels' argument, rounded to f32 as theirs is
        const double want = std::exp(static_cast<double>(x));
        want_sum += want;
        if (x >= -87.0f)
          EXPECT_NEAR(got[i], want, 3e-7 * want) << kern.name << " n " << n << " x " << x;
        else
          EXPECT_LE(got[i], 1.2e-38f) << kern.name << " n " << n << " x " << x;
        EXPECT_GE(got[i], 0.0f);
      }
      double got_sum = 0.0;
      for (float g : got) got_sum += g;
      EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum) << kern.name << " n " << n;
      EXPECT_NEAR(sum, got_sum, 1e-12 * want_sum) << kern.name << " n " << n << ": the sum of what it wrote";
      EXPECT_EQ(got[static_cast<size_t>(std::distance(s.begin(), std::max_element(s.begin(), s.end())))], 1.0f)
          << kern.name << " e^0";
      std::vector<float> poisoned = s;
      poisoned[static_cast<size_t>(n) / 2] = NAN;
      EXPECT_TRUE(std::isnan(kern.k->exp_sum(poisoned.data(), n, max))) << kern.name << " n " << n;
      EXPECT_TRUE(std::isnan(poisoned[static_cast<size_t>(n) / 2])) << kern.name << " n " << n;
    }
}

TEST(AttentionRows, BestIsTheProcessorsFastest) {
  const AttentionRowKernels* avx2 = attention_rows_avx2();
  EXPECT_EQ(&attention_rows_best(), avx2 ? avx2 : &attention_rows_portable());
}

}  // namespace
}  // namespace kestrel::cpu
