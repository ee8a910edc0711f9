// The CUDA backend's dense operations against the CPU reference on the same inputs, for
// f32, f16 and bf16: embedding, gather_rows, add_residual_norm, linear (also f32 logits
// from f16 / bf16 activations), bias_activation and gated_activation; plus the allocator,
// copies and the errors kernels report. Attention and sampling have their own files
// (cuda_attention_test.cc, cuda_sampling_test.cc). Every test skips without a GPU.
//
// Inputs are drawn in f32 and rounded to the dtype under test; the CPU backend gets those
// rounded values in f32, so the comparison measures the kernels' arithmetic only (see
// tolerance() in cuda_test_util.h).
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda_test_util.h"
#include "kestrel/error.h"
#include "models/quantize.h"
#include "quant_test_util.h"
#include "test_support.h"

namespace kestrel {
namespace {

using testing::close;
using testing::DeviceTensor;
using testing::host_view;
using testing::random_floats;
using testing::random_ints;
using testing::round_to;
using testing::tolerance;

std::string dtype_name(const ::testing::TestParamInfo<DType>& info) {
  return to_string(info.param);
}

class CudaOps : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    const std::string why = testing::cuda_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    cpu = make_cpu_backend(0);
    gpu = testing::make_test_cuda_backend();
  }

  DType dt() const { return GetParam(); }
  // Random values in [lo, hi) as the dtype under test stores them.
  std::vector<float> input(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) const {
    return round_to(dt(), random_floats(n, seed, lo, hi));
  }

  std::unique_ptr<Backend> cpu, gpu;
};

TEST_P(CudaOps, Embedding) {
  const int64_t T = 9, V = 50, P = 40;
  for (int64_t H : {64, 1000}) {
    for (bool learned : {false, true}) {
      SCOPED_TRACE("H " + std::to_string(H) + (learned ? " learned positions" : ""));
      std::vector<int32_t> ids = random_ints(T, 1, 0, V), pos = random_ints(T, 2, 0, P);
      ids[0] = 0;
      ids[1] = V - 1;
      std::vector<float> wte = input(V * H, 3), wpe = input(P * H, 4), want(T * H);
      TensorView wpe_h = host_view(wpe, {P, H});
      cpu->embedding(host_view(ids, {T}), host_view(pos, {T}), host_view(wte, {V, H}),
                     learned ? &wpe_h : nullptr, host_view(want, {T, H}));

      DeviceTensor ids_d(*gpu, DType::i32, {T}), pos_d(*gpu, DType::i32, {T});
      DeviceTensor wte_d(*gpu, dt(), {V, H}), wpe_d(*gpu, dt(), {P, H}), out_d(*gpu, dt(), {T, H});
      ids_d.set(ids);
      pos_d.set(pos);
      wte_d.set(wte);
      wpe_d.set(wpe);
      gpu->embedding(ids_d, pos_d, wte_d, learned ? wpe_d.ptr() : nullptr, out_d);
      EXPECT_TRUE(close(out_d.floats(), want, tolerance(dt()), "embedding"));
    }
  }
}

// A quantized table (a tied LM head kept as stored): every format against the CPU's lookup.
TEST_P(CudaOps, EmbeddingFromAQuantizedTable) {
  const int64_t T = 7, V = 40, H = 96, P = 20;
  for (auto [format, group] : {std::pair{QuantFormat::int8, 32}, std::pair{QuantFormat::int8, 96},
                               std::pair{QuantFormat::int4, 32}, std::pair{QuantFormat::int4, 64}}) {
    SCOPED_TRACE(std::string(format == QuantFormat::int8 ? "int8" : "int4") + " g" + std::to_string(group));
    std::vector<float> table = input(V * H, 11);
    HostQuantizedWeight q = format == QuantFormat::int8 ? quantize_int8(table.data(), V, H, group)
                                                        : quantize_int4(table.data(), V, H, group);
    std::vector<int32_t> ids = random_ints(T, 12, 0, V), pos = random_ints(T, 13, 0, P);
    ids[0] = V - 1;
    std::vector<float> wpe = input(P * H, 14), want(T * H);
    TensorView wpe_h = host_view(wpe, {P, H});
    cpu->embedding(host_view(ids, {T}), host_view(pos, {T}), q.view(), &wpe_h, host_view(want, {T, H}));

    const QuantizedWeight host = q.view();
    DeviceTensor data(*gpu, DType::i8, {host.data.dim(0), host.data.dim(1)});
    DeviceTensor scales(*gpu, host.scales.dtype, {V, host.groups()}), mins(*gpu, DType::f16, {V, host.groups()});
    data.set_bytes(host.data.data);
    scales.set_bytes(host.scales.data);
    QuantizedWeight dev = host;
    dev.data = data;
    dev.scales = scales;
    if (format == QuantFormat::int4) {
      mins.set_bytes(host.mins.data);
      dev.mins = mins;
    }
    DeviceTensor ids_d(*gpu, DType::i32, {T}), pos_d(*gpu, DType::i32, {T});
    DeviceTensor wpe_d(*gpu, dt(), {P, H}), out_d(*gpu, dt(), {T, H});
    ids_d.set(ids);
    pos_d.set(pos);
    wpe_d.set(wpe);
    gpu->embedding(ids_d, pos_d, dev, wpe_d.ptr(), out_d);
    EXPECT_TRUE(close(out_d.floats(), want, tolerance(dt()), "embedding (quantized table)"));
  }
}

