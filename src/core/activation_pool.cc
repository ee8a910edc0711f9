#include "core/activation_pool.h"

namespace kestrel {

namespace {
constexpr size_t kAlignment = 256;  // keeps every buffer aligned for vector loads
size_t align_up(size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }
}  // namespace

size_t ActivationPool::bytes_for(const std::vector<BufferSpec>& specs) {
  size_t total = 0;
  for (const auto& spec : specs) {
    size_t n = dtype_size(spec.dtype);
    for (int64_t d : spec.shape) n *= static_cast<size_t>(d);
    total += align_up(n);
  }
  return total;
}

ActivationPool::ActivationPool(Allocator& allocator, std::vector<BufferSpec> specs)
    : allocator_(allocator) {
  std::vector<size_t> offsets;
  for (const auto& spec : specs) {
    if (spec.shape.empty() || spec.shape.size() > kMaxRank)
      throw Error(ErrorCategory::internal, "activation buffer " + spec.name + ": bad rank");
    size_t n = dtype_size(spec.dtype);
    for (int64_t d : spec.shape) n *= static_cast<size_t>(d);
    offsets.push_back(bytes_);
    bytes_ += align_up(n);
  }
  base_ = allocator_.allocate(bytes_, "activation pool");
  for (size_t i = 0; i < specs.size(); ++i) {
    TensorView v;
    v.data = static_cast<char*>(base_) + offsets[i];
    v.dtype = specs[i].dtype;
    v.device = allocator_.device();
    v.rank = static_cast<int>(specs[i].shape.size());
    for (int d = 0; d < v.rank; ++d) v.dims[d] = specs[i].shape[d];
    views_.push_back(v);
  }
}

ActivationPool::~ActivationPool() { allocator_.deallocate(base_); }

}  // namespace kestrel
