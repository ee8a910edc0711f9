// kestrel-quantize: a W8A8 checkpoint with SmoothQuant (src/tools/smoothquant.h).
//
//   kestrel-quantize --model HF_DIR|GGUF --calibration TEXT --out DIR|GGUF [--alpha 0.5 | auto] [--tokens 2048]
//                    [--alpha-qkv A] [--alpha-attn-out A] [--alpha-ffn-up A] [--alpha-ffn-down A]
//                    [--float-activations down_weight,...]
//
// Runs the calibration text through the model on the CPU (f32, unquantized), computes
// SmoothQuant's per-channel factors, folds them into the norms and weights, and writes a
// Hugging Face directory whose config.json carries "kestrel_quantization" (format w8a8):
// every Kestrel tool then loads it as W8A8 by default (docs/QUANTIZATION.md).
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fstream>
#include <iostream>
#include <kestrel/kestrel.h>
#include <sstream>
#include <string>
#include <vector>

#include "tools/smoothquant.h"

int main(int argc, char** argv) {
  CLI::App app{"Write a W8A8 (SmoothQuant) checkpoint of a Hugging Face model"};
  std::string model_path, text_path, out_dir;
  kestrel::tools::SmoothQuantOptions options;
  int threads = 0;
  app.add_option("--model", model_path, "Hugging Face model directory (config.json, *.safetensors)")->required();
  app.add_option("--calibration", text_path, "UTF-8 calibration text")->required();
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
    kestrel::ModelOptions model_options;
    model_options.quantization = kestrel::Quantization::none;
    model_options.num_threads = threads;
    auto model = kestrel::Model::load(model_path, model_options);
    std::ifstream in(text_path, std::ios::binary);
    if (!in) throw kestrel::Error(kestrel::ErrorCategory::io, text_path + ": cannot open");
    std::ostringstream text;
    text << in.rdbuf();
    const std::vector<int32_t> ids = model->tokenizer().encode(text.str(), /*parse_special=*/false);
    const auto calibration = kestrel::tools::calibrate_smoothquant(model, ids, options);
    kestrel::tools::write_smoothquant_checkpoint(*model, calibration, options, out_dir);
    if (options.input_alpha.any()) {
      const auto& s = calibration.layers.front();
      alpha = fmt::format("qkv {} attn-out {} ffn-up {}{}", s.attn_alpha, s.out_alpha, s.ffn_alpha,
                          s.down_in.empty() ? std::string() : fmt::format(" ffn-down {}", s.down_alpha));
    }
    fmt::print("kestrel-quantize: {} layers smoothed (alpha {}) over {} calibration tokens; W8A8 checkpoint in {}\n",
               calibration.layers.size(), options.search_alpha ? std::string("searched per input") : alpha,
               calibration.tokens, out_dir);
    if (options.search_alpha) {
      for (size_t l = 0; l < calibration.layers.size(); ++l) {
        const auto& s = calibration.layers[l];
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