// Tables of ggml blocks (K-quants, Q5_0 / Q5_1, IQ4_NL / IQ4_XS as a GGUF stores them)
// against the CPU's lookup of the same blocks.
TEST_P(CudaOps, EmbeddingFromAKquantTable) {
  const int64_t T = 6, V = 20, H = 512;
  for (QuantFormat format : testing::block_formats()) {
    SCOPED_TRACE(to_string(format));
    HostQuantizedWeight q = testing::random_quantized({format, kquant::block_columns(format), V, H, T, false}, 15);
    std::vector<int32_t> ids = random_ints(T, 16, 0, V);
    ids[0] = V - 1;
    std::vector<float> want(T * H);
    cpu->embedding(host_view(ids, {T}), TensorView(), q.view(), nullptr, host_view(want, {T, H}));
    const QuantizedWeight host = q.view();
    DeviceTensor data(*gpu, DType::i8, {host.data.dim(0), host.data.dim(1)});
    data.set_bytes(host.data.data);
    QuantizedWeight dev = host;
    dev.data = data;
    DeviceTensor ids_d(*gpu, DType::i32, {T}), out_d(*gpu, dt(), {T, H});
    ids_d.set(ids);
    gpu->embedding(ids_d, TensorView(), dev, nullptr, out_d);
    EXPECT_TRUE(close(out_d.floats(), want, tolerance(dt()), "embedding (K-quant table)"));
  }
}

TEST_P(CudaOps, GatherRowsCopiesExactly) {
  const int64_t T = 12, H = 200, B = 5;
  std::vector<float> x = input(T * H, 5);
  std::vector<int32_t> rows = {11, 0, 5, 5, 3};
  std::vector<float> want(B * H);
  cpu->gather_rows(host_view(x, {T, H}), host_view(rows, {B}), host_view(want, {B, H}));

  DeviceTensor x_d(*gpu, dt(), {T, H}), rows_d(*gpu, DType::i32, {B}), out_d(*gpu, dt(), {B, H});
  x_d.set(x);
  rows_d.set(rows);
  gpu->gather_rows(x_d, rows_d, out_d);
  EXPECT_TRUE(close(out_d.floats(), want, 0.0, "gather_rows"));
}

// Copy-on-write of KV blocks: every layout the session uses (head_dim 64 and an odd 6
// that takes the byte path in f16), CPU and CUDA bit for bit, untouched blocks unchanged.
TEST_P(CudaOps, CopyKvBlocksCopiesExactly) {
  for (int64_t hd : {64, 6}) {
    SCOPED_TRACE("head_dim " + std::to_string(hd));
    const int64_t blocks = 7, nkv = 3, bs = 5, n = blocks * nkv * bs * hd;
    std::vector<float> k = input(n, 11), v = input(n, 12);
    std::vector<int32_t> pairs = {2, 0, 2, 5, 6, 1};  // block 2 copied twice, 6 once
    std::vector<float> want_k = k, want_v = v;
    KvCacheLayer host{host_view(want_k, {blocks, nkv, bs, hd}), host_view(want_v, {blocks, nkv, bs, hd}),
                      static_cast<int>(bs)};
    cpu->copy_kv_blocks(host, host_view(pairs, {3, 2}));

    DeviceTensor k_d(*gpu, dt(), {blocks, nkv, bs, hd}), v_d(*gpu, dt(), {blocks, nkv, bs, hd});
    DeviceTensor pairs_d(*gpu, DType::i32, {3, 2});
    k_d.set(k);
    v_d.set(v);
    pairs_d.set(pairs);
    gpu->copy_kv_blocks(KvCacheLayer{k_d, v_d, static_cast<int>(bs)}, pairs_d);
    EXPECT_TRUE(close(k_d.floats(), want_k, 0.0, "copy_kv_blocks k"));
    EXPECT_TRUE(close(v_d.floats(), want_v, 0.0, "copy_kv_blocks v"));
  }
}

