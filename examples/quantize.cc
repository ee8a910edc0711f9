// kestrel-quantize: a W8A8 or FP8 checkpoint, smoothed with SmoothQuant
// (src/tools/smoothquant.h, src/tools/quantized_checkpoint.h).
//
//   kestrel-quantize --model HF_DIR|GGUF --calibration TEXT --out DIR|GGUF [--alpha 0.5 | auto] [--tokens 2048]
//                    [--weights int8 | fp8 | float] [--fp8-scale channel | tensor] [--no-smooth]
//                    [--alpha-qkv A] [--alpha-attn-out A] [--alpha-ffn-up A] [--alpha-ffn-down A]
//                    [--float-activations down_weight,...]
//
// Runs the calibration text through the model on the CPU (f32, unquantized), computes
// SmoothQuant's per-channel factors, folds them into the norms and weights, and writes a
// Hugging Face directory whose config.json carries "kestrel_quantization" (format w8a8 or
// fp8) and whose linear weights are stored as I8 / F8_E4M3 with F32 scales (--weights
// float: the smoothed floats, quantized at load; the only choice for a GGUF source, which
// gives a GGUF). --no-smooth skips calibration and quantizes the weights as they are.
// Every Kestrel tool then loads it as W8A8 / FP8 by default (docs/QUANTIZATION.md).
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fstream>
#include <iostream>
#include <optional>
#include <kestrel/kestrel.h>
#include <sstream>
#include <string>
#include <vector>

#include "tools/quantized_checkpoint.h"
#include "tools/smoothquant.h"

