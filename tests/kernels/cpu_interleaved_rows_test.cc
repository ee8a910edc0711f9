// The CPU's interleaved int4 layout (kernels/cpu/interleaved_rows.h), on random weights
// and activations: every row gathers back to the plain layout exactly; every kernel path
// that reads it gives the plain layout's bits (the f32 paths) or the same integers summed
// in another float order (the 8-bit-activation rows, which agree bit for bit across
// instruction sets and token counts); the lookup of an embedding table; what
// prepare_quantized takes; and the checks that keep the layout on the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cpu/cpu_ops.h"
#include "cpu/interleaved_rows.h"
#include "cpu/quantized_q8_cpu.h"
#include "kestrel/error.h"
#include "kquant_blocks.h"
#include "models/quantize.h"
#include "op_checks.h"
#include "quant_test_util.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::random_floats;

struct Shape {
  QuantFormat format;
  int64_t M, K;
  int group;
};
// K a multiple of the group, and not (int4's padded last group: 96 in groups of 64, 576 of
// 128; int8's short last group).
std::vector<Shape> shapes() {
  std::vector<Shape> out;
  for (QuantFormat f : {QuantFormat::int4, QuantFormat::int8})
    for (Shape s :
         std::vector<Shape>{{f, 8, 32, 32}, {f, 48, 96, 64}, {f, 136, 576, 128}, {f, 16, 576, 32}, {f, 24, 256, 256}})
      out.push_back(s);
  out.push_back({QuantFormat::int8, 32, 576, 576});  // one group per row
  for (QuantFormat f : {QuantFormat::q4_0, QuantFormat::q5_0, QuantFormat::q5_1, QuantFormat::iq4_nl})
    for (Shape s : std::vector<Shape>{{f, 8, 32, 32}, {f, 48, 96, 32}, {f, 16, 576, 32}}) out.push_back(s);
  for (QuantFormat f : {QuantFormat::q4_k, QuantFormat::q5_k, QuantFormat::q6_k, QuantFormat::iq4_xs, QuantFormat::q2_k,
                        QuantFormat::q3_k})
    for (Shape s : std::vector<Shape>{{f, 8, 256, 256}, {f, 24, 768, 256}}) out.push_back(s);
  return out;
}
const std::vector<Shape> kShapes = shapes();

std::string name(const Shape& s) {
  return std::string(to_string(s.format)) + " " + std::to_string(s.M) + "x" + std::to_string(s.K) + " g" +
         std::to_string(s.group);
}

HostQuantizedWeight random_weight(const Shape& s, uint64_t seed) {
  const std::vector<float> dense = random_floats(static_cast<size_t>(s.M * s.K), seed, -1.5f, 1.0f);
  if (kquant::is_block_format(s.format))
    return testing::random_quantized({s.format, s.group, s.M, s.K, 1, false}, seed);
  return s.format == QuantFormat::int4 ? quantize_int4(dense.data(), s.M, s.K, s.group)
                                       : quantize_int8(dense.data(), s.M, s.K, s.group);
}

// A copy of q in the interleaved layout (its own buffers).
struct Interleaved {
  HostQuantizedWeight host;
  QuantizedWeight view;
  explicit Interleaved(const HostQuantizedWeight& q, bool precise = false) : host(q), view(host.view()) {
    view.precise_activations = precise;
    cpu::interleave_rows(view);
  }
};

std::vector<float> run(const std::vector<float>& x, int64_t T, const QuantizedWeight& w, const float* bias,
                       cpu::QuantKernel kernel, int threads = 2) {
  std::vector<float> out(static_cast<size_t>(T * w.rows), NAN);
  const TensorView bias_view(const_cast<float*>(bias), DType::f32, {w.rows});
  cpu::quantized_linear(TensorView(const_cast<float*>(x.data()), DType::f32, {T, w.cols}), w,
                        bias ? &bias_view : nullptr, TensorView(out.data(), DType::f32, {T, w.rows}), threads, kernel);
  return out;
}

