// The attention row loops (kernels/cpu/attention_rows.h): the AVX2 kernels against a
// double-precision reference and the portable loops on random data, every head size kind
// (multiples of 64, of 8, and not of 8) and run length; and the property the attention relies
// on: a row's result does not depend on how its keys are split into runs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

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

TEST(AttentionRows, BestIsTheProcessorsFastest) {
  const AttentionRowKernels* avx2 = attention_rows_avx2();
  EXPECT_EQ(&attention_rows_best(), avx2 ? avx2 : &attention_rows_portable());
}

}  // namespace
}  // namespace kestrel::cpu
