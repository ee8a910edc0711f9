#include "tools/quantized_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/fp8.h"
#include "core/half.h"
#include "kestrel/error.h"
#include "loaders/gguf_quant.h"
#include "loaders/gguf_source.h"
#include "loaders/safetensors.h"
#include "loaders/safetensors_writer.h"
#include "models/model_state.h"
#include "models/quantize.h"
#include "models/stored_quantized.h"
#include "tools/gguf_to_hf.h"

namespace kestrel::tools {

namespace fs = std::filesystem;

CheckpointWeights parse_checkpoint_weights(std::string_view text, std::string_view what) {
  if (text == "float") return CheckpointWeights::float32;
  if (text == "int8") return CheckpointWeights::int8;
  if (text == "fp8") return CheckpointWeights::fp8;
  throw Error(ErrorCategory::invalid_argument,
              std::string(what) + " = '" + std::string(text) + "' (expected float, int8 or fp8)");
}

ScaleGranularity parse_scale_granularity(std::string_view text, std::string_view what) {
  if (text == "channel") return ScaleGranularity::channel;
  if (text == "tensor") return ScaleGranularity::tensor;
  throw Error(ErrorCategory::invalid_argument,
              std::string(what) + " = '" + std::string(text) + "' (expected channel or tensor)");
}

namespace {

// The linear weights the W8A8 / FP8 modes quantize: source tensor name -> stored [in, out].
std::map<std::string, bool, std::less<>> quantized_sources(const Architecture& arch) {
  std::map<std::string, bool, std::less<>> names;
  for (int l = 0; l < arch.config.num_layers; ++l) {
    if (arch.kinds.is_sparse(l))
      throw Error(ErrorCategory::unsupported, "kestrel-quantize: layer " + std::to_string(l) +
                                                  " is a mixture of experts; stored quantized experts are not written");
    for (WeightSlot slot : {WeightSlot::qkv_weight, WeightSlot::out_weight, WeightSlot::up_weight, WeightSlot::down_weight}) {
      const WeightRecipe r = arch.recipe(slot, l);
      for (const auto& name : r.sources) names[name] = r.transposed;
    }
  }
  return names;
}

// One output channel per row of w [rows, cols]; or one scale for the whole tensor (FP8):
// scale = max |w| / 448, q = e4m3(w * 448 / max |w|), as quantize_fp8 rounds a row.
HostQuantizedWeight quantize(const std::vector<float>& w, int64_t rows, int64_t cols,
                             const QuantizedCheckpointOptions& options, const std::string& what) {
  if (options.weights == CheckpointWeights::int8) return quantize_int8(w.data(), rows, cols, static_cast<int>(cols), what);
  if (options.fp8_scale == ScaleGranularity::channel) return quantize_fp8(w.data(), rows, cols, what);
  float amax = 0.0f;
  for (float v : w) {
    if (!std::isfinite(v)) throw Error(ErrorCategory::unsupported, what + ": holds a value that is not finite; cannot quantize");
    amax = std::max(amax, std::abs(v));
  }
  HostQuantizedWeight q;
  q.format = QuantFormat::fp8_e4m3;
  q.rows = rows;
  q.cols = cols;
  q.group_size = static_cast<int>(cols);
  const float inv = amax > 0.0f ? kFp8E4m3Max / amax : 0.0f;
  q.scales.assign(1, amax / kFp8E4m3Max);
  q.data.resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) q.data[i] = static_cast<int8_t>(f32_to_fp8_e4m3(w[i] * inv));
  return q;
}

// A GGUF's Q8_0 LM head as I8 [out, in] and F32 scales [out, in / 32], exactly (each block's
// f16 d is an f32; its 32 int8 values as stored): what --quant w8a8 / fp8 keep of the GGUF
// (int8 in groups of 32), so the directory computes as the GGUF does. False (leave it F32)
// when a value is -128, which the symmetric int8 layout does not hold.
bool q8_0_as_int8(const SourceTensor& t, std::vector<int8_t>& q, std::vector<float>& scales) {
  const int64_t n = t.numel(), blocks = n / 32;
  const auto* p = static_cast<const uint8_t*>(t.data);
  q.resize(static_cast<size_t>(n));
  scales.resize(static_cast<size_t>(blocks));
  for (int64_t b = 0; b < blocks; ++b) {
    uint16_t d;
    std::memcpy(&d, p + b * 34, 2);
    scales[static_cast<size_t>(b)] = f16_to_f32(d);
    std::memcpy(q.data() + b * 32, p + b * 34 + 2, 32);
  }
  return std::find(q.begin(), q.end(), int8_t{-128}) == q.end() &&
         std::all_of(scales.begin(), scales.end(), [](float v) { return std::isfinite(v) && v >= 0.0f; });
}

nlohmann::json quantization_block(const Architecture& arch, const Calibration* calibration,
                                  const SmoothQuantOptions& smoothing, const QuantizedCheckpointOptions& options) {
  const bool fp8 = options.weights == CheckpointWeights::fp8;
  nlohmann::json b;
  b["format"] = fp8 ? "fp8" : "w8a8";
  b["weight_dtype"] = fp8 ? "float8_e4m3fn" : "int8";
  b["weight_scale"] = fp8 && options.fp8_scale == ScaleGranularity::tensor ? "tensor" : "channel";
  b["weight_scale_name"] = "<weight name>_scale";
  b["weight_scale_dtype"] = "float32";
  b["weight_scale_shape"] = b["weight_scale"] == "tensor" ? "[1]" : "[out, 1]";
  b["weight_formula"] = fp8 ? "w = scale * e4m3(q)" : "w = scale * q, q in [-127, 127]";
  b["quantized_weights"] = "qkv, attention output, ffn up / gate and ffn down of every layer; the LM head and "
                           "embeddings stay float (the LM head is quantized at load to int8 weight-only)";
  b["activation_scheme"] = "dynamic";
  // Weights whose activations stay f32 (int8 weight-only), as the checkpoint's user asked.
  if (!smoothing.float_activations.empty()) b["float_activations"] = smoothing.float_activations;
  b["activations"] = fp8 ? "float8_e4m3fn, one scale per token (max |x_t| / 448), at run time"
                         : "int8, one scale per token (max |x_t| / 127), at run time";
  if (!calibration) {
    b["method"] = "none";
    return b;
  }
  b["method"] = "smoothquant";
  b["calibration_tokens"] = calibration->tokens;
  b["alpha"] = alphas(*calibration, smoothing);
  b["smoothed_inputs"] = smoothed_inputs(arch.kinds.gated_ffn);
  return b;
}

}  // namespace

