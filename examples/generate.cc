// kestrel-generate: streams a model's continuation of a prompt to stdout.
//
//   kestrel-generate [--model PATH] --prompt TEXT [--chat auto|on|off] [--system TEXT]
//                    [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
//                    [--stop STRING]... [--device cpu|cuda] ...   (--help lists all)
//   mpirun -np 4 kestrel-generate --tp 2 --pp 2 ...    tensor x pipeline parallel
//
// With a chat model (one whose files carry a chat template, such as the default
// SmolLM2-135M-Instruct) the prompt is sent as one user message through the template and
// only the reply is printed; --chat off sends the raw text and echoes it first.
// Prompt time and generation speed go to stderr; errors exit non-zero with the message.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <iostream>
#include <kestrel/kestrel.h>

#include "cli_options.h"

namespace {

std::string parallel_text(const kestrel::ParallelInfo& p) {
  if (p.tensor_parallel * p.pipeline_parallel == 1) return "";
  return ", tp " + std::to_string(p.tensor_parallel) + " x pp " + std::to_string(p.pipeline_parallel);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generate text with a Kestrel model", "kestrel-generate"};
  kestrel_examples::ModelArgs model_args;
  kestrel_examples::SamplingArgs sampling_args;
  std::string prompt = "What is the capital of France?";
  std::string chat = "auto";
  std::string system;
  bool quiet = false;

  kestrel_examples::add_model_options(app, model_args);
  kestrel_examples::add_parallel_options(app, model_args);
  app.add_option("-p,--prompt", prompt, "Prompt text")->capture_default_str();
  app.add_option("--chat", chat,
                 "auto: send the prompt as a user message through the model's chat template when it has "
                 "one (instruct models); on: require a template; off: the raw prompt")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  app.add_option("--system", system, "System message for chat mode (default: the template's own, if any)");
  kestrel_examples::add_sampling_options(app, sampling_args);
  app.add_flag("-q,--quiet", quiet, "Print only the generated text");
  CLI11_PARSE(app, argc, argv);

  try {
    auto model = kestrel_examples::load_model(model_args);
    kestrel::Session session(model, kestrel_examples::single_sequence_session(model_args));
    kestrel::Decoder decoder(session);
    kestrel::GenerationRequest request = kestrel_examples::make_request(sampling_args);

    bool use_template = chat == "on" || (chat == "auto" && !model->chat_template().empty());
    if (use_template) {
      std::vector<kestrel::ChatMessage> messages;
      if (!system.empty()) messages.push_back({"system", system});
      messages.push_back({"user", prompt});
      try {
        request.prompt_ids = kestrel::encode_chat(*model, kestrel::apply_chat_template(*model, messages));
      } catch (const kestrel::Error& e) {
        if (chat == "on" || e.category() != kestrel::ErrorCategory::unsupported) throw;
        std::cerr << "kestrel-generate: " << e.message() << "; sending the raw prompt\n";
        use_template = false;
      }
    } else if (!system.empty()) {
      std::cerr << "kestrel-generate: --system is ignored without a chat template\n";
    }
    if (!use_template) request.prompt = prompt;

    const bool output = kestrel_examples::is_output_rank();
    bool echoed = quiet || use_template;  // a raw prompt is echoed once it passed validation
    auto result = decoder.generate(request, [&](const kestrel::StreamEvent& event) {
      if (!output) return true;
      if (!echoed) std::cout << prompt;
      echoed = true;
      std::cout << event.text << std::flush;
      return true;
    });
    if (!output) return 0;
    std::cout << std::endl;
    if (!quiet) {
      const size_t n = result.tokens.size();
      fmt::print(stderr,
                 "[kestrel] model {} ({}, {}, weights {}{}{}) | prompt {} tokens in {:.1f} ms | {} tokens, {:.1f} "
                 "tokens/s | finish: {}\n",
                 model_args.path, kestrel::to_string(model->device()), kestrel::to_string(model->dtype()),
                 model->weight_formats(), parallel_text(model->parallel()), use_template ? ", chat template" : "", result.prompt_ids.size(), 1e3 * result.prompt_seconds, n,
                 n > 1 && result.decode_seconds > 0 ? static_cast<double>(n - 1) / result.decode_seconds : 0.0,
                 kestrel::to_string(result.finish));
    }
    return 0;
  } catch (const kestrel::Error& e) {
    return kestrel_examples::report_error("kestrel-generate", e);
  }
}
