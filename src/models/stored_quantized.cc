#include "models/stored_quantized.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "kestrel/error.h"
#include "models/config_json.h"
#include "models/weights.h"

namespace kestrel {

std::string stored_scale_name(const std::string& name) { return name + "_scale"; }

Quantization checkpoint_quantization(const nlohmann::json& block, const std::string& what) {
  if (!block.is_object()) throw Error(ErrorCategory::format, what + " must be an object");
  auto refuse_key = [&](const char* key, const std::string& value, const std::string& expected) {
    throw Error(ErrorCategory::unsupported, what + "." + key + " = '" + value + "' (" + expected + ")");
  };
  const std::string format = json_string(block, "format", what).value_or("");
  if (format != "w8a8" && format != "fp8") refuse_key("format", format, "this Kestrel reads w8a8 or fp8");
  const bool fp8 = format == "fp8";
  if (auto dtype = json_string(block, "weight_dtype", what)) {
    const char* stored = fp8 ? "float8_e4m3fn" : "int8";
    if (*dtype != "float32" && *dtype != stored)
      refuse_key("weight_dtype", *dtype, std::string("with format ") + format + ": float32 or " + stored);
  }
  if (auto scale = json_string(block, "weight_scale", what); scale && *scale != "channel" && *scale != "tensor")
    refuse_key("weight_scale", *scale, "channel or tensor");
  if (auto scheme = json_string(block, "activation_scheme", what); scheme && *scheme != "dynamic")
    refuse_key("activation_scheme", *scheme, "dynamic: one scale per token at run time; static input scales are not read");
  return fp8 ? Quantization::fp8 : Quantization::w8a8;
}

namespace {

[[noreturn]] void refuse(ErrorCategory category, const SourceTensor& t, const std::string& what) {
  throw Error(category, t.file + ": tensor '" + t.name + "' " + what);
}

const char* stored_dtype(const SourceTensor& t) { return t.fp8_e4m3 ? "F8_E4M3" : "I8"; }

// The scales of stored tensor `t` with `out` output channels and `in` input columns, as
// [out, groups]: one per channel (groups 1), one for the whole tensor repeated, or one per
// group of in / groups columns ([out, groups], groups > 1: a GGUF's Q8_0 LM head kept
// exactly); every scale finite and >= 0.
std::vector<float> read_scales(const WeightSource& source, const SourceTensor& t, int64_t out, int64_t in,
                               int64_t& groups) {
  const std::string name = stored_scale_name(t.name);
  const SourceTensor* s = source.find(name);
  if (!s)
    refuse(ErrorCategory::format, t, std::string("is stored as ") + stored_dtype(t) + " but its scale tensor '" + name +
                                         "' is missing");
  if (s->dtype != DType::f32 || s->fp8_e4m3 || s->block_type)
    refuse(ErrorCategory::format, *s,
           std::string("has dtype ") + (s->fp8_e4m3 ? "F8_E4M3" : to_string(s->dtype)) + "; the scales of '" + t.name +
               "' must be F32");
  const int64_t n = s->numel();
  const bool per_tensor = n == 1 && (s->shape.empty() || s->shape == std::vector<int64_t>{1});
  const bool per_channel = s->shape == std::vector<int64_t>{out} || s->shape == std::vector<int64_t>{out, 1};
  const bool per_group = s->shape.size() == 2 && s->shape[0] == out && s->shape[1] > 1 && in % s->shape[1] == 0 &&
                         (in / s->shape[1]) % 32 == 0;
  if (!per_tensor && !per_channel && !per_group)
    refuse(ErrorCategory::format, *s,
           "has shape " + s->shape_string() + " but '" + t.name + "' has " + std::to_string(out) +
               " output channels of " + std::to_string(in) + " columns (expected [" + std::to_string(out) +
               ", 1] or [" + std::to_string(out) + "] per channel, [1] per tensor, [" + std::to_string(out) +
               ", G] per group of a multiple of 32 columns)");
  groups = per_group ? s->shape[1] : 1;
  std::vector<float> values(static_cast<size_t>(n));
  std::memcpy(values.data(), s->data, values.size() * sizeof(float));
  for (size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]) || values[i] < 0.0f)
      refuse(ErrorCategory::format, *s,
             "value " + std::to_string(i) + " = " + std::to_string(values[i]) +
                 (std::isfinite(values[i]) ? " is negative" : " is not finite") + " (a scale must be finite and >= 0)");
  if (per_tensor && !per_channel) values.assign(static_cast<size_t>(out), values[0]);
  source.release(*s);
  return values;
}

// Refuses the values no quantizer writes and the kernels cannot take: int8 -128 (the
// symmetric range is [-127, 127]; the CPU's sign trick overflows on it) and E4M3 NaN.
void check_values(const SourceTensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.data);
  for (size_t i = 0; i < t.bytes; ++i) {
    const bool bad = t.fp8_e4m3 ? (p[i] & 0x7f) == 0x7f : p[i] == 0x80;
    if (bad)
      refuse(ErrorCategory::format, t,
             "value " + std::to_string(i) + (t.fp8_e4m3 ? " is an E4M3 NaN" : " is -128 (int8 weights lie in [-127, 127])"));
  }
}

}  // namespace

