#include "tools/smoothquant.h"

#include "loaders/safetensors_writer.h"

#include "tools/smoothquant_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "cpu/cpu_ops.h"
#include "kestrel/decoder.h"
#include "kestrel/error.h"
#include "kestrel/session.h"
#include "loaders/gguf.h"
#include "loaders/gguf_quant.h"
#include "loaders/gguf_source.h"
#include "loaders/gguf_writer.h"
#include "loaders/safetensors.h"
#include "models/architecture.h"
#include "models/model_state.h"

namespace kestrel::tools {

namespace fs = std::filesystem;

void validate(const SmoothQuantOptions& o) {
  auto bad = [](const std::string& what) { throw Error(ErrorCategory::invalid_argument, what); };
  if (!(o.alpha >= 0.0f && o.alpha <= 1.0f)) bad("SmoothQuantOptions.alpha = " + std::to_string(o.alpha) + " (must be in [0, 1])");
  for (const auto& [name, a] : {std::pair{"qkv", o.input_alpha.qkv}, std::pair{"attn_out", o.input_alpha.attn_out},
                                std::pair{"ffn_up", o.input_alpha.ffn_up}, std::pair{"ffn_down", o.input_alpha.ffn_down}})
    if (a > 1.0f || std::isnan(a))
      bad(std::string("SmoothQuantOptions.input_alpha.") + name + " = " + std::to_string(a) + " (must be in [0, 1], or < 0 for alpha)");
  if (o.search_alpha && o.input_alpha.any())
    bad("SmoothQuantOptions.input_alpha is set with search_alpha (the search chooses every input's alpha)");
  try {
    parse_float_activations(o.float_activations, "SmoothQuantOptions.float_activations");
  } catch (const Error& e) {
    bad(e.what());
  }
  if (o.calibration_tokens < 1)
    bad("SmoothQuantOptions.calibration_tokens = " + std::to_string(o.calibration_tokens) + " (must be >= 1)");
  if (o.chunk_tokens < 1) bad("SmoothQuantOptions.chunk_tokens = " + std::to_string(o.chunk_tokens) + " (must be >= 1)");
  if (o.search_alpha) {
    if (o.alpha_grid.empty()) bad("SmoothQuantOptions.alpha_grid is empty");
    for (float a : o.alpha_grid)
      if (!(a >= 0.0f && a <= 1.0f)) bad("SmoothQuantOptions.alpha_grid has " + std::to_string(a) + " (must be in [0, 1])");
    if (o.search_rows < 1) bad("SmoothQuantOptions.search_rows = " + std::to_string(o.search_rows) + " (must be >= 1)");
  }
}

namespace {

// max_i |w[i, j]| over the rows of a dense f32 weight [rows, cols] held on the host.
std::vector<float> column_max(const TensorView& w) {
  const int64_t rows = w.dim(0), cols = w.dim(1);
  std::vector<float> out(static_cast<size_t>(cols), 0.0f);
  const float* p = w.ptr<float>();
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) out[j] = std::max(out[j], std::abs(p[i * cols + j]));
  return out;
}

}  // namespace

