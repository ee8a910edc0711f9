#include "tools/sizing.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "core/session_layout.h"
#include "kestrel/error.h"
#include "loaders/gguf_source.h"
#include "loaders/safetensors.h"
#include "models/architecture.h"
#include "models/moe_family.h"
#include "parallel/shard.h"
#include "tools/held_weights.h"

namespace kestrel::sizing {

namespace {

[[noreturn]] void invalid(const std::string& message) { throw Error(ErrorCategory::invalid_argument, message); }

// The per-rank slice of the attention and FFN dimensions (expert_ffn, shared_ffn: the
// columns of each routed expert and of the shared expert).
struct RankDims {
  int64_t heads = 0, kv_heads = 0, ffn = 0, up_rows = 0, vocab = 0;
  int64_t expert_ffn = 0, shared_ffn = 0;
};

// The shard of rank (stage, tp_rank) as Model::load makes it: a file's FFN split in
// units of its down projection's kept blocks (FileWeights::ffn_alignment), a shape's
// evenly (its weights are float).
Shard rank_shard(const ModelShape& shape, const SizingOptions& o, int tp_rank, int stage) {
  const FfnAlignment ffn_align = shape.file ? shape.file->ffn_alignment(o.quantization, o.group_size) : FfnAlignment{};
  if (shape.moe_biases && o.tp > 1)  // as Model::load refuses it (check_expert_biases_unsplit)
    throw Error(ErrorCategory::unsupported, shape.source + ": experts with biases (gpt-oss) are not split by tensor "
                                            "parallelism yet (tp = " + std::to_string(o.tp) + ")");
  return make_shard(shape.config, o.tp, o.pp, tp_rank, stage, shape.source, ffn_align);
}

// The dimensions of tensor rank 0, as the runtime splits them: every rank holds as much,
// but when the FFN units do not divide evenly, for which rank 0 holds the most.
RankDims rank_dims(const ModelShape& shape, const SizingOptions& o) {
  const Shard shard = rank_shard(shape, o, 0, 0);
  RankDims d;
  d.heads = shard.n_heads;
  d.kv_heads = shard.n_kv_heads;  // replicated when tp exceeds them
  d.ffn = shard.ffn;
  d.up_rows = (shape.gated_ffn ? 2 : 1) * d.ffn;
  d.expert_ffn = shard.expert_ffn;
  d.shared_ffn = shard.shared_ffn;
  d.vocab = shard.vocab;  // ceil(V / tp), rounded up to 8 rows: the last rank's rows are padded
  return d;
}

// How the loader quantizes a float checkpoint's linear weights under these options
// (automatic: not at all, a float checkpoint's weights stay float).
QuantizationSpec quant_spec(const SizingOptions& o) {
  return {o.quantization == Quantization::automatic ? Quantization::none : o.quantization, o.group_size};
}

// Bytes of one float linear weight [rows, cols] as the loader holds it under `spec`: in
// `dtype`, or quantized at load in QuantizedWeight's layout (models/quantize.h).
size_t linear_bytes(const QuantizationSpec& spec, DType dtype, int64_t rows, int64_t cols) {
  if (!spec.requantizes()) return static_cast<size_t>(rows * cols) * dtype_size(dtype);
  return quantized_weight_bytes(spec.requantized_format(), rows, cols, spec.group_for(cols));
}

size_t vector_bytes(DType dtype, int64_t n) { return static_cast<size_t>(n) * dtype_size(dtype); }

bool is_sparse(const ModelShape& shape, int layer) {
  return static_cast<size_t>(layer) < shape.sparse_layers.size() && shape.sparse_layers[layer];
}

// The FFN weights of a sparse layer on one rank: the router, its columns of every expert
// and of the shared expert, the shared expert's gate.
size_t sparse_ffn_bytes(const ModelShape& shape, const RankDims& d, const QuantizationSpec& q, DType dtype) {
  const ModelConfig& c = shape.config;
  const int64_t H = c.hidden_size, Fe = d.expert_ffn, Fs = d.shared_ffn;
  size_t bytes = linear_bytes(q, dtype, c.num_experts, H);
  bytes += static_cast<size_t>(c.num_experts) * (linear_bytes(q, dtype, 2 * Fe, H) + linear_bytes(q, dtype, H, Fe));
  if (Fs > 0) bytes += linear_bytes(q, dtype, 2 * Fs, H) + linear_bytes(q, dtype, H, Fs) + vector_bytes(dtype, H);
  if (shape.moe_biases)
    bytes += vector_bytes(dtype, c.num_experts) + static_cast<size_t>(c.num_experts) * vector_bytes(dtype, 2 * Fe + H);
  return bytes;
}

// Weights of one rank of a stage holding `layers` layers from `first_layer`.
WeightBytes stage_weights(const ModelShape& shape, const SizingOptions& o, DType dtype, bool first, bool last,
                          int first_layer, int layers, bool* tied_here) {
  const ModelConfig& c = shape.config;
  const RankDims d = rank_dims(shape, o);
  const int64_t H = c.hidden_size, hd = c.head_dim;
  const int64_t norm = shape.norm_bias ? 2 * H : H;
  const QuantizationSpec q = quant_spec(o);
  WeightBytes w;
  if (first) {
    // A tied head beside the table reads its rows of it, padding rows included (tp > 1).
    const int64_t rows = c.tied_embeddings && last && o.tp > 1 ? o.tp * d.vocab : c.vocab_size;
    w.token_embedding = vector_bytes(dtype, rows * H);
    if (shape.learned_positions) w.position_embedding = vector_bytes(dtype, static_cast<int64_t>(c.max_positions) * H);
  }
  const int64_t qkv_rows = (d.heads + 2 * d.kv_heads) * hd;
  size_t layer = shape.pre_norms ? (shape.shared_norm ? 1 : 2) * vector_bytes(dtype, norm) : 0;
  if (shape.post_norms) layer += 2 * vector_bytes(dtype, norm);
  if (shape.qk_norm && shape.qk_norm_over_heads)
    layer += vector_bytes(dtype, (int64_t{c.num_heads} + c.num_kv_heads) * hd);
  else if (shape.qk_norm)
    layer += 2 * vector_bytes(dtype, hd);
  if (shape.attention_sinks) layer += vector_bytes(dtype, d.heads);
  layer += linear_bytes(q, dtype, qkv_rows, H) + linear_bytes(q, dtype, H, d.heads * hd);
  // Column-parallel biases (qkv, up) follow their rows; row-parallel ones (out, down) are
  // added once after the all-reduce and are replicated.
  if (shape.qkv_bias) layer += vector_bytes(dtype, qkv_rows);
  if (shape.out_bias) layer += vector_bytes(dtype, H);
  size_t dense_ffn = linear_bytes(q, dtype, d.up_rows, H) + linear_bytes(q, dtype, H, d.ffn);
  if (shape.mlp_bias) dense_ffn += vector_bytes(dtype, d.up_rows + H);
  w.layers = 0;
  w.rotary_table = vector_bytes(DType::f32, shape.rotary_pairs);
  for (int l = first_layer; l < first_layer + layers; ++l) {
    w.layers += layer + (is_sparse(shape, l) ? sparse_ffn_bytes(shape, d, q, dtype) : dense_ffn);
    if (static_cast<size_t>(l) < shape.layer_rotary_pairs.size())
      w.rotary_table += vector_bytes(DType::f32, shape.layer_rotary_pairs[static_cast<size_t>(l)]);
  }
  *tied_here = false;
  if (last) {
    w.final_norm = vector_bytes(dtype, norm);
    // The LM head as the loader quantizes it (QuantizationSpec::for_lm_head): a tied one
    // reads this rank's token embedding unless it is quantized, then a copy beside it.
    const QuantizationSpec head = q.for_lm_head();
    if (c.tied_embeddings && first && !head.requantizes()) {
      *tied_here = true;
      w.lm_head_view = linear_bytes(head, dtype, d.vocab, H);
    } else {
      w.lm_head = linear_bytes(head, dtype, d.vocab, H);
    }
    if (shape.lm_head_bias) w.lm_head += vector_bytes(dtype, d.vocab);
  }
  return w;
}

// The weights of one rank of each stage: from the file's tensor table when there is one
// (the largest of the stage's tensor ranks), else analytically.
std::vector<StageSizing> weights_per_stage(const ModelShape& shape, const SizingOptions& o) {
  const int L = shape.config.num_layers;
  if (o.pp < 1 || o.pp > L)
    invalid("pp = " + std::to_string(o.pp) + " (must be in [1, num_layers = " + std::to_string(L) + "])");
  std::vector<StageSizing> stages;
  int first_layer = 0;
  for (int s = 0; s < o.pp; ++s) {
    StageSizing st;
    st.stage = s;
    st.first_layer = first_layer;
    st.num_layers = L / o.pp + (s < L % o.pp ? 1 : 0);
    first_layer += st.num_layers;
    if (shape.file) {
      for (int r = 0; r < o.tp; ++r) {
        bool tied = false;
        const Shard shard = rank_shard(shape, o, r, s);
        WeightBytes w = shape.file->held(shard, o.quantization, o.group_size, o.dtype, &tied);
        if (r == 0 || w.total() > st.weights.total()) {
          st.tp_rank = r;
          st.weights = std::move(w);
          st.lm_head_tied_here = tied;
        }
      }
    } else {
      st.weights = stage_weights(shape, o, o.dtype, s == 0, s == o.pp - 1, st.first_layer, st.num_layers,
                                 &st.lm_head_tied_here);
    }
    stages.push_back(std::move(st));
  }
  return stages;
}

// `stages` (from weights_per_stage) with the KV cache and activations of `o.session`.
std::vector<StageSizing> stages_for(const ModelShape& shape, const SizingOptions& o, std::vector<StageSizing> stages,
                                    SessionOptions* resolved) {
  for (StageSizing& st : stages) {
    const Shard shard = rank_shard(shape, o, st.tp_rank, st.stage);
    st.ffn = shard.ffn;
    st.expert_ffn = shard.expert_ffn;
    st.shared_expert_ffn = shard.shared_ffn;
    detail::SessionLayout layout =
        detail::session_layout(shape.config, shape.gated_ffn, o.dtype, o.device, o.session, shard);
    st.kv_cache_bytes = layout.kv_bytes();
    st.activation_bytes = layout.activation_bytes();
    *resolved = layout.options;
  }
  return stages;
}

size_t largest_total(const std::vector<StageSizing>& stages, size_t* index) {
  size_t best = 0;
  for (size_t i = 0; i < stages.size(); ++i)
    if (stages[i].total() > stages[best].total()) best = i;
  if (index) *index = best;
  return stages[best].total();
}

// The largest max_sequences whose largest stage fits `memory`, every sequence able to
// reach max_sequence_tokens (kv_blocks chosen by the session), 0 if not even one fits.
int max_sequences_fitting(const ModelShape& shape, const SizingOptions& o, const std::vector<StageSizing>& weights,
                          const SessionOptions& resolved) {
  auto total_for = [&](int b) {
    SizingOptions t = o;
    t.session = resolved;
    t.session.max_sequences = b;
    t.session.kv_blocks = 0;
    t.session.max_step_tokens = std::max(resolved.max_step_tokens, b);
    SessionOptions ignored;
    return largest_total(stages_for(shape, t, weights, &ignored), nullptr);
  };
  if (total_for(1) > o.memory_bytes) return 0;
  int lo = 1, hi = 4096;  // Session's limit on max_sequences
  if (total_for(hi) <= o.memory_bytes) return hi;
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    (total_for(mid) <= o.memory_bytes ? lo : hi) = mid;
  }
  return lo;
}

// Weight elements a token multiplies in one layer, averaged over the layers (a sparse
// layer's token uses the router, k experts and the shared expert).
double linear_elements(const ModelShape& shape, const RankDims& d) {
  const ModelConfig& c = shape.config;
  const double H = c.hidden_size, hd = c.head_dim;
  const double attention = (d.heads + 2.0 * d.kv_heads) * hd * H + H * d.heads * hd;
  const double dense = d.up_rows * H + H * d.ffn;
  const double sparse = c.num_experts * H + 3.0 * c.experts_per_token * d.expert_ffn * H + 3.0 * d.shared_ffn * H +
                        (c.shared_expert_ffn_size > 0 ? H : 0.0);
  double ffn = 0.0;
  for (int l = 0; l < c.num_layers; ++l) ffn += is_sparse(shape, l) ? sparse : dense;
  return attention + ffn / std::max(c.num_layers, 1);
}

}  // namespace

