#include "metrics.h"

#include <fmt/format.h>

namespace kestrel_server {

void Histogram::observe(double value) {
  std::lock_guard lock(mutex_);
  size_t b = 0;
  while (b < bounds_.size() && value > bounds_[b]) ++b;
  ++counts_[b];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  std::lock_guard lock(mutex_);
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t b = 0; b < bounds_.size(); ++b) {
    cumulative += counts_[b];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[b], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
}

Metrics::Metrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      itl_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}) {}

void Metrics::count_response(int status) {
  std::lock_guard lock(mutex_);
  ++responses_[status];
}

std::string Metrics::render(const kestrel::EngineStats& e) const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  {
    std::lock_guard lock(mutex_);
    out += "# HELP kestrel_http_responses_total Responses of the completion endpoints, by HTTP status.\n"
           "# TYPE kestrel_http_responses_total counter\n";
    for (const auto& [status, n] : responses_) out += fmt::format("kestrel_http_responses_total{{code=\"{}\"}} {}\n", status, n);
  }
  metric("kestrel_requests_total", "counter", "Requests accepted by the engine.", e.submitted);
  metric("kestrel_requests_finished_total", "counter", "Requests that ended (any reason).", e.finished);
  metric("kestrel_requests_refused_total", "counter", "Requests refused because the queue was full.", e.refused);
  metric("kestrel_prompt_tokens_total", "counter", "Prompt tokens of the accepted requests.", e.prompt_tokens);
  metric("kestrel_generation_tokens_total", "counter", "Tokens generated.", e.generated_tokens);
  metric("kestrel_queue_depth", "gauge", "Requests waiting for a sequence slot.", e.queued);
  metric("kestrel_running_sequences", "gauge", "Sequences in the running batch.", e.running);
  metric("kestrel_kv_blocks_used", "gauge", "KV-cache blocks held by sequences.", e.kv_blocks_used);
  metric("kestrel_kv_blocks_total", "gauge", "KV-cache blocks in the pool.", e.kv_blocks_total);
  metric("kestrel_kv_blocks_cached", "gauge", "KV-cache blocks in the prefix cache (held by sequences or not).",
         e.kv_blocks_cached);
  metric("kestrel_prefix_cache_query_tokens_total", "counter", "Prompt tokens of finished requests.",
         e.prefix_query_tokens);
  metric("kestrel_prefix_cache_hit_tokens_total", "counter", "Prompt tokens taken from the prefix cache.",
         e.prefix_hit_tokens);
  metric("kestrel_prefix_cache_hit_rate", "gauge", "hit tokens / query tokens (0 before any request).",
         e.prefix_query_tokens ? static_cast<double>(e.prefix_hit_tokens) / static_cast<double>(e.prefix_query_tokens) : 0.0);
  metric("kestrel_engine_steps_total", "counter", "Scheduler iterations run.", e.steps);
  ttft_.render(out, "kestrel_time_to_first_token_seconds", "From the request's arrival to its first token.");
  itl_.render(out, "kestrel_inter_token_latency_seconds", "Between consecutive tokens of a sequence.");
  return out;
}

}  // namespace kestrel_server