Calibration calibrate_smoothquant(const std::shared_ptr<const Model>& model, std::span<const int32_t> ids,
                                  const SmoothQuantOptions& options) {
  validate(options);
  const detail::ModelState& state = model->state();
  const ModelConfig& c = state.arch.config;
  if (model->device().kind != DeviceKind::cpu || state.dtype != DType::f32)
    throw Error(ErrorCategory::unsupported, "SmoothQuant calibration runs on the CPU in f32");
  if (state.parallel_info.tensor_parallel * state.parallel_info.pipeline_parallel > 1)
    throw Error(ErrorCategory::unsupported, "SmoothQuant calibration runs on a single rank");
  for (const LayerWeights& lw : state.weights.layers)
    if (lw.qkv_weight.is_quantized() || lw.out_weight.is_quantized() || lw.up_weight.is_quantized() ||
        lw.down_weight.is_quantized())
      throw Error(ErrorCategory::invalid_argument,
                  "SmoothQuant calibration needs the unquantized model (load it with Quantization::none)");
  if (ids.empty()) throw Error(ErrorCategory::invalid_argument, "SmoothQuant calibration: the text has no tokens");

  // max |x_j| of every linear layer's input, by the weight it feeds.
  std::map<const void*, std::vector<float>> act_max;
  // For the alpha search: every stride-th input row of each weight, up to search_rows.
  std::map<const void*, search::SampledRows> sampled;
  std::map<const void*, int64_t> rows_seen;
  const int64_t total_tokens = std::min<int64_t>(static_cast<int64_t>(ids.size()), options.calibration_tokens);
  const int64_t stride = std::max<int64_t>(1, total_tokens / options.search_rows);
  std::mutex mutex;
  cpu::set_linear_observer(*state.backend, [&](const void* weight, const TensorView& x) {
    const int64_t T = x.dim(0), K = x.dim(1);
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<float>& m = act_max[weight];
    m.resize(static_cast<size_t>(K), 0.0f);
    const float* p = x.ptr<float>();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k) m[k] = std::max(m[k], std::abs(p[t * K + k]));
    if (!options.search_alpha) return;
    search::SampledRows& rows = sampled[weight];
    rows.cols = K;
    int64_t& seen = rows_seen[weight];
    for (int64_t t = 0; t < T; ++t, ++seen)
      if (seen % stride == 0 && rows.rows() < options.search_rows) rows.values.insert(rows.values.end(), p + t * K, p + (t + 1) * K);
  });
  Calibration out;
  try {
    const int chunk = std::min(options.chunk_tokens, c.max_positions);
    SessionOptions so;
    so.max_sequences = 1;
    so.max_sequence_tokens = chunk;
    so.max_step_tokens = chunk;
    Session session(model, so);
    Decoder decoder(session);
    const size_t total = std::min(ids.size(), static_cast<size_t>(options.calibration_tokens));
    for (size_t begin = 0; begin < total; begin += static_cast<size_t>(chunk)) {
      const size_t n = std::min(total - begin, static_cast<size_t>(chunk));
      decoder.score(ids.subspan(begin, n));
      out.tokens += static_cast<int>(n);
    }
  } catch (...) {
    cpu::set_linear_observer(*state.backend, {});
    throw;
  }
  cpu::set_linear_observer(*state.backend, {});

  auto observed = [&](const LinearWeight& w, int layer, const char* what) -> const std::vector<float>& {
    auto it = act_max.find(w.dense.data);
    if (it == act_max.end())
      throw Error(ErrorCategory::internal, "SmoothQuant calibration: layer " + std::to_string(layer) + " " + what +
                                               " never ran");
    return it->second;
  };
  // The factors of one smoothed input feeding `weights`: with the fixed alpha, or the
  // searched one. Channel c of the factors scales input column j of each weight where
  // channel_of[j] == c; maxima are taken over the columns of a channel and over weights.
  auto choose = [&](std::span<const LinearWeight* const> weights, int layer, const char* what,
                    const std::vector<int64_t>& channel_of, int64_t channels, float kind_alpha, float& alpha) {
    std::vector<float> act(static_cast<size_t>(channels), 0.0f), wmax(static_cast<size_t>(channels), 0.0f);
    std::vector<search::SmoothTarget> targets;
    for (const LinearWeight* w : weights) {
      const std::vector<float>& a = observed(*w, layer, what);
      const std::vector<float> m = column_max(w->dense);
      for (size_t j = 0; j < channel_of.size(); ++j) {
        const auto ch = static_cast<size_t>(channel_of[j]);
        act[ch] = std::max(act[ch], a[j]);
        wmax[ch] = std::max(wmax[ch], m[j]);
      }
      if (options.search_alpha) targets.push_back({&sampled.at(w->dense.data), w->dense});
    }
    if (!options.search_alpha) {
      alpha = kind_alpha >= 0.0f ? kind_alpha : options.alpha;
      return search::smoothing_factors(act, wmax, alpha);
    }
    std::vector<float> factors;
    alpha = search::search_alpha(targets, act, wmax, channel_of, options.alpha_grid, factors);
    return factors;
  };
  auto identity = [](int64_t n) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) v[static_cast<size_t>(j)] = j;
    return v;
  };
  const std::vector<int64_t> hidden_channels = identity(c.hidden_size), ffn_channels = identity(c.ffn_size);
  // The attention output's column (query head h, dimension d) reads KV head h / group.
  std::vector<int64_t> out_channels(static_cast<size_t>(c.num_heads) * c.head_dim);
  const int group = c.num_heads / c.num_kv_heads;
  for (size_t j = 0; j < out_channels.size(); ++j)
    out_channels[j] = static_cast<int64_t>(j / c.head_dim / group) * c.head_dim + static_cast<int64_t>(j % c.head_dim);
  const InputAlphas& ia = options.input_alpha;
  for (size_t l = 0; l < state.weights.layers.size(); ++l) {
    const LayerWeights& lw = state.weights.layers[l];
    const int layer = static_cast<int>(l);
    LayerSmoothing s;
    if (state.arch.kinds.shared_norm) {
      // One norm feeds both: one factor for both inputs and both weights.
      const LinearWeight* both[] = {&lw.qkv_weight, &lw.up_weight};
      s.attn_in = choose(both, layer, "qkv / ffn up", hidden_channels, c.hidden_size, ia.qkv, s.attn_alpha);
      s.ffn_in = s.attn_in;
      s.ffn_alpha = s.attn_alpha;
    } else {
      const LinearWeight* qkv[] = {&lw.qkv_weight};
      const LinearWeight* up[] = {&lw.up_weight};
      s.attn_in = choose(qkv, layer, "qkv", hidden_channels, c.hidden_size, ia.qkv, s.attn_alpha);
      s.ffn_in = choose(up, layer, "ffn up", hidden_channels, c.hidden_size, ia.ffn_up, s.ffn_alpha);
    }
    if (state.arch.kinds.gated_ffn) {
      const LinearWeight* down[] = {&lw.down_weight};
      s.down_in = choose(down, layer, "ffn down", ffn_channels, c.ffn_size, ia.ffn_down, s.down_alpha);
    }
    const LinearWeight* o[] = {&lw.out_weight};
    s.out_in = choose(o, layer, "attention output", out_channels, int64_t{c.num_kv_heads} * c.head_dim, ia.attn_out,
                      s.out_alpha);
    out.layers.push_back(std::move(s));
  }
  return out;
}