// Every norm kind and residual variant, with rows short enough for one warp (64, 1000)
// and long enough for a whole block (2048, 4100).
TEST_P(CudaOps, AddResidualNorm) {
  const int64_t T = 5;
  enum class Add { none, delta, delta_and_bias, bias_only };
  for (int64_t H : {64, 1000, 2048, 4100}) {
    for (NormKind kind : {NormKind::layer_norm, NormKind::rms_norm}) {
      for (bool with_beta : {false, true}) {
        if (kind == NormKind::rms_norm && with_beta) continue;
        for (Add add : {Add::none, Add::delta, Add::delta_and_bias, Add::bias_only}) {
          SCOPED_TRACE("H " + std::to_string(H) + (kind == NormKind::rms_norm ? " rms" : " layer") +
                       (with_beta ? " beta" : "") + " add " +
                       std::to_string(static_cast<int>(add)));
          const uint64_t seed = static_cast<uint64_t>(H) * 16 + static_cast<int>(add);
          std::vector<float> residual = input(T * H, seed, -2.0f, 2.0f);
          std::vector<float> delta = input(T * H, seed + 1), bias = input(H, seed + 2);
          std::vector<float> gamma = input(H, seed + 3, 0.5f, 1.5f), beta = input(H, seed + 4);
          const bool use_delta = add == Add::delta || add == Add::delta_and_bias;
          const bool use_bias = add == Add::delta_and_bias || add == Add::bias_only;

          std::vector<float> res_c = residual, out_c(T * H);
          TensorView delta_h = host_view(delta, {T, H}), bias_h = host_view(bias, {H});
          NormParams norm_h{kind, host_view(gamma, {H}),
                            with_beta ? host_view(beta, {H}) : TensorView{}, 1e-5f};
          cpu->add_residual_norm(host_view(res_c, {T, H}), use_delta ? &delta_h : nullptr,
                                 use_bias ? &bias_h : nullptr, norm_h, host_view(out_c, {T, H}));

          DeviceTensor res_d(*gpu, dt(), {T, H}), delta_d(*gpu, dt(), {T, H}),
              bias_d(*gpu, dt(), {H});
          DeviceTensor gamma_d(*gpu, dt(), {H}), beta_d(*gpu, dt(), {H}), out_d(*gpu, dt(), {T, H});
          res_d.set(residual);
          delta_d.set(delta);
          bias_d.set(bias);
          gamma_d.set(gamma);
          beta_d.set(beta);
          NormParams norm_d{kind, gamma_d, with_beta ? beta_d.view() : TensorView{}, 1e-5f};
          gpu->add_residual_norm(res_d, use_delta ? delta_d.ptr() : nullptr,
                                 use_bias ? bias_d.ptr() : nullptr, norm_d, out_d);
          EXPECT_TRUE(close(res_d.floats(), res_c, tolerance(dt()), "residual"));
          EXPECT_TRUE(close(out_d.floats(), out_c, tolerance(dt()), "normed"));
        }
      }
    }
  }
}

TEST_P(CudaOps, Linear) {
  struct Shape {
    int64_t T, K, M;
  };
  for (Shape s :
       {Shape{1, 64, 96}, Shape{7, 128, 1000}, Shape{33, 320, 200}, Shape{64, 768, 2304}}) {
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE("T " + std::to_string(s.T) + " K " + std::to_string(s.K) + " M " +
                   std::to_string(s.M) + (with_bias ? " bias" : ""));
      std::vector<float> x = input(s.T * s.K, 10 + s.K), w = input(s.M * s.K, 11 + s.M);
      std::vector<float> bias = input(s.M, 12), want(s.T * s.M);
      TensorView bias_h = host_view(bias, {s.M});
      cpu->linear(host_view(x, {s.T, s.K}), host_view(w, {s.M, s.K}), with_bias ? &bias_h : nullptr,
                  host_view(want, {s.T, s.M}));

      DeviceTensor x_d(*gpu, dt(), {s.T, s.K}), w_d(*gpu, dt(), {s.M, s.K});
      DeviceTensor bias_d(*gpu, dt(), {s.M}), out_d(*gpu, dt(), {s.T, s.M});
      x_d.set(x);
      w_d.set(w);
      bias_d.set(bias);
      gpu->linear(x_d, w_d, with_bias ? bias_d.ptr() : nullptr, out_d);
      EXPECT_TRUE(close(out_d.floats(), want, tolerance(dt()), "linear"));
    }
  }
}

