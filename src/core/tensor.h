// core/tensor.h: a non-owning view of a dense, row-major tensor on some device.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "kestrel/error.h"
#include "kestrel/types.h"

namespace kestrel {

constexpr int kMaxRank = 4;

// A TensorView never owns memory: weights own theirs through the Model, activations
// through the session's ActivationPool, the KV cache through PagedKvCache. Views are
// always contiguous and row-major; `dims[0]` is the outermost dimension.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Device device{};
  int rank = 0;
  std::array<int64_t, kMaxRank> dims{};

  TensorView() = default;
  TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape,
             Device device = Device::cpu());

  bool empty() const { return data == nullptr; }
  int64_t numel() const;
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  // dim(-1) is the innermost dimension.
  int64_t dim(int i) const { return dims[i < 0 ? rank + i : i]; }
  // Elements in one step of the outermost dimension.
  int64_t row_size() const { return rank == 0 ? 1 : numel() / dims[0]; }

  // Typed pointer; throws Error(internal) when T does not match dtype.
  template <class T>
  T* ptr() const;

  // Rows [begin, begin + count) of the outermost dimension.
  TensorView rows(int64_t begin, int64_t count) const;
  // Same data, new shape with the same element count.
  TensorView reshape(std::initializer_list<int64_t> shape) const;

  std::string shape_string() const;  // "[2, 768] f16 cpu"
};

// Throws Error(internal) unless `t` has exactly this shape (-1 matches any size).
void expect_shape(const TensorView& t, std::initializer_list<int64_t> shape, const char* what);

}  // namespace kestrel