nlohmann::json alphas(const Calibration& calibration, const SmoothQuantOptions& options) {
  if (!options.search_alpha && !options.input_alpha.any()) return options.alpha;
  if (!options.search_alpha) {
    const LayerSmoothing& s = calibration.layers.front();
    nlohmann::json kinds = {{"qkv", s.attn_alpha}, {"ffn_up", s.ffn_alpha}, {"attn_out", s.out_alpha}};
    if (!s.down_in.empty()) kinds["ffn_down"] = s.down_alpha;
    return kinds;
  }
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerSmoothing& s : calibration.layers) {
    nlohmann::json l = {{"qkv", s.attn_alpha}, {"ffn_up", s.ffn_alpha}, {"attn_out", s.out_alpha}};
    if (!s.down_in.empty()) l["ffn_down"] = s.down_alpha;
    layers.push_back(std::move(l));
  }
  return layers;
}

nlohmann::json smoothed_inputs(bool gated) {
  nlohmann::json list = {"qkv (folded into the attention norm)", "ffn up (folded into the ffn norm)",
                         "attention output (folded into the V rows of qkv)"};
  if (gated) list.push_back("ffn down (folded into the up rows)");
  return list;
}

namespace {

// How one source tensor changes: each element of input column j (of a [out, in] matrix,
// or row j when stored transposed) times col_scale[j]; each element of output row r (of
// this tensor, column r when transposed) times row_scale[r]; a vector's elements divided
// by divisor[i].
struct Edit {
  std::vector<float> col_scale;  // empty: none
  bool transposed = false;
  std::vector<float> row_scale;  // empty: none
  std::vector<float> divisor;    // empty: none
};

void apply(const Edit& e, const SourceTensor& t, std::vector<float>& v) {
  if (!e.divisor.empty()) {
    for (size_t i = 0; i < v.size(); ++i) v[i] /= e.divisor[i];
    return;
  }
  const int64_t rows = t.shape[0], cols = t.shape[1];
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float& x = v[static_cast<size_t>(r * cols + c)];
      if (!e.col_scale.empty()) x *= e.col_scale[static_cast<size_t>(e.transposed ? r : c)];
      if (!e.row_scale.empty()) x *= e.row_scale[static_cast<size_t>(e.transposed ? c : r)];
    }
}

