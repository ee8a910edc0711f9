#include "models/weights.h"

#include <algorithm>
#include <sstream>

#include "core/half.h"
#include "kestrel/error.h"
#include "loaders/gguf_quant.h"
#include "models/row_view.h"
#include "models/stored_quantized.h"

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

namespace {

// Elements [begin, begin + count) of row `row` (of `row_len` elements) of a stored tensor,
// as f32. Block-quantized rows are dequantized whole (blocks run along the row).
void read_row_f32(const SourceTensor& t, int64_t row, int64_t row_len, int64_t begin, int64_t count, float* out,
                  std::vector<float>& scratch) {
  if (t.block_type) {
    const uint64_t row_bytes = *ggml_row_bytes(*t.block_type, row_len);
    scratch.resize(static_cast<size_t>(row_len));
    dequantize_row(*t.block_type, static_cast<const uint8_t*>(t.data) + row * row_bytes, scratch.data(), row_len);
    std::copy(scratch.begin() + begin, scratch.begin() + begin + count, out);
  } else {
    const size_t es = dtype_size(t.dtype);
    convert_floats(static_cast<const uint8_t*>(t.data) + static_cast<size_t>(row * row_len + begin) * es, t.dtype,
                   out, DType::f32, static_cast<size_t>(count));
  }
}

// dst[c, r] = src[r, c] for src [rows, cols], in tiles that stay in cache.
void transpose(const float* src, int64_t rows, int64_t cols, float* dst) {
  constexpr int64_t kTile = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile)
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c) dst[c * rows + r] = src[r * cols + c];
}

}  // namespace

