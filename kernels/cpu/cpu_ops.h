// kernels/cpu/cpu_ops.h: the fp32 CPU implementations behind CpuBackend, one free
// function per Backend operation (shapes and semantics as documented in backend.h), plus
// the cheap validation helpers they share.
//
// Each function validates its inputs before any OpenMP region (an exception must never
// leave a parallel region), then runs with `threads` OpenMP threads.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>

#include "backend.h"
#include "op_checks.h"

namespace kestrel::cpu {

// --- validation --------------------------------------------------------------------
// Throws Error(internal) naming `op` and `name` unless `t` is a non-empty host tensor of
// `dtype` with exactly `shape` (-1 matches any size).
inline void expect_tensor(const TensorView& t, DType dtype, std::initializer_list<int64_t> shape,
                          const char* op, const char* name) {
  expect_op_tensor(t, Device::cpu(), dtype, shape, op, name);
}
[[noreturn]] inline void fail(const char* op, const std::string& message) { op_fail(op, message); }

// OpenMP threads worth waking for about `work` elements of simple work: one below ~32k,
// where starting a parallel region costs more than it saves (decode steps are small).
inline int threads_for(int64_t work, int threads) {
  return work < (int64_t{1} << 15) ? 1 : threads;
}

// --- operations (see backend.h) ----------------------------------------------------
void embedding(const TensorView& ids, const TensorView& positions, const TensorView& wte,
               const TensorView* wpe, TensorView out, int threads);
void embedding(const TensorView& ids, const TensorView& positions, const QuantizedWeight& wte,
               const TensorView* wpe, TensorView out, int threads);
void gather_rows(const TensorView& x, const TensorView& rows, TensorView out, int threads);
void copy_kv_blocks(const KvCacheLayer& cache, const TensorView& pairs);

// Mixture of experts (moe_cpu.cc).
void moe_route(const TensorView& logits, bool normalize, TensorView ids, TensorView weights, int threads);
void moe_group(const TensorView& ids, TensorView offsets, TensorView rows, TensorView slot_of);
void moe_combine(const TensorView& expert_out, const TensorView& slot_of, const TensorView& weights,
                 const TensorView* shared, const TensorView* shared_gate, TensorView out, int threads);

void add_residual_norm(TensorView residual, const TensorView* delta, const TensorView* delta_bias,
                       const NormParams& norm, TensorView out, int threads);

void linear(const TensorView& x, const TensorView& w, const TensorView* bias, TensorView out,
            int threads);

// Which quantized_linear kernel runs: chosen by the number of tokens and the weight's
// layout (automatic: up to 6 tokens the 8-bit-activation dot products of
// quantized_q8_cpu.h with the best instruction set, or the f32 ones where the layout does
// not allow them; more tokens the dequantized-tile sgemm), or one forced for tests.
enum class QuantKernel : uint8_t {
  automatic,
  dot_simd,      // f32 activations, AVX2 (portable without it)
  dot_portable,  // f32 activations
  tiled_gemm,    // f32 tiles + OpenBLAS sgemm
  q8_portable,   // 8-bit activations, integer dot products (Error when not q8_eligible)
  q8_avx2,
  q8_vnni,       // AVX-512 VNNI (Error where the processor lacks it)
  int8_gemm,     // W8A8: int8 activations per token, oneDNN's int8 GEMM (w8a8_cpu.cc)
  batch_invariant,  // automatic's choice for few tokens, at any token count: each row's
                    // result is then the same whatever rows share the call
};
void quantized_linear(const TensorView& x, const QuantizedWeight& w, const TensorView* bias,
                      TensorView out, int threads, QuantKernel kernel = QuantKernel::automatic);
// Calibration (tools/smoothquant): the CPU backend calls the observer with each linear
// layer's weight (its data pointer, which names it) and input x [T, K] before the product.
// An empty function removes it. Throws Error(unsupported) for other backends.
using LinearObserver = std::function<void(const void* weight, const TensorView& x)>;
void set_linear_observer(Backend& backend, LinearObserver observer);

// W8A8 (w8a8_cpu.cc): int8 weights with one group per row; x [T, K] quantized per token to
// int8 (q [T, K], scales [T]: x ~ scale * q) and multiplied by an int8 GEMM; out [T, M] f32.
bool w8a8_eligible(const QuantizedWeight& w);
// Whether the GEMM is oneDNN's (else `why` says why the portable one runs).
bool w8a8_uses_onednn(std::string* why = nullptr);
void quantize_rows_int8(const float* x, int64_t T, int64_t K, int8_t* q, float* scales, int threads);
void w8a8_gemm(const TensorView& x, const QuantizedWeight& w, const float* bias, float* out, int threads);
// All of w dequantized to f32: out [M, K] row-major; or `count` rows from `row0`.
void dequantize_weight(const QuantizedWeight& w, float* out);
void dequantize_weight_rows(const QuantizedWeight& w, int64_t row0, int64_t count, float* out);

void bias_activation(TensorView x, const TensorView* bias, Activation act, int threads);
void gated_activation(const TensorView& gate_up, Activation act, TensorView out, int threads);
void clamped_swiglu(const TensorView& gate_up, float alpha, float limit, TensorView out, int threads);

// head_norm_cpu.cc: per-head q / k RMSNorm, and the elementwise scale and soft-cap.
void head_norm(TensorView qkv, int nh, int nkv, int hd, const NormParams& q_norm, const NormParams& k_norm,
               int threads);
void scale(TensorView x, float factor, int threads);
void soft_cap(TensorView x, float cap, int threads);

// Both attention entry points share this; `op` names the caller in errors and
// `one_token_per_seq` enforces the generation-phase contract (T == B).
void attention(TensorView qkv, const TensorView* qkv_bias, const AttentionParams& params,
               const SequenceBatch& batch, const KvCacheLayer& cache, TensorView out,
               bool one_token_per_seq, const char* op, int threads);

void sample(TensorView logits, const SamplingBatch& batch, TensorView tokens, int threads);

}  // namespace kestrel::cpu
