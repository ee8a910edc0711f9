// Command-line options shared by the example binaries: which model to load and how, and
// how to sample and when to stop. Each example adds the groups it needs to its CLI::App.
#pragma once

#include <CLI/CLI.hpp>
#include <kestrel/kestrel.h>
#include <memory>
#include <string>

#include "default_model.h"

namespace kestrel_examples {

struct ModelArgs {
  std::string path = default_model_path();
  std::string device = "cpu";
  std::string dtype;
  int threads = 0;
  int max_sequence_tokens = 0;
  std::string quant = "none";
  int quant_group_size = 0;
};

inline void add_model_options(CLI::App& app, ModelArgs& args) {
  app.add_option("-m,--model", args.path, "Model: a .gguf file or a Hugging Face model directory")
      ->capture_default_str();
  app.add_option("--device", args.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--dtype", args.dtype, "f32, f16 or bf16 (default: f32 on cpu, f16 on cuda)");
  app.add_option("--threads", args.threads, "CPU threads (0: all)")->capture_default_str();
  app.add_option("--quant", args.quant,
                 "Weight-only quantization of the linear layers: none, int8 or int4")
      ->capture_default_str();
  app.add_option("--quant-group-size", args.quant_group_size,
                 "Columns per quantization group, a multiple of 32 (0: per channel for int8, "
                 "32 for int4; GGUF Q8_0 / Q4_0 / Q4_1 tensors then stay as stored where the mode allows)")
      ->capture_default_str();
  app.add_option("--max-sequence-tokens", args.max_sequence_tokens,
                 "Session limit on prompt + generated tokens (0: the model's context length)")
      ->capture_default_str();
}

inline std::shared_ptr<const kestrel::Model> load_model(const ModelArgs& args) {
  kestrel::ModelOptions options;
  options.device = kestrel::parse_device(args.device, "--device");
  if (!args.dtype.empty()) options.dtype = kestrel::parse_dtype(args.dtype, "--dtype");
  options.num_threads = args.threads;
  options.quantization = kestrel::parse_quantization(args.quant, "--quant");
  options.quant_group_size = args.quant_group_size;
  return kestrel::Model::load(args.path, options);
}

// One sequence at a time, up to --max-sequence-tokens.
inline kestrel::SessionOptions single_sequence_session(const ModelArgs& args) {
  kestrel::SessionOptions options;
  options.max_sequences = 1;
  options.max_sequence_tokens = args.max_sequence_tokens;
  return options;
}

// Sampling and stop options of a request; `ignore_eos` clears request.stop.stop_at_eos
// once parsed (apply_ignore_eos).
struct SamplingArgs {
  kestrel::SamplingOptions sampling;
  kestrel::StopOptions stop;
  bool ignore_eos = false;
};

inline void add_sampling_options(CLI::App& app, SamplingArgs& args) {
  app.add_option("-n,--max-new-tokens", args.stop.max_new_tokens, "Tokens to generate")->capture_default_str();
  app.add_option("--temperature", args.sampling.temperature, "0 for greedy")->capture_default_str();
  app.add_option("--top-k", args.sampling.top_k, "Keep the k most likely tokens (0: off)")->capture_default_str();
  app.add_option("--top-p", args.sampling.top_p, "Nucleus sampling mass (1: off)")->capture_default_str();
  app.add_option("--min-p", args.sampling.min_p, "Min probability relative to the best (0: off)")
      ->capture_default_str();
  app.add_option("--repetition-penalty", args.sampling.repetition_penalty, "1: off")->capture_default_str();
  app.add_option("--presence-penalty", args.sampling.presence_penalty, "0: off")->capture_default_str();
  app.add_option("--frequency-penalty", args.sampling.frequency_penalty, "0: off")->capture_default_str();
  app.add_option("--seed", args.sampling.seed, "Random seed for sampling")->capture_default_str();
  app.add_option("--stop", args.stop.stop_strings, "Stop string (repeatable)");
  app.add_flag("--ignore-eos", args.ignore_eos, "Keep generating after the end-of-sequence token");
}

inline kestrel::GenerationRequest make_request(const SamplingArgs& args) {
  kestrel::GenerationRequest request;
  request.sampling = args.sampling;
  request.stop = args.stop;
  request.stop.stop_at_eos = !args.ignore_eos;
  return request;
}

}  // namespace kestrel_examples
