// Command-line options shared by the example binaries: which model to load and how, and
// how to sample and when to stop. Each example adds the groups it needs to its CLI::App.
#pragma once

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <iterator>
#include <kestrel/kestrel.h>
#include <memory>
#include <string>

#include "default_model.h"

namespace kestrel_examples {

struct ModelArgs {
  std::string path = default_model_path();
  std::string device = "cpu";
  std::string dtype;
  std::string kv_dtype;
  int threads = 0;
  int max_sequence_tokens = 0;
  kestrel::ParallelOptions parallel;
  std::string quant = "auto";
  int quant_group_size = 0;
  bool batch_invariant = false;
};

// --tp / --pp for the examples that run under mpirun (kestrel-generate).
inline void add_parallel_options(CLI::App& app, ModelArgs& args) {
  app.add_option("--tp", args.parallel.tensor_parallel,
                 "Tensor-parallel ranks (heads, FFN columns and vocabulary split across them)")
      ->capture_default_str();
  app.add_option("--pp", args.parallel.pipeline_parallel, "Pipeline stages (consecutive layers per stage)")
      ->capture_default_str();
  app.add_option("--parallel-timeout", args.parallel.timeout_seconds,
                 "Seconds a rank waits for its peers before it gives up with an error")
      ->capture_default_str();
}

inline void add_model_options(CLI::App& app, ModelArgs& args) {
  app.add_option("-m,--model", args.path, "Model: a .gguf file or a Hugging Face model directory")
      ->capture_default_str();
  app.add_option("--device", args.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--dtype", args.dtype, "f32, f16 or bf16 (default: f32 on cpu, f16 on cuda)");
  app.add_option("--kv-dtype", args.kv_dtype,
                 "KV cache: f16 or f32 on cpu (default f16), the activation dtype on cuda");
  app.add_option("--threads", args.threads, "CPU threads (0: all)")->capture_default_str();
  app.add_option("--quant", args.quant,
                 "Linear weights: auto (as the file stores them: a GGUF's quantized blocks stay quantized), "
                 "none (all in --dtype), int8 or int4 (quantized at load), w8a8 (int8 weights per channel and "
                 "int8 activations per token; prefill on int8 GEMMs), fp8 (E4M3 weights per channel, activations "
                 "rounded to E4M3 per token)")
      ->capture_default_str();
  app.add_option("--quant-group-size", args.quant_group_size,
                 "Columns per quantization group, a multiple of 32 (0: per channel for int8, "
                 "32 for int4; GGUF Q8_0 / Q4_0 / Q4_1 tensors then stay as stored where the mode allows)")
      ->capture_default_str();
  app.add_option("--max-sequence-tokens", args.max_sequence_tokens,
                 "Session limit on prompt + generated tokens (0: the model's context length)")
      ->capture_default_str();
  app.add_flag("--batch-invariant,!--no-batch-invariant", args.batch_invariant,
               "CPU: every token of a step takes the decode kernels (8-bit activations on quantized weights), "
               "so a row's result does not depend on what else shares its step (slower prompts)")
      ->capture_default_str();
}

// The load options the flags ask for; checks that an MPI job has tp x pp ranks.
inline kestrel::ModelOptions model_options(const ModelArgs& args) {
  const int ranks = kestrel::launcher_size();
  const int wanted = args.parallel.tensor_parallel * args.parallel.pipeline_parallel;
  if (ranks > 1 && wanted != ranks)
    throw kestrel::Error(kestrel::ErrorCategory::invalid_argument,
                         "started as " + std::to_string(ranks) + " MPI ranks but --tp " +
                             std::to_string(args.parallel.tensor_parallel) + " x --pp " +
                             std::to_string(args.parallel.pipeline_parallel) + " = " + std::to_string(wanted));
  kestrel::ModelOptions options;
  options.parallel = args.parallel;
  options.device = kestrel::parse_device(args.device, "--device");
  if (!args.dtype.empty()) options.dtype = kestrel::parse_dtype(args.dtype, "--dtype");
  options.num_threads = args.threads;
  options.quantization = kestrel::parse_quantization(args.quant, "--quant");
  options.quant_group_size = args.quant_group_size;
  options.batch_invariant = args.batch_invariant;
  return options;
}

inline std::shared_ptr<const kestrel::Model> load_model(const ModelArgs& args) {
  return kestrel::Model::load(args.path, model_options(args));
}

// The session settings of the model flags (--kv-dtype) on top of `options`.
inline kestrel::SessionOptions with_model_args(kestrel::SessionOptions options, const ModelArgs& args) {
  if (!args.kv_dtype.empty()) options.kv_dtype = kestrel::parse_dtype(args.kv_dtype, "--kv-dtype");
  return options;
}

// One sequence at a time, up to --max-sequence-tokens.
inline kestrel::SessionOptions single_sequence_session(const ModelArgs& args) {
  kestrel::SessionOptions options = with_model_args({}, args);
  options.max_sequences = 1;
  options.max_sequence_tokens = args.max_sequence_tokens;
  return options;
}

// Only rank 0 of a parallel run prints the text and the statistics.
inline bool is_output_rank() { return kestrel::launcher_rank() == 0; }

// Prints an error and returns the exit status; in a parallel run, names the rank and ends
// every rank (the others may be waiting for this one).
inline int report_error(const char* program, const std::exception& e) {
  if (kestrel::launcher_size() > 1) {
    std::cerr << program << " (rank " << kestrel::launcher_rank() << "): " << e.what() << std::endl;
    kestrel::abort_parallel_run(1);
  }
  std::cerr << program << ": " << e.what() << std::endl;
  return 1;
}

// "\\n", "\\t", "\\r" and "\\\\" in an option's text become newline, tab, carriage return and
// backslash (a shell passes `--stop "\n"` as a backslash and an n); other backslashes stay.
// The whole file, or Error(io) naming the option and the file.
inline std::string read_file(const std::string& path, const char* option) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw kestrel::Error(kestrel::ErrorCategory::io, std::string(option) + ": cannot read '" + path + "'");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const char next = i + 1 < text.size() ? text[i + 1] : '\0';
    if (text[i] != '\\' || (next != 'n' && next != 't' && next != 'r' && next != '\\')) {
      out += text[i];
      continue;
    }
    out += next == 'n' ? '\n' : next == 't' ? '\t' : next == 'r' ? '\r' : '\\';
    ++i;
  }
  return out;
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
  app.add_option("--stop", args.stop.stop_strings, "Stop string (repeatable; \\n, \\t and \\\\ are escapes)")
      ->transform([](std::string s) { return unescape(s); });
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
