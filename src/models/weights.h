// models/weights.h: a model's weights in the canonical layout, on the runtime device.
#pragma once

#include <memory>
#include <vector>

#include "backend.h"
#include "loaders/weight_source.h"
#include "models/architecture.h"
#include "models/moe_weights.h"
#include "models/quantize.h"
#include "parallel/shard.h"

namespace kestrel {


struct LayerWeights {
  NormParams attn_norm;
  LinearWeight qkv_weight;
  TensorView qkv_bias;  // empty when absent
  LinearWeight out_weight;
  TensorView out_bias;
  NormParams ffn_norm;
  LinearWeight up_weight;
  TensorView up_bias;
  LinearWeight down_weight;
  TensorView down_bias;
  MoeWeights moe;  // a sparse layer's router and experts (up / down are then empty)
  // Gemma 2 / 3 (LayerKinds::post_norms): norms of the attention and FFN outputs.
  NormParams post_attn_norm, post_ffn_norm;
  // Qwen3, Gemma 3 (LayerKinds::qk_norm): RMSNorms of each q / k head, gamma [hd].
  NormParams q_norm, k_norm;
  // gpt-oss (LayerKinds::attention_sinks): this rank's query heads' sink logits [nh].
  TensorView attn_sinks;
  // [rotary_dim / 2] f32 when this layer has rotary frequencies of its own (Gemma's local
  // layers); empty: ModelWeights::rotary_inv_freq.
  TensorView rotary_inv_freq;
};

// In a parallel run a rank holds only its slice (parallel/shard.h): the embeddings on the
// first stage, the final norm and LM-head rows on the last, its stage's layers in
// `layers` (local index 0 is layer shard.layer_begin), and its tensor rank's heads and
// FFN columns of each; the others stay empty.
struct ModelWeights {
  // [V, H], whole on every rank of the first stage. Dense, or the file's blocks as stored
  // (QuantizationSpec::for_embedding), whose rows the lookup dequantizes; a tied LM head
  // kept so on a rank of pp = 1 reads this very weight: one copy of the largest weight
  // (tied_head_doubles_as_embedding; at tp > 1 it then holds tp x V / tp rows, the last
  // ones zero: tied_table_slice).
  LinearWeight token_embedding;
  TensorView position_embedding;  // empty for rotary models
  TensorView rotary_inv_freq;     // [rotary_dim / 2] f32; empty for learned positions
  NormParams final_norm;
  LinearWeight lm_head;  // [V / tp, H]: this rank's vocabulary rows; a tied head at pp = 1
                         // is a view of them in token_embedding (dense, or kept in blocks)
  TensorView lm_head_bias;  // [V / tp], or empty (only GPT-J has one)
  std::vector<LayerWeights> layers;
};

// Owns the device memory of every weight. Shared weights (a tied LM head) are stored once.
class WeightStore {
 public:
  // `quant`: how linear weights and the LM head are quantized after materializing them.
  WeightStore(Backend& backend, DType dtype, QuantizationSpec quant = {})
      : backend_(backend), dtype_(dtype), quant_(quant) {}
  ~WeightStore();
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  // Loads this rank's slice of every slot of `arch` from `source`, checking each tensor's
  // presence, dtype and shape against the configuration; errors name the file and tensor.
  ModelWeights load(const WeightSource& source, const Architecture& arch, const Shard& shard);
  size_t bytes() const { return bytes_; }

  // Copies host data into new device memory owned by the store.
  TensorView upload(const void* host, DType dtype, std::vector<int64_t> shape, const std::string& what);
  // Frees a weight this store loaded that nothing uses any more (a float weight replaced by
  // its quantized form).
  void release(const TensorView& view);
  // One linear weight of `recipe` ([out, in] `shape`; a tensor-parallel rank's `slice` of
  // it), dense or quantized as the store's QuantizationSpec asks; `what` names it in
  // errors. Empty for an empty recipe.
  LinearWeight load_linear(const WeightSource& source, const WeightRecipe& recipe, std::vector<int64_t> shape,
                           const std::string& what, const WeightSlice& slice = {});
  // One whole dense weight of `recipe`.
  TensorView load_dense(const WeightSource& source, const WeightRecipe& recipe, std::vector<int64_t> shape,
                        const std::string& what);

 private:
  // The rows and columns of `slice` of the canonical weight `shape` built by `recipe`.
  TensorView materialize(const WeightSource& source, const WeightRecipe& recipe,
                         std::vector<int64_t> shape, const WeightSlice& slice, const std::string& what);
  LinearWeight linear(const WeightSource& source, const Architecture& arch, WeightSlot slot, int layer,
                      std::vector<int64_t> shape, const WeightSlice& slice, const TensorView& keep_dense);
  LinearWeight linear_from(const WeightSource& source, const WeightRecipe& recipe, bool lm_head,
                           std::vector<int64_t> shape, const WeightSlice& slice, const TensorView& keep_dense,
                           const std::string& what);
  struct Loaded {
    std::vector<std::string> sources;
    float offset = 0.0f;
    float scale = 1.0f;
    WeightSlice slice;
    TensorView view;
  };
  Backend& backend_;
  DType dtype_;
  QuantizationSpec quant_;
  std::vector<void*> allocations_;
  std::vector<Loaded> loaded_;  // dedups tied weights
  size_t bytes_ = 0;
};

// The router, experts and shared expert of sparse layer `layer` (models/moe_weights.cc):
// the router and the shared expert's gate whole, each expert's and the shared expert's
// slice of `shard` (shard_slices: their gate / up rows and down columns).
MoeWeights load_moe_weights(WeightStore& store, const WeightSource& source, const Architecture& arch, int layer,
                            const Shard& shard);

}  // namespace kestrel