ModelShape shape_of(const Architecture& arch) {
  ModelShape s;
  s.config = arch.config;
  s.gated_ffn = arch.kinds.gated_ffn;
  s.learned_positions = arch.kinds.positions == PositionKind::learned;
  s.norm_bias = !arch.recipe(WeightSlot::attn_norm_bias, 0).sources.empty();
  s.qkv_bias = !arch.recipe(WeightSlot::qkv_bias, 0).sources.empty();
  s.out_bias = !arch.recipe(WeightSlot::out_bias, 0).sources.empty();
  s.mlp_bias = !arch.recipe(WeightSlot::up_bias, 0).sources.empty();
  s.lm_head_bias = !arch.recipe(WeightSlot::lm_head_bias, -1).sources.empty();
  s.shared_norm = arch.kinds.shared_norm;
  s.rotary_pairs = static_cast<int>(arch.kinds.rotary_inv_freq.size());
  s.post_norms = arch.kinds.post_norms;
  s.qk_norm = arch.kinds.qk_norm;
  s.qk_norm_over_heads = arch.kinds.qk_norm_over_heads;
  s.pre_norms = arch.kinds.pre_norms;
  s.attention_sinks = arch.kinds.attention_sinks;
  s.moe_biases = has_expert_biases(arch);
  if (arch.kinds.positions == PositionKind::rotary)
    for (const auto& layer : arch.kinds.layer_attention)
      s.layer_rotary_pairs.push_back(static_cast<int>(layer.rotary_inv_freq.size()));
  // Tied exactly when WeightStore would store the two once (same source tensors).
  s.config.tied_embeddings =
      arch.recipe(WeightSlot::lm_head, -1).sources == arch.recipe(WeightSlot::token_embedding, -1).sources;
  s.sparse_layers = arch.kinds.sparse_layers;
  s.source = arch.name;
  return s;
}