TensorView WeightStore::materialize(const WeightSource& source, const WeightRecipe& recipe,
                                    std::vector<int64_t> shape, const WeightSlice& slice, const std::string& what) {
  const bool matrix = shape.size() == 2;
  for (const auto& entry : loaded_) {
    if (entry.sources != recipe.sources || entry.offset != recipe.offset || entry.scale != recipe.scale ||
        !slice_served_by(slice, entry.slice, matrix))
      continue;
    if (entry.slice == slice) return entry.view;  // a tied weight already on the device
    // A tied LM head that is a block of rows of the (whole) embedding on this rank, and its
    // padding rows those after the table's rows.
    return entry.view.rows(slice.row_ranges[0].first, slice.row_ranges[0].second + slice.pad_rows);
  }

  const int64_t cols = matrix ? shape[1] : 1;
  if ((recipe.offset != 0.0f || recipe.scale != 1.0f) && recipe.transposed)
    throw Error(ErrorCategory::internal, what + ": a value offset or scale is not applied to transposed sources");
  std::vector<const SourceTensor*> parts;
  std::vector<int64_t> part_begin;  // canonical row where each part starts
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
    part_begin.push_back(rows_total);
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

  // Runs of canonical rows [begin, begin + rows) read from rows [source_row, ...) of part
  // `part`: one run per part, or per (part of q / k / v, head) of an interleaved QKV.
  struct Run {
    size_t part;
    int64_t begin, rows, source_row;
  };
  std::vector<Run> runs;
  if (const int64_t hd = recipe.interleaved_head_rows; hd > 0) {
    const int64_t n = recipe.interleaved_parts;  // 3: q, k, v; 2: gate, up
    if (parts.size() != 1 || n < 2 || shape[0] % (n * hd) != 0)
      throw Error(ErrorCategory::internal, what + ": an interleaved weight needs one source of parts x heads x rows");
    const int64_t heads = shape[0] / (n * hd);
    for (int64_t part = 0; part < n; ++part)
      for (int64_t h = 0; h < heads; ++h) runs.push_back({0, (part * heads + h) * hd, hd, (n * h + part) * hd});
  } else {
    for (size_t k = 0; k < parts.size(); ++k)
      runs.push_back({k, part_begin[k], parts[k]->numel() / cols, 0});
  }

  // This rank's rows and columns (everything unless the model is split across ranks).
  std::vector<std::pair<int64_t, int64_t>> ranges = slice.row_ranges;
  if (ranges.empty()) ranges.push_back({0, shape[0]});
  const int64_t c0 = slice.col_begin, cc = slice.col_count < 0 ? cols : slice.col_count;
  int64_t out_rows = 0;
  for (const auto& [begin, count] : ranges) {
    if (begin < 0 || count <= 0 || begin + count > shape[0])
      throw Error(ErrorCategory::internal, what + ": slice rows out of range");
    out_rows += count;
  }
  out_rows += slice.pad_rows;  // left as zeros below
  if (c0 < 0 || cc <= 0 || c0 + cc > cols) throw Error(ErrorCategory::internal, what + ": slice columns out of range");

  // Convert on the host into the canonical layout and runtime dtype, then copy once. Only
  // this rank's rows and columns are read from the (memory-mapped) files. Block-quantized
  // tensors are dequantized to f32 first (exactly: every Q8_0 / Q4_0 / Q4_1 value is
  // representable in f32).
  const size_t out_es = dtype_size(dtype_);
  std::vector<uint8_t> host(static_cast<size_t>(out_rows * cc) * out_es);
  std::vector<float> rowbuf, scratch, tile, tile_t;
  int64_t out_row = 0;
  for (const auto& [begin, count] : ranges) {
    for (const Run& run : runs) {
      const SourceTensor& t = *parts[run.part];
      const int64_t part_rows = t.numel() / cols;
      const int64_t lo = std::max(begin, run.begin), hi = std::min(begin + count, run.begin + run.rows);
      if (lo >= hi) continue;
      const int64_t seg = hi - lo, local = lo - run.begin + run.source_row;
      uint8_t* dst = host.data() + static_cast<size_t>(out_row * cc) * out_es;
      if (!recipe.transposed || !matrix) {
        if (!t.block_type && cc == cols && recipe.offset == 0.0f && recipe.scale == 1.0f) {  // whole rows of a float tensor: one conversion
          convert_floats(static_cast<const uint8_t*>(t.data) + static_cast<size_t>(local * cols) * dtype_size(t.dtype),
                         t.dtype, dst, dtype_, static_cast<size_t>(seg * cols));
        } else {
          rowbuf.resize(static_cast<size_t>(cc));
          for (int64_t r = 0; r < seg; ++r) {
            read_row_f32(t, local + r, cols, c0, cc, rowbuf.data(), scratch);
            // In f32, as transformers' (1 + w.float()); only where there is an offset, which
            // would turn ggml's -0 (a negative block scale times 0) into +0.
            if (recipe.offset != 0.0f)
              for (float& v : rowbuf) v += recipe.offset;
            if (recipe.scale != 1.0f)
              for (float& v : rowbuf) v *= recipe.scale;
            convert_floats(rowbuf.data(), DType::f32, dst + static_cast<size_t>(r * cc) * out_es, dtype_,
                           static_cast<size_t>(cc));
          }
        }
      } else {  // stored [in, out]: canonical row o, column i is stored at [i, o]
        tile.resize(static_cast<size_t>(cc * seg));
        for (int64_t i = 0; i < cc; ++i)
          read_row_f32(t, c0 + i, part_rows, local, seg, tile.data() + i * seg, scratch);
        tile_t.resize(tile.size());
        transpose(tile.data(), cc, seg, tile_t.data());
        convert_floats(tile_t.data(), DType::f32, dst, dtype_, tile_t.size());
      }
      out_row += seg;
    }
  }

  for (const SourceTensor* t : parts) source.release(*t);
  void* ptr = backend_.allocator().allocate(host.size(), what.c_str());
  allocations_.push_back(ptr);
  TensorView view = matrix ? TensorView(ptr, dtype_, {out_rows, cc}, backend_.device())
                           : TensorView(ptr, dtype_, {out_rows}, backend_.device());
  TensorView host_view = view;
  host_view.data = host.data();
  host_view.device = Device::cpu();
  backend_.copy(view, host_view);
  bytes_ += host.size();
  loaded_.push_back({recipe.sources, recipe.offset, recipe.scale, slice, view});
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
  std::erase_if(loaded_, [&](const Loaded& entry) { return entry.view.data == view.data; });
  backend_.allocator().deallocate(view.data);
  bytes_ -= view.bytes();
}