// The canonical row of row `i` of source `part` of a slot's recipe: rows concatenated
// over the sources, or one source holding heads as [q | k | v] blocks of `hd` rows
// (interleaved_head_rows, GPT-NeoX).
int64_t canonical_row(const Architecture& arch, const WeightRecipe& r, const std::vector<int64_t>& first, size_t part,
                      int64_t i) {
  const int64_t hd = r.interleaved_head_rows;
  if (hd == 0) return first[part] + i;
  const int64_t nh = arch.config.num_heads, nkv = arch.config.num_kv_heads;
  const int64_t block = i / hd, head = block / 3, which = block % 3, d = i % hd;
  const int64_t base = which == 0 ? 0 : which == 1 ? nh * hd : (nh + nkv) * hd;
  return base + head * hd + d;
}

// Multiplies the canonical output rows of a weight slot (and its bias, divided the same
// way) by `scale` [canonical rows], through the recipe's source tensors.
void scale_rows(std::map<std::string, Edit, std::less<>>& edits, const Architecture& arch, WeightSlot weight,
                WeightSlot bias, int layer, const std::vector<float>& scale) {
  for (WeightSlot slot : {weight, bias}) {
    const WeightRecipe r = arch.recipe(slot, layer);
    if (r.sources.empty()) continue;  // no such bias
    const std::vector<int64_t> rows = source_rows(arch, slot, r.sources.size());
    std::vector<int64_t> first(rows.size(), 0);
    for (size_t k = 1; k < rows.size(); ++k) first[k] = first[k - 1] + rows[k - 1];
    for (size_t k = 0; k < r.sources.size(); ++k) {
      std::vector<float> factor(static_cast<size_t>(rows[k]));
      for (int64_t i = 0; i < rows[k]; ++i)
        factor[static_cast<size_t>(i)] = scale[static_cast<size_t>(canonical_row(arch, r, first, k, i))];
      Edit& e = edits[r.sources[k]];
      std::vector<float>& target = slot == weight ? e.row_scale : e.divisor;
      if (target.empty()) target.assign(factor.size(), 1.0f);
      for (size_t i = 0; i < factor.size(); ++i) target[i] *= slot == weight ? factor[i] : 1.0f / factor[i];
      if (slot == weight) e.transposed = r.transposed;
    }
  }
}

