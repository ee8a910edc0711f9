#include "tools/held_weights.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "kestrel/error.h"
#include "loaders/gguf.h"
#include "loaders/gguf_source.h"
#include "loaders/mxfp4_source.h"
#include "loaders/safetensors.h"
#include "models/expert_source.h"

namespace kestrel::sizing {

namespace {

std::string lower(std::string text) {
  for (char& ch : text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return text;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

std::string slot_what(WeightSlot slot, int layer) {
  return layer >= 0 ? "layer " + std::to_string(layer) + " " + to_string(slot) : to_string(slot);
}

// The rows and columns a rank keeps of a materialized [rows, cols] weight (cols 1 for a
// vector): its row ranges (all rows when none) and padding rows, its column range.
std::pair<int64_t, int64_t> slice_dims(const std::vector<int64_t>& shape, const WeightSlice& slice) {
  int64_t rows = slice.row_ranges.empty() ? shape[0] : 0;
  for (const auto& range : slice.row_ranges) rows += range.second;
  const int64_t cols = shape.size() == 2 ? (slice.col_count < 0 ? shape[1] : slice.col_count) : 1;
  return {rows + slice.pad_rows, cols};
}

// One rank's weights, added up in WeightStore::load's order: the same weights, slices and
// decisions, each weight's bytes instead of its values. Reports are keyed by the format a
// weight is held in: the ggml type of kept blocks ("q4_k"), the compute dtype of a
// materialized one ("f32", or "f32 (from q4_k)" when dequantized from blocks), the format
// of one quantized at load ("int8", "int4", "w8a8", "fp8_e4m3").
class Walk {
 public:
  Walk(const QuantizationSpec& spec, DType dtype) : spec_(spec), dtype_(dtype) {}

  WeightBytes bytes;

  // WeightStore::materialize: `slice` of the canonical `shape` in the compute dtype, added
  // to `part`; nothing when a weight loaded before serves it (a tied LM head: the token
  // embedding, or a block of its rows), which sets `*reused`. Errors as materialize's.
  void dense(const WeightSource& source, const WeightRecipe& recipe, const std::vector<int64_t>& shape,
             const WeightSlice& slice, const std::string& what, size_t* part, bool* reused = nullptr) {
    if (recipe.sources.empty()) return;
    const bool matrix = shape.size() == 2;
    for (const Loaded& entry : loaded_)
      if (entry.sources == recipe.sources && entry.offset == recipe.offset && entry.scale == recipe.scale &&
          slice_served_by(slice, entry.slice, matrix)) {
        if (reused) *reused = true;
        return;
      }
    const int64_t cols = matrix ? shape[1] : 1;
    int64_t rows_total = 0;
    std::string names;  // "'name' [shape], ..." as materialize names them
    std::optional<GgmlType> blocks;
    for (const auto& name : recipe.sources) {
      const SourceTensor* t = source.find(name);
      if (!t)
        throw Error(ErrorCategory::format,
                    source.describe() + ": tensor '" + name + "' is missing (needed for " + what + ")");
      const int64_t in = matrix ? (recipe.transposed ? t->shape[0] : t->shape.back()) : 1;
      if (t->shape.size() != (matrix ? 2u : 1u) || in != cols)
        throw Error(ErrorCategory::format, t->file + ": tensor '" + name + "' has shape " + t->shape_string() +
                                               " but " + what + " needs " +
                                               (recipe.sources.size() > 1 ? "parts of " : "") + shape_text(shape));
      rows_total += matrix && recipe.transposed ? t->shape[1] : t->shape[0];
      names += (names.empty() ? "'" : ", '") + name + "' " + t->shape_string();
      if (t->block_type && !blocks) blocks = t->block_type;
    }
    if (rows_total != shape[0])
      throw Error(ErrorCategory::format, source.describe() + ": tensor " + names + " give " +
                                             std::to_string(rows_total) + " rows but " + what + " needs shape " +
                                             shape_text(shape));
    const auto [rows, cc] = slice_dims(shape, slice);
    std::string format = to_string(dtype_);
    if (blocks) format += " (from " + lower(to_string(*blocks)) + ")";
    const size_t n = static_cast<size_t>(rows * cc) * dtype_size(dtype_);
    add(part, format, n);
    loaded_.push_back({recipe.sources, recipe.offset, recipe.scale, slice, n, format, part});
  }

  // WeightStore::linear_from: the file's blocks kept as keep_ggml_blocks would keep them,
  // else materialized, and quantized when the mode asks (the float copy then freed, unless
  // it is the token embedding's, which the lookup still reads). Sets `*tied_view` to the
  // bytes of a dense tied LM head read from the token embedding.
  void linear(const WeightSource& source, const WeightRecipe& recipe, bool lm_head, const std::vector<int64_t>& shape,
              const WeightSlice& slice, const std::string& what, size_t* part, size_t* tied_view = nullptr) {
    if (recipe.sources.empty()) return;
    const QuantizationSpec spec = lm_head ? spec_.for_lm_head() : spec_;
    if (const std::optional<KeptBlocksPlan> plan = plan_kept_blocks(source, recipe, shape[1], spec, slice)) {
      kept(*plan, part);
      return;
    }
    bool reused = false;
    dense(source, recipe, shape, slice, what, part, &reused);
    const auto [rows, cols] = slice_dims(shape, slice);
    if (!spec.requantizes()) {
      if (reused && tied_view) *tied_view = static_cast<size_t>(rows * cols) * dtype_size(dtype_);
      return;
    }
    const QuantFormat format = spec.requantized_format();
    add(part, spec.mode == Quantization::w8a8 ? "w8a8" : to_string(format),
        quantized_weight_bytes(format, rows, cols, spec.group_for(cols)));
    if (!reused) release_last();
  }

  // The pieces of a kept weight, each in its kept_layout, then its zero padding rows in the
  // last piece's.
  void kept(const KeptBlocksPlan& plan, size_t* part) {
    for (const KeptBlocksPlan::Piece& piece : plan.pieces) {
      add(part, lower(to_string(*piece.source->block_type)),
          quantized_weight_bytes(piece.layout.format, piece.count, plan.col_end - plan.col_begin,
                                 piece.layout.group_size));
    }
    const KeptBlocksPlan::Piece& last = plan.pieces.back();
    add(part, lower(to_string(*last.source->block_type)),
        quantized_weight_bytes(last.layout.format, plan.pad_rows, plan.col_end - plan.col_begin,
                               last.layout.group_size));
  }

  void add(size_t* part, const std::string& format, size_t n) {
    if (n == 0) return;
    *part += n;
    bytes.formats[format] += n;
  }

 private:
  // A float weight freed after quantization (WeightStore::release).
  void release_last() {
    const Loaded& entry = loaded_.back();
    *entry.part -= entry.bytes;
    if ((bytes.formats[entry.format] -= entry.bytes) == 0) bytes.formats.erase(entry.format);
    loaded_.pop_back();
  }

  struct Loaded {  // WeightStore's record of materialized weights, which tied weights reuse
    std::vector<std::string> sources;
    float offset;
    float scale;
    WeightSlice slice;
    size_t bytes;
    std::string format;
    size_t* part;
  };
  QuantizationSpec spec_;
  DType dtype_;
  std::vector<Loaded> loaded_;
};

}  // namespace

FileWeights::FileWeights(const std::filesystem::path& path) {
  if (is_gguf_file(path)) {  // floats and ggml blocks only
    file_ = std::make_unique<GgufFile>(path);
    source_ = std::make_unique<GgufSource>(*file_);
    arch_ = architecture_from_gguf(*file_);
    return;
  }
  auto source = std::make_unique<SafetensorsSource>(path);
  arch_ = architecture_from_hf_config(path / "config.json",
                                      [&](const std::string& name) { return source->find(name) != nullptr; });
  for (const auto& [name, t] : source->tensors())
    stores_quantized_ = stores_quantized_ || t->fp8_e4m3 || (t->dtype == DType::i8 && !t->u8);
  source_ = std::move(source);
  if (arch_.mxfp4_paired_rows) source_ = std::make_unique<Mxfp4Source>(std::move(source_), *arch_.mxfp4_paired_rows);
}

FileWeights::~FileWeights() = default;

QuantizationSpec FileWeights::loader_spec(Quantization quantization, int group_size) const {
  ModelOptions options;
  options.quantization = quantization;
  options.quant_group_size = group_size;
  return kestrel::loader_spec(options, arch_);
}

FfnAlignment FileWeights::ffn_alignment(Quantization quantization, int group_size) const {
  return ffn_split_alignment(*source_, arch_, loader_spec(quantization, group_size));
}

WeightBytes FileWeights::held(const Shard& shard, Quantization quantization, int group_size, DType dtype,
                              bool* tied_here) const {
  const QuantizationSpec spec = loader_spec(quantization, group_size);
  const Architecture& arch = arch_;
  const ModelConfig& c = arch.config;
  const WeightSource& source = *source_;
  const ShardSlices slices = shard_slices(shard, c, arch.kinds.gated_ffn);
  Walk walk(spec, dtype);
  WeightBytes& w = walk.bytes;
  auto dense = [&](WeightSlot slot, int layer, size_t* part, const WeightSlice& slice = {}) {
    walk.dense(source, arch.recipe(slot, layer), canonical_shape(arch, slot), slice, slot_what(slot, layer), part);
  };
  auto linear = [&](WeightSlot slot, int layer, const WeightSlice& slice, size_t* part) {
    walk.linear(source, arch.recipe(slot, layer), false, canonical_shape(arch, slot), slice, slot_what(slot, layer),
                part);
  };
  auto norm = [&](WeightSlot weight, WeightSlot bias, int layer, size_t* part) {
    dense(weight, layer, part);
    dense(bias, layer, part);
  };

  *tied_here = false;
  bool head_kept = false;
  if (tied_head_doubles_as_embedding(arch, shard)) {
    const WeightRecipe head = arch.recipe(WeightSlot::lm_head, -1);
    if (auto plan = plan_kept_table(source, head, c.vocab_size, c.hidden_size, spec.for_lm_head())) {
      // The table (at tp > 1 with the padding rows of tied_table_slice); the head its rows.
      plan = plan_kept_blocks(source, head, c.hidden_size, spec.for_lm_head(), tied_table_slice(shard, c.vocab_size));
      walk.kept(*plan, &w.token_embedding);
      const KeptLayout layout = plan->pieces.back().layout;
      w.lm_head_view = shard.tp == 1 ? w.token_embedding
                                     : quantized_weight_bytes(layout.format, shard.vocab, c.hidden_size, layout.group_size);
      head_kept = *tied_here = true;
    }
  }
  if (shard.first_stage()) {
    // Else the whole table in the file's blocks, as WeightStore::load keeps it, or dense.
    const WeightRecipe table = arch.recipe(WeightSlot::token_embedding, -1);
    if (!head_kept) {
      if (auto plan = plan_kept_table(source, table, c.vocab_size, c.hidden_size, spec.for_embedding()))
        walk.kept(*plan, &w.token_embedding);
      else if (tied_head_reads_table(arch, shard))  // with the tied head's padding rows
        dense(WeightSlot::token_embedding, -1, &w.token_embedding, tied_table_slice(shard, c.vocab_size));
      else
        dense(WeightSlot::token_embedding, -1, &w.token_embedding);
    }
    if (arch.kinds.positions == PositionKind::learned) dense(WeightSlot::position_embedding, -1, &w.position_embedding);
  }
  const size_t f32 = dtype_size(DType::f32);
  if (arch.kinds.positions == PositionKind::rotary) walk.add(&w.rotary_table, "f32", arch.kinds.rotary_inv_freq.size() * f32);
  for (int l = shard.layer_begin; l < shard.layer_end; ++l) {
    norm(WeightSlot::attn_norm_weight, WeightSlot::attn_norm_bias, l, &w.layers);
    linear(WeightSlot::qkv_weight, l, slices.qkv, &w.layers);
    dense(WeightSlot::qkv_bias, l, &w.layers, slices.qkv);
    linear(WeightSlot::out_weight, l, slices.out, &w.layers);
    dense(WeightSlot::out_bias, l, &w.layers);  // added once, after the all-reduce
    norm(WeightSlot::ffn_norm_weight, WeightSlot::ffn_norm_bias, l, &w.layers);
    linear(WeightSlot::up_weight, l, slices.up, &w.layers);
    dense(WeightSlot::up_bias, l, &w.layers, slices.up);
    linear(WeightSlot::down_weight, l, slices.down, &w.layers);
    dense(WeightSlot::down_bias, l, &w.layers);
    if (arch.kinds.is_sparse(l)) {  // load_moe_weights (models/moe_weights.cc): slices of every expert
      const ExpertSource experts(source);
      auto expert_linear = [&](WeightSlot slot, const WeightRecipe& recipe, const WeightSlice& slice,
                               const std::string& what) {
        walk.linear(experts, recipe, false, canonical_shape(arch, slot), slice, what, &w.layers);
      };
      expert_linear(WeightSlot::router_weight, arch.recipe(WeightSlot::router_weight, l), {},
                    slot_what(WeightSlot::router_weight, l));
      walk.dense(experts, arch.recipe(WeightSlot::router_bias, l), canonical_shape(arch, WeightSlot::router_bias), {},
                 slot_what(WeightSlot::router_bias, l), &w.layers);
      for (int e = 0; e < c.num_experts; ++e) {
        for (WeightSlot bias : {WeightSlot::expert_up_bias, WeightSlot::expert_down_bias})
          walk.dense(experts, arch.expert_recipe(bias, l, e), canonical_shape(arch, bias), {},
                     slot_what(bias, l) + " of expert " + std::to_string(e), &w.layers);
        expert_linear(WeightSlot::expert_up_weight, arch.expert_recipe(WeightSlot::expert_up_weight, l, e),
                      slices.expert_up, slot_what(WeightSlot::expert_up_weight, l) + " of expert " + std::to_string(e));
        expert_linear(WeightSlot::expert_down_weight, arch.expert_recipe(WeightSlot::expert_down_weight, l, e),
                      slices.expert_down,
                      slot_what(WeightSlot::expert_down_weight, l) + " of expert " + std::to_string(e));
      }
      if (c.shared_expert_ffn_size > 0) {
        expert_linear(WeightSlot::shared_up_weight, arch.recipe(WeightSlot::shared_up_weight, l), slices.shared_up,
                      slot_what(WeightSlot::shared_up_weight, l));
        expert_linear(WeightSlot::shared_down_weight, arch.recipe(WeightSlot::shared_down_weight, l),
                      slices.shared_down, slot_what(WeightSlot::shared_down_weight, l));
        walk.dense(experts, arch.recipe(WeightSlot::shared_gate_weight, l),
                   canonical_shape(arch, WeightSlot::shared_gate_weight), {},
                   slot_what(WeightSlot::shared_gate_weight, l), &w.layers);
      }
    }
    if (arch.kinds.post_norms) {
      dense(WeightSlot::post_attn_norm_weight, l, &w.layers);
      dense(WeightSlot::post_ffn_norm_weight, l, &w.layers);
    }
    if (arch.kinds.attention_sinks)
      dense(WeightSlot::attn_sinks, l, &w.layers, WeightSlice{.row_ranges = {{shard.q_head_begin, shard.n_heads}}});
    if (arch.kinds.qk_norm) {
      dense(WeightSlot::q_norm_weight, l, &w.layers);
      dense(WeightSlot::k_norm_weight, l, &w.layers);
    }
    if (!arch.kinds.layer_attention.empty() && arch.kinds.positions == PositionKind::rotary)
      walk.add(&w.rotary_table, "f32", arch.kinds.layer_attention.at(static_cast<size_t>(l)).rotary_inv_freq.size() * f32);
  }
  if (shard.last_stage()) {
    norm(WeightSlot::final_norm_weight, WeightSlot::final_norm_bias, -1, &w.final_norm);
    if (!head_kept) {
      walk.linear(source, arch.recipe(WeightSlot::lm_head, -1), true, canonical_shape(arch, WeightSlot::lm_head),
                  slices.vocab, "lm_head", &w.lm_head, &w.lm_head_view);
      *tied_here = w.lm_head_view > 0;
    }
    dense(WeightSlot::lm_head_bias, -1, &w.lm_head, slices.vocab);
  }
  return w;
}

}  // namespace kestrel::sizing
