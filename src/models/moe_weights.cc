// The weights of a sparse layer, loaded one expert at a time as ordinary linear weights
// read through an ExpertSource (models/expert_source.h).
#include "kestrel/error.h"
#include "models/expert_source.h"
#include "models/weights.h"

namespace kestrel {

const SourceTensor* ExpertSource::find(std::string_view name) const {
  const size_t hash = name.rfind('#');
  if (hash == std::string_view::npos) return inner_.find(name);
  // A source that presents experts itself (Mxfp4Source) answers first.
  if (const SourceTensor* own = inner_.find(name)) return own;
  if (auto it = views_.find(std::string(name)); it != views_.end()) return &it->second;
  const SourceTensor* whole = inner_.find(name.substr(0, hash));
  if (!whole) return nullptr;
  const std::string_view index = name.substr(hash + 1);
  SourceTensor view = *whole;
  view.name = std::string(name);
  if (index == "row") {  // a vector [n] read as the matrix [1, n]
    if (whole->shape.size() != 1) return whole;  // materialize reports the shape
    view.shape = {1, whole->shape[0]};
  } else {
    // Expert e's rows of stacked matrices [E, rows, cols], or its row of stacked vectors
    // [E, n] (gpt-oss's expert biases).
    if (whole->shape.size() != 3 && whole->shape.size() != 2)
      throw Error(ErrorCategory::format, whole->file + ": tensor '" + whole->name + "' has shape " +
                                             whole->shape_string() + "; stacked experts [E, rows, cols] or [E, n] expected");
    const int64_t experts = whole->shape[0];
    const int64_t e = std::stoll(std::string(index));
    if (e < 0 || e >= experts)
      throw Error(ErrorCategory::format, whole->file + ": tensor '" + whole->name + "' holds " +
                                             std::to_string(experts) + " experts; expert " + std::string(index) +
                                             " is needed");
    const size_t bytes = whole->bytes / static_cast<size_t>(experts);
    view.shape.erase(view.shape.begin());
    view.data = static_cast<const uint8_t*>(whole->data) + static_cast<size_t>(e) * bytes;
    view.bytes = bytes;
  }
  return &views_.emplace(std::string(name), std::move(view)).first->second;
}

// The stacked tensor is shared by every expert: its pages stay until the layer is done. An
// expert the inner source presented itself is its to release.
void ExpertSource::release(const SourceTensor& tensor) const {
  const auto view = views_.find(tensor.name);
  if (view == views_.end() || &view->second != &tensor) inner_.release(tensor);
}

namespace {

std::string what(const char* name, int layer, int expert = -1) {
  std::string s = "layer " + std::to_string(layer) + " " + name;
  return expert >= 0 ? s + " of expert " + std::to_string(expert) : s;
}

}  // namespace

MoeWeights load_moe_weights(WeightStore& store, const WeightSource& source, const Architecture& arch, int layer,
                            const Shard& shard) {
  const ModelConfig& c = arch.config;
  if (!arch.expert_recipe) throw Error(ErrorCategory::internal, arch.name + ": sparse layers without expert names");
  const ExpertSource experts(source);
  // This rank's columns of each expert and of the shared expert (all of them at tp = 1);
  // the router and the shared gate are replicated.
  const ShardSlices slices = shard_slices(shard, c, arch.kinds.gated_ffn);
  MoeWeights w;
  w.expert_ffn = shard.expert_ffn;
  w.shared_ffn = shard.shared_ffn;
  w.router = store.load_linear(experts, arch.recipe(WeightSlot::router_weight, layer),
                               canonical_shape(arch, WeightSlot::router_weight), what("router_weight", layer));
  if (w.router.empty()) throw Error(ErrorCategory::internal, arch.name + ": a sparse layer without a router");
  if (const WeightRecipe bias = arch.recipe(WeightSlot::router_bias, layer); !bias.sources.empty())
    w.router_bias = store.load_dense(experts, bias, canonical_shape(arch, WeightSlot::router_bias), what("router_bias", layer));
  // The experts' biases (gpt-oss), whole: the down bias would have to be added once, not by
  // every rank's partial sum, so a model with them is refused at tp > 1 (load_model).
  auto expert_bias = [&](WeightSlot slot, const char* name, int e, std::vector<TensorView>& out) {
    const WeightRecipe recipe = arch.expert_recipe(slot, layer, e);
    if (!recipe.sources.empty()) out.push_back(store.load_dense(experts, recipe, canonical_shape(arch, slot), what(name, layer, e)));
  };
  for (int e = 0; e < c.num_experts; ++e) {
    expert_bias(WeightSlot::expert_up_bias, "expert_up_bias", e, w.expert_up_bias);
    expert_bias(WeightSlot::expert_down_bias, "expert_down_bias", e, w.expert_down_bias);
    w.expert_up.push_back(store.load_linear(experts, arch.expert_recipe(WeightSlot::expert_up_weight, layer, e),
                                            canonical_shape(arch, WeightSlot::expert_up_weight),
                                            what("expert_up_weight", layer, e), slices.expert_up));
    w.expert_down.push_back(store.load_linear(experts, arch.expert_recipe(WeightSlot::expert_down_weight, layer, e),
                                              canonical_shape(arch, WeightSlot::expert_down_weight),
                                              what("expert_down_weight", layer, e), slices.expert_down));
    if (w.expert_up.back().empty() || w.expert_down.back().empty())
      throw Error(ErrorCategory::internal, arch.name + ": expert " + std::to_string(e) + " has no weight names");
  }
  if (c.shared_expert_ffn_size > 0) {
    w.shared_up = store.load_linear(experts, arch.recipe(WeightSlot::shared_up_weight, layer),
                                    canonical_shape(arch, WeightSlot::shared_up_weight),
                                    what("shared_up_weight", layer), slices.shared_up);
    w.shared_down = store.load_linear(experts, arch.recipe(WeightSlot::shared_down_weight, layer),
                                      canonical_shape(arch, WeightSlot::shared_down_weight),
                                      what("shared_down_weight", layer), slices.shared_down);
    w.shared_gate = store.load_dense(experts, arch.recipe(WeightSlot::shared_gate_weight, layer),
                                     canonical_shape(arch, WeightSlot::shared_gate_weight),
                                     what("shared_gate_weight", layer));
    if (w.shared_up.empty() || w.shared_down.empty() || w.shared_gate.empty())
      throw Error(ErrorCategory::internal, arch.name + ": a shared expert without weight names");
  }
  return w;
}

}  // namespace kestrel