// Dense as materialized (this rank's `slice` of it), or quantized as quant_ asks: GGUF
// blocks kept as stored when they match (all of them, or a tensor-parallel slice of rows:
// QKV heads, FFN gate / up rows, LM-head rows; or of columns on block boundaries), else the
// materialized float weight is quantized and freed (unless it lies in `keep_dense`: a
// tied embedding that the embedding lookup still reads).
LinearWeight WeightStore::linear(const WeightSource& source, const Architecture& arch, WeightSlot slot,
                                 int layer, std::vector<int64_t> shape, const WeightSlice& slice,
                                 const TensorView& keep_dense) {
  const WeightRecipe recipe = arch.recipe(slot, layer);
  return linear_from(source, recipe, slot == WeightSlot::lm_head, std::move(shape), slice, keep_dense,
                     slot_what(slot, layer));
}

LinearWeight WeightStore::load_linear(const WeightSource& source, const WeightRecipe& recipe,
                                      std::vector<int64_t> shape, const std::string& what, const WeightSlice& slice) {
  return linear_from(source, recipe, false, std::move(shape), slice, {}, what);
}

TensorView WeightStore::load_dense(const WeightSource& source, const WeightRecipe& recipe,
                                   std::vector<int64_t> shape, const std::string& what) {
  if (recipe.sources.empty()) return {};
  return materialize(source, recipe, std::move(shape), {}, what);
}

LinearWeight WeightStore::linear_from(const WeightSource& source, const WeightRecipe& recipe, bool lm_head,
                                      std::vector<int64_t> shape, const WeightSlice& slice,
                                      const TensorView& keep_dense, const std::string& what) {
  if (recipe.sources.empty()) return {};
  // Blocks kept as stored are not rescaled: a scale belongs on dense vectors (biases).
  if (recipe.scale != 1.0f) throw Error(ErrorCategory::internal, what + ": a linear weight's recipe has a value scale");
  const QuantizationSpec spec = lm_head ? quant_.for_lm_head() : quant_;
  const bool precise = lm_head;
  // The flags set, the backend lays the weight out for its kernels.
  const auto finish = [&](QuantizedWeight q) {
    q.precise_activations = precise;
    backend_.prepare_quantized(q);
    return LinearWeight{{}, std::move(q)};
  };
  // Weights kestrel-quantize stored as int8 / E4M3 with their scales.
  if (auto stored = load_stored_quantized(*this, source, recipe, shape, slice, spec, what))
    return finish(std::move(*stored));
  if (auto kept = keep_ggml_blocks(*this, source, recipe, shape[1], spec, what, slice))
    return finish(std::move(*kept));
  LinearWeight w;
  w.dense = materialize(source, recipe, std::move(shape), slice, what);
  if (!spec.requantizes()) return w;
  w.quantized = quantize_weight(*this, backend_, w.dense, spec, what);
  w.quantized.precise_activations = precise;
  backend_.prepare_quantized(w.quantized);
  const auto* begin = static_cast<const uint8_t*>(keep_dense.data);
  const auto* at = static_cast<const uint8_t*>(w.dense.data);
  const bool in_keep = begin && at >= begin && at < begin + keep_dense.bytes();
  if (!in_keep) release(w.dense);
  w.dense = {};
  return w;
}