// Which source tensors change, and how (through the architecture's recipes, so the same
// code serves Hugging Face and GGUF names).
std::map<std::string, Edit, std::less<>> smoothing_edits(const Architecture& arch, const Calibration& calibration) {
  if (calibration.layers.size() != static_cast<size_t>(arch.config.num_layers))
    throw Error(ErrorCategory::invalid_argument, "SmoothQuant: the calibration does not match the model's layers");
  std::map<std::string, Edit, std::less<>> edits;
  const ModelConfig& c = arch.config;
  const int64_t F = c.ffn_size, q_rows = int64_t{c.num_heads} * c.head_dim, kv_rows = int64_t{c.num_kv_heads} * c.head_dim;
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerSmoothing& s = calibration.layers[static_cast<size_t>(l)];
    auto divide = [&](WeightSlot slot, const std::vector<float>& by) {
      for (const auto& name : arch.recipe(slot, l).sources) edits[name].divisor = by;
    };
    auto scale_columns = [&](WeightSlot slot, const std::vector<float>& by) {
      const WeightRecipe r = arch.recipe(slot, l);
      for (const auto& name : r.sources) {
        edits[name].col_scale = by;
        edits[name].transposed = r.transposed;
      }
    };
    divide(WeightSlot::attn_norm_weight, s.attn_in);
    divide(WeightSlot::attn_norm_bias, s.attn_in);
    scale_columns(WeightSlot::qkv_weight, s.attn_in);
    if (!arch.kinds.shared_norm) {  // a shared norm's tensors are the attention norm's, divided once
      divide(WeightSlot::ffn_norm_weight, s.ffn_in);
      divide(WeightSlot::ffn_norm_bias, s.ffn_in);
    }
    scale_columns(WeightSlot::up_weight, s.ffn_in);
    if (!s.down_in.empty()) {
      scale_columns(WeightSlot::down_weight, s.down_in);
      // The up half of the canonical [gate | up] rows (and of its bias) divided by s.
      std::vector<float> up_scale(static_cast<size_t>(2 * F), 1.0f);
      for (int64_t i = 0; i < F; ++i) up_scale[static_cast<size_t>(F + i)] = 1.0f / s.down_in[static_cast<size_t>(i)];
      scale_rows(edits, arch, WeightSlot::up_weight, WeightSlot::up_bias, l, up_scale);
    }
    if (!s.out_in.empty()) {
      // Output projection column (h, d) times s[g(h), d]; V row (g, d) of the QKV divided by it.
      const int group = c.num_heads / c.num_kv_heads;
      std::vector<float> columns(static_cast<size_t>(q_rows));
      for (int64_t j = 0; j < q_rows; ++j)
        columns[static_cast<size_t>(j)] = s.out_in[static_cast<size_t>((j / c.head_dim / group) * c.head_dim + j % c.head_dim)];
      scale_columns(WeightSlot::out_weight, columns);
      std::vector<float> qkv_scale(static_cast<size_t>(q_rows + 2 * kv_rows), 1.0f);
      for (int64_t i = 0; i < kv_rows; ++i)
        qkv_scale[static_cast<size_t>(q_rows + kv_rows + i)] = 1.0f / s.out_in[static_cast<size_t>(i)];
      scale_rows(edits, arch, WeightSlot::qkv_weight, WeightSlot::qkv_bias, l, qkv_scale);
    }
  }
  return edits;
}

// A tensor's values as f32 (ggml blocks dequantized), the edit applied.
std::vector<float> edited_values(const SourceTensor& t, const Edit& edit) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  if (t.block_type)
    dequantize_row(*t.block_type, t.data, v.data(), t.numel());
  else if (t.dtype == DType::f32 || t.dtype == DType::f16 || t.dtype == DType::bf16)
    convert_floats(t.data, t.dtype, v.data(), DType::f32, v.size());
  else
    throw Error(ErrorCategory::unsupported, t.name + ": SmoothQuant edits float or ggml block tensors only");
  apply(edit, t, v);
  return v;
}

// GGUF in, GGUF out: the edited tensors replaced by F32 ones, kestrel.quantization.* added.
void write_gguf(const fs::path& source_path, const Architecture& arch, const Calibration& calibration,
                const SmoothQuantOptions& options, const fs::path& out) {
  GgufFile file(source_path);
  GgufSource source(file);
  GgufWriter writer(source_path);
  for (const auto& [name, edit] : smoothing_edits(arch, calibration)) {
    const SourceTensor* t = source.find(name);
    if (!t) throw Error(ErrorCategory::internal, "SmoothQuant: no tensor '" + name + "'");
    writer.replace_tensor_f32(name, edited_values(*t, edit), {t->shape.rbegin(), t->shape.rend()});
  }
  writer.set("kestrel.quantization.format", std::string("w8a8"));
  writer.set("kestrel.quantization.method", std::string("smoothquant"));
  if (options.search_alpha)
    writer.set("kestrel.quantization.alpha", std::string("searched per input: ") + alphas(calibration, options).dump());
  else if (options.input_alpha.any())
    writer.set("kestrel.quantization.alpha", std::string("per kind of input: ") + alphas(calibration, options).dump());
  else
    writer.set("kestrel.quantization.alpha", options.alpha);
  writer.set("kestrel.quantization.calibration_tokens", static_cast<uint32_t>(calibration.tokens));
  if (!options.float_activations.empty()) {
    std::string list;
    for (const std::string& n : options.float_activations) list += (list.empty() ? "" : ",") + n;
    writer.set("kestrel.quantization.float_activations", list);
  }
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  writer.write(out);
}

}  // namespace

