// A tensor-parallel rank's mixture-of-experts block on the GPU: each rank's weights built by
// WeightStore::load on the CUDA backend (no MPI, one device) hold its columns of every
// expert (tests/unit/moe_shard_test.cc on the CPU); moe_block over them gives the CPU's
// partial output of the same rank within the f32 tolerance, and the ranks' partial outputs
// sum to one process's output on the CPU (what the NCCL all-reduce computes under MPI), for
// dense experts and experts kept in Q8_0 blocks. Skips with the reason where there is no GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "cuda_test_util.h"
#include "layers/moe.h"
#include "models/quantize.h"
#include "models/weights.h"
#include "test_support.h"
#include "tools/held_weights.h"

namespace kestrel {
namespace {

using testing::DeviceTensor;

// moe_block's scratch on `backend` for T tokens of a model with experts of Fe columns and
// a shared expert of Fs (core/session_layout.cc lays out the same).
struct Scratch {
  Scratch(Backend& b, const ModelConfig& c, int64_t T)
      : k(c.experts_per_token),
        logits(b, DType::f32, {T, c.num_experts}),
        ids(b, DType::i32, {T, k}),
        weights(b, DType::f32, {T, k}),
        offsets(b, DType::i32, {c.num_experts + 1}),
        rows(b, DType::i32, {T * k}),
        slot_of(b, DType::i32, {T * k}),
        x(b, DType::f32, {T * k, c.hidden_size}),
        up(b, DType::f32, {std::max(T * k * 2 * c.expert_ffn_size, T * 2 * int64_t{c.shared_expert_ffn_size})}),
        act(b, DType::f32, {std::max(T * k * c.expert_ffn_size, T * int64_t{c.shared_expert_ffn_size})}),
        out(b, DType::f32, {T * k, c.hidden_size}),
        shared(b, DType::f32, {T, c.hidden_size}),
        gate(b, DType::f32, {T, 1}) {}

  MoeBuffers buffers(bool shared_expert) const {
    MoeBuffers m{logits, ids, weights, offsets, rows, slot_of, x, up, act, out, {}, {}};
    if (shared_expert) {
      m.shared = shared;
      m.shared_gate = gate;
    }
    return m;
  }

  int64_t k;
  DeviceTensor logits, ids, weights, offsets, rows, slot_of, x, up, act, out, shared, gate;
};

TEST(CudaMoeShard, RanksPartialOutputsMatchTheCpuAndSumToTheWholeBlock) {
  const std::string why = testing::cuda_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  std::unique_ptr<Backend> gpu = testing::make_test_cuda_backend();
  auto cpu = make_cpu_backend(1);
  for (const char* name : {"tiny-qwen2-moe", "tiny-mixtral", "moe-blocks/qwen2-moe-q8_0.gguf"}) {
    SCOPED_TRACE(name);
    const sizing::FileWeights file(testing::fixture_dir() / name);
    const Architecture& arch = file.architecture();
    const ModelConfig& c = arch.config;
    const int64_t T = 9, H = c.hidden_size;
    const QuantizationSpec spec{Quantization::automatic, 0};
    const FfnAlignment align = ffn_split_alignment(file.source(), arch, spec);
    const int layer = arch.kinds.is_sparse(0) ? 0 : 1;
    const std::vector<float> x = testing::random_floats(static_cast<size_t>(T * H), 91, -2.0f, 2.0f);
    // moe_block on `backend` with `rank`'s weights of a tp-way split.
    auto run = [&](Backend& backend, int tp, int rank) {
      WeightStore store(backend, DType::f32, spec);
      const ModelWeights w = store.load(file.source(), arch, make_shard(c, tp, 1, rank, 0, name, align));
      Scratch scratch(backend, c, T);
      DeviceTensor normed(backend, DType::f32, {T, H}), proj(backend, DType::f32, {T, H});
      normed.set(x);
      moe_block(backend, w.layers.at(layer).moe, arch, normed, scratch.buffers(c.shared_expert_ffn_size > 0), proj);
      return proj.floats();
    };
    const std::vector<float> whole = run(*cpu, 1, 0);
    float scale = 0.0f;
    for (float v : whole) scale = std::max(scale, std::fabs(v));
    ASSERT_GT(scale, 0.1f);  // a real output, not zeros
    // f32 (normalized by the largest output); Q8_0 experts: the CPU's quantized kernels may
    // take 8-bit activation blocks where the GPU's take f32 ones.
    const double tol = align.expert > 1 ? 2e-2 : 1e-4;
    std::vector<float> sum(whole.size(), 0.0f);
    for (int r = 0; r < 2; ++r) {
      const std::vector<float> on_gpu = run(*gpu, 2, r), on_cpu = run(*cpu, 2, r);
      EXPECT_TRUE(testing::close(on_gpu, on_cpu, tol, "rank " + std::to_string(r) + "'s partial output"));
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += on_gpu[i];
    }
    EXPECT_TRUE(testing::close(sum, whole, tol, "sum of the ranks' outputs"));
  }
}

}  // namespace
}  // namespace kestrel
