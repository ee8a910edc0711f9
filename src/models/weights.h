// models/weights.h: a model's weights in the canonical layout, on the runtime device.
#pragma once

#include <memory>
#include <vector>

#include "backend.h"
#include "loaders/weight_source.h"
#include "models/architecture.h"

namespace kestrel {

struct LayerWeights {
  NormParams attn_norm;
  TensorView qkv_weight, qkv_bias;  // bias empty when absent
  TensorView out_weight, out_bias;
  NormParams ffn_norm;
  TensorView up_weight, up_bias;
  TensorView down_weight, down_bias;
};

struct ModelWeights {
  TensorView token_embedding;
  TensorView position_embedding;  // empty for rotary models
  NormParams final_norm;
  TensorView lm_head;
  std::vector<LayerWeights> layers;
};

// Owns the device memory of every weight. Shared weights (a tied LM head) are stored once.
class WeightStore {
 public:
  WeightStore(Backend& backend, DType dtype) : backend_(backend), dtype_(dtype) {}
  ~WeightStore();
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  // Loads every slot of `arch` from `source`, checking each tensor's presence, dtype and
  // shape against the configuration; errors name the file and the tensor.
  ModelWeights load(const WeightSource& source, const Architecture& arch);
  size_t bytes() const { return bytes_; }

 private:
  TensorView materialize(const WeightSource& source, const WeightRecipe& recipe,
                         std::vector<int64_t> shape, const std::string& what);
  Backend& backend_;
  DType dtype_;
  std::vector<void*> allocations_;
  std::vector<std::pair<std::vector<std::string>, TensorView>> loaded_;  // dedups tied weights
  size_t bytes_ = 0;
};

}  // namespace kestrel
