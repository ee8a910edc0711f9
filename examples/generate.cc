// kestrel-generate: streams a model's continuation of a prompt to stdout.
//
//   kestrel-generate [--model PATH] --prompt TEXT [--max-new-tokens N] [--temperature T]
//                    [--top-k K] [--top-p P] [--seed S] [--stop STRING]... [--device cpu|cuda]
//
// Prompt time and generation speed go to stderr; errors exit non-zero with the message.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <kestrel/kestrel.h>

#include "default_model.h"

int main(int argc, char** argv) {
  CLI::App app{"Generate text with a Kestrel model", "kestrel-generate"};
  std::string model_path = kestrel_examples::default_model_path();
  std::string prompt = "The quick brown fox";
  std::string device = "cpu";
  std::string dtype;
  int threads = 0;
  int max_sequence_tokens = 0;
  kestrel::GenerationRequest request;
  request.stop.max_new_tokens = 64;
  bool ignore_eos = false;
  bool quiet = false;

  app.add_option("-m,--model", model_path, "Model directory (Hugging Face layout)")->capture_default_str();
  app.add_option("-p,--prompt", prompt, "Prompt text")->capture_default_str();
  app.add_option("-n,--max-new-tokens", request.stop.max_new_tokens, "Tokens to generate")->capture_default_str();
  app.add_option("--temperature", request.sampling.temperature, "0 for greedy")->capture_default_str();
  app.add_option("--top-k", request.sampling.top_k, "Keep the k most likely tokens (0: off)")->capture_default_str();
  app.add_option("--top-p", request.sampling.top_p, "Nucleus sampling mass (1: off)")->capture_default_str();
  app.add_option("--min-p", request.sampling.min_p, "Min probability relative to the best (0: off)")->capture_default_str();
  app.add_option("--repetition-penalty", request.sampling.repetition_penalty, "1: off")->capture_default_str();
  app.add_option("--presence-penalty", request.sampling.presence_penalty, "0: off")->capture_default_str();
  app.add_option("--frequency-penalty", request.sampling.frequency_penalty, "0: off")->capture_default_str();
  app.add_option("--seed", request.sampling.seed, "Random seed for sampling")->capture_default_str();
  app.add_option("--stop", request.stop.stop_strings, "Stop string (repeatable)");
  app.add_flag("--ignore-eos", ignore_eos, "Keep generating after the end-of-sequence token");
  app.add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--dtype", dtype, "f32, f16 or bf16 (default: f32 on cpu, f16 on cuda)");
  app.add_option("--threads", threads, "CPU threads (0: all)")->capture_default_str();
  app.add_option("--max-sequence-tokens", max_sequence_tokens, "Session limit (0: the model's)")->capture_default_str();
  app.add_flag("-q,--quiet", quiet, "Print only the generated text");
  CLI11_PARSE(app, argc, argv);

  try {
    kestrel::ModelOptions model_options;
    model_options.device = kestrel::parse_device(device, "--device");
    if (!dtype.empty()) model_options.dtype = kestrel::parse_dtype(dtype, "--dtype");
    model_options.num_threads = threads;
    auto model = kestrel::Model::load(model_path, model_options);

    kestrel::SessionOptions session_options;
    session_options.max_sequences = 1;
    session_options.max_sequence_tokens = max_sequence_tokens;
    kestrel::Session session(model, session_options);
    kestrel::Decoder decoder(session);

    request.prompt = prompt;
    request.stop.stop_at_eos = !ignore_eos;
    bool echoed = quiet;  // the prompt is echoed once the request passed validation
    auto result = decoder.generate(request, [&](const kestrel::StreamEvent& event) {
      if (!echoed) std::cout << prompt;
      echoed = true;
      std::cout << event.text << std::flush;
      return true;
    });
    std::cout << std::endl;
    if (!quiet) {
      const size_t n = result.tokens.size();
      std::fprintf(stderr,
                   "[kestrel] model %s (%s, %s) | prompt %zu tokens in %.1f ms | %zu tokens, %.1f tokens/s | "
                   "finish: %s\n",
                   model_path.c_str(), kestrel::to_string(model->device()).c_str(),
                   kestrel::to_string(model->dtype()), result.prompt_ids.size(), 1e3 * result.prompt_seconds, n,
                   n > 1 && result.decode_seconds > 0 ? (n - 1) / result.decode_seconds : 0.0,
                   kestrel::to_string(result.finish));
    }
    return 0;
  } catch (const kestrel::Error& e) {
    std::cerr << "kestrel-generate: " << e.what() << std::endl;
    return 1;
  }
}
