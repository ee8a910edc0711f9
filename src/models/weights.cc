#include "models/weights.h"

#include <algorithm>
#include <sstream>

#include "core/half.h"
#include "kestrel/error.h"
#include "loaders/gguf_quant.h"

namespace kestrel {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

bool is_float(DType d) { return d == DType::f32 || d == DType::f16 || d == DType::bf16; }

std::string slot_what(WeightSlot slot, int layer) {
  std::string what = to_string(slot);
  return layer >= 0 ? "layer " + std::to_string(layer) + " " + what : what;
}

}  // namespace

WeightStore::~WeightStore() {
  for (void* p : allocations_) backend_.allocator().deallocate(p);
}

TensorView WeightStore::materialize(const WeightSource& source, const WeightRecipe& recipe,
                                    std::vector<int64_t> shape, const std::string& what) {
  for (const auto& [sources, view] : loaded_)
    if (sources == recipe.sources) return view;  // a tied weight already on the device

  const bool matrix = shape.size() == 2;
  const int64_t cols = matrix ? shape[1] : 1;
  std::vector<const SourceTensor*> parts;
  int64_t rows_total = 0;
  for (const auto& name : recipe.sources) {
    const SourceTensor* t = source.find(name);
    if (!t)
      throw Error(ErrorCategory::format,
                  source.describe() + ": tensor '" + name + "' is missing (needed for " + what + ")");
    if (!t->block_type && !is_float(t->dtype))
      throw Error(ErrorCategory::unsupported, t->file + ": tensor '" + name + "' has dtype " +
                                                  to_string(t->dtype) + "; float weights expected");
    const size_t want_rank = matrix ? 2 : 1;
    int64_t in = matrix ? (recipe.transposed ? t->shape[0] : t->shape.back()) : 1;
    if (t->shape.size() != want_rank || in != cols)
      throw Error(ErrorCategory::format,
                  t->file + ": tensor '" + name + "' has shape " + t->shape_string() + " but " +
                      what + " needs " + (recipe.sources.size() > 1 ? "parts of " : "") +
                      shape_text(shape) + (recipe.transposed ? " (stored transposed)" : ""));
    rows_total += matrix ? (recipe.transposed ? t->shape[1] : t->shape[0]) : t->shape[0];
    parts.push_back(t);
  }
  if (rows_total != shape[0]) {
    std::string names;
    for (const auto* t : parts) names += (names.empty() ? "'" : ", '") + t->name + "' " + t->shape_string();
    throw Error(ErrorCategory::format, parts.front()->file + ": tensor " + names + " give " +
                                           std::to_string(rows_total) + " rows but " + what +
                                           " needs shape " + shape_text(shape));
  }

  // Convert on the host into the canonical layout and runtime dtype, then copy once.
  // Block-quantized tensors are dequantized to f32 first (exactly: every Q8_0 / Q4_0 /
  // Q4_1 value is representable in f32).
  const int64_t numel = shape[0] * cols;
  std::vector<uint8_t> host(static_cast<size_t>(numel) * dtype_size(dtype_));
  int64_t row = 0;
  std::vector<float> src_f32, transposed;
  for (const SourceTensor* t : parts) {
    const int64_t part_rows = t->numel() / cols;
    uint8_t* dst = host.data() + static_cast<size_t>(row * cols) * dtype_size(dtype_);
    const void* data = t->data;
    DType data_type = t->dtype;
    if (t->block_type) {
      src_f32.resize(static_cast<size_t>(t->numel()));
      dequantize_row(*t->block_type, t->data, src_f32.data(), t->numel());
      data = src_f32.data();
      data_type = DType::f32;
    }
    if (!recipe.transposed || !matrix) {
      convert_floats(data, data_type, dst, dtype_, static_cast<size_t>(t->numel()));
    } else {  // stored [in, out]: dst[o, i] = src[i, o]
      if (!t->block_type) {
        src_f32.resize(static_cast<size_t>(t->numel()));
        convert_floats(data, data_type, src_f32.data(), DType::f32, src_f32.size());
      }
      transposed.resize(src_f32.size());
      for (int64_t i = 0; i < cols; ++i)
        for (int64_t o = 0; o < part_rows; ++o) transposed[o * cols + i] = src_f32[i * part_rows + o];
      convert_floats(transposed.data(), DType::f32, dst, dtype_, transposed.size());
    }
    row += part_rows;
  }

  void* ptr = backend_.allocator().allocate(host.size(), what.c_str());
  allocations_.push_back(ptr);
  TensorView view = matrix ? TensorView(ptr, dtype_, {shape[0], shape[1]}, backend_.device())
                           : TensorView(ptr, dtype_, {shape[0]}, backend_.device());
  TensorView host_view = view;
  host_view.data = host.data();
  host_view.device = Device::cpu();
  backend_.copy(view, host_view);
  bytes_ += host.size();
  loaded_.emplace_back(recipe.sources, view);
  return view;
}

