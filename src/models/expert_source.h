// models/expert_source.h: llama.cpp's stacked experts as one 2-D tensor per expert.
//
// llama.cpp stacks a layer's experts into one 3-D tensor [E, rows, cols] per projection.
// Expert e's rows are a contiguous byte range of it (ggml blocks run along cols), so an
// ExpertSource presents "NAME#e" as a 2-D tensor over that range: float experts are
// converted from it and quantized blocks are kept in place, exactly as a 2-D weight
// (models/moe_weights.cc). "NAME#row" is the 1-D tensor NAME [n] read as [1, n]; any other
// name is the inner source's tensor.
#pragma once

#include <map>
#include <string>

#include "loaders/weight_source.h"

namespace kestrel {

class ExpertSource final : public WeightSource {
 public:
  // `inner` must outlive this source.
  explicit ExpertSource(const WeightSource& inner) : inner_(inner) {}

  // Throws Error(format) naming the tensor when NAME is not [E, rows, cols] or holds too
  // few experts.
  const SourceTensor* find(std::string_view name) const override;
  std::string describe() const override { return inner_.describe(); }
  void release(const SourceTensor& tensor) const override;

 private:
  const WeightSource& inner_;
  mutable std::map<std::string, SourceTensor> views_;
};

}  // namespace kestrel
