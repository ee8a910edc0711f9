// server/metrics.h: what GET /metrics reports, in Prometheus's text exposition format
// (version 0.0.4): HTTP responses by status, the engine's counters and gauges (requests,
// tokens in and out, queue depth, running sequences, KV blocks in use), and histograms of
// time to first token and inter-token latency. Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <kestrel/engine.h>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace kestrel_server {

// A cumulative histogram over fixed upper bounds (seconds), as Prometheus exposes one.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
  void observe(double value);
  // "<name>_bucket{le=...} n" lines, then _sum and _count.
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  mutable std::mutex mutex_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void count_response(int status);
  void observe_first_token(double seconds) { ttft_.observe(seconds); }
  void observe_inter_token(double seconds) { itl_.observe(seconds); }
  std::string render(const kestrel::EngineStats& engine) const;

 private:
  mutable std::mutex mutex_;
  std::map<int, uint64_t> responses_;  // completion endpoints' responses by HTTP status
  Histogram ttft_, itl_;
};

}  // namespace kestrel_server