std::vector<float> run_q8(const std::vector<float>& x, int64_t T, const QuantizedWeight& w, const float* bias,
                          cpu::Q8Isa isa, int threads) {
  std::vector<float> out(static_cast<size_t>(T * w.rows), NAN);
  cpu::q8_dot_path(TensorView(const_cast<float*>(x.data()), DType::f32, {T, w.cols}), w, bias, out.data(), threads,
                   isa);
  return out;
}

TEST(InterleavedRows, RowsGatherBackToThePlainLayout) {
  for (const Shape& s : kShapes) {
    HostQuantizedWeight q = random_weight(s, 11 + s.M);
    const QuantizedWeight plain = q.view();
    Interleaved il(q);
    ASSERT_EQ(il.view.interleave, cpu::kInterleaveRows);
    // The bytes moved: a layout that changed nothing would pass the checks below too.
    EXPECT_NE(il.host.data, q.data) << name(s);
    const bool int4 = s.format == QuantFormat::int4, blocks = kquant::is_block_format(s.format);
    const int64_t G = plain.groups();
    const int64_t row_bytes = blocks ? G * kquant::block_bytes(s.format) : int4 ? G * plain.group_size / 2 : s.K;
    cpu::PlainRowScratch a, b;
    for (int64_t m = 0; m < s.M; ++m) {
      const cpu::PlainRow want = cpu::plain_row(plain, m, a), got = cpu::plain_row(il.view, m, b);
      for (int64_t i = 0; i < row_bytes; ++i)
        ASSERT_EQ(got.q[i], want.q[i]) << name(s) << " row " << m << " byte " << i;
      if (blocks) continue;  // their scales are in their blocks
      ASSERT_EQ(std::memcmp(got.scales, want.scales, static_cast<size_t>(G) * (int4 ? 2 : 4)), 0)
          << name(s) << " row " << m;
      if (int4) {
        ASSERT_EQ(std::memcmp(got.mins, want.mins, static_cast<size_t>(G) * 2), 0) << name(s) << " row " << m;
      }
    }
    std::vector<float> want(static_cast<size_t>(s.M * s.K)), got(want.size());
    cpu::dequantize_weight(plain, want.data());
    cpu::dequantize_weight(il.view, got.data());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << name(s);  // signed zeros too
  }
}

// The f32-activation paths gather each row back: the plain layout's bits.
TEST(InterleavedRows, FloatPathsGiveThePlainLayoutsBits) {
  for (const Shape& s : kShapes) {
    HostQuantizedWeight q = random_weight(s, 21 + s.K);
    Interleaved il(q);
    const std::vector<float> bias = random_floats(static_cast<size_t>(s.M), 22, -1.0f, 1.0f);
    for (int64_t T : {1, 5, 40}) {
      const std::vector<float> x = random_floats(static_cast<size_t>(T * s.K), 23 + T, -2.0f, 2.0f);
      for (auto kernel : {cpu::QuantKernel::dot_simd, cpu::QuantKernel::dot_portable, cpu::QuantKernel::tiled_gemm})
        EXPECT_EQ(run(x, T, il.view, bias.data(), kernel), run(x, T, q.view(), bias.data(), kernel))
            << name(s) << " T " << T << " kernel " << static_cast<int>(kernel);
    }
  }
}

