// kernels/cuda/cuda_ops.h: the kernel launchers behind CudaBackend, one per Backend
// operation (shapes and semantics as documented in backend.h), plus what they share: the
// stream and device error record of the backend and the CUDA error check.
//
// CudaBackend (cuda_backend.cc) validates dtypes, shapes and devices on the host before it
// calls a launcher; a launcher only enqueues work on ctx.stream: it never allocates and
// never waits for the device. Indices that live in device memory (token ids, block tables,
// sampling histories) are checked by the kernels, which record the first bad one in
// ctx.errors (see DeviceErrorRecord) and stay within bounds.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend.h"

namespace kestrel::cuda {

// Throws Error(device, "<op>: <CUDA error string>") unless status is cudaSuccess.
void check(cudaError_t status, const char* op);
// Checks the launch that was just enqueued (cudaGetLastError).
void check_launch(const char* op);

// The stream a CUDA backend enqueues its work on (communication joins it, in order);
// throws Error(internal) for another backend.
cudaStream_t backend_stream(Backend& backend);

// What a kernel found wrong with its inputs. The first error of a run of operations is
// kept in device memory; the host reads it at synchronize() / copy to host and throws.
enum class DeviceErrorCode : int {
  none = 0,
  embedding_id,        // detail: token index t whose id is outside wte
  embedding_position,  // detail: token index t whose position is outside wpe
  gather_row,          // detail: output row b whose source row is outside x
  attention_sequence,  // detail: token or sequence index with bad offsets / n_past
  attention_block,     // detail: sequence whose block table points outside the cache
  sample_settings,     // detail: row with invalid SamplingRow settings
  sample_history,      // detail: row whose history lengths or tokens are invalid
  sample_nan,          // detail: row whose logits contain NaN
  kv_block,            // detail: pair whose source or destination block is outside the cache
  moe_expert,          // detail: (token, choice) pair whose expert id is outside [0, E)
};
struct DeviceErrorRecord {
  int code;    // a DeviceErrorCode
  int detail;  // the index named above
};

// What every launcher needs from the backend.
struct LaunchContext {
  cudaStream_t stream = nullptr;
  DeviceErrorRecord* errors = nullptr;  // device memory
  int sm_count = 0;                     // multiprocessors of the device
  size_t max_shared_bytes = 0;          // opt-in shared memory per block of the device
};

// --- operations -------------------------------------------------------------------------
void embedding(const LaunchContext& ctx, const TensorView& ids, const TensorView& positions,
               const TensorView& wte, const TensorView* wpe, TensorView out);
// The lookup in a quantized table (rows dequantized on the way); same error reporting.
void embedding(const LaunchContext& ctx, const TensorView& ids, const TensorView& positions,
               const QuantizedWeight& wte, const TensorView* wpe, TensorView out);
void gather_rows(const LaunchContext& ctx, const TensorView& x, const TensorView& rows,
                 TensorView out);
void copy_kv_blocks(const LaunchContext& ctx, const KvCacheLayer& cache, const TensorView& pairs);

// Mixture of experts (moe_cuda.cu).
void moe_route(const LaunchContext& ctx, const TensorView& logits, bool normalize, TensorView ids,
               TensorView weights);
void moe_group(const LaunchContext& ctx, const TensorView& ids, TensorView offsets, TensorView rows,
               TensorView slot_of);
void moe_combine(const LaunchContext& ctx, const TensorView& expert_out, const TensorView& slot_of,
                 const TensorView& weights, const TensorView* shared, const TensorView* shared_gate, TensorView out);

void add_residual_norm(const LaunchContext& ctx, TensorView residual, const TensorView* delta,
                       const TensorView* delta_bias, const NormParams& norm, TensorView out);

// out[t, :] = bias for every row t (bias: [M]; out: [T, M], any float dtypes). linear uses
// it to put the bias under a GEMM that accumulates with beta = 1.
void broadcast_rows(const LaunchContext& ctx, const TensorView& bias, TensorView out);

// quantized_linear for at most kQuantGemvMaxTokens rows of x: the weight is read once and
// dequantized in registers (quantized_linear_cuda.cu). x: [T, K]; w: [M, K], one format (not
// mixed); out: [T, N] (x's dtype or f32), row m of w going to column col0 + m (N = M and
// col0 = 0 but for a part of a mixed weight); bias: [N] read at col0 + m, or null.
constexpr int kQuantGemvMaxTokens = 8;
void quantized_gemv(const LaunchContext& ctx, const TensorView& x, const QuantizedWeight& w,
                    const TensorView* bias, TensorView out, int64_t col0 = 0);
// out[r, :] = dequantize(w)[row0 + r, :] for r < out.dim(0): out [rows, K] in any float dtype.
void dequantize_rows(const LaunchContext& ctx, const QuantizedWeight& w, int64_t row0, int64_t rows,
                     TensorView out);
// FP8 activations: out[t, :] = x[t, :] rounded to E4M3 with one scale per row (max |x_t| /
// 448) and back, in x's dtype (x, out: [T, K]; may alias).
void round_rows_fp8(const LaunchContext& ctx, const TensorView& x, TensorView out);
// W8A8 (w8a8_cuda.cu): q [T, K] int8 and scales [T] f32 of x [T, K], one scale per row
// (max |x_t| / 127, nearest even); and out [T, M] = acc [T, M] int32 x x_scales[t] x
// w_scales[m] (+ bias [M]).
void quantize_rows_int8(const LaunchContext& ctx, const TensorView& x, int8_t* q, float* scales);
void w8a8_epilogue(const LaunchContext& ctx, const int32_t* acc, const float* x_scales, const float* w_scales,
                   const TensorView* bias, TensorView out);
// FP8 tensor-core prefill (fp8_gemm_cuda.cu, fp8_gemm.h): q [T, K] E4M3 bytes and scales
// [T] f32 of x [T, K], one scale per row (max |x_t| / 448, rounded as round_rows_fp8); and
// out [T, M] = acc [T, M] f32 x x_scales[t] x w_scales[m] (+ bias [M]).
void quantize_rows_fp8(const LaunchContext& ctx, const TensorView& x, uint8_t* q, float* scales);
void fp8_epilogue(const LaunchContext& ctx, const float* acc, const float* x_scales, const float* w_scales,
                  const TensorView* bias, TensorView out);

void bias_activation(const LaunchContext& ctx, TensorView x, const TensorView* bias,
                     Activation act);
void gated_activation(const LaunchContext& ctx, const TensorView& gate_up, Activation act,
                      TensorView out);
void clamped_swiglu(const LaunchContext& ctx, const TensorView& gate_up, float alpha, float limit,
                    TensorView out);

// head_norm_cuda.cu: per-head q / k RMSNorm in place, and the elementwise scale and soft-cap.
void head_norm(const LaunchContext& ctx, TensorView qkv, int nh, int nkv, int hd, const NormParams& q_norm,
               const NormParams& k_norm);
void scale(const LaunchContext& ctx, TensorView x, float factor);
void soft_cap(const LaunchContext& ctx, TensorView x, float cap);

// The attention kernels take head sizes that are a multiple of 8 up to this.
constexpr int kAttentionMaxHeadDim = 256;

// Scratch for the multi-block generation attention: per (sequence, head, partition) the
// running max, the softmax denominator and the unnormalized output (head_dim floats).
struct AttentionWorkspace {
  float* data = nullptr;  // device memory
  size_t floats = 0;
};
// Floats of AttentionWorkspace that the multi-block mode needs for this shape.
size_t masked_attention_workspace_floats(int n_seqs, int n_heads, int head_dim, int partitions);

void context_attention(const LaunchContext& ctx, TensorView qkv, const TensorView* qkv_bias,
                       const AttentionParams& params, const SequenceBatch& batch,
                       const KvCacheLayer& cache, TensorView out);
// partition_size > 0 splits each sequence's keys into partitions of that many positions,
// one block each, merged by a second kernel (workspace must hold
// masked_attention_workspace_floats(...) floats); 0 runs one block per (sequence, head).
void masked_attention(const LaunchContext& ctx, TensorView qkv, const TensorView* qkv_bias,
                      const AttentionParams& params, const SequenceBatch& batch,
                      const KvCacheLayer& cache, TensorView out, int partition_size,
                      const AttentionWorkspace& workspace);

// Shared memory the sampling kernel needs for a vocabulary of V tokens.
size_t sample_shared_bytes(int64_t V);
// Lets the sampling kernel take up to `dynamic_bytes` of dynamic shared memory (beyond the
// default 48 KB): once per device, at backend creation, not in the decode loop.
void init_sampling(size_t dynamic_bytes);
void sample(const LaunchContext& ctx, TensorView logits, const SamplingBatch& batch,
            TensorView tokens);

}  // namespace kestrel::cuda
