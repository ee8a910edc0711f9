// kernels/cpu/cpu_backend.cc: the CPU reference backend: host allocator, copy, the
// Backend class that dispatches to the per-op files, and make_cpu_backend.
#include <cblas.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "cpu/cpu_ops.h"
#include "cpu/interleaved_rows.h"
#include "kestrel/error.h"

namespace kestrel {

namespace {

// 64-byte aligned host memory (a cache line; also enough for any SIMD load).
class CpuAllocator final : public Allocator {
 public:
  static constexpr size_t kAlignment = 64;

  Device device() const override { return Device::cpu(); }

  void* allocate(size_t bytes, const char* what) override {
    // aligned_alloc wants a multiple of the alignment; zero bytes still gets a block so
    // the result is never null.
    size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    if (rounded == 0) rounded = kAlignment;
    if (rounded < bytes)
      throw Error(ErrorCategory::limit, std::string(what) + ": cannot allocate " +
                                            std::to_string(bytes) + " bytes of host memory");
    void* p = std::aligned_alloc(kAlignment, rounded);
    if (!p)
      throw Error(ErrorCategory::limit, std::string(what) + ": cannot allocate " +
                                            std::to_string(bytes) + " bytes of host memory");
    return p;
  }

  void deallocate(void* ptr) noexcept override { std::free(ptr); }
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(int num_threads, cpu::QuantKernel quant_kernel)
      : threads_(num_threads > 0 ? num_threads : omp_get_max_threads()), quant_kernel_(quant_kernel) {
    // OpenBLAS keeps one global thread pool; an explicit count applies to it too.
    if (num_threads > 0) openblas_set_num_threads(num_threads);
  }

  Device device() const override { return Device::cpu(); }
  Allocator& allocator() override { return allocator_; }
  DType compute_dtype() const override { return DType::f32; }

  void copy(TensorView dst, const TensorView& src) override {
    if (dst.device.kind != DeviceKind::cpu || src.device.kind != DeviceKind::cpu)
      cpu::fail("copy", "the CPU backend copies host memory only (dst " + dst.shape_string() +
                            ", src " + src.shape_string() + ")");
    if (dst.bytes() != src.bytes())
      cpu::fail("copy",
                "dst " + dst.shape_string() + " and src " + src.shape_string() + " differ in size");
    if (dst.bytes() == 0) return;
    if (dst.empty() || src.empty()) cpu::fail("copy", "null dst or src");
    std::memmove(dst.data, src.data, dst.bytes());
  }

  void synchronize() override {}

  void embedding(const TensorView& ids, const TensorView& positions, const TensorView& wte,
                 const TensorView* wpe, TensorView out) override {
    cpu::embedding(ids, positions, wte, wpe, out, threads_);
  }
  void embedding(const TensorView& ids, const TensorView& positions, const QuantizedWeight& wte,
                 const TensorView* wpe, TensorView out) override {
    cpu::embedding(ids, positions, wte, wpe, out, threads_);
  }

  void add_residual_norm(TensorView residual, const TensorView* delta, const TensorView* delta_bias,
                         const NormParams& norm, TensorView out) override {
    cpu::add_residual_norm(residual, delta, delta_bias, norm, out, threads_);
  }

  void linear(const TensorView& x, const TensorView& w, const TensorView* bias,
              TensorView out) override {
    if (observer_) observer_(w.data, x);
    cpu::linear(x, w, bias, out, threads_);
  }

  void prepare_quantized(QuantizedWeight& w) override { cpu::prepare_quantized_cpu(w); }
  void quantized_linear(const TensorView& x, const QuantizedWeight& w, const TensorView* bias,
                        TensorView out) override {
    if (observer_) observer_(w.data.data, x);
    cpu::quantized_linear(x, w, bias, out, threads_, quant_kernel_);
  }

  void set_observer(cpu::LinearObserver observer) { observer_ = std::move(observer); }

  void bias_activation(TensorView x, const TensorView* bias, Activation act) override {
    cpu::bias_activation(x, bias, act, threads_);
  }

  void gated_activation(const TensorView& gate_up, Activation act, TensorView out) override {
    cpu::gated_activation(gate_up, act, out, threads_);
  }
  void clamped_swiglu(const TensorView& gate_up, float alpha, float limit, TensorView out) override {
    cpu::clamped_swiglu(gate_up, alpha, limit, out, threads_);
  }

  void context_attention(TensorView qkv, const TensorView* qkv_bias, const AttentionParams& params,
                         const SequenceBatch& batch, const KvCacheLayer& cache,
                         TensorView out) override {
    cpu::attention(qkv, qkv_bias, params, batch, cache, out, /*one_token_per_seq=*/false,
                   "context_attention", threads_);
  }

  void masked_attention(TensorView qkv, const TensorView* qkv_bias, const AttentionParams& params,
                        const SequenceBatch& batch, const KvCacheLayer& cache,
                        TensorView out) override {
    cpu::attention(qkv, qkv_bias, params, batch, cache, out, /*one_token_per_seq=*/true,
                   "masked_attention", threads_);
  }

  void head_norm(TensorView qkv, int n_heads, int n_kv_heads, int head_dim, const NormParams& q_norm,
                 const NormParams& k_norm) override {
    cpu::head_norm(qkv, n_heads, n_kv_heads, head_dim, q_norm, k_norm, threads_);
  }

  void scale(TensorView x, float factor) override { cpu::scale(x, factor, threads_); }

  void soft_cap(TensorView x, float cap) override { cpu::soft_cap(x, cap, threads_); }

  void gather_rows(const TensorView& x, const TensorView& rows, TensorView out) override {
    cpu::gather_rows(x, rows, out, threads_);
  }

  void moe_route(const TensorView& router_logits, bool normalize, TensorView ids, TensorView weights) override {
    cpu::moe_route(router_logits, normalize, ids, weights, threads_);
  }
  void moe_group(const TensorView& ids, TensorView offsets, TensorView rows, TensorView slot_of) override {
    cpu::moe_group(ids, offsets, rows, slot_of);
  }
  void moe_combine(const TensorView& expert_out, const TensorView& slot_of, const TensorView& weights,
                   const TensorView* shared, const TensorView* shared_gate, TensorView out) override {
    cpu::moe_combine(expert_out, slot_of, weights, shared, shared_gate, out, threads_);
  }

  void copy_kv_blocks(const KvCacheLayer& cache, const TensorView& pairs) override {
    cpu::copy_kv_blocks(cache, pairs);
  }

  void sample(TensorView logits, const SamplingBatch& batch, TensorView tokens) override {
    cpu::sample(logits, batch, tokens, threads_);
  }

 private:
  int threads_;
  cpu::QuantKernel quant_kernel_;  // automatic, or batch_invariant
  CpuAllocator allocator_;
  cpu::LinearObserver observer_;
};

}  // namespace

void cpu::set_linear_observer(Backend& backend, LinearObserver observer) {
  auto* cpu = dynamic_cast<CpuBackend*>(&backend);
  if (!cpu)
    throw Error(ErrorCategory::unsupported, "linear observers (calibration) run on the CPU backend only");
  cpu->set_observer(std::move(observer));
}

std::unique_ptr<Backend> make_cpu_backend(int num_threads, bool batch_invariant) {
  if (num_threads < 0)
    throw Error(ErrorCategory::invalid_argument,
                "num_threads: must be >= 0 (0 = all cores), got " + std::to_string(num_threads));
  return std::make_unique<CpuBackend>(num_threads, batch_invariant ? cpu::QuantKernel::batch_invariant
                                                                   : cpu::QuantKernel::automatic);
}

}  // namespace kestrel
