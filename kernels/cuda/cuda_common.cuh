// kernels/cuda/cuda_common.cuh: device helpers shared by the CUDA kernels: element types
// and their fp32 conversions, warp / block reductions, and the device error record.
//
// Every kernel reads f32 / f16 / bf16 elements, computes in fp32 and rounds once when it
// stores (round to nearest even). Kernels are templated on the element type only; head
// sizes and hidden sizes are run-time values.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>
#include <string>

#include "cuda/cuda_ops.h"
#include "kestrel/error.h"

namespace kestrel::cuda {

// --- dtype dispatch (host) ------------------------------------------------------------
// Calls fn.template operator()<T>() with T the CUDA element type of `dtype` (float, __half
// or __nv_bfloat16). CudaBackend has validated dtypes already; anything else is a bug.
template <class Fn>
void dispatch_float(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::f32:
      return fn.template operator()<float>();
    case DType::f16:
      return fn.template operator()<__half>();
    case DType::bf16:
      return fn.template operator()<__nv_bfloat16>();
    default:
      throw Error(ErrorCategory::internal,
                  std::string(op) + ": no CUDA kernel for dtype " + to_string(dtype));
  }
}

// Blocks of `threads` covering `n` items, at most `cap` (kernels then loop grid-stride).
inline unsigned grid_for(int64_t n, int threads, int64_t cap = int64_t{1} << 20) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned>(blocks);
}

// --- element conversion ---------------------------------------------------------------
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// x rounded through T and back: the value a store to a T buffer would keep.
template <class T>
__device__ __forceinline__ float round_to(float x) {
  return to_float(from_float<T>(x));
}

// Elements of T in one 16-byte vector.
template <class T>
constexpr int kVec16 = 16 / static_cast<int>(sizeof(T));

// Loads kVec16<T> consecutive elements (16-byte aligned) as floats.
template <class T>
__device__ __forceinline__ void load_vec16(const T* src, float* dst) {
  const uint4 raw = *reinterpret_cast<const uint4*>(src);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < kVec16<T>; ++i) dst[i] = to_float(e[i]);
}

// --- reductions -------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum / max for a block of kThreads (a multiple of 32, at most 1024); every
// thread gets the result. `scratch` holds 32 floats of shared memory; the call begins and
// ends with a barrier, so the same scratch can be reused by the next call.
template <int kThreads>
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "block size");
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) total += scratch[w];  // same order in every thread
  __syncthreads();
  return total;
}

template <int kThreads>
__device__ __forceinline__ float block_max(float v, float* scratch) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "block size");
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) m = fmaxf(m, scratch[w]);
  __syncthreads();
  return m;
}

// --- device error record ----------------------------------------------------------------
// Bad indices found by a kernel (a token id outside the vocabulary, a block-table entry
// outside the cache, NaN logits) cannot throw on the device: the first one is recorded
// here and the host turns it into an Error at the next synchronize() or copy to the host.
// The kernel itself stays within bounds.
__device__ __forceinline__ void report(DeviceErrorRecord* record, DeviceErrorCode code,
                                       int detail) {
  if (atomicCAS(&record->code, 0, static_cast<int>(code)) == 0) atomicExch(&record->detail, detail);
}

}  // namespace kestrel::cuda