TensorView WeightStore::upload(const void* host, DType dtype, std::vector<int64_t> shape,
                               const std::string& what) {
  TensorView view(nullptr, dtype, {}, backend_.device());
  view.rank = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) view.dims[i] = shape[i];
  view.data = backend_.allocator().allocate(view.bytes(), what.c_str());
  allocations_.push_back(view.data);
  TensorView host_view = view;
  host_view.data = const_cast<void*>(host);
  host_view.device = Device::cpu();
  backend_.copy(view, host_view);
  bytes_ += view.bytes();
  return view;
}

void WeightStore::release(const TensorView& view) {
  auto it = std::find(allocations_.begin(), allocations_.end(), view.data);
  if (it == allocations_.end())
    throw Error(ErrorCategory::internal, "WeightStore::release: " + view.shape_string() + " is not owned here");
  allocations_.erase(it);
  std::erase_if(loaded_, [&](const auto& entry) { return entry.second.data == view.data; });
  backend_.allocator().deallocate(view.data);
  bytes_ -= view.bytes();
}

// Dense as materialized, or quantized as quant_ asks: GGUF blocks kept as stored when they
// match, else the materialized float weight is quantized and freed (unless it is
// `keep_dense`: a tied embedding that the embedding lookup still reads).
LinearWeight WeightStore::linear(const WeightSource& source, const Architecture& arch, WeightSlot slot,
                                 int layer, std::vector<int64_t> shape, const TensorView& keep_dense) {
  const WeightRecipe recipe = arch.recipe(slot, layer);
  if (recipe.sources.empty()) return {};
  const std::string what = slot_what(slot, layer);
  const QuantizationSpec spec = slot == WeightSlot::lm_head ? quant_.for_lm_head() : quant_;
  if (auto kept = keep_ggml_blocks(*this, source, recipe, shape[1], spec, what)) return {{}, *kept};
  LinearWeight w;
  w.dense = materialize(source, recipe, std::move(shape), what);
  if (!spec.enabled()) return w;
  w.quantized = quantize_weight(*this, backend_, w.dense, spec, what);
  if (w.dense.data != keep_dense.data) release(w.dense);
  w.dense = {};
  return w;
}

ModelWeights WeightStore::load(const WeightSource& source, const Architecture& arch) {
  const ModelConfig& c = arch.config;
  const int64_t H = c.hidden_size, V = c.vocab_size;
  const int64_t qkv_rows = static_cast<int64_t>(c.num_heads + 2 * c.num_kv_heads) * c.head_dim;
  const int64_t attn_cols = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const int64_t up_rows = (arch.kinds.gated_ffn ? 2 : 1) * static_cast<int64_t>(c.ffn_size);

  // A slot the architecture names must be present; one it does not name stays empty.
  auto get = [&](WeightSlot slot, int layer, std::vector<int64_t> shape) -> TensorView {
    WeightRecipe recipe = arch.recipe(slot, layer);
    if (recipe.sources.empty()) return {};
    return materialize(source, recipe, std::move(shape), slot_what(slot, layer));
  };
  auto norm = [&](WeightSlot weight, WeightSlot bias, int layer) {
    NormParams p;
    p.kind = arch.kinds.norm;
    p.eps = c.norm_eps;
    p.gamma = get(weight, layer, {H});
    p.beta = get(bias, layer, {H});
    if (p.gamma.empty())
      throw Error(ErrorCategory::internal, arch.name + ": no norm weight for layer " + std::to_string(layer));
    return p;
  };

  ModelWeights w;
  w.token_embedding = get(WeightSlot::token_embedding, -1, {V, H});
  if (arch.kinds.positions == PositionKind::learned)
    w.position_embedding = get(WeightSlot::position_embedding, -1, {c.max_positions, H});
  for (int l = 0; l < c.num_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = norm(WeightSlot::attn_norm_weight, WeightSlot::attn_norm_bias, l);
    lw.qkv_weight = linear(source, arch, WeightSlot::qkv_weight, l, {qkv_rows, H}, {});
    lw.qkv_bias = get(WeightSlot::qkv_bias, l, {qkv_rows});
    lw.out_weight = linear(source, arch, WeightSlot::out_weight, l, {H, attn_cols}, {});
    lw.out_bias = get(WeightSlot::out_bias, l, {H});
    lw.ffn_norm = norm(WeightSlot::ffn_norm_weight, WeightSlot::ffn_norm_bias, l);
    lw.up_weight = linear(source, arch, WeightSlot::up_weight, l, {up_rows, H}, {});
    lw.up_bias = get(WeightSlot::up_bias, l, {up_rows});
    lw.down_weight = linear(source, arch, WeightSlot::down_weight, l, {H, c.ffn_size}, {});
    lw.down_bias = get(WeightSlot::down_bias, l, {H});
    w.layers.push_back(lw);
  }
  w.final_norm = norm(WeightSlot::final_norm_weight, WeightSlot::final_norm_bias, -1);
  w.lm_head = linear(source, arch, WeightSlot::lm_head, -1, {V, H}, w.token_embedding);
  if (w.token_embedding.empty() || w.lm_head.empty() || w.layers.empty())
    throw Error(ErrorCategory::internal, arch.name + ": incomplete weight recipe");
  return w;
}

}  // namespace kestrel
