// kestrel-bench on CUDA: the device's ceilings, timed with CUDA events on a stream of our
// own. Compiled only in CUDA builds (KESTREL_WITH_CUDA).
//   bandwidth: cudaMemcpyAsync of a 1 GiB buffer device to device; each copy reads and
//              writes every byte, so 2 x bytes / time (the convention of bandwidthTest).
//   FLOP rate: cublasGemmEx C[n, n] = A[n, n] B[n, n], n = 8192, inputs in the model's dtype,
//              f32 accumulation (tensor cores for f16 / bf16), 2 n^3 FLOPs per call, on
//              random inputs (constant or zero inputs run faster than real data).
// The best of several timed repetitions after a warm-up is the ceiling.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>
#include <kestrel/error.h>
#include <string>

#include "bench.h"
#include "cuda/cublas_loader.h"

namespace kestrel_bench {

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw kestrel::Error(kestrel::ErrorCategory::device,
                         std::string("kestrel-bench: ") + what + ": " + cudaGetErrorString(status));
}

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw kestrel::Error(kestrel::ErrorCategory::device,
                         std::string("kestrel-bench: ") + what + ": cuBLAS status " + std::to_string(status));
}

// Frees what it holds whatever happens.
struct Resources {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  cublasHandle_t cublas = nullptr;
  void* a = nullptr;
  void* b = nullptr;
  void* c = nullptr;
  ~Resources() {
    if (cublas) kestrel::cuda::cublas_api().destroy(cublas);
    for (void* p : {a, b, c})
      if (p) cudaFree(p);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (stream) cudaStreamDestroy(stream);
  }
};

// Best time in seconds of `repeats` runs of `work` on r.stream, after `warmup` runs.
template <typename Work>
double best_seconds(Resources& r, int warmup, int repeats, Work work) {
  for (int i = 0; i < warmup; ++i) work();
  check(cudaStreamSynchronize(r.stream), "warm-up");
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    check(cudaEventRecord(r.start, r.stream), "cudaEventRecord");
    work();
    check(cudaEventRecord(r.stop, r.stream), "cudaEventRecord");
    check(cudaEventSynchronize(r.stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, r.start, r.stop), "cudaEventElapsedTime");
    best = std::min(best, 1e-3 * ms);
  }
  return best;
}

// Fills `device` with `count` uniform values in [-1, 1) of the GEMM's input type.
void fill_random(void* device, size_t count, cudaDataType_t type, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const size_t element = type == CUDA_R_32F ? 4 : 2;
  std::vector<unsigned char> host(count * element);
  for (size_t i = 0; i < count; ++i) {
    const float v = uniform(rng);
    if (type == CUDA_R_32F) {
      std::memcpy(&host[i * 4], &v, 4);
    } else if (type == CUDA_R_16BF) {
      const __nv_bfloat16 h = __float2bfloat16(v);
      std::memcpy(&host[i * 2], &h, 2);
    } else {
      const __half h = __float2half(v);
      std::memcpy(&host[i * 2], &h, 2);
    }
  }
  check(cudaMemcpy(device, host.data(), host.size(), cudaMemcpyHostToDevice), "cudaMemcpy (GEMM inputs)");
}

}  // namespace

DeviceCeilings measure_device_ceilings(int device, const std::string& dtype) {
  check(cudaSetDevice(device), "cudaSetDevice");
  DeviceCeilings ceilings;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  ceilings.name = prop.name;
  ceilings.memory_bytes = prop.totalGlobalMem;

  Resources r;
  check(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaEventCreate(&r.start), "cudaEventCreate");
  check(cudaEventCreate(&r.stop), "cudaEventCreate");

  const size_t copy_bytes = size_t{1} << 30;
  check(cudaMalloc(&r.a, copy_bytes), "cudaMalloc (1 GiB copy source)");
  check(cudaMalloc(&r.b, copy_bytes), "cudaMalloc (1 GiB copy destination)");
  check(cudaMemsetAsync(r.a, 1, copy_bytes, r.stream), "cudaMemset");
  const double copy_s = best_seconds(r, 2, 10, [&] {
    check(cudaMemcpyAsync(r.b, r.a, copy_bytes, cudaMemcpyDeviceToDevice, r.stream), "cudaMemcpyAsync");
  });
  ceilings.bandwidth = 2.0 * copy_bytes / copy_s;
  cudaFree(r.a);
  cudaFree(r.b);
  r.a = r.b = nullptr;

  const int n = 8192;
  cudaDataType_t type = CUDA_R_16F;
  size_t element = 2;
  if (dtype == "bf16") type = CUDA_R_16BF;
  if (dtype == "f32") {
    type = CUDA_R_32F;
    element = 4;
  }
  const size_t matrix_bytes = static_cast<size_t>(n) * n * element;
  check(cudaMalloc(&r.a, matrix_bytes), "cudaMalloc (GEMM A)");
  check(cudaMalloc(&r.b, matrix_bytes), "cudaMalloc (GEMM B)");
  check(cudaMalloc(&r.c, matrix_bytes), "cudaMalloc (GEMM C)");
  fill_random(r.a, static_cast<size_t>(n) * n, type, 1);
  fill_random(r.b, static_cast<size_t>(n) * n, type, 2);
  check(kestrel::cuda::cublas_api().create(&r.cublas), "cublasCreate");
  check(kestrel::cuda::cublas_api().set_stream(r.cublas, r.stream), "cublasSetStream");
  const float alpha = 1.0f, beta = 0.0f;
  const double gemm_s = best_seconds(r, 3, 10, [&] {
    check(kestrel::cuda::cublas_api().gemm_ex(r.cublas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, r.a, type, n, r.b, type, n, &beta,
                       r.c, type, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
  });
  ceilings.flop_rate = 2.0 * n * static_cast<double>(n) * n / gemm_s;
  return ceilings;
}

void synchronize_device(int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

size_t device_memory_used(int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return total - free;
}

}  // namespace kestrel_bench