SmoothedValues smoothed_values(const Model& model, const Calibration& calibration) {
  auto edits = std::make_shared<const std::map<std::string, Edit, std::less<>>>(
      smoothing_edits(model.state().arch, calibration));
  return [edits](const SourceTensor& t) -> std::optional<std::vector<float>> {
    auto it = edits->find(t.name);
    if (it == edits->end()) return std::nullopt;
    return edited_values(t, it->second);
  };
}

void write_smoothquant_checkpoint(const Model& model, const Calibration& calibration,
                                  const SmoothQuantOptions& options, const fs::path& out_dir) {
  const detail::ModelState& state = model.state();
  const Architecture& arch = state.arch;
  const fs::path source_dir = state.path;
  if (fs::exists(out_dir) && fs::equivalent(out_dir, source_dir))
    throw Error(ErrorCategory::invalid_argument, out_dir.string() + ": the output must not be the source");
  if (is_gguf_file(source_dir)) {
    write_gguf(source_dir, arch, calibration, options, out_dir);
    return;
  }
  if (!fs::is_directory(source_dir) || !SafetensorsSource::present(source_dir))
    throw Error(ErrorCategory::unsupported,
                source_dir.string() + ": kestrel-quantize reads Hugging Face safetensors directories and GGUF files");
  SafetensorsSource source(source_dir);
  const auto edits = smoothing_edits(arch, calibration);

  // The tensors, in name order: edited ones as F32, the rest as stored.
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}, {"written_by", "kestrel-quantize (SmoothQuant)"}};
  std::vector<std::pair<const SourceTensor*, std::vector<float>>> payload;
  uint64_t offset = 0;
  for (const auto& [name, t] : source.tensors()) {
    std::vector<float> edited;
    auto it = edits.find(name);
    DType dtype = t->dtype;
    if (it != edits.end()) {
      edited = edited_values(*t, it->second);
      dtype = DType::f32;
    }
    const uint64_t bytes = it != edits.end() ? edited.size() * sizeof(float) : t->bytes;
    header[name] = {{"dtype", safetensors_dtype_name(dtype)}, {"shape", t->shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    payload.emplace_back(t, std::move(edited));
  }
  std::string head = header.dump();
  head.append((8 - head.size() % 8) % 8, ' ');

  fs::create_directories(out_dir);
  {
    std::ofstream out(out_dir / "model.safetensors", std::ios::binary | std::ios::trunc);
    if (!out) throw Error(ErrorCategory::io, (out_dir / "model.safetensors").string() + ": cannot write");
    const uint64_t n = head.size();
    out.write(reinterpret_cast<const char*>(&n), sizeof n);
    out.write(head.data(), static_cast<std::streamsize>(head.size()));
    for (const auto& [t, edited] : payload) {
      if (!edited.empty())
        out.write(reinterpret_cast<const char*>(edited.data()), static_cast<std::streamsize>(edited.size() * sizeof(float)));
      else
        out.write(static_cast<const char*>(t->data), static_cast<std::streamsize>(t->bytes));
    }
    if (!out) throw Error(ErrorCategory::io, (out_dir / "model.safetensors").string() + ": write failed");
  }

  // config.json with the quantization recorded; the other small files copied.
  std::ifstream in(source_dir / "config.json");
  nlohmann::json config = nlohmann::json::parse(in);
  config["kestrel_quantization"] = {
      {"format", "w8a8"},
      {"method", "smoothquant"},
      {"alpha", alphas(calibration, options)},
      {"calibration_tokens", calibration.tokens},
      {"weights", "int8, one scale per output channel, quantized at load from these (smoothed) values"},
      {"activations", "int8, one scale per token, at run time"},
      {"smoothed_inputs", smoothed_inputs(arch.kinds.gated_ffn)}};
  if (!options.float_activations.empty()) config["kestrel_quantization"]["float_activations"] = options.float_activations;
  std::ofstream(out_dir / "config.json") << config.dump(2) << "\n";
  for (const auto& entry : fs::directory_iterator(source_dir)) {
    const std::string file = entry.path().filename().string();
    if (!entry.is_regular_file() || file == "config.json" || file.find(".safetensors") != std::string::npos) continue;
    fs::copy_file(entry.path(), out_dir / file, fs::copy_options::overwrite_existing);
  }
}

}  // namespace kestrel::tools
