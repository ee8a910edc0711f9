#include "routes.h"

#include <chrono>
#include <ctime>
#include <fmt/format.h>
#include <random>

#include "api_error.h"
#include "logprobs_json.h"
#include "openai_response.h"
#include "peer_watch.h"

namespace kestrel_server {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

void send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status();
  if (error.status() == 503) res.set_header("Retry-After", "1");
  res.set_content(to_text(error.body()), "application/json");
}

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}", prefix, rng());
}

// Records time to first token and the gaps between tokens of each completion.
class LatencyRecorder {
 public:
  LatencyRecorder(Metrics& metrics, Clock::time_point arrived) : metrics_(metrics), arrived_(arrived) {}
  void record(const kestrel::TokenEvent& e) {
    if (!first_seen_) metrics_.observe_first_token(seconds(e.time - arrived_));
    first_seen_ = true;
    if (static_cast<size_t>(e.sequence) >= last_.size()) last_.resize(static_cast<size_t>(e.sequence) + 1);
    auto& last = last_[static_cast<size_t>(e.sequence)];
    if (last) metrics_.observe_inter_token(seconds(e.time - *last));
    last = e.time;
  }

 private:
  Metrics& metrics_;
  Clock::time_point arrived_;
  bool first_seen_ = false;
  std::vector<std::optional<Clock::time_point>> last_;
};

// What a streamed response carries between calls of httplib's content provider.
struct Stream {
  std::shared_ptr<kestrel::RequestHandle> handle;
  ResponseHeader header;
  bool include_usage = false;
  int n = 1;
  LatencyRecorder latency;
  bool started = false;
  Clock::time_point last_write = Clock::now();
  // With logprobs, per completion: its tokens waiting for their text, and its text so far.
  std::vector<LogprobsAligner> aligners;
  std::vector<std::string> texts;
  // Chat: per completion, the parser that splits its text into content, reasoning and calls.
  std::vector<kestrel::ChatOutputParser> parsers;
};

kestrel::ChatOutputParser& parser_of(Stream& s, int sequence) {
  while (s.parsers.size() <= static_cast<size_t>(sequence)) s.parsers.emplace_back(*s.header.chat_output);
  return s.parsers[static_cast<size_t>(sequence)];
}

bool write_event(httplib::DataSink& sink, const std::string& data) {
  const std::string event = "data: " + data + "\n\n";
  return sink.write(event.data(), event.size());
}

// One call of the content provider: waits up to 100 ms for tokens and writes them; at the
// end, each completion's finish_reason, the usage and [DONE]. Returns false when the client
// has gone (the releaser then cancels the request).
bool provide(Stream& s, httplib::DataSink& sink) {
  if (!s.started && s.header.endpoint == Endpoint::chat_completions)
    for (int i = 0; i < s.n; ++i)
      if (!write_event(sink, to_text(role_chunk(s.header, i)))) return false;
  s.started = true;
  std::vector<kestrel::TokenEvent> events;
  const bool more = s.handle->next(events, std::chrono::milliseconds(100));
  for (const kestrel::TokenEvent& e : events) {
    s.latency.record(e);
    json logprobs = nullptr;
    if (s.header.logprobs_tokenizer && e.logprobs) {
      const auto i = static_cast<size_t>(e.sequence);
      while (s.aligners.size() <= i) s.aligners.emplace_back(*s.header.logprobs_tokenizer, s.header.endpoint);
      s.texts.resize(s.aligners.size());
      s.aligners[i].add(e.token, *e.logprobs);
      s.texts[i] += e.text;
      logprobs = s.aligners[i].release(s.texts[i]);
    }
    if (e.text.empty()) continue;  // the tokens' entries wait for their text
    if (s.header.chat_output) {
      // Text that may still be a marker or an unfinished call is held by the parser; the
      // token's logprobs go out now, in a chunk of their own when nothing else does.
      const kestrel::ChatOutputDelta delta = parser_of(s, e.sequence).feed(e.text);
      if (delta.empty() && logprobs.is_null()) continue;
      if (!write_event(sink, to_text(delta_chunk(s.header, e.sequence, delta, std::move(logprobs))))) return false;
    } else if (!write_event(sink, to_text(text_chunk(s.header, e.sequence, e.text, std::move(logprobs))))) {
      return false;
    }
    s.last_write = Clock::now();
  }
  if (more) {
    // A comment line now and then: a client that left is noticed while the prompt is
    // still being processed, not only at the first token.
    if (Clock::now() - s.last_write > std::chrono::milliseconds(500)) {
      if (!sink.write(":\n\n", 3)) return false;
      s.last_write = Clock::now();
    }
    return true;
  }
  const kestrel::GenerationResult result = s.handle->wait();
  if (result.finish == kestrel::FinishReason::error) {
    if (!write_event(sink, to_text(ApiError::body_for(500, result.error)))) return false;
  } else {
    for (int i = 0; i < completions(result); ++i) {
      bool calls = false;
      if (s.header.chat_output) {
        kestrel::ChatOutputParser& parser = parser_of(s, i);
        const kestrel::ChatOutputDelta rest = parser.finish();
        if (!rest.empty() && !write_event(sink, to_text(delta_chunk(s.header, i, rest)))) return false;
        calls = !parser.result().tool_calls.empty();
      }
      if (!write_event(sink, to_text(finish_chunk(s.header, i, finish_of(result, i), calls)))) return false;
    }
    if (s.include_usage && !write_event(sink, to_text(usage_chunk(s.header, result)))) return false;
  }
  if (!write_event(sink, "[DONE]")) return false;
  sink.done();
  return true;
}

void generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint, kestrel::Engine& engine,
              const ServedModel& served, Metrics& metrics) {
  const Clock::time_point arrived = Clock::now();
  ApiRequest api;
  std::shared_ptr<kestrel::RequestHandle> handle;
  try {
    api = parse_request(req.body, endpoint, served);
    try {
      handle = engine.submit(api.generation);
    } catch (const kestrel::Error& e) {
      const bool internal = e.category() == kestrel::ErrorCategory::internal ||
                            e.category() == kestrel::ErrorCategory::device;
      throw ApiError(internal ? 500 : 400, e.message());
    }
    if (!handle)
      throw ApiError(503, "The server is busy: its request queue is full. Retry later.", "", "queue_full");
  } catch (const ApiError& e) {
    send_error(res, e);
    return;
  }
  const bool chat = endpoint == Endpoint::chat_completions;
  ResponseHeader header{random_id(chat ? "chatcmpl-" : "cmpl-"), static_cast<int64_t>(std::time(nullptr)),
                        served.id, endpoint,
                        api.generation.output.logprobs ? &served.model->tokenizer() : nullptr, api.chat_output};
  if (!api.stream) {
    // A client that goes away has its request cancelled: its slot and KV blocks are free
    // at the engine's next step (checked every 50 ms).
    LatencyRecorder latency(metrics, arrived);
    const PeerWatch peer(req);
    std::vector<kestrel::TokenEvent> events;
    while (handle->next(events, std::chrono::milliseconds(50))) {
      for (const auto& e : events) latency.record(e);
      events.clear();
      if (peer.closed()) handle->cancel();
    }
    for (const auto& e : events) latency.record(e);
    const kestrel::GenerationResult result = handle->wait();
    if (result.finish == kestrel::FinishReason::error) {
      send_error(res, ApiError(500, result.error));
      return;
    }
    res.set_content(to_text(full_response(header, result)), "application/json");
    return;
  }
  auto stream = std::make_shared<Stream>(Stream{handle, header, api.include_usage,
                                                api.generation.num_return_sequences, LatencyRecorder(metrics, arrived)});
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [stream](size_t, httplib::DataSink& sink) { return provide(*stream, sink); },
      [stream](bool success) {
        if (!success) stream->handle->cancel();
      });
}

}  // namespace

void add_routes(httplib::Server& server, kestrel::Engine& engine, const ServedModel& served, Metrics& metrics,
                const RouteOptions& options) {
  server.set_payload_max_length(options.max_body_bytes);
  const int64_t started = static_cast<int64_t>(std::time(nullptr));
  server.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    generate(req, res, Endpoint::completions, engine, served, metrics);
  });
  server.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
    generate(req, res, Endpoint::chat_completions, engine, served, metrics);
  });
  server.Get("/v1/models", [&served, started](const httplib::Request&, httplib::Response& res) {
    const json model = {{"id", served.id}, {"object", "model"}, {"created", started}, {"owned_by", "kestrel"}};
    res.set_content(to_text({{"object", "list"}, {"data", json::array({model})}}), "application/json");
  });
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(engine.stats()), "text/plain; version=0.0.4");
  });

  // Statuses httplib sets itself (unknown route, body over the limit) get an error object.
  const size_t limit = options.max_body_bytes;
  server.set_error_handler([limit](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = res.status == 413   ? fmt::format("The request body exceeds the server's limit of {} bytes "
                                                            "(--max-body-bytes)", limit)
                          : res.status == 404 ? fmt::format("No route for {} {}", req.method, req.path)
                                              : fmt::format("HTTP {}", res.status);
    res.set_content(to_text(ApiError::body_for(res.status, message)), "application/json");
  });
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string message = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(to_text(ApiError::body_for(500, message)), "application/json");
  });
  server.set_logger([&metrics](const httplib::Request& req, const httplib::Response& res) {
    if (req.path == "/v1/completions" || req.path == "/v1/chat/completions") metrics.count_response(res.status);
  });
}

}  // namespace kestrel_server
