#include "cuda/fp8_gemm.h"

#include "cuda/cublaslt_loader.h"
#include "kestrel/error.h"

namespace kestrel::cuda {

namespace {

void check_lt(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCategory::device, std::string("quantized_linear (FP8 GEMM): ") + what + ": " +
                                           cublaslt_api().status_string(status));
}

// Owns the cuBLASLt descriptors of one call.
struct Descriptors {
  const CublasLtApi& lt;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  explicit Descriptors(const CublasLtApi& api) : lt(api) {}
  ~Descriptors() {
    if (pref) lt.preference_destroy(pref);
    if (d) lt.matrix_layout_destroy(d);
    if (b) lt.matrix_layout_destroy(b);
    if (a) lt.matrix_layout_destroy(a);
    if (op) lt.matmul_desc_destroy(op);
  }
};

}  // namespace

Fp8Gemm::~Fp8Gemm() {
  if (state_ != 1) return;
  cudaSetDevice(device_);
  cudaFree(workspace_);
  cublaslt_api().destroy(static_cast<cublasLtHandle_t>(handle_));
}

bool Fp8Gemm::open() {
  if (state_ != 0) return state_ == 1;
  state_ = -1;
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_);
  if (major * 10 + minor < 89) {
    why_not_ = "sm_" + std::to_string(major * 10 + minor) + " has no FP8 tensor cores (sm_89 or newer)";
    return false;
  }
  try {
    const CublasLtApi& lt = cublaslt_api();
    cublasLtHandle_t handle = nullptr;
    check_lt(lt.create(&handle), "cublasLtCreate");
    if (cudaMalloc(&workspace_, kWorkspaceBytes) != cudaSuccess) {
      cudaGetLastError();
      lt.destroy(handle);
      workspace_ = nullptr;
      why_not_ = "cannot allocate the cuBLASLt workspace";
      return false;
    }
    handle_ = handle;
  } catch (const Error& e) {
    why_not_ = e.what();
    return false;
  }
  state_ = 1;
  return true;
}

bool Fp8Gemm::usable(int64_t M, int64_t K) {
  // FP8 cuBLASLt kernels need 16-byte aligned leading dimensions: K (the E4M3 operands'
  // ld) and M (the f32 output's, 4 bytes each, kept at 16 elements for the fast kernels).
  if (K <= 0 || M <= 0 || K % 16 != 0 || M % 16 != 0) return false;
  return open();
}

bool Fp8Gemm::run(cudaStream_t stream, const void* w, const void* q, float* acc, int64_t T, int64_t M, int64_t K) {
  if (!open()) return false;
  const CublasLtApi& lt = cublaslt_api();
  Descriptors desc(lt);
  check_lt(lt.matmul_desc_create(&desc.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  check_lt(lt.matmul_desc_set_attribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a), "TRANSA");
  check_lt(lt.matmul_desc_set_attribute(desc.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b), "TRANSB");
  // Accumulate in full f32 (no fast accumulation: the FP8 products are summed as the CPU
  // reference sums them, up to order).
  const int8_t fast_accum = 0;
  check_lt(lt.matmul_desc_set_attribute(desc.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast_accum, sizeof fast_accum),
           "FAST_ACCUM");
  check_lt(lt.matrix_layout_create(&desc.a, CUDA_R_8F_E4M3, static_cast<uint64_t>(K), static_cast<uint64_t>(M), K),
           "A layout");
  check_lt(lt.matrix_layout_create(&desc.b, CUDA_R_8F_E4M3, static_cast<uint64_t>(K), static_cast<uint64_t>(T), K),
           "B layout");
  check_lt(lt.matrix_layout_create(&desc.d, CUDA_R_32F, static_cast<uint64_t>(M), static_cast<uint64_t>(T), M),
           "D layout");
  check_lt(lt.preference_create(&desc.pref), "preference");
  const size_t workspace = kWorkspaceBytes;
  check_lt(lt.preference_set_attribute(desc.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                       sizeof workspace),
           "workspace preference");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const auto handle = static_cast<cublasLtHandle_t>(handle_);
  const cublasStatus_t status =
      lt.algo_get_heuristic(handle, desc.op, desc.a, desc.b, desc.d, desc.d, desc.pref, 1, &result, &found);
  if (status != CUBLAS_STATUS_SUCCESS || found == 0) return false;  // shape not taken: the caller falls back
  const float alpha = 1.0f, beta = 0.0f;
  check_lt(lt.matmul(handle, desc.op, &alpha, w, desc.a, q, desc.b, &beta, acc, desc.d, acc, desc.d, &result.algo,
                     workspace_, kWorkspaceBytes, stream),
           "cublasLtMatmul");
  return true;
}

}  // namespace kestrel::cuda