int main(int argc, char** argv) {
  CLI::App app{"Write a W8A8 or FP8 (SmoothQuant) checkpoint of a Hugging Face model"};
  std::string model_path, text_path, out_dir;
  kestrel::tools::SmoothQuantOptions options;
  int threads = 0;
  std::string weights = "int8", fp8_scale = "channel";
  bool no_smooth = false;
  app.add_option("--model", model_path, "Hugging Face model directory (config.json, *.safetensors)")->required();
  app.add_option("--calibration", text_path, "UTF-8 calibration text (required unless --no-smooth)");
  app.add_option("--out", out_dir, "Output directory")->required();
  std::string alpha = "0.5";
  app.add_option("--alpha", alpha,
                 "Migration strength in [0, 1], or 'auto': searched per smoothed input (of 0.2 ... 0.9) by the "
                 "simulated W8A8 error on sampled calibration rows")
      ->capture_default_str();
  app.add_option("--search-rows", options.search_rows, "Calibration rows sampled per input for --alpha auto")
      ->capture_default_str();
  for (auto [flag, field] : {std::pair{"--alpha-qkv", &options.input_alpha.qkv},
                             std::pair{"--alpha-attn-out", &options.input_alpha.attn_out},
                             std::pair{"--alpha-ffn-up", &options.input_alpha.ffn_up},
                             std::pair{"--alpha-ffn-down", &options.input_alpha.ffn_down}})
    app.add_option(flag, *field, "Migration strength of this kind of input in [0, 1], instead of --alpha");
  app.add_option("--float-activations", options.float_activations,
                 "Weights kept int8 weight-only, their activations in f32 (qkv_weight, out_weight, up_weight, "
                 "down_weight); recorded in the checkpoint")
      ->delimiter(',');
  app.add_option("--tokens", options.calibration_tokens, "Calibration tokens (at most)")->capture_default_str();
  app.add_option("--chunk", options.chunk_tokens, "Tokens per forward pass")->capture_default_str();
  app.add_option("--weights", weights,
                 "Stored weights: int8 (W8A8: I8, one F32 scale per output channel), fp8 (F8_E4M3 with F32 scales), "
                 "or float (the smoothed floats, quantized at load)")
      ->capture_default_str();
  app.add_option("--fp8-scale", fp8_scale, "FP8 weight scales: channel (one per output channel) or tensor")
      ->capture_default_str();
  app.add_flag("--no-smooth", no_smooth, "Quantize the weights as they are: no calibration, no SmoothQuant");
  app.add_option("--threads", threads, "CPU threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (alpha == "auto") {
      options.search_alpha = true;
    } else {
      try {
        size_t used = 0;
        options.alpha = std::stof(alpha, &used);
        if (used != alpha.size()) throw std::invalid_argument(alpha);
      } catch (const std::exception&) {
        throw kestrel::Error(kestrel::ErrorCategory::invalid_argument, "--alpha '" + alpha + "' (a number in [0, 1] or auto)");
      }
    }
    kestrel::tools::validate(options);
    kestrel::tools::QuantizedCheckpointOptions checkpoint;
    checkpoint.weights = kestrel::tools::parse_checkpoint_weights(weights);
    checkpoint.fp8_scale = kestrel::tools::parse_scale_granularity(fp8_scale);
    if (checkpoint.fp8_scale == kestrel::tools::ScaleGranularity::tensor &&
        checkpoint.weights != kestrel::tools::CheckpointWeights::fp8)
      throw kestrel::Error(kestrel::ErrorCategory::invalid_argument, "--fp8-scale tensor needs --weights fp8");
    if (no_smooth && !text_path.empty())
      throw kestrel::Error(kestrel::ErrorCategory::invalid_argument, "--no-smooth takes no --calibration text");
    if (!no_smooth && text_path.empty())
      throw kestrel::Error(kestrel::ErrorCategory::invalid_argument,
                           "--calibration TEXT is required (or --no-smooth to quantize without smoothing)");
    kestrel::ModelOptions model_options;
    model_options.quantization = kestrel::Quantization::none;
    model_options.num_threads = threads;
    auto model = kestrel::Model::load(model_path, model_options);
    std::optional<kestrel::tools::Calibration> calibration;
    if (!no_smooth) {
      std::ifstream in(text_path, std::ios::binary);
      if (!in) throw kestrel::Error(kestrel::ErrorCategory::io, text_path + ": cannot open");
      std::ostringstream text;
      text << in.rdbuf();
      const std::vector<int32_t> ids = model->tokenizer().encode(text.str(), /*parse_special=*/false);
      calibration = kestrel::tools::calibrate_smoothquant(model, ids, options);
    }
    kestrel::tools::write_quantized_checkpoint(*model, calibration ? &*calibration : nullptr, options, checkpoint,
                                               out_dir);
    if (calibration && options.input_alpha.any()) {
      const auto& s = calibration->layers.front();
      alpha = fmt::format("qkv {} attn-out {} ffn-up {}{}", s.attn_alpha, s.out_alpha, s.ffn_alpha,
                          s.down_in.empty() ? std::string() : fmt::format(" ffn-down {}", s.down_alpha));
    }
    const char* format = checkpoint.weights == kestrel::tools::CheckpointWeights::fp8 ? "FP8" : "W8A8";
    if (!calibration) {
      fmt::print("kestrel-quantize: weights quantized without smoothing; {} checkpoint ({} weights) in {}\n", format,
                 weights, out_dir);
      return 0;
    }
    fmt::print("kestrel-quantize: {} layers smoothed (alpha {}) over {} calibration tokens; {} checkpoint ({} weights) in {}\n",
               calibration->layers.size(), options.search_alpha ? std::string("searched per input") : alpha,
               calibration->tokens, format, weights, out_dir);
    if (options.search_alpha) {
      for (size_t l = 0; l < calibration->layers.size(); ++l) {
        const auto& s = calibration->layers[l];
        fmt::print("  layer {:3}: alpha qkv {:.1f}  attn-out {:.1f}  ffn-up {:.1f}{}\n", l, s.attn_alpha, s.out_alpha,
                   s.ffn_alpha, s.down_in.empty() ? std::string() : fmt::format("  ffn-down {:.1f}", s.down_alpha));
      }
    }
    return 0;
  } catch (const kestrel::Error& e) {
    fmt::print(stderr, "kestrel-quantize: {}\n", e.what());
    return 1;
  }
}