// The 8-bit-activation rows: the same integer products as the plain layout's rows, the
// float sums in another order (one fma chain per row rather than 8 lanes and a horizontal
// sum): equal within a few ulps of the result's magnitude; bit for bit the portable loop on
// every instruction set.
TEST(InterleavedRows, IntegerRowsAgreeWithThePlainLayoutAndAcrossInstructionSets) {
  for (const Shape& s : kShapes)
    for (bool precise : {false, true}) {  // int8 with precise activations: 16-bit blocks
      if (precise && s.format != QuantFormat::int8) continue;
      HostQuantizedWeight q = random_weight(s, 31 + s.M + s.K);
      Interleaved il(q, precise);
      QuantizedWeight plain_view = q.view();
      plain_view.precise_activations = precise;
      const std::vector<float> bias = random_floats(static_cast<size_t>(s.M), 32, -1.0f, 1.0f);
      const int64_t T = 3;
      const std::vector<float> x = random_floats(static_cast<size_t>(T * s.K), 33, -2.0f, 2.0f);
      const std::vector<float> portable = run_q8(x, T, il.view, bias.data(), cpu::Q8Isa::portable, 1);
      const std::vector<float> plain = run_q8(x, T, plain_view, bias.data(), cpu::Q8Isa::portable, 1);
      // |w| x |x| summed: the scale of the rounding in either order.
      std::vector<float> dense(static_cast<size_t>(s.M * s.K));
      cpu::dequantize_weight(q.view(), dense.data());
      for (int64_t t = 0; t < T; ++t)
        for (int64_t m = 0; m < s.M; ++m) {
          double magnitude = std::abs(bias[m]);
          for (int64_t k = 0; k < s.K; ++k) magnitude += std::abs(dense[m * s.K + k] * x[t * s.K + k]);
          const size_t i = static_cast<size_t>(t * s.M + m);
          ASSERT_NEAR(portable[i], plain[i], 4e-6 * magnitude)
              << name(s) << " precise " << precise << " t " << t << " m " << m;
        }
      for (cpu::Q8Isa isa : {cpu::Q8Isa::avx2, cpu::Q8Isa::avx512_vnni}) {
        if (!cpu::q8_isa_available(isa)) {
          std::cout << "[ note ] " << cpu::to_string(isa) << " not on this processor\n";
          continue;
        }
        EXPECT_EQ(run_q8(x, T, il.view, bias.data(), isa, 2), portable)
            << cpu::to_string(isa) << " " << name(s) << " precise " << precise;
      }
    }
}

// As for every other format (cpu_quantized_linear_test): a call with T tokens gives each
// token the bits of a call with that token alone, at every thread count.
TEST(InterleavedRows, ManyTokensGiveTheBitsOfOneTokenCalls) {
  for (const Shape& s : {Shape{QuantFormat::int4, 40, 576, 64}, Shape{QuantFormat::int8, 40, 576, 64},
                         Shape{QuantFormat::int8, 16, 320, 320}, Shape{QuantFormat::q4_0, 24, 576, 32},
                         Shape{QuantFormat::q5_0, 24, 576, 32},
                         Shape{QuantFormat::q5_1, 24, 576, 32}, Shape{QuantFormat::iq4_nl, 24, 576, 32},
                         Shape{QuantFormat::q4_k, 16, 512, 256}, Shape{QuantFormat::q5_k, 16, 512, 256},
                         Shape{QuantFormat::q6_k, 16, 512, 256}, Shape{QuantFormat::iq4_xs, 16, 512, 256},
                         Shape{QuantFormat::q2_k, 16, 512, 256}, Shape{QuantFormat::q3_k, 16, 512, 256}})
    for (bool precise : {false, true}) {
      if (precise && s.format != QuantFormat::int8) continue;
      HostQuantizedWeight q = random_weight(s, 41);
      Interleaved il(q, precise);
      const std::vector<float> bias = random_floats(static_cast<size_t>(s.M), 42, -1.0f, 1.0f);
      for (cpu::Q8Isa isa : {cpu::Q8Isa::portable, cpu::Q8Isa::avx2, cpu::Q8Isa::avx512_vnni}) {
        if (!cpu::q8_isa_available(isa)) continue;
        for (int64_t T : {1, 2, 3, 4, 5, 7, 8, 11}) {
          const std::vector<float> x = random_floats(static_cast<size_t>(T * s.K), 43 + T, -2.0f, 2.0f);
          for (int threads : {1, 2, 3}) {
            const std::vector<float> all = run_q8(x, T, il.view, bias.data(), isa, threads);
            for (int64_t t = 0; t < T; ++t) {
              const std::vector<float> xt(x.begin() + t * s.K, x.begin() + (t + 1) * s.K);
              const std::vector<float> alone = run_q8(xt, 1, il.view, bias.data(), isa, 1);
              for (int64_t m = 0; m < s.M; ++m)
                ASSERT_EQ(all[static_cast<size_t>(t * s.M + m)], alone[static_cast<size_t>(m)])
                    << name(s) << " precise " << precise << " " << cpu::to_string(isa) << " T " << T << " threads "
                    << threads << " t " << t << " m " << m;
            }
          }
        }
      }
      // The automatic choice and batch_invariant take these rows too.
      const std::vector<float> x = random_floats(static_cast<size_t>(2 * s.K), 44, -2.0f, 2.0f);
      const std::vector<float> best = run_q8(x, 2, il.view, bias.data(), cpu::best_q8_isa(), 2);
      EXPECT_EQ(run(x, 2, il.view, bias.data(), cpu::QuantKernel::automatic), best);
      EXPECT_EQ(run(x, 2, il.view, bias.data(), cpu::QuantKernel::batch_invariant), best);
    }
}

