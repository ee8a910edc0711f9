// kestrel-chat: an interactive chat with a model that has a chat template (by default
// SmolLM2-135M-Instruct).
//
//   kestrel-chat [--model PATH] [--system TEXT] [--chat-template-kwargs JSON] [--max-new-tokens N] [sampling options]
//
// Each line on stdin is a user message. The whole conversation goes through the model's
// chat template every turn and the reply streams to stdout; replies join the history. The
// session's prefix cache keeps the history's KV blocks, so a turn computes only its new tokens.
//   /reset   forget the conversation        /help   these commands
//   /quit    leave (as does end of input, Ctrl-D)
// An error (a conversation longer than --max-sequence-tokens, say) is printed and the
// turn dropped; the chat goes on. When stdin is not a terminal, each message is echoed
// after the "> " prompt so a transcript reads as a dialogue.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fmt/core.h>
#include <iostream>
#include <kestrel/kestrel.h>
#include <string>
#include <vector>

#include "cli_options.h"

namespace {

constexpr int kDefaultContext = 4096;  // tokens of conversation the session holds by default
constexpr const char* kHelp = "commands: /reset forgets the conversation, /quit (or Ctrl-D) leaves\n";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Chat with a Kestrel model", "kestrel-chat"};
  kestrel_examples::ModelArgs model_args;  // --max-sequence-tokens 0: min(4096, the model's)
  kestrel_examples::SamplingArgs sampling_args;
  sampling_args.stop.max_new_tokens = 512;
  std::string system;
  bool stats = false;

  kestrel_examples::add_model_options(app, model_args);
  app.add_option("--system", system, "System message (default: the template's own, if any)");
  kestrel::ChatTemplateOptions chat_options;
  app.add_option("--chat-template-kwargs", chat_options.extra_context_json,
                 "JSON object of extra chat-template variables, e.g. '{\"enable_thinking\": false}'");
  kestrel_examples::add_sampling_options(app, sampling_args);
  app.add_flag("--stats", stats, "Print tokens and tokens/s of each reply to stderr");
  CLI11_PARSE(app, argc, argv);

  std::shared_ptr<const kestrel::Model> model;
  std::unique_ptr<kestrel::Session> session;
  try {
    model = kestrel_examples::load_model(model_args);
    if (model_args.max_sequence_tokens == 0)
      model_args.max_sequence_tokens = std::min(kDefaultContext, model->config().max_positions);
    // The prefix cache keeps the conversation's KV blocks between turns: each turn computes
    // only what the previous one did not (the new message and the template's markers).
    kestrel::SessionOptions session_options = kestrel_examples::single_sequence_session(model_args);
    session_options.prefix_caching = true;
    session = std::make_unique<kestrel::Session>(model, session_options);
    // Fails now, not at the first message, without a template or with one that does not
    // parse (an empty conversation would not do: many templates read messages[0]).
    const kestrel::ChatMessage probe{"user", "Hello"};
    kestrel::apply_chat_template(*model, std::span(&probe, 1), chat_options);
  } catch (const kestrel::Error& e) {
    std::cerr << "kestrel-chat: " << e.what() << std::endl;
    return 1;
  }
  kestrel::Decoder decoder(*session);
  const bool interactive = isatty(STDIN_FILENO);
  std::cerr << "kestrel-chat: " << model_args.path << " (" << model->config().num_layers << " layers, "
            << kestrel::to_string(model->device()) << "). " << kHelp;

  std::vector<kestrel::ChatMessage> history;
  if (!system.empty()) history.push_back({"system", system});
  std::string line;
  while (true) {
    std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (!interactive) std::cout << line << "\n";
    if (line.empty()) continue;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/help") {
      std::cout << kHelp;
      continue;
    }
    if (line == "/reset") {
      history.resize(system.empty() ? 0 : 1);
      std::cout << "(conversation cleared)\n";
      continue;
    }

    history.push_back({"user", line});
    try {
      kestrel::GenerationRequest request = kestrel_examples::make_request(sampling_args);
      request.prompt_ids = kestrel::encode_chat(*model, kestrel::apply_chat_template(*model, history, chat_options));
      // The reply may use what the conversation leaves of the session (it ends with
      // finish "length" there); a conversation that fills it all is an error.
      const int room = model_args.max_sequence_tokens - static_cast<int>(request.prompt_ids.size());
      if (room <= 0)
        throw kestrel::Error(kestrel::ErrorCategory::limit,
                             "the conversation is " + std::to_string(request.prompt_ids.size()) +
                                 " tokens, the session holds " + std::to_string(model_args.max_sequence_tokens) +
                                 " (--max-sequence-tokens)");
      request.stop.max_new_tokens = std::min(request.stop.max_new_tokens, room);
      kestrel::GenerationResult result = decoder.generate(request, [](const kestrel::StreamEvent& event) {
        std::cout << event.text << std::flush;
        return true;
      });
      std::cout << std::endl;  // before the stats on stderr
      if (result.finish == kestrel::FinishReason::error) throw kestrel::Error(kestrel::ErrorCategory::limit, result.error);
      history.push_back({"assistant", result.text});
      if (stats) {
        const size_t n = result.tokens.size();
        fmt::print(stderr,
                   "[kestrel] prompt {} tokens ({} cached) in {:.1f} ms | {} tokens, {:.1f} tokens/s | finish: {}\n",
                   result.prompt_ids.size(), result.cached_prompt_tokens, 1e3 * result.prompt_seconds, n,
                   n > 1 && result.decode_seconds > 0 ? static_cast<double>(n - 1) / result.decode_seconds : 0.0,
                   kestrel::to_string(result.finish));
      }
    } catch (const kestrel::Error& e) {
      history.pop_back();  // the turn that failed
      std::cout << std::flush;
      std::cerr << "kestrel-chat: " << e.what();
      if (e.category() == kestrel::ErrorCategory::limit) std::cerr << " (/reset starts a new conversation)";
      std::cerr << std::endl;
    }
  }
  std::cout << "\n";
  return 0;
}
