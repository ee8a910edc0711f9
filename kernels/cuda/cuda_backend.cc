// kernels/cuda/cuda_backend.cc: the CUDA backend: device allocator, the Backend class (one
// stream, one cuBLAS handle, preallocated scratch), copies, the device error record, and
// the factory functions of backend.h.
//
// Operations validate on the host (cuda_checks.cc), then enqueue kernels on the backend's
// stream (cuda_ops.h): no allocation and no host synchronization happens inside an
// operation; copy() to the host and synchronize() are where the host waits, and where
// errors recorded by kernels surface as exceptions.
#include "cuda/cuda_backend.h"
#include "cuda/cublas_loader.h"
#include "cuda/fp8_gemm.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "cuda/cuda_checks.h"
#include "cuda/cuda_ops.h"
#include "moe_checks.h"
#include "op_checks.h"
#include "kestrel/error.h"

namespace kestrel {
namespace cuda {

void check(cudaError_t status, const char* op) {
  if (status != cudaSuccess)
    throw Error(ErrorCategory::device, std::string(op) + ": " + cudaGetErrorString(status));
}

void check_launch(const char* op) { check(cudaGetLastError(), op); }

namespace {

void check_cublas(cublasStatus_t status, const char* op) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCategory::device, std::string(op) + ": " + cublas_api().status_string(status));
}

std::string describe(const DeviceErrorRecord& r) {
  const std::string i = std::to_string(r.detail);
  switch (static_cast<DeviceErrorCode>(r.code)) {
    case DeviceErrorCode::none:
      return "no error";
    case DeviceErrorCode::embedding_id:
      return "embedding: ids[" + i + "] is outside the vocabulary of wte";
    case DeviceErrorCode::embedding_position:
      return "embedding: positions[" + i + "] is outside wpe";
    case DeviceErrorCode::gather_row:
      return "gather_rows: rows[" + i + "] is outside x";
    case DeviceErrorCode::moe_expert:
      return "moe_group: ids[" + i + "] is not an expert";
    case DeviceErrorCode::attention_sequence:
      return "attention: token / sequence " + i +
             " has token_offsets or n_past inconsistent with the step (or beyond max_total_tokens)";
    case DeviceErrorCode::attention_block:
      return "attention: sequence " + i + ": a block_tables entry is outside the cache";
    case DeviceErrorCode::sample_settings:
      return "sample: row " + i + ": invalid sampling settings";
    case DeviceErrorCode::sample_history:
      return "sample: row " + i + ": history lengths or tokens are invalid";
    case DeviceErrorCode::sample_nan:
      return "sample: logits row " + i + " contains NaN";
    case DeviceErrorCode::kv_block:
      return "copy_kv_blocks: pairs[" + i + "] names a block outside the cache";
  }
  return "unknown device error " + std::to_string(r.code) + " (" + i + ")";
}

// Scratch sizes, taken once at construction.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;     // cuBLAS's advice for Hopper
constexpr size_t kAttentionWorkspaceBytes = size_t{32} << 20;  // multi-block attention partials
// quantized_linear's dequantized weight tiles (many-token path); a row of K elements must fit.
constexpr size_t kDequantScratchBytes = size_t{32} << 20;
// Automatic multi-block attention: partitions of this many positions, for sequences of at
// least two partitions, when sequences x heads would leave the device half idle.
constexpr int kAutoPartition = 512;
constexpr int kMaxAutoPartitions = 64;

class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int device) : device_(device) {}

  Device device() const override { return Device::cuda(device_); }

  void* allocate(size_t bytes, const char* what) override {
    check(cudaSetDevice(device_), what);
    void* p = nullptr;
    // Zero bytes still gets a block, so the result is never null.
    const cudaError_t status = cudaMalloc(&p, std::max<size_t>(bytes, 256));
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // out of memory is not sticky; clear it
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      throw Error(ErrorCategory::limit,
                  std::string(what) + ": cannot allocate " + std::to_string(bytes) +
                      " bytes of device memory on cuda:" + std::to_string(device_) + " (" +
                      std::to_string(free_bytes) + " of " + std::to_string(total_bytes) +
                      " bytes free)");
    }
    if (status != cudaSuccess)
      throw Error(ErrorCategory::device, std::string(what) + ": cudaMalloc of " +
                                             std::to_string(bytes) +
                                             " bytes: " + cudaGetErrorString(status));
    return p;
  }

  void deallocate(void* ptr) noexcept override {
    if (!ptr) return;
    cudaSetDevice(device_);
    cudaFree(ptr);
  }

 private:
  int device_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, const CudaBackendOptions& options)
      : device_(device), options_(options), allocator_(device) {
    try {
      init();
    } catch (...) {
      release();
      throw;
    }
  }

  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    release();
  }

  Device device() const override { return Device::cuda(device_); }
  Allocator& allocator() override { return allocator_; }
  cudaStream_t stream() const { return stream_; }
  DType compute_dtype() const override { return DType::f16; }

  void copy(TensorView dst, const TensorView& src) override {
    const char* op = "copy";
    if (dst.bytes() != src.bytes())
      fail(op, "dst " + dst.shape_string() + " and src " + src.shape_string() + " differ in size");
    const bool dst_host = dst.device.kind == DeviceKind::cpu;
    const bool src_host = src.device.kind == DeviceKind::cpu;
    if ((!dst_host && dst.device != device()) || (!src_host && src.device != device()))
      fail(op, "dst " + dst.shape_string() + " / src " + src.shape_string() +
                   ": the CUDA backend of cuda:" + std::to_string(device_) +
                   " copies between its device and the host only");
    if (dst.bytes() == 0) return;
    if (dst.empty() || src.empty()) fail(op, "null dst or src");
    if (dst_host && src_host) {
      std::memmove(dst.data, src.data, dst.bytes());
      return;
    }
    set_device(op);
    const cudaMemcpyKind kind = dst_host   ? cudaMemcpyDeviceToHost
                                : src_host ? cudaMemcpyHostToDevice
                                           : cudaMemcpyDeviceToDevice;
    // Pageable host memory is fine: a host-to-device copy has read the source when the
    // call returns, and a device-to-host copy is waited for below.
    check(cudaMemcpyAsync(dst.data, src.data, dst.bytes(), kind, stream_), op);
    if (dst_host) wait_and_report(op);
  }

  void synchronize() override {
    set_device("synchronize");
    wait_and_report("synchronize");
  }

  void embedding(const TensorView& ids, const TensorView& positions, const TensorView& wte,
                 const TensorView* wpe, TensorView out) override {
    check_embedding(device_, ids, positions, wte, wpe, out);
    set_device("embedding");
    cuda::embedding(ctx_, ids, positions, wte, wpe, out);
  }
  void embedding(const TensorView& ids, const TensorView& positions, const QuantizedWeight& wte,
                 const TensorView* wpe, TensorView out) override {
    check_quantized_embedding(device(), ids, positions, wte, wpe, out);
    set_device("embedding");
    cuda::embedding(ctx_, ids, positions, wte, wpe, out);
  }

  void add_residual_norm(TensorView residual, const TensorView* delta, const TensorView* delta_bias,
                         const NormParams& norm, TensorView out) override {
    check_add_residual_norm(device_, residual, delta, delta_bias, norm, out);
    set_device("add_residual_norm");
    cuda::add_residual_norm(ctx_, residual, delta, delta_bias, norm, out);
  }

  // out = x @ w^T (+ bias) in one cublasGemmEx on tensor cores (fp32 compute; f32 inputs
  // stay in full fp32, no TF32). Row-major out[T, M] is column-major out^T[M, T] = w x^T,
  // with w^T read from row-major w[M, K] as a transposed column-major [K, M]. The bias is
  // broadcast into out first and the GEMM accumulates onto it (beta = 1), so it is added in
  // fp32 and rounded once.
  void linear(const TensorView& x, const TensorView& w, const TensorView* bias,
              TensorView out) override {
    const char* op = "linear";
    check_linear(device_, x, w, bias, out);
    set_device(op);
    const int T = static_cast<int>(x.dim(0)), K = static_cast<int>(x.dim(1));
    const int M = static_cast<int>(w.dim(0));
    if (T == 0 || M == 0) return;
    float beta = 0.0f;
    if (bias) {
      cuda::broadcast_rows(ctx_, *bias, out);
      beta = 1.0f;
    }
    if (K == 0) {
      if (!bias) check(cudaMemsetAsync(out.data, 0, out.bytes(), stream_), op);
      return;
    }
    const float alpha = 1.0f;
    check_cublas(cublas_api().gemm_ex(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, M, T, K, &alpha, w.data,
                              cuda_type(w.dtype), K, x.data, cuda_type(x.dtype), K, &beta, out.data,
                              cuda_type(out.dtype), M, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 op);
  }

  // Few tokens: the GEMV kernel (dequantize in registers, bias fused). Many tokens: tiles
  // of weight rows dequantized into the scratch matrix (x's dtype), each multiplied on the
  // tensor cores by cublasGemmEx into its columns of out (ldc = M), over the broadcast bias
  // as in linear().
  void quantized_linear(const TensorView& x, const QuantizedWeight& w, const TensorView* bias,
                        TensorView out) override {
    const char* op = "quantized_linear";
    check_quantized_linear(device(), x.dtype, x, w, bias, out, op);
    set_device(op);
    const int64_t T = x.dim(0), M = w.rows, K = w.cols;
    if (T == 0 || M == 0) return;
    if (w.format == QuantFormat::fp8_e4m3) {
      if (T > cuda::kQuantGemvMaxTokens && options_.fp8_tensor_cores && fp8_gemm_.usable(M, K) &&
          fp8_gemm(x, w, bias, out, op))
        return;
      // Otherwise the activations rounded to E4M3 per token first, as an FP8 GEMM takes
      // them; then the same paths as int8 on the rounded copy.
      TensorView xq(activation_scratch(x.bytes(), op), x.dtype, {T, K}, device());
      cuda::round_rows_fp8(ctx_, x, xq);
      linear_from_quantized(xq, w, bias, out, op);
      return;
    }
    if (w.int8_activations && T > cuda::kQuantGemvMaxTokens) {
      w8a8_gemm(x, w, bias, out, op);
      return;
    }
    linear_from_quantized(x, w, bias, out, op);
  }

  // W8A8 with many tokens: x quantized to int8 per token, an int8 x int8 -> int32 GEMM on
  // the tensor cores (cublasGemmEx, CUBLAS_COMPUTE_32I: K a multiple of 4 for its int8
  // kernels), scaled back in an epilogue with the weight's per-channel scales. Few tokens
  // take the int8 GEMV (weight-only, activations unrounded), as on the CPU where decode
  // quantizes activations per block of 32 rather than per token.
  void w8a8_gemm(const TensorView& x, const QuantizedWeight& w, const TensorView* bias, TensorView out,
                 const char* op) {
    const int64_t T = x.dim(0), M = w.rows, K = w.cols;
    if (K % 4 != 0) {
      linear_from_quantized(x, w, bias, out, op);  // cuBLAS's int8 GEMM needs K % 4 == 0
      return;
    }
    const EightBitScratch scratch = eight_bit_scratch(T, M, K, sizeof(int32_t), op);
    auto* q = static_cast<int8_t*>(scratch.q);
    float* x_scales = scratch.scales;
    auto* acc = static_cast<int32_t*>(scratch.acc);
    cuda::quantize_rows_int8(ctx_, x, q, x_scales);
    // Column-major: acc (M x T, ldc M) = w^T (w row-major [M, K] is K x M) times q (K x T).
    const int32_t one = 1, zero = 0;
    check_cublas(cublas_api().gemm_ex(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(M), static_cast<int>(T),
                                      static_cast<int>(K), &one, w.data.data, CUDA_R_8I, static_cast<int>(K), q,
                                      CUDA_R_8I, static_cast<int>(K), &zero, acc, CUDA_R_32I, static_cast<int>(M),
                                      CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT),
                 op);
    cuda::w8a8_epilogue(ctx_, acc, x_scales, static_cast<const float*>(w.scales.data), bias, out);
  }

  // FP8 with many tokens on the FP8 tensor cores: x rounded to E4M3 bytes per token, the
  // E4M3 x E4M3 -> f32 GEMM of cuBLASLt (fp8_gemm.h), scaled back by token scale x channel
  // scale (+ bias) in the epilogue. False when cuBLASLt has no algorithm for the shape.
  bool fp8_gemm(const TensorView& x, const QuantizedWeight& w, const TensorView* bias, TensorView out, const char* op) {
    const int64_t T = x.dim(0), M = w.rows, K = w.cols;
    const EightBitScratch scratch = eight_bit_scratch(T, M, K, sizeof(float), op);
    auto* q = static_cast<uint8_t*>(scratch.q);
    float* x_scales = scratch.scales;
    auto* acc = static_cast<float*>(scratch.acc);
    cuda::quantize_rows_fp8(ctx_, x, q, x_scales);
    if (!fp8_gemm_.run(stream_, w.data.data, q, acc, T, M, K)) return false;
    cuda::fp8_epilogue(ctx_, acc, x_scales, static_cast<const float*>(w.scales.data), bias, out);
    return true;
  }

  // The 8-bit GEMMs' activation copies in the activation scratch: q [T, K] (1 byte each),
  // then (16-byte aligned) the token scales [T] f32, then the products acc [T, M] of
  // acc_size bytes each.
  struct EightBitScratch {
    void* q;
    float* scales;
    void* acc;
  };
  EightBitScratch eight_bit_scratch(int64_t T, int64_t M, int64_t K, size_t acc_size, const char* op) {
    const size_t q_bytes = (static_cast<size_t>(T * K) + 15) / 16 * 16;
    const size_t s_bytes = (static_cast<size_t>(T) * sizeof(float) + 15) / 16 * 16;
    char* base = static_cast<char*>(activation_scratch(q_bytes + s_bytes + static_cast<size_t>(T * M) * acc_size, op));
    return {base, reinterpret_cast<float*>(base + q_bytes), base + q_bytes + s_bytes};
  }

  // Device memory for the FP8 / W8A8 activation copies, kept across calls and grown (after
  // the stream has finished with the old buffer) when a step needs more: no allocation per
  // step once the largest step has run.
  void* activation_scratch(size_t bytes, const char* op) {
    if (bytes > activation_scratch_bytes_) {
      check(cudaStreamSynchronize(ctx_.stream), op);
      cudaFree(activation_scratch_);
      activation_scratch_ = nullptr;
      activation_scratch_bytes_ = 0;
      check(cudaMalloc(&activation_scratch_, bytes), op);
      activation_scratch_bytes_ = bytes;
    }
    return activation_scratch_;
  }

  // quantized_linear's two paths (after its checks). A mixed weight takes them part by
  // part, each part's rows written straight into its columns of out (the GEMV with out's row
  // stride, the GEMM with ldc = M), so each column is what its part alone gives.
  void linear_from_quantized(const TensorView& x, const QuantizedWeight& w, const TensorView* bias, TensorView out,
                             const char* op) {
    const int64_t T = x.dim(0), M = w.rows, K = w.cols;
    const bool mixed = w.format == QuantFormat::mixed;
    const size_t n_parts = mixed ? w.parts.size() : 1;
    if (T <= cuda::kQuantGemvMaxTokens) {
      for (size_t i = 0, col0 = 0; i < n_parts; ++i) {
        const QuantizedWeight& part = mixed ? w.parts[i] : w;
        cuda::quantized_gemv(ctx_, x, part, bias, out, static_cast<int64_t>(col0));
        col0 += static_cast<size_t>(part.rows);
      }
      return;
    }
    if (K * dtype_size(x.dtype) > kDequantScratchBytes)
      throw Error(ErrorCategory::limit, std::string(op) + ": a weight row of " + std::to_string(K) +
                                            " columns does not fit the dequantization scratch");
    float beta = 0.0f;
    if (bias) {
      cuda::broadcast_rows(ctx_, *bias, out);
      beta = 1.0f;
    }
    const float alpha = 1.0f;
    // Whole multiples of 64 rows (when M allows), so that each tile's first output column
    // stays 16-byte aligned and cuBLAS keeps its fast kernels.
    int64_t tile_rows = static_cast<int64_t>(kDequantScratchBytes / (K * dtype_size(x.dtype)));
    tile_rows = tile_rows >= 64 ? tile_rows / 64 * 64 : std::max<int64_t>(1, tile_rows);
    for (size_t i = 0, col0 = 0; i < n_parts; ++i) {
      const QuantizedWeight& part = mixed ? w.parts[i] : w;
      for (int64_t m0 = 0; m0 < part.rows; m0 += tile_rows) {
        const int64_t rows = std::min(tile_rows, part.rows - m0);
        TensorView tile(dequant_scratch_, x.dtype, {rows, K}, device());
        cuda::dequantize_rows(ctx_, part, m0, rows, tile);
        char* out_cols = static_cast<char*>(out.data) + (static_cast<int64_t>(col0) + m0) * dtype_size(out.dtype);
        check_cublas(cublas_api().gemm_ex(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows),
                                          static_cast<int>(T), static_cast<int>(K), &alpha, tile.data,
                                          cuda_type(x.dtype), static_cast<int>(K), x.data, cuda_type(x.dtype),
                                          static_cast<int>(K), &beta, out_cols, cuda_type(out.dtype),
                                          static_cast<int>(M), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     op);
      }
      col0 += static_cast<size_t>(part.rows);
    }
  }

  void bias_activation(TensorView x, const TensorView* bias, Activation act) override {
    check_bias_activation(device_, x, bias);
    set_device("bias_activation");
    cuda::bias_activation(ctx_, x, bias, act);
  }

  void gated_activation(const TensorView& gate_up, Activation act, TensorView out) override {
    check_gated_activation(device_, gate_up, out);
    set_device("gated_activation");
    cuda::gated_activation(ctx_, gate_up, act, out);
  }

  void clamped_swiglu(const TensorView& gate_up, float alpha, float limit, TensorView out) override {
    check_gated_activation(device_, gate_up, out, "clamped_swiglu");
    if (!(limit > 0.0f) || !std::isfinite(limit) || !std::isfinite(alpha))
      op_fail("clamped_swiglu", "limit must be positive and finite and alpha finite, got limit " +
                                    std::to_string(limit) + ", alpha " + std::to_string(alpha));
    set_device("clamped_swiglu");
    cuda::clamped_swiglu(ctx_, gate_up, alpha, limit, out);
  }

  void head_norm(TensorView qkv, int n_heads, int n_kv_heads, int head_dim, const NormParams& q_norm,
                 const NormParams& k_norm) override {
    check_head_norm(device_, qkv, n_heads, n_kv_heads, head_dim, q_norm, k_norm);
    set_device("head_norm");
    cuda::head_norm(ctx_, qkv, n_heads, n_kv_heads, head_dim, q_norm, k_norm);
  }

  void scale(TensorView x, float factor) override {
    check_elementwise(device_, x, "scale");
    set_device("scale");
    cuda::scale(ctx_, x, factor);
  }

  void soft_cap(TensorView x, float cap) override {
    check_elementwise(device_, x, "soft_cap");
    if (!(cap > 0.0f) || !std::isfinite(cap)) fail("soft_cap", "cap must be positive and finite");
    set_device("soft_cap");
    cuda::soft_cap(ctx_, x, cap);
  }

  void context_attention(TensorView qkv, const TensorView* qkv_bias, const AttentionParams& params,
                         const SequenceBatch& batch, const KvCacheLayer& cache,
                         TensorView out) override {
    const char* op = "context_attention";
    check_attention(device_, qkv, qkv_bias, params, batch, cache, out, false, op);
    set_device(op);
    cuda::context_attention(ctx_, qkv, qkv_bias, params, batch, cache, out);
  }

  void masked_attention(TensorView qkv, const TensorView* qkv_bias, const AttentionParams& params,
                        const SequenceBatch& batch, const KvCacheLayer& cache,
                        TensorView out) override {
    const char* op = "masked_attention";
    check_attention(device_, qkv, qkv_bias, params, batch, cache, out, true, op);
    set_device(op);
    const int partition = masked_partition(params, batch);
    cuda::masked_attention(ctx_, qkv, qkv_bias, params, batch, cache, out, partition,
                           attention_workspace_);
  }

  void gather_rows(const TensorView& x, const TensorView& rows, TensorView out) override {
    check_gather_rows(device_, x, rows, out);
    set_device("gather_rows");
    cuda::gather_rows(ctx_, x, rows, out);
  }

  void moe_route(const TensorView& router_logits, bool normalize, TensorView ids, TensorView weights) override {
    check_moe_route(device(), router_logits.dtype, router_logits, ids, weights);
    set_device("moe_route");
    cuda::moe_route(ctx_, router_logits, normalize, ids, weights);
  }
  void moe_group(const TensorView& ids, TensorView offsets, TensorView rows, TensorView slot_of) override {
    check_moe_group(device(), ids, offsets, rows, slot_of);
    set_device("moe_group");
    cuda::moe_group(ctx_, ids, offsets, rows, slot_of);
  }
  void moe_combine(const TensorView& expert_out, const TensorView& slot_of, const TensorView& weights,
                   const TensorView* shared, const TensorView* shared_gate, TensorView out) override {
    check_moe_combine(device(), out.dtype, expert_out, slot_of, weights, shared, shared_gate, out);
    set_device("moe_combine");
    cuda::moe_combine(ctx_, expert_out, slot_of, weights, shared, shared_gate, out);
  }

  void copy_kv_blocks(const KvCacheLayer& cache, const TensorView& pairs) override {
    check_copy_kv_blocks(device_, cache, pairs);
    set_device("copy_kv_blocks");
    cuda::copy_kv_blocks(ctx_, cache, pairs);
  }

  void sample(TensorView logits, const SamplingBatch& batch, TensorView tokens) override {
    check_sample(device_, logits, batch, tokens, sample_dynamic_limit());
    set_device("sample");
    cuda::sample(ctx_, logits, batch, tokens);
  }

 private:
  void init() {
    const char* op = "cuda backend";
    check(cudaSetDevice(device_), op);
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, device_), op);
    ctx_.sm_count = prop.multiProcessorCount;
    ctx_.max_shared_bytes = prop.sharedMemPerBlockOptin;
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), op);
    ctx_.stream = stream_;
    check(cudaMalloc(&errors_, sizeof(DeviceErrorRecord)), op);
    check(cudaMemsetAsync(errors_, 0, sizeof(DeviceErrorRecord), stream_), op);
    check(cudaStreamSynchronize(stream_), op);
    ctx_.errors = errors_;
    check(cudaMallocHost(&host_errors_, sizeof(DeviceErrorRecord)), op);
    check_cublas(cublas_api().create(&cublas_), op);
    check_cublas(cublas_api().set_stream(cublas_, stream_), op);
    check(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes), op);
    check_cublas(cublas_api().set_workspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes), op);
    void* ws = nullptr;
    check(cudaMalloc(&ws, kAttentionWorkspaceBytes), op);
    attention_workspace_.data = static_cast<float*>(ws);
    attention_workspace_.floats = kAttentionWorkspaceBytes / sizeof(float);
    check(cudaMalloc(&dequant_scratch_, kDequantScratchBytes), op);
    cuda::init_sampling(sample_dynamic_limit());
  }

  // Dynamic shared memory the sampling kernel may take: the opt-in limit, less room for its
  // static shared memory (a few KB).
  size_t sample_dynamic_limit() const {
    return ctx_.max_shared_bytes > 16384 ? ctx_.max_shared_bytes - 16384 : 0;
  }

  void release() noexcept {
    cudaSetDevice(device_);
    if (cublas_) cublas_api().destroy(cublas_);
    cublas_ = nullptr;
    cudaFree(cublas_workspace_);
    cublas_workspace_ = nullptr;
    cudaFree(attention_workspace_.data);
    attention_workspace_ = {};
    cudaFree(dequant_scratch_);
    dequant_scratch_ = nullptr;
    cudaFree(activation_scratch_);
    activation_scratch_ = nullptr;
    activation_scratch_bytes_ = 0;
    cudaFree(errors_);
    errors_ = nullptr;
    if (host_errors_) cudaFreeHost(host_errors_);
    host_errors_ = nullptr;
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }

  void set_device(const char* op) { check(cudaSetDevice(device_), op); }

  // Waits for the stream, then throws the first error a kernel recorded since the last
  // wait (and clears it, so the backend stays usable).
  void wait_and_report(const char* op) {
    check(cudaMemcpyAsync(host_errors_, errors_, sizeof(DeviceErrorRecord), cudaMemcpyDeviceToHost,
                          stream_),
          op);
    check(cudaStreamSynchronize(stream_), op);
    const DeviceErrorRecord record = *host_errors_;
    if (record.code == 0) return;
    check(cudaMemsetAsync(errors_, 0, sizeof(DeviceErrorRecord), stream_), op);
    check(cudaStreamSynchronize(stream_), op);
    throw Error(ErrorCategory::internal, describe(record));
  }

  // Positions per block of masked_attention's multi-block mode for this call, 0 for one
  // block per (sequence, head).
  int masked_partition(const AttentionParams& params, const SequenceBatch& batch) const {
    const int total = batch.max_total_tokens;
    int partition = 0;
    if (options_.masked_attention_partition > 0) {
      partition = options_.masked_attention_partition;
    } else if (options_.masked_attention_partition == 0) {
      const int64_t blocks = static_cast<int64_t>(batch.n_seqs) * params.n_heads;
      if (total >= 2 * kAutoPartition && blocks < 2 * static_cast<int64_t>(ctx_.sm_count)) {
        partition = kAutoPartition;
        if ((total + partition - 1) / partition > kMaxAutoPartitions)
          partition = (total + kMaxAutoPartitions - 1) / kMaxAutoPartitions;
      }
    }
    if (partition == 0 || total == 0) return 0;
    const int parts = (total + partition - 1) / partition;
    if (parts > 65535 ||
        masked_attention_workspace_floats(batch.n_seqs, params.n_heads, params.head_dim, parts) >
            attention_workspace_.floats) {
      if (options_.masked_attention_partition > 0)
        throw Error(ErrorCategory::limit, "masked_attention: " + std::to_string(parts) +
                                              " partitions of " + std::to_string(partition) +
                                              " positions for " + std::to_string(batch.n_seqs) +
                                              " sequences exceed the attention workspace");
      return 0;
    }
    return partition;
  }

  static cudaDataType_t cuda_type(DType dtype) {
    switch (dtype) {
      case DType::f16:
        return CUDA_R_16F;
      case DType::bf16:
        return CUDA_R_16BF;
      default:
        return CUDA_R_32F;
    }
  }

  int device_;
  CudaBackendOptions options_;
  CudaAllocator allocator_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  AttentionWorkspace attention_workspace_;
  void* dequant_scratch_ = nullptr;  // kDequantScratchBytes
  void* activation_scratch_ = nullptr;  // activation_scratch()
  size_t activation_scratch_bytes_ = 0;
  cuda::Fp8Gemm fp8_gemm_{device_};  // opened on the first FP8 prefill
  DeviceErrorRecord* errors_ = nullptr;       // device memory
  DeviceErrorRecord* host_errors_ = nullptr;  // pinned host memory
  LaunchContext ctx_;
};

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace

cudaStream_t backend_stream(Backend& backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (!cuda) throw Error(ErrorCategory::internal, "backend_stream: not a CUDA backend");
  return cuda->stream();
}

std::unique_ptr<Backend> make_cuda_backend(int device_index, const CudaBackendOptions& options) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw Error(ErrorCategory::unsupported, "device cuda:" + std::to_string(device_index) +
                                                ": no CUDA device available (" +
                                                cudaGetErrorString(status) + ")");
  }
  if (device_index < 0 || device_index >= count)
    throw Error(ErrorCategory::invalid_argument, "device cuda:" + std::to_string(device_index) +
                                                     ": this machine has " + std::to_string(count) +
                                                     " CUDA device(s)");
  if (options.masked_attention_partition < -1)
    throw Error(ErrorCategory::invalid_argument,
                "CudaBackendOptions.masked_attention_partition must be >= -1, got " +
                    std::to_string(options.masked_attention_partition));
  return std::make_unique<CudaBackend>(device_index, options);
}

}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  return cuda::make_cuda_backend(device_index, cuda::CudaBackendOptions{});
}

bool cuda_backend_available() noexcept { return cuda::device_count() > 0; }

}  // namespace kestrel