TEST(InterleavedRows, EmbeddingRowsAreThePlainTablesRows) {
  for (QuantFormat format : {QuantFormat::int4, QuantFormat::int8, QuantFormat::q5_1}) {
    const Shape s{format, 32, 64, 32};
    HostQuantizedWeight q = random_weight(s, 51);
    Interleaved il(q, format == QuantFormat::int8);  // a tied 8-bit head keeps its activations precise
    const int64_t T = 5;
    std::vector<int32_t> ids = {0, 31, 9, 9, 17}, pos = {0, 1, 2, 3, 4};
    std::vector<float> want(static_cast<size_t>(T * s.K)), got(want.size(), NAN);
    const TensorView id_view(ids.data(), DType::i32, {T}), pos_view(pos.data(), DType::i32, {T});
    cpu::embedding(id_view, pos_view, q.view(), nullptr, TensorView(want.data(), DType::f32, {T, s.K}), 2);
    cpu::embedding(id_view, pos_view, il.view, nullptr, TensorView(got.data(), DType::f32, {T, s.K}), 2);
    EXPECT_EQ(got, want) << to_string(format);
  }
}

// The CPU backend lays weights out through the Backend interface the loader calls, and the
// layout it makes computes what the plain weight does.
TEST(InterleavedRows, TheCpuBackendPreparesWeights) {
  const Shape s{QuantFormat::q4_k, 16, 512, 256};
  HostQuantizedWeight plain = random_weight(s, 81), copy = plain;
  QuantizedWeight w = copy.view();
  std::unique_ptr<Backend> backend = make_cpu_backend(2);
  backend->prepare_quantized(w);
  EXPECT_EQ(w.interleave, cpu::kInterleaveRows);
  const std::vector<float> x = random_floats(static_cast<size_t>(s.K), 82, -2.0f, 2.0f);
  std::vector<float> got(static_cast<size_t>(s.M)), want(got.size());
  backend->quantized_linear(TensorView(const_cast<float*>(x.data()), DType::f32, {1, s.K}), w, nullptr,
                            TensorView(got.data(), DType::f32, {1, s.M}));
  backend->quantized_linear(TensorView(const_cast<float*>(x.data()), DType::f32, {1, s.K}), plain.view(), nullptr,
                            TensorView(want.data(), DType::f32, {1, s.M}));
  for (int64_t m = 0; m < s.M; ++m) EXPECT_NEAR(got[m], want[m], 1e-4f * (1.0f + std::abs(want[m]))) << m;
}

