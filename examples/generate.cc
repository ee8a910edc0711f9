// kestrel-generate: streams a model's continuation of a prompt to stdout.
//
//   kestrel-generate [--model PATH] --prompt TEXT [--chat auto|on|off] [--system TEXT] [--chat-template-kwargs JSON]
//                    [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]
//                    [--stop STRING]... [--device cpu|cuda] ...   (--help lists all)
//                    [--speculative prompt-lookup|draft] [--draft-model PATH] [--draft-tokens K]
//                    [--num-beams N] [--length-penalty F] [--early-stopping heuristic|enough|never]
//                    [--num-return-sequences N] [--grammar FILE.gbnf | --json-schema FILE.json]
//
// With several sequences (beams, or samples of one prompt) the first streams and the
// others follow it, each under a "--- sequence j ---" line (beams best first, with scores).
//   mpirun -np 4 kestrel-generate --tp 2 --pp 2 ...    tensor x pipeline parallel
//
// With a chat model (one whose files carry a chat template, such as the default
// SmolLM2-135M-Instruct) the prompt is sent as one user message through the template and
// only the reply is printed; --chat off sends the raw text and echoes it first.
// --grammar constrains the output to a GBNF grammar (llama.cpp's syntax), --json-schema to
// the JSON texts a JSON Schema admits (see ConstraintOptions in kestrel/decoder.h).
// Prompt time and generation speed go to stderr; errors exit non-zero with the message.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <kestrel/kestrel.h>

#include "cli_options.h"

