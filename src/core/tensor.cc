#include "core/tensor.h"

#include <cstdint>
#include <sstream>

namespace kestrel {

namespace {
template <class T>
constexpr bool matches(DType d) {
  if constexpr (std::is_same_v<T, float>) return d == DType::f32;
  if constexpr (std::is_same_v<T, uint16_t>) return d == DType::f16 || d == DType::bf16;
  if constexpr (std::is_same_v<T, int8_t>) return d == DType::i8;
  if constexpr (std::is_same_v<T, int32_t>) return d == DType::i32;
  if constexpr (std::is_same_v<T, void> || std::is_same_v<T, uint8_t>) return true;
  return false;
}
}  // namespace

TensorView::TensorView(void* data_, DType dtype_, std::initializer_list<int64_t> shape,
                       Device device_)
    : data(data_), dtype(dtype_), device(device_) {
  if (shape.size() > kMaxRank) throw Error(ErrorCategory::internal, "tensor rank above 4");
  rank = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t d : shape) dims[i++] = d;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) n *= dims[i];
  return n;
}

template <class T>
T* TensorView::ptr() const {
  if (!matches<T>(dtype))
    throw Error(ErrorCategory::internal, "tensor " + shape_string() + " accessed with wrong type");
  return static_cast<T*>(data);
}
template float* TensorView::ptr<float>() const;
template uint16_t* TensorView::ptr<uint16_t>() const;
template int8_t* TensorView::ptr<int8_t>() const;
template int32_t* TensorView::ptr<int32_t>() const;
template uint8_t* TensorView::ptr<uint8_t>() const;
template void* TensorView::ptr<void>() const;

TensorView TensorView::rows(int64_t begin, int64_t count) const {
  if (rank == 0 || begin < 0 || count < 0 || begin + count > dims[0])
    throw Error(ErrorCategory::internal, "rows [" + std::to_string(begin) + ", +" +
                                             std::to_string(count) + ") out of " + shape_string());
  TensorView v = *this;
  v.dims[0] = count;
  v.data = static_cast<char*>(data) + static_cast<size_t>(begin * row_size()) * dtype_size(dtype);
  return v;
}

TensorView TensorView::reshape(std::initializer_list<int64_t> shape) const {
  TensorView v(data, dtype, shape, device);
  if (v.numel() != numel())
    throw Error(ErrorCategory::internal, "reshape of " + shape_string() + " changes its size");
  return v;
}

std::string TensorView::shape_string() const {
  std::ostringstream s;
  s << '[';
  for (int i = 0; i < rank; ++i) s << (i ? ", " : "") << dims[i];
  s << "] " << to_string(dtype) << ' ' << to_string(device);
  return s.str();
}

void expect_shape(const TensorView& t, std::initializer_list<int64_t> shape, const char* what) {
  bool ok = t.rank == static_cast<int>(shape.size());
  int i = 0;
  for (int64_t d : shape) {
    if (ok && d >= 0 && t.dims[i] != d) ok = false;
    ++i;
  }
  if (!ok) throw Error(ErrorCategory::internal, std::string(what) + ": unexpected shape " + t.shape_string());
}

}  // namespace kestrel
