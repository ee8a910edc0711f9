// models/weights.h: a model's weights in the canonical layout, on the runtime device.
#pragma once

#include <memory>
#include <vector>

#include "backend.h"
#include "loaders/weight_source.h"
#include "models/architecture.h"
#include "parallel/shard.h"

namespace kestrel {

struct LayerWeights {
  NormParams attn_norm;
  TensorView qkv_weight, qkv_bias;  // bias empty when absent
  TensorView out_weight, out_bias;
  NormParams ffn_norm;
  TensorView up_weight, up_bias;
  TensorView down_weight, down_bias;
};

// In a parallel run a rank holds only its slice (parallel/shard.h): the embeddings on the
// first stage, the final norm and LM-head rows on the last, its stage's layers in
// `layers` (local index 0 is layer shard.layer_begin), and its tensor rank's heads and
// FFN columns of each; the others stay empty.
struct ModelWeights {
  TensorView token_embedding;
  TensorView position_embedding;  // empty for rotary models
  NormParams final_norm;
  TensorView lm_head;             // [V / tp, H]: this rank's vocabulary rows
  std::vector<LayerWeights> layers;
};

// Owns the device memory of every weight. Shared weights (a tied LM head) are stored once.
class WeightStore {
 public:
  WeightStore(Backend& backend, DType dtype) : backend_(backend), dtype_(dtype) {}
  ~WeightStore();
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  // Loads this rank's slice of every slot of `arch` from `source`, checking each tensor's
  // presence, dtype and shape against the configuration; errors name the file and tensor.
  ModelWeights load(const WeightSource& source, const Architecture& arch, const Shard& shard);
  size_t bytes() const { return bytes_; }

 private:
  // The rows and columns of `slice` of the canonical weight `shape` built by `recipe`.
  TensorView materialize(const WeightSource& source, const WeightRecipe& recipe,
                         std::vector<int64_t> shape, const WeightSlice& slice, const std::string& what);
  struct Loaded {
    std::vector<std::string> sources;
    WeightSlice slice;
    TensorView view;
  };
  Backend& backend_;
  DType dtype_;
  std::vector<void*> allocations_;
  std::vector<Loaded> loaded_;  // dedups tied weights
  size_t bytes_ = 0;
};

}  // namespace kestrel