ModelShape read_model_shape(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(ErrorCategory::io, path.string() + ": no such file or directory");
  ModelShape shape;
  const bool directory = std::filesystem::is_directory(path, ec);
  if (directory) {
    const auto config_path = path / "config.json";
    if (!std::filesystem::exists(config_path, ec))
      throw Error(ErrorCategory::io, config_path.string() + ": missing (every Hugging Face model directory has one)");
  }
  if (directory || is_gguf_file(path)) {
    // Memory-mapped; only the GGUF header or the safetensors headers are parsed.
    auto file = std::make_shared<const FileWeights>(path);
    shape = shape_of(file->architecture());
    if (!file->stores_quantized_weights()) shape.file = std::move(file);
  } else {
    throw Error(ErrorCategory::unsupported,
                path.string() + ": neither a model directory (config.json and *.safetensors) nor a GGUF file");
  }
  shape.source = path.string();
  return shape;
}

namespace {

ModelShape gpt_preset(int layers, int hidden, int heads, int vocab, int positions) {
  ModelShape s;
  ModelConfig& c = s.config;
  c.architecture = "gpt2";
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = c.num_kv_heads = heads;
  c.head_dim = hidden / heads;
  c.ffn_size = 4 * hidden;
  c.max_positions = positions;
  c.tied_embeddings = true;
  s.learned_positions = s.norm_bias = s.qkv_bias = s.out_bias = s.mlp_bias = true;
  return s;
}

ModelShape llama_preset(int layers, int hidden, int heads, int kv_heads, int ffn, int vocab, int positions,
                        bool tied) {
  ModelShape s;
  ModelConfig& c = s.config;
  c.architecture = "llama";
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.ffn_size = ffn;
  c.max_positions = positions;
  c.tied_embeddings = tied;
  s.gated_ffn = true;
  s.rotary_pairs = c.head_dim / 2;
  return s;
}

struct Preset {
  const char* name;
  ModelShape (*make)();
};

const Preset kPresets[] = {
    {"gpt2", [] { return gpt_preset(12, 768, 12, 50257, 1024); }},
    {"gpt2-xl", [] { return gpt_preset(48, 1600, 25, 50257, 1024); }},
    {"gpt3-1.3b", [] { return gpt_preset(24, 2048, 16, 50257, 2048); }},
    {"gpt3-175b", [] { return gpt_preset(96, 12288, 96, 50257, 2048); }},
    {"llama2-7b", [] { return llama_preset(32, 4096, 32, 32, 11008, 32000, 4096, false); }},
    {"llama2-70b", [] { return llama_preset(80, 8192, 64, 8, 28672, 32000, 4096, false); }},
    {"llama3-8b", [] { return llama_preset(32, 4096, 32, 8, 14336, 128256, 8192, false); }},
    {"tinyllama-1.1b", [] { return llama_preset(22, 2048, 32, 4, 5632, 32000, 2048, false); }},
    {"smollm2-135m", [] { return llama_preset(30, 576, 9, 3, 1536, 49152, 8192, true); }},
};

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& p : kPresets) names.emplace_back(p.name);
  return names;
}

