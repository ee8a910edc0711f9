#include "models/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/fp8.h"
#include "core/half.h"
#include "kestrel/error.h"
#include "kquant_blocks.h"
#include "loaders/gguf_quant.h"
#include "models/expert_source.h"
#include "models/weights.h"

namespace kestrel {

const char* to_string(Quantization quantization) noexcept {
  switch (quantization) {
    case Quantization::automatic: return "auto";
    case Quantization::none: return "none";
    case Quantization::int8: return "int8";
    case Quantization::int4: return "int4";
    case Quantization::w8a8: return "w8a8";
    case Quantization::fp8: return "fp8";
  }
  return "?";
}

Quantization parse_quantization(std::string_view text, std::string_view what) {
  if (text == "auto") return Quantization::automatic;
  if (text == "none") return Quantization::none;
  if (text == "int8") return Quantization::int8;
  if (text == "int4") return Quantization::int4;
  if (text == "w8a8") return Quantization::w8a8;
  if (text == "fp8") return Quantization::fp8;
  throw Error(ErrorCategory::invalid_argument,
              std::string(what) + " = '" + std::string(text) + "' (expected auto, none, int8, int4, w8a8 or fp8)");
}

int QuantizationSpec::group_for(int64_t cols) const {
  if (group_size > 0) return group_size;
  return mode == Quantization::int8 || mode == Quantization::w8a8 || mode == Quantization::fp8 ? static_cast<int>(cols)
                                                                                                : 32;
}

QuantFormat QuantizationSpec::requantized_format() const {
  return mode == Quantization::int4 ? QuantFormat::int4 : mode == Quantization::fp8 ? QuantFormat::fp8_e4m3 : QuantFormat::int8;
}

QuantizationSpec loader_spec(const ModelOptions& options, const Architecture& arch) {
  QuantizationSpec spec = quantization_spec(options);
  if (spec.mode == Quantization::automatic) spec.mode = arch.checkpoint_quantization;
  return spec;
}

QuantizationSpec quantization_spec(const ModelOptions& options) {
  const int g = options.quant_group_size;
  if (options.quantization != Quantization::automatic && options.quantization != Quantization::none &&
      options.quantization != Quantization::int8 && options.quantization != Quantization::int4 &&
      options.quantization != Quantization::w8a8 && options.quantization != Quantization::fp8)
    throw Error(ErrorCategory::invalid_argument,
                "ModelOptions.quantization = " + std::to_string(static_cast<int>(options.quantization)) +
                    " (not a Quantization)");
  if (g != 0 && (g < 32 || g > 1024 || g % 32 != 0))
    throw Error(ErrorCategory::invalid_argument,
                "ModelOptions.quant_group_size = " + std::to_string(g) +
                    " (must be 0 for the default or a multiple of 32 in [32, 1024])");
  if (g != 0 && (!QuantizationSpec{options.quantization, 0}.requantizes() || options.quantization == Quantization::w8a8 ||
                 options.quantization == Quantization::fp8))
    throw Error(ErrorCategory::invalid_argument,
                "ModelOptions.quant_group_size = " + std::to_string(g) + " but ModelOptions.quantization is " +
                    to_string(options.quantization) + " (a group size needs int8 or int4)");
  return {options.quantization, g};
}

QuantizedWeight HostQuantizedWeight::view() {
  QuantizedWeight w;
  w.format = format;
  w.rows = rows;
  w.cols = cols;
  w.group_size = group_size;
  const int64_t G = groups();
  if (kquant::is_block_format(format)) {
    w.data = TensorView(data.data(), DType::i8, {rows, G * kquant::block_bytes(format)});
  } else if (format == QuantFormat::int8 || format == QuantFormat::fp8_e4m3) {
    w.data = TensorView(data.data(), DType::i8, {rows, cols});
    w.scales = TensorView(scales.data(), DType::f32, {rows, G});
  } else {
    w.data = TensorView(data.data(), DType::i8, {rows, G * group_size / 2});
    w.scales = TensorView(scales16.data(), DType::f16, {rows, G});
    w.mins = TensorView(mins16.data(), DType::f16, {rows, G});
  }
  return w;
}

size_t quantized_weight_bytes(QuantFormat format, int64_t rows, int64_t cols, int group_size) {
  if (format == QuantFormat::mixed || rows < 0 || cols <= 0 || group_size <= 0)
    throw Error(ErrorCategory::internal, std::string("quantized_weight_bytes: no layout for ") + to_string(format) + " [" +
                                             std::to_string(rows) + ", " + std::to_string(cols) + "] in groups of " +
                                             std::to_string(group_size));
  const int64_t G = (cols + group_size - 1) / group_size;
  int64_t bytes = 0;  // the tensors of view() below
  if (kquant::is_block_format(format)) bytes = rows * G * kquant::block_bytes(format);
  else if (format == QuantFormat::int8 || format == QuantFormat::fp8_e4m3) bytes = rows * cols + rows * G * 4;
  else bytes = rows * G * group_size / 2 + 2 * rows * G * 2;
  return static_cast<size_t>(bytes);
}

namespace {

void check_group(int64_t rows, int64_t cols, int group_size, bool int4, const std::string& what) {
  if (rows < 0 || cols <= 0 || group_size <= 0 || (int4 && group_size % 32 != 0))
    throw Error(ErrorCategory::internal, what + ": cannot quantize [" + std::to_string(rows) + ", " +
                                             std::to_string(cols) + "] in groups of " +
                                             std::to_string(group_size));
}

[[noreturn]] void not_finite(const std::string& what, int64_t row) {
  throw Error(ErrorCategory::unsupported,
              what + ": row " + std::to_string(row) + " holds a value that is not finite; cannot quantize");
}

}  // namespace

HostQuantizedWeight quantize_int8(const float* w, int64_t rows, int64_t cols, int group_size,
                                  const std::string& what) {
  check_group(rows, cols, group_size, false, what);
  HostQuantizedWeight q;
  q.format = QuantFormat::int8;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group_size;
  const int64_t G = q.groups();
  q.data.resize(static_cast<size_t>(rows * cols));
  q.scales.resize(static_cast<size_t>(rows * G));
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t g = 0; g < G; ++g) {
      const int64_t k0 = g * group_size, k1 = std::min(cols, k0 + group_size);
      float amax = 0.0f;
      for (int64_t k = k0; k < k1; ++k) {
        const float v = w[m * cols + k];
        if (!std::isfinite(v)) not_finite(what, m);
        amax = std::max(amax, std::abs(v));
      }
      const float scale = amax / 127.0f;
      q.scales[m * G + g] = scale;
      for (int64_t k = k0; k < k1; ++k) {
        const float r = scale > 0.0f ? std::nearbyint(w[m * cols + k] / scale) : 0.0f;
        q.data[m * cols + k] = static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
      }
    }
  }
  return q;
}