namespace {

std::string parallel_text(const kestrel::ParallelInfo& p) {
  if (p.tensor_parallel * p.pipeline_parallel == 1) return "";
  return ", tp " + std::to_string(p.tensor_parallel) + " x pp " + std::to_string(p.pipeline_parallel);
}

std::string run_text(const kestrel::SpeculativeOptions& options, const kestrel::GenerationResult& result) {
  if (result.sequences.size() > 1 || (!result.sequences.empty() && options.method == kestrel::SpeculativeMethod::none))
    return fmt::format("{} sequences{} | ", result.sequences.size(),
                       result.sequences[0].score != 0.0 ? fmt::format(", best score {:.4f}", result.sequences[0].score) : "");
  if (options.method == kestrel::SpeculativeMethod::none) return "";
  return fmt::format("{} accepted {} of {} drafted ({:.0f}%) | ", kestrel::to_string(options.method),
                     result.accepted_tokens, result.drafted_tokens,
                     result.drafted_tokens ? 100.0 * result.accepted_tokens / result.drafted_tokens : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generate text with a Kestrel model", "kestrel-generate"};
  kestrel_examples::ModelArgs model_args;
  kestrel_examples::SamplingArgs sampling_args;
  std::string prompt = "What is the capital of France?";
  std::string chat = "auto";
  kestrel::ChatTemplateOptions chat_options;
  std::string system;
  bool quiet = false;
  std::string speculative = "none";
  std::string draft_path;
  kestrel::SpeculativeOptions speculative_options;
  kestrel::BeamSearchOptions beam;
  std::string early_stopping = "heuristic";
  int num_return_sequences = 1;

  kestrel_examples::add_model_options(app, model_args);
  kestrel_examples::add_parallel_options(app, model_args);
  app.add_option("-p,--prompt", prompt, "Prompt text")->capture_default_str();
  app.add_option("--chat", chat,
                 "auto: send the prompt as a user message through the model's chat template when it has "
                 "one (instruct models); on: require a template; off: the raw prompt")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  app.add_option("--system", system, "System message for chat mode (default: the template's own, if any)");
  app.add_option("--chat-template-kwargs", chat_options.extra_context_json,
                 "JSON object of extra chat-template variables, e.g. '{\"enable_thinking\": false}'");
  kestrel_examples::add_sampling_options(app, sampling_args);
  app.add_option("--speculative", speculative,
                 "Speculative decoding: none; prompt-lookup (draft from n-grams of the prompt and output); "
                 "draft (a smaller model with the same tokenizer, --draft-model)")
      ->check(CLI::IsMember({"none", "prompt-lookup", "draft"}))
      ->capture_default_str();
  app.add_option("--draft-model", draft_path, "The draft model for --speculative draft (.gguf or model directory)");
  app.add_option("--draft-tokens", speculative_options.num_draft_tokens, "Tokens drafted per verification step")
      ->capture_default_str();
  app.add_option("--lookup-ngram", speculative_options.ngram_max, "Longest n-gram prompt lookup matches")
      ->capture_default_str();
  app.add_option("--num-beams", beam.num_beams, "Beam search with N beams (1: off; greedy, as transformers)")
      ->capture_default_str();
  app.add_option("--length-penalty", beam.length_penalty,
                 "Beam score = sum of log-probs / length ^ F (> 0 favours longer sequences)")
      ->capture_default_str();
  app.add_option("--early-stopping", early_stopping,
                 "When beam search ends: heuristic (transformers' False), enough (True), never")
      ->check(CLI::IsMember({"heuristic", "enough", "never"}))
      ->capture_default_str();
  app.add_option("--num-return-sequences", num_return_sequences,
                 "The N best beams, or N sampled completions sharing the prompt (--temperature > 0)")
      ->capture_default_str();
  std::string grammar_path, json_schema_path;
  app.add_option("--grammar", grammar_path, "Constrain the output to the GBNF grammar in FILE (llama.cpp syntax)");
  app.add_option("--json-schema", json_schema_path, "Constrain the output to JSON admitted by the JSON Schema in FILE")
      ->excludes(app.get_option("--grammar"));
  app.add_flag("-q,--quiet", quiet, "Print only the generated text");
  CLI11_PARSE(app, argc, argv);

  try {
    auto model = kestrel_examples::load_model(model_args);
    kestrel::SessionOptions session_options = kestrel_examples::single_sequence_session(model_args);
    session_options.max_sequences = std::max({1, beam.num_beams, num_return_sequences});
    kestrel::Session session(model, session_options);
    kestrel::GenerationRequest request = kestrel_examples::make_request(sampling_args);
    beam.early_stopping = early_stopping == "enough" ? kestrel::EarlyStopping::enough
                          : early_stopping == "never" ? kestrel::EarlyStopping::never
                                                      : kestrel::EarlyStopping::heuristic;
    request.beam = beam;
    request.num_return_sequences = num_return_sequences;
    speculative_options.method = kestrel::parse_speculative_method(speculative, "--speculative");
    request.speculative = speculative_options;
    if (!grammar_path.empty()) request.constraint.grammar = kestrel_examples::read_file(grammar_path, "--grammar");
    if (!json_schema_path.empty())
      request.constraint.json_schema = kestrel_examples::read_file(json_schema_path, "--json-schema");
    const bool with_draft = speculative_options.method == kestrel::SpeculativeMethod::draft_model;
    if (with_draft && draft_path.empty())
      throw kestrel::Error(kestrel::ErrorCategory::invalid_argument, "--speculative draft needs --draft-model PATH");
    if (!with_draft && !draft_path.empty())
      throw kestrel::Error(kestrel::ErrorCategory::invalid_argument, "--draft-model is only used with --speculative draft");
    // The draft model loads as the model does (device, dtype, threads, quantization).
    kestrel_examples::ModelArgs draft_args = model_args;
    draft_args.path = draft_path;
    std::shared_ptr<const kestrel::Model> draft_model = with_draft ? kestrel_examples::load_model(draft_args) : nullptr;
    std::optional<kestrel::Session> draft_session;
    if (with_draft) draft_session.emplace(draft_model, session.options());
    kestrel::Decoder decoder = with_draft ? kestrel::Decoder(session, *draft_session) : kestrel::Decoder(session);

    bool use_template = chat == "on" || (chat == "auto" && !model->chat_template().empty());
    if (use_template) {
      std::vector<kestrel::ChatMessage> messages;
      if (!system.empty()) messages.push_back({"system", system});
      messages.push_back({"user", prompt});
      try {
        request.prompt_ids = kestrel::encode_chat(*model, kestrel::apply_chat_template(*model, messages, chat_options));
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
      if (!output || event.sequence != 0) return true;
      if (!echoed) std::cout << prompt;
      echoed = true;
      std::cout << event.text << std::flush;
      return true;
    });
    if (!output) return 0;
    std::cout << std::endl;
    for (size_t j = 1; j < result.sequences.size(); ++j)
      fmt::print("--- sequence {}{} ---\n{}\n", j,
                 beam.num_beams > 1 ? fmt::format(" (score {:.4f})", result.sequences[j].score) : "",
                 result.sequences[j].text);
    if (!quiet) {
      const size_t n = result.tokens.size();
      fmt::print(stderr,
                 "[kestrel] model {} ({}, {}, weights {}, KV cache {}{}{}) | prompt {} tokens in {:.1f} ms | {} tokens, {:.1f} "
                 "tokens/s | {}finish: {}\n",
                 model_args.path, kestrel::to_string(model->device()), kestrel::to_string(model->dtype()),
                 model->weight_formats(), kestrel::to_string(*session.options().kv_dtype),
                 parallel_text(model->parallel()), use_template ? ", chat template" : "",
                 result.prompt_ids.size(), 1e3 * result.prompt_seconds, n,
                 n > 1 && result.decode_seconds > 0 ? static_cast<double>(n - 1) / result.decode_seconds : 0.0,
                 run_text(request.speculative, result), kestrel::to_string(result.finish));
    }
    return 0;
  } catch (const kestrel::Error& e) {
    return kestrel_examples::report_error("kestrel-generate", e);
  }
}