std::optional<QuantizedWeight> load_stored_quantized(WeightStore& store, const WeightSource& source,
                                                     const WeightRecipe& recipe, const std::vector<int64_t>& shape,
                                                     const WeightSlice& slice, const QuantizationSpec& spec,
                                                     const std::string& what) {
  std::vector<const SourceTensor*> parts;
  size_t stored = 0;
  for (const auto& name : recipe.sources) {
    const SourceTensor* t = source.find(name);
    if (!t) return std::nullopt;  // the float path names the missing tensor
    const bool quantized = !t->block_type && t->dtype == DType::i8 && !t->u8;
    stored += quantized ? 1 : 0;
    parts.push_back(t);
  }
  if (stored == 0 || shape.size() != 2) return std::nullopt;
  const SourceTensor& first = *parts.front();
  for (const SourceTensor* t : parts) {
    if (t->block_type || t->dtype != DType::i8)
      refuse(ErrorCategory::format, *t,
             std::string("has dtype ") + (t->block_type ? "ggml blocks" : to_string(t->dtype)) + " but the other parts of " + what + " are stored quantized (" + stored_dtype(first) + ")");
    if (t->fp8_e4m3 != first.fp8_e4m3)
      refuse(ErrorCategory::format, *t,
             std::string("is ") + stored_dtype(*t) + " but '" + first.name + "' (another part of " + what + ") is " +
                 stored_dtype(first));
  }
  const bool fp8 = first.fp8_e4m3;
  const bool mode_ok = fp8 ? spec.mode == Quantization::fp8
                           : spec.mode == Quantization::w8a8 || spec.mode == Quantization::int8;
  if (!mode_ok)
    throw Error(ErrorCategory::invalid_argument,
                first.file + ": tensor '" + first.name + "' is stored quantized (" + stored_dtype(first) +
                    ") but ModelOptions.quantization = " + to_string(spec.mode) + " (load it with auto, or " +
                    (fp8 ? "fp8" : "w8a8 or int8") + ")");
  if (spec.group_size != 0)
    throw Error(ErrorCategory::invalid_argument, "ModelOptions.quant_group_size = " + std::to_string(spec.group_size) +
                                                     " but " + what + " is stored quantized per channel");
  if (!(slice == WeightSlice{}))
    throw Error(ErrorCategory::unsupported,
                what + ": a checkpoint of stored quantized weights loads on a single rank (no tensor parallelism yet)");
  if (recipe.offset != 0.0f)
    throw Error(ErrorCategory::internal, what + ": a value offset cannot apply to stored quantized weights");

  const int64_t rows = shape[0], cols = shape[1];
  HostQuantizedWeight q;
  q.format = fp8 ? QuantFormat::fp8_e4m3 : QuantFormat::int8;
  q.rows = rows;
  q.cols = cols;
  q.data.resize(static_cast<size_t>(rows * cols));
  int64_t row = 0, groups = 0;
  for (const SourceTensor* t : parts) {
    const bool bad_rank = t->shape.size() != 2;
    const int64_t in = bad_rank ? -1 : recipe.transposed ? t->shape[0] : t->shape[1];
    const int64_t out = bad_rank ? -1 : recipe.transposed ? t->shape[1] : t->shape[0];
    if (bad_rank || in != cols || row + out > rows)
      refuse(ErrorCategory::format, *t,
             "has shape " + t->shape_string() + " but " + what + " needs " + (parts.size() > 1 ? "parts of " : "") + "[" +
                 std::to_string(rows) + ", " + std::to_string(cols) + "]" + (recipe.transposed ? " (stored transposed)" : ""));
    check_values(*t);
    int64_t g = 1;
    const std::vector<float> scales = read_scales(source, *t, out, cols, g);
    if (groups == 0) {
      groups = g;
      q.group_size = static_cast<int>(cols / g);
      q.scales.resize(static_cast<size_t>(rows * g));
    }
    if (g != groups || (g > 1 && (fp8 || recipe.transposed)))
      refuse(ErrorCategory::format, *t,
             "has " + std::to_string(g) + " scales per row; " +
                 (g != groups ? "the other parts of " + what + " have " + std::to_string(groups)
                              : std::string("groups are read for untransposed I8 weights only")));
    const auto* p = static_cast<const int8_t*>(t->data);
    // Source row r of this part is canonical row dst(r): consecutive, or gathered from
    // GPT-NeoX's per-head [q | k | v] blocks of hd rows.
    const int64_t hd = recipe.interleaved_head_rows;
    if (hd > 0 && (parts.size() != 1 || rows % (3 * hd) != 0))
      throw Error(ErrorCategory::internal, what + ": an interleaved QKV needs one source of 3 x heads x rows");
    const int64_t heads = hd > 0 ? rows / (3 * hd) : 0;
    for (int64_t r = 0; r < out; ++r) {
      int64_t dst = row + r;
      if (hd > 0) {
        const int64_t block = r / hd, head = block / 3, which = block % 3;
        dst = (which * heads + head) * hd + r % hd;
      }
      int8_t* d = q.data.data() + dst * cols;
      if (recipe.transposed)
        for (int64_t i = 0; i < cols; ++i) d[i] = p[i * out + r];
      else
        std::memcpy(d, p + r * cols, static_cast<size_t>(cols));
      std::copy(scales.begin() + r * g, scales.begin() + (r + 1) * g, q.scales.begin() + dst * g);
    }
    row += out;
    source.release(*t);
  }
  if (row != rows)
    refuse(ErrorCategory::format, first,
           "and the other parts of " + what + " give " + std::to_string(row) + " rows; it needs " + std::to_string(rows));

  const QuantizedWeight host = q.view();
  QuantizedWeight w = host;
  w.data = store.upload(host.data.data, host.data.dtype, {rows, cols}, what + " (stored quantized)");
  w.scales = store.upload(host.scales.data, host.scales.dtype, {rows, groups}, what + " (stored scales)");
  w.int8_activations = spec.mode == Quantization::w8a8;
  return w;
}

}  // namespace kestrel