// The LM head: activations in the model dtype, logits in f32. Only the inputs are rounded,
// so every dtype meets a tighter bound than its storage tolerance.
TEST_P(CudaOps, LinearWritesF32Logits) {
  const int64_t T = 3, K = 256, M = 1000;
  std::vector<float> x = input(T * K, 20), w = input(M * K, 21), bias = input(M, 22), want(T * M);
  TensorView bias_h = host_view(bias, {M});
  cpu->linear(host_view(x, {T, K}), host_view(w, {M, K}), &bias_h, host_view(want, {T, M}));
  DeviceTensor x_d(*gpu, dt(), {T, K}), w_d(*gpu, dt(), {M, K}), bias_d(*gpu, dt(), {M});
  DeviceTensor out_d(*gpu, DType::f32, {T, M});
  x_d.set(x);
  w_d.set(w);
  bias_d.set(bias);
  gpu->linear(x_d, w_d, bias_d.ptr(), out_d);
  EXPECT_TRUE(close(out_d.floats(), want, 1e-4, "logits"));
}

TEST_P(CudaOps, BiasActivation) {
  const int64_t T = 6, M = 300;
  for (Activation act :
       {Activation::gelu_tanh, Activation::gelu_erf, Activation::relu, Activation::silu}) {
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE("activation " + std::to_string(static_cast<int>(act)) +
                   (with_bias ? " bias" : ""));
      std::vector<float> x = input(T * M, 30 + static_cast<int>(act), -4.0f, 4.0f),
                         bias = input(M, 31);
      std::vector<float> want = x;
      TensorView bias_h = host_view(bias, {M});
      cpu->bias_activation(host_view(want, {T, M}), with_bias ? &bias_h : nullptr, act);
      DeviceTensor x_d(*gpu, dt(), {T, M}), bias_d(*gpu, dt(), {M});
      x_d.set(x);
      bias_d.set(bias);
      gpu->bias_activation(x_d, with_bias ? bias_d.ptr() : nullptr, act);
      EXPECT_TRUE(close(x_d.floats(), want, tolerance(dt()), "bias_activation"));
    }
  }
}

TEST_P(CudaOps, GatedActivation) {
  const int64_t T = 6, F = 300;
  for (Activation act :
       {Activation::gelu_tanh, Activation::gelu_erf, Activation::relu, Activation::silu}) {
    SCOPED_TRACE("activation " + std::to_string(static_cast<int>(act)));
    std::vector<float> gate_up = input(T * 2 * F, 40 + static_cast<int>(act), -4.0f, 4.0f),
                       want(T * F);
    cpu->gated_activation(host_view(gate_up, {T, 2 * F}), act, host_view(want, {T, F}));
    DeviceTensor gu_d(*gpu, dt(), {T, 2 * F}), out_d(*gpu, dt(), {T, F});
    gu_d.set(gate_up);
    gpu->gated_activation(gu_d, act, out_d);
    EXPECT_TRUE(close(out_d.floats(), want, tolerance(dt()), "gated_activation"));
  }
}

// gpt-oss's clamped SwiGLU, with a limit the inputs cross on both sides.
TEST_P(CudaOps, ClampedSwiglu) {
  const int64_t T = 6, F = 300;
  std::vector<float> gate_up = input(T * 2 * F, 45, -6.0f, 6.0f), want(T * F);
  cpu->clamped_swiglu(host_view(gate_up, {T, 2 * F}), 1.702f, 3.0f, host_view(want, {T, F}));
  DeviceTensor gu_d(*gpu, dt(), {T, 2 * F}), out_d(*gpu, dt(), {T, F});
  gu_d.set(gate_up);
  gpu->clamped_swiglu(gu_d, 1.702f, 3.0f, out_d);
  EXPECT_TRUE(close(out_d.floats(), want, tolerance(dt()), "clamped_swiglu"));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaOps, ::testing::Values(DType::f32, DType::f16, DType::bf16),
                         dtype_name);