ModelWeights WeightStore::load(const WeightSource& source, const Architecture& arch, const Shard& shard) {
  const ModelConfig& c = arch.config;
  // This rank's part of each split weight (all of it when the model is not split).
  // A norm over every head's q / k needs all of them on one rank.
  if (arch.kinds.qk_norm_over_heads && shard.tp > 1)
    throw Error(ErrorCategory::unsupported, arch.name + ": q / k norms over the whole projection are not supported "
                                                "under tensor parallelism (tp > 1)");
  const ShardSlices slices = shard_slices(shard, c, arch.kinds.gated_ffn);
  const WeightSlice &qkv_slice = slices.qkv, &out_slice = slices.out, &up_slice = slices.up,
                    &down_slice = slices.down, &vocab_slice = slices.vocab;

  // A slot the architecture names must be present; one it does not name stays empty.
  auto get = [&](WeightSlot slot, int layer, const WeightSlice& slice = {}) {
    WeightRecipe recipe = arch.recipe(slot, layer);
    if (recipe.sources.empty()) return TensorView{};
    return materialize(source, recipe, canonical_shape(arch, slot), slice, slot_what(slot, layer));
  };
  auto dense_or_quantized = [&](WeightSlot slot, int layer, const WeightSlice& slice,
                                const TensorView& keep_dense = {}) {
    return linear(source, arch, slot, layer, canonical_shape(arch, slot), slice, keep_dense);
  };
  auto norm = [&](WeightSlot weight, WeightSlot bias, int layer) {
    NormParams p;
    p.kind = arch.kinds.norm;
    p.eps = c.norm_eps;
    p.gamma = get(weight, layer);
    p.beta = get(bias, layer);
    if (p.gamma.empty())
      throw Error(ErrorCategory::internal, arch.name + ": no norm weight for layer " + std::to_string(layer));
    return p;
  };
  // A norm of LayerKinds::post_norms / qk_norm: RMSNorm like the others, without bias.
  auto extra_norm = [&](WeightSlot weight, int layer) {
    NormParams p;
    p.kind = NormKind::rms_norm;
    p.eps = c.norm_eps;
    p.gamma = get(weight, layer);
    if (p.gamma.empty())
      throw Error(ErrorCategory::internal, arch.name + ": no " + slot_what(weight, layer) + " recipe");
    return p;
  };

  ModelWeights w;
  // A tied LM head that stays in the file's blocks doubles as the embedding table on a rank
  // of pp = 1 (the lookup dequantizes a row; the values are the same): at tp = 1 it is the
  // table; at tp > 1 a view of its vocabulary rows of the whole table, which is laid out
  // for the head's kernels (on the CPU interleaved, when int8: the head's decode GEMV runs
  // as fast as on a copy of its rows) and ends with the last ranks' zero padding rows.
  const WeightRecipe head_recipe = arch.recipe(WeightSlot::lm_head, -1);
  if (tied_head_doubles_as_embedding(arch, shard)) {
    std::optional<QuantizedWeight> kept;
    if (plan_kept_table(source, head_recipe, c.vocab_size, c.hidden_size, quant_.for_lm_head()))
      kept = keep_ggml_blocks(*this, source, head_recipe, c.hidden_size, quant_.for_lm_head(),
                              "lm_head (and token_embedding)", tied_table_slice(shard, c.vocab_size));
    if (!kept && shard.tp == 1)  // or stored by kestrel-quantize (a GGUF's Q8_0 head, exactly)
      kept = load_stored_quantized(*this, source, head_recipe, canonical_shape(arch, WeightSlot::lm_head), {},
                                   quant_.for_lm_head(), "lm_head (and token_embedding)");
    if (kept) {
      kept->precise_activations = true;
      backend_.prepare_quantized(*kept);
      w.token_embedding.quantized = *kept;
      w.lm_head.quantized = shard.tp == 1 ? *kept : quantized_row_view(*kept, shard.vocab_begin, shard.vocab);
    }
  }
  if (shard.first_stage()) {
    // Any other table the file stores in blocks stays in them, whole (the lookup needs every
    // row, whatever the rank's share of the LM head): untied, or tied at pp > 1 (or at a tp
    // whose vocabulary rows do not start on a row group: tied_head_doubles_as_embedding).
    // Only the lookup reads it, so it keeps the plain layout (no prepare_quantized).
    const WeightRecipe table = arch.recipe(WeightSlot::token_embedding, -1);
    const QuantizationSpec table_spec = quant_.for_embedding();
    if (w.token_embedding.empty() && plan_kept_table(source, table, c.vocab_size, c.hidden_size, table_spec))
      if (auto kept = keep_ggml_blocks(*this, source, table, c.hidden_size, table_spec, "token_embedding"))
        w.token_embedding.quantized = *kept;
    // Dense: at tp > 1 with pp = 1 a tied head's rows, padding rows included, are a view of
    // it (slice_served_by), so the table is materialized with the padding rows after it.
    if (w.token_embedding.empty()) {
      const WeightSlice padded = tied_head_reads_table(arch, shard) ? tied_table_slice(shard, c.vocab_size) : WeightSlice{};
      const TensorView dense = get(WeightSlot::token_embedding, -1, padded);
      if (!dense.empty()) w.token_embedding.dense = dense.rows(0, c.vocab_size);
    }
    if (arch.kinds.positions == PositionKind::learned) w.position_embedding = get(WeightSlot::position_embedding, -1);
    if (w.token_embedding.empty()) throw Error(ErrorCategory::internal, arch.name + ": no token embedding");
  }
  if (arch.kinds.positions == PositionKind::rotary) {
    const std::vector<float>& f = arch.kinds.rotary_inv_freq;
    w.rotary_inv_freq = upload(f.data(), DType::f32, {static_cast<int64_t>(f.size())}, "rotary inv_freq");
  }
  for (int l = shard.layer_begin; l < shard.layer_end; ++l) {
    LayerWeights lw;
    if (arch.kinds.pre_norms) lw.attn_norm = norm(WeightSlot::attn_norm_weight, WeightSlot::attn_norm_bias, l);
    lw.qkv_weight = dense_or_quantized(WeightSlot::qkv_weight, l, qkv_slice);
    lw.qkv_bias = get(WeightSlot::qkv_bias, l, qkv_slice);
    lw.out_weight = dense_or_quantized(WeightSlot::out_weight, l, out_slice);
    lw.out_bias = get(WeightSlot::out_bias, l);  // added once, after the all-reduce
    if (arch.kinds.pre_norms) lw.ffn_norm = norm(WeightSlot::ffn_norm_weight, WeightSlot::ffn_norm_bias, l);
    lw.up_weight = dense_or_quantized(WeightSlot::up_weight, l, up_slice);
    lw.up_bias = get(WeightSlot::up_bias, l, up_slice);
    lw.down_weight = dense_or_quantized(WeightSlot::down_weight, l, down_slice);
    lw.down_bias = get(WeightSlot::down_bias, l);
    for (WeightSlot slot : arch.w8a8_float_activations) {  // kept int8 weight-only by the checkpoint
      LinearWeight& kept = slot == WeightSlot::qkv_weight ? lw.qkv_weight
                           : slot == WeightSlot::out_weight ? lw.out_weight
                           : slot == WeightSlot::up_weight  ? lw.up_weight
                                                            : lw.down_weight;
      kept.quantized.int8_activations = false;
      backend_.prepare_quantized(kept.quantized);  // now weight-only: the CPU's decode layout
    }
    if (arch.kinds.is_sparse(l)) lw.moe = load_moe_weights(*this, source, arch, l, shard);
    if (arch.kinds.post_norms) {
      lw.post_attn_norm = extra_norm(WeightSlot::post_attn_norm_weight, l);
      lw.post_ffn_norm = extra_norm(WeightSlot::post_ffn_norm_weight, l);
    }
    if (arch.kinds.attention_sinks) {
      lw.attn_sinks = get(WeightSlot::attn_sinks, l, WeightSlice{.row_ranges = {{shard.q_head_begin, shard.n_heads}}});
      if (lw.attn_sinks.empty()) throw Error(ErrorCategory::internal, arch.name + ": no attn_sinks recipe");
    }
    if (arch.kinds.qk_norm) {
      lw.q_norm = extra_norm(WeightSlot::q_norm_weight, l);
      lw.k_norm = extra_norm(WeightSlot::k_norm_weight, l);
    }
    // Without pre-norms (OLMo 2) the blocks read the residual itself, but the fused
    // add+norm that adds each block's output still computes a norm, which no one reads:
    // the post-norms stand in (views of the same weights, no copy).
    if (!arch.kinds.pre_norms) {
      lw.attn_norm = lw.post_attn_norm;
      lw.ffn_norm = lw.post_ffn_norm;
    }
    if (!arch.kinds.layer_attention.empty() && arch.kinds.positions == PositionKind::rotary) {
      const std::vector<float>& f = arch.kinds.layer_attention.at(static_cast<size_t>(l)).rotary_inv_freq;
      if (!f.empty())
        lw.rotary_inv_freq = upload(f.data(), DType::f32, {static_cast<int64_t>(f.size())},
                                    "rotary inv_freq of layer " + std::to_string(l));
    }
    w.layers.push_back(lw);
  }
  if (shard.last_stage()) {
    w.final_norm = norm(WeightSlot::final_norm_weight, WeightSlot::final_norm_bias, -1);
    if (w.lm_head.empty()) w.lm_head = dense_or_quantized(WeightSlot::lm_head, -1, vocab_slice, w.token_embedding.dense);
    if (w.lm_head.empty()) throw Error(ErrorCategory::internal, arch.name + ": no LM head");
    w.lm_head_bias = get(WeightSlot::lm_head_bias, -1, vocab_slice);
  }
  if (w.layers.empty()) throw Error(ErrorCategory::internal, arch.name + ": no layers on this rank");
  return w;
}

}  // namespace kestrel