HostQuantizedWeight quantize_fp8(const float* w, int64_t rows, int64_t cols, const std::string& what) {
  check_group(rows, cols, static_cast<int>(cols), false, what);
  HostQuantizedWeight q;
  q.format = QuantFormat::fp8_e4m3;
  q.rows = rows;
  q.cols = cols;
  q.group_size = static_cast<int>(cols);
  q.data.resize(static_cast<size_t>(rows * cols));
  q.scales.resize(static_cast<size_t>(rows));
  for (int64_t m = 0; m < rows; ++m) {
    const float* row = w + m * cols;
    float amax = 0.0f;
    for (int64_t k = 0; k < cols; ++k) {
      if (!std::isfinite(row[k])) not_finite(what, m);
      amax = std::max(amax, std::abs(row[k]));
    }
    const float scale = amax / kFp8E4m3Max, inv = amax > 0.0f ? kFp8E4m3Max / amax : 0.0f;
    q.scales[static_cast<size_t>(m)] = scale;
    for (int64_t k = 0; k < cols; ++k) q.data[m * cols + k] = static_cast<int8_t>(f32_to_fp8_e4m3(row[k] * inv));
  }
  return q;
}

HostQuantizedWeight quantize_int4(const float* w, int64_t rows, int64_t cols, int group_size,
                                  const std::string& what) {
  check_group(rows, cols, group_size, true, what);
  HostQuantizedWeight q;
  q.format = QuantFormat::int4;
  q.rows = rows;
  q.cols = cols;
  q.group_size = group_size;
  const int64_t G = q.groups(), row_bytes = G * group_size / 2;
  q.data.assign(static_cast<size_t>(rows * row_bytes), 0);  // a short last group pads with 0
  q.scales16.resize(static_cast<size_t>(rows * G));
  q.mins16.resize(static_cast<size_t>(rows * G));
  for (int64_t m = 0; m < rows; ++m) {
    for (int64_t g = 0; g < G; ++g) {
      const int64_t k0 = g * group_size, k1 = std::min(cols, k0 + group_size);
      float lo = w[m * cols + k0], hi = lo;
      for (int64_t k = k0; k < k1; ++k) {
        const float v = w[m * cols + k];
        if (!std::isfinite(v)) not_finite(what, m);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      // Round scale and min to f16 first and quantize against the rounded values, so the
      // stored q is the best for what the kernels will read.
      const uint16_t scale16 = f32_to_f16((hi - lo) / 15.0f), min16 = f32_to_f16(lo);
      const float scale = f16_to_f32(scale16), min = f16_to_f32(min16);
      if (!std::isfinite(scale) || !std::isfinite(min))
        throw Error(ErrorCategory::unsupported,
                    what + ": row " + std::to_string(m) + " has values too large for int4's f16 scales");
      q.scales16[m * G + g] = scale16;
      q.mins16[m * G + g] = min16;
      uint8_t* bytes = reinterpret_cast<uint8_t*>(q.data.data()) + m * row_bytes + g * (group_size / 2);
      for (int64_t k = k0; k < k1; ++k) {
        const float r = scale > 0.0f ? std::nearbyint((w[m * cols + k] - min) / scale) : 0.0f;
        const auto v = static_cast<uint8_t>(std::clamp(r, 0.0f, 15.0f));
        const int64_t c = k - k0;
        uint8_t& b = bytes[(c / 32) * 16 + c % 16];
        b |= (c % 32) < 16 ? v : static_cast<uint8_t>(v << 4);
      }
    }
  }
  return q;
}

std::optional<KeptLayout> kept_layout(GgmlType type, Quantization mode) {
  switch (type) {
    case GgmlType::q8_0: return KeptLayout{QuantFormat::int8, 32};
    case GgmlType::q4_1: return KeptLayout{QuantFormat::int4, 32};
    case GgmlType::q4_0:
      if (mode == Quantization::int4) return KeptLayout{QuantFormat::int4, 32};
      break;
    default: break;
  }
  // The other block formats keep their blocks as they are.
  const QuantFormat format = type == GgmlType::q4_0     ? QuantFormat::q4_0
                             : type == GgmlType::q4_k   ? QuantFormat::q4_k
                             : type == GgmlType::q5_k   ? QuantFormat::q5_k
                             : type == GgmlType::q6_k   ? QuantFormat::q6_k
                             : type == GgmlType::q5_0   ? QuantFormat::q5_0
                             : type == GgmlType::q5_1   ? QuantFormat::q5_1
                             : type == GgmlType::iq4_nl ? QuantFormat::iq4_nl
                             : type == GgmlType::iq4_xs ? QuantFormat::iq4_xs
                             : type == GgmlType::q2_k   ? QuantFormat::q2_k
                             : type == GgmlType::q3_k   ? QuantFormat::q3_k
                             : type == GgmlType::mxfp4  ? QuantFormat::mxfp4
                                                        : QuantFormat::int8;
  if (!kquant::is_block_format(format)) return std::nullopt;
  return KeptLayout{format, kquant::block_columns(format)};
}

void append_ggml_rows(HostQuantizedWeight& out, GgmlType type, const void* blocks, int64_t rows, int64_t cols,
                      Quantization mode) {
  const std::optional<KeptLayout> layout = kept_layout(type, mode);
  if (!layout)
    throw Error(ErrorCategory::internal, std::string("append_ggml_rows: ") + to_string(type) +
                                             " is not a block type kept quantized");
  const int64_t block = ggml_block_size(type);
  if (cols % block != 0 ||
      (out.rows > 0 && (out.format != layout->format || out.cols != cols || out.group_size != layout->group_size)))
    throw Error(ErrorCategory::internal, "append_ggml_rows: mismatched rows");
  out.format = layout->format;
  out.cols = cols;
  out.group_size = layout->group_size;
  const auto* src = static_cast<const uint8_t*>(blocks);
  const size_t block_bytes = ggml_block_bytes(type);
  if (kquant::is_block_format(layout->format)) {  // the blocks as they are
    const auto* bytes = reinterpret_cast<const int8_t*>(src);
    out.data.insert(out.data.end(), bytes, bytes + rows * (cols / block) * static_cast<int64_t>(block_bytes));
    out.rows += rows;
    return;
  }
  const int64_t G = cols / 32;
  for (int64_t i = 0; i < rows * G; ++i, src += block_bytes) {
    uint16_t d;
    std::memcpy(&d, src, 2);
    if (type == GgmlType::q8_0) {
      out.scales.push_back(f16_to_f32(d));
      out.data.insert(out.data.end(), reinterpret_cast<const int8_t*>(src + 2),
                      reinterpret_cast<const int8_t*>(src + 34));
    } else if (type == GgmlType::q4_0) {  // as int4 (Quantization::int4)
      // d * (q - 8) = d * q + (-8 d); -8 d is exact in f16 unless it overflows.
      const float min = -8.0f * f16_to_f32(d);
      if (!std::isfinite(f16_to_f32(f32_to_f16(min))))
        throw Error(ErrorCategory::unsupported, "Q4_0 block scale too large to keep as int4");
      out.scales16.push_back(d);
      out.mins16.push_back(f32_to_f16(min));
      out.data.insert(out.data.end(), reinterpret_cast<const int8_t*>(src + 2),
                      reinterpret_cast<const int8_t*>(src + 18));
    } else {
      uint16_t m;
      std::memcpy(&m, src + 2, 2);
      out.scales16.push_back(d);
      out.mins16.push_back(m);
      out.data.insert(out.data.end(), reinterpret_cast<const int8_t*>(src + 4),
                      reinterpret_cast<const int8_t*>(src + 20));
    }
  }
  out.rows += rows;
}

namespace {

QuantizedWeight store_quantized(WeightStore& store, HostQuantizedWeight& q, const std::string& what) {
  QuantizedWeight host = q.view();
  QuantizedWeight w = host;
  auto upload = [&](const TensorView& t, const std::string& part) {
    return store.upload(t.data, t.dtype, {t.dims[0], t.dims[1]}, what + " " + part);
  };
  w.data = upload(host.data, "(quantized)");
  if (!host.scales.empty()) w.scales = upload(host.scales, "(scales)");
  if (!host.mins.empty()) w.mins = upload(host.mins, "(mins)");
  return w;
}

}  // namespace

QuantizedWeight quantize_weight(WeightStore& store, Backend& backend, const TensorView& dense,
                                const QuantizationSpec& spec, const std::string& what) {
  const int64_t M = dense.dim(0), K = dense.dim(1);
  // Bring the materialized weight back to the host as f32 (a no-op copy on the CPU).
  std::vector<uint8_t> raw(dense.bytes());
  TensorView host(raw.data(), dense.dtype, {M, K});
  backend.copy(host, dense);
  std::vector<float> f32(static_cast<size_t>(M * K));
  convert_floats(raw.data(), dense.dtype, f32.data(), DType::f32, f32.size());
  raw = {};
  const int group = spec.group_for(K);
  const QuantFormat format = spec.requantized_format();
  HostQuantizedWeight q = format == QuantFormat::int4       ? quantize_int4(f32.data(), M, K, group, what)
                          : format == QuantFormat::fp8_e4m3 ? quantize_fp8(f32.data(), M, K, what)
                                                            : quantize_int8(f32.data(), M, K, group, what);
  QuantizedWeight w = store_quantized(store, q, what);
  w.int8_activations = spec.mode == Quantization::w8a8;
  return w;
}

namespace {

// The f16 scales (and mins) of each kept block must be finite, and an MXFP4 block's E8M0
// scale not NaN (0xff): a file whose blocks hold an infinity or NaN is refused by name
// rather than turned into NaN logits.
void check_block_scales(GgmlType type, const uint8_t* blocks, int64_t count, const std::string& what) {
  if (type == GgmlType::mxfp4) {
    for (int64_t b = 0; b < count; ++b)
      if (blocks[b * ggml_block_bytes(type)] == kquant::kE8m0Nan)
        throw Error(ErrorCategory::invalid_argument,
                    what + ": MXFP4 block " + std::to_string(b) + " has the E8M0 scale 0xff (NaN; corrupt file?)");
    return;
  }
  std::vector<int> offsets = {0, 2};  // Q4_1: d, m
  if (type == GgmlType::q8_0 || type == GgmlType::q4_0) offsets = {0};
  if (const std::optional<KeptLayout> layout = kept_layout(type); layout && kquant::is_block_format(layout->format)) {
    int first = 0, second = 0;
    kquant::scale_offsets(layout->format, first, second);
    offsets = second < 0 ? std::vector<int>{first} : std::vector<int>{first, second};
  }
  const size_t bytes = ggml_block_bytes(type);
  for (int64_t b = 0; b < count; ++b)
    for (int offset : offsets) {
      uint16_t h;
      std::memcpy(&h, blocks + b * bytes + offset, 2);
      if (!std::isfinite(f16_to_f32(h)))
        throw Error(ErrorCategory::invalid_argument, what + ": " + to_string(type) + " block " + std::to_string(b) +
                                                         " has a scale that is not finite (corrupt file?)");
    }
}

}  // namespace

std::optional<KeptBlocksPlan> plan_kept_blocks(const WeightSource& source, const WeightRecipe& recipe, int64_t cols,
                                               const QuantizationSpec& spec, const WeightSlice& slice) {
  if (!spec.keeps_blocks() || spec.group_size != 0 || recipe.transposed || recipe.sources.empty() ||
      recipe.interleaved_head_rows != 0 || slice.pad_rows < 0)
    return std::nullopt;
  // Columns [col_begin, col_end) of every row: all, or a row-parallel rank's input columns
  // when they start and end on block boundaries (checked per source below).
  KeptBlocksPlan plan;
  plan.col_begin = slice.col_count >= 0 ? slice.col_begin : 0;
  plan.col_end = slice.col_count >= 0 ? slice.col_begin + slice.col_count : cols;
  const int64_t col_begin = plan.col_begin, col_end = plan.col_end;
  if (col_begin < 0 || col_end > cols || col_begin >= col_end) return std::nullopt;
  for (const auto& name : recipe.sources) {
    const SourceTensor* t = source.find(name);
    // Anything unusual (missing, mixed, unexpected shape) goes the materialize path, which
    // reports it properly.
    if (!t || !t->block_type || t->shape.size() != 2 || t->shape[1] != cols) return std::nullopt;
    const GgmlType b = *t->block_type;
    // The formats the kernels run (kept_layout): every block type. int8 mode keeps only
    // Q8_0, Q6_K and Q5_0 (whose integers int8 mode kept before it had Q5_0 kernels) and
    // requantizes the others to int8 per channel.
    const std::optional<KeptLayout> own = kept_layout(b, spec.mode);
    const bool keep = own && (spec.mode != Quantization::int8 || own->format == QuantFormat::int8 ||
                              own->format == QuantFormat::q6_k || own->format == QuantFormat::q5_0);
    const int64_t block = ggml_block_size(b);
    if (!keep || cols % block != 0 || col_begin % block != 0 || col_end % block != 0) return std::nullopt;
    plan.sources.push_back(t);
  }
  // The rows this rank holds (all, or a tensor-parallel slice: its heads' rows of Q, K and
  // V, its FFN rows of gate and up), as pieces of the sources, which the canonical weight
  // stacks in order. Whole rows of blocks are sliced as they are stored.
  int64_t total = 0;
  for (const SourceTensor* t : plan.sources) total += t->shape[0];
  std::vector<std::pair<int64_t, int64_t>> ranges = slice.row_ranges;
  if (ranges.empty()) ranges = {{0, total}};
  for (const auto& [begin, count] : ranges) {
    if (begin < 0 || count < 0 || begin + count > total) return std::nullopt;  // materialize reports it
    int64_t first = 0;
    for (const SourceTensor* t : plan.sources) {
      const int64_t lo = std::max(begin, first), hi = std::min(begin + count, first + t->shape[0]);
      if (lo < hi) plan.pieces.push_back({t, lo - first, hi - lo, *kept_layout(*t->block_type, spec.mode)});
      first += t->shape[0];
    }
  }
  if (plan.pieces.empty()) return std::nullopt;
  plan.pad_rows = slice.pad_rows;
  return plan;
}

FfnAlignment ffn_split_alignment(const WeightSource& source, const Architecture& arch, const QuantizationSpec& spec) {
  const ModelConfig& c = arch.config;
  int64_t dense = 1, expert = 1, shared = 1;
  // The least common multiple of the column blocks of the down weights kept in blocks (each
  // source released at once: an Mxfp4Source frees the blocks it repacked).
  auto fold = [&](int64_t& align, const WeightSource& from, const WeightRecipe& recipe, int64_t cols) {
    if (const std::optional<KeptBlocksPlan> plan = plan_kept_blocks(from, recipe, cols, spec))
      for (const SourceTensor* t : plan->sources) {
        align = std::lcm(align, ggml_block_size(*t->block_type));
        from.release(*t);
      }
  };
  const ExpertSource experts(source);
  for (int l = 0; l < c.num_layers; ++l) {
    if (!arch.kinds.is_sparse(l)) {
      fold(dense, source, arch.recipe(WeightSlot::down_weight, l), c.ffn_size);
      continue;
    }
    if (arch.expert_recipe)
      for (int e = 0; e < c.num_experts; ++e)
        fold(expert, experts, arch.expert_recipe(WeightSlot::expert_down_weight, l, e), c.expert_ffn_size);
    if (c.shared_expert_ffn_size > 0)
      fold(shared, experts, arch.recipe(WeightSlot::shared_down_weight, l), c.shared_expert_ffn_size);
  }
  return {static_cast<int>(dense), static_cast<int>(expert), static_cast<int>(shared)};
}

std::optional<KeptBlocksPlan> plan_kept_table(const WeightSource& source, const WeightRecipe& recipe, int64_t rows,
                                              int64_t cols, const QuantizationSpec& spec) {
  std::optional<KeptBlocksPlan> plan = plan_kept_blocks(source, recipe, cols, spec);
  if (!plan) return std::nullopt;
  int64_t held = 0;
  for (const KeptBlocksPlan::Piece& piece : plan->pieces) held += piece.count;
  if (held != rows) return std::nullopt;
  return plan;
}

bool tied_head_reads_table(const Architecture& arch, const Shard& shard) {
  return shard.first_stage() && shard.last_stage() &&
         arch.recipe(WeightSlot::lm_head, -1).sources == arch.recipe(WeightSlot::token_embedding, -1).sources;
}

bool tied_head_doubles_as_embedding(const Architecture& arch, const Shard& shard) {
  return tied_head_reads_table(arch, shard) && (shard.tp == 1 || shard.vocab % kVocabRowAlignment == 0);
}

WeightSlice tied_table_slice(const Shard& shard, int64_t vocab_size) {
  const int64_t rows = int64_t{shard.tp} * shard.vocab;
  if (shard.tp == 1 || rows == vocab_size) return {};
  return {{{0, vocab_size}}, rows - vocab_size};
}

std::optional<QuantizedWeight> keep_ggml_blocks(WeightStore& store, const WeightSource& source,
                                                const WeightRecipe& recipe, int64_t cols,
                                                const QuantizationSpec& spec, const std::string& what,
                                                const WeightSlice& slice) {
  const std::optional<KeptBlocksPlan> plan = plan_kept_blocks(source, recipe, cols, spec, slice);
  if (!plan) return std::nullopt;
  const int64_t col_begin = plan->col_begin, col_end = plan->col_end;
  // Consecutive pieces of one layout become one weight; a fused weight whose parts differ
  // (Q4_K Q and K rows beside Q6_K V rows) is a mixed weight of such runs, each as stored.
  std::vector<HostQuantizedWeight> runs;
  std::vector<uint8_t> gathered;  // a piece's column slice, row after row
  for (const KeptBlocksPlan::Piece& piece : plan->pieces) {
    const GgmlType type = *piece.source->block_type;
    const int64_t block = ggml_block_size(type);
    const size_t bytes = ggml_block_bytes(type);
    const size_t row_bytes = static_cast<size_t>(cols / block) * bytes;
    const size_t slice_offset = static_cast<size_t>(col_begin / block) * bytes;
    const size_t slice_bytes = static_cast<size_t>((col_end - col_begin) / block) * bytes;
    const auto* rows = static_cast<const uint8_t*>(piece.source->data) + piece.row * row_bytes;
    if (slice_bytes != row_bytes) {
      gathered.resize(static_cast<size_t>(piece.count) * slice_bytes);
      for (int64_t r = 0; r < piece.count; ++r)
        std::memcpy(gathered.data() + r * slice_bytes, rows + r * row_bytes + slice_offset, slice_bytes);
      rows = gathered.data();
    }
    check_block_scales(type, rows, piece.count * ((col_end - col_begin) / block),
                       what + " (" + piece.source->name + (piece.row > 0 ? ", from row " + std::to_string(piece.row) : "") +
                           (slice_bytes != row_bytes ? ", columns from " + std::to_string(col_begin) : "") + ")");
    const KeptLayout layout = piece.layout;
    if (runs.empty() || !(KeptLayout{runs.back().format, runs.back().group_size} == layout)) runs.emplace_back();
    append_ggml_rows(runs.back(), type, rows, piece.count, col_end - col_begin, spec.mode);
  }
  if (plan->pad_rows > 0) {  // zero blocks, zero weights in every layout, after the last piece
    const GgmlType type = *plan->pieces.back().source->block_type;
    const size_t slice_bytes = static_cast<size_t>((col_end - col_begin) / ggml_block_size(type)) * ggml_block_bytes(type);
    const std::vector<uint8_t> zeros(static_cast<size_t>(plan->pad_rows) * slice_bytes, 0);
    append_ggml_rows(runs.back(), type, zeros.data(), plan->pad_rows, col_end - col_begin, spec.mode);
  }
  for (const SourceTensor* t : plan->sources) source.release(*t);
  if (runs.size() == 1) return store_quantized(store, runs.front(), what);
  QuantizedWeight w;
  w.format = QuantFormat::mixed;
  w.cols = col_end - col_begin;
  for (size_t i = 0; i < runs.size(); ++i) {
    w.parts.push_back(store_quantized(store, runs[i], what + " part " + std::to_string(i)));
    w.rows += runs[i].rows;
  }
  return w;
}

}  // namespace kestrel
