// kestrel-server: an OpenAI-compatible HTTP server over one model and one Engine
// (continuous batching). Usage:
//   kestrel-server [--model PATH] [--host 127.0.0.1] [--port 8080]
// then e.g. curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json'
//   -d '{"messages": [{"role": "user", "content": "Hi"}]}'
// --port 0 takes a free port; the line "listening on http://HOST:PORT" says which.
#include <CLI/CLI.hpp>
#include <csignal>
#include <filesystem>
#include <fmt/format.h>
#include <httplib.h>
#include <iostream>
#include <pthread.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "../cli_options.h"
#include "routes.h"

namespace {

struct ServerArgs {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string served_name;  // default: the model file's stem
  kestrel::SessionOptions session{.max_sequences = 16, .prefix_caching = true};
  int max_queued = 256;
  size_t max_body_bytes = 1 << 20;
  int http_threads = 128;
  std::string tool_call_format = "auto";
  std::string reasoning_format = "auto";
};

// How chat replies are read: the format the model's chat template teaches, unless named.
kestrel::ChatOutputFormat output_format(const kestrel::Model& model, const ServerArgs& args) {
  kestrel::ChatOutputFormat format = kestrel::detect_chat_output_format(model.chat_template());
  if (args.tool_call_format != "auto")
    format.tool_calls = kestrel::parse_tool_call_format(args.tool_call_format, "--tool-call-format");
  if (args.reasoning_format == "none") format.reasoning = false;
  if (args.reasoning_format == "think") format.reasoning = true;
  return format;
}

// The name clients pass as "model": the file's stem (a GGUF) or the directory's name.
std::string model_id(const std::string& path) {
  std::filesystem::path p(path);
  while (!p.empty() && !p.has_filename()) p = p.parent_path();
  return std::filesystem::is_directory(p) ? p.filename().string() : p.stem().string();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kestrel-server: the OpenAI completions and chat completions API over a model"};
  kestrel_examples::ModelArgs model_args;
  // A context of 2048 by default: the KV pool holds every sequence at full length.
  model_args.max_sequence_tokens = 2048;
  // A request's tokens must not depend on what it is batched with (CPU; ignored on CUDA).
  model_args.batch_invariant = true;
  kestrel_examples::add_model_options(app, model_args);
  ServerArgs args;
  app.add_option("--host", args.host, "Address to listen on")->capture_default_str();
  app.add_option("--port", args.port, "Port to listen on (0: any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
  app.add_option("--served-model-name", args.served_name, "The model's name in the API (default: the file's stem)");
  app.add_option("--max-sequences", args.session.max_sequences, "Sequences decoded together in one step")
      ->capture_default_str();
  app.add_option("--max-step-tokens", args.session.max_step_tokens, "Prompt tokens processed in one step")
      ->capture_default_str();
  app.add_option("--kv-blocks", args.session.kv_blocks, "KV-cache blocks (0: every sequence at full length)")
      ->capture_default_str();
  app.add_option("--max-queued", args.max_queued, "Requests waiting for a slot; more get 503")->capture_default_str();
  app.add_option("--max-body-bytes", args.max_body_bytes, "Larger request bodies get 413")->capture_default_str();
  app.add_option("--http-threads", args.http_threads, "Connections served at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_flag("--prefix-caching,!--no-prefix-caching", args.session.prefix_caching,
               "Reuse the KV blocks of earlier requests that share a prompt prefix")
      ->capture_default_str();
  app.add_option("--tool-call-format", args.tool_call_format,
                 "How tool calls are read from chat replies: auto (from the chat template), none, hermes, llama3, "
                 "mistral, granite, deepseek")
      ->capture_default_str();
  app.add_option("--reasoning-format", args.reasoning_format,
                 "Whether <think>...</think> becomes reasoning_content: auto (when the chat template has it), "
                 "none, think")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "none", "think"}));
  CLI11_PARSE(app, argc, argv);

  // SIGINT / SIGTERM are taken by a thread of their own (sigwait), which stops the server:
  // blocked here, before any thread starts, so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away is a failed write, not a signal

  try {
    kestrel::ModelOptions model_options = kestrel_examples::model_options(model_args);
    model_options.batch_invariant = model_args.batch_invariant && model_options.device.kind == kestrel::DeviceKind::cpu;
    std::shared_ptr<const kestrel::Model> model = kestrel::Model::load(model_args.path, model_options);
    args.session.max_sequence_tokens = model_args.max_sequence_tokens;
    kestrel::Session session(model, kestrel_examples::with_model_args(args.session, model_args));
    kestrel::Engine engine(session, {.max_queued = args.max_queued});
    kestrel_server::ServedModel served{args.served_name.empty() ? model_id(model_args.path) : args.served_name,
                                       model.get(), session.options().max_sequence_tokens,
                                       session.options().max_sequences, output_format(*model, args)};
    kestrel_server::Metrics metrics;
    httplib::Server server;
    const int threads = args.http_threads;
    server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
    kestrel_server::add_routes(server, engine, served, metrics, {.max_body_bytes = args.max_body_bytes});
    // cpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed in Debian's
    // compiled library): a burst of more connections than that, while the accept thread
    // waits for a core, overflows the queue and clients see resets. The socket-options
    // hook runs on the listening socket before bind(); listen() again once bound raises
    // the backlog to the system's maximum.
    int listener = -1;
    server.set_socket_options([&listener](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));  // httplib's default option
      listener = sock;
    });

    int port = args.port;
    if (args.port == 0)
      port = server.bind_to_any_port(args.host);
    else if (!server.bind_to_port(args.host, args.port))
      port = -1;
    if (port < 0) throw kestrel::Error(kestrel::ErrorCategory::io, fmt::format("cannot listen on {}:{}", args.host, args.port));
    if (listener >= 0 && listen(listener, SOMAXCONN) != 0)
      throw kestrel::Error(kestrel::ErrorCategory::io, fmt::format("listen({}:{}): {}", args.host, port, std::strerror(errno)));
    std::thread stopper([&server, stop_signals] {
      int signal = 0;
      sigwait(&stop_signals, &signal);
      server.stop();
    });
    stopper.detach();
    fmt::print("kestrel-server: serving '{}' ({}, context {}, {} sequences) listening on http://{}:{}\n", served.id,
               model_args.path, served.context, served.max_sequences, args.host, port);
    std::fflush(stdout);
    server.listen_after_bind();
    return 0;
  } catch (const std::exception& e) {
    return kestrel_examples::report_error("kestrel-server", e);
  }
}
