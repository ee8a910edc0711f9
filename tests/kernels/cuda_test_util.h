// Helpers for the CUDA backend tests: device buffers filled from host vectors (converted to
// any dtype), the per-dtype tolerances, and the normalized error used by every comparison.
// Plain C++ over the Backend interface, so it compiles in builds without CUDA too.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "backend.h"
#include "core/half.h"
#ifdef KESTREL_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace kestrel::testing {

// Empty when this build and machine can run the CUDA backend; otherwise why not. Tests
// skip with GTEST_SKIP() << "no CUDA device: " << reason.
inline std::string cuda_unavailable_reason() {
#ifndef KESTREL_WITH_CUDA
  return "this build has no CUDA backend (configure with nvcc and KESTREL_ENABLE_CUDA=ON)";
#else
  if (!cuda_backend_available()) return "cuda_backend_available() is false (no GPU or no driver)";
  return "";
#endif
}

// The CUDA backend on device 0. masked_partition as CudaBackendOptions::
// masked_attention_partition (0 automatic, -1 never split, N > 0 always split by N).
inline std::unique_ptr<Backend> make_test_cuda_backend(int masked_partition = 0) {
#ifdef KESTREL_WITH_CUDA
  cuda::CudaBackendOptions options;
  options.masked_attention_partition = masked_partition;
  return cuda::make_cuda_backend(0, options);
#else
  (void)masked_partition;
  return make_cuda_backend(0);  // throws: no CUDA in this build
#endif
}

// A host view over a test vector.
template <class T>
TensorView host_view(std::vector<T>& v, std::initializer_list<int64_t> shape) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, int32_t>);
  TensorView t(v.data(), std::is_same_v<T, float> ? DType::f32 : DType::i32, shape);
  EXPECT_EQ(static_cast<size_t>(t.numel()), v.size()) << "test buffer does not match its view";
  return t;
}

// Deterministic integers in [lo, hi).
inline std::vector<int32_t> random_ints(size_t count, uint64_t seed, int32_t lo, int32_t hi) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> dist(lo, hi - 1);
  std::vector<int32_t> v(count);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Tolerances on the normalized error max|got - want| / max(1, max|want|). The reference is
// the CPU backend in fp32 on the same inputs (already rounded to the dtype); the CUDA
// kernels accumulate in fp32 too, so what remains is:
//   f32:  summation order (and libm differences) in fp32: ~1e-6 relative, 1e-4 leaves room
//         for long dot products and softmax / normalization amplifying it;
//   f16:  outputs and intermediates (residual, rotated q / k, cache, GEMM outputs) stored
//         with an 11-bit significand: 2^-11 ~ 4.9e-4 per rounding, a few roundings deep
//         and amplified by softmax / normalization: 1e-2;
//   bf16: the same with an 8-bit significand: 2^-8 ~ 3.9e-3 per rounding: 4e-2.
inline double tolerance(DType dtype) {
  switch (dtype) {
    case DType::f16:
      return 1e-2;
    case DType::bf16:
      return 4e-2;
    default:
      return 1e-4;
  }
}

// Values as a store to `dtype` keeps them (identity for f32).
inline std::vector<float> round_to(DType dtype, const std::vector<float>& v) {
  if (dtype == DType::f32) return v;
  std::vector<uint16_t> half(v.size());
  std::vector<float> out(v.size());
  convert_floats(v.data(), DType::f32, half.data(), dtype, v.size());
  convert_floats(half.data(), dtype, out.data(), DType::f32, v.size());
  return out;
}

// max|got - want| / max(1, max|want|), with the worst index; NaN anywhere is infinite.
inline ::testing::AssertionResult close(const std::vector<float>& got,
                                        const std::vector<float>& want, double tol,
                                        const std::string& what = "") {
  if (got.size() != want.size())
    return ::testing::AssertionFailure()
           << what << ": sizes differ: " << got.size() << " vs " << want.size();
  double scale = 1.0, worst = 0.0;
  size_t at = 0;
  for (float w : want) scale = std::max(scale, static_cast<double>(std::fabs(w)));
  for (size_t i = 0; i < got.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(diff <= worst)) {  // NaN compares false: it becomes the worst and stays
      worst = std::isnan(diff) ? INFINITY : diff;
      at = i;
      if (std::isinf(worst)) break;
    }
  }
  const double err = worst / scale;
  if (err <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": normalized error " << err << " > " << tol << " at element " << at << " (got "
         << got[at] << ", want " << want[at] << ", scale " << scale << ")";
}

// A device allocation of the CUDA backend, freed at scope end.
class DeviceTensor {
 public:
  DeviceTensor(Backend& backend, DType dtype, std::initializer_list<int64_t> shape)
      : backend_(&backend) {
    view_ = TensorView(nullptr, dtype, shape, backend.device());
    ptr_ = backend.allocator().allocate(view_.bytes(), "test tensor");
    view_.data = ptr_;
  }
  ~DeviceTensor() { backend_->allocator().deallocate(ptr_); }
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;

  TensorView& view() { return view_; }
  operator TensorView() const { return view_; }
  const TensorView* ptr() const { return &view_; }

  // Uploads f32 values, converted to the tensor's float dtype.
  void set(const std::vector<float>& values) {
    if (!check_count(values.size())) return;
    std::vector<uint8_t> bytes(view_.bytes());
    convert_floats(values.data(), DType::f32, bytes.data(), view_.dtype, values.size());
    backend_->copy(view_, host_view(bytes.data()));
  }
  void set(const std::vector<int32_t>& values) {
    if (!check_count(values.size())) return;
    backend_->copy(view_, host_view(const_cast<int32_t*>(values.data())));
  }
  void set_bytes(const void* data) { backend_->copy(view_, host_view(const_cast<void*>(data))); }

  // Downloads the contents as f32 (float dtypes) or int32.
  std::vector<float> floats() const {
    std::vector<uint8_t> bytes(view_.bytes());
    backend_->copy(host_view(bytes.data()), view_);
    std::vector<float> out(static_cast<size_t>(view_.numel()));
    convert_floats(bytes.data(), view_.dtype, out.data(), DType::f32, out.size());
    return out;
  }
  std::vector<int32_t> ints() const {
    std::vector<int32_t> out(static_cast<size_t>(view_.numel()));
    backend_->copy(host_view(out.data()), view_);
    return out;
  }

 private:
  TensorView host_view(void* data) const {
    TensorView h = view_;
    h.data = data;
    h.device = Device::cpu();
    return h;
  }
  bool check_count(size_t n) const {
    if (n == static_cast<size_t>(view_.numel())) return true;
    ADD_FAILURE() << "test upload of " << n << " values into " << view_.shape_string();
    return false;
  }

  Backend* backend_;
  void* ptr_ = nullptr;
  TensorView view_;
};

}  // namespace kestrel::testing
