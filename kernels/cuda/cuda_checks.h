// kernels/cuda/cuda_checks.h: host-side validation of the CUDA backend's operation inputs:
// dtypes, shapes, devices and alignment (what can be checked without reading device
// memory). Every failure throws Error(internal) naming the operation and the tensor, as
// the CPU reference does.
#pragma once

#include <initializer_list>
#include <string>

#include "backend.h"
#include "op_checks.h"

namespace kestrel::cuda {

[[noreturn]] inline void fail(const char* op, const std::string& message) { op_fail(op, message); }

// Throws unless `t` lives on cuda:`device`, has `dtype` and exactly `shape` (-1 matches
// any size) and is non-null when it has elements.
inline void expect_tensor(const TensorView& t, int device, DType dtype,
                          std::initializer_list<int64_t> shape, const char* op, const char* name) {
  expect_op_tensor(t, Device::cuda(device), dtype, shape, op, name);
}

// Throws unless `t` has a floating-point dtype (f32, f16, bf16); returns it.
DType expect_float(const TensorView& t, const char* op, const char* name);

// Throws unless t.data is a multiple of `alignment` bytes.
void expect_aligned(const TensorView& t, size_t alignment, const char* op, const char* name);

// Checks of whole operations (shapes as in backend.h). Each returns normally or throws.
void check_embedding(int device, const TensorView& ids, const TensorView& positions,
                     const TensorView& wte, const TensorView* wpe, const TensorView& out);
void check_gather_rows(int device, const TensorView& x, const TensorView& rows,
                       const TensorView& out);
void check_copy_kv_blocks(int device, const KvCacheLayer& cache, const TensorView& pairs);
void check_add_residual_norm(int device, const TensorView& residual, const TensorView* delta,
                             const TensorView* delta_bias, const NormParams& norm,
                             const TensorView& out);
void check_linear(int device, const TensorView& x, const TensorView& w, const TensorView* bias,
                  const TensorView& out);
void check_bias_activation(int device, const TensorView& x, const TensorView* bias);
// `op` names the caller (gated_activation, clamped_swiglu).
void check_gated_activation(int device, const TensorView& gate_up, const TensorView& out,
                            const char* op = "gated_activation");
void check_attention(int device, const TensorView& qkv, const TensorView* qkv_bias,
                     const AttentionParams& params, const SequenceBatch& batch,
                     const KvCacheLayer& cache, const TensorView& out, bool one_token_per_seq,
                     const char* op);
void check_sample(int device, const TensorView& logits, const SamplingBatch& batch,
                  const TensorView& tokens, size_t max_dynamic_shared);

void check_head_norm(int device, const TensorView& qkv, int nh, int nkv, int hd, const NormParams& q_norm,
                     const NormParams& k_norm);
// scale and soft_cap: x a float tensor of rank 2 on the device; cap > 0 for soft_cap.
void check_elementwise(int device, const TensorView& x, const char* op);

}  // namespace kestrel::cuda