// --- the backend object: device, allocator, copies, errors ------------------------------
class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = testing::cuda_unavailable_reason();
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    gpu = make_cuda_backend(0);
  }
  std::unique_ptr<Backend> gpu;
};

TEST_F(CudaBackendTest, ReportsDeviceAndDtype) {
  EXPECT_EQ(gpu->device(), Device::cuda(0));
  EXPECT_EQ(gpu->allocator().device(), Device::cuda(0));
  EXPECT_EQ(gpu->compute_dtype(), DType::f16);
  gpu->synchronize();
  try {
    make_cuda_backend(1000);
    ADD_FAILURE() << "cuda:1000 should not exist";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::invalid_argument) << e.what();
  }
}

TEST_F(CudaBackendTest, AllocatorNeverReturnsNullAndNamesWhatOnOutOfMemory) {
  Allocator& alloc = gpu->allocator();
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{4096}, size_t{100003}}) {
    void* p = alloc.allocate(bytes, "test buffer");
    EXPECT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
    alloc.deallocate(p);
  }
  const size_t huge = size_t{1} << 50;  // 1 PiB
  try {
    alloc.allocate(huge, "huge test buffer");
    ADD_FAILURE() << "a 1 PiB allocation succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::limit) << e.what();
    EXPECT_NE(e.message().find("huge test buffer"), std::string::npos) << e.what();
    EXPECT_NE(e.message().find(std::to_string(huge)), std::string::npos) << e.what();
  }
  void* p = alloc.allocate(1024, "after out of memory");  // the device is still usable
  alloc.deallocate(p);
}

TEST_F(CudaBackendTest, CopiesBetweenHostAndDeviceAndWithinTheDevice) {
  std::vector<int32_t> src = random_ints(1000, 50, -1000000, 1000000), back(1000, 0);
  DeviceTensor a(*gpu, DType::i32, {1000}), b(*gpu, DType::i32, {1000});
  a.set(src);
  gpu->copy(b, a);
  gpu->copy(host_view(back, {1000}), b);
  EXPECT_EQ(back, src);
  std::vector<int32_t> host_copy(1000, 0);
  gpu->copy(host_view(host_copy, {1000}), host_view(src, {1000}));
  EXPECT_EQ(host_copy, src);
  std::vector<int32_t> wrong_size(999);
  EXPECT_THROW(gpu->copy(host_view(wrong_size, {999}), a), Error);
}

TEST_F(CudaBackendTest, RejectsWrongShapesAndHostTensorsBeforeLaunching) {
  DeviceTensor x(*gpu, DType::f16, {4, 64}), w(*gpu, DType::f16, {32, 48}),
      out(*gpu, DType::f16, {4, 32});
  EXPECT_THROW(gpu->linear(x, w, nullptr, out), Error);  // K mismatch
  std::vector<float> host(4 * 64);
  EXPECT_THROW(gpu->bias_activation(host_view(host, {4, 64}), nullptr, Activation::relu), Error);
  DeviceTensor w32(*gpu, DType::f32, {32, 64});
  EXPECT_THROW(gpu->linear(x, w32, nullptr, out), Error);  // mixed dtypes
  gpu->synchronize();
}

// A token id outside the vocabulary is recorded by the kernel and thrown at the next
// synchronize; the backend then works normally.
TEST_F(CudaBackendTest, KernelErrorsSurfaceAtSynchronize) {
  const int64_t V = 10, H = 32;
  DeviceTensor ids(*gpu, DType::i32, {3}), wte(*gpu, DType::f16, {V, H}),
      out(*gpu, DType::f16, {3, H});
  wte.set(random_floats(V * H, 60));
  ids.set(std::vector<int32_t>{1, static_cast<int32_t>(V), 2});
  gpu->embedding(ids, ids, wte, nullptr, out);
  try {
    gpu->synchronize();
    ADD_FAILURE() << "the bad id was not reported";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::internal) << e.what();
    EXPECT_NE(e.message().find("embedding"), std::string::npos) << e.what();
    EXPECT_NE(e.message().find("ids[1]"), std::string::npos) << e.what();
  }
  ids.set(std::vector<int32_t>{1, 2, 3});
  gpu->embedding(ids, ids, wte, nullptr, out);
  EXPECT_NO_THROW(gpu->synchronize());
}

}  // namespace
}  // namespace kestrel
