// kernels/cuda/cuda_checks.cc: host-side validation of the CUDA backend's inputs.
#include "cuda/cuda_checks.h"

#include <cmath>
#include <cstdint>

#include "cuda/cuda_ops.h"
#include "kestrel/error.h"

namespace kestrel::cuda {

DType expect_float(const TensorView& t, const char* op, const char* name) {
  if (t.dtype != DType::f32 && t.dtype != DType::f16 && t.dtype != DType::bf16)
    fail(op, std::string(name) + " " + t.shape_string() + " should be f32, f16 or bf16");
  return t.dtype;
}

void expect_aligned(const TensorView& t, size_t alignment, const char* op, const char* name) {
  if (reinterpret_cast<uintptr_t>(t.data) % alignment != 0)
    fail(op, std::string(name) + " " + t.shape_string() + " is not aligned to " +
                 std::to_string(alignment) + " bytes");
}

void check_embedding(int device, const TensorView& ids, const TensorView& positions,
                     const TensorView& wte, const TensorView* wpe, const TensorView& out) {
  const char* op = "embedding";
  expect_tensor(ids, device, DType::i32, {-1}, op, "ids");
  const int64_t T = ids.dim(0);
  const DType a = expect_float(wte, op, "wte");
  expect_tensor(wte, device, a, {-1, -1}, op, "wte");
  const int64_t H = wte.dim(1);
  expect_tensor(out, device, a, {T, H}, op, "out");
  if (wpe) {
    expect_tensor(*wpe, device, a, {-1, H}, op, "wpe");
    expect_tensor(positions, device, DType::i32, {T}, op, "positions");
  }
}

void check_gather_rows(int device, const TensorView& x, const TensorView& rows,
                       const TensorView& out) {
  const char* op = "gather_rows";
  const DType a = expect_float(x, op, "x");
  expect_tensor(x, device, a, {-1, -1}, op, "x");
  expect_tensor(rows, device, DType::i32, {-1}, op, "rows");
  expect_tensor(out, device, a, {rows.dim(0), x.dim(1)}, op, "out");
}

void check_copy_kv_blocks(int device, const KvCacheLayer& cache, const TensorView& pairs) {
  const char* op = "copy_kv_blocks";
  const DType a = expect_float(cache.k, op, "k");
  expect_tensor(cache.k, device, a, {-1, -1, -1, -1}, op, "k");
  expect_tensor(cache.v, device, a, {cache.k.dim(0), cache.k.dim(1), cache.k.dim(2), cache.k.dim(3)}, op, "v");
  expect_tensor(pairs, device, DType::i32, {-1, 2}, op, "pairs");
}

void check_add_residual_norm(int device, const TensorView& residual, const TensorView* delta,
                             const TensorView* delta_bias, const NormParams& norm,
                             const TensorView& out) {
  const char* op = "add_residual_norm";
  const DType a = expect_float(residual, op, "residual");
  expect_tensor(residual, device, a, {-1, -1}, op, "residual");
  const int64_t T = residual.dim(0), H = residual.dim(1);
  expect_tensor(out, device, a, {T, H}, op, "out");
  if (delta) expect_tensor(*delta, device, a, {T, H}, op, "delta");
  if (delta_bias) expect_tensor(*delta_bias, device, a, {H}, op, "delta_bias");
  expect_tensor(norm.gamma, device, a, {H}, op, "gamma");
  if (norm.gamma.empty() && H > 0) fail(op, "gamma is missing");
  if (!norm.beta.empty()) {
    if (norm.kind == NormKind::rms_norm) fail(op, "RMSNorm takes no beta");
    expect_tensor(norm.beta, device, a, {H}, op, "beta");
  }
  if (!(norm.eps >= 0.0f)) fail(op, "eps must be >= 0, got " + std::to_string(norm.eps));
}

void check_linear(int device, const TensorView& x, const TensorView& w, const TensorView* bias,
                  const TensorView& out) {
  const char* op = "linear";
  const DType a = expect_float(x, op, "x");
  expect_tensor(x, device, a, {-1, -1}, op, "x");
  const int64_t T = x.dim(0), K = x.dim(1);
  expect_tensor(w, device, a, {-1, K}, op, "w");
  const int64_t M = w.dim(0);
  // Logits come out in f32 from activations of any dtype.
  const DType o = out.dtype == DType::f32 ? DType::f32 : a;
  expect_tensor(out, device, o, {T, M}, op, "out");
  if (bias) expect_tensor(*bias, device, expect_float(*bias, op, "bias"), {M}, op, "bias");
  constexpr int64_t kMaxInt = 2147483647;
  if (T > kMaxInt || K > kMaxInt || M > kMaxInt)
    fail(op,
         "dimensions beyond cuBLAS's int range: x " + x.shape_string() + ", w " + w.shape_string());
}

void check_bias_activation(int device, const TensorView& x, const TensorView* bias) {
  const char* op = "bias_activation";
  const DType a = expect_float(x, op, "x");
  expect_tensor(x, device, a, {-1, -1}, op, "x");
  if (bias) expect_tensor(*bias, device, a, {x.dim(1)}, op, "bias");
}

void check_gated_activation(int device, const TensorView& gate_up, const TensorView& out, const char* op) {
  const DType a = expect_float(gate_up, op, "gate_up");
  expect_tensor(gate_up, device, a, {-1, -1}, op, "gate_up");
  if (gate_up.dim(1) % 2 != 0)
    fail(op, "gate_up " + gate_up.shape_string() + " has an odd last dimension");
  expect_tensor(out, device, a, {gate_up.dim(0), gate_up.dim(1) / 2}, op, "out");
}

void check_attention(int device, const TensorView& qkv, const TensorView* qkv_bias,
                     const AttentionParams& params, const SequenceBatch& batch,
                     const KvCacheLayer& cache, const TensorView& out, bool one_token_per_seq,
                     const char* op) {
  const int nh = params.n_heads, nkv = params.n_kv_heads, hd = params.head_dim;
  check_attention_params(Device::cuda(device), params, op);
  if (hd % 8 != 0 || hd > kAttentionMaxHeadDim)
    throw Error(ErrorCategory::unsupported,
                std::string(op) + ": head_dim " + std::to_string(hd) +
                    " is not supported by the CUDA kernels (a multiple of 8 up to " +
                    std::to_string(kAttentionMaxHeadDim) + ")");
  if (nh > 65535)
    throw Error(ErrorCategory::unsupported, std::string(op) + ": more than 65535 heads");

  const int64_t width = static_cast<int64_t>(nh + 2 * nkv) * hd;
  const DType a = expect_float(qkv, op, "qkv");
  expect_tensor(qkv, device, a, {-1, width}, op, "qkv");
  const int64_t T = qkv.dim(0);
  expect_tensor(out, device, a, {T, static_cast<int64_t>(nh) * hd}, op, "out");
  if (qkv_bias) expect_tensor(*qkv_bias, device, a, {width}, op, "qkv_bias");
  if (!params.sinks.empty()) expect_tensor(params.sinks, device, a, {nh}, op, "sinks");
  if (cache.block_size <= 0) fail(op, "cache block_size must be positive");
  expect_tensor(cache.k, device, a, {-1, nkv, cache.block_size, hd}, op, "cache.k");
  expect_tensor(cache.v, device, a, {cache.k.dim(0), nkv, cache.block_size, hd}, op, "cache.v");
  if (cache.k.dim(0) <= 0) fail(op, "the cache has no blocks");
  // Cached keys and values are read as 16-byte vectors.
  expect_aligned(cache.k, 16, op, "cache.k");
  expect_aligned(cache.v, 16, op, "cache.v");

  const int B = batch.n_seqs;
  if (B < 0) fail(op, "n_seqs is negative");
  if (T > 0 && B == 0) fail(op, "T = " + std::to_string(T) + " tokens but no sequences");
  if (T > 2147483647) fail(op, "too many tokens: " + std::to_string(T));
  if (batch.max_blocks_per_seq < 0) fail(op, "max_blocks_per_seq is negative");
  expect_tensor(batch.token_offsets, device, DType::i32, {B + 1}, op, "token_offsets");
  expect_tensor(batch.n_past, device, DType::i32, {B}, op, "n_past");
  expect_tensor(batch.block_tables, device, DType::i32, {B, batch.max_blocks_per_seq}, op,
                "block_tables");
  if (one_token_per_seq && T != B)
    fail(op, "expects one token per sequence, got T = " + std::to_string(T) +
                 " for B = " + std::to_string(B));
  if (batch.max_total_tokens < 0 || batch.max_new_tokens < 0)
    fail(op, "max_total_tokens / max_new_tokens are negative");
  if (static_cast<int64_t>(batch.max_total_tokens) >
      static_cast<int64_t>(batch.max_blocks_per_seq) * cache.block_size)
    fail(op, "max_total_tokens " + std::to_string(batch.max_total_tokens) + " exceeds " +
                 std::to_string(batch.max_blocks_per_seq) + " blocks of " +
                 std::to_string(cache.block_size) + " positions");
}

void check_sample(int device, const TensorView& logits, const SamplingBatch& batch,
                  const TensorView& tokens, size_t max_dynamic_shared) {
  const char* op = "sample";
  const int B = batch.n_seqs;
  if (B < 0) fail(op, "n_seqs is negative");
  expect_tensor(logits, device, DType::f32, {B, -1}, op, "logits");
  const int64_t V = logits.dim(1);
  if (V <= 0) fail(op, "logits " + logits.shape_string() + " has no vocabulary");
  if (V > 2147483647) fail(op, "vocabulary beyond int32 ids: " + logits.shape_string());
  if (sample_shared_bytes(V) > max_dynamic_shared)
    throw Error(ErrorCategory::unsupported,
                std::string(op) + ": a vocabulary of " + std::to_string(V) +
                    " tokens is beyond the device's shared memory for the sampling kernel");
  expect_tensor(tokens, device, DType::i32, {B}, op, "tokens");
  expect_tensor(batch.rows, device, DType::i8, {-1}, op, "rows");
  if (batch.rows.bytes() != B * sizeof(SamplingRow))
    fail(op, "rows " + batch.rows.shape_string() + " should hold " + std::to_string(B) +
                 " SamplingRow structs of " + std::to_string(sizeof(SamplingRow)) + " bytes");
  expect_aligned(batch.rows, alignof(SamplingRow), op, "rows");
  expect_tensor(batch.history, device, DType::i32, {B, -1}, op, "history");
  expect_tensor(batch.history_lengths, device, DType::i32, {B}, op, "history_lengths");
  expect_tensor(batch.prompt_lengths, device, DType::i32, {B}, op, "prompt_lengths");
}

void check_head_norm(int device, const TensorView& qkv, int nh, int nkv, int hd, const NormParams& q_norm,
                     const NormParams& k_norm) {
  const char* op = "head_norm";
  if (nh <= 0 || nkv <= 0 || hd <= 0) fail(op, "bad head counts");
  const DType a = expect_float(qkv, op, "qkv");
  expect_tensor(qkv, device, a, {-1, static_cast<int64_t>(nh + 2 * nkv) * hd}, op, "qkv");
  for (const NormParams* norm : {&q_norm, &k_norm}) {
    const char* name = norm == &q_norm ? "q_norm" : "k_norm";
    if (norm->kind != NormKind::rms_norm || !norm->beta.empty()) fail(op, std::string(name) + " must be an RMSNorm");
    // One head, or all the q / k heads at once (OLMo 2).
    const int64_t all = static_cast<int64_t>(norm == &q_norm ? nh : nkv) * hd;
    expect_tensor(norm->gamma, device, a, {!norm->gamma.empty() && norm->gamma.dim(0) == all ? all : hd}, op, name);
    if (!(norm->eps >= 0.0f)) fail(op, std::string(name) + ": eps must be >= 0");
  }
}

void check_elementwise(int device, const TensorView& x, const char* op) {
  expect_tensor(x, device, expect_float(x, op, "x"), {-1, -1}, op, "x");
}

}  // namespace kestrel::cuda
