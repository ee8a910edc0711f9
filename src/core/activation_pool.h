// core/activation_pool.h: one device allocation holding every activation buffer of a
// session, sized once at creation for the largest step and reused by every layer
// (FasterTransformer's buffer reuse): its size does not depend on the number of layers.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "backend.h"

namespace kestrel {

class ActivationPool {
 public:
  struct BufferSpec {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };

  ActivationPool(Allocator& allocator, std::vector<BufferSpec> specs);
  ~ActivationPool();
  ActivationPool(const ActivationPool&) = delete;
  ActivationPool& operator=(const ActivationPool&) = delete;

  // The full-size view of buffer `index` (the order of the specs).
  const TensorView& view(size_t index) const { return views_.at(index); }
  size_t bytes() const { return bytes_; }
  // What a pool of `specs` allocates (each buffer aligned), without allocating it.
  static size_t bytes_for(const std::vector<BufferSpec>& specs);

 private:
  Allocator& allocator_;
  void* base_ = nullptr;
  size_t bytes_ = 0;
  std::vector<TensorView> views_;
};

}  // namespace kestrel