ModelShape preset_shape(const std::string& name) {
  for (const auto& p : kPresets)
    if (name == p.name) {
      ModelShape s = p.make();
      s.source = "preset " + name;
      return s;
    }
  std::string list;
  for (const auto& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
  invalid("unknown preset '" + name + "' (known: " + list + ")");
}

double StepCost::seconds(double bandwidth, double flop_rate) const {
  if (bandwidth <= 0 || flop_rate <= 0) return 0.0;
  return std::max(bytes / bandwidth, flops / flop_rate);
}

namespace {

// The KV cache's dtype of a session sized by `o`, as the session resolves it.
DType kv_dtype(const SizingOptions& o) { return detail::resolve_kv_dtype(o.session.kv_dtype, o.device, o.dtype); }

}  // namespace

StepCost decode_step_cost(const ModelShape& shape, const SizingOptions& o, const StageSizing& stage, int batch,
                          double context) {
  const RankDims d = rank_dims(shape, o);
  const double hd = shape.config.head_dim, L = stage.num_layers;
  const double kv_per_position_layer = 2.0 * d.kv_heads * hd * dtype_size(kv_dtype(o));
  StepCost cost;
  cost.flops = L * batch * (2.0 * linear_elements(shape, d) + 4.0 * context * d.heads * hd);
  cost.bytes = static_cast<double>(stage.weights.streamed_per_step()) +
               L * batch * context * kv_per_position_layer;
  if (stage.weights.final_norm > 0) cost.flops += 2.0 * batch * d.vocab * shape.config.hidden_size;
  return cost;
}

StepCost context_step_cost(const ModelShape& shape, const SizingOptions& o, const StageSizing& stage, int batch,
                           int prompt_tokens) {
  const RankDims d = rank_dims(shape, o);
  const double hd = shape.config.head_dim, L = stage.num_layers, p = prompt_tokens;
  const double tokens = static_cast<double>(batch) * p;
  StepCost cost;
  // Causal attention: position i attends to i + 1 keys, p (p + 1) / 2 scores per head.
  cost.flops = L * (2.0 * tokens * linear_elements(shape, d) + 4.0 * batch * p * (p + 1) / 2 * d.heads * hd);
  cost.bytes = static_cast<double>(stage.weights.streamed_per_step()) +
               L * tokens * 2.0 * d.kv_heads * hd * dtype_size(kv_dtype(o));  // K and V written
  if (stage.weights.final_norm > 0) cost.flops += 2.0 * batch * d.vocab * shape.config.hidden_size;
  return cost;
}

Sizing compute(const ModelShape& shape, const SizingOptions& options) {
  // The group sizes the loader takes (quantization_spec).
  const int g = options.group_size;
  if (g != 0 && (g < 32 || g > 1024 || g % 32 != 0))
    invalid("group_size = " + std::to_string(g) + " (0 for the default or a multiple of 32 in [32, 1024])");
  if (g != 0 && options.quantization != Quantization::int8 && options.quantization != Quantization::int4)
    invalid("group_size = " + std::to_string(g) + " with quantization " + to_string(options.quantization) +
            " (a group size needs int8 or int4)");
  if (options.dtype != DType::f32 && options.dtype != DType::f16 && options.dtype != DType::bf16)
    invalid(std::string("dtype = ") + to_string(options.dtype) + " (f32, f16 or bf16)");
  if (options.device == DeviceKind::cpu && options.dtype != DType::f32)
    invalid(std::string("dtype = ") + to_string(options.dtype) + " on the cpu (the CPU backend computes in f32)");
  validate_config(shape.config, shape.source.empty() ? "model shape" : shape.source);
  if (shape.qk_norm_over_heads && options.tp > 1)  // as the loader refuses it
    throw Error(ErrorCategory::unsupported, shape.config.architecture +
                                                ": q / k norms over the whole projection are not supported under "
                                                "tensor parallelism (tp > 1)");

  Sizing s;
  s.shape = shape;
  s.options = options;
  const std::vector<StageSizing> weights = weights_per_stage(shape, options);
  s.stages = stages_for(shape, options, weights, &s.session);
  largest_total(s.stages, &s.largest_stage);

  SizingOptions count = options;  // whole model, one element per byte: the parameter count
  count.tp = count.pp = 1;
  count.quantization = Quantization::none;
  bool tied = false;
  // One byte per parameter at i8; the rotary table (f32, not a parameter) is left out.
  const WeightBytes all = stage_weights(shape, count, DType::i8, true, true, 0, shape.config.num_layers, &tied);
  s.parameters = all.total() - all.rotary_table;

  const StageSizing& big = s.largest();
  s.kv_bytes_per_token = big.num_layers * 2 * static_cast<size_t>(rank_dims(shape, options).kv_heads) *
                         shape.config.head_dim * dtype_size(*s.session.kv_dtype);
  if (options.memory_bytes > 0) {
    s.fits = big.total() <= options.memory_bytes;
    s.max_sequences_that_fit = max_sequences_fitting(shape, options, weights, s.session);
  }
  if (options.bandwidth > 0 && options.flop_rate > 0) {
    const int B = s.session.max_sequences;
    const int prompt = std::max(1, s.session.max_step_tokens / B);
    for (const auto& st : s.stages) {
      s.decode_step_seconds +=
          decode_step_cost(shape, options, st, B, s.session.max_sequence_tokens).seconds(options.bandwidth, options.flop_rate);
      s.context_step_seconds +=
          context_step_cost(shape, options, st, B, prompt).seconds(options.bandwidth, options.flop_rate);
    }
  }
  return s;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char text[32];
  std::snprintf(text, sizeof text, u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return text;
}

namespace {

// Splits "80GiB" into 80 and "GiB"; throws naming `what`.
double leading_number(const std::string& text, const std::string& what, std::string* rest) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    invalid(what + " = '" + text + "' is not a number with an optional unit");
  }
  std::string r = text.substr(used);
  r.erase(std::remove_if(r.begin(), r.end(), [](unsigned char ch) { return std::isspace(ch); }), r.end());
  if (!(value > 0) || !std::isfinite(value)) invalid(what + " = '" + text + "' (must be positive)");
  *rest = r;
  return value;
}

double si_scale(char prefix) {
  switch (std::toupper(static_cast<unsigned char>(prefix))) {
    case 'K': return 1e3;
    case 'M': return 1e6;
    case 'G': return 1e9;
    case 'T': return 1e12;
    case 'P': return 1e15;
  }
  return 0.0;
}

}  // namespace