void write_quantized_checkpoint(const Model& model, const Calibration* calibration, const SmoothQuantOptions& smoothing,
                                const QuantizedCheckpointOptions& options, const fs::path& out_dir) {
  if (options.weights == CheckpointWeights::float32) {
    if (!calibration)
      throw Error(ErrorCategory::invalid_argument, "kestrel-quantize: --weights float writes the smoothed floats and "
                                                   "needs a calibration (it is meaningless without smoothing)");
    write_smoothquant_checkpoint(model, *calibration, smoothing, out_dir);
    return;
  }
  const detail::ModelState& state = model.state();
  const fs::path source_dir = state.path;
  if (fs::exists(out_dir) && fs::equivalent(out_dir, source_dir))
    throw Error(ErrorCategory::invalid_argument, out_dir.string() + ": the output must not be the source");
  const bool gguf = is_gguf_file(source_dir);
  if (!gguf && (!fs::is_directory(source_dir) || !SafetensorsSource::present(source_dir)))
    throw Error(ErrorCategory::unsupported,
                source_dir.string() + ": kestrel-quantize reads Hugging Face safetensors directories and GGUF files");
  if (state.arch.mxfp4_paired_rows)
    throw Error(ErrorCategory::unsupported, source_dir.string() +
                                                ": an MXFP4 checkpoint (quantization_config quant_method mxfp4) is not "
                                                "read by kestrel-quantize; its experts load as MXFP4 blocks as they are");
  // The source tensors and the names they get: as they are from a Hugging Face directory;
  // from a GGUF file, through hf_layout_from_gguf (Q / K rows back in Hugging Face's order).
  struct Input {
    const SourceTensor* tensor;
    std::string name;
    int64_t rotary_head_dim = 0;
  };
  std::vector<Input> inputs;
  std::unique_ptr<GgufFile> gguf_file;
  std::unique_ptr<WeightSource> source;
  nlohmann::json config;
  HfLayout layout;
  if (gguf) {
    layout = hf_layout_from_gguf(model);
    gguf_file = std::make_unique<GgufFile>(source_dir);
    source = std::make_unique<GgufSource>(*gguf_file);
    for (const auto& [name, target] : layout.tensors)
      inputs.push_back({source->find(name), target.name, target.rotary_head_dim});
    config = layout.config;
  } else {
    auto st = std::make_unique<SafetensorsSource>(source_dir);
    for (const auto& [name, t] : st->tensors()) inputs.push_back({t, name, 0});
    source = std::move(st);
    std::ifstream in(source_dir / "config.json");
    config = nlohmann::json::parse(in);
  }
  const auto linear = quantized_sources(state.arch);
  const std::vector<std::string> head = state.arch.recipe(WeightSlot::lm_head, -1).sources;
  const SmoothedValues smoothed = calibration ? smoothed_values(model, *calibration) : SmoothedValues{};
  const bool fp8 = options.weights == CheckpointWeights::fp8;

  SafetensorsWriter writer;
  for (const Input& input : inputs) {
    const SourceTensor* t = input.tensor;
    const std::string& name = input.name;
    if (!t) throw Error(ErrorCategory::internal, "kestrel-quantize: no source tensor for '" + name + "'");
    std::optional<std::vector<float>> values = smoothed ? smoothed(*t) : std::nullopt;
    auto it = linear.find(t->name);
    if (it == linear.end() && !values && t->block_type == GgmlType::q8_0 && t->shape.size() == 2 &&
        std::find(head.begin(), head.end(), t->name) != head.end()) {
      std::vector<int8_t> q;
      std::vector<float> scales;
      if (q8_0_as_int8(*t, q, scales)) {
        writer.add(name, "I8", t->shape, q.data(), q.size());
        writer.add(stored_scale_name(name), "F32", {t->shape[0], t->shape[1] / 32}, scales.data(),
                   scales.size() * sizeof(float));
        continue;
      }
    }
    if (it == linear.end()) {  // not quantized: smoothed or ggml blocks in F32, else as stored
      if (!values && t->block_type) {
        values.emplace(static_cast<size_t>(t->numel()));
        dequantize_row(*t->block_type, t->data, values->data(), t->numel());
      }
      if (values)
        writer.add(name, "F32", t->shape, values->data(), values->size() * sizeof(float));
      else
        writer.add(name, t->fp8_e4m3 ? "F8_E4M3" : safetensors_dtype_name(t->dtype), t->shape, t->data, t->bytes);
      continue;
    }
    const bool is_float = t->dtype == DType::f32 || t->dtype == DType::f16 || t->dtype == DType::bf16;
    if (t->shape.size() != 2 || (!t->block_type && !is_float))
      throw Error(ErrorCategory::unsupported, t->file + ": tensor '" + t->name + "' (" + t->shape_string() + ", " +
                                                  to_string(t->dtype) + ") is not a float matrix; cannot quantize it");
    if (source->find(stored_scale_name(t->name)))
      throw Error(ErrorCategory::format, t->file + ": tensor '" + stored_scale_name(t->name) +
                                             "' already exists (is the source quantized already?)");
    if (!values) {
      values.emplace(static_cast<size_t>(t->numel()));
      if (t->block_type)
        dequantize_row(*t->block_type, t->data, values->data(), t->numel());
      else
        convert_floats(t->data, t->dtype, values->data(), DType::f32, values->size());
    }
    // Quantized per output channel in the canonical [out, in] layout, stored in the source's.
    const bool transposed = it->second;
    const int64_t out = transposed ? t->shape[1] : t->shape[0], in = transposed ? t->shape[0] : t->shape[1];
    std::vector<float> canonical = transposed ? std::vector<float>(values->size()) : std::move(*values);
    if (transposed)
      for (int64_t i = 0; i < in; ++i)
        for (int64_t o = 0; o < out; ++o) canonical[static_cast<size_t>(o * in + i)] = (*values)[static_cast<size_t>(i * out + o)];
    if (input.rotary_head_dim > 0) {
      if (transposed) throw Error(ErrorCategory::internal, name + ": rotary rows of a transposed weight");
      unpermute_rotary_rows(canonical, out, in, input.rotary_head_dim);
    }
    const HostQuantizedWeight q = quantize(canonical, out, in, options, name);
    std::vector<int8_t> stored = q.data;
    if (transposed)
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) stored[static_cast<size_t>(i * out + o)] = q.data[static_cast<size_t>(o * in + i)];
    writer.add(name, fp8 ? "F8_E4M3" : "I8", t->shape, stored.data(), stored.size());
    const std::vector<int64_t> scale_shape =
        q.scales.size() == 1 && options.fp8_scale == ScaleGranularity::tensor && fp8 ? std::vector<int64_t>{1}
                                                                                     : std::vector<int64_t>{out, 1};
    writer.add(stored_scale_name(name), "F32", scale_shape, q.scales.data(), q.scales.size() * sizeof(float));
  }

  fs::create_directories(out_dir);
  writer.write(out_dir / "model.safetensors",
               {{"format", "pt"}, {"written_by", std::string("kestrel-quantize (") + (fp8 ? "fp8" : "w8a8") + ")"}});
  config["kestrel_quantization"] = quantization_block(state.arch, calibration, smoothing, options);
  std::ofstream(out_dir / "config.json") << config.dump(2) << "\n";
  if (gguf) {
    std::ofstream(out_dir / "tokenizer.json") << layout.tokenizer.dump() << "\n";
    std::ofstream(out_dir / "tokenizer_config.json") << layout.tokenizer_config.dump(2) << "\n";
    return;
  }
  for (const auto& entry : fs::directory_iterator(source_dir)) {
    const std::string file = entry.path().filename().string();
    if (!entry.is_regular_file() || file == "config.json" || file.find(".safetensors") != std::string::npos) continue;
    fs::copy_file(entry.path(), out_dir / file, fs::copy_options::overwrite_existing);
  }
}

}  // namespace kestrel::tools