TEST(InterleavedRows, PrepareTakesRowsInEightsOnly) {
  std::vector<float> dense = random_floats(24 * 64, 61, -1.0f, 1.0f);
  HostQuantizedWeight int4 = quantize_int4(dense.data(), 24, 64, 32), int8 = quantize_int8(dense.data(), 24, 64, 64);
  for (HostQuantizedWeight* host : {&int4, &int8}) {
    QuantizedWeight w = host->view();
    cpu::prepare_quantized_cpu(w);
    EXPECT_EQ(w.interleave, cpu::kInterleaveRows) << to_string(w.format);
  }
  HostQuantizedWeight odd = quantize_int4(dense.data(), 20, 64, 32);  // rows not a multiple of 8
  HostQuantizedWeight precise_host = quantize_int4(dense.data(), 24, 64, 32),
                      w8a8_host = quantize_int8(dense.data(), 24, 64, 64);
  QuantizedWeight precise = precise_host.view();
  precise.precise_activations = true;  // int4 with f32 activations: the row path, left as it is
  QuantizedWeight w8a8 = w8a8_host.view();
  w8a8.int8_activations = true;  // oneDNN's GEMM reads the plain layout
  QuantizedWeight o = odd.view();
  for (QuantizedWeight* kept : {&precise, &o, &w8a8}) {
    cpu::prepare_quantized_cpu(*kept);
    EXPECT_EQ(kept->interleave, 0) << to_string(kept->format) << " rows " << kept->rows;
  }
  // A mixed weight: its parts of 16 int4 rows interleaved, of 4 int8 rows as they were; the
  // product is each part's own.
  HostQuantizedWeight part4 = quantize_int4(dense.data(), 16, 64, 32), part8 = quantize_int8(dense.data(), 4, 64, 32);
  QuantizedWeight mixed;
  mixed.format = QuantFormat::mixed;
  mixed.rows = 20;
  mixed.cols = 64;
  mixed.parts = {part4.view(), part8.view()};
  const std::vector<float> x = random_floats(64, 62, -2.0f, 2.0f);
  const std::vector<float> before = run(x, 1, mixed, nullptr, cpu::QuantKernel::automatic);
  const std::vector<float> plain_part = run(x, 1, part4.view(), nullptr, cpu::QuantKernel::automatic);
  cpu::prepare_quantized_cpu(mixed);
  EXPECT_EQ(mixed.parts[0].interleave, cpu::kInterleaveRows);
  EXPECT_EQ(mixed.parts[1].interleave, 0);
  const std::vector<float> after = run(x, 1, mixed, nullptr, cpu::QuantKernel::automatic);
  const std::vector<float> part_alone = run(x, 1, mixed.parts[0], nullptr, cpu::QuantKernel::automatic);
  for (int64_t m = 0; m < 16; ++m) {
    EXPECT_EQ(after[m], part_alone[m]) << m;
    EXPECT_NEAR(after[m], plain_part[m], 1e-4f * (1.0f + std::abs(plain_part[m]))) << m;
  }
  for (int64_t m = 16; m < 20; ++m) EXPECT_EQ(after[m], before[m]) << m;
}

TEST(InterleavedRows, OtherFormatsAndDevicesRefuseTheLayout) {
  std::vector<float> dense = random_floats(16 * 64, 71, -1.0f, 1.0f);
  HostQuantizedWeight int8 = quantize_int8(dense.data(), 16, 64, 32), int4 = quantize_int4(dense.data(), 16, 64, 32);
  QuantizedWeight bad = int8.view();
  bad.interleave = 8;
  bad.int8_activations = true;  // W8A8 keeps the plain layout
  EXPECT_THROW(check_quantized_weight(Device::cpu(), bad, "test"), Error);
  bad.int8_activations = false;
  bad.interleave = 4;
  EXPECT_THROW(check_quantized_weight(Device::cpu(), bad, "test"), Error);
  QuantizedWeight w4 = int4.view();
  cpu::interleave_rows(w4);
  EXPECT_NO_THROW(check_quantized_weight(Device::cpu(), w4, "test"));
  HostQuantizedWeight fp8 = quantize_fp8(dense.data(), 16, 64);
  QuantizedWeight f8 = fp8.view();
  f8.interleave = 8;  // FP8 has no interleaved layout
  EXPECT_THROW(check_quantized_weight(Device::cpu(), f8, "test"), Error);
  try {
    check_quantized_weight(Device::cuda(0), w4, "test");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("interleave 8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(cpu::interleave_rows(w4), Error);  // already interleaved
}

}  // namespace
}  // namespace kestrel