double parse_bytes(const std::string& text, const std::string& what) {
  std::string unit;
  const double value = leading_number(text, what, &unit);
  if (unit.empty() || unit == "B") return value;
  double scale = si_scale(unit[0]);
  if (scale == 0.0) invalid(what + " = '" + text + "': unknown unit '" + unit + "' (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  std::string tail = unit.substr(1);
  if (tail == "i" || tail == "iB") scale = std::pow(1024.0, std::round(std::log10(scale) / 3));
  else if (!tail.empty() && tail != "B") invalid(what + " = '" + text + "': unknown unit '" + unit + "'");
  return value * scale;
}

double parse_rate(const std::string& text, const std::string& what) {
  std::string unit;
  const double value = leading_number(text, what, &unit);
  for (const char* suffix : {"B/s", "FLOP/s", "FLOPS", "FLOPs", "/s"})
    if (unit.size() >= std::string(suffix).size() && unit.ends_with(suffix)) {
      unit.resize(unit.size() - std::string(suffix).size());
      break;
    }
  if (unit.empty()) return value;
  const double scale = unit.size() == 1 ? si_scale(unit[0]) : 0.0;
  if (scale == 0.0) invalid(what + " = '" + text + "': unknown prefix '" + unit + "' (k, M, G, T, P)");
  return value * scale;
}

}  // namespace kestrel::sizing
